/* test_log.c - the logger: key=value and JSON lines, escaping of untrusted
 * values, the level check. */
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "log_limit.h"

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
               "\"ctl\":\"a\\\"b\\\\c\\n\",\"bytes\":5,\"msg\":\"x\"}\n") != NULL);
  free(s);
}

/* Each line is valid UTF-8 and one JSON object, whatever the bytes and
 * however long: a value cut at the end of the line keeps whole escapes and
 * is closed. */
TEST(bad_utf8_and_long_lines_stay_valid) {
  char text[1100];
  for (size_t i = 0; i < sizeof text - 1; i++) text[i] = (char)(i % 3 ? 0xff : '"');
  text[sizeof text - 1] = 0;
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.ctl = (cad_str_t){"\xed\xa0\x80\xc0\xaf\xf5\n\"x\":1", 12};
  char chan[600];
  memset(chan, 'c', sizeof chan - 1);
  chan[sizeof chan - 1] = 0;
  c.channel = chan;
  char *s = capture(CAD_LOG_INFO, CAD_LOG_JSON, CAD_LOG_INFO, &c, text);
  REQUIRE(s);
  size_t n = strlen(s);
  CHECK(n <= 4096);
  CHECK(strstr(s, "\"ctl\":\"\\u00ed\\u00a0\\u0080\\u00c0\\u00af\\u00f5\\n\\\"x\\\":1\"") != NULL);
  CHECK(n > 3 && strcmp(s + n - 3, "\"}\n") == 0);
  for (size_t i = 0; i < n; i++) CHECK((unsigned char)s[i] < 0x80 && (s[i] >= 0x20 || i == n - 1));
  /* The cut value ends on a whole escape: \\u00ff or \\" before the quote. */
  const char *m = strstr(s, "\"msg\":\"");
  REQUIRE(m);
  const char *end = s + n - 3;
  CHECK((end - 6 > m && memcmp(end - 6, "\\u00ff", 6) == 0) ||
        (end - 2 > m && memcmp(end - 2, "\\\"", 2) == 0));
  free(s);
  /* The same in key=value: no raw byte >= 0x80 that is not UTF-8. */
  s = capture(CAD_LOG_INFO, CAD_LOG_KV, CAD_LOG_INFO, &c, "\xff ok");
  REQUIRE(s);
  CHECK(strstr(s, "ctl=\"\\xed\\xa0\\x80\\xc0\\xaf\\xf5\\x0a\\\"x\\\":1\"") != NULL);
  CHECK(strstr(s, "msg=\"\\xff ok\"\n") != NULL);
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

static size_t count_of(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* 1,000 empty frames from one connection, then 200 from 40 connections of
 * one peer: a bounded number of lines, and summaries saying how many were
 * suppressed.  Another peer is not silenced by the first one. */
TEST(repeated_warnings_are_rate_limited) {
  char path[] = "/tmp/cad-log-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  cad__log_limit_flush();
  cad_log_setup(CAD_LOG_INFO, CAD_LOG_KV, fd);
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = "adt";
  c.peer = "10.0.0.7:4100";
  c.conn = 7;
  for (int i = 0; i < 1000; i++) CAD_LOG(CAD_LOG_WARN, "rl.empty", &c, "empty frame");
  char port[32];
  for (int i = 0; i < 200; i++) {
    c.conn = 100 + (uint64_t)(i % 40);
    snprintf(port, sizeof port, "10.0.0.7:%d", 5000 + i % 40);
    c.peer = port;
    CAD_LOG(CAD_LOG_WARN, "rl.empty", &c, "empty frame");
  }
  cad_log_ctx_t o = CAD_LOG_CTX_INIT;
  o.peer = "10.0.0.8:1";
  o.conn = 900;
  CAD_LOG(CAD_LOG_WARN, "rl.empty", &o, "empty frame");
  CAD_LOG(CAD_LOG_INFO, "rl.info", &c, "info lines are never limited");
  CAD_LOG(CAD_LOG_INFO, "rl.info", &c, "info lines are never limited");
  cad__log_limit_flush();
  cad_log_setup(CAD_LOG_INFO, CAD_LOG_KV, 2);
  close(fd);
  size_t n = 0;
  char *out = cad_test_read_file(path, &n);
  unlink(path);
  CHECK(out != NULL);
  char *z = realloc(out, n + 1);
  CHECK(z != NULL);
  z[n] = 0;
  /* per connection 10 then the peer's 50 in all, + the other peer's line */
  CHECK_INT(count_of(z, "event=rl.empty"), 51);
  CHECK_INT(count_of(z, "event=rl.empty peer=10.0.0.8:1"), 1);
  CHECK_INT(count_of(z, "event=rl.info"), 2);
  CHECK(strstr(z, "event=log.suppressed peer=10.0.0.7 conn=7 suppressed=990 ") != NULL);
  /* 1,200 lines of 10.0.0.7: 50 written, 990 counted on conn 7, the rest on
   * the peer */
  CHECK(strstr(z, "event=log.suppressed peer=10.0.0.7 suppressed=160 ") != NULL);
  free(z);
}

/* The loop thread's batch: info lines wait, whole and in order, until a
 * flush; a warning writes what waits before itself at once; more than the
 * buffer holds is written as it fills, never a line cut in two. */
static size_t fd_size(int fd) {
  off_t n = lseek(fd, 0, SEEK_END);
  return n < 0 ? 0 : (size_t)n;
}

TEST(batched_lines_wait_for_the_flush_and_keep_their_order) {
  char path[] = "/tmp/cad-log-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  cad_log_setup(CAD_LOG_INFO, CAD_LOG_KV, fd);
  cad_log_batch(true);
  CAD_LOG(CAD_LOG_INFO, "one", NULL, NULL);
  CAD_LOG(CAD_LOG_INFO, "two", NULL, NULL);
  CHECK_INT(fd_size(fd), 0); /* waiting */
  cad_log_flush();
  size_t after_flush = fd_size(fd);
  CHECK(after_flush > 0);
  CAD_LOG(CAD_LOG_INFO, "three", NULL, NULL);
  CHECK_INT(fd_size(fd), after_flush);
  CAD_LOG(CAD_LOG_WARN, "four", NULL, NULL); /* writes "three", then itself */
  size_t after_warn = fd_size(fd);
  CHECK(after_warn > after_flush);
  /* ~200 KB of info lines: written as the 64 KiB buffer fills. */
  for (int i = 0; i < 2000; i++) CAD_LOG(CAD_LOG_INFO, "many", NULL, "%0100d", i);
  CHECK(fd_size(fd) > after_warn + 100000);
  cad_log_batch(false); /* flushes */
  CAD_LOG(CAD_LOG_INFO, "five", NULL, NULL);
  cad_log_setup(CAD_LOG_INFO, CAD_LOG_KV, 2);
  close(fd);
  size_t n = 0;
  char *out = cad_test_read_file(path, &n);
  unlink(path);
  REQUIRE(out);
  const char *order[] = {"event=one", "event=two", "event=three", "event=four", "event=many",
                         "event=five"};
  const char *at = out;
  for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
    const char *f = memmem(at, n - (size_t)(at - out), order[i], strlen(order[i]));
    CHECK(f != NULL);
    if (f) at = f;
  }
  /* Every line whole: 2000 "many" lines, each ending in its own newline. */
  size_t lines = 0, many = 0;
  for (const char *p = out, *e; p < out + n; p = e + 1) {
    e = memchr(p, '\n', (size_t)(out + n - p));
    REQUIRE(e);
    lines++;
    if (memmem(p, (size_t)(e - p), "event=many", 10)) {
      many++;
      CHECK(e - p > 100 && memmem(p, (size_t)(e - p), "msg=", 4));
    }
  }
  CHECK_INT(many, 2000);
  CHECK_INT(lines, 2005);
  free(out);
}

TEST_MAIN()
