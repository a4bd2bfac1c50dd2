/* mllp.h - the MLLP framer (HL7 Minimal Lower Layer Protocol).
 *
 * A frame is 0x0B (start block), the message, 0x1C (end block), 0x0D.  The
 * framer is streaming and resumable: feed it whatever a read() returned and
 * take complete frames out.  It handles partial frames across reads, many
 * frames in one read, bytes before a start block (skipped and counted), a
 * start block inside a frame (the unfinished frame is reported and dropped),
 * and frames larger than max_frame (reported once, then skipped up to the
 * next end block, so the framer resynchronises).
 *
 * Memory: the caller owns the cad_mllp_framer_t; the framer owns an internal
 * buffer holding at most max_frame + one read of bytes.  A returned frame
 * points into that buffer and is valid until the next feed/next/free call.
 * The buffer is compacted on feed, so it does not grow with the number of
 * frames; bytes already searched are never searched again.
 *
 * Lenient rules (what real senders do):
 *   - 0x1C not followed by 0x0D: the frame is accepted as complete and the
 *     byte after 0x1C is read as the next data (a 0x0B there starts the next
 *     frame; anything else is skipped and counted).  A frame is returned as
 *     soon as its 0x1C arrives; the 0x0D may come with the next read.
 *   - 0x1C outside a frame (no start block): skipped and counted.
 *   - A 0x0B that arrives while an oversized frame is being skipped starts a
 *     new frame without a second error (the oversized one was reported).
 *   - A frame may be empty (0x0B 0x1C 0x0D): returned with length 0.
 * Events are the same whatever the read sizes: one byte at a time gives the
 * same frames and errors as the whole stream at once.
 */
#ifndef CAD_MLLP_H
#define CAD_MLLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cad_mem.h"
#include "hl7.h"

#define CAD_MLLP_SB 0x0B
#define CAD_MLLP_EB 0x1C
#define CAD_MLLP_CR 0x0D

typedef struct cad_mllp_framer {
  cad_buf_t buf;    /* owned: unconsumed input */
  size_t pos;       /* internal scan position in buf */
  size_t max_frame; /* largest accepted message, bytes */
  int state;        /* internal */
  bool discarding;  /* internal: skipping an oversized frame */
  uint64_t skipped; /* bytes outside any frame, skipped (not the 0x0D
                             after an end block, nor the content of a
                             dropped or oversized frame) */
  uint64_t frames;  /* frames returned */
  uint64_t errors;  /* framing errors reported */
  /* The last CAD_E_TOOBIG frame: its bytes received so far, and whether it
   * was reported before its end came (then it is at least that long). */
  uint64_t oversize;
  bool oversize_cut;
  size_t start;   /* internal: first content byte of the frame in buf */
  size_t eb_from; /* internal: no end block in buf[pos, eb_from) */
} cad_mllp_framer_t;

/* max_frame 0 means the default, 4 MiB.  (A frame of exactly max_frame
 * bytes is accepted; one byte more is CAD_E_TOOBIG.) */
void cad_mllp_init(cad_mllp_framer_t *f, size_t max_frame);
/* Append bytes read from the peer. 0, or CAD_E_NOMEM. */
int cad_mllp_feed(cad_mllp_framer_t *f, const char *p, size_t n);
/* Next event:
 *   1                 a complete frame; *frame is the message without SB/EB/CR
 *   0                 need more bytes
 *   CAD_E_TOOBIG      a frame exceeded max_frame; *frame holds its first bytes
 *                     (at least the MSH segment when it fit), so a NAK can be
 *                     built from it; the rest of the frame is skipped
 *   CAD_E_FRAME       a start block arrived inside an unfinished frame; the
 *                     unfinished frame is in *frame and is dropped
 * After an error the framer continues with the next frame. */
int cad_mllp_next(cad_mllp_framer_t *f, cad_str_t *frame);
/* True when the framer holds the start of an unfinished frame (for the
 * "half a frame then silence" timeout). */
bool cad_mllp_in_frame(const cad_mllp_framer_t *f);
void cad_mllp_free(cad_mllp_framer_t *f);

/* Append SB + p + EB CR to out. 0 or CAD_E_NOMEM/CAD_E_TOOBIG. */
int cad_mllp_wrap(const char *p, size_t n, cad_buf_t *out);

#endif
