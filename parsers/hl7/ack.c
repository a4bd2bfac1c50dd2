/* ack.c - build the HL7 v2 acknowledgment of an inbound message (ack.h). */
#include "ack.h"

#include <stdio.h>
#include <string.h>

#include "cad_error.h"

static cad_str_t field_of(const cad_hl7_seg_t *s, int n) {
  cad_str_t v = {"", 0};
  if (!cad_hl7_field(s, n, &v)) v = (cad_str_t){"", 0};
  return v;
}

static void fill_trigger(cad_ack_msh_t *o) {
  cad_str_t t;
  if (o->d.comp && cad_hl7_piece(o->msg_type, o->d.comp, 2, &t)) o->trigger = t;
  else o->trigger = (cad_str_t){"", 0};
  /* MSH-9.2 may itself hold subcomponents in odd messages: keep the first. */
  if (o->d.sub && cad_hl7_piece(o->trigger, o->d.sub, 1, &t)) o->trigger = t;
}

int cad_ack_msh_from_msg(const cad_hl7_msg_t *m, cad_ack_msh_t *out) {
  memset(out, 0, sizeof *out);
  const cad_hl7_seg_t *s = cad_hl7_seg(m, 0);
  if (!s || strcmp(s->name, "MSH") != 0) return CAD_E_NOMSH;
  out->d = s->d;
  out->enc = field_of(s, 2);
  out->send_app = field_of(s, 3);
  out->send_fac = field_of(s, 4);
  out->recv_app = field_of(s, 5);
  out->recv_fac = field_of(s, 6);
  out->msg_type = field_of(s, 9);
  out->control_id = field_of(s, 10);
  out->proc_id = field_of(s, 11);
  out->version = field_of(s, 12);
  out->accept_ack = field_of(s, 15);
  out->app_ack = field_of(s, 16);
  out->charset = field_of(s, 18);
  fill_trigger(out);
  return 0;
}

