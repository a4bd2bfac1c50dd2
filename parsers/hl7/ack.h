/* ack.h - build the HL7 v2 acknowledgment (ACK) of an inbound message.
 *
 * Two steps:
 *   1. Read what the ACK needs from the inbound header into a cad_ack_msh_t:
 *      cad_ack_msh_from_msg() from a parsed message, or cad_ack_msh_scan()
 *      from raw bytes when the parser refused the message (a tolerant,
 *      bounded reader of the first segment only).
 *   2. cad_ack_build() writes the ACK message (no MLLP framing) into a buffer.
 *
 * The ACK is written in the inbound message's own delimiters (MSH-1 and MSH-2
 * copied verbatim) and version (MSH-12), with
 *   MSH-3/4 = inbound MSH-5/6 and MSH-5/6 = inbound MSH-3/4,
 *   MSH-7   = the time given by the caller, YYYYMMDDHHMMSS+ZZZZ,
 *   MSH-9   = ACK^<inbound MSH-9.2>^ACK,
 *   MSH-10  = the new control id given by the caller,
 *   MSH-11  = inbound MSH-11, MSH-12 = inbound MSH-12,
 *   MSH-18  = inbound MSH-18 when it has one (the ACK itself is ASCII),
 *   MSA-1   = AA/AE/AR (original mode) or CA/CE/CR (enhanced mode),
 *   MSA-2   = inbound MSH-10,
 * and, when the status is not "accept", an ERR segment:
 *   version >= 2.5 (or unknown):  ERR||SEG^seq^field|code^text^HL70357|E
 *                                 (ERR-2 error location, ERR-3 HL7 table
 *                                 0357 code, ERR-4 severity; ERR-8 carries
 *                                 the diagnostic's PHI-free reason)
 *   version <  2.5:               ERR|SEG^seq^field^code&text&HL70357
 *                                 (ERR-1, the ELD type of v2.1-2.4) and
 *                                 MSA-3 carries the code's text.
 *
 * Acknowledgment mode (cad_ack_style_t):
 *   AUTO: enhanced mode when the inbound MSH-15 or MSH-16 is not empty,
 *         original mode otherwise (the rule of HL7 v2 chapter 2).
 *   ORIGINAL / ENHANCED: forced by configuration.
 * In enhanced mode only the accept (commit) acknowledgment is ever sent:
 * MSH-16 asks for an application acknowledgment, which a store-and-forward
 * engine does not send (the receiving application downstream does).  MSH-15
 * decides whether the accept ACK is sent at all:
 *   AL (or empty) always;  NE never;  ER only for CE/CR;  SU only for CA.
 * An unknown MSH-15 value is read as AL (answering is the safe side).
 * In original mode an ACK is always sent.
 *
 * Memory: cad_ack_msh_t holds spans borrowed from the inbound bytes; they
 * must outlive cad_ack_build().  The output buffer is the caller's.
 * Nothing here allocates except through cad_buf_t.
 */
#ifndef CAD_ACK_H
#define CAD_ACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cad_mem.h"
#include "hl7.h"

typedef enum {
  CAD_ACK_STYLE_AUTO = 0,
  CAD_ACK_STYLE_ORIGINAL,
  CAD_ACK_STYLE_ENHANCED,
} cad_ack_style_t;

typedef enum {
  CAD_ACK_ACCEPT = 0, /* AA / CA */
  CAD_ACK_ERROR,      /* AE / CE: the message was understood but not processed */
  CAD_ACK_REJECT,     /* AR / CR: the message was refused */
} cad_ack_status_t;

/* The inbound header fields an ACK needs (raw, still escaped, borrowed). */
typedef struct cad_ack_msh {
  cad_hl7_delims_t d;
  cad_str_t enc;        /* MSH-2 verbatim */
  cad_str_t send_app;   /* MSH-3 */
  cad_str_t send_fac;   /* MSH-4 */
  cad_str_t recv_app;   /* MSH-5 */
  cad_str_t recv_fac;   /* MSH-6 */
  cad_str_t msg_type;   /* MSH-9 whole */
  cad_str_t trigger;    /* MSH-9.2 */
  cad_str_t control_id; /* MSH-10 */
  cad_str_t proc_id;    /* MSH-11 */
  cad_str_t version;    /* MSH-12 */
  cad_str_t accept_ack; /* MSH-15 */
  cad_str_t app_ack;    /* MSH-16 */
  cad_str_t charset;    /* MSH-18 (echoed in the ACK when not empty) */
} cad_ack_msh_t;

/* Fill `out` from a message parsed by cad_hl7_parse (its first segment must
 * be MSH).  Returns 0 or CAD_E_NOMSH. */
int cad_ack_msh_from_msg(const cad_hl7_msg_t *m, cad_ack_msh_t *out);

/* Tolerant reader of the first segment of raw bytes that the parser may have
 * refused.  Reads at most the first `max_scan` bytes (0 = 64 KiB) and only
 * the first segment; needs "MSH", a field separator and encoding characters
 * that are not letters, digits, CR or LF.  Returns 0, or CAD_E_NOMSH /
 * CAD_E_DELIM when no header can be read (then no ACK can be addressed). */
int cad_ack_msh_scan(const char *p, size_t len, size_t max_scan, cad_ack_msh_t *out);

/* A header to answer with when cad_ack_msh_scan() cannot read one (no MSH,
 * unreadable MSH-1/MSH-2), so a broken message still gets a NAK instead of
 * silence (a sender without an answer resends forever).  Returns 0 when the
 * header was read (the same as cad_ack_msh_scan), or 1 when `out` holds a
 * stand-in: the field separator of "MSH" + MSH-1 when that one is usable
 * and distinct from the defaults' encoding characters, else '|'; encoding
 * characters ^~\&; every other field empty (MSA-2 is then empty: no control
 * id could be read).  `out` is always usable by cad_ack_build(); its spans
 * point into `p` or to static storage. */
int cad_ack_msh_salvage(const char *p, size_t len, size_t max_scan, cad_ack_msh_t *out);

typedef struct cad_ack_opts {
  cad_ack_style_t style;
  cad_ack_status_t status;
  const char *control_id;     /* the ACK's own MSH-10 (NUL-terminated, plain
                               [A-Za-z0-9]; written as is) */
  time_t now;                 /* MSH-7, seconds since the epoch */
  int utc_offset_min;         /* MSH-7's offset from UTC, minutes (e.g. +60) */
  const cad_hl7_diag_t *diag; /* for the ERR segment when status != ACCEPT;
                               may be NULL (then 207 without a location) */
} cad_ack_opts_t;

/* True when the ACK is in enhanced mode for this inbound header. */
bool cad_ack_is_enhanced(const cad_ack_msh_t *in, cad_ack_style_t style);

/* Build the ACK into `out` (appended; a message whose segments end in \r,
 * no MLLP framing).  Returns 1 when an ACK was written, 0 when none must be
 * sent (enhanced mode and MSH-15 says so), or CAD_E_NOMEM / CAD_E_INVAL. */
int cad_ack_build(const cad_ack_msh_t *in, const cad_ack_opts_t *o, cad_buf_t *out);

/* Parse an HL7 version string ("2.3.1", "2.5") into major*100+minor
 * (203, 205); 0 when it cannot be read. */
int cad_ack_version(cad_str_t v);

#endif
