/* fuzz_hl7.c - libFuzzer target for the HL7 v2 message tree (parsers/hl7/hl7.h).
 *
 * For any input: parse with small limits; when it parses, read every
 * segment / field / repetition / component / subcomponent through the API
 * and decode each leaf; serialize, check that the unchanged output is the
 * input with terminators normalised, and re-parse it (same segments); then
 * edit a few paths, serialize and re-parse again.  Any inconsistency aborts,
 * so libFuzzer records the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                              \
  do {                                         \
    fprintf(stderr, "fuzz_hl7: " __VA_ARGS__); \
    fputc('\n', stderr);                       \
    abort();                                   \
  } while (0)

static bool within(cad_str_t inner, cad_str_t outer) {
  if (inner.len == 0) return true;
  return inner.p >= outer.p && inner.p + inner.len <= outer.p + outer.len;
}

static void check_leaf(const cad_hl7_delims_t *d, cad_str_t v, cad_arena_t *a) {
  cad_str_t dec;
  if (!cad_hl7_decode(d, v, a, &dec)) return; /* arena budget: allowed */
  if (dec.len > v.len) FAIL("decode lengthened a value (%zu > %zu)", dec.len, v.len);
  if (!cad_hl7_needs_unescape(d, v) && (dec.p != v.p || dec.len != v.len))
    FAIL("a value without escapes was copied or changed");
  char small[64];
  if (v.len <= sizeof small) {
    size_t n = cad_hl7_unescape(d, v, small);
    if (n != dec.len || (n && memcmp(small, dec.p, n) != 0)) FAIL("unescape and decode disagree");
  }
}

static void walk(const cad_hl7_msg_t *m, cad_arena_t *a) {
  for (uint32_t i = 0; i < m->nsegs; i++) {
    const cad_hl7_seg_t *s = cad_hl7_seg(m, i);
    if (!s) FAIL("segment %u missing", i);
    if (s->name[3] != 0) FAIL("segment name not terminated");
    int nf = cad_hl7_nfields(s);
    if (nf < 0) FAIL("negative field count");
    cad_str_t beyond;
    if (cad_hl7_field(s, nf + 1, &beyond) || beyond.len) FAIL("field past the last exists");
    for (int f = 1; f <= nf; f++) {
      cad_str_t fv;
      if (!cad_hl7_field(s, f, &fv)) FAIL("field %d of %d missing", f, nf);
      if (!s->dirty && !within(fv, s->raw) && !(s->header && f == 1))
        FAIL("field %d outside its segment", f);
      if (s->header && f <= 2) continue;
      const cad_hl7_delims_t *d = &s->d;
      int nr = d->rep ? cad_hl7_npieces(fv, d->rep) : 1;
      if (nr < 1) FAIL("no repetitions");
      for (int r = 1; r <= nr; r++) {
        cad_str_t rv = fv;
        if (d->rep && !cad_hl7_piece(fv, d->rep, r, &rv)) FAIL("repetition %d missing", r);
        if (!within(rv, fv)) FAIL("repetition outside its field");
        int nc = cad_hl7_npieces(rv, d->comp);
        for (int c = 1; c <= nc; c++) {
          cad_str_t cv;
          if (!cad_hl7_piece(rv, d->comp, c, &cv)) FAIL("component %d missing", c);
          if (!within(cv, rv)) FAIL("component outside its repetition");
          int ns = d->sub ? cad_hl7_npieces(cv, d->sub) : 1;
          for (int k = 1; k <= ns; k++) {
            cad_str_t sv = cv;
            if (d->sub && !cad_hl7_piece(cv, d->sub, k, &sv)) FAIL("subcomponent missing");
            check_leaf(d, sv, a);
          }
        }
      }
    }
  }
}

static void normalise(const char *p, size_t n, cad_buf_t *out) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
      cad_buf_putc(out, '\r');
      i++;
    } else {
      cad_buf_putc(out, p[i] == '\n' ? '\r' : p[i]);
    }
  }
}

static bool sane_delims(const cad_hl7_delims_t *d) {
  char cs[6] = {d->field, d->comp, d->rep, d->esc, d->sub, d->trunc};
  for (int i = 0; i < 6; i++) {
    if (i == 5 && cs[i] == 0) continue;
    unsigned char c = (unsigned char)cs[i];
    if (c == 0 || c == '\r' || c == '\n' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
        (c >= 'a' && c <= 'z'))
      return false;
    for (int j = 0; j < i; j++)
      if (cs[j] == cs[i]) return false;
  }
  return true;
}

/* Set path to val; if it worked and the message's delimiters can express
 * it, the value must read back (decoded) as val. */
