/* smtp_lmtp.h - what LMTP (RFC 2033) changes in a session of
 * --listen-lmtp: LHLO instead of HELO and EHLO, and after the message
 * (the final dot, or BDAT LAST) one reply per accepted recipient, in RCPT
 * order, each recipient's own (msg:rcpt_reply, a deliverer's failure)
 * where it has one. The session's files (smtp_session_int.h) call these;
 * the state machine stays there. */
#ifndef LUAMTA_SMTP_LMTP_H
#define LUAMTA_SMTP_LMTP_H

struct smtp_session;
struct smtp_tx;

/* s->lmtp_fanout */
enum smtp_lmtp_fanout {
	SMTP_LMTP_OFF = 0, /* replies go out once */
	SMTP_LMTP_SAME,    /* the same reply for every recipient */
	SMTP_LMTP_OWN,     /* a recipient's own reply where it has one, else this one */
};

/* Queues one reply on the session (smtp_session_reply.c's writer). */
typedef void smtp_lmtp_emit(struct smtp_session *, int code, const char *enh, const char *text);

/* The reply text (for 500 5.5.1) when verb is the other protocol's
 * greeting (HELO or EHLO in LMTP, LHLO in SMTP), else NULL. */
const char *smtp_lmtp_refuses(const struct smtp_session *, const char *verb);

/* The message is complete: in an LMTP session, every reply from here until
 * the transaction ends goes out once per recipient (SMTP_LMTP_SAME; the
 * end of on_message chooses SMTP_LMTP_OWN). The end of DATA calls it, and
 * so must BDAT LAST. No effect in an SMTP session. */
void smtp_lmtp_message_end(struct smtp_session *);

/* Sends code/enh/text through emit once per recipient when the session is
 * past its message's end in LMTP, and returns 1; else returns 0 and the
 * caller sends it once. 421 (the session ends) always goes out once. */
int smtp_lmtp_reply(
    struct smtp_session *, int code, const char *enh, const char *text, smtp_lmtp_emit *emit);

/* Frees a transaction's per-recipient replies. */
void smtp_lmtp_tx_free(struct smtp_tx *);

#endif
