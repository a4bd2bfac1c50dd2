/* http_client.c - the HTTP destination: libcurl's multi-socket interface on
 * the libuv loop (http_client.h). */
#include "http_client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cad_error.h"

#define MAX_TOKEN 8192
#define MAX_TOKEN_BODY (64u << 10)
#define MAX_HDR_KEPT 256
#define MAX_REASON 48

typedef struct poll_ctx {
  uv_poll_t poll; /* first: the close callback frees the struct */
  cad_http_dest_t *d;
  curl_socket_t fd;
  struct poll_ctx *next, *prev; /* open polls of the destination */
} poll_ctx_t;

/* One transfer: the message's request, or a token request. */
typedef struct xfer {
  CURL *easy;
  struct curl_slist *hdrs;
  char *url;
  bool token; /* a token request */
  long status;
  char reason[MAX_REASON];
  char retry_after[MAX_HDR_KEPT], ctype[MAX_HDR_KEPT], location[MAX_HDR_KEPT];
  char *body; /* kept bytes, at most cap */
  size_t len, cap;
  bool cut;
  char errbuf[CURL_ERROR_SIZE];
} xfer_t;

struct cad_http_dest {
  uv_loop_t *loop;
  const cad_http_dest_conf_t *c;
  CURLM *multi;
  uv_timer_t timer;  /* curl's timeouts */
  uv_timer_t hold;   /* waiting for Retry-After */
  size_t nhandles;   /* libuv handles open (timers + polls) */
  poll_ctx_t *polls; /* watched sockets */
  bool closing;
  char *content_type;
  cad_http_tmpl_t *url;
  cad_http_tmpl_t **hdr_vals;
  char **hdr_names;
  size_t nhdrs;
  char *bearer, *user, *password, *secret; /* secrets, wiped on close */
  char token[MAX_TOKEN];
  uint64_t token_expires_ms; /* 0 = none */
  uint64_t not_before_ms;    /* Retry-After */
  /* the message in flight */
  bool busy, refreshed;
  const char *body;
  size_t body_len;
  char *msg_url;
  struct curl_slist *msg_hdrs;
  cad_http_done_cb cb;
  void *cb_arg;
  xfer_t *cur;  /* the transfer running, or NULL */
  xfer_t *last; /* the last answer (kept for cad_http_dest_answer) */
};

static uint64_t now_ms(const cad_http_dest_t *d) { return uv_now(d->loop); }

static void xfer_free(xfer_t *x) {
  if (!x) return;
  if (x->easy) curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->hdrs);
  free(x->url);
  free(x->body);
  free(x);
}

static void wipe(char **s) {
  if (!*s) return;
  OPENSSL_cleanse(*s, strlen(*s));
  free(*s);
  *s = NULL;
}

static void maybe_free(cad_http_dest_t *d) {
  if (!d->closing || d->nhandles) return;
  free(d);
}

static void handle_closed(uv_handle_t *h) {
  cad_http_dest_t *d = h->data;
  if (h->type == UV_POLL) free(h);
  d->nhandles--;
  maybe_free(d);
}

/* ---- curl's sockets and timer on the loop ------------------------------- */

static void check_done(cad_http_dest_t *d);

static void on_poll(uv_poll_t *p, int status, int events) {
  poll_ctx_t *pc = (poll_ctx_t *)p;
  cad_http_dest_t *d = pc->d;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(d->multi, pc->fd, flags, &running);
  check_done(d);
}

static void poll_close(cad_http_dest_t *d, poll_ctx_t *pc) {
  if (pc->prev) pc->prev->next = pc->next;
  else d->polls = pc->next;
  if (pc->next) pc->next->prev = pc->prev;
  uv_poll_stop(&pc->poll);
  uv_close((uv_handle_t *)&pc->poll, handle_closed);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)e;
  cad_http_dest_t *d = userp;
  poll_ctx_t *pc = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (pc) {
      poll_close(d, pc);
      if (!d->closing) curl_multi_assign(d->multi, s, NULL);
    }
    return 0;
  }
  if (!pc) {
    pc = calloc(1, sizeof *pc);
    if (!pc) return -1;
    pc->d = d;
    pc->fd = s;
    if (uv_poll_init_socket(d->loop, &pc->poll, s) < 0) {
      free(pc);
      return -1;
    }
    pc->poll.data = d;
    d->nhandles++;
    pc->next = d->polls;
    if (d->polls) d->polls->prev = pc;
    d->polls = pc;
    curl_multi_assign(d->multi, s, pc);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&pc->poll, ev, on_poll);
  return 0;
}

