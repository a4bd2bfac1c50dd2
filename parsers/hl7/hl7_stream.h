/* hl7_stream.h - split a byte stream holding many HL7 v2 messages.
 *
 * Reads what archives and files hold: plain ER7 text with \r, \n or \r\n
 * terminators, messages one after another or separated by blank lines,
 * whitespace-only lines and '#' comment lines; FHS/BHS/BTS/FTS batch
 * envelopes; and MLLP-framed captures (0x0B ... 0x1C 0x0D).  The format is
 * detected from the first non-blank byte (0x0B means MLLP) unless forced.
 *
 * Feed bytes in chunks of any size; take items out one by one.  Memory is
 * bounded: the stream keeps only the bytes of the message being assembled
 * (at most max_message bytes; a longer one is reported as an error item and
 * skipped), so a file of any size is read in constant memory.
 *
 * Ownership: the caller owns the cad_hl7_stream_t; the stream owns its
 * internal buffer (freed by cad_hl7_stream_free).  An item's bytes point into
 * that buffer and stay valid until the next call to feed/next/finish/free.
 * The buffer holds at most about max_message bytes plus the last feed.
 *
 * ER7 rules.  Lines end at \r or \n (so \r\n is a line end followed by an
 * empty line, which changes nothing).  A line is classified by its first
 * non-blank characters (blank = space or tab):
 *   - "MSH" + a field separator starts a message.  The separator is any byte
 *     other than a letter, a digit, \r or \n.  Leading blanks are not part of
 *     the message.
 *   - "FHS"/"BHS" + separator, or "BTS"/"FTS" + separator or end of line, is
 *     an ENVELOPE item (the line without leading blanks and terminator).
 *   - '#' starts a comment line: skipped.
 *   - a line of blanks only (or empty) ends nothing; blank lines inside a
 *     message stay in its bytes, those after its last segment do not.
 *   - any other line continues the current message.
 * A message ends before the next MSH, envelope or comment line, or at the
 * end of input.  Lines outside any message (after an envelope, a comment,
 * a skipped message, or at the start) are grouped like a message and
 * reported as one ERROR item CAD_E_NOMSH per group.  Only upper-case ids are
 * recognised.  A message (or NOMSH group, or envelope line) longer than
 * max_message is one ERROR item CAD_E_TOOBIG (NOMSH for a group) whose bytes
 * are its first max_message bytes; the rest of it, up to the next MSH,
 * envelope or comment line, is skipped without another item.
 *
 * MLLP rules.  Bytes outside frames are skipped (counted in skipped_bytes,
 * no item).  The content of each frame is split with the ER7 rules, the end
 * block acting as the end of input, so a frame may hold a batch; an empty or
 * blank frame gives no item.  A frame that is not closed (a start block
 * before its end block, or the end of input) gives the message it was
 * assembling as an ERROR item CAD_E_FRAME; complete messages before it in
 * the same frame are still returned.  A frame is not limited as a whole: each message in it is limited
 * by max_message.
 *
 * AUTO: the format is decided at the first byte that is not a space, tab,
 * \r or \n: 0x0B means MLLP, anything else ER7.  `format` then holds the
 * decision.  Text that uses printable markers instead of MLLP bytes (such
 * as "[SOM]MSH|...[EOM]") is ER7 text whose lines do not start with MSH:
 * it is reported as CAD_E_NOMSH, never guessed at.
 *
 * Items and counters do not depend on how the input is cut into feeds.
 * After finish() and a next() that returned 0, skipped_bytes plus the
 * lengths of all MESSAGE and ENVELOPE items equals the bytes fed; item
 * bytes are always the input bytes at item.offset.
 */
#ifndef CAD_HL7_STREAM_H
#define CAD_HL7_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cad_mem.h"
#include "hl7.h"

typedef enum {
  CAD_HL7_STREAM_AUTO = 0, /* detect from the first non-blank byte */
  CAD_HL7_STREAM_ER7,      /* plain text */
  CAD_HL7_STREAM_MLLP,     /* MLLP framed */
} cad_hl7_stream_format_t;

typedef enum {
  CAD_HL7_ITEM_MESSAGE = 1, /* bytes = one message, from "MSH" to the end of its
                               last segment (internal terminators as in the
                               input, no trailing terminator) */
  CAD_HL7_ITEM_ENVELOPE,    /* bytes = one FHS, BHS, BTS or FTS segment */
  CAD_HL7_ITEM_ERROR,       /* err = CAD_E_TOOBIG (message over max_message,
                               skipped), CAD_E_NOMSH (text that belongs to
                               no message, skipped) or CAD_E_FRAME (broken
                               MLLP framing); bytes = what was skipped (may be
                               truncated to what is still buffered) */
} cad_hl7_item_kind_t;

typedef struct cad_hl7_item {
  cad_hl7_item_kind_t kind;
  cad_str_t bytes; /* see above; valid until the next stream call */
  uint64_t offset; /* byte offset of bytes.p in the whole stream */
  uint64_t index;  /* 1-based number of this message in the stream
                       (MESSAGE items only) */
  int err;         /* ERROR items: a CAD_E_* code */
} cad_hl7_item_t;

typedef struct cad_hl7_stream {
  cad_hl7_stream_format_t format;
  size_t max_message;     /* default 16 MiB when 0 at init */
  cad_buf_t buf;          /* owned: bytes not yet returned */
  size_t scan;            /* internal scanning position in buf */
  uint64_t base;          /* stream offset of buf.data[0] */
  uint64_t messages;      /* MESSAGE items returned so far */
  int state;              /* internal */
  size_t msg_start;       /* internal */
  bool eof;               /* finish() was called */
  uint64_t skipped_bytes; /* bytes in no MESSAGE or ENVELOPE item (framing,
                             blank and comment lines, terminators, errors) */
  /* internal scanner state; do not touch */
  size_t nb;           /* first non-blank byte of the current line */
  size_t msg_end;      /* end of the last non-blank line of the message */
  size_t hole_at;      /* where bytes were cut out of buf, when hole > 0 */
  uint64_t hole;       /* bytes cut out (a long blank run after a message) */
  uint64_t kept;       /* bytes returned in MESSAGE and ENVELOPE items */
  size_t find[4];      /* search caches for \r, \n, 0x0B, 0x1C */
  unsigned char phase; /* where in the current line the scanner is */
  unsigned char kind;  /* class of the current line */
  unsigned char frame; /* MLLP: outside or inside a frame */
} cad_hl7_stream_t;

void cad_hl7_stream_init(cad_hl7_stream_t *s, cad_hl7_stream_format_t format, size_t max_message);
/* Append input. Returns 0, CAD_E_NOMEM, or CAD_E_STATE after finish(). */
int cad_hl7_stream_feed(cad_hl7_stream_t *s, const char *p, size_t n);
/* Say there is no more input, so the last message can be returned. */
void cad_hl7_stream_finish(cad_hl7_stream_t *s);
/* Take the next item: 1 = *item filled, 0 = need more input (or, after
 * finish, the end), negative = CAD_E_* (out of memory). */
int cad_hl7_stream_next(cad_hl7_stream_t *s, cad_hl7_item_t *item);
void cad_hl7_stream_free(cad_hl7_stream_t *s);

#endif
