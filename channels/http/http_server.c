/* http_server.c - HTTP/1.1 through libh2o on the engine's loop (http_server.h). */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <h2o/socket/uv-binding.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cad_error.h"
#include "transport.h"

#define DEFAULT_MAX_BODY ((size_t)64 << 10)
#define DEFAULT_REQ_TIMEOUT_MS 10000
#define MAX_CONNS 128 /* open at once (lingering ones too); more are closed on accept */
#define LINGER_MS 2000 /* the longest a closed connection's unread input is drained */
#define LINGER_MAX ((size_t)16 << 20) /* and the most bytes drained */

/* One accepted connection.  h2o owns `tcp` until it closes it.  When h2o
 * answers a request itself (413 before the body, 400), it stops reading and
 * closes, and closing a socket with unread input sends RST: the client,
 * still sending, may then lose the answer.  So such a connection gets a
 * second descriptor, `keep`, taken before h2o's close; after it the server
 * shuts down its side (FIN after the answer) and drains what the client
 * still sends, until it closes too, LINGER_MS pass or LINGER_MAX bytes came
 * (the lingering close of HTTP/1.1 servers).  A request a handler answered
 * was read whole, so its connection simply closes. */
typedef struct conn {
  uv_tcp_t tcp; /* first: h2o's close callback gets this handle */
  cad_http_server_t *s;
  int fd;   /* tcp's descriptor (h2o's), to find the connection of an h2o answer */
  int keep; /* the second descriptor (owned until `linger` takes it), or -1 */
  uv_tcp_t linger;
  uv_timer_t timer;
  size_t drained;
  int handles; /* linger handles not closed yet */
  bool ending;
  struct conn *prev, *next; /* in s->conns while h2o has it, then in s->lingering */
} conn_t;

/* Our filter on h2o's answers (json_err_setup) knows its server. */
typedef struct err_filter {
  h2o_filter_t super;
  cad_http_server_t *s;
} err_filter_t;

/* h2o calls our handler with its own struct; ours carries the server. */
typedef struct handler {
  h2o_handler_t super;
  cad_http_server_t *s;
} handler_t;

struct cad_http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept;
  cad_http_handler_fn fn;
  void *ud;
  size_t nconns;
  cad_tls_ctx_t *tls; /* a reference, or NULL */
  bool closing, listener_closed;
  conn_t *conns;     /* connections h2o has */
  conn_t *lingering; /* connections h2o closed, draining */
  char sink[16384];  /* what they drain goes here, unread */
  void (*done)(void *);
  void *done_arg;
};

static void maybe_free(cad_http_server_t *s) {
  if (!s->closing || !s->listener_closed || s->nconns > 0) return;
  h2o_context_dispose(&s->ctx);
  h2o_config_dispose(&s->config);
  cad_tls_ctx_unref(s->tls);
  void (*done)(void *) = s->done;
  void *arg = s->done_arg;
  free(s);
  if (done) done(arg);
}

static void conn_link(conn_t **head, conn_t *c) {
  c->prev = NULL;
  c->next = *head;
  if (c->next) c->next->prev = c;
  *head = c;
}

static void conn_unlink(conn_t **head, conn_t *c) {
  if (c->prev) c->prev->next = c->next;
  else *head = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* h2o answers this request itself and will close without reading the rest:
 * take the connection's second descriptor now, for the lingering close. */
static void keep_for_linger(cad_http_server_t *s, h2o_req_t *req) {
  h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn)
                                                        : NULL;
  int fd = sock ? h2o_socket_get_fd(sock) : -1;
  if (fd < 0) return;
  for (conn_t *c = s->conns; c; c = c->next) /* a closing one's fd may be reused */
    if (c->fd == fd && !uv_is_closing((uv_handle_t *)&c->tcp)) {
      if (c->keep < 0) c->keep = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* none (-1): no drain */
      return;
    }
}

static void peer_of(h2o_req_t *req, char *out, size_t cap) {
  struct sockaddr_storage ss;
  snprintf(out, cap, "?");
  socklen_t n = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
  if (n == 0) return;
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
}

