/* transport.h - one small interface over a connected TCP stream, plain or
 * TLS, so that a channel does not care which it has.
 *
 * A cad_transport_t wraps one libuv TCP handle.  The channel either accepts
 * into it (uv_accept(server, cad_transport_stream(t)) then
 * cad_transport_accept()) or connects it (cad_transport_connect()).  From
 * then on it sees plaintext only:
 *
 *   on_ready   the stream is usable: at once after accept for plain TCP,
 *              after the TLS handshake otherwise (and, for connect, after
 *              the TCP connection is made)
 *   on_data    plaintext bytes arrived (valid only during the call)
 *   on_error   the stream is finished for reading: UV_EOF (the peer
 *              closed), a libuv error (UV_ECONNREFUSED, UV_ECONNRESET, ...),
 *              UV_ETIMEDOUT (the TLS handshake did not finish in time) or
 *              UV_EPROTO (TLS failure: cad_transport_tls_reason() and
 *              cad_transport_reason() say why).  Called at most once; the
 *              owner then closes the transport.
 *
 * TLS runs on the loop thread with memory BIOs: ciphertext read from the
 * socket is written into OpenSSL, ciphertext OpenSSL produces is written to
 * the socket with uv_write.  Nothing blocks.  Renegotiation is refused.
 *
 * Contexts (cad_tls_ctx_t) are built from files once and shared, reference
 * counted: a connection keeps the context it started with, so replacing a
 * listener's context (certificate reload) affects new connections only.
 *
 * Memory: cad_transport_new() allocates; cad_transport_close() frees after
 * its handles are closed (the close callback is the last callback; after
 * close is called no other callback runs).  Buffers given to
 * cad_transport_write() are borrowed until its callback (plain TCP, like
 * uv_write) or only during the call (TLS: they are encrypted at once).
 * Strings in options are copied.  Loop thread only.
 */
#ifndef CAD_TRANSPORT_H
#define CAD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net_addr.h"

#include "cad_mem.h"

/* ---- TLS contexts ----------------------------------------------------- */

typedef struct cad_tls_ctx cad_tls_ctx_t;

typedef enum {
  CAD_TLS_V1_2 = 0,
  CAD_TLS_V1_3,
} cad_tls_version_t;

typedef struct cad_tls_server_opts {
  const char *cert_file;              /* PEM certificate chain (required) */
  const char *key_file;               /* PEM private key (required) */
  const char *ca_file;                /* CAs that client certificates must chain to;
                              NULL = no client certificates asked for */
  bool require_client_cert;           /* mutual TLS: a client without a valid
                              certificate is refused (needs ca_file) */
  const char *const *allowed_clients; /* subject CN or SAN (DNS, IP, email)
                              names a client certificate must carry one
                              of; NULL / 0 = any certificate from ca_file */
  size_t nallowed;
  const char *ciphers;           /* OpenSSL cipher list for TLS 1.2; NULL = default */
  cad_tls_version_t min_version; /* default (0) TLS 1.2 */
} cad_tls_server_opts_t;

typedef struct cad_tls_client_opts {
  const char *ca_file;   /* CAs the server certificate must chain to;
                              NULL = the system's default CA store */
  const char *cert_file; /* client certificate for mutual TLS, or NULL */
  const char *key_file;  /* its key (required with cert_file) */
  bool no_verify;        /* do not verify the server at all (testing only) */
  const char *ciphers;   /* NULL = default */
  cad_tls_version_t min_version;
} cad_tls_client_opts_t;

/* Build a context from files.  Returns 0, or CAD_E_INVAL / CAD_E_IO /
 * CAD_E_NOMEM with a one-line reason in err (NUL-terminated, at most errcap
 * bytes; no secrets).  The new context has one reference. */
int cad_tls_server_ctx_new(const cad_tls_server_opts_t *o, cad_tls_ctx_t **out, char *err,
                           size_t errcap);
int cad_tls_client_ctx_new(const cad_tls_client_opts_t *o, cad_tls_ctx_t **out, char *err,
                           size_t errcap);
