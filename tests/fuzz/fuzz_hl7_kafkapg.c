/* fuzz_hl7_kafkapg.c - what the Kafka and PostgreSQL destinations read from
 * a message: the statement's parameter rows (cad_pg_rows, with `rows: OBX`
 * and without) and the topic template (cad_kafka_topic_render), on any
 * bytes a channel may have accepted.
 *
 * Checks: a row count that matches the OBX segments of the parsed message
 * (one row without `rows:`), every row with one value per parameter, each
 * NULL or valid UTF-8 text (what the server is sent: a message in another
 * character set is converted), at most 3 bytes per byte of the message; a rendered
 * topic of topic characters only, within its buffer, or an error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"
#include "kafka_dest.h"
#include "pg_dest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                      \
  do {                                                 \
    fprintf(stderr, "fuzz_hl7_kafkapg: " __VA_ARGS__); \
    fputc('\n', stderr);                               \
    abort();                                           \
  } while (0)

typedef struct seen {
  size_t rows, nparams, max;
} seen_t;

static void row(void *ud, const char *const *values, size_t n) {
  seen_t *s = ud;
  if (n != s->nparams) FAIL("row of %zu values, want %zu", n, s->nparams);
  for (size_t i = 0; i < n; i++)
    if (values[i]) {
      /* Text that is not UTF-8 is read as windows-1252: up to 3 bytes each. */
      size_t vl = strlen(values[i]);
      if (vl > 3 * s->max) FAIL("value longer than the message can give");
      if (!cad_hl7_is_utf8(values[i], vl)) FAIL("a value that is not UTF-8");
    }
  s->rows++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  cad_arena_t a;
  cad_arena_init(&a, 4096, 8u << 20);
  char *params[] = {"MSH-10", "OBX[*]-1", "OBX[*]-3.1", "OBX[*]-5", "PID-3[*].1", "PID-5"};
  cad_pg_dest_conf_t with_rows = {NULL, "x", params, 6, "OBX", 64, 60000};
  cad_pg_dest_conf_t one_row = {NULL, "x", params, 6, NULL, 64, 60000};
  cad_hl7_msg_t m;
  bool parsed = cad_hl7_parse(&m, p, size, &a, NULL, NULL) == 0;
  size_t nobx = 0;
  if (parsed)
    for (uint32_t i = 0; i < m.nsegs; i++)
      if (cad_hl7_seg(&m, i)->id == cad_hl7_segid("OBX")) nobx++;
  seen_t s = {0, 6, size};
  int rc = cad_pg_rows(&with_rows, p, size, &a, row, &s);
  if (parsed && rc != CAD_E_NOMEM && (rc < 0 || (size_t)rc != nobx || s.rows != nobx))
    FAIL("rows %d/%zu for %zu OBX", rc, s.rows, nobx);
  if (!parsed && rc >= 0) FAIL("rows from a message that does not parse");
  seen_t t = {0, 6, size};
  rc = cad_pg_rows(&one_row, p, size, &a, row, &t);
  if (parsed && rc != CAD_E_NOMEM && (rc != 1 || t.rows != 1)) FAIL("one row: %d", rc);
  static const char *const tmpls[] = {"hl7.${MSH-9.1}", "${MSH-3}-${MSH-4}.${PID-3.1}",
                                      "${OBX[2]-5}"};
  for (size_t i = 0; i < sizeof tmpls / sizeof tmpls[0]; i++) {
    char out[64];
    int n = cad_kafka_topic_render(tmpls[i], parsed ? &m : NULL, &a, out, sizeof out);
    if (n < 0) continue;
    if ((size_t)n >= sizeof out || strlen(out) != (size_t)n) FAIL("topic length %d", n);
    for (int j = 0; j < n; j++) {
      char c = out[j];
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-';
      if (!ok) FAIL("topic character 0x%02x", (unsigned char)c);
    }
  }
  cad_arena_free(&a);
  return 0;
}