static const char *reason_of(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 500: return "Internal Server Error";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return status < 500 ? "Client Error" : "Server Error";
  }
}

/* A deferred answer: shared between the handler's owner (who answers) and
 * the request's pool (disposed when the connection goes), freed by
 * whichever lets go last. */
struct cad_http_later {
  h2o_req_t *req; /* NULL once the request is gone */
  int refs;
};

typedef struct later_ref {
  cad_http_later_t *l;
} later_ref_t;

/* What the handler sees of the request in flight (cad_http_req_t.priv). */
typedef struct in_flight {
  h2o_req_t *req;
  cad_http_later_t *later; /* set by cad_http_defer */
} in_flight_t;

static void later_unref(cad_http_later_t *l) {
  if (--l->refs == 0) free(l);
}

static void later_disposed(void *p) {
  later_ref_t *r = p;
  r->l->req = NULL;
  later_unref(r->l);
}

cad_http_later_t *cad_http_defer(const cad_http_req_t *req) {
  in_flight_t *f = req->priv;
  if (!f || f->later) return NULL;
  cad_http_later_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  later_ref_t *r = h2o_mem_alloc_shared(&f->req->pool, sizeof *r, later_disposed);
  r->l = l;
  l->req = f->req;
  l->refs = 2;
  f->later = l;
  return l;
}

static void send_res(h2o_req_t *req, cad_http_res_t *res) {
  /* Copy into the request's pool: h2o sends it after we return. */
  h2o_iovec_t body = h2o_strdup(&req->pool, res->body ? res->body : "", res->body ? res->len : 0);
  free(res->body);
  res->body = NULL;
  const char *ct = res->content_type ? res->content_type : "application/json";
  req->res.status = res->status;
  req->res.reason = reason_of(res->status);
  req->http1_is_persistent = 0;
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct, strlen(ct));
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                 H2O_STRLIT("no-store"));
  h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0,
                        NULL, H2O_STRLIT("nosniff"));
  h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL,
                        H2O_STRLIT("DENY"));
  if (res->csp)
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0,
                          NULL, res->csp, strlen(res->csp));
  if (res->www_authenticate)
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                   res->www_authenticate, strlen(res->www_authenticate));
  if (res->allow)
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, res->allow,
                   strlen(res->allow));
  h2o_send_inline(req, body.base, body.len);
}

void cad_http_answer(cad_http_later_t *l, cad_http_res_t *res) {
  if (l->req) send_res(l->req, res);
  free(res->body);
  res->body = NULL;
  later_unref(l);
}

/* ---- h2o's own errors as JSON ------------------------------------------------
 * h2o answers some requests itself, before any handler (413: a body over
 * max_body; 400: a request it cannot read), with a text/plain body.  A filter
 * on every path (and on the host's fallback path, used for those early
 * errors) replaces such a body with {"error":..., "detail":...}. */

typedef struct json_err {
  h2o_ostream_t super;
  h2o_iovec_t body;
} json_err_t;

static void json_err_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                          h2o_send_state_t state) {
  (void)bufs, (void)bufcnt;
  json_err_t *e = (json_err_t *)self;
  if (h2o_send_state_is_in_progress(state)) {
    h2o_ostream_send_next(self, req, NULL, 0, state); /* h2o's errors come in one piece */
    return;
  }
  h2o_ostream_send_next(self, req, &e->body, 1, state);
}

static bool is_text_plain(const h2o_req_t *req) {
  ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
  return i >= 0 && req->res.headers.entries[i].value.len >= 10 &&
         memcmp(req->res.headers.entries[i].value.base, "text/plain", 10) == 0;
}

