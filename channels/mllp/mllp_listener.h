/* mllp_listener.h - an inbound MLLP channel: a libuv TCP server.
 *
 * One listener per address (IPv4 "127.0.0.1", IPv6 "::1"; several per
 * process).  Per connection it runs an MLLP framer and hands every complete
 * frame to the frame callback as a request (cad_mllp_req_t).  The receiver
 * answers each request exactly once with cad_mllp_reply(), from the loop
 * thread, at any later time; the replies of one connection are written in
 * the order the frames arrived, whatever the order of the reply calls.
 *
 * Limits (all per connection unless said otherwise):
 *   max_frame         a larger frame is handed over with status
 *                     CAD_E_TOOBIG (and its first bytes, so a NAK can be
 *                     built); reading stops at once; once that reply is
 *                     written we send FIN, discard what the peer still sends
 *                     (at most 2 s / 64 MiB, so our close does not reset the
 *                     connection under the NAK), then close.
 *   idle_timeout      closed after this long without activity, when no
 *                     request is being processed.  Activity is a frame's
 *                     bytes or a write; bytes outside any frame (garbage)
 *                     and empty frames are not activity.
 *   frame_timeout     closed when a frame stays unfinished this long since
 *                     its start block (slowloris), however slowly it grows;
 *                     a frame cut by a new start block does not restart the
 *                     clock (only a frame that ends does).
 *   max_inflight      reading stops while this many requests are unanswered
 *                     or unsent, and resumes at half of it.
 *   max_unsent        reading stops while this many reply bytes wait for the
 *                     peer to read them (a client that never reads its ACKs
 *                     cannot grow our memory); resumes at half.
 *   max_connections   per listener; a connection over it is closed at once.
 *   fd_reserve        process: an accepted socket that would leave fewer than
 *                     this many descriptors free below the soft
 *                     RLIMIT_NOFILE is closed at once (ACCEPT_ERROR,
 *                     UV_EMFILE, reason "fd_reserve"), so the store and the
 *                     destinations can always open their files; accepting
 *                     resumes by itself as descriptors free up.
 *   buffered bytes    process: the framers of all connections together hold
 *                     at most cad_mllp_set_buffer_limit() bytes (default
 *                     256 MiB), plus what the one read that crossed it
 *                     added (at most 64 KiB, and that framer's doubling).
 *                     Over it, no connection reads (each stops at its next
 *                     read: no new frame is taken, nothing crashes) but one
 *                     with a frame in progress, which may finish that frame
 *                     (so a max_frame message always gets through: at most
 *                     the bound + one max_frame); all resume below half.  The frame clock keeps
 *                     running for them: a stalled half frame is closed at
 *                     frame_timeout and gives its memory back.  A framer
 *                     holds about what it was sent (it grows by doubling and
 *                     shrinks after a large frame), not max_frame.
 *   garbage           more than max_frame bytes outside any frame since the
 *                     last good frame: the peer is not speaking MLLP, the
 *                     connection is closed ("garbage").
 * A connection therefore holds at most max_frame + one read + max_unsent
 * bytes plus max_inflight requests.
 *
 * Malformed frames: a frame holding a 0x1C that is not followed by 0x0D
 * (mllp.h) is not handed to the frame callback.  The listener answers it in
 * its place among the replies with a NAK (AR; ERR code 102 "0x1C (MLLP end
 * block) inside the message ...", built from its MSH when that can be read,
 * in ack_style) and reports CAD_MLLP_EV_BADFRAME with reason
 * "stray_end_block"; the connection goes on and every later frame is
 * answered as usual.  A 0x1C that is the last byte received is taken as a
 * frame end after 200 ms without the next byte (a sender without the CR),
 * or at the peer's EOF.
 *
 * TLS and access control: every accepted connection is a cad_transport_t
 * (transport.h, the same TCP+TLS stack the sender uses); with opts.tls it
 * runs the TLS handshake: ciphertext read is decrypted before the framer,
 * replies are encrypted before they are written, a closing reply is
 * followed by close_notify (the transport's lingering close).  The handshake must
 * finish within handshake_timeout_ms; a failure is reported with
 * CAD_MLLP_EV_TLS_FAILED and its reason, then the connection closes
 * ("tls_error").  A connection that sends nothing and closes is not a
 * failure (a probe).  With opts.allow, a client whose address is in none of
 * the ranges is closed at once (CAD_MLLP_EV_DENIED).  update() swaps both
 * for new connections (certificate reload on SIGHUP).
 *
 * Shutdown: cad_mllp_listener_close() stops accepting and reading, lets every
 * unanswered request be answered and written (or drops it after drain_ms),
 * closes every connection and finally calls `done`.
 *
 * Memory: the listener, its connections and requests are owned here.  A
 * request stays valid until cad_mllp_reply() is called on it, even if its
 * connection closed meanwhile (the reply is then discarded).  Frame bytes
 * passed to the callback are valid only during the call.  Strings in
 * options are copied.  Everything runs on the loop thread.
 */
