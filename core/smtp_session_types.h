/* smtp_session_types.h - the session and transaction structs and the state
 * enum, shared by smtp_session.c (which owns them), hook_api.c (their Lua
 * face, which reads fields and sets the few a script may set) and
 * smtp_server.c (which counts sessions). Header only, so that hook_api.c
 * depends on no function of the session code. */
#ifndef LUAMTA_SMTP_SESSION_TYPES_H
#define LUAMTA_SMTP_SESSION_TYPES_H

#include <netinet/in.h>
#include <stddef.h>

#include "anvil.h"
#include "dsn_param.h"
#include "hook.h"
#include "proxy_parse.h"
#include "queue.h"
#include "smtp_bdat.h"
#include "smtp_data.h"
#include "smtp_sasl.h"
#include "smtp_server.h"
#include "smtp_xclient.h"

enum smtp_state {
	ST_CONNECTED = 0, /* on_connect may be running; no greeting yet */
	ST_GREETED,       /* 220 sent, no HELO/EHLO yet */
	ST_READY,         /* HELO/EHLO done, no transaction */
	ST_MAIL,          /* MAIL accepted */
	ST_RCPT,          /* at least one RCPT accepted */
	ST_DATA,          /* reading the message */
	ST_BDAT,          /* between BDAT chunks: the message so far is stored */
	ST_CLOSING,       /* the last reply is going out */
};
static inline const char *
smtp_state_str(enum smtp_state st)
{
	static const char *const names[] = {
		"connected",
		"greeted",
		"ready",
		"mail",
		"rcpt",
		"data",
		"bdat",
		"closing",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/* Extensions whose parameters MAIL accepts, as the EHLO reply (possibly
 * edited by on_ehlo) advertised them. */
#define SMTP_EXT_SIZE       0x01u
#define SMTP_EXT_8BITMIME   0x02u
#define SMTP_EXT_SMTPUTF8   0x04u
#define SMTP_EXT_AUTH       0x08u
#define SMTP_EXT_DSN        0x10u
#define SMTP_EXT_CHUNKING   0x20u
#define SMTP_EXT_BINARYMIME 0x40u

/* A recipient's RCPT parameters of RFC 3461. */
struct smtp_rcpt_dsn {
	unsigned notify; /* DSN_NOTIFY_* bits; 0: no NOTIFY */
	char *orcpt;     /* owned: "addr-type;decoded address", or NULL */
};

/* What on_message decided for one recipient: its own reply after the
 * final dot in LMTP (RFC 2033 4.2), set by msg:rcpt_reply, or a 451 by a
 * deliverer given { rcpt = }; and whether a mailbox took the message for
 * it (SMTP too), for its success report (dsn_local.c). */
struct smtp_rcpt_reply {
	int code;      /* 0: none, the message's reply applies */
	char *text;    /* owned, or NULL: a default text for the code */
	int failed;    /* a deliverer failed for it: the 451 stays */
	int delivered; /* msg:deliver_maildir or msg:deliver_mbox wrote it for it */
};

struct smtp_tx {
	char qid[17]; /* queue id, 16 hex digits */
	char *sender; /* owned; "" for <> */
	char *params; /* owned: MAIL parameters as sent, or NULL */
	char **rcpts; /* owned, nrcpts entries */
	size_t nrcpts, rcpts_cap;
	int smtputf8;              /* MAIL ... SMTPUTF8 */
	size_t size;               /* MAIL ... SIZE=, or 0 */
	struct smtp_data *data;    /* owned; while reading DATA */
	struct msgstore *ms;       /* owned: the message after DATA (msgstore.h) */
	int delivery_failed;       /* a deliverer failed in on_message */
	int delivered;             /* deliverers that wrote the message in on_message */
	size_t prepended;          /* header bytes msg:prepend_header added */
	struct queue_entry *relay; /* owned: msg:relay's routes, queued with the 250 */
	size_t nrelay;             /* whole routes; relay[nrelay] may be a spare */
	size_t relay_cap;
	int verdict;     /* the reply code of the message's verdict; 0: none yet (metrics) */
	int dsn_ret;     /* MAIL's RET= (enum dsn_ret) */
	char *dsn_envid; /* owned: MAIL's ENVID=, decoded, or NULL */
	struct smtp_rcpt_dsn *rcpt_dsn; /* owned: NOTIFY/ORCPT of rcpts[i], rcpts_cap entries */
	int binarymime;                 /* MAIL ... BODY=BINARYMIME: the message only by BDAT */
	int data_tried;                 /* DATA was given: BDAT may not follow (RFC 3030 2) */
	unsigned chunks;                /* BDAT chunks taken into tx->data */
	/* owned, nrcpts entries once msg:rcpt_reply or a deliverer set one:
	 * the replies only in LMTP sessions (smtp_lmtp.c), delivered in both
	 * (dsn_local.c) */
	struct smtp_rcpt_reply *rcpt_replies;
};

struct smtp_cmd;
struct spf_lua_cache;

/* The command waiting for its hook (or being carried out). */
struct smtp_pending {
	const struct smtp_cmd *cmd;
	char *arg;                   /* owned: HELO name, path, VRFY argument, verb argument */
	char *params;                /* owned: MAIL/RCPT parameters, or NULL */
	char verb[33];               /* custom or unknown verb */
	int smtputf8;                /* MAIL had the SMTPUTF8 parameter */
	int mail_hook;               /* on_mail runs: s:spf() checks arg, its path */
	size_t size;                 /* MAIL's SIZE parameter, or 0 */
	int binarymime;              /* MAIL's BODY=BINARYMIME */
	uint64_t bdat_size;          /* BDAT's chunk size, from check to proceed */
	int bdat_last;               /* BDAT ... LAST */
	int keywords_ref;            /* EHLO keyword table in the registry, or LUA_NOREF */
	struct smtp_xclient xclient; /* XCLIENT's attributes, from check to proceed */
	struct dsn_params dsn;       /* MAIL's or RCPT's parameters of RFC 3461 */
};

/* What a load balancer's PROXY header said about a session's client. */
struct smtp_proxy {
	struct proxy_hdr hdr;
	char ip[INET6_ADDRSTRLEN]; /* the proxy, which connected */
	int port;
};

struct smtp_session {
	struct smtp_session *next, *prev; /* smtp_server.sessions */
	struct smtp_session *reap_next;   /* smtp_server.reap */
	struct smtp_server *srv;          /* borrowed */
	struct conn *conn;                /* owned */
	struct script *script;            /* own reference: the generation we started on */
	char sid[17];
	enum smtp_state state;
	char peer_ip[INET6_ADDRSTRLEN];
	struct anvil_key client; /* the client as --max-per-ip counts it */
	int client_counted;      /* owes srv->anvil an anvil_disconnect() */
	char local_ip[INET6_ADDRSTRLEN];
	int peer_port, local_port;
	struct smtp_proxy *proxy; /* owned: came through --listen-proxy, or NULL */
	char *helo;               /* owned, or NULL */
	char *rdns;               /* owned: s:rdns()'s name, kept for the session, or NULL */
	char rdns_err[16];        /* s:rdns()'s permanent error, kept; "": none yet */
	int esmtp;
	unsigned ext;           /* SMTP_EXT_* advertised in the last EHLO */
	char *user;             /* owned: the authenticated identity, or NULL */
	int auth_failures;      /* failed AUTH attempts */
	int errors;             /* error replies since the last accepted message (--max-errors) */
	struct smtp_sasl sasl;  /* the AUTH exchange in progress, if any */
	int require_tls;        /* MAIL needs TLS (config or a hook) */
	int add_received;       /* prepend our Received: (s.add_received); 1 again at MAIL */
	int tls_active;         /* the connection is encrypted */
	int xclient_trusted;    /* the connecting address is in --xclient-trusted */
	int tls_wait;           /* a handshake is under way: no commands */
	int starttls_pending;   /* STARTTLS accepted: switch once the paced 220 is out */
	struct smtp_pace *pace; /* owned: a paced reply going out, or NULL */
	size_t max_size;
	size_t greeted_max_size; /* max_size and require_tls as on_connect left */
	int greeted_require_tls; /* them: what STARTTLS goes back to */
	unsigned messages;       /* accepted in this session */
	struct smtp_tx *tx;      /* owned, or NULL */
	struct smtp_pending pend;
	struct hook_run *run; /* owned: the parked hook, or NULL */
	int handle_ref;       /* Lua session handle, or LUA_NOREF */
	int msg_ref;          /* Lua message handle during on_message */
	int skip_line;        /* discarding the rest of a too-long line */
	int closing;          /* smtp_session_close() was called */
	int reaping;          /* on the reap list */
	int linger_over;      /* closing: stop waiting for the last reply to drain */
	int input_eof;        /* the client closed its side: close once all is answered */
	size_t data_held;     /* message bytes held now, counted in srv->data_held */
	/* A BDAT chunk being read: stored into tx->data, or discarded
	 * (refused: its reply already went out). */
	enum { SMTP_BDAT_IDLE = 0, SMTP_BDAT_STORE, SMTP_BDAT_SKIP } bdat_mode;
	struct smtp_bdat bdat;
	double data_mark;  /* DATA: when the timer was last re-armed (ev_now) */
	size_t data_bytes; /* DATA: bytes since then */
	int in_process;    /* inside smtp_session_process() */
	int last_code;     /* of the last reply queued (metrics) */
	int lmtp;          /* an LMTP session (--listen-lmtp, RFC 2033) */
	/* LMTP, from the final dot until the transaction ends: each reply
	 * goes out once per recipient (smtp_lmtp.h); SMTP_LMTP_OWN: with the
	 * recipients' own replies where they have one */
	int lmtp_fanout;

	/* owned: s:spf()'s result for this transaction (spf_lua.h), or NULL */
	struct spf_lua_cache *spf;
};

#endif