static void on_timer(uv_timer_t *t) {
  cad_http_dest_t *d = t->data;
  int running;
  curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(d);
}

static int on_curl_timer(CURLM *m, long ms, void *userp) {
  (void)m;
  cad_http_dest_t *d = userp;
  if (d->closing) return 0;
  if (ms < 0) uv_timer_stop(&d->timer);
  else uv_timer_start(&d->timer, on_timer, (uint64_t)ms, 0);
  return 0;
}

/* ---- answers ------------------------------------------------------------ */

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  xfer_t *x = ud;
  size_t len = sz * n, room = x->cap - x->len;
  if (len > room) x->cut = true;
  size_t take = len < room ? len : room;
  if (take) {
    if (!x->body) x->body = malloc(x->cap);
    if (x->body) {
      memcpy(x->body + x->len, p, take);
      x->len += take;
    }
  }
  return len; /* read and drop the rest */
}

/* Printable ASCII, bounded: what of a header or reason phrase may be kept. */
static void keep_text(char *out, size_t cap, const char *p, size_t n) {
  while (n && (*p == ' ' || *p == '\t')) p++, n--;
  while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' ')) n--;
  size_t o = 0;
  for (size_t i = 0; i < n && o + 1 < cap; i++)
    out[o++] = ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] >= 0x7f) ? '?' : p[i];
  out[o] = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  xfer_t *x = ud;
  size_t len = sz * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a status line (also of a 100 Continue) */
    const char *sp = memchr(p, ' ', len);
    const char *sp2 = sp ? memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p)) : NULL;
    x->reason[0] = x->retry_after[0] = x->ctype[0] = x->location[0] = 0;
    if (sp2) keep_text(x->reason, sizeof x->reason, sp2 + 1, len - (size_t)(sp2 + 1 - p));
    return len;
  }
  static const struct {
    const char *name;
    size_t off;
  } kept[] = {{"retry-after:", offsetof(xfer_t, retry_after)},
              {"content-type:", offsetof(xfer_t, ctype)},
              {"location:", offsetof(xfer_t, location)}};
  for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
    size_t k = strlen(kept[i].name);
    if (len > k && strncasecmp(p, kept[i].name, k) == 0)
      keep_text((char *)x + kept[i].off, MAX_HDR_KEPT, p + k, len - k);
  }
  return len;
}

static xfer_t *xfer_new(cad_http_dest_t *d, const char *url, bool token) {
  xfer_t *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  x->token = token;
  x->cap = token ? MAX_TOKEN_BODY : d->c->keep_body;
  x->easy = curl_easy_init();
  if (!x->easy) {
    free(x);
    return NULL;
  }
  const cad_http_dest_conf_t *c = d->c;
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  if (c->tls_enabled) {
    if (c->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->cert_file) curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file) curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    if (!c->verify_hostname) curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  return x;
}

/* ---- the message -------------------------------------------------------- */

static void start_request(cad_http_dest_t *d);
static void finish(cad_http_dest_t *d, int outcome, const char *detail);

static void start_token(cad_http_dest_t *d) {
  const cad_http_dest_conf_t *c = d->c;
  xfer_t *x = xfer_new(d, c->token_url, true);
  if (!x) {
    finish(d, CAD_HTTP_RETRY, "out of memory");
    return;
  }
  char *scope = c->scope ? curl_easy_escape(x->easy, c->scope, 0) : NULL;
  size_t n = 64 + (scope ? strlen(scope) : 0);
  x->url = malloc(n); /* the form body (kept with the transfer) */
  if (!x->url) {
    curl_free(scope);
    xfer_free(x);
    finish(d, CAD_HTTP_RETRY, "out of memory");
    return;
  }
  snprintf(x->url, n, "grant_type=client_credentials%s%s", scope ? "&scope=" : "",
           scope ? scope : "");
  curl_free(scope);
  curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->url);
  curl_easy_setopt(x->easy, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
  curl_easy_setopt(x->easy, CURLOPT_USERNAME, c->client_id);
  curl_easy_setopt(x->easy, CURLOPT_PASSWORD, d->secret);
  x->hdrs = curl_slist_append(NULL, "Accept: application/json");
  curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
  d->cur = x;
  if (curl_multi_add_handle(d->multi, x->easy) != CURLM_OK) {
    d->cur = NULL;
    xfer_free(x);
    finish(d, CAD_HTTP_RETRY, "curl_multi_add_handle failed");
  }
}