static void json_err_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot) {
  /* Only h2o's own answers: every answer of a handler goes through send_res,
   * which always sets Cache-Control (h2o's error path sets none). */
  if (req->res.status >= 400 && is_text_plain(req) &&
      h2o_find_header(&req->res.headers, H2O_TOKEN_CACHE_CONTROL, -1) < 0) {
    const char *code = req->res.status == 413   ? "payload_too_large"
                       : req->res.status == 400 ? "bad_request"
                       : req->res.status == 404 ? "not_found"
                                                : "http_error";
    keep_for_linger(((err_filter_t *)self)->s, req);
    char buf[256];
    int n = snprintf(
        buf, sizeof buf, "{\"error\":\"%s\",\"detail\":\"%s\"}", code,
        req->res.status == 413 ? "the request body is too large" : "the request could not be read");
    json_err_t *e = (json_err_t *)h2o_add_ostream(req, sizeof *e, slot);
    e->super.do_send = json_err_send;
    e->body = h2o_strdup(&req->pool, buf, (size_t)n);
    req->res.content_length = (size_t)n;
    h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                   H2O_STRLIT("application/json"), 1);
    slot = &e->super.next;
  }
  h2o_setup_next_ostream(req, slot);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
  cad_http_server_t *s = ((handler_t *)self)->s;
  char peer[INET6_ADDRSTRLEN + 1];
  peer_of(req, peer, sizeof peer);
  cad_http_req_t r = {0};
  r.method = req->method.base;
  r.method_len = req->method.len;
  r.path = req->path.base;
  r.path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
  if (req->query_at != SIZE_MAX) {
    r.query = req->path.base + req->query_at + 1;
    r.query_len = req->path.len - req->query_at - 1;
  }
  ssize_t h = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
  if (h >= 0) {
    r.authorization = req->headers.entries[h].value.base;
    r.authorization_len = req->headers.entries[h].value.len;
  }
  h = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
  if (h >= 0) {
    r.content_type = req->headers.entries[h].value.base;
    r.content_type_len = req->headers.entries[h].value.len;
  }
  r.body = req->entity.base;
  r.body_len = req->entity.base ? req->entity.len : 0;
  r.pending = req;
  r.peer = peer;
  in_flight_t f = {req, NULL};
  r.priv = &f;
  cad_http_res_t res = {500, "application/json", NULL, 0, NULL, false, NULL, NULL};
  s->fn(s->ud, &r, &res);
  if (f.later) {
    free(res.body); /* answered later through cad_http_answer */
    return 0;
  }
  if (res.defer) return 0; /* answered later through cad_http_server_respond */
  send_res(req, &res);
  return 0;
}

void cad_http_server_respond(void *pending, cad_http_res_t *res) { send_res(pending, res); }

static void conn_free(conn_t *c) {
  cad_http_server_t *s = c->s;
  free(c);
  s->nconns--;
  maybe_free(s);
}

static void linger_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->handles == 0) conn_free(c);
}

static void linger_end(conn_t *c) {
  if (c->ending) return;
  c->ending = true;
  conn_unlink(&c->s->lingering, c);
  uv_close((uv_handle_t *)&c->linger, linger_closed);
  uv_close((uv_handle_t *)&c->timer, linger_closed);
}

static void linger_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf) {
  (void)want;
  conn_t *c = h->data;
  *buf = uv_buf_init(c->s->sink, sizeof c->s->sink);
}

static void linger_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  conn_t *c = st->data;
  if (n < 0 || (c->drained += (size_t)n) > LINGER_MAX) linger_end(c);
}

static void linger_timeout(uv_timer_t *t) { linger_end(t->data); }

/* h2o has closed its descriptor: end ours now if the client has closed
 * (or the server is closing), else drain until it does. */
static void conn_closed(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  cad_http_server_t *s = c->s;
  int fd = c->keep;
  c->keep = -1;
  if (c->fd >= 0) conn_unlink(&s->conns, c);
  if (fd < 0) {
    conn_free(c);
    return;
  }
  bool open = !s->closing && shutdown(fd, SHUT_WR) == 0;
  for (int i = 0; open && i < 4; i++) { /* what has come already, and its EOF */
    ssize_t n = recv(fd, s->sink, sizeof s->sink, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) open = false;
  }
  if (!open || uv_tcp_init(s->loop, &c->linger) != 0) {
    close(fd);
    conn_free(c);
    return;
  }
  c->linger.data = c;
  c->handles = 1;
  if (uv_tcp_open(&c->linger, fd) != 0) {
    close(fd);
    c->ending = true;
    uv_close((uv_handle_t *)&c->linger, linger_closed);
    return;
  }
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  c->handles = 2;
  conn_link(&s->lingering, c);
  uv_timer_start(&c->timer, linger_timeout, LINGER_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->linger, linger_alloc, linger_read) != 0) linger_end(c);
}

