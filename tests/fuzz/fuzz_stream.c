/* fuzz_stream.c - libFuzzer target for the HL7 stream splitter
 * (parsers/hl7/hl7_stream.h).
 *
 * The first input byte chooses the chunking of the rest (bits 0-1: one byte,
 * 1..8, 1..64 or 1..all, from a generator seeded by the byte), the format
 * (bits 2-3: AUTO, ER7, MLLP, AUTO) and max_message (bits 4-6).  The input
 * is split twice, whole and chunked; both must give the same items.  Every
 * item is checked: its bytes are the input bytes at its offset, items are in
 * order and do not overlap, none is longer than max_message, a MESSAGE
 * starts with "MSH" and a separator and does not end with a terminator, an
 * ENVELOPE starts with FHS/BHS/BTS/FTS, no MESSAGE or ENVELOPE from MLLP
 * holds 0x0B or 0x1C, indexes count up; at the end skipped_bytes plus the
 * bytes of MESSAGE and ENVELOPE items equals the input size; the buffer
 * never holds more than max_message plus one feed (and a few bytes).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "hl7_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                 \
  do {                                            \
    fprintf(stderr, "fuzz_stream: " __VA_ARGS__); \
    fputc('\n', stderr);                          \
    abort();                                      \
  } while (0)

typedef struct rec {
  int kind, err;
  uint64_t offset, len, index;
} rec_t;

typedef struct ctx {
  const char *in;
  size_t n, max;
  cad_buf_t recs; /* rec_t array */
  uint64_t kept, end, msgs;
} ctx_t;

static bool id_is(const char *p, const char *id) { return memcmp(p, id, 3) == 0; }

static void check_item(ctx_t *c, const cad_hl7_stream_t *s, const cad_hl7_item_t *it) {
  const char *p = it->bytes.p;
  size_t len = it->bytes.len;
  if (it->offset < c->end)
    FAIL("item at %llu overlaps the previous one", (unsigned long long)it->offset);
  if (it->offset + len > c->n) FAIL("item past the input");
  if (len && memcmp(c->in + it->offset, p, len) != 0) FAIL("item bytes are not the input's");
  if (len > c->max) FAIL("item of %zu bytes > max %zu", len, c->max);
  bool mllp = s->format == CAD_HL7_STREAM_MLLP;
  switch (it->kind) {
    case CAD_HL7_ITEM_MESSAGE:
      if (len < 4 || !id_is(p, "MSH")) FAIL("message without MSH");
      if (p[3] == '\r' || p[3] == '\n' || (p[3] >= '0' && p[3] <= '9') ||
          ((p[3] | 0x20) >= 'a' && (p[3] | 0x20) <= 'z'))
        FAIL("message without a field separator");
      if (p[len - 1] == '\r' || p[len - 1] == '\n') FAIL("message ends with a terminator");
      if (it->index != ++c->msgs) FAIL("index %llu", (unsigned long long)it->index);
      c->kept += len;
      break;
    case CAD_HL7_ITEM_ENVELOPE:
      if (len < 3 || !(id_is(p, "FHS") || id_is(p, "BHS") || id_is(p, "BTS") || id_is(p, "FTS")))
        FAIL("envelope that is not FHS/BHS/BTS/FTS");
      if (memchr(p, '\r', len) || memchr(p, '\n', len)) FAIL("envelope spans lines");
      c->kept += len;
      break;
    case CAD_HL7_ITEM_ERROR:
      if (it->err != CAD_E_NOMSH && it->err != CAD_E_TOOBIG && it->err != CAD_E_FRAME)
        FAIL("error item with code %d", it->err);
      if (it->err == CAD_E_FRAME && !mllp) FAIL("FRAME error in ER7");
      if (len == 0) FAIL("empty error item");
      break;
    default: FAIL("item kind %d", (int)it->kind);
  }
  if (mllp && it->kind != CAD_HL7_ITEM_ERROR && (memchr(p, 0x0B, len) || memchr(p, 0x1C, len)))
    FAIL("MLLP item holds a block byte");
  c->end = it->offset + len;
  rec_t r = {(int)it->kind, it->err, it->offset, len, it->index};
  if (cad_buf_append(&c->recs, &r, sizeof r)) FAIL("out of memory");
}

