/* test_admin.c - the admin API's handler and exposition without a socket
 * (engine/runtime/admin.h): routing, roles, the failure limit, label
 * escaping.  The HTTP side is driven by tests/integration/test_admin.py. */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "harness.h"
#include "journal.h"
#include "stats.h"

static cad_delivery_stats_t counters[CAD_JOURNAL_MAX_DESTS];
static cad_queue_t *no_queue;
static bool stopping;

static cad_admin_t *make(bool open) {
  static cad_conf_token_t toks[2];
  toks[0] = (cad_conf_token_t){.name = "v", .role = CAD_ROLE_VIEWER};
  toks[1] = (cad_conf_token_t){.name = "a", .role = CAD_ROLE_ADMIN};
  cad_admin_token_hash("view-tok", 8, toks[0].sha256);
  cad_admin_token_hash("admin-tok", 9, toks[1].sha256);
  cad_conf_admin_t conf = {0};
  conf.enabled = true;
  conf.open_metrics = open;
  conf.tokens = toks;
  conf.ntokens = 2;
  cad_admin_view_t v = {&no_queue, counters, &stopping, NULL, NULL};
  cad_admin_t *a = NULL;
  if (cad_admin_new(&conf, &v, &a) != 0) abort();
  return a;
}

/* One request; returns the status, body in *body (caller frees). */
static int ask(cad_admin_t *a, const char *method, const char *path, const char *auth,
               const char *peer, char **body) {
  cad_http_req_t r = {0};
  r.method = method;
  r.method_len = strlen(method);
  r.path = path;
  r.path_len = strlen(path);
  r.authorization = auth;
  r.authorization_len = auth ? strlen(auth) : 0;
  r.peer = peer;
  cad_http_res_t res = {0};
  cad_admin_handle(a, &r, &res);
  if (body) *body = res.body;
  else free(res.body);
  return res.status;
}

TEST(routes_and_roles) {
  cad_admin_t *a = make(true);
  char *b = NULL;
  CHECK_INT(ask(a, "GET", "/healthz", NULL, "1.1.1.1", &b), 200);
  CHECK_STR(b, "{\"status\":\"alive\"}");
  free(b);
  /* no queue: not ready, with the reason */
  CHECK_INT(ask(a, "GET", "/readyz", NULL, "1.1.1.1", &b), 503);
  CHECK(b && strstr(b, "the journal is closed"));
  free(b);
  CHECK_INT(ask(a, "GET", "/api/v1/channels", NULL, "1.1.1.1", NULL), 401);
  CHECK_INT(ask(a, "GET", "/api/v1/channels", "Bearer view-tok", "1.1.1.1", NULL), 200);
  CHECK_INT(ask(a, "GET", "/api/v1/channels", "bearer  view-tok ", "1.1.1.1", NULL), 200);
  CHECK_INT(ask(a, "GET", "/api/v1/channels", "Basic view-tok", "1.1.1.1", NULL), 401);
  CHECK_INT(ask(a, "GET", "/api/v1/channels", "Bearer view-to", "1.1.1.1", NULL), 401);
  CHECK_INT(ask(a, "GET", "/api/v1/tokens", "Bearer view-tok", "1.1.1.1", NULL), 403);
  CHECK_INT(ask(a, "GET", "/api/v1/tokens", "Bearer admin-tok", "1.1.1.1", NULL), 200);
  CHECK_INT(ask(a, "GET", "/api/v1/none", "Bearer view-tok", "1.1.1.1", NULL), 404);
  CHECK_INT(ask(a, "GET", "/none", NULL, "1.1.1.1", NULL), 404);
  CHECK_INT(ask(a, "HEAD", "/metrics", NULL, "1.1.1.1", NULL), 405);
  CHECK_INT(ask(a, "GET", "/metricsX", NULL, "1.1.1.1", NULL), 404);
  CHECK_INT(ask(a, "GET", "/metric", NULL, "1.1.1.1", NULL), 404);
  cad_admin_close(a);
}

TEST(closed_metrics_need_a_token) {
  cad_admin_t *a = make(false);
  CHECK_INT(ask(a, "GET", "/metrics", NULL, "1.1.1.1", NULL), 401);
  CHECK_INT(ask(a, "GET", "/metrics", "Bearer view-tok", "1.1.1.1", NULL), 200);
  CHECK_INT(ask(a, "POST", "/metrics", NULL, "1.1.1.1", NULL), 401);
  cad_admin_close(a);
}

TEST(failures_limited_per_address) {
  cad_admin_t *a = make(true);
  for (int i = 0; i < CAD_ADMIN_MAX_FAILS; i++)
    CHECK_INT(ask(a, "GET", "/api/v1/channels", "Bearer x", "10.0.0.1", NULL), 401);
  CHECK_INT(ask(a, "GET", "/api/v1/channels", "Bearer view-tok", "10.0.0.1", NULL), 429);
  /* another address is not affected */
  CHECK_INT(ask(a, "GET", "/api/v1/channels", "Bearer view-tok", "10.0.0.2", NULL), 200);
  /* more addresses than the table holds: it stays bounded, and works */
  char peer[32];
  for (int i = 0; i < 3 * CAD_ADMIN_MAX_PEERS; i++) {
    snprintf(peer, sizeof peer, "192.0.2.%d", i);
    CHECK_INT(ask(a, "GET", "/api/v1/channels", NULL, peer, NULL), 401);
  }
  cad_admin_close(a);
}

TEST(label_values_escaped) {
  cad_chan_stats_t *s = cad_stats_get("a\"b\\c\nd");
  REQUIRE(s != NULL);
  s->received = 7;
  cad_admin_view_t v = {&no_queue, counters, &stopping, NULL, NULL};
  char *out = NULL;
  size_t len = 0;
  CHECK_INT(cad_admin_metrics(&v, 1700000000123ull, &out, &len), 0);
  REQUIRE(out != NULL);
  CHECK_INT((long)strlen(out), (long)len);
  CHECK(strstr(out, "caduceus_channel_received_total{channel=\"a\\\"b\\\\c\\nd\"} 7\n") != NULL);
  CHECK(strstr(out, "process_start_time_seconds 1700000000.123\n") != NULL);
  CHECK(strstr(out, "# TYPE caduceus_channel_open_connections gauge\n") != NULL);
  free(out);
  cad_stats_free_all();
}

TEST(token_new_hashes_to_its_line) {
  char tok[CAD_ADMIN_TOKEN_LEN + 1], hash[CAD_ADMIN_HASH_LEN + 1];
  CHECK_INT(cad_admin_token_new(tok, hash), 0);
  CHECK_INT((long)strlen(tok), CAD_ADMIN_TOKEN_LEN);
  CHECK_INT((long)strlen(hash), CAD_ADMIN_HASH_LEN);
  unsigned char h[32];
  CHECK_INT(cad_admin_token_hash(tok, strlen(tok), h), 0);
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
  CHECK_STR(hash + 7, hex);
}

TEST_MAIN()
