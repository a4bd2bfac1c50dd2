/* mllp_sender.h - an outbound MLLP destination: send one message, read and
 * check its ACK, report the outcome.
 *
 * One sender talks to one downstream listener (host:port, plain TCP or TLS
 * through transport.h) and carries one message at a time: the delivery
 * worker (engine/store/delivery.h) calls cad_mllp_sender_deliver() with the next
 * message of its FIFO and waits for the outcome before the next one.  So
 * the same message is never in flight twice: every attempt that does not
 * end with a matching ACK closes the connection before RETRY is reported,
 * and a late ACK can only arrive on a connection that no longer exists.
 *
 * An attempt:
 *   1. connect when there is no connection: the host is an IP literal, or a
 *      name resolved with uv_getaddrinfo (on the thread pool, every
 *      connect).  Its addresses (at most 16) are tried in the order the
 *      resolver gives them: one that refuses or does not answer the TCP
 *      connect moves on to the next, and only when every one failed is the
 *      connect a failure (the reason is the last address's).  Once a TCP
 *      connection is made, a TLS failure on it is final.
 *      connect_timeout bounds the whole connect: the lookup, every address
 *      and the TLS handshake.  Each address gets an even share of the time
 *      left (at least 2 s, or all that is left), so one that never answers
 *      cannot use up the time of the others; the last address, and a TLS
 *      handshake, may use all that is left.  A lookup still running at the
 *      deadline is given up: uv_cancel() when the thread pool has not
 *      started it, otherwise its answer is ignored when it comes.
 *      A failure is RETRY with the reason ("connection refused",
 *      "certificate expired", "connect to ... timed out after 10s",
 *      "cannot resolve ...: no answer within 10s").
 *   2. write the message in an MLLP frame; with new_control_id its MSH-10 is
 *      first replaced by a new random id (per attempt).
 *   3. wait at most ack_timeout for one frame and parse it as HL7: its MSA-2
 *      must equal the MSH-10 sent.  Nothing in time, a closed connection, a
 *      frame that is not an ACK, or an ACK of another message: close, RETRY.
 *   4. MSA-1 AA / CA: OK.  AE / CE: RETRY, or FAIL (dead letter) when
 *      ae_dead_letter.  AR / CR: RETRY, or FAIL when ar_dead_letter.
 *   5. per_message: close the connection (gracefully); otherwise keep it,
 *      and close it after idle_close without a message (when set).
 * Backoff between attempts is the delivery worker's business, not ours.
 *
 * A kept connection the peer closed while it was idle (FIN or reset, seen
 * by the loop while idle or only when the next message is due) is not a
 * failed attempt: before writing on a kept connection the sender reads what
 * the kernel already holds for it, and a close found then, or anything else
 * that arrives before the message is written, makes it connect again at
 * once and send there (stats.reopened), with no RETRY and no backoff.
 * Nothing had been written on the closed connection, so nothing is sent
 * twice.  A connection made for the message is never treated so: a peer
 * that closes every connection gets one immediate reconnect per message,
 * then ordinary failures.  A close after the message was written is a
 * failure (RETRY): the peer may have read it.
 *
 * Memory: the sender owns its connection, timer, framer and a copy of the
 * options' strings; the TLS context is referenced.  The message bytes given
 * to deliver are borrowed until its callback runs.  The ACK is parsed in a
 * bounded arena (max_ack bytes, default 1 MiB).  A name lookup is owned by
 * its own request, not by the sender: a sender that stops waiting for it
 * (timeout, close) forgets it, and its callback, which libuv runs in every
 * case, only frees the request.  So closing never waits for DNS, but the
 * loop stays alive (an active request) until getaddrinfo returns.  Loop
 * thread only.  Test seams: mllp_sender_int.h.
 */
#ifndef CAD_MLLP_SENDER_H
#define CAD_MLLP_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "transport.h"

typedef struct cad_mllp_sender cad_mllp_sender_t;

/* The same values as engine/store/delivery.h's cad_deliver_outcome_t. */
enum {
  CAD_MLLP_SEND_OK = 0,
  CAD_MLLP_SEND_RETRY = 1,
  CAD_MLLP_SEND_FAIL = 2,
};

