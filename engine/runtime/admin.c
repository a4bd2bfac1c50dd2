/* admin.c - the admin API's routes, tokens and answers (admin.h). */
#include "admin.h"

#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_io.h"
#include "journal.h"
#include "log.h"
#include "admin_int.h"
#include "stats.h"

typedef cad__admin_peer_t peer_t;
typedef cad__admin_token_t token_t;

/* ---- answers ---------------------------------------------------------- */

void cad__admin_json(cad_http_res_t *res, int status, json_t *doc) {
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

void cad__admin_error(cad_http_res_t *res, int status, const char *error, const char *detail) {
  cad__admin_json(res, status, json_pack("{s:s, s:s}", "error", error, "detail", detail));
}

#define answer_json cad__admin_json
#define answer_error cad__admin_error

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
    uint64_t t = d && d->name && d->last_seq > d->done_seq ? a->view.counters[i].head_time_ms : 0;
    if (a->ready_max_age_ms && t && cad_now_ms() > t + a->ready_max_age_ms)
      return "a destination's oldest waiting message is older than ready_max_age";
  }
  return NULL;
}

static void get_readyz(cad_admin_t *a, cad_http_res_t *res) {
  const char *why = not_ready_reason(a);
  if (why) answer_json(res, 503, json_pack("{s:b, s:s}", "ready", 0, "reason", why));
  else answer_json(res, 200, json_pack("{s:b}", "ready", 1));
}

static void get_metrics(cad_admin_t *a, cad_http_res_t *res) {
  if (cad__admin_metrics_all(a, &res->body, &res->len) < 0) {
    answer_error(res, 500, "internal", "out of memory");
    return;
  }
  res->status = 200;
  res->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static cad__admin_paused_t *paused_find(const cad_admin_t *a, const char *name);

static json_t *channels_json(cad_admin_t *a) {
  json_t *arr = json_array();
  for (const cad_chan_stats_t *s = cad_stats_first(); arr && s; s = s->next) {
    const cad__admin_paused_t *p = paused_find(a, s->name);
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "name",
                          s->name, "received", (json_int_t)s->received, "accepted",
                          (json_int_t)s->accepted, "rejected", (json_int_t)s->rejected, "filtered",
                          (json_int_t)s->filtered, "errors", (json_int_t)s->errors, "bytes",
                          (json_int_t)s->bytes, "open_connections", (json_int_t)s->conns_open,
                          "dead_letters", (json_int_t)s->dead_lettered, "paused", p != NULL,
                          "refused_while_paused", (json_int_t)(p ? p->refused : 0));
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
    uint64_t now = cad_now_ms();
    uint64_t age = c->head_time_ms && now > c->head_time_ms ? now - c->head_time_ms : 0;
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:f}", "name", d->name, "depth",
                  (json_int_t)depth, "delivered", (json_int_t)c->delivered, "attempts",
                  (json_int_t)c->attempts, "retries", (json_int_t)c->retries, "dead_letters",
                  (json_int_t)c->dead, "blocked", c->blocked != 0, "paused", a->paused_dests[i],
                  "oldest_waiting_seconds", depth ? (double)age / 1000.0 : 0.0);
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
      json_pack("{s:o?, s:o?}", "channels", channels_json(a), "destinations", dests_json(a)));
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

/* ---- routing ---------------------------------------------------------- */

static bool span_is(const char *p, size_t n, const char *s) {
  return p && strlen(s) == n && memcmp(p, s, n) == 0;
}

static void r_metrics(cad__admin_call_t *c) { get_metrics(c->a, c->res); }
static void r_healthz(cad__admin_call_t *c) { get_healthz(c->a, c->res); }
static void r_readyz(cad__admin_call_t *c) { get_readyz(c->a, c->res); }
static void r_channels(cad__admin_call_t *c) { get_channels(c->a, c->res); }
static void r_tokens(cad__admin_call_t *c) { get_tokens(c->a, c->res); }

typedef struct route {
  const char *method;
  const char *path; /* a '*' segment matches one segment, decoded into call.arg */
  cad_role_t role;  /* the least role */
  bool open;        /* may be served without a token (open_metrics) */
  void (*fn)(cad__admin_call_t *c);
} route_t;

