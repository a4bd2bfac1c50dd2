/* hl7_charset.c - MSH-18 names and conversions through iconv (hl7_charset.h). */
#include "hl7_charset.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cad_error.h"

/* ---- the table of names --------------------------------------------------- */

typedef struct charset {
  const char *hl7;     /* canonical MSH-18 value; NULL: read only */
  const char *show;    /* the name in messages and `check` */
  const char *iconv;   /* glibc's name */
  const char *aliases; /* normalised names (upper case letters and digits), space separated */
} charset_t;

/* Index = id. */
static const charset_t sets[] = {
    [CAD_CS_NONE] = {NULL, "none", NULL, ""},
    [CAD_CS_ASCII] = {"ASCII", "ASCII", "ASCII", "ASCII USASCII ISOIR6 ANSIX341968 ISO646US"},
    [CAD_CS_UTF8] = {"UNICODE UTF-8", "UNICODE UTF-8", "UTF-8",
                     "UNICODEUTF8 UTF8 UNICODE ISOIR192"},
    {"8859/1", "8859/1", "ISO-8859-1", "88591 ISO88591 LATIN1 ISOIR100 L1"},
    {"8859/2", "8859/2", "ISO-8859-2", "88592 ISO88592 LATIN2 ISOIR101 L2"},
    {"8859/3", "8859/3", "ISO-8859-3", "88593 ISO88593 LATIN3 ISOIR109 L3"},
    {"8859/4", "8859/4", "ISO-8859-4", "88594 ISO88594 LATIN4 ISOIR110 L4"},
    {"8859/5", "8859/5", "ISO-8859-5", "88595 ISO88595 CYRILLIC ISOIR144"},
    {"8859/6", "8859/6", "ISO-8859-6", "88596 ISO88596 ARABIC ISOIR127"},
    {"8859/7", "8859/7", "ISO-8859-7", "88597 ISO88597 GREEK ISOIR126"},
    {"8859/8", "8859/8", "ISO-8859-8", "88598 ISO88598 HEBREW ISOIR138"},
    {"8859/9", "8859/9", "ISO-8859-9", "88599 ISO88599 LATIN5 ISOIR148 L5"},
    {"8859/10", "8859/10", "ISO-8859-10", "885910 ISO885910 LATIN6 ISOIR157 L6"},
    {"8859/11", "8859/11", "ISO-8859-11", "885911 ISO885911 ISOIR166"},
    {"8859/13", "8859/13", "ISO-8859-13", "885913 ISO885913 LATIN7 ISOIR179 L7"},
    {"8859/14", "8859/14", "ISO-8859-14", "885914 ISO885914 LATIN8 ISOIR199 L8"},
    {"8859/15", "8859/15", "ISO-8859-15", "885915 ISO885915 LATIN9 ISOIR203 L9"},
    {"8859/16", "8859/16", "ISO-8859-16", "885916 ISO885916 LATIN10 ISOIR226 L10"},
    {NULL, "WINDOWS-1252", "WINDOWS-1252", "WINDOWS1252 CP1252"},
};
#define NSETS ((int)(sizeof sets / sizeof sets[0]))

int cad_charset_count(void) { return NSETS - 1; }

static bool valid_id(int id) { return id > 0 && id < NSETS; }

const char *cad_charset_hl7_name(int id) { return valid_id(id) ? sets[id].hl7 : NULL; }
const char *cad_charset_name(int id) { return valid_id(id) ? sets[id].show : "none"; }
bool cad_charset_writable(int id) { return valid_id(id) && sets[id].hl7 != NULL; }

int cad_charset_find(const char *name, size_t len) {
  char norm[32];
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c >= 'a' && c <= 'z') c = (unsigned char)(c - 'a' + 'A');
    if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      if (n + 1 >= sizeof norm) return CAD_CS_NONE;
      norm[n++] = (char)c;
    }
  }
  if (n == 0) return CAD_CS_NONE;
  for (int id = 1; id < NSETS; id++) {
    const char *a = sets[id].aliases;
    while (*a) {
      const char *e = strchr(a, ' ');
      size_t l = e ? (size_t)(e - a) : strlen(a);
      if (l == n && memcmp(a, norm, n) == 0) return id;
      a += l;
      while (*a == ' ') a++;
    }
  }
  return CAD_CS_NONE;
}

