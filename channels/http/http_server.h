/* http_server.h - a small HTTP/1.1 server on the engine's libuv loop.
 *
 * The transport of the admin API (engine/runtime/admin.h): it listens on one
 * address, parses requests with Debian's libh2o (the libuv flavour, so it
 * shares the engine's loop), and hands each request, reduced to the few
 * fields the admin API reads, to one handler, which answers at once or
 * later (cad_http_defer).  Bodies beyond `max_body` are refused by h2o (413)
 * before the handler runs; a filter gives such answers of h2o's a JSON body.  Every
 * response closes the connection (admin traffic is a scrape a second), so
 * nothing lingers at shutdown but a connection that has not sent its
 * request yet, which h2o closes after `req_timeout_ms`.  A closed
 * connection is closed gracefully: the server's side is shut down and what
 * the client still sends (the rest of a refused body) is drained for up to
 * 2 s or 16 MiB, so the client reads the 413 instead of a reset; closing
 * the server ends such drains at once.  At most 128 connections are open
 * at once, draining ones included; more are closed as they are accepted.
 *
 * TLS: with `tls` (channels/net/transport.h, a server context) the server
 * speaks HTTPS only, through h2o's TLS on that context's SSL_CTX (so its
 * versions, ciphers and client certificate rules apply as on MLLP).
 *
 * Memory: the server owns its h2o state; a request's spans are borrowed
 * from h2o's per-request pool, valid during the handler only.  The handler
 * fills a cad_http_res_t whose `body` it malloc'd; the server frees it.
 */
#ifndef CAD_HTTP_SERVER_H
#define CAD_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* One request, as the handler sees it.  Spans, not NUL-terminated. */
typedef struct cad_http_req {
  const char *method;
  size_t method_len;
  const char *path; /* without the query, as sent (not decoded) */
  size_t path_len;
  const char *query; /* after '?', or NULL */
  size_t query_len;
  const char *authorization; /* the Authorization header's value, or NULL */
  size_t authorization_len;
  const char *peer; /* the client's address ("127.0.0.1"), NUL-terminated */
  /* Beside the admin API's fields, for a message source (src_http.c): */
  const char *body; /* the request body (h2o caps it at max_body), or NULL */
  size_t body_len;
  const char *content_type; /* the Content-Type header's value, or NULL */
  size_t content_type_len;
  void *pending; /* the request, for cad_http_server_respond when deferred */
  void *priv;    /* the server's: cad_http_defer() reads it (NULL: cannot defer) */
} cad_http_req_t;

typedef struct cad_http_res {
  int status;               /* 200, 401, ... */
  const char *content_type; /* static string */
  char *body;               /* malloc'd by the handler, freed by the server; may be NULL */
  size_t len;
  const char *www_authenticate; /* static string, or NULL: a WWW-Authenticate header */
  /* Set by the handler: no answer now; the request stays open until
   * cad_http_server_respond(req->pending, ...) is called, exactly once
   * (status, content_type, body are then ignored). */
  bool defer;
  const char *allow; /* static string, or NULL: an Allow header (405) */
  const char *csp;   /* static string, or NULL: a Content-Security-Policy header */
} cad_http_res_t;

typedef void (*cad_http_handler_fn)(void *ud, const cad_http_req_t *req, cad_http_res_t *res);

/* An answer given later, after the handler returned (a queue write, a
 * reload).  The handler calls cad_http_defer() and leaves `res` alone;
 * later, exactly once, cad_http_answer() sends the answer (its body taken
 * over) or, when the client went away meanwhile, drops it.  Either way the
 * handle is freed by that call.  NULL: the request cannot be deferred
 * (no memory, or a caller without a server: answer in `res` then). */
typedef struct cad_http_later cad_http_later_t;
cad_http_later_t *cad_http_defer(const cad_http_req_t *req);
void cad_http_answer(cad_http_later_t *l, cad_http_res_t *res);

typedef struct cad_http_server_opts {
  const char *host;        /* numeric address */
  int port;                /* 0 = any free port (see cad_http_server_port) */
  size_t max_body;         /* bytes of request body accepted; default 64 KiB */
  uint64_t req_timeout_ms; /* idle connection before a request; default 10 s */
  struct cad_tls_ctx *tls; /* HTTPS when set; referenced while the server lives */
  cad_http_handler_fn handler;
  void *ud;
} cad_http_server_opts_t;

typedef struct cad_http_server cad_http_server_t;

/* Bind and listen.  Returns 0 and *out, or a negative (libuv / cad) error. */
int cad_http_server_start(uv_loop_t *loop, const cad_http_server_opts_t *o,
                          cad_http_server_t **out);
/* Answer a request whose handler set res->defer (`pending` is
 * req->pending).  res->body is freed here.  The server does not close
 * (cad_http_server_close waits) while a deferred request is unanswered. */
void cad_http_server_respond(void *pending, cad_http_res_t *res);

/* The port bound (useful with port 0). */
int cad_http_server_port(const cad_http_server_t *s);
/* Stop listening and free once every open connection has closed; `done`
 * (may be NULL) then runs on the loop. */
void cad_http_server_close(cad_http_server_t *s, void (*done)(void *arg), void *arg);

#endif