typedef struct cad_mllp_sender_opts {
  const char *host;            /* IP literal or DNS name (required) */
  int port;                    /* 1..65535 */
  bool per_message;            /* a connection per message (default: persistent) */
  uint64_t connect_timeout_ms; /* 0 = 10 s: lookup + every address + TLS handshake */
  uint64_t ack_timeout_ms;     /* 0 = 30 s */
  uint64_t idle_close_ms;      /* 0 = keep an idle connection open */
  bool ae_dead_letter;         /* AE/CE: FAIL instead of RETRY */
  bool ar_dead_letter;         /* AR/CR: FAIL instead of RETRY */
  bool new_control_id;         /* a new MSH-10 per attempt */
  cad_tls_ctx_t *tls;          /* client context (referenced), or NULL for TCP */
  const char *server_name;     /* TLS: name to verify and send as SNI; NULL = host */
  bool verify_hostname;        /* TLS: check the certificate names server_name */
  size_t max_ack;              /* largest ACK accepted; 0 = 1 MiB */
} cad_mllp_sender_opts_t;

/* outcome: CAD_MLLP_SEND_*; detail: a short reason, valid during the call
 * ("AA", "no ACK within 30s", "connection refused (ECONNREFUSED)"; for AE
 * and AR the receiver's own reasons, labelled: "AE from receiver: MSA-3:
 * Unknown patient; ERR-3: 204 Unknown key identifier; ERR-8: ...", at most
 * 255 bytes).  The receiver's text is what an operator needs to fix the
 * message; it is written to the dead letter and the log line. */
typedef void (*cad_mllp_send_cb)(void *ctx, int outcome, const char *detail);

/* What the last finished attempt saw (for `caduceus send` and logs). */
typedef struct cad_mllp_result {
  char ack_code[3];    /* "AA", "AE", ... or "" without a valid ACK */
  char control_id[64]; /* MSH-10 as sent (truncated to 63 bytes) */
  uint64_t latency_us; /* from the write to the ACK (0 without one) */
  char err_text[128];  /* AE/AR/CE/CR: the receiver's reason: ERR-8, else
                            ERR-3.2, else the text of ERR-1 (v2.1-2.4), else
                            MSA-3; control bytes as spaces, "" when none.
                            Receiver text: for reports, not for logs. */
  char msa3[96];       /* AE/AR...: MSA-3 decoded ("" when empty); report only */
  char err[160];       /* AE/AR...: the ERR segment: "CODE text: ERR-8" ("" without
                            one); report only */
} cad_mllp_result_t;

/* connect_failures counts failed connects (all addresses), not addresses;
 * reopened counts kept connections found closed and replaced at once. */
typedef struct cad_mllp_sender_stats {
  uint64_t connects, connect_failures, sent, acks_ok, acks_error, acks_reject, no_ack, bad_acks,
      closed, reopened;
} cad_mllp_sender_stats_t;

/* Check options and create the sender (no connection yet).  Returns 0 or
 * CAD_E_INVAL (the reason in err) / CAD_E_NOMEM. */
int cad_mllp_sender_new(uv_loop_t *loop, const cad_mllp_sender_opts_t *o, cad_mllp_sender_t **out,
                        char *err, size_t errcap);

/* Send one message (the signature of cad_dest_driver_t.deliver, with `impl`
 * the sender).  Returns 0 when started (done runs exactly once, later, on
 * the loop) or CAD_E_STATE (a message is already in flight, or closing);
 * done is then not called.  `seq` is only carried for the caller. */
int cad_mllp_sender_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                            cad_mllp_send_cb done, void *ctx);

const cad_mllp_result_t *cad_mllp_sender_last(const cad_mllp_sender_t *s);
void cad_mllp_sender_get_stats(const cad_mllp_sender_t *s, cad_mllp_sender_stats_t *out);

/* Close: a message in flight finishes at once with RETRY "shutting down"
 * (its callback runs inside this call), the connection is closed, then
 * `done` (may be NULL) runs and the sender is freed.  A name lookup in
 * flight is given up, not waited for (see Memory). */
void cad_mllp_sender_close(cad_mllp_sender_t *s, void (*done)(void *arg), void *arg);

#endif
