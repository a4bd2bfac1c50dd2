/* test_admin.c - the admin API's handler and exposition without a socket
 * (engine/runtime/admin.h): routing, roles, the failure limit, label
 * escaping.  The HTTP side is driven by tests/integration/test_admin.py. */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "admin_int.h"
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

static const char *req_body;   /* the next request's body (ask) */
static const char *last_ctype; /* the last answer's content type */
static const char *last_csp;

/* One request; returns the status, body in *body (caller frees). */
static int ask(cad_admin_t *a, const char *method, const char *path, const char *auth,
               const char *peer, char **body) {
  cad_http_req_t r = {0};
  r.method = method;
  r.method_len = strlen(method);
  r.path = path;
  r.path_len = strlen(path);
  const char *q = strchr(path, '?');
  if (q) {
    r.path_len = (size_t)(q - path);
    r.query = q + 1;
    r.query_len = strlen(q + 1);
  }
  r.body = req_body;
  r.body_len = req_body ? strlen(req_body) : 0;
  r.authorization = auth;
  r.authorization_len = auth ? strlen(auth) : 0;
  r.peer = peer;
  cad_http_res_t res = {0};
  cad_admin_handle(a, &r, &res);
  last_ctype = res.content_type;
  last_csp = res.csp;
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

TEST(query_parameters_decoded) {
  cad_http_req_t r = {0};
  r.query = "a=1&b=x%20y+z&empty&c=%zz&d=%00&e=%41%42";
  r.query_len = strlen(r.query);
  char v[16];
  CHECK_INT(cad__admin_query(&r, "a", v, sizeof v), 1);
  CHECK_STR(v, "1");
  CHECK_INT(cad__admin_query(&r, "b", v, sizeof v), 1);
  CHECK_STR(v, "x y z");
  CHECK_INT(cad__admin_query(&r, "empty", v, sizeof v), 1);
  CHECK_STR(v, "");
  CHECK_INT(cad__admin_query(&r, "c", v, sizeof v), -1); /* bad escape */
  CHECK_INT(cad__admin_query(&r, "d", v, sizeof v), -1); /* NUL byte */
  CHECK_INT(cad__admin_query(&r, "e", v, sizeof v), 1);
  CHECK_STR(v, "AB");
  CHECK_INT(cad__admin_query(&r, "nope", v, sizeof v), 0);
  CHECK_INT(cad__admin_query(&r, "b", v, 4), -1); /* longer than the room */
  uint64_t n;
  CHECK_INT(cad__admin_u64("18446744073709551615", &n), -1); /* 20 digits */
  CHECK_INT(cad__admin_u64("123", &n), 0);
  CHECK_INT((long)n, 123);
  CHECK_INT(cad__admin_u64("", &n), -1);
  CHECK_INT(cad__admin_u64("1x", &n), -1);
}

TEST(control_routes_roles_and_pause_state) {
  cad_admin_t *a = make(true);
  REQUIRE(cad_stats_get("lab") != NULL);
  char *b = NULL;
  CHECK_INT(ask(a, "POST", "/api/v1/channels/lab/pause", "Bearer view-tok", "1.1.1.1", NULL), 403);
  CHECK(!cad_admin_channel_paused(a, "lab"));
  CHECK_INT(ask(a, "POST", "/api/v1/channels/lab/pause", "Bearer admin-tok", "1.1.1.1", &b), 200);
  CHECK(b && strstr(b, "\"paused\":true") && strstr(b, "\"changed\":true"));
  free(b);
  CHECK(cad_admin_channel_paused(a, "lab"));
  CHECK(!cad_admin_channel_paused(a, "other"));
  CHECK(!cad_admin_channel_paused(NULL, "lab"));
  cad_admin_channel_refused(a, "lab");
  CHECK_INT(ask(a, "GET", "/api/v1/channels", "Bearer view-tok", "1.1.1.1", &b), 200);
  CHECK(b && strstr(b, "\"refused_while_paused\":1"));
  free(b);
  CHECK_INT(ask(a, "POST", "/api/v1/channels/lab/pause", "Bearer admin-tok", "1.1.1.1", &b), 200);
  CHECK(b && strstr(b, "\"changed\":false"));
  free(b);
  CHECK_INT(ask(a, "POST", "/api/v1/channels/lab/resume", "Bearer admin-tok", "1.1.1.1", NULL),
            200);
  CHECK(!cad_admin_channel_paused(a, "lab"));
  CHECK_INT(ask(a, "POST", "/api/v1/channels/nosuch/pause", "Bearer admin-tok", "1.1.1.1", &b),
            404);
  CHECK(b && strstr(b, "\"detail\""));
  free(b);
  /* path segments: decoded, malformed refused, '/' never inside one */
  CHECK_INT(ask(a, "POST", "/api/v1/channels/l%61b/pause", "Bearer admin-tok", "1.1.1.1", NULL),
            200);
  CHECK_INT(ask(a, "POST", "/api/v1/channels/%zz/pause", "Bearer admin-tok", "1.1.1.1", NULL), 400);
  CHECK_INT(ask(a, "POST", "/api/v1/channels/a/b/pause", "Bearer admin-tok", "1.1.1.1", NULL), 404);
  CHECK_INT(ask(a, "POST", "/api/v1/channels//pause", "Bearer admin-tok", "1.1.1.1", NULL), 404);
  CHECK_INT(ask(a, "GET", "/api/v1/channels/lab/pause", "Bearer admin-tok", "1.1.1.1", NULL), 405);
  /* no queue: destination routes say so, after their own checks */
  CHECK_INT(ask(a, "POST", "/api/v1/destinations/x/pause", "Bearer admin-tok", "1.1.1.1", NULL),
            503);
  CHECK_INT(ask(a, "GET", "/api/v1/destinations/x/deadletters?limit=0", "Bearer view-tok",
                "1.1.1.1", NULL),
            400);
  CHECK(!cad_admin_dest_paused(a, 3));
  CHECK(!cad_admin_dest_paused(a, 60000));
  cad_admin_close(a);
  cad_stats_free_all();
}

TEST(request_bodies_checked_before_anything_else) {
  cad_admin_t *a = make(true);
  static const char *const bad[] = {NULL,
                                    "",
                                    "{",
                                    "[]",
                                    "{\"number\": 0}",
                                    "{\"number\": -3}",
                                    "{\"all\": true, \"number\": 2}",
                                    "{\"number\": 1, \"x\": 1}",
                                    "{\"number\": 1, \"number\": 2}",
                                    "{\"all\": 1}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    req_body = bad[i];
    char *b = NULL;
    CHECK_INT(ask(a, "POST", "/api/v1/destinations/rx/deadletters/requeue", "Bearer admin-tok",
                  "1.1.1.1", &b),
              400);
    CHECK(b && strstr(b, "bad_request") && last_ctype && !strcmp(last_ctype, "application/json"));
    free(b);
  }
  req_body = "{\"number\": 7}"; /* well formed: then the missing queue */
  CHECK_INT(ask(a, "POST", "/api/v1/destinations/rx/deadletters/requeue", "Bearer admin-tok",
                "1.1.1.1", NULL),
            503);
  req_body = "{\"destination\": 5}";
  CHECK_INT(ask(a, "POST", "/api/v1/messages/12/resend", "Bearer admin-tok", "1.1.1.1", NULL), 400);
  req_body = "{\"destination\": \"rx\", \"set\": [1]}";
  CHECK_INT(ask(a, "POST", "/api/v1/messages/12/resend", "Bearer admin-tok", "1.1.1.1", NULL), 400);
  req_body = "{\"destination\": \"rx\"}";
  CHECK_INT(ask(a, "POST", "/api/v1/messages/x1/resend", "Bearer admin-tok", "1.1.1.1", NULL), 400);
  CHECK_INT(ask(a, "POST", "/api/v1/messages/12/resend", "Bearer admin-tok", "1.1.1.1", NULL), 503);
  req_body = NULL;
  /* search parameters */
  CHECK_INT(ask(a, "GET", "/api/v1/messages?status=bogus", "Bearer view-tok", "1.1.1.1", NULL),
            400);
  CHECK_INT(ask(a, "GET", "/api/v1/messages?since=yesterday", "Bearer view-tok", "1.1.1.1", NULL),
            400);
  CHECK_INT(ask(a, "GET", "/api/v1/messages?until=2026-13-01", "Bearer view-tok", "1.1.1.1", NULL),
            400);
  CHECK_INT(ask(a, "GET", "/api/v1/messages?since=2h&until=2026-01-01T10:00Z&limit=3",
                "Bearer view-tok", "1.1.1.1", NULL),
            503); /* valid; no archive here */
  CHECK_INT(ask(a, "GET", "/api/v1/messages/5?body=1", "Bearer view-tok", "1.1.1.1", NULL), 403);
  CHECK_INT(ask(a, "GET", "/api/v1/messages/5?body=2", "Bearer view-tok", "1.1.1.1", NULL), 400);
  cad_admin_close(a);
}

static void no_pause(void *ud, uint16_t qid, bool paused) { (void)ud, (void)qid, (void)paused; }

TEST(audit_trail_written_and_read_back) {
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/cad_test_admin_%d", (int)getpid());
  mkdir(dir, 0700);
  static cad_conf_token_t toks[1];
  toks[0] = (cad_conf_token_t){.name = "root", .role = CAD_ROLE_ADMIN};
  cad_admin_token_hash("admin-tok", 9, toks[0].sha256);
  cad_conf_admin_t conf = {0};
  conf.enabled = true;
  conf.tokens = toks;
  conf.ntokens = 1;
  cad_admin_ctl_t ctl = {NULL, no_pause, NULL, dir};
  cad_admin_view_t v = {&no_queue, counters, &stopping, NULL, &ctl};
  cad_admin_t *a = NULL;
  REQUIRE(cad_admin_new(&conf, &v, &a) == 0);
  REQUIRE(cad_stats_get("lab") != NULL);
  CHECK_INT(ask(a, "POST", "/api/v1/channels/lab/pause", "Bearer admin-tok", "10.1.2.3", NULL),
            200);
  CHECK_INT(ask(a, "POST", "/api/v1/channels/none/pause", "Bearer admin-tok", "10.1.2.3", NULL),
            404);
  CHECK_INT(ask(a, "POST", "/api/v1/reload", "Bearer admin-tok", "10.1.2.3", NULL), 503);
  char path[128];
  snprintf(path, sizeof path, "%s/audit.jsonl", dir);
  struct stat st;
  REQUIRE(stat(path, &st) == 0);
  CHECK_INT((long)(st.st_mode & 0777), 0600);
  char *b = NULL;
  CHECK_INT(ask(a, "GET", "/api/v1/audit?limit=2", "Bearer admin-tok", "10.1.2.3", &b), 200);
  REQUIRE(b != NULL);
  /* newest first: the reload, then the unknown channel */
  char *r = strstr(b, "\"action\":\"reload\""), *n = strstr(b, "\"target\":\"none\"");
  CHECK(r && n && r < n);
  CHECK(strstr(b, "\"target\":\"lab\"") == NULL); /* only two */
  CHECK(strstr(b, "\"token\":\"root\"") && strstr(b, "\"peer\":\"10.1.2.3\""));
  free(b);
  CHECK_INT(ask(a, "GET", "/api/v1/audit?limit=x", "Bearer admin-tok", "10.1.2.3", NULL), 400);
  cad_admin_close(a);
  cad_stats_free_all();
  unlink(path);
  rmdir(dir);
}

TEST(console_files_need_no_token_and_carry_a_csp) {
  cad_admin_t *a = make(false);
  char *b = NULL;
  CHECK_INT(ask(a, "GET", "/", NULL, "1.1.1.1", &b), 200);
  CHECK(b && strstr(b, "<!DOCTYPE html>") && last_ctype && strstr(last_ctype, "text/html"));
  CHECK(last_csp && strstr(last_csp, "script-src 'self'") && strstr(last_csp, "frame-ancestors"));
  free(b);
  CHECK_INT(ask(a, "GET", "/console/app.js", NULL, "1.1.1.1", &b), 200);
  CHECK(b && strstr(b, "sessionStorage") && !strstr(b, "innerHTML") &&
        !strstr(b, "document.cookie"));
  free(b);
  CHECK_INT(ask(a, "GET", "/console/app.css", NULL, "1.1.1.1", NULL), 200);
  CHECK_INT(ask(a, "GET", "/console/../admin.c", NULL, "1.1.1.1", NULL), 404);
  CHECK_INT(ask(a, "POST", "/", NULL, "1.1.1.1", NULL), 404);
  cad_admin_close(a);
}

TEST_MAIN()