static void on_hold(uv_timer_t *t) { start_request(t->data); }

static bool token_valid(const cad_http_dest_t *d) {
  return d->token_expires_ms && now_ms(d) + d->c->oauth_margin_ms < d->token_expires_ms;
}

static void start_request(cad_http_dest_t *d) {
  if (d->closing) return;
  uint64_t now = now_ms(d);
  if (d->not_before_ms > now) {
    uv_timer_start(&d->hold, on_hold, d->not_before_ms - now, 0);
    return;
  }
  if (d->c->oauth_enabled && !token_valid(d)) {
    start_token(d);
    return;
  }
  xfer_t *x = xfer_new(d, d->msg_url, false);
  if (!x) {
    finish(d, CAD_HTTP_RETRY, "out of memory");
    return;
  }
  curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, d->body);
  curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
  if (d->c->method == CAD_HTTP_PUT) curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, "PUT");
  struct curl_slist *h = NULL;
  for (struct curl_slist *s = d->msg_hdrs; s; s = s->next) h = curl_slist_append(h, s->data);
  if (d->bearer || d->c->oauth_enabled) {
    const char *t = d->bearer ? d->bearer : d->token;
    size_t n = strlen(t) + 32;
    char *line = malloc(n);
    if (line) {
      snprintf(line, n, "Authorization: Bearer %s", t);
      h = curl_slist_append(h, line);
      OPENSSL_cleanse(line, n);
      free(line);
    }
  } else if (d->user) {
    curl_easy_setopt(x->easy, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(x->easy, CURLOPT_USERNAME, d->user);
    curl_easy_setopt(x->easy, CURLOPT_PASSWORD, d->password);
  }
  x->hdrs = h;
  curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, h);
  d->cur = x;
  if (curl_multi_add_handle(d->multi, x->easy) != CURLM_OK) {
    d->cur = NULL;
    xfer_free(x);
    finish(d, CAD_HTTP_RETRY, "curl_multi_add_handle failed");
  }
}

static void finish(cad_http_dest_t *d, int outcome, const char *detail) {
  d->busy = false;
  free(d->msg_url);
  d->msg_url = NULL;
  curl_slist_free_all(d->msg_hdrs);
  d->msg_hdrs = NULL;
  cad_http_done_cb cb = d->cb;
  void *arg = d->cb_arg;
  d->cb = NULL;
  if (cb) cb(arg, outcome, detail);
}

static void token_done(cad_http_dest_t *d, xfer_t *x, CURLcode res) {
  char detail[160];
  if (res != CURLE_OK) {
    snprintf(detail, sizeof detail, "oauth2 token: %s", curl_easy_strerror(res));
  } else if (x->status < 200 || x->status > 299) {
    snprintf(detail, sizeof detail, "oauth2 token: HTTP %ld %s", x->status, x->reason);
  } else {
    int64_t exp = 0;
    if (cad_http_oauth_parse(x->body ? x->body : "", x->len, d->token, sizeof d->token, &exp) ==
        0) {
      d->token_expires_ms = now_ms(d) + (uint64_t)exp * 1000;
      if (d->token_expires_ms <= now_ms(d) + d->c->oauth_margin_ms)
        d->token_expires_ms = now_ms(d) + d->c->oauth_margin_ms + 1; /* use it once */
      xfer_free(x);
      start_request(d);
      return;
    }
    snprintf(detail, sizeof detail, "oauth2 token: the answer is not a token response");
  }
  xfer_free(x);
  finish(d, CAD_HTTP_RETRY, detail);
}