#ifndef CAD_MLLP_LISTENER_H
#define CAD_MLLP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ack.h"       /* cad_ack_style_t */
#include "hl7.h"       /* cad_str_t */
#include "transport.h" /* TLS contexts, address allow-lists */

typedef struct cad_mllp_listener cad_mllp_listener_t;
typedef struct cad_mllp_req cad_mllp_req_t;

typedef struct cad_mllp_listener_opts {
  const char *host;              /* IP literal: "127.0.0.1", "::1", "0.0.0.0", "::" */
  int port;                      /* 0 = ephemeral (see cad_mllp_listener_port) */
  size_t max_frame;              /* 0 = 4 MiB */
  uint64_t idle_timeout_ms;      /* 0 = none */
  uint64_t frame_timeout_ms;     /* 0 = none */
  uint32_t max_connections;      /* 0 = 4096 */
  uint32_t max_inflight;         /* 0 = 64 */
  size_t max_unsent;             /* 0 = 1 MiB */
  cad_tls_ctx_t *tls;            /* server TLS context (referenced), NULL = plain
                                MLLP.  Each connection keeps the context it
                                was accepted with; update() replaces it for
                                new ones (certificate reload). */
  uint64_t handshake_timeout_ms; /* TLS only; 0 = 10 s */
  const cad_cidr_t *allow;       /* client address ranges accepted (copied);
                                nallow 0 = everyone */
  size_t nallow;
  uint32_t fd_reserve;       /* descriptors kept free; 0 = CAD_MLLP_FD_RESERVE */
  cad_ack_style_t ack_style; /* of the NAKs built here (stray 0x1C) */
} cad_mllp_listener_opts_t;

/* Descriptors kept free for the store and destinations (default), and a
 * few more the start-up check counts for the process itself. */
#define CAD_MLLP_FD_RESERVE 64u
#define CAD_MLLP_FD_SLACK 16u

/* At start: raise the soft RLIMIT_NOFILE to the hard one and check that
 * `conns` connections (max_connections of every listener), the descriptors
 * open now, CAD_MLLP_FD_SLACK and CAD_MLLP_FD_RESERVE fit it.  Returns 0, or
 * CAD_E_FULL with *limit (the limit now) and *need set, for the error
 * message.  An unlimited or unreadable limit is 0 (*limit 0). */
int cad_mllp_raise_fd_limit(uint64_t conns, uint64_t *limit, uint64_t *need);
/* Default process-wide bound on buffered inbound bytes. */
#define CAD_MLLP_BUFFER_LIMIT ((size_t)256 << 20)

/* The process-wide bound on bytes held by the framers of every connection
 * of every listener (0 = the default, CAD_MLLP_BUFFER_LIMIT).  Applies at
 * once.  Loop thread only. */
void cad_mllp_set_buffer_limit(size_t bytes);
/* Bytes held now by every connection's framer, in all listeners. */
size_t cad_mllp_buffered(void);

/* What the engine needs to know about a connection (for logs). */
typedef struct cad_mllp_conn_info {
  uint64_t id;   /* unique in the process, from 1 */
  char peer[64]; /* "127.0.0.1:40122" or "[::1]:40122" */
} cad_mllp_conn_info_t;

