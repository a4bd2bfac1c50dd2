/* cad_json.h - the one escaper of untrusted bytes for JSON strings and for
 * key=value log values, and the UTF-8 check under it.
 *
 * Message fields are bytes, not text: a sender may put any byte in them
 * (Latin-1 names, encoded surrogates, overlong forms, stray 0xff).  What is
 * written here is always valid UTF-8 and cannot end its string early:
 *
 *   - a valid UTF-8 sequence (RFC 3629: no surrogates, no overlong forms,
 *     nothing above U+10FFFF) passes through as it is, except the C1
 *     controls U+0080..U+009F and U+2028/U+2029 (line breaks to some
 *     readers), which are escaped;
 *   - every byte that is not part of a valid sequence is escaped on its
 *     own, and reading goes on at the next byte:
 *       JSON: as \u00XX, XX the byte (so it reads as the Latin-1 character
 *             of that byte: legacy HL7 senders mostly mean Latin-1);
 *       KV:   as \xXX;
 *   - '"' and '\' are escaped with a backslash; control bytes (< 0x20,
 *     0x7f): JSON \n \r \t \b \f or \u00XX, KV \xXX.
 *
 * So no value can forge a line (no raw CR/LF), a key or another string.
 *
 * Memory: nothing is kept; the sink and buffers are the caller's.
 */
#ifndef CAD_JSON_H
#define CAD_JSON_H

#include <stddef.h>
#include <stdio.h>

#include "cad_mem.h"

/* Length (1..4) of the valid UTF-8 sequence that starts at p (n bytes
 * available), or 0 when p[0] starts none (or n == 0). */
size_t cad_utf8_seq(const char *p, size_t n);

typedef enum {
  CAD_ESC_JSON = 0, /* inside a JSON string: \u00XX */
  CAD_ESC_KV,       /* a key=value log value: \xXX */
} cad_esc_style_t;

/* Receives the escaped text in pieces.  A piece that starts with '\' is one
 * escape and must be kept whole or dropped whole; any other piece is valid
 * UTF-8 without escapes and may be cut, but only before a byte that is not
 * a continuation byte (10xxxxxx).  Return < 0 to stop. */
typedef int (*cad_esc_sink_fn)(void *ud, const char *p, size_t n);

/* Escape n bytes at p (no quotes added).  Returns 0, or the sink's first
 * negative return. */
int cad_text_escape(cad_esc_style_t style, const char *p, size_t n, cad_esc_sink_fn sink, void *ud);

/* Append p[0..n) as a quoted JSON string.  0 or CAD_E_NOMEM. */
int cad_json_str(cad_buf_t *b, const char *p, size_t n);
/* Write p[0..n) as a quoted JSON string to f. */
void cad_json_fput(FILE *f, const char *p, size_t n);

#endif
