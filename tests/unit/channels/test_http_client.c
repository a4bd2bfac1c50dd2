/* test_http_client.c - the HTTP destination (channels/http/http_client.h):
 * what an answer means, Retry-After, OAuth2 token responses, templates, and
 * real requests on a libuv loop to the engine's own HTTP server
 * (http_server.h) in the same process: 2xx, 503 with Retry-After held, a
 * 4xx given up, connection refused. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cad_error.h"
#include "harness.h"
#include "http_client.h"
#include "http_server.h"

static cad_http_dest_conf_t conf(const char *url) {
  cad_http_dest_conf_t c;
  memset(&c, 0, sizeof c);
  c.url = url;
  c.connect_timeout_ms = 2000;
  c.timeout_ms = 2000;
  c.keep_body = 16;
  return c;
}

TEST(classify_defaults) {
  cad_http_dest_conf_t c = conf("http://x/");
  CHECK_INT(cad_http_classify(&c, 200), CAD_HTTP_OK);
  CHECK_INT(cad_http_classify(&c, 204), CAD_HTTP_OK);
  CHECK_INT(cad_http_classify(&c, 408), CAD_HTTP_RETRY);
  CHECK_INT(cad_http_classify(&c, 429), CAD_HTTP_RETRY);
  CHECK_INT(cad_http_classify(&c, 500), CAD_HTTP_RETRY);
  CHECK_INT(cad_http_classify(&c, 503), CAD_HTTP_RETRY);
  CHECK_INT(cad_http_classify(&c, 400), CAD_HTTP_FAIL);
  CHECK_INT(cad_http_classify(&c, 404), CAD_HTTP_FAIL);
  CHECK_INT(cad_http_classify(&c, 422), CAD_HTTP_FAIL);
  CHECK_INT(cad_http_classify(&c, 302), CAD_HTTP_RETRY); /* not followed, not given up */
}

TEST(classify_lists) {
  cad_http_dest_conf_t c = conf("http://x/");
  const char *retry[] = {"409", "5xx"}, *dead[] = {"501", "4xx"};
  c.retry_on = retry;
  c.nretry_on = 2;
  c.dead_letter_on = dead;
  c.ndead_letter_on = 2;
  CHECK_INT(cad_http_classify(&c, 409), CAD_HTTP_RETRY); /* retry_on comes first */
  CHECK_INT(cad_http_classify(&c, 429), CAD_HTTP_FAIL);  /* no longer retried */
  CHECK_INT(cad_http_classify(&c, 501), CAD_HTTP_RETRY);
  CHECK(cad_http_status_valid("4xx") && cad_http_status_valid("599"));
  CHECK(!cad_http_status_valid("6xx") && !cad_http_status_valid("42") &&
        !cad_http_status_valid("4x1") && !cad_http_status_valid("0xx"));
}

TEST(content_types) {
  CHECK_STR(cad_http_content_type_for(NULL), "x-application/hl7-v2+er7");
  CHECK_STR(cad_http_content_type_for("er7"), "x-application/hl7-v2+er7");
  CHECK_STR(cad_http_content_type_for("fhir"), "application/fhir+json");
  CHECK_STR(cad_http_content_type_for("json"), "application/json");
  CHECK_STR(cad_http_content_type_for("xml"), "application/xml");
  CHECK(cad_http_content_type_for("csv") == NULL);
}

TEST(retry_after) {
  CHECK_INT(cad_http_retry_after("5", 1, 0), 5000);
  CHECK_INT(cad_http_retry_after(" 120 \r\n", 7, 0), 120000);
  CHECK_INT(cad_http_retry_after("999999999999", 12, 0), 3600000); /* capped */
  CHECK_INT(cad_http_retry_after("", 0, 0), -1);
  CHECK_INT(cad_http_retry_after("-5", 2, 0), -1);
  CHECK_INT(cad_http_retry_after("soon", 4, 0), -1);
  /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
  const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";
  CHECK_INT(cad_http_retry_after(d, strlen(d), 784111770), 7000);
  CHECK_INT(cad_http_retry_after(d, strlen(d), 784111800), 0); /* in the past: now */
}

TEST(oauth_parse) {
  char tok[32];
  int64_t exp = 0;
  const char *ok = "{\"access_token\":\"abc.def\",\"token_type\":\"Bearer\",\"expires_in\":300}";
  CHECK_INT(cad_http_oauth_parse(ok, strlen(ok), tok, sizeof tok, &exp), 0);
  CHECK_STR(tok, "abc.def");
  CHECK_INT(exp, 300);
  const char *noexp = "{\"access_token\":\"t\"}";
  CHECK_INT(cad_http_oauth_parse(noexp, strlen(noexp), tok, sizeof tok, &exp), 0);
  CHECK_INT(exp, 3600);
  const char *bad[] = {"",
                       "[]",
                       "{\"access_token\":5}",
                       "{\"access_token\":\"a b\"}",
                       "{\"access_token\":\"t\",\"token_type\":\"mac\"}",
                       "{\"access_token\":\"0123456789012345678901234567890123456789\"}",
                       "{\"access_token\":\"t\",\"expires_in\":\"x\"}",
                       "{\"access_token\":\"t\""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_INT(cad_http_oauth_parse(bad[i], strlen(bad[i]), tok, sizeof tok, &exp), CAD_E_INVAL);
}

TEST(templates) {
  const char *msg =
      "MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20260101||ADT^A01|C1|P|2.5\r"
      "PID|1||12 3/4\\T\\?^^^HOSP||\"\"\r";
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, msg, strlen(msg), &a, NULL, NULL) == 0);
  cad_http_tmpl_t *t;
  char err[128];
  REQUIRE(cad_http_tmpl_compile("https://h/p/${PID-3.1}/${MSH-4}${PID-5}?id=${MSH-10}", &t, err,
                                sizeof err) == 0);
  CHECK(cad_http_tmpl_has_refs(t));
  char *u = cad_http_tmpl_render(t, &m, true);
  CHECK_STR(u, "https://h/p/12%203%2F4%26%3F/NORTH?id=C1"); /* decoded, then encoded; "" = none */
  free(u);
  u = cad_http_tmpl_render(t, NULL, true);
  CHECK_STR(u, "https://h/p//?id=");
  free(u);
  cad_http_tmpl_free(t);
  REQUIRE(cad_http_tmpl_compile("v ${MSH-10}\r\n", &t, err, sizeof err) == 0);
  u = cad_http_tmpl_render(t, &m, false);
  CHECK_STR(u, "v C1\r\n"); /* literals are the config's; only values are cleaned */
  free(u);
  cad_http_tmpl_free(t);
  CHECK_INT(cad_http_tmpl_compile("x${PID-", &t, err, sizeof err), CAD_E_INVAL);
  CHECK_INT(cad_http_tmpl_compile("x${QQ}", &t, err, sizeof err), CAD_E_INVAL);
  cad_arena_free(&a);
}

