/* hl7_charset.h - character sets of HL7 v2 messages (MSH-18), through iconv.
 *
 * A message says its character set in MSH-18 (HL7 table 0211; the first
 * repetition is the set of the whole message).  Caduceus reads it, converts
 * the message to UTF-8 for the routes, and writes each destination's copy in
 * the set that destination requires (or back in the message's own set).
 * The conversions are glibc's iconv(3); this module knows the names.
 *
 * Names (docs/charsets.md has the full table).  A name is compared without
 * case, spaces, '-', '_', '/' or '.', so "8859/1", "ISO-8859-1",
 * "iso_8859-1", "ISO 8859/1" and "8859-1" are one set.  Accepted:
 *
 *   canonical (written)  also read as
 *   ASCII                US-ASCII, ISO IR6, ANSI_X3.4-1968
 *   8859/1 .. 8859/11,   ISO-8859-N, ISO8859N, 8859-N, LATIN1..LATIN10 (per
 *   8859/13 .. 8859/16   ISO's numbering: LATIN5 = 8859/9, LATIN9 = 8859/15),
 *                        ISO IR100 (8859/1), IR101 (/2), IR109 (/3), IR110
 *                        (/4), IR144 (/5), IR127 (/6), IR126 (/7), IR138 (/8),
 *                        IR148 (/9), IR157 (/10), IR166 (/11), IR179 (/13),
 *                        IR199 (/14), IR203 (/15), IR226 (/16)
 *   UNICODE UTF-8        UTF-8, UTF8, UNICODE (HL7 2.3's name; what senders
 *                        that write it send is UTF-8), ISO IR192
 *   (read only)          WINDOWS-1252, CP1252: a common mislabel's truth; a
 *                        destination cannot ask for it (HL7 has no name for it)
 *
 * UTF-16 and UTF-32 (NUL bytes in an MLLP frame) and the multi-byte Asian
 * sets are not supported: a message naming them is refused with HL7 code 103.
 * Alternate sets (MSH-18 repetitions after the first, \C..\ and \M..\
 * escapes) are not interpreted: their escapes pass through as text.
 *
 * Memory: nothing here allocates but from the caller's arena; a result that
 * needs no conversion is the input span itself (no copy).  Each conversion
 * opens and closes its own iconv descriptor, so every function is safe on
 * any thread.
 */
#ifndef CAD_HL7_CHARSET_H
#define CAD_HL7_CHARSET_H

#include <stdbool.h>
#include <stddef.h>

#include "cad_mem.h"
#include "hl7.h"

/* Character set ids: 0 is "none" (not declared, not configured). */
enum {
  CAD_CS_NONE = 0,
  CAD_CS_ASCII = 1,
  CAD_CS_UTF8 = 2,
  /* 3..: the ISO-8859 parts and WINDOWS-1252, in the order of the table */
};

/* What to do with a character the target set cannot represent. */
typedef enum {
  CAD_CS_REJECT = 0, /* the conversion fails: nothing is sent (default) */
  CAD_CS_REPLACE,    /* written as '?' */
  CAD_CS_ESCAPE,     /* written as \Xhh..\ with the hex of its UTF-8 bytes */
} cad_cs_policy_t;

/* The id of a set by any of its names (len bytes at name), or CAD_CS_NONE. */
int cad_charset_find(const char *name, size_t len);
/* The canonical HL7 name (what MSH-18 gets): "8859/1", "UNICODE UTF-8",
 * "ASCII"; NULL for CAD_CS_NONE or a read-only set. */
const char *cad_charset_hl7_name(int id);
/* A name to show ("WINDOWS-1252" for the read-only one), never NULL. */
const char *cad_charset_name(int id);
/* True when a destination may ask for it (it has an HL7 name). */
bool cad_charset_writable(int id);
/* The number of ids (ids are 1 .. cad_charset_count()). */
int cad_charset_count(void);
/* 0 when this system's iconv converts the set both ways, else CAD_E_NOTFOUND
 * (a C library without the gconv modules). */