cad_tls_ctx_t *cad_tls_ctx_ref(cad_tls_ctx_t *c);
/* The OpenSSL context inside (borrowed: valid while c is referenced), for
 * a server with its own TLS stack (channels/http, libh2o).  Its verify
 * callback still applies allowed_clients. */
struct ssl_ctx_st *cad_tls_ctx_ssl(cad_tls_ctx_t *c);
void cad_tls_ctx_unref(cad_tls_ctx_t *c); /* NULL is ignored */

/* Why a TLS connection failed (or CAD_TLS_OK). */
typedef enum {
  CAD_TLS_OK = 0,
  CAD_TLS_EXPIRED,            /* the peer's certificate has expired */
  CAD_TLS_NOT_YET_VALID,      /* the peer's certificate is not valid yet */
  CAD_TLS_UNKNOWN_CA,         /* the peer's certificate is not signed by a trusted CA */
  CAD_TLS_HOSTNAME_MISMATCH,  /* the server certificate does not name the host */
  CAD_TLS_NO_CLIENT_CERT,     /* mutual TLS: the client sent no certificate */
  CAD_TLS_CLIENT_NOT_ALLOWED, /* mutual TLS: the certificate names no allowed client */
  CAD_TLS_BAD_CERT,           /* the peer's certificate is unusable for another reason */
  CAD_TLS_PEER_REJECTED,      /* the peer refused our certificate (its alert says why) */
  CAD_TLS_VERSION,            /* no common protocol version or cipher */
  CAD_TLS_NOT_TLS,            /* the peer does not speak TLS */
  CAD_TLS_PROTOCOL,           /* any other TLS failure */
} cad_tls_reason_t;

/* "certificate expired", "unknown CA", ... (static text). */
const char *cad_tls_reason_name(cad_tls_reason_t r);

/* ---- TLS sessions ----------------------------------------------------------
 *
 * The TLS engine of one connection without a socket (OpenSSL on memory
 * BIOs): ciphertext in, plaintext out, and the reverse.  A transport runs
 * one (channels use transports, not sessions directly).  Everything is
 * synchronous and never blocks.
 *
 * Memory: the session references its context; `net` buffers are the
 * caller's (bytes are appended).  Plaintext handed to on_plain is valid only
 * during the call. */

typedef struct cad_tls_session cad_tls_session_t;

typedef struct cad_tls_session_cbs {
  void (*on_ready)(void *ud);                          /* handshake done */
  void (*on_plain)(void *ud, const char *p, size_t n); /* application data */
  /* Write out (and empty) what net holds now: called before on_ready and
   * on_plain, so that bytes the owner writes from them follow ours. */
  void (*flush)(void *ud, cad_buf_t *net);
} cad_tls_session_cbs_t;

/* A server session (server_name NULL) or a client one (see
 * cad_transport_connect for server_name and verify_host).  Returns 0 or
 * CAD_E_NOMEM / CAD_E_INVAL. */
int cad_tls_session_new(cad_tls_ctx_t *ctx, bool server, const char *server_name, bool verify_host,
                        const cad_tls_session_cbs_t *cbs, void *ud, cad_tls_session_t **out);
/* Client: append the first handshake message to net.  0 or an error. */
int cad_tls_session_start(cad_tls_session_t *s, cad_buf_t *net);
/* Ciphertext from the peer: runs the handshake (on_ready once it is done),
 * decrypts (on_plain, in order), and appends what must be sent back
 * (handshake messages, alerts) to net, even when it fails.  Returns 0,
 * UV_EOF (the peer sent close_notify), UV_EPROTO (TLS failure: see
 * cad_tls_session_reason) or CAD_E_NOMEM. */
int cad_tls_session_feed(cad_tls_session_t *s, const char *p, size_t n, cad_buf_t *net);
/* Encrypt application data into net (only after on_ready). */
int cad_tls_session_encrypt(cad_tls_session_t *s, const char *p, size_t n, cad_buf_t *net);
/* Append our close_notify alert to net. */
int cad_tls_session_close_notify(cad_tls_session_t *s, cad_buf_t *net);
bool cad_tls_session_ready(const cad_tls_session_t *s);
/* Set the failure reason from outside (the peer hung up mid-handshake). */
void cad_tls_session_set_reason(cad_tls_session_t *s, cad_tls_reason_t r, const char *detail);
cad_tls_reason_t cad_tls_session_reason(const cad_tls_session_t *s);
const char *cad_tls_session_reason_text(const cad_tls_session_t *s); /* "" when none */
const char *cad_tls_session_peer_name(const cad_tls_session_t *s);   /* subject CN or "" */
void cad_tls_session_free(cad_tls_session_t *s);                     /* NULL is ignored */