int cad_charset_available(int id) {
  if (!valid_id(id)) return CAD_E_NOTFOUND;
  if (id == CAD_CS_UTF8) return 0;
  iconv_t a = iconv_open("UTF-8", sets[id].iconv);
  if (a == (iconv_t)-1) return CAD_E_NOTFOUND;
  iconv_close(a);
  iconv_t b = iconv_open(sets[id].iconv, "UTF-8");
  if (b == (iconv_t)-1) return CAD_E_NOTFOUND;
  iconv_close(b);
  return 0;
}

/* ---- what a message declares ---------------------------------------------- */

int cad_charset_declared(const cad_hl7_msg_t *m, cad_str_t *label) {
  cad_str_t f = {"", 0}, r = {"", 0};
  if (label) *label = r;
  const cad_hl7_seg_t *s = cad_hl7_seg(m, 0);
  if (!s || strcmp(s->name, "MSH") != 0 || !cad_hl7_field(s, 18, &f) || f.len == 0)
    return CAD_CS_NONE;
  if (!s->d.rep || !cad_hl7_piece(f, s->d.rep, 1, &r)) r = f;
  if (label) *label = r;
  /* Spaces alone, or the null "", say nothing. */
  bool blank = true;
  for (size_t i = 0; i < r.len && blank; i++) blank = r.p[i] == ' ' || r.p[i] == '"';
  if (blank) return CAD_CS_NONE;
  int id = cad_charset_find(r.p, r.len);
  return id == CAD_CS_NONE ? CAD_E_NOTFOUND : id;
}

/* ---- conversions ---------------------------------------------------------- */

/* Offset of the first byte that is not part of valid UTF-8 (no overlong
 * forms, no surrogates, nothing above U+10FFFF), or len. */
static size_t utf8_scan(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
    else return i;
    if (len - i <= n) return i;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += n + 1;
  }
  return len;
}

/* Length of the UTF-8 sequence starting with byte c (valid input). */
static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4; }

int cad_charset_decode(int id, cad_str_t in, cad_arena_t *a, cad_str_t *out, size_t *bad) {
  if (!valid_id(id)) return CAD_E_NOTFOUND;
  const unsigned char *s = (const unsigned char *)in.p;
  if (id == CAD_CS_UTF8 || id == CAD_CS_ASCII) {
    size_t off = in.len;
    if (id == CAD_CS_UTF8) off = utf8_scan(s, in.len);
    else
      for (size_t i = 0; i < in.len; i++)
        if (s[i] >= 0x80) {
          off = i;
          break;
        }
    if (off < in.len) {
      if (bad) *bad = off;
      return CAD_E_INVAL;
    }
    *out = in;
    return 0;
  }
  /* One byte is one character in every other set: at most 3 bytes of UTF-8
   * each (all of them are in the Basic Multilingual Plane). */
  if (in.len > (SIZE_MAX - 1) / 3) return CAD_E_NOMEM;
  size_t cap = in.len * 3 + 1;
  char *buf = cad_arena_alloc(a, cap);
  if (!buf) return CAD_E_NOMEM;
  iconv_t cd = iconv_open("UTF-8", sets[id].iconv);
  if (cd == (iconv_t)-1) return CAD_E_NOTFOUND;
  char *ip = (char *)(uintptr_t)in.p, *op = buf;
  size_t il = in.len, ol = cap;
  int rc = 0;
  if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1) {
    /* EILSEQ: a byte the set does not define; E2BIG cannot happen. */
    if (bad) *bad = (size_t)(ip - in.p);
    rc = errno == E2BIG ? CAD_E_NOMEM : CAD_E_INVAL;
  }
  iconv_close(cd);
  if (rc) return rc;
  out->p = buf;
  out->len = cap - ol;
  buf[out->len] = 0;
  return 0;
}

static const char hexd[] = "0123456789ABCDEF";

/* One pass of cad_charset_encode into cap bytes: 0, 1 (out of room), or an
 * error. */
