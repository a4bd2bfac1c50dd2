/* admin.c - the admin API's routes, tokens and answers (admin.h). */
#include "admin.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_io.h"
#include "journal.h"
#include "log.h"
#include "stats.h"

typedef struct peer {
  char addr[48];
  uint64_t window_start_ms;
  uint32_t fails;
} peer_t;

typedef struct token {
  char name[CAD_CONF_NAME_MAX + 1];
  cad_role_t role;
  unsigned char sha256[32];
} token_t;

struct cad_admin {
  cad_admin_view_t view;
  char host[64];
  int port;
  bool open_metrics;
  token_t *tokens;
  size_t ntokens;
  peer_t peers[CAD_ADMIN_MAX_PEERS];
  size_t next_peer; /* the slot replaced when the table is full */
  uint64_t start_ms;
  uint64_t failed_seen, batches_at_failure; /* journal writability (readyz) */
  cad_http_server_t *http;
  cad_tls_ctx_t *tls; /* `tls:`, or NULL */
};

/* ---- answers ---------------------------------------------------------- */

static void answer_json(cad_http_res_t *res, int status, json_t *doc) {
  res->status = status;
  res->content_type = "application/json";
  res->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  if (!res->body) {
    res->status = 500;
    res->body = strdup("{\"error\":\"out of memory\"}");
  }
  res->len = res->body ? strlen(res->body) : 0;
}

static void answer_error(cad_http_res_t *res, int status, const char *error, const char *message) {
  answer_json(res, status, json_pack("{s:s, s:s}", "error", error, "message", message));
}

/* ---- tokens ----------------------------------------------------------- */

static peer_t *peer_find(cad_admin_t *a, const char *addr, bool create) {
  for (size_t i = 0; i < CAD_ADMIN_MAX_PEERS; i++)
    if (a->peers[i].addr[0] && strcmp(a->peers[i].addr, addr) == 0) return &a->peers[i];
  if (!create) return NULL;
  peer_t *p = &a->peers[a->next_peer];
  a->next_peer = (a->next_peer + 1) % CAD_ADMIN_MAX_PEERS;
  memset(p, 0, sizeof *p);
  snprintf(p->addr, sizeof p->addr, "%s", addr);
  return p;
}

static bool peer_locked(cad_admin_t *a, const char *addr, uint64_t now) {
  peer_t *p = peer_find(a, addr, false);
  if (!p) return false;
  if (now - p->window_start_ms >= CAD_ADMIN_FAIL_WINDOW_MS) {
    p->fails = 0;
    p->window_start_ms = now;
  }
  return p->fails >= CAD_ADMIN_MAX_FAILS;
}

static void peer_failed(cad_admin_t *a, const char *addr, uint64_t now) {
  peer_t *p = peer_find(a, addr, true);
  if (p->fails == 0) p->window_start_ms = now;
  p->fails++;
  if (p->fails == CAD_ADMIN_MAX_FAILS)
    CAD_LOG(CAD_LOG_WARN, "admin.locked", NULL, "peer=%s: %u failed token attempts", addr,
            p->fails);
}

/* The token of an "Authorization: Bearer X" value, or NULL.  Every
 * configured hash is compared, in constant time, whatever matched. */
static const token_t *token_of(const cad_admin_t *a, const char *v, size_t n) {
  static const char scheme[] = "bearer ";
  size_t sl = sizeof scheme - 1;
  if (!v || n <= sl || strncasecmp(v, scheme, sl) != 0) return NULL;
  v += sl, n -= sl;
  while (n && *v == ' ') v++, n--;
  while (n && v[n - 1] == ' ') n--;
  unsigned char h[32];
  if (n == 0 || n > 512 || cad_admin_token_hash(v, n, h) < 0) return NULL;
  const token_t *found = NULL;
  for (size_t i = 0; i < a->ntokens; i++)
    if (CRYPTO_memcmp(h, a->tokens[i].sha256, sizeof h) == 0 && !found) found = &a->tokens[i];
  return found;
}

/* ---- routes ----------------------------------------------------------- */

static void get_healthz(cad_admin_t *a, cad_http_res_t *res) {
  (void)a;
  answer_json(res, 200, json_pack("{s:s}", "status", "alive"));
}

static const char *not_ready_reason(cad_admin_t *a) {
  if (*a->view.stopping) return "shutting down";
  cad_queue_t *q = *a->view.q;
  if (!q) return "the journal is closed";
  cad_queue_stats_t qs;
  cad_queue_get_stats(q, &qs);
  if (qs.failed_batches > a->failed_seen) {
    a->failed_seen = qs.failed_batches;
    a->batches_at_failure = qs.batches;
  }
  if (a->failed_seen && qs.batches <= a->batches_at_failure)
    return "the journal's last write failed";
  for (uint16_t i = 0; i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *d = cad_queue_dest_info(q, i);
    if (d && d->name && a->view.counters[i].blocked) return "a destination is blocked";
  }
  return NULL;
}

