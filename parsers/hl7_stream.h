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
  cad_str_t bytes;  /* see above; valid until the next stream call */
  uint64_t offset;  /* byte offset of bytes.p in the whole stream */
  uint64_t index;   /* 1-based number of this message in the stream
                       (MESSAGE items only) */
  int err;          /* ERROR items: a CAD_E_* code */
} cad_hl7_item_t;

typedef struct cad_hl7_stream {
  cad_hl7_stream_format_t format;
  size_t max_message;   /* default 16 MiB when 0 at init */
  cad_buf_t buf;        /* owned: bytes not yet returned */
  size_t scan;          /* internal scanning position in buf */
  uint64_t base;        /* stream offset of buf.data[0] */
  uint64_t messages;    /* MESSAGE items returned so far */
  int state;            /* internal */
  size_t msg_start;     /* internal */
  bool eof;             /* finish() was called */
  bool skipping;        /* internal: discarding an oversized message */
  uint64_t skipped_bytes; /* bytes that belonged to no message */
} cad_hl7_stream_t;

void cad_hl7_stream_init(cad_hl7_stream_t *s, cad_hl7_stream_format_t format,
                         size_t max_message);
/* Append input. Returns 0 or CAD_E_NOMEM. */
int cad_hl7_stream_feed(cad_hl7_stream_t *s, const char *p, size_t n);
/* Say there is no more input, so the last message can be returned. */
void cad_hl7_stream_finish(cad_hl7_stream_t *s);
/* Take the next item: 1 = *item filled, 0 = need more input (or, after
 * finish, the end), negative = CAD_E_* (out of memory). */
int cad_hl7_stream_next(cad_hl7_stream_t *s, cad_hl7_item_t *item);
void cad_hl7_stream_free(cad_hl7_stream_t *s);

#endif
