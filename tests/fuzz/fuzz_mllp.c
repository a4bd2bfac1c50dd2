/* fuzz_mllp.c - libFuzzer target for the MLLP framer (parsers/hl7/mllp.h).
 *
 * The first input byte chooses how the rest is cut into feeds (bits 0-1:
 * one byte, 1..8, 1..64 or 1..all, with a generator seeded by the byte) and
 * max_frame (bits 2-4).  The framer's events are compared with a reference
 * model that reads one byte at a time, written from the rules in mllp.h:
 * same frames and errors with the same bytes, same counters.  Also checked:
 * no frame holds 0x0B, no clean frame holds 0x1C, none is longer than
 * max_frame, every input byte
 * is accounted for (frame content + framing bytes + skipped + dropped +
 * still pending == input size), and the buffer stays within max_frame plus
 * one feed.  Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "mllp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                               \
  do {                                          \
    fprintf(stderr, "fuzz_mllp: " __VA_ARGS__); \
    fputc('\n', stderr);                        \
    abort();                                    \
  } while (0)

/* One event as a record: kind byte, 8-byte length, content. */
static void rec(cad_buf_t *b, char kind, const char *p, size_t n) {
  uint64_t len = n;
  if (cad_buf_putc(b, kind) || cad_buf_append(b, &len, sizeof len) || cad_buf_append(b, p, n))
    FAIL("out of memory");
}

typedef struct model {
  int state; /* 0 out, 1 in, 3 in, right after a 0x1C */
  bool toobig, stray;
  cad_buf_t cur;
  uint64_t content, framing, skipped, dropped, frames, errors;
} model_t;

/* One content byte of the open frame. */
static void model_content(model_t *m, size_t max, char c, cad_buf_t *ev) {
  if (m->toobig) {
    m->dropped++;
    return;
  }
  if (cad_buf_putc(&m->cur, c)) FAIL("out of memory");
  if (m->cur.len > max) {
    rec(ev, 'T', m->cur.data, max);
    m->errors++;
    m->toobig = true;
    m->dropped += m->cur.len;
    m->cur.len = 0;
  }
}

static void model_end(model_t *m, cad_buf_t *ev) {
  m->framing++; /* the 0x1C */
  if (!m->toobig) {
    rec(ev, m->stray ? 'S' : 'F', m->cur.data, m->cur.len);
    if (m->stray) m->errors++;
    else m->frames++;
    m->content += m->cur.len;
  }
  m->state = 0;
}

