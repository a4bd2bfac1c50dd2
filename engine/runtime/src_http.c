/* src_http.c - the `listen_http:` source kind (source.h): HL7 v2 messages
 * POSTed to a channel over HTTP(S), answered with their ACK.
 *
 * The server is channels/http/http_server.h (libh2o on the engine's loop).
 * A request is checked here, then its body goes to the pipeline exactly as
 * an MLLP frame does (cad_pipe_frame), and the answer is deferred until the
 * pipeline replies with the ACK (after the message is durable, per the
 * channel's ack.policy).  The response:
 *
 *   ACK AA / CA               200   body: the ACK, x-application/hl7-v2+er7
 *   ACK AR / CR               422   (the message was refused: parse, route)
 *   ACK AE / CE               503   (not taken now: queue full, disk, route
 *                                    error; sending it again may succeed)
 *   no ACK could be built     500
 *   address not in allow:     403   (before anything is read)
 *   another path              404
 *   another method            405   (Allow: POST)
 *   another Content-Type      415   (accepted: x-application/hl7-v2+er7,
 *                                    application/hl7-v2, text/plain, with
 *                                    any parameters)
 *   an empty body             400
 *   a body over max_body      413   (h2o refuses it before the handler)
 *
 * Every connection ends with its answer (no keep-alive), as on the admin
 * listener.  A reload keeps the server (and its port) when listen_http's
 * settings did not change.
 *
 * Memory: the source owns its server, TLS context and allow list; each
 * request in flight owns a small `pending_t` freed when it is answered.
 * The server is freed only when every deferred request has been answered,
 * so a reply never finds it gone.  Loop thread only.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cad_error.h"
#include "http_server.h"
#include "log.h"
#include "source.h"
#include "src_http.h"
#include "transport.h"

#define ER7_TYPE "x-application/hl7-v2+er7"

typedef struct src_http {
  cad_pipe_t *pipe;
  cad_pipe_chan_t *pc;
  cad_http_server_t *srv;
  cad_tls_ctx_t *tls;
  cad_cidr_t *allow;
  size_t nallow;
  char *path;
  char *sig; /* the settings, to tell whether a reload changed them */
  uint64_t conns;
  void (*done)(void *);
  void *done_arg;
} src_http_t;

typedef struct pending {
  src_http_t *s;
  void *req; /* the server's, for cad_http_server_respond */
} pending_t;

static bool wanted(const cad_conf_channel_t *cc) { return cc->http.enabled; }

/* The settings of cc's listen_http: as one string (compared on reload). */
static char *signature(const cad_conf_channel_t *cc) {
  const cad_http_listen_conf_t *h = &cc->http;
  const cad_tls_server_opts_t *t = &h->tls.opts;
  cad_buf_t b = CAD_BUF_INIT;
  int rc =
      cad_buf_printf(&b, "%s|%s|%zu|%d|%s|%s|%s|%d|%s|%d", h->listen, h->path ? h->path : "",
                     h->max_body, h->tls.enabled, t->cert_file ? t->cert_file : "",
                     t->key_file ? t->key_file : "", t->ca_file ? t->ca_file : "",
                     t->require_client_cert, t->ciphers ? t->ciphers : "", (int)t->min_version);
  for (size_t i = 0; rc == 0 && i < t->nallowed; i++)
    rc = cad_buf_printf(&b, "|c:%s", t->allowed_clients[i]);
  for (size_t i = 0; rc == 0 && i < h->nallow; i++) rc = cad_buf_printf(&b, "|a:%s", h->allow[i]);
  if (rc == 0 && cad_buf_cstr(&b)) return b.data;
  cad_buf_free(&b);
  return NULL;
}

static bool peer_allowed(const src_http_t *s, const char *peer) {
  if (!s->nallow) return true;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (strchr(peer, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, peer, &a->sin6_addr) != 1) return false;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    if (inet_pton(AF_INET, peer, &a->sin_addr) != 1) return false;
  }
  return cad_cidr_match(s->allow, s->nallow, (struct sockaddr *)&ss);
}

/* Whether a Content-Type names an HL7 v2 ER7 body (parameters ignored). */
static bool er7_type(const char *ct, size_t n) {
  if (!ct) return false;
  size_t k = 0;
  while (k < n && ct[k] != ';' && ct[k] != ' ') k++;
  static const char *const ok[] = {ER7_TYPE, "application/hl7-v2", "text/plain"};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    if (strlen(ok[i]) == k && strncasecmp(ct, ok[i], k) == 0) return true;
  return false;
}

static void text_res(cad_http_res_t *res, int status, const char *msg) {
  res->status = status;
  res->content_type = "text/plain; charset=utf-8";
  res->body = strdup(msg);
  res->len = res->body ? strlen(res->body) : 0;
}

/* The ACK code (MSA-1) of an ACK, or "". */
static void ack_code(const char *ack, size_t len, char out[3]) {
  out[0] = 0;
  if (len < 8) return;
  char fs = ack[3];
  for (size_t i = 0; i + 6 < len; i++) {
    if ((i == 0 || ack[i - 1] == '\r' || ack[i - 1] == '\n') && memcmp(ack + i, "MSA", 3) == 0 &&
        ack[i + 3] == fs) {
      out[0] = ack[i + 4];
      out[1] = ack[i + 5];
      out[2] = 0;
      return;
    }
  }
}