static int encode_pass(iconv_t cd, cad_str_t in, cad_cs_policy_t pol, char esc, char *buf,
                       size_t cap, size_t *outlen, size_t *bad, size_t *changed) {
  char *ip = (char *)(uintptr_t)in.p, *op = buf;
  size_t il = in.len, ol = cap, nch = 0;
  iconv(cd, NULL, NULL, NULL, NULL); /* initial state */
  while (il > 0) {
    if (iconv(cd, &ip, &il, &op, &ol) != (size_t)-1) break;
    if (errno == E2BIG) return 1;
    size_t k = utf8_len((unsigned char)*ip);
    if (k > il) k = il;
    if (pol == CAD_CS_REJECT || (pol == CAD_CS_ESCAPE && !esc) || errno != EILSEQ) {
      if (bad) *bad = (size_t)(ip - in.p);
      return CAD_E_INVAL;
    }
    size_t need = pol == CAD_CS_REPLACE ? 1 : 3 + 2 * k;
    if (ol < need) return 1;
    if (pol == CAD_CS_REPLACE) {
      *op++ = '?';
    } else {
      *op++ = esc;
      *op++ = 'X';
      for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)ip[i];
        *op++ = hexd[c >> 4];
        *op++ = hexd[c & 15];
      }
      *op++ = esc;
    }
    ol -= need;
    ip += k;
    il -= k;
    nch++;
  }
  *outlen = cap - ol;
  if (changed) *changed = nch;
  return 0;
}

int cad_charset_encode(int id, cad_str_t in, cad_cs_policy_t pol, char esc, cad_arena_t *a,
                       cad_str_t *out, size_t *bad, size_t *changed) {
  if (changed) *changed = 0;
  if (!valid_id(id)) return CAD_E_NOTFOUND;
  size_t off = utf8_scan((const unsigned char *)in.p, in.len);
  if (off < in.len) {
    if (bad) *bad = off;
    return CAD_E_INVAL;
  }
  if (id == CAD_CS_UTF8) {
    *out = in;
    return 0;
  }
  iconv_t cd = iconv_open(sets[id].iconv, "UTF-8");
  if (cd == (iconv_t)-1) return CAD_E_NOTFOUND;
  /* Every set here writes a character in one byte, so the input's length is
   * enough unless characters are escaped: 7 bytes for a 2-byte character
   * (the worst ratio, 3.5), 9 for 3, 11 for 4; ASCII is never escaped. */
  int rc = 1;
  size_t len = 0;
  for (int pass = 0; pass < 2 && rc == 1; pass++) {
    if (in.len > (SIZE_MAX - 16) / 4) {
      rc = CAD_E_NOMEM;
      break;
    }
    size_t cap = pass == 0 ? in.len + 16 : in.len * 4 + 16;
    cad_arena_mark_t mark = cad_arena_mark(a);
    char *buf = cad_arena_alloc(a, cap);
    if (!buf) {
      rc = CAD_E_NOMEM;
      break;
    }
    rc = encode_pass(cd, in, pol, esc, buf, cap, &len, bad, changed);
    if (rc == 0) *out = (cad_str_t){buf, len};
    else cad_arena_rewind(a, mark);
  }
  iconv_close(cd);
  return rc == 1 ? CAD_E_NOMEM : rc;
}

/* ---- MSH-18 in the raw bytes ------------------------------------------------ */

/* The delimiters of the header of msg, as the parser reads them (so a
 * rewrite and a later read agree on odd MSH-2 values). */
static int header_of(cad_str_t msg, cad_arena_t *a, cad_hl7_msg_t *m, const cad_hl7_seg_t **s,
                     bool msh) {
  if (msg.len < 4 || (msh && memcmp(msg.p, "MSH", 3) != 0)) return CAD_E_NOMSH;
  cad_hl7_limits_t lim = {.max_bytes = msg.len + 1};
  int rc = cad_hl7_parse(m, msg.p, msg.len, a, &lim, NULL);
  if (rc == CAD_E_NOMEM) return rc;
  *s = rc == 0 ? cad_hl7_seg(m, 0) : NULL;
  if (!*s || (msh ? strcmp((*s)->name, "MSH") != 0 : !(*s)->header)) return CAD_E_NOMSH;
  return 0;
}