static const route_t routes[] = {
    {"GET", "/metrics", CAD_ROLE_VIEWER, true, r_metrics},
    {"GET", "/healthz", CAD_ROLE_VIEWER, true, r_healthz},
    {"GET", "/readyz", CAD_ROLE_VIEWER, true, r_readyz},
    {"GET", "/api/v1/channels", CAD_ROLE_VIEWER, false, r_channels},
    {"GET", "/api/v1/destinations", CAD_ROLE_VIEWER, false, r_channels},
    {"GET", "/api/v1/tokens", CAD_ROLE_ADMIN, false, r_tokens},
    {"POST", "/api/v1/channels/*/pause", CAD_ROLE_OPERATOR, false, cad__admin_chan_pause},
    {"POST", "/api/v1/channels/*/resume", CAD_ROLE_OPERATOR, false, cad__admin_chan_resume},
    {"POST", "/api/v1/destinations/*/pause", CAD_ROLE_OPERATOR, false, cad__admin_dest_pause},
    {"POST", "/api/v1/destinations/*/resume", CAD_ROLE_OPERATOR, false, cad__admin_dest_resume},
    {"GET", "/api/v1/destinations/*/queue", CAD_ROLE_VIEWER, false, cad__admin_dest_queue},
    {"GET", "/api/v1/destinations/*/deadletters", CAD_ROLE_VIEWER, false, cad__admin_dest_dead},
    {"POST", "/api/v1/destinations/*/deadletters/requeue", CAD_ROLE_OPERATOR, false,
     cad__admin_dest_requeue},
    {"POST", "/api/v1/destinations/*/deadletters/purge", CAD_ROLE_ADMIN, false,
     cad__admin_dest_purge},
    {"POST", "/api/v1/reload", CAD_ROLE_OPERATOR, false, cad__admin_reload},
    {"GET", "/api/v1/messages", CAD_ROLE_VIEWER, false, cad__admin_archive_search},
    {"GET", "/api/v1/messages/*", CAD_ROLE_VIEWER, false, cad__admin_archive_show},
    {"POST", "/api/v1/messages/*/resend", CAD_ROLE_OPERATOR, false, cad__admin_archive_resend},
    {"GET", "/api/v1/audit", CAD_ROLE_ADMIN, false, cad__admin_audit_get},
    {"GET", "/api/v1/rates", CAD_ROLE_VIEWER, false, cad__admin_rates_get},
};

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decode p[0..n) into out (cap bytes with the NUL); '+' is a space
 * when plus.  0, or -1 for a bad escape, a NUL byte or too long. */
static int decode(const char *p, size_t n, bool plus, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int ch = (unsigned char)p[i];
    if (ch == '%') {
      int h = i + 2 < n ? hexv(p[i + 1]) : -1, l = h >= 0 ? hexv(p[i + 2]) : -1;
      if (h < 0 || l < 0) return -1;
      ch = h << 4 | l;
      i += 2;
    } else if (ch == '+' && plus) {
      ch = ' ';
    }
    if (ch == 0 || o + 1 >= cap) return -1;
    out[o++] = (char)ch;
  }
  out[o] = 0;
  return 0;
}

int cad__admin_query_nth(const cad_http_req_t *req, const char *key, unsigned nth, char *out,
                         size_t cap) {
  const char *q = req->query, *end = q ? q + req->query_len : NULL;
  size_t kl = strlen(key);
  while (q && q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(q, '=', (size_t)(stop - q));
    const char *kend = eq ? eq : stop;
    if ((size_t)(kend - q) == kl && memcmp(q, key, kl) == 0 && nth-- == 0) {
      const char *v = eq ? eq + 1 : stop;
      return decode(v, (size_t)(stop - v), true, out, cap) < 0 ? -1 : 1;
    }
    q = amp ? amp + 1 : end;
  }
  return 0;
}

int cad__admin_query(const cad_http_req_t *req, const char *key, char *out, size_t cap) {
  return cad__admin_query_nth(req, key, 0, out, cap);
}

int cad__admin_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!*s || strlen(s) > 19) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return 0;
}

/* Whether the path matches pattern p; a '*' segment is decoded into arg.
 * -1: it would match but the segment is malformed. */
static int path_match(const char *path, size_t n, const char *p, char *arg, size_t cap) {
  size_t i = 0;
  while (*p) {
    if (*p == '*') {
      size_t j = i;
      while (j < n && path[j] != '/') j++;
      if (j == i) return 0;
      if (p[1] != 0 && j >= n) return 0;
      /* the rest must match too before the segment counts */
      size_t rl = strlen(p + 1);
      if (n - j != rl || memcmp(path + j, p + 1, rl) != 0) return 0;
      return decode(path + i, j - i, false, arg, cap) < 0 ? -1 : 1;
    }
    if (i >= n || path[i] != *p) return 0;
    i++, p++;
  }
  return i == n ? 1 : 0;
}

/* The route of a path and method; *path_known when some route has the
 * path (any method); *bad when its segment could not be decoded. */
static const route_t *route_find(const cad_http_req_t *req, char *arg, bool *path_known,
                                 bool *bad) {
  *path_known = *bad = false;
  if (!req->path) return NULL;
  const route_t *found = NULL;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0] && !found; i++) {
    int m = path_match(req->path, req->path_len, routes[i].path, arg, CAD_ADMIN_ARG_MAX);
    if (m == 0) continue;
    *path_known = true;
    if (m < 0) {
      *bad = true;
      continue;
    }
    if (span_is(req->method, req->method_len, routes[i].method)) found = &routes[i];
  }
  if (found) *bad = false;
  return found;
}

