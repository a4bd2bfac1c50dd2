/* fuzz_path.c - libFuzzer target for HL7 paths (cad_hl7_path_parse/format).
 *
 * For any bytes: parse as a path.  On error the position must lie inside the
 * input.  On success the canonical form must parse back to the same path,
 * format to itself, and truncate cleanly; then the path is resolved, iterated
 * and set on a fixed message (indexes bounded, arena with a budget), which
 * must stay serializable and re-parseable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                               \
  do {                                          \
    fprintf(stderr, "fuzz_path: " __VA_ARGS__); \
    fputc('\n', stderr);                        \
    abort();                                    \
  } while (0)

static const char SAMPLE[] =
    "MSH|^~\\&|APP|FAC|||20240101||ORU^R01|1|P|2.5\r"
    "PID|1||A^^^H^MR~B^^^O^PI||DOE^JOHN||19800101|M\r"
    "OBR|1\r"
    "OBX|1|ST|C1||x~y\r"
    "OBX|2|ST|C2\r"
    "OBX|3|TX|C3||a\\F\\b^c&d\r";

static bool same_path(const cad_hl7_path_t *a, const cad_hl7_path_t *b) {
  return memcmp(a->seg, b->seg, 3) == 0 && a->seg[3] == 0 && b->seg[3] == 0 &&
         a->segid == b->segid && a->occ == b->occ && a->field == b->field && a->rep == b->rep &&
         a->comp == b->comp && a->sub == b->sub;
}

static bool bounded(int v) { return v == CAD_HL7_ALL || (v >= 0 && v <= 2000); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  cad_hl7_path_t p;
  size_t pos = (size_t)-1;
  const char *msg = NULL;
  int rc = cad_hl7_path_parse(s, size, &p, &pos, &msg);
  if (rc != 0) {
    if (rc != CAD_E_PATH) FAIL("rc %d, expected CAD_E_PATH", rc);
    if (pos > size) FAIL("error position %zu past the input (%zu)", pos, size);
    if (!msg || !*msg) FAIL("no error message");
    return 0;
  }
  if (p.occ == 0 || p.field < 0 || p.rep < CAD_HL7_ALL || p.comp < 0 || p.sub < 0)
    FAIL("out-of-range index in a parsed path");
  if (p.segid != cad_hl7_segid(p.seg)) FAIL("segid does not match seg");

  char buf[128];
  size_t n = cad_hl7_path_format(&p, buf, sizeof buf);
  if (n >= sizeof buf) FAIL("formatted path longer than %zu", sizeof buf);
  if (strlen(buf) != n) FAIL("format returned %zu but wrote %zu", n, strlen(buf));
  cad_hl7_path_t q;
  size_t qpos = 0;
  const char *qmsg = NULL;
  if (cad_hl7_path_parse(buf, n, &q, &qpos, &qmsg) != 0)
    FAIL("canonical \"%s\" does not parse: %zu %s", buf, qpos, qmsg ? qmsg : "");
  if (!same_path(&p, &q)) FAIL("canonical \"%s\" parses to a different path", buf);
  char buf2[128];
  size_t n2 = cad_hl7_path_format(&q, buf2, sizeof buf2);
  if (n2 != n || strcmp(buf, buf2) != 0) FAIL("format is not canonical: %s vs %s", buf, buf2);
  for (size_t cap = 1; cap <= n; cap++) {
    char t[128];
    memset(t, 'Z', sizeof t);
    if (cad_hl7_path_format(&p, t, cap) != n) FAIL("truncated format returns another length");
    if (t[cap - 1] != 0 || strlen(t) != cap - 1 || memcmp(t, buf, cap - 1) != 0)
      FAIL("truncated format at %zu is not a terminated prefix", cap);
    if (t[cap] != 'Z') FAIL("format wrote past cap %zu", cap);
  }

  /* use the path on a message */
  cad_arena_t a;
  cad_arena_init(&a, 0, 1u << 20);
  cad_hl7_msg_t m;
  if (cad_hl7_parse(&m, SAMPLE, sizeof SAMPLE - 1, &a, NULL, NULL) != 0) FAIL("sample");
  cad_hl7_match_t mt;
  (void)cad_hl7_get(&m, &p, &mt);
  cad_hl7_iter_t it;
  cad_hl7_iter_init(&it, &m, &p);
  int count = 0;
  while (cad_hl7_iter_next(&it, &mt)) {
    if (++count > 10000) FAIL("iterator does not end");
    if (mt.present && mt.raw.len &&
        (mt.raw.p < SAMPLE || mt.raw.p + mt.raw.len > SAMPLE + sizeof SAMPLE))
      FAIL("match outside the message");
    if (!mt.present && mt.raw.len) FAIL("absent match with text");
    if (mt.seg_index >= m.nsegs) FAIL("match in a segment that does not exist");
  }
  /* fields up to the parser's default limit (1000), so the output re-parses */
  if (bounded(p.occ) && p.field <= 1000 && bounded(p.rep) && bounded(p.comp) && bounded(p.sub)) {
    rc = cad_hl7_set(&m, &p, "v|^", 3, 0);
    if (rc > 0 && !m.dirty) FAIL("set changed %d elements but the message is clean", rc);
    cad_buf_t out = CAD_BUF_INIT;
    if (cad_hl7_serialize(&m, &out) < 0) FAIL("serialize after set");
    cad_arena_t a2;
    cad_arena_init(&a2, 0, 0);
    cad_hl7_msg_t m2;
    rc = cad_hl7_parse(&m2, out.data, out.len, &a2, NULL, NULL);
    if (rc != 0) FAIL("output after setting \"%s\" does not parse: %d", buf, rc);
    cad_arena_free(&a2);
    cad_buf_free(&out);
  }
  cad_arena_free(&a);
  return 0;
}