/* ---- transports --------------------------------------------------------- */

typedef struct cad_transport cad_transport_t;

typedef struct cad_transport_cbs {
  void (*on_ready)(cad_transport_t *t);
  void (*on_data)(cad_transport_t *t, const char *p, size_t n);
  void (*on_error)(cad_transport_t *t, int err);
} cad_transport_cbs_t;

/* Allocate a transport and initialise its TCP handle on `loop`.  `cbs` is
 * copied; `data` is the owner's pointer (cad_transport_data()).  Returns 0
 * or CAD_E_NOMEM / a libuv error. */
int cad_transport_new(uv_loop_t *loop, const cad_transport_cbs_t *cbs, void *data,
                      cad_transport_t **out);

/* Optional gate on reading, for an owner bounding the memory of many
 * connections together.  may_read (NULL = always) is asked before each
 * read from the socket, from inside libuv's allocation: it must not stop or
 * start reading on this transport.  When it says false nothing is read, and
 * `refused` runs next (outside the allocation): the owner stops reading
 * there (cad_transport_read_stop) until it wants bytes again, or the loop
 * asks again at its next turn. */
void cad_transport_set_read_gate(cad_transport_t *t, bool (*may_read)(cad_transport_t *t),
                                 void (*refused)(cad_transport_t *t));

/* The TCP stream, for uv_accept() (before cad_transport_accept). */
uv_stream_t *cad_transport_stream(cad_transport_t *t);
void *cad_transport_data(const cad_transport_t *t);
void cad_transport_set_data(cad_transport_t *t, void *data);

/* Server side, after uv_accept (the owner may look at the peer with
 * cad_transport_peer_addr and refuse it by closing first): set TCP_NODELAY
 * and start reading; with `tls` (a server context, referenced until the
 * transport is freed) run the handshake, failing with UV_ETIMEDOUT if it
 * takes longer than handshake_timeout_ms (0 = 30 s).  A peer that hangs up
 * before sending a single byte did not try TLS at all (a port probe):
 * on_error then gets UV_EOF or the socket's error, not UV_EPROTO.  Plain
 * TCP: on_ready runs from inside this call.  Returns 0 or a libuv error
 * (then no callback runs). */
int cad_transport_accept(cad_transport_t *t, cad_tls_ctx_t *tls, uint64_t handshake_timeout_ms);

/* Client side: connect to `addr`; with `tls` (a client context) run the
 * handshake; `server_name` (copied; may be NULL) is sent as SNI when it is
 * a name and, when verify_host is true, must match the server certificate
 * (a DNS name, or an IP address matched against IP SANs).  Connection and
 * handshake time are bounded by the caller (close the transport).  Returns
 * 0 (on_ready or on_error follows) or a libuv error (then no callback). */
int cad_transport_connect(cad_transport_t *t, const struct sockaddr *addr, cad_tls_ctx_t *tls,
                          const char *server_name, bool verify_host);

/* Write plaintext (see Memory above).  Plain TCP with nothing queued: what
 * the socket takes at once is written now, and when that is everything the
 * call returns CAD_TRANSPORT_WRITTEN and cb does NOT run (the buffers are
 * free again at once; this saves libuv's deferred completion, which costs
 * an epoll_ctl per write on Linux).  Otherwise cb (may be NULL) runs once
 * with 0 when the bytes were handed to the kernel, or an error, and the
 * call returns 0; or it returns an error (cb will not run).  Only after
 * on_ready; still allowed after on_error(UV_EOF): the peer finished
 * sending, not reading. */