static void request_done(cad_http_dest_t *d, xfer_t *x, CURLcode res) {
  char detail[200];
  xfer_free(d->last);
  d->last = x;
  if (res != CURLE_OK) {
    x->status = 0;
    snprintf(detail, sizeof detail, "%s", curl_easy_strerror(res));
    finish(d, CAD_HTTP_RETRY, detail);
    return;
  }
  if (x->status == 401 && d->c->oauth_enabled && !d->refreshed) {
    d->refreshed = true; /* the token may have been revoked or expired early */
    OPENSSL_cleanse(d->token, sizeof d->token);
    d->token_expires_ms = 0;
    start_request(d);
    return;
  }
  int outcome = cad_http_classify(d->c, x->status);
  int n = snprintf(detail, sizeof detail, "HTTP %ld%s%s", x->status, x->reason[0] ? " " : "",
                   x->reason);
  if ((x->status == 429 || x->status == 503) && x->retry_after[0]) {
    int64_t ms = cad_http_retry_after(x->retry_after, strlen(x->retry_after), (int64_t)time(NULL));
    if (ms >= 0) {
      d->not_before_ms = now_ms(d) + (uint64_t)ms;
      snprintf(detail + n, sizeof detail - (size_t)n, "; retry after %llds",
               (long long)(ms / 1000));
    }
  }
  finish(d, outcome, detail);
}

static void check_done(cad_http_dest_t *d) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(d->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *e = m->easy_handle;
    CURLcode res = m->data.result;
    xfer_t *x = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &x->status);
    curl_multi_remove_handle(d->multi, e);
    if (x == d->cur) d->cur = NULL;
    if (d->closing) {
      xfer_free(x);
      continue;
    }
    if (x->token) token_done(d, x, res);
    else request_done(d, x, res);
  }
}

/* ---- public ------------------------------------------------------------- */

static bool global_done;

static int getenv_copy(const char *name, char **out, char *err, size_t cap) {
  if (!name) return 0;
  const char *v = getenv(name);
  if (!v || !*v) {
    snprintf(err, cap, "environment variable '%s' is not set", name);
    return CAD_E_CONFIG;
  }
  *out = strdup(v);
  return *out ? 0 : CAD_E_NOMEM;
}

static void free_parts(cad_http_dest_t *d) {
  cad_http_tmpl_free(d->url);
  for (size_t i = 0; i < d->nhdrs; i++) {
    cad_http_tmpl_free(d->hdr_vals ? d->hdr_vals[i] : NULL);
    free(d->hdr_names ? d->hdr_names[i] : NULL);
  }
  free(d->hdr_vals);
  free(d->hdr_names);
  free(d->content_type);
  wipe(&d->bearer);
  wipe(&d->user);
  wipe(&d->password);
  wipe(&d->secret);
  OPENSSL_cleanse(d->token, sizeof d->token);
}

static int compile_headers(cad_http_dest_t *d, char *err, size_t cap) {
  const cad_http_dest_conf_t *c = d->c;
  d->nhdrs = c->nheaders;
  d->hdr_vals = calloc(c->nheaders + 1, sizeof *d->hdr_vals);
  d->hdr_names = calloc(c->nheaders + 1, sizeof *d->hdr_names);
  if (!d->hdr_vals || !d->hdr_names) return CAD_E_NOMEM;
  for (size_t i = 0; i < c->nheaders; i++) {
    const char *h = c->headers[i], *colon = strchr(h, ':');
    if (!colon) {
      snprintf(err, cap, "header %zu: expected \"Name: value\"", i + 1);
      return CAD_E_INVAL;
    }
    d->hdr_names[i] = strndup(h, (size_t)(colon - h));
    if (!d->hdr_names[i]) return CAD_E_NOMEM;
    const char *v = colon + 1;
    while (*v == ' ') v++;
    int rc = cad_http_tmpl_compile(v, &d->hdr_vals[i], err, cap);
    if (rc < 0) return rc;
  }
  return 0;
}