typedef enum {
  CAD_MLLP_EV_OPEN = 1,     /* a connection was accepted */
  CAD_MLLP_EV_REFUSED,      /* over max_connections: closed at once */
  CAD_MLLP_EV_CLOSE,        /* a connection closed; `reason` says why */
  CAD_MLLP_EV_BADFRAME,     /* a frame was cut by a new start block and dropped
                           (reason NULL), or refused with a NAK for a stray
                           0x1C (reason "stray_end_block") */
  CAD_MLLP_EV_SKIPPED,      /* bytes outside any frame: reported once per connection
                           (the first time, `count` = bytes so far); the total
                           comes with CLOSE */
  CAD_MLLP_EV_PAUSE,        /* backpressure: reading stopped */
  CAD_MLLP_EV_RESUME,       /* reading resumed */
  CAD_MLLP_EV_ACCEPT_ERROR, /* accept() failed, or (reason "fd_reserve", err
                           UV_EMFILE) a connection was refused to keep the
                           descriptor reserve; err set */
  CAD_MLLP_EV_DENIED,       /* the client's address is not in `allow`: closed at
                           once (no OPEN / CLOSE events) */
  CAD_MLLP_EV_TLS_FAILED,   /* the TLS handshake (or a record) failed: `detail`
                           says why ("certificate expired (...)"); a CLOSE
                           event with reason "tls_error" follows */
  CAD_MLLP_EV_TLS_READY,    /* handshake done; `detail` is the client
                           certificate's subject CN ("" without one) */
} cad_mllp_event_kind_t;

typedef struct cad_mllp_event {
  cad_mllp_event_kind_t kind;
  const cad_mllp_conn_info_t *conn; /* NULL for listener-level events */
  const char *reason;               /* CLOSE: "eof", "reset", "idle_timeout", "frame_timeout",
                         "too_big", "garbage", "write_error", "read_error",
                         "shutdown", "closed_by_reply" */
  int err;                          /* libuv / CAD_E_* code when relevant, else 0 */
  uint64_t count;                   /* SKIPPED: bytes; CLOSE: bytes skipped on the connection
                         in all; PAUSE: requests in flight */
  const char *detail;               /* TLS_FAILED / TLS_READY (valid during the call), else NULL */
} cad_mllp_event_t;

/* status 0: `frame` is a complete message (without SB/EB/CR);
 * status CAD_E_TOOBIG: `frame` holds the first bytes of an oversized frame.
 * `data` is the listener's current data pointer. */
typedef void (*cad_mllp_frame_cb)(cad_mllp_req_t *req, int status, cad_str_t frame, void *data);
typedef void (*cad_mllp_event_cb)(const cad_mllp_event_t *ev, void *data);

/* Bind and listen.  Returns 0, or a libuv error (UV_EADDRINUSE, UV_EINVAL for
 * a host that is not an IP literal, ...); on error nothing is left open. */
int cad_mllp_listener_start(uv_loop_t *loop, const cad_mllp_listener_opts_t *opts,
                            cad_mllp_frame_cb on_frame, cad_mllp_event_cb on_event, void *data,
                            cad_mllp_listener_t **out);

/* The port actually bound (useful with port 0). */
int cad_mllp_listener_port(const cad_mllp_listener_t *l);
/* Number of open connections. */
size_t cad_mllp_listener_nconns(const cad_mllp_listener_t *l);
/* Rebind the data pointer given to the callbacks (configuration reload). */
void cad_mllp_listener_set_data(cad_mllp_listener_t *l, void *data);
/* Apply new limits (host and port are ignored).  Timeouts, max_inflight,
 * max_unsent and max_connections apply at once; max_frame, tls and allow to
 * connections accepted from now on.  Returns 0 or CAD_E_NOMEM (then nothing
 * changed). */
int cad_mllp_listener_update(cad_mllp_listener_t *l, const cad_mllp_listener_opts_t *opts);

/* Stop accepting, drain, close (see above).  `done` (may be NULL) is called
 * once everything is closed; the listener is freed just after it returns. */
void cad_mllp_listener_close(cad_mllp_listener_t *l, uint64_t drain_ms, void (*done)(void *arg),
                             void *arg);

enum {
  CAD_MLLP_REPLY_CLOSE = 1, /* close the connection after this reply is written */
};

/* Answer a request: `ack` (a message without MLLP framing, copied here; len
 * 0 = nothing to send) is framed and written in order.  Frees the request.
 * Returns 0, CAD_E_NOMEM (the connection is then closed), or CAD_E_STATE
 * when the connection had already closed (the reply was dropped). */
int cad_mllp_reply(cad_mllp_req_t *req, const char *ack, size_t len, unsigned flags);

/* The connection a request came from (valid until the reply). */
const cad_mllp_conn_info_t *cad_mllp_req_conn(const cad_mllp_req_t *req);

/* For a CAD_E_TOOBIG request: the frame's size, and whether it was cut off
 * before its end (then the size is the bytes received so far, at least). */
uint64_t cad_mllp_req_size(const cad_mllp_req_t *req, bool *cut);

#endif