/* Authorise: the token when allowed, else NULL and the answer was written. */
static const token_t *authorised(cad_admin_t *a, const cad_http_req_t *req, cad_role_t need,
                                 cad_http_res_t *res) {
  const char *peer = req->peer ? req->peer : "?";
  uint64_t now = cad_mono_ms();
  if (peer_locked(a, peer, now)) {
    answer_error(res, 429, "too_many_attempts", "too many failed token attempts; wait a minute");
    return NULL;
  }
  const token_t *t = token_of(a, req->authorization, req->authorization_len);
  if (!t) {
    peer_failed(a, peer, now);
    answer_error(res, 401, "unauthorized",
                 req->authorization ? "the token is not valid"
                                    : "an 'Authorization: Bearer TOKEN' header is required");
    res->www_authenticate = "Bearer realm=\"caduceus\"";
    return NULL;
  }
  if (t->role < need) {
    answer_error(res, 403, "forbidden", "the token's role is not allowed this");
    return NULL;
  }
  return t;
}

void cad_admin_handle(void *admin, const cad_http_req_t *req, cad_http_res_t *res) {
  cad_admin_t *a = admin;
  cad__admin_call_t c = {a, req, res, NULL, ""};
  if (cad_admin_console(a, req, res)) return; /* the console's static files: no token */
  bool known, bad;
  const route_t *r = route_find(req, c.arg, &known, &bad);
  bool api = req->path && req->path_len >= 5 && memcmp(req->path, "/api/", 5) == 0;
  if (api || (r && !(r->open && a->open_metrics)) || (!r && known && !a->open_metrics)) {
    if (!(c.tok = authorised(a, req, r ? r->role : CAD_ROLE_VIEWER, res))) return;
  }
  if (bad) return answer_error(res, 400, "bad_request", "a path segment is not valid");
  if (!r && known)
    return answer_error(res, 405, "method_not_allowed", "this path does not take that method");
  if (!r) return answer_error(res, 404, "not_found", "no such path");
  r->fn(&c);
}

/* ---- deferred answers ------------------------------------------------------ */

static void admin_free(void *arg);

cad__admin_job_t *cad__admin_job_new(cad__admin_call_t *c, const char *action, const char *target) {
  cad__admin_job_t *j = calloc(1, sizeof *j);
  if (j && !(j->later = cad_http_defer(c->req))) {
    free(j);
    j = NULL;
  }
  if (!j) {
    answer_error(c->res, 500, "internal", "out of memory");
    return NULL;
  }
  j->a = c->a;
  snprintf(j->token, sizeof j->token, "%s", c->tok ? c->tok->name : "-");
  snprintf(j->peer, sizeof j->peer, "%s", c->req->peer ? c->req->peer : "?");
  snprintf(j->action, sizeof j->action, "%s", action);
  snprintf(j->target, sizeof j->target, "%s", target);
  c->a->jobs++;
  return j;
}

void cad__admin_job_answer(cad__admin_job_t *j, int status, json_t *doc) {
  cad_http_res_t res = {.status = 500, .content_type = "application/json"};
  answer_json(&res, status, doc);
  cad_http_answer(j->later, &res);
  cad_admin_t *a = j->a;
  free(j->audit_target);
  free(j->out);
  free(j);
  cad__admin_job_done(a);
}

void cad__admin_job_done(cad_admin_t *a) {
  if (--a->jobs == 0 && a->closed) admin_free(a);
}

/* ---- operator state --------------------------------------------------------- */

static cad__admin_paused_t *paused_find(const cad_admin_t *a, const char *name) {
  for (size_t i = 0; i < a->npaused_chans; i++)
    if (strcmp(a->paused_chans[i].name, name) == 0)
      return (cad__admin_paused_t *)&a->paused_chans[i];
  return NULL;
}

bool cad_admin_channel_paused(const cad_admin_t *a, const char *name) {
  return a && a->npaused_chans && name && paused_find(a, name);
}

void cad_admin_channel_refused(cad_admin_t *a, const char *name) {
  cad__admin_paused_t *p = a ? paused_find(a, name) : NULL;
  if (p) p->refused++;
}

bool cad_admin_dest_paused(const cad_admin_t *a, uint16_t qid) {
  return a && qid < CAD_JOURNAL_MAX_DESTS && a->paused_dests[qid];
}

int cad__admin_qid(cad_admin_t *a, const char *name) {
  cad_queue_t *q = *a->view.q;
  for (uint16_t i = 0; q && i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *d = cad_queue_dest_info(q, i);
    if (d && d->name && strcmp(d->name, name) == 0) return i;
  }
  return -1;
}

/* ---- life ------------------------------------------------------------- */

static void admin_free(void *arg) {
  cad_admin_t *a = arg;
  a->http = NULL;
  a->closed = true;
  if (a->jobs > 0) return; /* the last deferred answer frees it */
  cad__admin_audit_close(a);
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
  a->ready_max_age_ms = conf->ready_max_age_ms;
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
  a->audit_fd = -1;
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
  if (rc == 0) rc = cad__admin_rates_start(a, loop);
  if (rc == 0) a->loop = loop;
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
  cad__admin_rates_stop(a);
  if (a->http) cad_http_server_close(a->http, admin_free, a);
  else admin_free(a);
}
