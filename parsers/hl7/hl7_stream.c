/* hl7_stream.c - split a byte stream into HL7 v2 messages (see hl7_stream.h).
 *
 * The input is appended to one buffer; a resumable line scanner walks it.
 * Every line goes through four phases:
 *
 *   LEAD      skip blanks, and whole blank lines (\r and \n are blanks here)
 *   CLASS     the first non-blank byte is at nb: wait for up to 4 bytes (or
 *             the end of the line) and classify the line
 *   DISPATCH  act on the start of the line: end the item being assembled,
 *             start a new one, ... (may return an item and come back here)
 *   BODY      look for the end of the line (memchr, resumed where it
 *             stopped), then act on the end of the line
 *
 * and the document state says what the line belongs to: nothing (OUT), a
 * message (MSG), a group of lines outside any message (JUNK), or the rest of
 * a message that was too big (SKIP).  An item being assembled is the span
 * buf[msg_start, msg_end); nothing is copied.
 *
 * In MLLP mode the same scanner runs over the content of each frame: the
 * first 0x0B or 0x1C after the frame start is the "end of input" of that
 * region.
 *
 * Memory: bytes before keep_index() are not needed any more; they are
 * dropped (one memmove of what is still needed) on the next feed, so the
 * buffer holds at most the message being assembled plus one feed.  The one
 * case where needed bytes are not contiguous with new input is a long run of
 * blank lines after a message: its trailing blanks might still be followed
 * by another segment (then the message is too big and only its first
 * max_message bytes matter) or by the end of the message (then they are not
 * part of it).  Either way the blank bytes past msg_start + max_message are
 * never returned, so they are cut out of the buffer and `hole` remembers how
 * many, to keep stream offsets right.
 */
#include "hl7_stream.h"

#include <assert.h>
#include <string.h>

#include "cad_error.h"

#define DEFAULT_MAX_MESSAGE ((size_t)16 << 20)

#define SB 0x0B
#define EB 0x1C

enum { S_OUT = 0, S_MSG, S_JUNK, S_SKIP };                 /* state */
enum { PH_LEAD = 0, PH_CLASS, PH_DISPATCH, PH_BODY };      /* phase */
enum { K_OTHER = 0, K_MSH, K_ENV, K_COMMENT, K_SKIPLINE }; /* kind */
enum { F_NONE = 0, F_OUT, F_IN };                          /* frame */
enum { FI_CR = 0, FI_LF, FI_SB, FI_EB };                   /* find[] */
/* How the region being scanned ends. */
enum { END_NONE = 0, END_EOF, END_EB, END_SB, END_EOF_IN_FRAME };

void cad_hl7_stream_init(cad_hl7_stream_t *s, cad_hl7_stream_format_t format, size_t max_message) {
  memset(s, 0, sizeof *s);
  s->buf = (cad_buf_t)CAD_BUF_INIT;
  s->format = format;
  s->max_message = max_message ? max_message : DEFAULT_MAX_MESSAGE;
  s->frame = format == CAD_HL7_STREAM_MLLP ? F_OUT : F_NONE;
}

