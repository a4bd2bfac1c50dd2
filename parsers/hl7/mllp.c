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

#include <stdlib.h>
#include <string.h>

#include "cad_error.h"

#define DEFAULT_MAX_FRAME ((size_t)4 << 20)

/* An emptied buffer larger than this is freed; a buffer larger than
 * SHRINK_FROM holding less than a quarter of it is reallocated smaller. */
#define SHRINK_EMPTY ((size_t)4096)
#define SHRINK_FROM ((size_t)65536)

enum { ST_OUT = 0, ST_IN, ST_AFTER_EB };

void cad_mllp_init(cad_mllp_framer_t *f, size_t max_frame) {
  memset(f, 0, sizeof *f);
  f->buf = (cad_buf_t)CAD_BUF_INIT;
  f->max_frame = max_frame ? max_frame : DEFAULT_MAX_FRAME;
  f->state = ST_OUT;
}

/* Give memory back: a buffer that grew for a large frame does not stay
 * large once that frame is gone. */
static void shrink(cad_mllp_framer_t *f) {
  cad_buf_t *b = &f->buf;
  if (b->len == 0 && b->cap > SHRINK_EMPTY) {
    cad_buf_free(b);
    return;
  }
  if (b->cap <= SHRINK_FROM || b->len > b->cap / 4) return;
  size_t cap = 256;
  while (cap < 2 * (b->len + 1)) cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) return; /* keeping the larger block is fine */
  b->data = d;
  b->cap = cap;
}

/* Drop the bytes nothing refers to any more. */
static void compact(cad_mllp_framer_t *f) {
  size_t keep = (f->state == ST_IN && !f->discarding) ? f->start : f->pos;
  if (keep > 0) {
    cad_buf_consume(&f->buf, keep);
    f->pos -= keep;
    f->start = f->start >= keep ? f->start - keep : 0;
    f->eb_from = f->eb_from >= keep ? f->eb_from - keep : 0;
  }
  shrink(f);
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

/* The frame that started at buf[old] ends with the end block at e: return
 * it (or its oversize report); `next_state` says what the byte after e is. */
static int end_frame(cad_mllp_framer_t *f, size_t e, size_t next_pos, int next_state,
                     cad_str_t *frame) {
  size_t old = f->start;
  bool was_discarding = f->discarding, stray = f->stray;
  f->pos = next_pos;
  f->discarding = false;
  f->stray = false;
  f->accept_eb = false;
  f->state = next_state;
  if (was_discarding) return 0;
  if (e - old > f->max_frame) return too_big(f, old, e, false, frame);
  frame->p = f->buf.data + old;
  frame->len = e - old;
  if (stray) {
    f->errors++;
    return CAD_MLLP_STRAY_EB;
  }
  f->frames++;
  return 1;
}

int cad_mllp_next(cad_mllp_framer_t *f, cad_str_t *frame) {
  frame->p = NULL;
  frame->len = 0;
  size_t have = 0; /* content bytes of the open frame, when waiting */
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
        f->stray = false;
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
          f->stray = false;
          if (was_discarding) continue;
          if (s - old > f->max_frame) return too_big(f, old, s, false, frame);
          frame->p = b + old;
          frame->len = s - old;
          f->errors++;
          return CAD_E_FRAME;
        }
        if (e < len) {
          if (e + 1 == len) {
            /* The byte after the end block decides; until it comes (or the
             * caller accepts the end block) the frame stays open. */
            f->pos = e;
            have = e - f->start;
            if (f->accept_eb) {
              int rc = end_frame(f, e, e + 1, ST_AFTER_EB, frame);
              if (rc) return rc;
              continue;
            }
            break;
          }
          char after = b[e + 1];
          if (after == (char)CAD_MLLP_CR || after == (char)CAD_MLLP_SB) {
            int rc = end_frame(f, e, after == (char)CAD_MLLP_CR ? e + 2 : e + 1, ST_OUT, frame);
            if (rc) return rc;
            continue;
          }
          /* 0x1C inside the message: it is content, the frame goes on. */
          f->stray = true;
          f->accept_eb = false;
          f->pos = e + 1;
          continue;
        }
        /* Neither block in [pos, len): nothing before len needs a new look. */
        f->pos = len;
        have = len - f->start;
        break;
      }
      default: f->state = ST_OUT; continue;
    }
    /* ST_IN, waiting for more bytes. */
    if (!f->discarding && have > f->max_frame) {
      /* Report now (the caller may NAK early) and stop keeping the bytes:
       * the next feed drops them. */
      f->discarding = true;
      return too_big(f, f->start, f->start + have, true, frame);
    }
    return 0;
  }
}

bool cad_mllp_eb_pending(const cad_mllp_framer_t *f) {
  return f->state == ST_IN && f->pos < f->buf.len && f->pos + 1 == f->buf.len &&
         f->buf.data[f->pos] == (char)CAD_MLLP_EB;
}

void cad_mllp_accept_eb(cad_mllp_framer_t *f) {
  if (cad_mllp_eb_pending(f)) f->accept_eb = true;
}

bool cad_mllp_in_frame(const cad_mllp_framer_t *f) { return f->state == ST_IN; }

void cad_mllp_free(cad_mllp_framer_t *f) {
  cad_buf_free(&f->buf);
  f->pos = f->start = f->eb_from = 0;
  f->state = ST_OUT;
  f->discarding = f->stray = f->accept_eb = false;
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
