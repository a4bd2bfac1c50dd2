/* mllp.c - the streaming MLLP framer (see mllp.h for the contract).
 *
 * The framer is a three-state machine over an append-only buffer:
 *
 *   OUT       looking for a start block; everything else is skipped
 *   IN        inside a frame whose content starts at buf[start]; pos is where
 *             the search for the next start/end block resumes
 *   AFTER_EB  an end block was just seen; a 0x0D here is the end of the
 *             trailer, anything else is read again in state OUT
 *
 * Consumed bytes stay in the buffer until the next feed, which moves the
 * bytes still needed (the unfinished frame, or nothing) to the front.  That
 * keeps the frames returned by cad_mllp_next() valid until the next call and
 * costs one memmove per feed instead of one per frame.
 */
#include "mllp.h"

#include <string.h>

#include "cad_error.h"

#define DEFAULT_MAX_FRAME ((size_t)4 << 20)

enum { ST_OUT = 0, ST_IN, ST_AFTER_EB };

void cad_mllp_init(cad_mllp_framer_t *f, size_t max_frame) {
  memset(f, 0, sizeof *f);
  f->buf = (cad_buf_t)CAD_BUF_INIT;
  f->max_frame = max_frame ? max_frame : DEFAULT_MAX_FRAME;
  f->state = ST_OUT;
}

/* Drop the bytes nothing refers to any more. */
static void compact(cad_mllp_framer_t *f) {
  size_t keep = (f->state == ST_IN && !f->discarding) ? f->start : f->pos;
  if (keep == 0) return;
  cad_buf_consume(&f->buf, keep);
  f->pos -= keep;
  f->start = f->start >= keep ? f->start - keep : 0;
  f->eb_from = f->eb_from >= keep ? f->eb_from - keep : 0;
}

int cad_mllp_feed(cad_mllp_framer_t *f, const char *p, size_t n) {
  compact(f);
  if (n == 0) return 0;
  int rc = cad_buf_append(&f->buf, p, n);
  return rc == CAD_E_TOOBIG ? CAD_E_NOMEM : rc;
}

/* Index of the first end block at or after pos, or buf.len; the answer is
 * remembered so a later call does not search the same bytes again. */
static size_t find_eb(cad_mllp_framer_t *f) {
  const char *b = f->buf.data;
  size_t len = f->buf.len, from = f->pos;
  if (f->eb_from >= from) {
    if (f->eb_from < len && b[f->eb_from] == (char)CAD_MLLP_EB) return f->eb_from;
    from = f->eb_from;
  }
  const char *e = from < len ? memchr(b + from, CAD_MLLP_EB, len - from) : NULL;
  f->eb_from = e ? (size_t)(e - b) : len;
  return f->eb_from;
}

/* Report an oversized frame: its first max_frame bytes; `end` is where it
 * ends (an end or start block) or, `cut`, the end of what was received. */
static int too_big(cad_mllp_framer_t *f, size_t start, size_t end, bool cut, cad_str_t *frame) {
  frame->p = f->buf.data + start;
  frame->len = f->max_frame;
  f->oversize = end - start;
  f->oversize_cut = cut;
  f->errors++;
  return CAD_E_TOOBIG;
}

int cad_mllp_next(cad_mllp_framer_t *f, cad_str_t *frame) {
  frame->p = NULL;
  frame->len = 0;
  for (;;) {
    const char *b = f->buf.data;
    size_t len = f->buf.len;
    switch (f->state) {
      case ST_AFTER_EB:
        if (f->pos >= len) return 0;
        if (b[f->pos] == (char)CAD_MLLP_CR) f->pos++;
        f->state = ST_OUT;
        continue;

      case ST_OUT: {
        if (f->pos >= len) return 0;
        const char *sb = memchr(b + f->pos, CAD_MLLP_SB, len - f->pos);
        if (!sb) {
          f->skipped += len - f->pos;
          f->pos = len;
          return 0;
        }
        size_t s = (size_t)(sb - b);
        f->skipped += s - f->pos;
        f->pos = f->start = s + 1;
        f->discarding = false;
        f->state = ST_IN;
        continue;
      }

      case ST_IN: {
        size_t e = find_eb(f);
        size_t lim = e < len ? e : len;
        const char *sb = lim > f->pos ? memchr(b + f->pos, CAD_MLLP_SB, lim - f->pos) : NULL;
        if (sb) {
          /* A start block inside an unfinished frame: that frame is dropped and
         * a new one begins right after the start block. */
          size_t s = (size_t)(sb - b), old = f->start;
          bool was_discarding = f->discarding;
          f->pos = f->start = s + 1;
          f->discarding = false;
          if (was_discarding) continue;
          if (s - old > f->max_frame) return too_big(f, old, s, false, frame);
          frame->p = b + old;
          frame->len = s - old;
          f->errors++;
          return CAD_E_FRAME;
        }
        if (e < len) {
          size_t old = f->start;
          bool was_discarding = f->discarding;
          f->pos = e + 1;
          f->discarding = false;
          f->state = ST_AFTER_EB;
          if (was_discarding) continue;
          if (e - old > f->max_frame) return too_big(f, old, e, false, frame);
          frame->p = b + old;
          frame->len = e - old;
          f->frames++;
          return 1;
        }
        /* Neither block in [pos, len): nothing before len needs a new look. */
        f->pos = len;
        if (!f->discarding && len - f->start > f->max_frame) {
          /* Report now (the caller may NAK early) and stop keeping the bytes:
         * the next feed drops them. */
          f->discarding = true;
          return too_big(f, f->start, len, true, frame);
        }
        return 0;
      }
      default: f->state = ST_OUT; continue;
    }
  }
}

bool cad_mllp_in_frame(const cad_mllp_framer_t *f) { return f->state == ST_IN; }

void cad_mllp_free(cad_mllp_framer_t *f) {
  cad_buf_free(&f->buf);
  f->pos = f->start = f->eb_from = 0;
  f->state = ST_OUT;
  f->discarding = false;
}

int cad_mllp_wrap(const char *p, size_t n, cad_buf_t *out) {
  if (n > SIZE_MAX - 3) return CAD_E_TOOBIG;
  int rc = cad_buf_reserve(out, n + 3);
  if (rc) return rc;
  out->data[out->len++] = (char)CAD_MLLP_SB;
  if (n) memcpy(out->data + out->len, p, n);
  out->len += n;
  out->data[out->len++] = (char)CAD_MLLP_EB;
  out->data[out->len++] = (char)CAD_MLLP_CR;
  return 0;
}