int cad_charset_set_msh18(cad_str_t msg, const char *label, cad_arena_t *a, cad_str_t *out) {
  cad_hl7_msg_t m;
  const cad_hl7_seg_t *s;
  int rc = header_of(msg, a, &m, &s, true);
  if (rc) return rc;
  const cad_hl7_delims_t *d = &s->d;
  size_t llen = strlen(label);
  for (size_t i = 0; i < llen; i++) {
    char c = label[i];
    if (c == d->field || c == d->comp || c == d->rep || c == d->esc || c == d->sub ||
        (d->trunc && c == d->trunc))
      return CAD_E_INVAL;
  }
  cad_str_t f, r;
  size_t add = 0, from, to; /* replace [from, to) after `add` separators */
  if (cad_hl7_field(s, 18, &f)) {
    if (!d->rep || !cad_hl7_piece(f, d->rep, 1, &r)) r = f;
    from = (size_t)(r.p - msg.p);
    to = from + r.len;
    if (r.len == llen && memcmp(r.p, label, llen) == 0) {
      *out = msg;
      return 0;
    }
  } else {
    add = (size_t)(18 - cad_hl7_nfields(s));
    from = to = (size_t)(s->raw.p - msg.p) + s->raw.len;
  }
  size_t n = msg.len - (to - from) + add + llen;
  char *buf = cad_arena_alloc(a, n ? n : 1);
  if (!buf) return CAD_E_NOMEM;
  memcpy(buf, msg.p, from);
  size_t o = from;
  for (size_t k = 0; k < add; k++) buf[o++] = d->field;
  memcpy(buf + o, label, llen);
  o += llen;
  memcpy(buf + o, msg.p + to, msg.len - to);
  o += msg.len - to;
  *out = (cad_str_t){buf, o};
  return 0;
}

void cad_charset_locate(cad_str_t msg, size_t off, cad_hl7_diag_t *dg) {
  const char *p = msg.p;
  if (off > msg.len) off = msg.len;
  char fs = msg.len > 3 ? p[3] : '|';
  uint32_t seg = 0;
  size_t s = 0;
  /* Segments are the non-empty lines (as the parser counts them). */
  for (size_t i = 0; i <= off && i <= msg.len; i++) {
    if (i == msg.len || p[i] == '\r' || p[i] == '\n') {
      if (i >= off) break;
      s = i + 1;
      continue;
    }
    if (i == s) seg++;
  }
  if (seg == 0) seg = 1;
  uint32_t seps = 0;
  for (size_t i = s; i < off; i++)
    if (p[i] == fs) seps++;
  bool header = off - s >= 3 && msg.len - s >= 3 &&
                (memcmp(p + s, "MSH", 3) == 0 || memcmp(p + s, "BHS", 3) == 0 ||
                 memcmp(p + s, "FHS", 3) == 0);
  dg->segment = seg;
  memset(dg->seg_id, 0, sizeof dg->seg_id);
  for (size_t k = 0; k < 3 && s + k < msg.len && p[s + k] != '\r' && p[s + k] != '\n'; k++)
    dg->seg_id[k] = p[s + k];
  dg->field = seps == 0 ? 0 : header ? seps + 1 : seps;
}

/* ---- a message's way through ------------------------------------------------ */

/* A conversion keeps a message's structure only when its delimiters are
 * ASCII (as HL7 requires): one byte, the same in every set here. */
static bool delims_ascii(const cad_hl7_delims_t *d) {
  const char c[] = {d->field, d->comp, d->rep, d->esc, d->sub, d->trunc};
  for (size_t i = 0; i < sizeof c; i++)
    if ((unsigned char)c[i] >= 0x80) return false;
  return true;
}

static int refuse_delims(cad_hl7_diag_t *dg) {
  *dg = (cad_hl7_diag_t){
      .code = CAD_E_DELIM, .hl7_code = 102, .segment = 1, .seg_id = "MSH", .field = 2};
  snprintf(dg->reason, sizeof dg->reason, "delimiters that are not ASCII: no conversion possible");
  return CAD_E_DELIM;
}

