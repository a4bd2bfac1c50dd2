/* http_policy.c - what an HTTP answer means, Retry-After, OAuth2 token
 * responses and URL/header templates (http_client.h).  No sockets here, so
 * the unit tests and the fuzzer call these directly. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cad_error.h"
#include "http_client.h"

#define MAX_RETRY_AFTER_S 3600
#define MAX_PIECES 32

static const char *const default_retry[] = {"408", "429", "5xx"};
static const char *const default_dead[] = {"4xx"};

int cad_http_classify(const cad_http_dest_conf_t *c, long status) {
  if (status >= 200 && status <= 299) return CAD_HTTP_OK;
  const char *const *r = c->nretry_on ? c->retry_on : default_retry;
  size_t nr = c->nretry_on ? c->nretry_on : sizeof default_retry / sizeof *default_retry;
  if (cad_http_status_in(r, nr, status)) return CAD_HTTP_RETRY;
  const char *const *d = c->ndead_letter_on ? c->dead_letter_on : default_dead;
  size_t nd = c->ndead_letter_on ? c->ndead_letter_on : 1;
  if (cad_http_status_in(d, nd, status)) return CAD_HTTP_FAIL;
  return CAD_HTTP_RETRY;
}

int64_t cad_http_retry_after(const char *v, size_t len, int64_t now_s) {
  while (len && (*v == ' ' || *v == '\t')) v++, len--;
  while (len &&
         (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r' || v[len - 1] == '\n'))
    len--;
  if (len == 0 || len > 64) return -1;
  char buf[65];
  memcpy(buf, v, len);
  buf[len] = 0;
  if (memchr(buf, 0, len)) return -1;
  int64_t s;
  if (strspn(buf, "0123456789") == len) {
    if (len > 10) return (int64_t)MAX_RETRY_AFTER_S * 1000;
    s = strtoll(buf, NULL, 10);
  } else {
    time_t t = curl_getdate(buf, NULL);
    if (t == (time_t)-1) return -1;
    s = (int64_t)t - now_s;
    if (s < 0) s = 0;
  }
  if (s > MAX_RETRY_AFTER_S) s = MAX_RETRY_AFTER_S;
  return s * 1000;
}

int cad_http_oauth_parse(const char *body, size_t len, char *tok, size_t cap, int64_t *expires_s) {
  json_error_t e;
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
  int rc = CAD_E_INVAL;
  if (!root || !json_is_object(root)) goto out;
  json_t *at = json_object_get(root, "access_token");
  json_t *tt = json_object_get(root, "token_type");
  json_t *ex = json_object_get(root, "expires_in");
  if (!json_is_string(at)) goto out;
  if (tt && (!json_is_string(tt) || strcasecmp(json_string_value(tt), "bearer") != 0)) goto out;
  size_t n = json_string_length(at);
  const char *s = json_string_value(at);
  if (n == 0 || n >= cap) goto out;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) goto out;
  int64_t exp = 3600;
  if (ex) {
    if (json_is_integer(ex)) exp = (int64_t)json_integer_value(ex);
    else if (json_is_real(ex)) exp = (int64_t)json_real_value(ex);
    else goto out;
    if (exp < 0) exp = 0;
    if (exp > 86400 * 365) exp = 86400 * 365;
  }
  memcpy(tok, s, n);
  tok[n] = 0;
  *expires_s = exp;
  rc = 0;
out:
  json_decref(root);
  return rc;
}

/* ---- templates ----------------------------------------------------------- */

typedef struct piece {
  char *lit; /* literal text, or NULL for a path */
  cad_hl7_path_t path;
} piece_t;

struct cad_http_tmpl {
  piece_t pieces[MAX_PIECES];
  int n;
  bool refs;
};

void cad_http_tmpl_free(cad_http_tmpl_t *t) {
  if (!t) return;
  for (int i = 0; i < t->n; i++) free(t->pieces[i].lit);
  free(t);
}

int cad_http_tmpl_compile(const char *s, cad_http_tmpl_t **out, char *err, size_t cap) {
  cad_http_tmpl_t *t = calloc(1, sizeof *t);
  if (!t) return CAD_E_NOMEM;
  const char *p = s;
  while (*p) {
    if (t->n >= MAX_PIECES) {
      snprintf(err, cap, "more than %d parts in the template", MAX_PIECES);
      goto fail;
    }
    piece_t *pc = &t->pieces[t->n];
    if (p[0] == '$' && p[1] == '{') {
      const char *e = strchr(p + 2, '}');
      size_t epos = 0;
      const char *why = NULL;
      if (!e) {
        snprintf(err, cap, "'${' without '}' in the template");
        goto fail;
      }
      if (cad_hl7_path_parse(p + 2, (size_t)(e - p - 2), &pc->path, &epos, &why) < 0) {
        snprintf(err, cap, "bad path '%.*s' in the template: %s", (int)(e - p - 2), p + 2,
                 why ? why : "syntax error");
        goto fail;
      }
      t->refs = true;
      p = e + 1;
    } else {
      const char *e = strstr(p, "${");
      size_t n = e ? (size_t)(e - p) : strlen(p);
      pc->lit = malloc(n + 1);
      if (!pc->lit) {
        cad_http_tmpl_free(t);
        return CAD_E_NOMEM;
      }
      memcpy(pc->lit, p, n);
      pc->lit[n] = 0;
      p += n;
    }
    t->n++;
  }
  *out = t;
  return 0;
fail:
  cad_http_tmpl_free(t);
  return CAD_E_INVAL;
}

bool cad_http_tmpl_has_refs(const cad_http_tmpl_t *t) { return t->refs; }

static int put_value(cad_buf_t *b, const char *v, size_t n, bool url) {
  static const char hex[] = "0123456789ABCDEF";
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    unsigned char c = (unsigned char)v[i];
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~';
    if (url && !plain) {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      rc = cad_buf_append(b, e, 3);
    } else if (!url && (c < 0x20 || c == 0x7f)) {
      rc = cad_buf_putc(b, ' ');
    } else {
      rc = cad_buf_putc(b, (char)c);
    }
  }
  return rc;
}

#define MAX_VALUE 1024 /* bytes of one substituted value */

char *cad_http_tmpl_render(const cad_http_tmpl_t *t, const cad_hl7_msg_t *m, bool url_encode) {
  cad_buf_t b = CAD_BUF_INIT;
  cad_arena_t a;
  cad_arena_init(&a, 1024, 0);
  int rc = 0;
  for (int i = 0; i < t->n && rc == 0; i++) {
    const piece_t *pc = &t->pieces[i];
    if (pc->lit) {
      rc = cad_buf_puts(&b, pc->lit);
      continue;
    }
    cad_hl7_match_t mt;
    cad_str_t v;
    if (!m || !cad_hl7_get(m, &pc->path, &mt)) continue;
    if (!cad_hl7_value(&pc->path, &mt, &a, &v)) {
      rc = CAD_E_NOMEM;
      break;
    }
    if (cad_hl7_kind(&mt) == CAD_HL7_NULL) continue;
    rc = put_value(&b, v.p, v.len < MAX_VALUE ? v.len : MAX_VALUE, url_encode);
  }
  cad_arena_free(&a);
  if (rc == 0 && !cad_buf_cstr(&b)) rc = CAD_E_NOMEM;
  if (rc) {
    cad_buf_free(&b);
    return NULL;
  }
  if (!b.data) return strdup("");
  return b.data;
}