int cad__src_http_status(const char *ack, size_t len) {
  char code[3];
  ack_code(ack, len, code);
  if (len == 0 || !code[0]) return 500;
  if (code[1] == 'A') return 200;
  if (code[1] == 'R') return 422;
  return 503;
}

static void reply(void *req, const char *ack, size_t len, unsigned flags) {
  (void)flags;
  pending_t *p = req;
  cad_http_res_t res = {0};
  res.status = cad__src_http_status(ack, len);
  res.content_type = ER7_TYPE;
  if (len) {
    res.body = malloc(len);
    if (res.body) {
      memcpy(res.body, ack, len);
      res.len = len;
    }
  }
  cad_http_server_respond(p->req, &res);
  free(p);
}

static const cad_pipe_src_t http_src = {"http", reply};

static void handle(void *ud, const cad_http_req_t *r, cad_http_res_t *res) {
  src_http_t *s = ud;
  if (!peer_allowed(s, r->peer)) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.channel = s->pc->cc->name;
    c.peer = r->peer;
    CAD_LOG(CAD_LOG_WARN, "http.refused", &c, "address not in allow:");
    text_res(res, 403, "address not allowed\n");
    return;
  }
  if (r->path_len != strlen(s->path) || memcmp(r->path, s->path, r->path_len) != 0) {
    text_res(res, 404, "not found\n");
    return;
  }
  if (r->method_len != 4 || memcmp(r->method, "POST", 4) != 0) {
    text_res(res, 405, "POST an HL7 v2 message\n");
    res->allow = "POST";
    return;
  }
  if (!er7_type(r->content_type, r->content_type_len)) {
    text_res(res, 415, "expected Content-Type: " ER7_TYPE "\n");
    return;
  }
  if (r->body_len == 0) {
    text_res(res, 400, "empty body\n");
    return;
  }
  pending_t *p = malloc(sizeof *p);
  if (!p) {
    text_res(res, 503, "out of memory\n");
    return;
  }
  *p = (pending_t){s, r->pending};
  res->defer = true;
  cad_pipe_frame_t f = {0};
  f.req = p;
  f.bytes = (cad_str_t){r->body, r->body_len};
  f.size = r->body_len;
  f.conn = ++s->conns;
  f.peer = r->peer;
  f.src = &http_src;
  cad_pipe_frame(s->pipe, s->pc, &f);
}

static void src_free(src_http_t *s) {
  cad_tls_ctx_unref(s->tls);
  free(s->allow);
  free(s->path);
  free(s->sig);
  free(s);
}

static int start(const cad_source_env_t *env, cad_pipe_chan_t *pc, void **out, char *err,
                 size_t cap) {
  const cad_http_listen_conf_t *h = &pc->cc->http;
  src_http_t *s = calloc(1, sizeof *s);
  if (!s) return CAD_E_NOMEM;
  s->pipe = env->pipe;
  s->pc = pc;
  int rc = CAD_E_NOMEM;
  s->path = strdup(h->path ? h->path : "/hl7");
  s->sig = signature(pc->cc);
  if (!s->path || !s->sig) goto fail;
  if (h->nallow) {
    s->allow = calloc(h->nallow, sizeof *s->allow);
    if (!s->allow) goto fail;
    for (size_t i = 0; i < h->nallow; i++)
      if (!cad_cidr_parse_why(h->allow[i], &s->allow[s->nallow])) s->nallow++;
  }
  char host[64];
  int fam, port;
  const char *why = cad_hostport_parse(h->listen, true, host, sizeof host, &fam, &port);
  if (why) {
    snprintf(err, cap, "listen_http %s: %s", h->listen, why);
    rc = CAD_E_CONFIG;
    goto fail;
  }
  if (h->tls.enabled && (rc = cad_tls_server_ctx_new(&h->tls.opts, &s->tls, err, cap)) < 0)
    goto fail;
  cad_http_server_opts_t o = {0};
  o.host = host;
  o.port = port;
  o.max_body = h->max_body;
  o.tls = s->tls;
  o.handler = handle;
  o.ud = s;
  if ((rc = cad_http_server_start(env->loop, &o, &s->srv)) < 0) {
    snprintf(err, cap, "listen_http %s: %s", h->listen, cad_strerror(rc));
    goto fail;
  }
  *out = s;
  return 0;
fail:
  src_free(s);
  return rc;
}

static int adopt(void *impl, cad_pipe_chan_t *pc) {
  src_http_t *s = impl;
  char *sig = signature(pc->cc);
  bool same = sig && strcmp(sig, s->sig) == 0;
  free(sig);
  if (!same) return 1;
  s->pc = pc; /* requests in flight were given the old one: it is held until they end */
  return 0;
}

static void server_closed(void *arg) {
  src_http_t *s = arg;
  void (*done)(void *) = s->done;
  void *done_arg = s->done_arg;
  src_free(s);
  if (done) done(done_arg);
}

static void stop(void *impl, void (*done)(void *arg), void *arg) {
  src_http_t *s = impl;
  s->done = done;
  s->done_arg = arg;
  cad_http_server_close(s->srv, server_closed, s);
}

const cad_source_kind_t cad__source_http = {"http", wanted, start, adopt, stop};