#define CAD_TRANSPORT_WRITTEN 1
typedef void (*cad_transport_write_cb)(cad_transport_t *t, int status, void *arg);
int cad_transport_write(cad_transport_t *t, const uv_buf_t *bufs, unsigned nbufs,
                        cad_transport_write_cb cb, void *arg);

/* Backpressure: stop / resume reading.  With TLS, plaintext decrypted from
 * the read in progress is still delivered after read_stop. */
void cad_transport_read_stop(cad_transport_t *t);
int cad_transport_read_start(cad_transport_t *t);

/* Read now, without waiting, what the kernel already holds for the
 * connection (bytes, the peer's FIN, a reset) and handle it as the loop
 * would: on_data and on_error run from inside this call.  For an owner
 * about to reuse a connection that sat idle, so that a close which arrived
 * meanwhile is seen before anything is written, not after.  Does nothing
 * before the connection is made, while reading is stopped, or after
 * on_error / close.  Returns 0, or a libuv error from the socket itself
 * (then nothing was read and no callback ran). */
int cad_transport_read_pending(cad_transport_t *t);

/* True once the TCP connection exists (accepted, or connect succeeded),
 * whether or not the TLS handshake has finished. */
bool cad_transport_connected(const cad_transport_t *t);

/* Close.  graceful: for TLS send close_notify, let pending writes finish and
 * send FIN (bounded: at most linger_ms, 0 = 2 s); otherwise close at once
 * (pending writes are cancelled, their callbacks run with UV_ECANCELED).
 * `done` (may be NULL) runs after every handle is closed, then the
 * transport is freed.  Calling close twice is a no-op, except that a
 * non-graceful close ends a lingering one at once.  No callback but
 * write callbacks and `done` runs after close is called. */
void cad_transport_close(cad_transport_t *t, bool graceful, uint64_t linger_ms,
                         void (*done)(void *arg), void *arg);

/* A lingering close, for a server whose last reply must reach a peer that
 * may still be sending: as a graceful close (close_notify, pending writes,
 * FIN), then read and discard what the peer sends until its FIN or an
 * error, at most max_discard bytes (0 = 64 MiB) and linger_ms (0 = 2 s),
 * then close.  Closing with unread input would make the kernel send a
 * reset, which can destroy the reply before the peer reads it.  `done` as
 * for cad_transport_close. */
void cad_transport_close_linger(cad_transport_t *t, uint64_t linger_ms, size_t max_discard,
                                void (*done)(void *arg), void *arg);

/* After on_error(UV_EPROTO): why (CAD_TLS_OK otherwise), and a one-line
 * text ("certificate expired", "unknown CA (unable to get local issuer
 * certificate)").  Valid until the transport is freed. */
cad_tls_reason_t cad_transport_tls_reason(const cad_transport_t *t);
const char *cad_transport_reason(const cad_transport_t *t);
bool cad_transport_is_tls(const cad_transport_t *t);
/* The verified peer certificate's subject CN (or "" when none), for logs. */
const char *cad_transport_peer_name(const cad_transport_t *t);
/* Bytes given to the kernel and not yet written (uv write queue). */
size_t cad_transport_write_queue_size(const cad_transport_t *t);
/* Bytes read from / handed to the socket so far (ciphertext for TLS). */
uint64_t cad_transport_bytes_in(const cad_transport_t *t);
uint64_t cad_transport_bytes_out(const cad_transport_t *t);
/* The peer's address (after accept or connect).  0 or a libuv error. */
int cad_transport_peer_addr(const cad_transport_t *t, struct sockaddr_storage *out);

/* ---- address allow-lists ------------------------------------------------ */

/* cad_cidr_t and the parsers with reasons: net_addr.h. */

/* Parse "10.0.0.0/8", "127.0.0.1" (= /32), "::1", "fd00::/8".  Returns 0 or
 * CAD_E_INVAL (cad_cidr_parse_why says why).  Host bits beyond the prefix
 * are ignored. */
int cad_cidr_parse(const char *s, cad_cidr_t *out);
/* True when `sa` (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts
 * as IPv4) is inside one of the n ranges. n == 0: always true. */
bool cad_cidr_match(const cad_cidr_t *list, size_t n, const struct sockaddr *sa);

#endif
