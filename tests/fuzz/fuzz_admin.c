/* fuzz_admin.c - the admin API's request handling (engine/runtime/admin.h):
 * method, path, query, Authorization header and peer address as the HTTP
 * server hands them over, through routing, token checks, the per-address
 * failure limit and every answer.
 *
 * Input: the first byte picks open_metrics (bit 0); the rest is split at
 * '\n' into method, path (with an optional ?query), Authorization value
 * and peer; whatever follows the peer's line is the request body (the JSON
 * of requeue, purge and resend).  Each part is copied into a buffer of its
 * exact size, so a read past a span faults under ASan.  Tokens configured:
 * "fuzz-viewer" (viewer), "fuzz-analyst", "fuzz-operator" and "fuzz-admin".
 * There is no queue or archive: the routes parse their query and body,
 * then answer 503/404 (the engine side is tests/integration).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "journal.h"

static cad_delivery_stats_t counters[CAD_JOURNAL_MAX_DESTS];
static cad_queue_t *no_queue;
static bool not_stopping;

static char *part(const uint8_t **p, const uint8_t *end, size_t *len) {
  const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
  const uint8_t *stop = nl ? nl : end;
  *len = (size_t)(stop - *p);
  char *s = malloc(*len ? *len : 1);
  if (s && *len) memcpy(s, *p, *len);
  *p = nl ? nl + 1 : end;
  return s;
}

static cad_admin_t *make(bool open) {
  static cad_conf_token_t toks[4];
  static const char *const secrets[4] = {"fuzz-viewer", "fuzz-analyst", "fuzz-operator",
                                         "fuzz-admin"};
  static const cad_role_t roles[4] = {CAD_ROLE_VIEWER, CAD_ROLE_ANALYST, CAD_ROLE_OPERATOR,
                                      CAD_ROLE_ADMIN};
  for (int i = 0; i < 4; i++) {
    toks[i].name = (char *)(uintptr_t)secrets[i];
    toks[i].role = roles[i];
    cad_admin_token_hash(secrets[i], strlen(secrets[i]), toks[i].sha256);
  }
  cad_conf_admin_t conf = {0};
  conf.enabled = true;
  conf.open_metrics = open;
  conf.tokens = toks;
  conf.ntokens = 4;
  cad_admin_view_t v = {&no_queue, counters, &not_stopping, NULL, NULL};
  cad_admin_t *a = NULL;
  return cad_admin_new(&conf, &v, &a) == 0 ? a : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  /* One admin per mode for the whole run, so the failure limit is fuzzed
   * across inputs too (its table is bounded). */
  static cad_admin_t *admins[2];
  bool open = data[0] & 1;
  if (!admins[open] && !(admins[open] = make(open))) return 0;
  const uint8_t *p = data + 1, *end = data + size;
  size_t ml, pl, al, peer_len;
  char *method = part(&p, end, &ml), *path = part(&p, end, &pl), *auth = part(&p, end, &al);
  char *peer_raw = part(&p, end, &peer_len);
  size_t bl = (size_t)(end - p);
  char *body = malloc(bl ? bl : 1);
  if (body && bl) memcpy(body, p, bl);
  char peer[48];
  size_t n = peer_len < sizeof peer - 1 ? peer_len : sizeof peer - 1;
  if (peer_raw) memcpy(peer, peer_raw, n);
  peer[n] = 0;
  if (method && path && auth && body) {
    cad_http_req_t req = {0};
    req.method = method;
    req.method_len = ml;
    const char *q = memchr(path, '?', pl);
    req.path = path;
    req.path_len = q ? (size_t)(q - path) : pl;
    if (q) {
      req.query = q + 1;
      req.query_len = pl - req.path_len - 1;
    }
    req.authorization = al ? auth : NULL;
    req.authorization_len = al;
    req.peer = peer;
    req.body = bl ? body : NULL;
    req.body_len = bl;
    cad_http_res_t res = {0};
    cad_admin_handle(admins[open], &req, &res);
    if (res.status < 200 || res.status > 599 || !res.content_type) abort();
    if (res.len && (!res.body || strlen(res.body) != res.len)) abort();
    free(res.body);
  }
  free(method);
  free(path);
  free(auth);
  free(peer_raw);
  free(body);
  return 0;
}
