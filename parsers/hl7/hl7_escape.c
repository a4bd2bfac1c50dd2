/* hl7_escape.c - decoding and encoding of HL7 escape sequences. */
#include <string.h>

#include "hl7.h"

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool cad_hl7_needs_unescape(const cad_hl7_delims_t *d, cad_str_t raw) {
  return d->esc && raw.len >= 3 && memchr(raw.p, d->esc, raw.len) != NULL;
}

size_t cad_hl7_unescape(const cad_hl7_delims_t *d, cad_str_t raw, char *out) {
  const char *p = raw.p, *end = raw.p + raw.len;
  size_t n = 0;
  if (!d->esc) {
    if (raw.len) memcpy(out, raw.p, raw.len);
    return raw.len;
  }
  while (p < end) {
    const char *e = memchr(p, d->esc, (size_t)(end - p));
    if (!e) {
      memcpy(out + n, p, (size_t)(end - p));
      n += (size_t)(end - p);
      break;
    }
    memcpy(out + n, p, (size_t)(e - p));
    n += (size_t)(e - p);
    const char *close = e + 1 < end ? memchr(e + 1, d->esc, (size_t)(end - e - 1)) : NULL;
    if (!close) {
      /* Unterminated: kept verbatim. */
      memcpy(out + n, e, (size_t)(end - e));
      n += (size_t)(end - e);
      break;
    }
    const char *s = e + 1;
    size_t sl = (size_t)(close - s);
    char one = 0;
    bool done = false;
    if (sl == 1) {
      switch (*s) {
        case 'F': one = d->field; break;
        case 'S': one = d->comp; break;
        case 'T': one = d->sub; break;
        case 'R': one = d->rep; break;
        case 'E': one = d->esc; break;
        case 'P': one = d->trunc; break;
        default: break;
      }
      if (one) {
        out[n++] = one;
        done = true;
      }
    } else if (sl >= 3 && *s == 'X' && (sl - 1) % 2 == 0) {
      bool ok = true;
      for (size_t k = 1; k < sl; k++)
        if (hexval((unsigned char)s[k]) < 0) ok = false;
      if (ok) {
        for (size_t k = 1; k < sl; k += 2)
          out[n++] = (char)(hexval((unsigned char)s[k]) * 16 + hexval((unsigned char)s[k + 1]));
        done = true;
      }
    }
    if (!done) {
      /* Formatting (\.br\ \H\ \N\ ...), character set (\C..\ \M..\), \Z..\
       * and unknown sequences are kept as they are. */
      memcpy(out + n, e, (size_t)(close - e + 1));
      n += (size_t)(close - e + 1);
    }
    p = close + 1;
  }
  return n;
}

bool cad_hl7_decode(const cad_hl7_delims_t *d, cad_str_t raw, cad_arena_t *a, cad_str_t *out) {
  if (!cad_hl7_needs_unescape(d, raw)) {
    *out = raw;
    return true;
  }
  char *buf = cad_arena_alloc(a, raw.len + 1);
  if (!buf) return false;
  out->len = cad_hl7_unescape(d, raw, buf);
  buf[out->len] = 0;
  out->p = buf;
  return true;
}

size_t cad_hl7_escape(const cad_hl7_delims_t *d, const char *p, size_t len, char *out) {
  size_t n = 0;
  char e = d->esc ? d->esc : '\\';
  for (size_t i = 0; i < len; i++) {
    char c = p[i];
    char code = 0;
    if (c == d->field) code = 'F';
    else if (c == d->comp) code = 'S';
    else if (d->sub && c == d->sub) code = 'T';
    else if (d->rep && c == d->rep) code = 'R';
    else if (d->esc && c == d->esc) code = 'E';
    else if (d->trunc && c == d->trunc) code = 'P';
    if (code) {
      out[n++] = e;
      out[n++] = code;
      out[n++] = e;
    } else if (c == '\r' || c == '\n') {
      out[n++] = e;
      out[n++] = 'X';
      out[n++] = '0';
      out[n++] = c == '\r' ? 'D' : 'A';
      out[n++] = e;
    } else {
      out[n++] = c;
    }
  }
  return n;
}

/* ---- character sets ------------------------------------------------------ */

bool cad_hl7_is_utf8(const char *p, size_t len) {
  const unsigned char *s = (const unsigned char *)p, *end = s + len;
  while (s < end) {
    unsigned char c = *s;
    if (c < 0x80) {
      s++;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if ((size_t)(end - s) <= n) return false;
    for (size_t k = 1; k <= n; k++) {
      if ((s[k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    s += n + 1;
  }
  return true;
}

/* Windows-1252 bytes 0x80-0x9F; the rest of the upper half is ISO-8859-1. */
static const uint16_t cp1252_c1[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

size_t cad_hl7_cp1252_to_utf8(const char *p, size_t len, char *out) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)p[i];
    uint32_t cp = c < 0x80 ? c : (c < 0xa0 ? cp1252_c1[c - 0x80] : c);
    if (cp < 0x80) {
      out[n++] = (char)cp;
    } else if (cp < 0x800) {
      out[n++] = (char)(0xc0 | (cp >> 6));
      out[n++] = (char)(0x80 | (cp & 0x3f));
    } else {
      out[n++] = (char)(0xe0 | (cp >> 12));
      out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      out[n++] = (char)(0x80 | (cp & 0x3f));
    }
  }
  return n;
}

bool cad_hl7_text(cad_str_t in, cad_arena_t *a, cad_str_t *out) {
  if (cad_hl7_is_utf8(in.p, in.len)) {
    *out = in;
    return true;
  }
  char *buf = cad_arena_alloc(a, in.len * 3 + 1);
  if (!buf) return false;
  out->len = cad_hl7_cp1252_to_utf8(in.p, in.len, buf);
  buf[out->len] = 0;
  out->p = buf;
  return true;
}