static void get_readyz(cad_admin_t *a, cad_http_res_t *res) {
  const char *why = not_ready_reason(a);
  if (why) answer_json(res, 503, json_pack("{s:b, s:s}", "ready", 0, "reason", why));
  else answer_json(res, 200, json_pack("{s:b}", "ready", 1));
}

static void get_metrics(cad_admin_t *a, cad_http_res_t *res) {
  if (cad_admin_metrics(&a->view, a->start_ms, &res->body, &res->len) < 0) {
    answer_error(res, 500, "internal", "out of memory");
    return;
  }
  res->status = 200;
  res->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static json_t *channels_json(void) {
  json_t *arr = json_array();
  for (const cad_chan_stats_t *s = cad_stats_first(); arr && s; s = s->next) {
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "name", s->name, "received",
                  (json_int_t)s->received, "accepted", (json_int_t)s->accepted, "rejected",
                  (json_int_t)s->rejected, "filtered", (json_int_t)s->filtered, "errors",
                  (json_int_t)s->errors, "bytes", (json_int_t)s->bytes, "open_connections",
                  (json_int_t)s->conns_open, "dead_letters", (json_int_t)s->dead_lettered);
    if (!o || json_array_append_new(arr, o) < 0) {
      json_decref(arr);
      return NULL;
    }
  }
  return arr;
}

static json_t *dests_json(cad_admin_t *a) {
  json_t *arr = json_array();
  cad_queue_t *q = *a->view.q;
  for (uint16_t i = 0; arr && q && i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *d = cad_queue_dest_info(q, i);
    if (!d || !d->name) continue;
    const cad_delivery_stats_t *c = &a->view.counters[i];
    uint64_t depth = d->last_seq > d->done_seq ? d->last_seq - d->done_seq : 0;
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b}", "name", d->name, "depth",
                          (json_int_t)depth, "delivered", (json_int_t)c->delivered, "attempts",
                          (json_int_t)c->attempts, "retries", (json_int_t)c->retries,
                          "dead_letters", (json_int_t)c->dead, "blocked", c->blocked != 0);
    if (!o || json_array_append_new(arr, o) < 0) {
      json_decref(arr);
      return NULL;
    }
  }
  return arr;
}

static void get_channels(cad_admin_t *a, cad_http_res_t *res) {
  answer_json(
      res, 200,
      json_pack("{s:o?, s:o?}", "channels", channels_json(), "destinations", dests_json(a)));
}

/* The configured tokens' names and roles (never their hashes). */
static void get_tokens(cad_admin_t *a, cad_http_res_t *res) {
  static const char *const role_names[] = {"", "viewer", "analyst", "operator", "admin"};
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < a->ntokens; i++) {
    json_t *o = json_pack("{s:s, s:s}", "name", a->tokens[i].name, "role",
                          role_names[a->tokens[i].role <= CAD_ROLE_ADMIN ? a->tokens[i].role : 0]);
    if (!o || json_array_append_new(arr, o) < 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  answer_json(res, 200, json_pack("{s:o?}", "tokens", arr));
}

typedef struct route {
  const char *method, *path;
  cad_role_t role; /* the least role */
  bool open;       /* may be served without a token (open_metrics) */
  void (*fn)(cad_admin_t *a, cad_http_res_t *res);
} route_t;

static const route_t routes[] = {
    {"GET", "/metrics", CAD_ROLE_VIEWER, true, get_metrics},
    {"GET", "/healthz", CAD_ROLE_VIEWER, true, get_healthz},
    {"GET", "/readyz", CAD_ROLE_VIEWER, true, get_readyz},
    {"GET", "/api/v1/channels", CAD_ROLE_VIEWER, false, get_channels},
    {"GET", "/api/v1/tokens", CAD_ROLE_ADMIN, false, get_tokens},
};

static bool span_is(const char *p, size_t n, const char *s) {
  return p && strlen(s) == n && memcmp(p, s, n) == 0;
}

/* The route of a path (any method), and whether one matches the method too. */
static const route_t *route_find(const cad_http_req_t *req, bool *path_known) {
  *path_known = false;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    if (!span_is(req->path, req->path_len, routes[i].path)) continue;
    *path_known = true;
    if (span_is(req->method, req->method_len, routes[i].method)) return &routes[i];
  }
  return NULL;
}

/* Authorise: NULL when allowed, else the answer was written. */
static bool authorised(cad_admin_t *a, const cad_http_req_t *req, cad_role_t need,
                       cad_http_res_t *res) {
  const char *peer = req->peer ? req->peer : "?";
  uint64_t now = cad_mono_ms();
  if (peer_locked(a, peer, now)) {
    answer_error(res, 429, "too_many_attempts", "too many failed token attempts; wait a minute");
    return false;
  }
  const token_t *t = token_of(a, req->authorization, req->authorization_len);
  if (!t) {
    peer_failed(a, peer, now);
    answer_error(res, 401, "unauthorized",
                 req->authorization ? "the token is not valid"
                                    : "an 'Authorization: Bearer TOKEN' header is required");
    res->www_authenticate = "Bearer realm=\"caduceus\"";
    return false;
  }
  if (t->role < need) {
    answer_error(res, 403, "forbidden", "the token's role is not allowed this");
    return false;
  }
  return true;
}