static void set_and_check(cad_hl7_msg_t *m, cad_arena_t *a, const char *ps, const char *val,
                          unsigned flags) {
  cad_hl7_path_t p;
  if (cad_hl7_path_parse(ps, strlen(ps), &p, NULL, NULL) != 0) FAIL("own path %s", ps);
  int rc = cad_hl7_set(m, &p, val, strlen(val), flags);
  if (rc <= 0 || (flags & CAD_HL7_SET_RAW)) return;
  int seg = cad_hl7_find_seg(m, p.segid, 1, 0);
  if (seg < 0) FAIL("set %s returned %d but the segment is missing", ps, rc);
  if (!sane_delims(&m->segs[seg].d)) return;
  cad_hl7_match_t mt;
  if (!cad_hl7_get(m, &p, &mt)) FAIL("set %s returned %d but it is absent", ps, rc);
  cad_str_t dec;
  if (!cad_hl7_decode(mt.d, mt.raw, a, &dec)) return;
  if (dec.len != strlen(val) || memcmp(dec.p, val, dec.len) != 0)
    FAIL("set %s: reads back \"%.*s\"", ps, (int)dec.len, dec.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  cad_arena_t a;
  cad_arena_init(&a, 0, 64u << 20);
  cad_hl7_limits_t lim = {1u << 20, 5000, 500};
  cad_hl7_msg_t m;
  cad_hl7_diag_t diag;
  memset(&m, 0, sizeof m);
  memset(&diag, 0, sizeof diag);
  int rc = cad_hl7_parse(&m, in, size, &a, &lim, &diag);
  if (rc != 0) {
    if (rc > 0) FAIL("parse returned %d", rc);
    if (diag.code != rc) FAIL("diag.code %d != rc %d", diag.code, rc);
    if (!memchr(diag.reason, 0, sizeof diag.reason)) FAIL("diag.reason not terminated");
    if (diag.offset > size) FAIL("diag.offset past the input");
    cad_arena_free(&a);
    return 0;
  }
  if (m.nsegs == 0) FAIL("parsed with no segments");
  if (!m.segs[0].header) FAIL("first segment is not a header");
  walk(&m, &a);

  /* unchanged: the output is the input with terminators normalised */
  cad_buf_t out = CAD_BUF_INIT, want = CAD_BUF_INIT;
  if (cad_hl7_serialize(&m, &out) < 0) FAIL("serialize failed");
  normalise(in, size, &want);
  if (out.len != want.len || (out.len && memcmp(out.data, want.data, out.len) != 0))
    FAIL("unchanged message does not round-trip (%zu vs %zu bytes)", out.len, want.len);

  cad_arena_t a2;
  cad_arena_init(&a2, 0, 64u << 20);
  cad_hl7_msg_t m2;
  memset(&m2, 0, sizeof m2);
  rc = cad_hl7_parse(&m2, out.data, out.len, &a2, &lim, NULL);
  if (rc != 0) FAIL("serialized output does not parse: %d", rc);
  if (m2.nsegs != m.nsegs) FAIL("re-parse: %u segments, expected %u", m2.nsegs, m.nsegs);
  for (uint32_t i = 0; i < m.nsegs; i++)
    if (m2.segs[i].id != m.segs[i].id || m2.segs[i].raw.len != m.segs[i].raw.len ||
        memcmp(m2.segs[i].raw.p, m.segs[i].raw.p, m.segs[i].raw.len) != 0)
      FAIL("re-parse: segment %u differs", i);
  cad_arena_free(&a2);

  /* edits */
  set_and_check(&m, &a, "MSH-3", "EDITED", 0);
  set_and_check(&m, &a, "PID-3[2].4.2", "x|y^z~w&v\\u\r", 0);
  set_and_check(&m, &a, "OBX[*]-5", "value", 0);
  set_and_check(&m, &a, "ZZZ-4.2", "new", 0);
  set_and_check(&m, &a, "PID-5", "RAW^TEXT~REP", CAD_HL7_SET_RAW);
  cad_hl7_path_t p;
  if (cad_hl7_path_parse("PV1-2", 5, &p, NULL, NULL) == 0) (void)cad_hl7_clear(&m, &p);
  if (m.nsegs > 1) (void)cad_hl7_seg_rename(&m, m.nsegs - 1, "ZRN");
  if (m.nsegs > 2) (void)cad_hl7_seg_delete(&m, 1);
  (void)cad_hl7_seg_insert(&m, m.nsegs, "NTE|1||note", 11);
  walk(&m, &a);
  cad_buf_clear(&out);
  if (cad_hl7_serialize(&m, &out) < 0) FAIL("serialize after edits failed");
  cad_arena_init(&a2, 0, 64u << 20);
  memset(&m2, 0, sizeof m2);
  cad_hl7_diag_t d2;
  memset(&d2, 0, sizeof d2);
  rc = cad_hl7_parse(&m2, out.data, out.len, &a2, NULL, &d2);
  if (rc != 0)
    FAIL("edited output does not parse: %s at segment %u of %u (%s)", cad_err_name(rc), d2.segment,
         m.nsegs, d2.reason);
  if (m2.nsegs != m.nsegs) FAIL("edited re-parse: %u segments, expected %u", m2.nsegs, m.nsegs);
  cad_arena_free(&a2);
  cad_buf_free(&out);
  cad_buf_free(&want);
  cad_arena_free(&a);
  return 0;
}