static void on_accept(uv_stream_t *l, int status) {
  cad_http_server_t *s = l->data;
  if (status < 0 || s->closing) return;
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  c->s = s;
  c->fd = c->keep = -1;
  uv_tcp_init(s->loop, &c->tcp);
  s->nconns++;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 || s->nconns > MAX_CONNS ||
      uv_fileno((uv_handle_t *)&c->tcp, &c->fd) != 0) {
    c->fd = -1;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    return;
  }
  conn_link(&s->conns, c);
  h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, conn_closed);
  h2o_accept(&s->accept, sock);
}

static int bind_listener(cad_http_server_t *s, const char *host, int port) {
  struct sockaddr_storage ss;
  int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
                             : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc < 0) return rc;
  if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0)) < 0) return rc;
  return uv_listen((uv_stream_t *)&s->listener, 64, on_accept);
}

static void listener_closed(uv_handle_t *h) {
  cad_http_server_t *s = h->data;
  s->listener_closed = true;
  maybe_free(s);
}

int cad_http_server_start(uv_loop_t *loop, const cad_http_server_opts_t *o,
                          cad_http_server_t **out) {
  if (!o->handler || !o->host) return CAD_E_INVAL;
  cad_http_server_t *s = calloc(1, sizeof *s);
  if (!s) return CAD_E_NOMEM;
  s->loop = loop;
  s->fn = o->handler;
  s->ud = o->ud;
  h2o_config_init(&s->config);
  s->config.max_request_entity_size = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
  s->config.http1.req_timeout = o->req_timeout_ms ? o->req_timeout_ms : DEFAULT_REQ_TIMEOUT_MS;
  s->config.server_name = h2o_iovec_init(H2O_STRLIT("caduceus"));
  /* HTTP/1.1 only: an h2c upgrade would keep connections open (and ALPN
   * is not offered over TLS), so every connection ends with its answer. */
  s->config.http1.upgrade_to_http2 = 0;
  h2o_hostconf_t *host =
      h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
  h2o_pathconf_t *on[2] = {path, &host->fallback_path};
  for (int i = 0; i < 2; i++) {
    err_filter_t *f = (err_filter_t *)h2o_create_filter(on[i], sizeof *f);
    f->super.on_setup_ostream = json_err_setup;
    f->s = s;
  }
  handler_t *hd = (handler_t *)h2o_create_handler(path, sizeof *hd);
  hd->super.on_req = on_req;
  hd->s = s;
  h2o_context_init(&s->ctx, loop, &s->config);
  s->accept.ctx = &s->ctx;
  s->accept.hosts = s->config.hosts;
  if (o->tls) {
    s->tls = cad_tls_ctx_ref(o->tls);
    s->accept.ssl_ctx = cad_tls_ctx_ssl(s->tls);
  }
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  int rc = bind_listener(s, o->host, o->port);
  if (rc < 0) {
    cad_http_server_close(s, NULL, NULL);
    return rc;
  }
  *out = s;
  return 0;
}

int cad_http_server_port(const cad_http_server_t *s) {
  struct sockaddr_storage ss;
  int n = sizeof ss;
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &n) < 0) return -1;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void cad_http_server_close(cad_http_server_t *s, void (*done)(void *arg), void *arg) {
  if (!s || s->closing) return;
  s->closing = true;
  s->done = done;
  s->done_arg = arg;
  while (s->lingering) linger_end(s->lingering);
  uv_close((uv_handle_t *)&s->listener, listener_closed);
}