static bool bad_delim(unsigned char c) {
  return c == '\r' || c == '\n' || c == 0 || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

int cad_ack_msh_scan(const char *p, size_t len, size_t max_scan, cad_ack_msh_t *out) {
  memset(out, 0, sizeof *out);
  if (max_scan == 0) max_scan = 64 * 1024;
  if (len > max_scan) len = max_scan;
  if (len < 4 || memcmp(p, "MSH", 3) != 0) return CAD_E_NOMSH;
  char fs = p[3];
  /* A space is no field separator for the parser either (hl7.c): an ACK
   * written with one could not be read back. */
  if (bad_delim((unsigned char)fs) || fs == ' ') return CAD_E_DELIM;
  /* End of the first segment. */
  size_t end = 4;
  while (end < len && p[end] != '\r' && p[end] != '\n') end++;
  /* MSH-2: the encoding characters, up to the next field separator. */
  size_t i = 4;
  while (i < end && p[i] != fs) {
    if (bad_delim((unsigned char)p[i]) || i - 4 >= 5) return CAD_E_DELIM;
    i++;
  }
  size_t nenc = i - 4;
  /* The parser refuses a space as the component separator (hl7.c). */
  if (nenc < 1 || p[4] == ' ') return CAD_E_DELIM;
  const char *enc = p + 4;
  for (size_t a = 0; a < nenc; a++)
    for (size_t b = a + 1; b < nenc; b++)
      if (enc[a] == enc[b]) return CAD_E_DELIM;
  out->d.field = fs;
  out->d.comp = enc[0];
  out->d.rep = nenc > 1 ? enc[1] : 0;
  out->d.esc = nenc > 2 ? enc[2] : 0;
  out->d.sub = nenc > 3 ? enc[3] : 0;
  out->d.trunc = nenc > 4 ? enc[4] : 0;
  out->enc = (cad_str_t){enc, nenc};
  /* Fields 3.. : field n starts after the (n-1)-th separator counting MSH-1. */
  cad_str_t *slots[19] = {0};
  slots[3] = &out->send_app;
  slots[4] = &out->send_fac;
  slots[5] = &out->recv_app;
  slots[6] = &out->recv_fac;
  slots[9] = &out->msg_type;
  slots[10] = &out->control_id;
  slots[11] = &out->proc_id;
  slots[12] = &out->version;
  slots[15] = &out->accept_ack;
  slots[16] = &out->app_ack;
  slots[18] = &out->charset;
  for (int n = 3; n <= 18; n++)
    if (slots[n]) *slots[n] = (cad_str_t){"", 0};
  int n = 3;
  size_t start = i < end ? i + 1 : end; /* after the separator ending MSH-2 */
  while (n <= 18 && start <= end && i < end) {
    size_t e = start;
    while (e < end && p[e] != fs) e++;
    if (slots[n]) *slots[n] = (cad_str_t){p + start, e - start};
    n++;
    if (e >= end) break;
    start = e + 1;
  }
  fill_trigger(out);
  return 0;
}

int cad_ack_msh_salvage(const char *p, size_t len, size_t max_scan, cad_ack_msh_t *out) {
  if (cad_ack_msh_scan(p, len, max_scan, out) == 0) return 0;
  static const char enc[] = "^~\\&";
  static const char seps[] = "|!#$%*+,-./:;<=>?@_`{}";
  memset(out, 0, sizeof *out);
  out->d = cad_hl7_default_delims;
  /* Keep the sender's field separator when it is a plain punctuation mark
   * the parser would also take (so a reader that splits on it finds MSA). */
  if (len >= 4 && memcmp(p, "MSH", 3) == 0 && p[3] && strchr(seps, p[3])) out->d.field = p[3];
  out->enc = (cad_str_t){enc, 4};
  cad_str_t empty = {"", 0};
  out->send_app = out->send_fac = out->recv_app = out->recv_fac = empty;
  out->msg_type = out->trigger = out->control_id = out->proc_id = empty;
  out->version = out->accept_ack = out->app_ack = out->charset = empty;
  return 1;
}

int cad_ack_version(cad_str_t v) {
  /* Only the first component counts ("2.5.1^..."). */
  size_t i = 0;
  int major = 0, minor = 0, nd = 0;
  while (i < v.len && v.p[i] >= '0' && v.p[i] <= '9' && nd < 3) {
    major = major * 10 + (v.p[i] - '0');
    i++;
    nd++;
  }
  if (nd == 0 || i >= v.len || v.p[i] != '.') return 0;
  i++;
  nd = 0;
  while (i < v.len && v.p[i] >= '0' && v.p[i] <= '9' && nd < 2) {
    minor = minor * 10 + (v.p[i] - '0');
    i++;
    nd++;
  }
  if (nd == 0) return 0;
  return major * 100 + minor;
}

static bool str_is(cad_str_t s, const char *lit) {
  size_t n = strlen(lit);
  return s.len == n && memcmp(s.p, lit, n) == 0;
}

bool cad_ack_is_enhanced(const cad_ack_msh_t *in, cad_ack_style_t style) {
  if (style == CAD_ACK_STYLE_ORIGINAL) return false;
  if (style == CAD_ACK_STYLE_ENHANCED) return true;
  return in->accept_ack.len > 0 || in->app_ack.len > 0;
}

/* Append `v` escaped in the message's delimiters. */
static int put_escaped(cad_buf_t *b, const cad_hl7_delims_t *d, const char *v, size_t n) {
  char tmp[5 * 128];
  if (n > 128) n = 128;
  size_t k = cad_hl7_escape(d, v, n, tmp);
  return cad_buf_append(b, tmp, k);
}

static int put_num(cad_buf_t *b, unsigned long v) { return cad_buf_printf(b, "%lu", v); }

/* v (0 <= v < 10^w) as exactly w decimal digits into out; returns w. */
static size_t put_digits(char *out, int v, int w) {
  if (v < 0) v = 0;
  for (int i = w - 1; i >= 0; i--, v /= 10) out[i] = (char)('0' + v % 10);
  return (size_t)w;
}

/* Appends below stop at the first failure: `rc` holds it and the caller
 * rewinds the buffer. */
#define PUT(x)                     \
  do {                             \
    if ((rc = (x)) < 0) return rc; \
  } while (0)
#define PUTS(s) PUT(cad_buf_append(out, (s).p, (s).len))
#define PUTC(ch) PUT(cad_buf_putc(out, (ch)))

/* MSH-7: `now` in local time with its offset, YYYYMMDDHHMMSS+ZZZZ, each part
 * its fixed count of digits, NUL-terminated into ts[20]. */
static int format_msh7(const cad_ack_opts_t *o, char ts[20]) {
  time_t shifted = o->now + (time_t)o->utc_offset_min * 60;
  struct tm tm;
  if (!gmtime_r(&shifted, &tm)) return CAD_E_INVAL;
  int off = o->utc_offset_min;
  char sign = off < 0 ? '-' : '+';
  if (off < 0) off = -off;
  int parts[] = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
  static const int width[] = {4, 2, 2, 2, 2, 2};
  size_t tl = 0;
  for (int i = 0; i < 6; i++) tl += put_digits(ts + tl, parts[i], width[i]);
  ts[tl++] = sign;
  tl += put_digits(ts + tl, (off / 60) % 100, 2);
  tl += put_digits(ts + tl, off % 60, 2);
  ts[tl] = '\0';
  return 0;
}

/* The ACK's MSH: sender and receiver swapped, MSH-9 ACK^trigger^ACK. */
static int put_msh(const cad_ack_msh_t *in, const cad_ack_opts_t *o, const char *ts,
                   cad_buf_t *out) {
  const char f = in->d.field, c = in->d.comp;
  int rc = 0;
  PUT(cad_buf_append(out, "MSH", 3));
  PUTC(f);
  PUTS(in->enc);
  PUTC(f);
  PUTS(in->recv_app); /* MSH-3 */
  PUTC(f);
  PUTS(in->recv_fac); /* MSH-4 */
  PUTC(f);
  PUTS(in->send_app); /* MSH-5 */
  PUTC(f);
  PUTS(in->send_fac); /* MSH-6 */
  PUTC(f);
  PUT(cad_buf_puts(out, ts)); /* MSH-7 */
  PUTC(f);                    /* MSH-8 */
  PUTC(f);
  PUT(cad_buf_append(out, "ACK", 3)); /* MSH-9 */
  PUTC(c);
  PUTS(in->trigger);
  PUTC(c);
  PUT(cad_buf_append(out, "ACK", 3));
  PUTC(f);
  PUT(cad_buf_puts(out, o->control_id)); /* MSH-10 */
  PUTC(f);
  PUTS(in->proc_id); /* MSH-11 */
  PUTC(f);
  PUTS(in->version); /* MSH-12 */
  if (in->charset.len) {
    for (int k = 13; k <= 18; k++) PUTC(f); /* MSH-13..17 empty */
    PUTS(in->charset);                      /* MSH-18 */
  }
  PUTC('\r');
  return 0;
}

/* ERR-2 / ERR-1 location: segment id (escaped: a bad id may hold a
 * delimiter) ^ sequence ^ field; the id may be empty (unreadable). */
static int put_err(const cad_ack_msh_t *in, const cad_hl7_diag_t *dg, bool old_layout,
                   int hl7_code, const char *code_text, cad_buf_t *out) {
  const char f = in->d.field, c = in->d.comp;
  const cad_hl7_delims_t *d = &in->d;
  int rc = 0;
  bool loc = dg && dg->segment > 0;
  size_t idlen = dg ? strnlen(dg->seg_id, sizeof dg->seg_id) : 0;
  PUT(cad_buf_append(out, "ERR", 3));
  PUTC(f);
  if (old_layout) {
    /* ERR-1 (ELD): SEG^seq^field^code&text&HL70357 */
    if (loc) {
      PUT(put_escaped(out, d, dg->seg_id, idlen));
      PUTC(c);
      PUT(put_num(out, dg->segment));
      PUTC(c);
      if (dg->field) PUT(put_num(out, dg->field));
    } else {
      PUTC(c);
      PUTC(c);
    }
    PUTC(c);
    PUT(put_num(out, (unsigned long)hl7_code));
    if (d->sub) {
      PUTC(d->sub);
      PUT(put_escaped(out, d, code_text, strlen(code_text)));
      PUTC(d->sub);
      PUT(cad_buf_puts(out, "HL70357"));
    }
  } else {
    /* ERR-1 empty; ERR-2 (ERL) SEG^seq^field; ERR-3 (CWE); ERR-4 E; ERR-8. */
    PUTC(f);
    if (loc) {
      PUT(put_escaped(out, d, dg->seg_id, idlen));
      PUTC(c);
      PUT(put_num(out, dg->segment));
      if (dg->field) {
        PUTC(c);
        PUT(put_num(out, dg->field));
      }
    }
    PUTC(f);
    PUT(put_num(out, (unsigned long)hl7_code));
    PUTC(c);
    PUT(put_escaped(out, d, code_text, strlen(code_text)));
    PUTC(c);
    PUT(cad_buf_puts(out, "HL70357"));
    PUTC(f);
    PUTC('E');
    if (dg && dg->reason[0]) {
      for (int k = 5; k <= 8; k++) PUTC(f);
      PUT(put_escaped(out, d, dg->reason, strnlen(dg->reason, sizeof dg->reason)));
    }
  }
  PUTC('\r');
  return 0;
}

/* MSA (and ERR when not accepted). */
static int put_msa_err(const cad_ack_msh_t *in, const cad_ack_opts_t *o, bool enhanced,
                       cad_buf_t *out) {
  const char f = in->d.field;
  int rc = 0;
  static const char *const codes[2][3] = {{"AA", "AE", "AR"}, {"CA", "CE", "CR"}};
  int st = o->status == CAD_ACK_REJECT ? 2 : o->status == CAD_ACK_ERROR ? 1 : 0;
  int ver = cad_ack_version(in->version);
  bool old_layout = ver != 0 && ver < 205;
  int hl7_code = 0;
  const char *code_text = "";
  if (st != 0) {
    hl7_code = (o->diag && o->diag->hl7_code) ? o->diag->hl7_code : 207;
    code_text = cad_hl7_err_text(hl7_code);
    if (!code_text) code_text = "";
  }
  PUT(cad_buf_append(out, "MSA", 3));
  PUTC(f);
  PUT(cad_buf_puts(out, codes[enhanced ? 1 : 0][st])); /* MSA-1 */
  PUTC(f);
  PUTS(in->control_id); /* MSA-2 */
  if (st != 0 && old_layout) {
    PUTC(f);
    PUT(put_escaped(out, &in->d, code_text, strlen(code_text))); /* MSA-3 */
  }
  PUTC('\r');
  return st != 0 ? put_err(in, o->diag, old_layout, hl7_code, code_text, out) : 0;
}
#undef PUT
#undef PUTS
#undef PUTC

int cad_ack_build(const cad_ack_msh_t *in, const cad_ack_opts_t *o, cad_buf_t *out) {
  if (!in || !o || !out || !o->control_id || !in->d.field || !in->d.comp) return CAD_E_INVAL;
  bool enhanced = cad_ack_is_enhanced(in, o->style);
  if (enhanced) {
    cad_str_t a = in->accept_ack;
    if (str_is(a, "NE")) return 0;
    if (str_is(a, "ER") && o->status == CAD_ACK_ACCEPT) return 0;
    if (str_is(a, "SU") && o->status != CAD_ACK_ACCEPT) return 0;
  }
  char ts[20];
  if (format_msh7(o, ts)) return CAD_E_INVAL;
  size_t mark = out->len;
  int rc = put_msh(in, o, ts, out);
  if (rc == 0) rc = put_msa_err(in, o, enhanced, out);
  if (rc < 0) {
    out->len = mark;
    return rc;
  }
  return 1;
}