int cad_charset_available(int id);

/* What MSH-18 (first repetition) of a parsed message declares: the set's id;
 * CAD_CS_NONE when MSH-18 is absent or empty; CAD_E_NOTFOUND when it names
 * a set this module does not know.  *label (may be NULL) is its raw text. */
int cad_charset_declared(const cad_hl7_msg_t *m, cad_str_t *label);

/* Convert `in`, written in set `id`, to UTF-8.  ASCII and UTF-8 are only
 * checked (out = in, no copy).  Returns 0; CAD_E_INVAL when a byte is not
 * valid in the set (*bad, may be NULL, its offset in `in`); CAD_E_NOTFOUND
 * for CAD_CS_NONE or a set iconv cannot open; CAD_E_NOMEM. */
int cad_charset_decode(int id, cad_str_t in, cad_arena_t *a, cad_str_t *out, size_t *bad);

/* Convert UTF-8 `in` to set `id` (UTF-8: out = in after the check), applying
 * `pol` to each character the set cannot represent; `esc` is the message's
 * escape character for CAD_CS_ESCAPE (0: none declared, then ESCAPE refuses
 * like REJECT).  *changed (may be NULL) counts the characters replaced or
 * escaped.  Returns 0; CAD_E_INVAL when `in` is not UTF-8 or a character
 * cannot be represented and the policy refuses (*bad its offset in `in`);
 * CAD_E_NOTFOUND; CAD_E_NOMEM. */
int cad_charset_encode(int id, cad_str_t in, cad_cs_policy_t pol, char esc, cad_arena_t *a,
                       cad_str_t *out, size_t *bad, size_t *changed);

/* A copy of message bytes `msg` whose MSH-18 first repetition is `label`
 * (the field is added when MSH is shorter; other repetitions are kept).
 * Works on the raw bytes with the message's own delimiters.  Returns 0
 * (out = msg when it already says exactly that), CAD_E_NOMSH, CAD_E_NOMEM. */
int cad_charset_set_msh18(cad_str_t msg, const char *label, cad_arena_t *a, cad_str_t *out);

/* Where byte `off` of message bytes `msg` is, for an ERR segment: the
 * 1-based segment number, its id and the field number (header segments
 * counted as HL7 does: MSH-1 is the separator).  Fills dg->segment, seg_id
 * and field. */
void cad_charset_locate(cad_str_t msg, size_t off, cad_hl7_diag_t *dg);

/* ---- a message's way through (the pipeline, `caduceus test`, preview) ----
 *
 * In: the set of a parsed message is its MSH-18, else `fallback` (the
 * channel's `charset:`), else none.  A message in a set other than UTF-8 or
 * ASCII is converted to UTF-8 for the routes (*utf8, in the arena; else
 * *utf8 = the input).  *src is the set it was read in (CAD_CS_NONE: not
 * declared, bytes left as they are).  Errors fill dg for the ACK (AR):
 * HL7 code 103 at MSH-18 for a set that is not known, 102 at the segment
 * and field of the first byte not valid in the declared set.
 *
 * Out: one routed copy for a destination that requires set `want` (NONE:
 * the message's own set `src`).  Returns the bytes to queue: the copy
 * itself when no conversion is needed (so a UTF-8 message to a destination
 * without `encoding:` is byte for byte as routed), else converted (and with
 * `want` given, MSH-18 rewritten to its canonical name).  A character the
 * set cannot represent follows `pol`; a refusal fills dg (HL7 code 102,
 * where the character is) and returns CAD_E_INVAL. */
int cad_charset_msg_in(const cad_hl7_msg_t *m, int fallback, cad_arena_t *a, cad_str_t *utf8,
                       int *src, cad_hl7_diag_t *dg);
int cad_charset_msg_out(cad_str_t routed, int src, int want, cad_cs_policy_t pol, cad_arena_t *a,
                        cad_str_t *out, cad_hl7_diag_t *dg);

#endif