void cad_admin_handle(void *admin, const cad_http_req_t *req, cad_http_res_t *res) {
  cad_admin_t *a = admin;
  bool known;
  const route_t *r = route_find(req, &known);
  bool api = req->path && req->path_len >= 5 && memcmp(req->path, "/api/", 5) == 0;
  if (api || (r && !(r->open && a->open_metrics)) || (!r && known && !a->open_metrics)) {
    if (!authorised(a, req, r ? r->role : CAD_ROLE_VIEWER, res)) return;
  }
  if (!r && known) return answer_error(res, 405, "method_not_allowed", "this path takes GET");
  if (!r) return answer_error(res, 404, "not_found", "no such path");
  r->fn(a, res);
}

/* ---- life ------------------------------------------------------------- */

static void admin_free(void *arg) {
  cad_admin_t *a = arg;
  OPENSSL_cleanse(a->tokens, a->ntokens * sizeof *a->tokens);
  free(a->tokens);
  cad_tls_ctx_unref(a->tls);
  free(a);
}

/* Take conf's tokens and open_metrics (the old tokens are wiped). */
static int set_tokens(cad_admin_t *a, const cad_conf_admin_t *conf) {
  token_t *t = calloc(conf->ntokens ? conf->ntokens : 1, sizeof *t);
  if (!t) return CAD_E_NOMEM;
  for (size_t i = 0; i < conf->ntokens; i++) {
    snprintf(t[i].name, sizeof t[i].name, "%s", conf->tokens[i].name ? conf->tokens[i].name : "");
    t[i].role = conf->tokens[i].role;
    memcpy(t[i].sha256, conf->tokens[i].sha256, 32);
  }
  if (a->tokens) OPENSSL_cleanse(a->tokens, a->ntokens * sizeof *a->tokens);
  free(a->tokens);
  a->tokens = t;
  a->ntokens = conf->ntokens;
  a->open_metrics = conf->open_metrics;
  return 0;
}

int cad_admin_reload(cad_admin_t *a, const cad_conf_admin_t *conf) {
  bool same_listener = conf->enabled && conf->port == a->port && conf->tls.enabled == !!a->tls &&
                       !strcmp(conf->host ? conf->host : "127.0.0.1", a->host);
  int rc = set_tokens(a, conf);
  if (rc < 0) return rc;
  return same_listener ? 0 : 1;
}

int cad_admin_new(const cad_conf_admin_t *conf, const cad_admin_view_t *view, cad_admin_t **out) {
  cad_admin_t *a = calloc(1, sizeof *a);
  if (!a) return CAD_E_NOMEM;
  if (set_tokens(a, conf) < 0) {
    free(a);
    return CAD_E_NOMEM;
  }
  a->view = *view;
  snprintf(a->host, sizeof a->host, "%s", conf->host ? conf->host : "127.0.0.1");
  a->port = conf->port;
  a->start_ms = cad_now_ms();
  if (conf->tls.enabled) {
    char err[256];
    int rc = cad_tls_server_ctx_new(&conf->tls.opts, &a->tls, err, sizeof err);
    if (rc < 0) {
      CAD_LOG(CAD_LOG_ERROR, "admin.tls", NULL, "%s", err);
      admin_free(a);
      return rc;
    }
  }
  *out = a;
  return 0;
}

int cad_admin_listen(cad_admin_t *a, uv_loop_t *loop) {
  cad_http_server_opts_t o = {0};
  o.host = a->host;
  o.port = a->port;
  o.handler = cad_admin_handle;
  o.ud = a;
  o.tls = a->tls;
  int rc = cad_http_server_start(loop, &o, &a->http);
  if (rc < 0) {
    CAD_LOG(CAD_LOG_ERROR, "admin.failed", NULL, "%s port %d: %s", a->host, a->port,
            cad_strerror(rc));
    return rc;
  }
  CAD_LOG(CAD_LOG_INFO, "admin.listen", NULL, "%s port %d (%s): metrics %s, %zu tokens", a->host,
          cad_http_server_port(a->http), a->tls ? "https" : "http",
          a->open_metrics ? "open" : "need a token", a->ntokens);
  return 0;
}

int cad_admin_start(uv_loop_t *loop, const cad_conf_admin_t *conf, const cad_admin_view_t *view,
                    cad_admin_t **out) {
  *out = NULL;
  if (!conf->enabled) return 0;
  int rc = cad_admin_new(conf, view, out);
  return rc < 0 ? rc : cad_admin_listen(*out, loop);
}

int cad_admin_port(const cad_admin_t *a) { return a->http ? cad_http_server_port(a->http) : -1; }

void cad_admin_close(cad_admin_t *a) {
  if (!a) return;
  if (a->http) cad_http_server_close(a->http, admin_free, a);
  else admin_free(a);
}
