/* cad_json.c - escaping untrusted bytes for JSON and key=value (cad_json.h). */
#include "cad_json.h"

#include <stdbool.h>
#include <string.h>

size_t cad_utf8_seq(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  if (n == 0) return 0;
  unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0; /* overlong */
    if (c == 0xED) hi = 0x9F; /* surrogates U+D800..U+DFFF */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90; /* overlong */
    if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    return 0; /* 0x80..0xC1 (continuation, overlong lead), 0xF5..0xFF */
  }
  if (n < len || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return len;
}

/* A valid sequence that is escaped all the same: C1 controls, U+2028/9. */
static bool escape_anyway(const unsigned char *p, size_t len) {
  if (len == 2) return p[0] == 0xC2 && p[1] < 0xA0;
  return len == 3 && p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9);
}

static int put_escape(cad_esc_style_t style, unsigned c, cad_esc_sink_fn sink, void *ud) {
  static const char hex[] = "0123456789abcdef";
  char e[8];
  size_t k = 0;
  e[k++] = '\\';
  if (c == '"' || c == '\\') {
    e[k++] = (char)c;
  } else if (style == CAD_ESC_KV) {
    e[k++] = 'x';
    e[k++] = hex[(c >> 4) & 15];
    e[k++] = hex[c & 15];
  } else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
    e[k++] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
  } else {
    e[k++] = 'u';
    e[k++] = hex[(c >> 12) & 15];
    e[k++] = hex[(c >> 8) & 15];
    e[k++] = hex[(c >> 4) & 15];
    e[k++] = hex[c & 15];
  }
  return sink(ud, e, k);
}

int cad_text_escape(cad_esc_style_t style, const char *p, size_t n, cad_esc_sink_fn sink,
                    void *ud) {
  size_t run = 0; /* start of the pending verbatim run */
  size_t i = 0;
  int rc;
  while (i < n) {
    const unsigned char *u = (const unsigned char *)p + i;
    size_t len = cad_utf8_seq(p + i, n - i);
    bool plain = len > 1    ? !escape_anyway(u, len)
                 : len == 1 ? u[0] >= 0x20 && u[0] != 0x7f && u[0] != '"' && u[0] != '\\'
                            : false;
    if (plain) {
      i += len;
      continue;
    }
    if (i > run && (rc = sink(ud, p + run, i - run)) < 0) return rc;
    if (len == 0) { /* a byte that is not UTF-8: escaped alone */
      if ((rc = put_escape(style, u[0], sink, ud)) < 0) return rc;
      i++;
    } else if (len == 1) {
      if ((rc = put_escape(style, u[0], sink, ud)) < 0) return rc;
      i++;
    } else if (style == CAD_ESC_KV) { /* C1 or U+2028/9: each byte */
      for (size_t k = 0; k < len; k++)
        if ((rc = put_escape(style, u[k], sink, ud)) < 0) return rc;
      i += len;
    } else {
      unsigned cp = len == 2 ? u[1] : 0x2000u | (u[2] & 0x3Fu);
      if ((rc = put_escape(style, cp, sink, ud)) < 0) return rc;
      i += len;
    }
    run = i;
  }
  if (n > run && (rc = sink(ud, p + run, n - run)) < 0) return rc;
  return 0;
}

static int buf_sink(void *ud, const char *p, size_t n) { return cad_buf_append(ud, p, n); }

int cad_json_str(cad_buf_t *b, const char *p, size_t n) {
  int rc = cad_buf_putc(b, '"');
  if (rc == 0) rc = cad_text_escape(CAD_ESC_JSON, p, n, buf_sink, b);
  if (rc == 0) rc = cad_buf_putc(b, '"');
  return rc;
}

static int file_sink(void *ud, const char *p, size_t n) {
  return fwrite(p, 1, n, ud) == n ? 0 : -1;
}

void cad_json_fput(FILE *f, const char *p, size_t n) {
  fputc('"', f);
  cad_text_escape(CAD_ESC_JSON, p, n, file_sink, f);
  fputc('"', f);
}
