/* test_mem.c - the growable buffer's formatted appends (cad_mem.h):
 * cad_buf_printf() and cad_buf_vprintf(), short and longer than the first
 * pass's 256-byte stack buffer, after what the buffer already holds. */
#include "cad_mem.h"

#include <stdarg.h>
#include <string.h>

#include "harness.h"

static int vp(cad_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int vp(cad_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = cad_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

TEST(formatted_appends_short_and_long) {
  char big[1000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = 0;
  for (int v = 0; v < 2; v++) {
    cad_buf_t b = CAD_BUF_INIT;
    CHECK_INT(cad_buf_puts(&b, "head:"), 0);
    /* short: formatted on the stack, then appended */
    CHECK_INT(v ? vp(&b, "%d-%s", 42, "ab") : cad_buf_printf(&b, "%d-%s", 42, "ab"), 0);
    /* long: formatted a second time straight into the buffer */
    CHECK_INT(v ? vp(&b, "[%s]%lld", big, 7LL) : cad_buf_printf(&b, "[%s]%lld", big, 7LL), 0);
    size_t want = 5 + 5 + 1 + 999 + 1 + 1;
    CHECK_INT((long long)b.len, (long long)want);
    const char *s = cad_buf_cstr(&b);
    REQUIRE(s != NULL);
    CHECK(strncmp(s, "head:42-ab[", 11) == 0);
    CHECK(strspn(s + 11, "z") == 999);
    CHECK_STR(s + 11 + 999, "]7");
    cad_buf_free(&b);
  }
}

TEST(a_long_append_over_the_budget_is_refused_and_changes_nothing) {
  char big[600];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = 0;
  cad_buf_t b = CAD_BUF_INIT;
  b.limit = 100;
  CHECK_INT(cad_buf_puts(&b, "kept"), 0);
  CHECK(cad_buf_printf(&b, "%s", big) < 0);
  CHECK(vp(&b, "%s", big) < 0);
  CHECK_STR(cad_buf_cstr(&b), "kept");
  cad_buf_free(&b);
}

TEST(an_empty_format_appends_nothing) {
  cad_buf_t b = CAD_BUF_INIT;
  CHECK_INT(cad_buf_puts(&b, "x"), 0);
  CHECK_INT(cad_buf_printf(&b, "%s", ""), 0);
  CHECK_INT((long long)b.len, 1);
  cad_buf_free(&b);
}

TEST_MAIN()
