/* smtp_session_int.h - what the files of the SMTP state machine share, and
 * nothing outside them may include: the command table's row type, and the
 * functions each of them offers the others.
 *
 *   smtp_session.c        the engine: hooks, the input loop, the life of a
 *                         session, transactions
 *   smtp_session_reply.c  every reply on its way out (errors counted, LMTP's
 *                         one reply per recipient, pacing)
 *   smtp_verbs.c          the command table, and the verbs of the envelope
 *                         (HELO/EHLO/LHLO, MAIL, RCPT, RSET, ..., XCLIENT)
 *   smtp_message.c        the message: DATA, BDAT chunks, the final dot
 *   smtp_starttls.c       STARTTLS and the end of a handshake
 *   smtp_auth.c           AUTH around the pure exchange of smtp_sasl.c
 *
 * Each verb goes through check (sequence and syntax; may reply and stop),
 * the hook, then proceed (effects and the success reply), or rejected (the
 * effects of a refusal). */
#ifndef LUAMTA_SMTP_SESSION_INT_H
#define LUAMTA_SMTP_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>

#include "hook.h"
#include "msgstore.h"
#include "script.h"
#include "smtp_session_types.h"

/* A message's first bytes stay in memory, where on_message's header
 * look-ups read them: more than Postfix's header_size_limit (100 KiB), so
 * a header section it would read whole is read whole here. The rest goes
 * to a file as it arrives; so a message holds at most this much memory,
 * plus the store's write buffer. */
#define SMTP_SPILL_AT   (128 * 1024)
#define SMTP_SPILL_HELD (SMTP_SPILL_AT + MSGSTORE_WBUF)

#define S(st)      (1u << (st))
#define ST_SESSION (S(ST_GREETED) | S(ST_READY) | S(ST_MAIL) | S(ST_RCPT) | S(ST_BDAT))

struct smtp_cmd {
	const char *verb;    /* NULL for the phases without a verb */
	unsigned states;     /* where it is allowed (S(ST_x) bits) */
	enum hook_kind hook; /* HOOK__COUNT: no hook */
	int (*check)(struct smtp_session *, const char *arg, size_t len);
	void (*proceed)(struct smtp_session *, const struct hook_result *);
	void (*rejected)(struct smtp_session *); /* effects of a refusal */
	int rcode;                               /* default refusal */
	const char *renh;
	const char *rtext;
};

/* smtp_verbs.c: the table, its rows for the phases without a verb, and
 * what the others need of the envelope verbs. */
extern const struct smtp_cmd smtp_cmd_connect, smtp_cmd_unknown, smtp_cmd_verb, smtp_cmd_bdat_next,
    smtp_cmd_message;
const struct smtp_cmd *smtp_cmd_lookup(const char *verb);
int smtp_check_noarg(struct smtp_session *, const char *arg, size_t len);
void smtp_rejected_close(struct smtp_session *);
int smtp_auth_offered(const struct smtp_session *);
/* The keywords we advertise, '\n'-separated, as on_ehlo sees them. */
void smtp_ehlo_keywords(struct smtp_session *, char *out, size_t outsz);

/* smtp_session.c */
void smtp_enter_state(struct smtp_session *, enum smtp_state);
/* A new id as 16 hex digits into out (17 bytes). */
void smtp_id_str(struct smtp_server *, char *out);
char *smtp_copy(const char *p, size_t n);
void smtp_tx_free(struct smtp_tx *);
void smtp_tx_end(struct smtp_session *);
void smtp_data_account(struct smtp_session *);
void smtp_pending_reset(struct smtp_session *);
void smtp_hook_run(struct smtp_session *);
void smtp_command(struct smtp_session *, const char *line, size_t len);
void smtp_session_process(struct smtp_session *);
void smtp_session_close(struct smtp_session *, const char *reason);
void smtp_reap(struct smtp_session *);

/* smtp_session_reply.c */
void smtp_reply(struct smtp_session *, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void smtp_reply_lines(struct smtp_session *, int code, const char *enh, const char *text);
void smtp_reply_paced(
    struct smtp_session *, int code, const char *enh, const char *text, const struct hook_result *);
void smtp_reply_hook(
    struct smtp_session *, const struct hook_result *, int code, const char *enh, const char *text);

/* smtp_message.c */
int smtp_check_data(struct smtp_session *, const char *arg, size_t len);
void smtp_do_data(struct smtp_session *, const struct hook_result *);
void smtp_rejected_data(struct smtp_session *);
int smtp_check_bdat(struct smtp_session *, const char *arg, size_t len);
void smtp_do_bdat(struct smtp_session *, const struct hook_result *);
void smtp_rejected_bdat(struct smtp_session *);
void smtp_do_message(struct smtp_session *, const struct hook_result *);
void smtp_rejected_message(struct smtp_session *);
void smtp_data_progress(struct smtp_session *, size_t n);
void smtp_data_budget(struct smtp_session *);
void smtp_data_end(struct smtp_session *);
void smtp_bdat_end(struct smtp_session *);

/* smtp_starttls.c */
int smtp_check_starttls(struct smtp_session *, const char *arg, size_t len);
void smtp_do_starttls(struct smtp_session *, const struct hook_result *);
void smtp_starttls_begin(struct smtp_session *);
void smtp_tls_ready(struct smtp_session *);

/* smtp_auth.c */
int smtp_check_auth(struct smtp_session *, const char *arg, size_t len);
void smtp_do_auth(struct smtp_session *, const struct hook_result *);
void smtp_rejected_auth(struct smtp_session *);
void smtp_auth_line(struct smtp_session *, const char *line, size_t len);

#endif