static void drain(ctx_t *c, cad_hl7_stream_t *s) {
  cad_hl7_item_t it;
  int rc;
  while ((rc = cad_hl7_stream_next(s, &it)) == 1) check_item(c, s, &it);
  if (rc != 0) FAIL("next returned %d", rc);
}

static void split(ctx_t *c, int fmt, size_t max, unsigned mode, uint32_t seed) {
  cad_hl7_stream_t s;
  cad_hl7_stream_init(&s, (cad_hl7_stream_format_t)fmt, max);
  c->max = s.max_message;
  size_t pos = 0;
  while (pos < c->n) {
    size_t k = c->n - pos, lim;
    switch (mode) {
      case 0: lim = 1; break;
      case 1: lim = 8; break;
      case 2: lim = 64; break;
      default: lim = c->n; break;
    }
    seed = seed * 1103515245u + 12345u;
    size_t want = 1 + (seed >> 8) % lim;
    if (want < k) k = want;
    if (cad_hl7_stream_feed(&s, c->in + pos, k) != 0) FAIL("feed failed");
    if (s.buf.len > c->max + 4 + k)
      FAIL("buffer holds %zu bytes (max %zu, feed %zu)", s.buf.len, c->max, k);
    pos += k;
    drain(c, &s);
  }
  cad_hl7_stream_finish(&s);
  drain(c, &s);
  if (s.skipped_bytes + c->kept != c->n)
    FAIL("skipped %llu + kept %llu != %zu", (unsigned long long)s.skipped_bytes,
         (unsigned long long)c->kept, c->n);
  if (s.messages != c->msgs) FAIL("messages counter");
  cad_hl7_stream_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  static const size_t maxes[8] = {1, 3, 4, 9, 20, 64, 500, 0};
  static const int fmts[4] = {CAD_HL7_STREAM_AUTO, CAD_HL7_STREAM_ER7, CAD_HL7_STREAM_MLLP,
                              CAD_HL7_STREAM_AUTO};
  unsigned ctl = data[0];
  int fmt = fmts[(ctl >> 2) & 3];
  size_t max = maxes[(ctl >> 4) & 7];

  ctx_t whole = {(const char *)data + 1, size - 1, 0, CAD_BUF_INIT, 0, 0, 0};
  ctx_t cut = whole;
  cut.recs = (cad_buf_t)CAD_BUF_INIT;
  split(&whole, fmt, max, 3, 0); /* lim = n: one feed */
  split(&cut, fmt, max, ctl & 3, ctl * 2654435761u + 7);
  /* the one-feed run above used a random size 1..n; run a true whole feed */
  ctx_t one = whole;
  one.recs = (cad_buf_t)CAD_BUF_INIT;
  one.kept = one.end = one.msgs = 0;
  {
    cad_hl7_stream_t s;
    cad_hl7_stream_init(&s, (cad_hl7_stream_format_t)fmt, max);
    if (cad_hl7_stream_feed(&s, one.in, one.n)) FAIL("feed failed");
    cad_hl7_stream_finish(&s);
    drain(&one, &s);
    if (s.skipped_bytes + one.kept != one.n) FAIL("whole: bytes not accounted for");
    cad_hl7_stream_free(&s);
  }
  if (cut.recs.len != one.recs.len ||
      (cut.recs.len && memcmp(cut.recs.data, one.recs.data, cut.recs.len) != 0))
    FAIL("items depend on the chunking");
  if (whole.recs.len != one.recs.len ||
      (one.recs.len && memcmp(whole.recs.data, one.recs.data, one.recs.len) != 0))
    FAIL("items depend on the chunking (2)");
  cad_buf_free(&whole.recs);
  cad_buf_free(&cut.recs);
  cad_buf_free(&one.recs);
  return 0;
}