static void model_byte(model_t *m, size_t max, char c, cad_buf_t *ev) {
  if (m->state == 3) {
    if (c == CAD_MLLP_CR) {
      model_end(m, ev);
      m->framing++;
      return;
    }
    if (c == CAD_MLLP_SB) {
      model_end(m, ev); /* then the start block, below */
    } else {
      m->stray = true; /* the 0x1C was content */
      m->state = 1;
      model_content(m, max, CAD_MLLP_EB, ev);
    }
  }
  if (m->state == 0) {
    if (c == CAD_MLLP_SB) {
      m->framing++;
      m->state = 1;
      m->toobig = m->stray = false;
      m->cur.len = 0;
    } else {
      m->skipped++;
    }
    return;
  }
  if (c == CAD_MLLP_SB) {
    m->framing++;
    if (!m->toobig) {
      rec(ev, 'E', m->cur.data, m->cur.len);
      m->errors++;
      m->dropped += m->cur.len;
    }
    m->cur.len = 0;
    m->toobig = m->stray = false;
  } else if (c == CAD_MLLP_EB) {
    m->state = 3;
  } else {
    model_content(m, max, c, ev);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  static const size_t maxes[8] = {1, 2, 5, 16, 64, 300, 4096, 0};
  unsigned ctl = data[0];
  const char *in = (const char *)data + 1;
  size_t n = size - 1;
  size_t max = maxes[(ctl >> 2) & 7];

  cad_buf_t got = CAD_BUF_INIT, want = CAD_BUF_INIT;
  cad_mllp_framer_t f;
  cad_mllp_init(&f, max);
  max = f.max_frame;

  uint32_t seed = ctl * 2654435761u + 1;
  size_t pos = 0;
  while (pos < n) {
    size_t k = n - pos, lim;
    switch (ctl & 3) {
      case 0: lim = 1; break;
      case 1: lim = 8; break;
      case 2: lim = 64; break;
      default: lim = n; break;
    }
    seed = seed * 1103515245u + 12345u;
    size_t want_k = 1 + (seed >> 8) % lim;
    if (want_k < k) k = want_k;
    if (cad_mllp_feed(&f, in + pos, k) != 0) FAIL("feed failed");
    if (f.buf.len > max + 1 + k)
      FAIL("buffer holds %zu bytes (max %zu, feed %zu)", f.buf.len, max, k);
    pos += k;
    cad_str_t fr;
    int rc;
    while ((rc = cad_mllp_next(&f, &fr)) != 0) {
      if (fr.len > max) FAIL("frame of %zu bytes > max %zu", fr.len, max);
      if (fr.len && memchr(fr.p, CAD_MLLP_SB, fr.len)) FAIL("frame holds a start block");
      if (rc == 1 && fr.len && memchr(fr.p, CAD_MLLP_EB, fr.len)) FAIL("frame holds an end block");
      if (fr.len && (fr.p < f.buf.data || fr.p + fr.len > f.buf.data + f.buf.len))
        FAIL("frame outside the buffer");
      if (rc == 1) rec(&got, 'F', fr.p, fr.len);
      else if (rc == CAD_E_FRAME) rec(&got, 'E', fr.p, fr.len);
      else if (rc == CAD_E_TOOBIG) rec(&got, 'T', fr.p, fr.len);
      else if (rc == CAD_MLLP_STRAY_EB) rec(&got, 'S', fr.p, fr.len);
      else FAIL("unexpected return %d", rc);
    }
  }

  model_t m;
  memset(&m, 0, sizeof m);
  for (size_t i = 0; i < n; i++) model_byte(&m, max, in[i], &want);
  uint64_t pending = ((m.state == 1 || m.state == 3) && !m.toobig) ? m.cur.len : 0;
  if (m.state == 3) pending++; /* the 0x1C whose next byte has not come */
  if (m.content + m.framing + m.skipped + m.dropped + pending != n) FAIL("model lost bytes");

  if (got.len != want.len || (got.len && memcmp(got.data, want.data, got.len) != 0))
    FAIL("events differ from the model");
  if (f.skipped != m.skipped)
    FAIL("skipped %llu, model %llu", (unsigned long long)f.skipped, (unsigned long long)m.skipped);
  if (f.frames != m.frames || f.errors != m.errors) FAIL("counters differ from the model");
  if (cad_mllp_in_frame(&f) != (m.state == 1 || m.state == 3))
    FAIL("in_frame differs from the model");
  if (cad_mllp_eb_pending(&f) != (m.state == 3)) FAIL("eb_pending differs from the model");

  /* wrap round trip of the first frame-sized piece */
  cad_buf_t w = CAD_BUF_INIT;
  size_t piece = n < 64 ? n : 64;
  char clean[64];
  for (size_t i = 0; i < piece; i++)
    clean[i] = (in[i] == CAD_MLLP_SB || in[i] == CAD_MLLP_EB) ? 'x' : in[i];
  if (cad_mllp_wrap(clean, piece, &w) || w.len != piece + 3) FAIL("wrap");
  cad_mllp_framer_t g;
  cad_mllp_init(&g, 0);
  cad_str_t fr;
  if (cad_mllp_feed(&g, w.data, w.len) || cad_mllp_next(&g, &fr) != 1 || fr.len != piece ||
      (piece && memcmp(fr.p, clean, piece)))
    FAIL("wrap round trip");
  cad_mllp_free(&g);
  cad_buf_free(&w);

  cad_mllp_free(&f);
  cad_buf_free(&m.cur);
  cad_buf_free(&got);
  cad_buf_free(&want);
  return 0;
}