void cad_hl7_stream_free(cad_hl7_stream_t *s) {
  cad_buf_free(&s->buf);
  s->scan = s->nb = s->msg_start = s->msg_end = 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* A field separator: not a letter, digit or line end. */
static bool is_sep(char c) {
  unsigned char u = (unsigned char)c;
  if ((u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z')) return false;
  return c != '\r' && c != '\n';
}

/* Stream offset of buf.data[i]. */
static uint64_t off(const cad_hl7_stream_t *s, size_t i) {
  return s->base + i + (s->hole && i >= s->hole_at ? s->hole : 0);
}

/* First byte of buf still needed: everything before it is decided. */
static size_t keep_index(const cad_hl7_stream_t *s) {
  if (s->format == CAD_HL7_STREAM_AUTO || s->frame == F_OUT) return s->scan;
  if (s->state == S_MSG || s->state == S_JUNK) return s->msg_start;
  switch (s->phase) {
    case PH_CLASS:
    case PH_DISPATCH: return s->nb;
    case PH_BODY: return s->kind == K_ENV ? s->nb : s->scan;
    default: return s->scan;
  }
}

static size_t shift(size_t x, size_t k) { return x >= k ? x - k : 0; }

/* Drop the bytes before keep_index(). Invalidates returned items. */
static void compact(cad_hl7_stream_t *s) {
  size_t k = keep_index(s);
  if (k == 0) return;
  cad_buf_consume(&s->buf, k);
  if (s->hole && k >= s->hole_at) {
    s->base += k + s->hole;
    s->hole = 0;
    s->hole_at = 0;
  } else {
    s->base += k;
    if (s->hole) s->hole_at -= k;
  }
  s->scan = shift(s->scan, k);
  s->nb = shift(s->nb, k);
  s->msg_start = shift(s->msg_start, k);
  s->msg_end = shift(s->msg_end, k);
  for (int i = 0; i < 4; i++) s->find[i] = shift(s->find[i], k);
}

/* Cut the blank bytes that follow a message beyond msg_start + max_message
 * out of the buffer (see the comment at the top). */
static void squeeze(cad_hl7_stream_t *s) {
  if (s->state != S_MSG && s->state != S_JUNK) return;
  if (s->phase != PH_LEAD && s->phase != PH_CLASS) return;
  size_t hi = s->phase == PH_LEAD ? s->scan : s->nb;
  if (hi - s->msg_start <= s->max_message) return;
  compact(s); /* folds an older hole into base; indices shift */
  hi = s->phase == PH_LEAD ? s->scan : s->nb;
  size_t lo =
      s->msg_end - s->msg_start >= s->max_message ? s->msg_end : s->msg_start + s->max_message;
  if (hi <= lo) return;
  assert(s->hole == 0 || s->hole_at == lo);
  size_t cut = hi - lo;
  memmove(s->buf.data + lo, s->buf.data + hi, s->buf.len - hi);
  s->buf.len -= cut;
  s->hole_at = lo;
  s->hole += cut;
  s->scan = s->nb = lo; /* in CLASS, scan == nb */
  for (int i = 0; i < 4; i++) s->find[i] = 0;
}

int cad_hl7_stream_feed(cad_hl7_stream_t *s, const char *p, size_t n) {
  if (s->eof) return CAD_E_STATE;
  compact(s);
  if (n == 0) return 0;
  return cad_buf_append(&s->buf, p, n) ? CAD_E_NOMEM : 0;
}

void cad_hl7_stream_finish(cad_hl7_stream_t *s) { s->eof = true; }

/* Index of the first byte c at or after `from` (or buf.len).  find[which]
 * remembers the answer: there is no c in [from, find[which]) for any later
 * `from` <= find[which], so no byte is searched twice. */
static size_t find_byte(cad_hl7_stream_t *s, int which, char c, size_t from) {
  const char *b = s->buf.data;
  size_t len = s->buf.len;
  size_t *cache = &s->find[which];
  if (*cache >= from) {
    if (*cache < len && b[*cache] == c) return *cache;
    from = *cache;
  }
  const char *p = from < len ? memchr(b + from, c, len - from) : NULL;
  *cache = p ? (size_t)(p - b) : len;
  return *cache;
}

static int put(cad_hl7_stream_t *s, cad_hl7_item_t *item, cad_hl7_item_kind_t kind, size_t start,
               size_t len, int err) {
  item->kind = kind;
  item->bytes.p = s->buf.data + start;
  item->bytes.len = len;
  item->offset = off(s, start);
  item->err = err;
  item->index = 0;
  if (kind == CAD_HL7_ITEM_MESSAGE) item->index = ++s->messages;
  if (kind != CAD_HL7_ITEM_ERROR) s->kept += len;
  return 1;
}

/* Return the item being assembled and go back to state OUT. */
static int emit_pending(cad_hl7_stream_t *s, cad_hl7_item_t *item, bool frame_broken) {
  int st = s->state;
  s->state = S_OUT;
  size_t len = s->msg_end - s->msg_start;
  if (st == S_MSG)
    return frame_broken ? put(s, item, CAD_HL7_ITEM_ERROR, s->msg_start, len, CAD_E_FRAME)
                        : put(s, item, CAD_HL7_ITEM_MESSAGE, s->msg_start, len, 0);
  if (st == S_JUNK) return put(s, item, CAD_HL7_ITEM_ERROR, s->msg_start, len, CAD_E_NOMSH);
  return 0;
}

/* The item being assembled has grown past max_message. */
static int overflow(cad_hl7_stream_t *s, cad_hl7_item_t *item) {
  int err = s->state == S_MSG ? CAD_E_TOOBIG : CAD_E_NOMSH;
  s->state = S_SKIP;
  return put(s, item, CAD_HL7_ITEM_ERROR, s->msg_start, s->max_message, err);
}

/* Class of a line from its first m (1..4) non-blank bytes; m < 4 means the
 * line ends there. */
static int classify(const char *p, size_t m) {
  if (p[0] == '#') return K_COMMENT;
  if (m < 3) return K_OTHER;
  bool sep = m == 4 && is_sep(p[3]);
  if (!memcmp(p, "MSH", 3)) return sep ? K_MSH : K_OTHER;
  if (!memcmp(p, "FHS", 3) || !memcmp(p, "BHS", 3)) return sep ? K_ENV : K_OTHER;
  if (!memcmp(p, "BTS", 3) || !memcmp(p, "FTS", 3)) return (m == 3 || sep) ? K_ENV : K_OTHER;
  return K_OTHER;
}

/* The end of the current line is at e (exclusive of its terminator). */
static int line_end(cad_hl7_stream_t *s, cad_hl7_item_t *item, size_t e) {
  switch (s->kind) {
    case K_MSH:
    case K_OTHER:
      if (s->state == S_MSG || s->state == S_JUNK) {
        s->msg_end = e;
        if (e - s->msg_start > s->max_message) return overflow(s, item);
      }
      return 0;
    case K_ENV:
      if (e - s->nb > s->max_message)
        return put(s, item, CAD_HL7_ITEM_ERROR, s->nb, s->max_message, CAD_E_TOOBIG);
      return put(s, item, CAD_HL7_ITEM_ENVELOPE, s->nb, e - s->nb, 0);
    default: return 0;
  }
}

/* The line is not finished but what is buffered of it may already be too
 * long: report it now (the same item the finished line would give). */
static int line_too_long(cad_hl7_stream_t *s, cad_hl7_item_t *item) {
  if ((s->state == S_MSG || s->state == S_JUNK) && (s->kind == K_MSH || s->kind == K_OTHER) &&
      s->scan - s->msg_start > s->max_message)
    return overflow(s, item);
  if (s->kind == K_ENV && s->scan - s->nb > s->max_message) {
    s->kind = K_SKIPLINE;
    return put(s, item, CAD_HL7_ITEM_ERROR, s->nb, s->max_message, CAD_E_TOOBIG);
  }
  return 0;
}

/* Scan ER7 lines in buf[scan, rend).  `end` says whether more bytes of this
 * region can come (END_NONE) or how it ends.  Returns 1 with an item, or 0
 * when the region is used up (or more input is needed). */
static int scan_er7(cad_hl7_stream_t *s, cad_hl7_item_t *item, size_t rend, int end) {
  bool final = end != END_NONE;
  for (;;) {
    const char *b = s->buf.data;
    switch (s->phase) {
      case PH_LEAD: {
        size_t i = s->scan;
        while (i < rend && is_ws(b[i])) i++;
        s->scan = i;
        if (i < rend) {
          s->nb = i;
          s->phase = PH_CLASS;
          continue;
        }
        if (!final) return 0;
        /* End of the region: whatever is being assembled is complete. */
        int r = emit_pending(s, item, end == END_SB || end == END_EOF_IN_FRAME);
        s->state = S_OUT;
        return r;
      }
      case PH_CLASS: {
        size_t m = 0, avail = rend - s->nb;
        while (m < 4 && m < avail && b[s->nb + m] != '\r' && b[s->nb + m] != '\n') m++;
        if (m == avail && m < 4 && !final) return 0;
        s->kind = (unsigned char)classify(b + s->nb, m);
        s->scan = s->nb + m;
        s->phase = PH_DISPATCH;
        continue;
      }
      case PH_DISPATCH: {
        bool boundary = s->kind != K_OTHER;
        switch (s->state) {
          case S_MSG:
          case S_JUNK:
            if (boundary) return emit_pending(s, item, false);
            break;
          case S_SKIP:
            if (boundary) {
              s->state = S_OUT;
              continue;
            }
            break;
          default:
            if (s->kind == K_MSH || s->kind == K_OTHER) {
              s->msg_start = s->msg_end = s->nb;
              s->state = s->kind == K_MSH ? S_MSG : S_JUNK;
            }
            break;
        }
        s->phase = PH_BODY;
        continue;
      }
      default: { /* PH_BODY */
        size_t cr = find_byte(s, FI_CR, '\r', s->scan);
        size_t lf = find_byte(s, FI_LF, '\n', s->scan);
        size_t e = cr < lf ? cr : lf;
        if (e >= rend) {
          s->scan = rend;
          if (!final) return line_too_long(s, item);
          e = rend;
        }
        s->scan = e;
        s->phase = PH_LEAD;
        if (line_end(s, item, e)) return 1;
        continue;
      }
    }
  }
}

static int step(cad_hl7_stream_t *s, cad_hl7_item_t *item) {
  for (;;) {
    const char *b = s->buf.data;
    size_t len = s->buf.len;
    if (s->format == CAD_HL7_STREAM_AUTO) {
      size_t i = s->scan;
      while (i < len && is_ws(b[i])) i++;
      s->scan = i;
      if (i == len) return 0;
      s->format = b[i] == SB ? CAD_HL7_STREAM_MLLP : CAD_HL7_STREAM_ER7;
      s->frame = s->format == CAD_HL7_STREAM_MLLP ? F_OUT : F_NONE;
      continue;
    }
    if (s->frame == F_OUT) {
      size_t p = find_byte(s, FI_SB, SB, s->scan);
      if (p >= len) {
        s->scan = len;
        return 0;
      }
      s->scan = p + 1;
      s->frame = F_IN;
      s->state = S_OUT;
      s->phase = PH_LEAD;
      continue;
    }
    size_t rend = len;
    int end = END_NONE;
    if (s->frame == F_IN) {
      size_t p1 = find_byte(s, FI_SB, SB, s->scan);
      size_t p2 = find_byte(s, FI_EB, EB, s->scan);
      size_t p = p1 < p2 ? p1 : p2;
      if (p < len) {
        rend = p;
        end = b[p] == EB ? END_EB : END_SB;
      } else if (s->eof) {
        end = END_EOF_IN_FRAME;
      }
    } else if (s->eof) {
      end = END_EOF;
    }
    if (scan_er7(s, item, rend, end)) return 1;
    switch (end) {
      case END_NONE: squeeze(s); return 0;
      case END_EB: /* the frame is done; what follows is outside frames */
        s->scan = rend + 1;
        s->frame = F_OUT;
        continue;
      case END_SB: /* a new frame starts inside the unfinished one */
        s->scan = rend + 1;
        s->state = S_OUT;
        s->phase = PH_LEAD;
        continue;
      default: return 0;
    }
  }
}

int cad_hl7_stream_next(cad_hl7_stream_t *s, cad_hl7_item_t *item) {
  memset(item, 0, sizeof *item);
  int rc = step(s, item);
  s->skipped_bytes = off(s, keep_index(s)) - s->kept;
  return rc;
}
