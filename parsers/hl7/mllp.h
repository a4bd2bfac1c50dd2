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
 * buffer holding at most max_frame + one read of bytes (+1, a pending end
 * block).  It grows with the data (doubling from 256 bytes) and shrinks
 * again once a large frame is consumed (freed when empty above 4 KiB), so
 * an idle connection or half a frame costs about what it holds.  A returned
 * frame points into that buffer and is valid until the next feed/next/free
 * call.  The buffer is compacted on feed (cad_mllp_feed(f, NULL, 0) only
 * compacts), so it does not grow with the number of frames; bytes already
 * searched are never searched again.
 *
 * End of a frame: 0x1C followed by 0x0D.  Lenient rules (what real senders
 * do) and what is not lenient:
 *   - 0x1C followed by 0x0B: the frame ends there (a sender without the
 *     trailing 0x0D) and the 0x0B starts the next frame.
 *   - 0x1C followed by anything else is not an end: it is a 0x1C inside the
 *     message.  The frame goes on to its real end and is then returned as
 *     CAD_MLLP_STRAY_EB (whole, stray 0x1C bytes included), so the receiver
 *     refuses it with one NAK instead of taking a truncated message and
 *     reading the rest as garbage.
 *   - So a frame is returned when the byte after its 0x1C arrives.  A 0x1C
 *     that is the last byte received is "pending" (cad_mllp_eb_pending()):
 *     a caller whose sender may omit the 0x0D and wait accepts it as the end
 *     after a short grace time with cad_mllp_accept_eb() (a 0x0D arriving
 *     later is then read as its trailer).
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
  bool stray;     /* internal: the open frame holds a 0x1C not followed by 0x0D */
  bool accept_eb; /* internal: a pending end block was accepted */
} cad_mllp_framer_t;

/* cad_mllp_next(): a complete frame that holds a stray 0x1C (see above). */
#define CAD_MLLP_STRAY_EB 2

/* max_frame 0 means the default, 4 MiB.  (A frame of exactly max_frame
 * bytes is accepted; one byte more is CAD_E_TOOBIG.) */
void cad_mllp_init(cad_mllp_framer_t *f, size_t max_frame);
/* Append bytes read from the peer. 0, or CAD_E_NOMEM. */
int cad_mllp_feed(cad_mllp_framer_t *f, const char *p, size_t n);
/* Next event:
 *   1                 a complete frame; *frame is the message without SB/EB/CR
 *   CAD_MLLP_STRAY_EB a complete frame holding a 0x1C not followed by 0x0D
 *                     (*frame holds it all); counted in `errors`, not `frames`
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
/* True when the last byte received is a 0x1C inside a frame, whose meaning
 * (end or content) waits for the next byte. */
bool cad_mllp_eb_pending(const cad_mllp_framer_t *f);
/* Take a pending 0x1C as the end of its frame (returned by the next
 * cad_mllp_next call).  No effect when none is pending. */
void cad_mllp_accept_eb(cad_mllp_framer_t *f);
void cad_mllp_free(cad_mllp_framer_t *f);

/* Append SB + p + EB CR to out. 0 or CAD_E_NOMEM/CAD_E_TOOBIG. */
int cad_mllp_wrap(const char *p, size_t n, cad_buf_t *out);

#endif