/* ---- real requests on a loop -------------------------------------------- */

static int answers[8]; /* what the server answers, in turn */
static const char *retry_after;
static int nreq;
static char last_ctype[64];

static void serve(void *ud, const cad_http_req_t *r, cad_http_res_t *res) {
  (void)ud;
  res->status = answers[nreq < 8 ? nreq : 7];
  nreq++;
  res->content_type = "text/plain";
  size_t n = r->content_type_len < 63 ? r->content_type_len : 63;
  memcpy(last_ctype, r->content_type ? r->content_type : "", n);
  last_ctype[n] = 0;
  res->body = strdup("answer body that is longer than sixteen bytes");
  res->len = strlen(res->body);
  (void)retry_after;
}

typedef struct result {
  int outcome;
  char detail[200];
  bool done;
} result_t;

static void on_done(void *arg, int outcome, const char *detail) {
  result_t *r = arg;
  r->outcome = outcome;
  snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
  r->done = true;
}

static void run_until(uv_loop_t *loop, result_t *r) {
  for (int i = 0; i < 2000 && !r->done; i++) uv_run(loop, UV_RUN_ONCE);
}

TEST(requests_on_the_loop) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_http_server_opts_t so = {0};
  so.host = "127.0.0.1";
  so.handler = serve;
  cad_http_server_t *srv;
  REQUIRE(cad_http_server_start(&loop, &so, &srv) == 0);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/in", cad_http_server_port(srv));
  cad_http_dest_conf_t c = conf(url);
  cad_http_dest_t *d;
  char err[128];
  REQUIRE(cad_http_dest_open(&loop, &c, "application/fhir+json", &d, err, sizeof err) == 0);
  answers[0] = 200, answers[1] = 503, answers[2] = 404;
  const char *body = "{}";
  for (int i = 0; i < 3; i++) {
    result_t r = {0};
    REQUIRE(cad_http_dest_send(d, NULL, body, 2, on_done, &r) == 0);
    CHECK_INT(cad_http_dest_send(d, NULL, body, 2, on_done, &r), CAD_E_STATE); /* window 1 */
    run_until(&loop, &r);
    REQUIRE(r.done);
    cad_http_answer_t a;
    cad_http_dest_answer(d, &a);
    CHECK_INT(a.body_len, 16); /* keep_body */
    CHECK(a.body_cut);
    if (i == 0) CHECK_INT(r.outcome, CAD_HTTP_OK);
    if (i == 1) {
      CHECK_INT(r.outcome, CAD_HTTP_RETRY);
      CHECK_STR(r.detail, "HTTP 503 Service Unavailable");
    }
    if (i == 2) CHECK_INT(r.outcome, CAD_HTTP_FAIL);
  }
  CHECK_STR(last_ctype, "application/fhir+json");
  cad_http_dest_close(d);
  /* connection refused: the server's port once it is closed */
  cad_http_server_close(srv, NULL, NULL);
  for (int i = 0; i < 50; i++) uv_run(&loop, UV_RUN_NOWAIT);
  REQUIRE(cad_http_dest_open(&loop, &c, NULL, &d, err, sizeof err) == 0);
  result_t r = {0};
  REQUIRE(cad_http_dest_send(d, NULL, body, 2, on_done, &r) == 0);
  run_until(&loop, &r);
  CHECK(r.done);
  CHECK_INT(r.outcome, CAD_HTTP_RETRY);
  CHECK(strstr(r.detail, "onnect") != NULL);
  cad_http_dest_close(d);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0); /* every handle closed */
}

TEST(missing_secret_refused) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_http_dest_conf_t c = conf("http://127.0.0.1:1/");
  c.bearer_env = "CAD_TEST_NO_SUCH_VARIABLE";
  cad_http_dest_t *d = NULL;
  char err[128] = "";
  CHECK_INT(cad_http_dest_open(&loop, &c, NULL, &d, err, sizeof err), CAD_E_CONFIG);
  CHECK(strstr(err, "CAD_TEST_NO_SUCH_VARIABLE") != NULL);
  CHECK_INT(uv_loop_close(&loop), 0);
}

TEST_MAIN()