int cad_charset_msg_in(const cad_hl7_msg_t *m, int fallback, cad_arena_t *a, cad_str_t *utf8,
                       int *src, cad_hl7_diag_t *dg) {
  cad_str_t label;
  int id = cad_charset_declared(m, &label);
  bool declared = id != CAD_CS_NONE;
  *utf8 = m->input;
  *src = CAD_CS_NONE;
  if (id == CAD_E_NOTFOUND) {
    *dg = (cad_hl7_diag_t){
        .code = CAD_E_NOTFOUND, .hl7_code = 103, .segment = 1, .seg_id = "MSH", .field = 18};
    snprintf(dg->reason, sizeof dg->reason, "MSH-18 names a character set that is not supported");
    return CAD_E_NOTFOUND;
  }
  if (id == CAD_CS_NONE) id = fallback;
  if (id == CAD_CS_NONE) return 0;
  for (uint32_t i = 0; i < m->nsegs; i++)
    if (m->segs[i].header && !delims_ascii(&m->segs[i].d)) return refuse_delims(dg);
  size_t bad = 0;
  int rc = cad_charset_decode(id, m->input, a, utf8, &bad);
  if (rc == CAD_E_INVAL) {
    *dg = (cad_hl7_diag_t){.code = rc, .hl7_code = 102, .offset = bad};
    cad_charset_locate(m->input, bad, dg);
    snprintf(dg->reason, sizeof dg->reason, "a byte that is not valid %s (%s)", sets[id].show,
             declared ? "MSH-18" : "the channel's charset");
  } else if (rc < 0) {
    *dg = (cad_hl7_diag_t){.code = rc, .hl7_code = 207, .segment = 1, .seg_id = "MSH"};
    snprintf(dg->reason, sizeof dg->reason, "cannot convert from %s: %s", sets[id].show,
             cad_err_name(rc));
  } else {
    *src = id;
  }
  return rc;
}

int cad_charset_msg_out(cad_str_t routed, int src, int want, cad_cs_policy_t pol, cad_arena_t *a,
                        cad_str_t *out, cad_hl7_diag_t *dg) {
  *out = routed;
  int target = want ? want : src;
  if (target == CAD_CS_NONE || (target == CAD_CS_UTF8 && !want)) return 0;
  if (target == CAD_CS_ASCII && !want) { /* still ASCII: nothing to convert */
    size_t i = 0;
    while (i < routed.len && (unsigned char)routed.p[i] < 0x80) i++;
    if (i == routed.len) return 0;
  }
  cad_str_t text = routed;
  int rc = 0;
  /* Bytes of a message in no known set: what `caduceus parse` shows, UTF-8
   * when they are, else Windows-1252 (which covers ISO-8859-1). */
  if (src == CAD_CS_NONE && !cad_hl7_is_utf8(routed.p, routed.len)) {
    size_t bad;
    rc = cad_charset_decode(NSETS - 1, routed, a, &text, &bad);
  }
  if (rc == 0 && want) rc = cad_charset_set_msh18(text, sets[want].hl7, a, &text);
  char esc = 0;
  if (rc == 0) {
    cad_hl7_msg_t hm;
    const cad_hl7_seg_t *hs;
    rc = header_of(text, a, &hm, &hs, false);
    if (rc == 0 && !delims_ascii(&hs->d)) return refuse_delims(dg);
    if (rc == 0) esc = hs->d.esc;
    else if (rc == CAD_E_NOMSH) rc = 0; /* no header: nothing to escape with */
  }
  size_t bad = 0;
  if (rc == 0) rc = cad_charset_encode(target, text, pol, esc, a, out, &bad, NULL);
  if (rc == CAD_E_INVAL) {
    *dg = (cad_hl7_diag_t){.code = rc, .hl7_code = 102, .offset = bad};
    cad_charset_locate(text, bad, dg);
    snprintf(dg->reason, sizeof dg->reason, "a character that %s cannot represent (%s)",
             sets[target].show,
             pol == CAD_CS_ESCAPE ? "no escape character in MSH-2" : "unrepresentable: reject");
  } else if (rc < 0) {
    *dg = (cad_hl7_diag_t){.code = rc, .hl7_code = 207, .segment = 1, .seg_id = "MSH"};
    snprintf(dg->reason, sizeof dg->reason, "cannot convert to %s: %s", sets[target].show,
             cad_err_name(rc));
  }
  return rc;
}
