/* xtext.h - RFC 3461 4's xtext (the values of XCLIENT, AUTH=, ENVID= and
 * ORCPT=): "+HH" (two upper-case hexadecimal digits) stands for a byte,
 * and every other character is printable ASCII other than '+' and '='.
 * Pure: no allocation, no I/O. */
#ifndef LUAMTA_XTEXT_H
#define LUAMTA_XTEXT_H

#include <stddef.h>

/* The value of an upper-case hexadecimal digit, or -1 ("a".."f" too are
 * -1: xtext's "+HH" is upper case). */
int xtext_hexval(char c);

/* Decodes in[0..n) into out (outsz bytes, the NUL included). Returns the
 * decoded length, or -1 for malformed xtext (a byte outside 33-126, a bare
 * '=', a '+' not followed by two upper-case hex digits), a decoded NUL
 * ("+00") or no room. */
int xtext_decode(const char *in, size_t n, char *out, size_t outsz);

/* Encodes in[0..n) into out (outsz bytes, the NUL included): bytes outside
 * 33-126, '+' and '=' become "+HH". Returns the encoded length, or -1 when
 * out has no room. */
int xtext_encode(const char *in, size_t n, char *out, size_t outsz);

#endif