int cad_http_dest_open(uv_loop_t *loop, const cad_http_dest_conf_t *c, const char *content_type,
                       cad_http_dest_t **out, char *err, size_t cap) {
  if (!global_done) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
      snprintf(err, cap, "curl_global_init failed");
      return CAD_E_IO;
    }
    global_done = true;
  }
  cad_http_dest_t *d = calloc(1, sizeof *d);
  if (!d) return CAD_E_NOMEM;
  d->loop = loop;
  d->c = c;
  int rc = CAD_E_NOMEM;
  d->content_type = strdup(content_type ? content_type : "x-application/hl7-v2+er7");
  if (!d->content_type) goto fail;
  if ((rc = cad_http_tmpl_compile(c->url, &d->url, err, cap)) < 0) goto fail;
  if ((rc = compile_headers(d, err, cap)) < 0) goto fail;
  if ((rc = getenv_copy(c->bearer_env, &d->bearer, err, cap)) < 0) goto fail;
  if ((rc = getenv_copy(c->basic_user_env, &d->user, err, cap)) < 0) goto fail;
  if ((rc = getenv_copy(c->basic_password_env, &d->password, err, cap)) < 0) goto fail;
  if (c->oauth_enabled && (rc = getenv_copy(c->client_secret_env, &d->secret, err, cap)) < 0)
    goto fail;
  rc = CAD_E_NOMEM;
  d->multi = curl_multi_init();
  if (!d->multi) goto fail;
  curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
  curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
  uv_timer_init(loop, &d->timer);
  uv_timer_init(loop, &d->hold);
  d->timer.data = d->hold.data = d;
  d->nhandles = 2;
  *out = d;
  return 0;
fail:
  free_parts(d);
  free(d);
  return rc;
}

bool cad_http_dest_needs_msg(const cad_http_dest_t *d) {
  if (cad_http_tmpl_has_refs(d->url)) return true;
  for (size_t i = 0; i < d->nhdrs; i++)
    if (cad_http_tmpl_has_refs(d->hdr_vals[i])) return true;
  return false;
}

int cad_http_dest_send(cad_http_dest_t *d, const cad_hl7_msg_t *m, const char *body, size_t len,
                       cad_http_done_cb cb, void *arg) {
  if (d->closing || d->busy) return CAD_E_STATE;
  char *url = cad_http_tmpl_render(d->url, m, true);
  if (!url) return CAD_E_NOMEM;
  struct curl_slist *h = NULL;
  char line[1200];
  snprintf(line, sizeof line, "Content-Type: %s", d->content_type);
  h = curl_slist_append(h, line);
  h = h ? curl_slist_append(h, "Expect:") : NULL; /* no 100-continue round trip */
  for (size_t i = 0; h && i < d->nhdrs; i++) {
    char *v = cad_http_tmpl_render(d->hdr_vals[i], m, false);
    if (!v) {
      curl_slist_free_all(h);
      h = NULL;
      break;
    }
    snprintf(line, sizeof line, "%s: %s", d->hdr_names[i], v);
    free(v);
    struct curl_slist *n = curl_slist_append(h, line);
    if (!n) {
      curl_slist_free_all(h);
      h = NULL;
    } else h = n;
  }
  if (!h) {
    free(url);
    return CAD_E_NOMEM;
  }
  d->busy = true;
  d->refreshed = false;
  d->body = body;
  d->body_len = len;
  d->msg_url = url;
  d->msg_hdrs = h;
  d->cb = cb;
  d->cb_arg = arg;
  start_request(d);
  return 0;
}

void cad_http_dest_answer(const cad_http_dest_t *d, cad_http_answer_t *out) {
  const xfer_t *x = d->last;
  *out = (cad_http_answer_t){0, "", "", "", "", 0, false};
  if (!x) return;
  *out = (cad_http_answer_t){
      x->status, x->ctype, x->location, x->retry_after, x->body ? x->body : "", x->len, x->cut};
}

void cad_http_dest_close(cad_http_dest_t *d) {
  if (!d || d->closing) return;
  if (d->busy) finish(d, CAD_HTTP_RETRY, "closing");
  d->closing = true;
  if (d->cur) {
    curl_multi_remove_handle(d->multi, d->cur->easy);
    xfer_free(d->cur);
    d->cur = NULL;
  }
  xfer_free(d->last);
  d->last = NULL;
  curl_multi_cleanup(d->multi); /* closes the connections (their polls through on_socket) */
  d->multi = NULL;
  while (d->polls) poll_close(d, d->polls);
  free_parts(d);
  uv_close((uv_handle_t *)&d->timer, handle_closed);
  uv_close((uv_handle_t *)&d->hold, handle_closed);
}
