/* test_log.c - the logger: key=value and JSON lines, escaping of untrusted
 * values, the level check. */
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* Run one emit into a temp file and return what was written (malloc'd). */
static char *capture(cad_log_level_t min, cad_log_format_t fmt, cad_log_level_t lvl,
                     const cad_log_ctx_t *ctx, const char *text) {
  char path[] = "/tmp/cad-log-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  cad_log_setup(min, fmt, fd);
  if (text) CAD_LOG(lvl, "test.event", ctx, "%s", text);
  else CAD_LOG(lvl, "test.event", ctx, NULL);
  cad_log_setup(min, fmt, 2);
  close(fd);
  size_t n = 0;
  char *out = cad_test_read_file(path, &n);
  unlink(path);
  if (out) {
    char *z = realloc(out, n + 1);
    if (!z) {
      free(out);
      return NULL;
    }
    z[n] = 0;
    out = z;
  }
  return out;
}

TEST(kv_line_with_context) {
  cad_log_num_t nums[] = {{"received", 7}};
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = "adt";
  c.peer = "127.0.0.1:4000";
  c.conn = 12;
  c.ctl = (cad_str_t){"MSG 1\"x", 7};
  c.type = (cad_str_t){"ADT^A01", 7};
  c.bytes = 99;
  c.outcome = "AA";
  c.nums = nums;
  c.nnums = 1;
  char *s = capture(CAD_LOG_INFO, CAD_LOG_KV, CAD_LOG_INFO, &c, "hello world");
  REQUIRE(s);
  /* 2026-01-01T00:00:00.000Z then the pairs, one line. */
  CHECK(strlen(s) > 25 && s[10] == 'T' && s[23] == 'Z');
  CHECK(strstr(s,
               " level=info event=test.event channel=adt peer=127.0.0.1:4000 conn=12 "
               "ctl=\"MSG 1\\\"x\" type=ADT^A01 bytes=99 outcome=AA received=7 "
               "msg=\"hello world\"\n") != NULL);
  CHECK(strchr(s, '\n') == s + strlen(s) - 1);
  free(s);
}

TEST(control_characters_and_length_are_bounded) {
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  char big[200];
  memset(big, 'A', sizeof big);
  big[3] = '\r';
  c.ctl = (cad_str_t){big, sizeof big};
  char *s = capture(CAD_LOG_DEBUG, CAD_LOG_KV, CAD_LOG_INFO, &c, NULL);
  REQUIRE(s);
  CHECK(strstr(s, "ctl=\"AAA\\x0dAAAA") != NULL);
  CHECK(strchr(s, '\r') == NULL);
  const char *v = strstr(s, "ctl=\"");
  REQUIRE(v);
  const char *end = strchr(v + 5, '"');
  REQUIRE(end);
  CHECK_INT(end - (v + 5), 64 + 3); /* 64 bytes, one of them written as \x0d */
  free(s);
}

TEST(json_line) {
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = "lab";
  c.ctl = (cad_str_t){"a\"b\\c\n", 6};
  c.bytes = 5;
  char *s = capture(CAD_LOG_INFO, CAD_LOG_JSON, CAD_LOG_WARN, &c, "x");
  REQUIRE(s);
  CHECK(s[0] == '{');
  CHECK(strstr(s,
               "\"level\":\"warn\",\"event\":\"test.event\",\"channel\":\"lab\","
               "\"ctl\":\"a\\\"b\\\\c\\u000a\",\"bytes\":5,\"msg\":\"x\"}\n") != NULL);
  free(s);
}

TEST(level_check) {
  char *s = capture(CAD_LOG_WARN, CAD_LOG_KV, CAD_LOG_INFO, NULL, "hidden");
  REQUIRE(s);
  CHECK_STR(s, "");
  free(s);
  s = capture(CAD_LOG_WARN, CAD_LOG_KV, CAD_LOG_ERROR, NULL, "shown");
  REQUIRE(s);
  CHECK(strstr(s, "level=error event=test.event msg=shown") != NULL);
  free(s);
}

TEST_MAIN()
