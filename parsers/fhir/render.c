/* render.c - a message in the format a destination asks for (fhir.h):
 * er7 as it is, the FHIR Bundle, the JSON tree of `caduceus parse --json`,
 * or the HL7 v2 XML encoding. */
#include "fhir.h"

#include <stdio.h>
#include <string.h>

#include "cad_error.h"
#include "cad_json.h"
#include "fhir_int.h"
#include "xml_types.h"

static const char *const names[] = {"er7", "fhir", "json", "xml"};

int cad_format_parse(const char *name, cad_format_t *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) {
      *out = (cad_format_t)i;
      return 0;
    }
  return CAD_E_INVAL;
}

const char *cad_format_name(cad_format_t f) { return (unsigned)f < 4 ? names[f] : "?"; }

const char *cad_format_content_type(cad_format_t f) {
  switch (f) {
    case CAD_FORMAT_FHIR: return "application/fhir+json";
    case CAD_FORMAT_JSON: return "application/json";
    case CAD_FORMAT_XML: return "application/xml";
    default: return "x-application/hl7-v2+er7";
  }
}

/* jansson hands its output over in small pieces (a quote, a key, a comma):
 * each is copied straight in while the buffer has room, which is what
 * json_dumpb's own callback does, and the buffer grows when it has not (so
 * the tree is written once, whatever its size; json_dumpb into a buffer too
 * small would have to write it twice). */
static int dump_cb(const char *p, size_t n, void *ud) {
  cad_buf_t *b = ud;
  if (n < b->cap - b->len) { /* cad_buf keeps a byte spare (cad_buf_reserve) */
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
  }
  return cad_buf_append(b, p, n) ? -1 : 0;
}

int cad_json_dump_buf(const json_t *j, bool pretty, cad_buf_t *out) {
  /* insertion order (JSON_PRESERVE_ORDER is what jansson >= 2.8 always
   * does), no JSON_SORT_KEYS: the FHIR output keeps its writing order */
  size_t flags =
      JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15) | (pretty ? JSON_INDENT(2) : JSON_COMPACT);
  return json_dump_callback(j, dump_cb, out, flags) ? CAD_E_NOMEM : 0;
}

/* Bytes as UTF-8 the way cad_json.h writes them: valid sequences as they
 * are, any other byte as the Latin-1 character of its value.  Returns the
 * text in the arena (or p itself when already valid). */
static cad_str_t as_utf8(cad_arena_t *a, cad_str_t s, bool *ok) {
  size_t i = 0;
  while (i < s.len && (unsigned char)s.p[i] < 0x80) i++; /* ASCII: the usual case */
  while (i < s.len) {
    size_t k = cad_utf8_seq(s.p + i, s.len - i);
    if (!k) break;
    i += k;
  }
  if (i == s.len) return s;
  char *o = cad_arena_alloc(a, 2 * s.len + 1);
  if (!o) {
    *ok = false;
    return s;
  }
  size_t n = 0;
  for (i = 0; i < s.len;) {
    size_t k = cad_utf8_seq(s.p + i, s.len - i);
    if (k) {
      memcpy(o + n, s.p + i, k);
      n += k, i += k;
    } else {
      unsigned char b = (unsigned char)s.p[i++];
      o[n++] = (char)(0xc0 | (b >> 6));
      o[n++] = (char)(0x80 | (b & 0x3f));
    }
  }
  return (cad_str_t){o, n};
}

/* ---- json: the tree of `caduceus parse --json` --------------------------- */

typedef struct jt {
  cad_arena_t *a;
  bool ok;
} jt_t;

/* as_utf8 leaves valid UTF-8 only (cad_utf8_seq refuses what jansson's own
 * check refuses: overlongs, surrogates, past U+10FFFF), so jansson's check
 * is skipped */
static json_t *jstr(jt_t *t, cad_str_t s) {
  cad_str_t u = as_utf8(t->a, s, &t->ok);
  json_t *j = json_stringn_nocheck(u.p ? u.p : "", u.len);
  if (!j) t->ok = false;
  return j;
}

/* The keys are ASCII literals. */
static void put(jt_t *t, json_t *o, const char *k, json_t *v) {
  if (!o || !v || FHIR_SETN(o, k, v)) {
    if (o && v) t->ok = false; /* set_new released v */
    else json_decref(v), t->ok = false;
  }
}

/* base, then the decimal digits of k (k >= 0) after `sep` ("[" adds "]"). */
static size_t path_num(char *out, size_t cap, const char *base, size_t bl, char sep, int k) {
  char digits[12];
  size_t nd = 0;
  unsigned u = (unsigned)k;
  do digits[nd++] = (char)('0' + u % 10);
  while (u /= 10);
  if (bl + nd + 3 > cap) return 0; /* not reached: the paths are short */
  memcpy(out, base, bl);
  size_t n = bl;
  out[n++] = sep;
  while (nd) out[n++] = digits[--nd];
  if (sep == '[') out[n++] = ']';
  out[n] = 0;
  return n;
}

static bool has_structure(const cad_hl7_delims_t *d, cad_str_t raw, int level) {
  char seps[3] = {d->rep, d->comp, d->sub};
  for (int k = level; k < 3; k++)
    if (seps[k] && memchr(raw.p, seps[k], raw.len)) return true;
  return false;
}

static json_t *node(jt_t *t, const char *path, size_t plen, const cad_hl7_delims_t *d,
                    cad_str_t raw, int level, bool never_split) {
  json_t *o = json_object();
  put(t, o, "path", json_stringn(path, plen));
  if (never_split || level >= 3 || !has_structure(d, raw, level)) {
    cad_str_t v = raw;
    if (!never_split && !cad_hl7_decode(d, raw, t->a, &v)) t->ok = false;
    put(t, o, "value", jstr(t, v));
    if (raw.len == 2 && raw.p[0] == '"' && raw.p[1] == '"') put(t, o, "null", json_true());
    return o;
  }
  put(t, o, "raw", jstr(t, raw));
  json_t *kids = json_array();
  char sep = level == 0 ? d->rep : level == 1 ? d->comp : d->sub;
  /* each piece found once, after the one before (not counted, then each
   * looked for from the start: quadratic in the repetitions) */
  fcur_t it = fcur(raw, sep);
  cad_str_t v;
  for (int k = 1; fnext(&it, &v); k++) {
    if (v.len == 0) continue;
    char p[160];
    size_t pl = path_num(p, sizeof p, path, plen, level == 0 ? '[' : '.', k);
    if (!kids || json_array_append_new(kids, node(t, p, pl, d, v, level + 1, false))) t->ok = false;
  }
  put(t, o, "children", kids);
  return o;
}

/* Occurrences of each segment id so far: open addressing in the arena, one
 * slot per id (the count was a scan of every segment before: quadratic). */
typedef struct occ_slot {
  uint32_t id;
  int n; /* 0: free */
} occ_slot_t;

static int occ_next(occ_slot_t *tab, uint32_t mask, uint32_t id) {
  for (uint32_t i = (id * 2654435761u) & mask;; i = (i + 1) & mask) {
    if (!tab[i].n) {
      tab[i].id = id;
      return tab[i].n = 1;
    }
    if (tab[i].id == id) return ++tab[i].n;
  }
}

json_t *cad_render_json_tree(const cad_hl7_msg_t *m, cad_arena_t *a) {
  jt_t t = {a, true};
  uint32_t cap = 16;
  while (cap < 2 * m->nsegs) cap *= 2;
  occ_slot_t *occs = cad_arena_alloc(a, cap * sizeof *occs);
  if (!occs) return NULL;
  memset(occs, 0, cap * sizeof *occs);
  json_t *root = json_object(), *segs = json_array();
  for (uint32_t i = 0; i < m->nsegs; i++) {
    const cad_hl7_seg_t *s = &m->segs[i];
    int occ = occ_next(occs, cap - 1, s->id);
    size_t nl = strlen(s->name);
    char sp[16];
    size_t spl = nl;
    if (occ > 1) spl = path_num(sp, sizeof sp, s->name, nl, '[', occ);
    else memcpy(sp, s->name, nl + 1);
    json_t *so = json_object(), *fields = json_array();
    put(&t, so, "segment", json_stringn(s->name, nl));
    put(&t, so, "path", json_stringn(sp, spl));
    int nf = cad_hl7_nfields(s);
    for (int fno = 1; fno <= nf; fno++) {
      cad_str_t f;
      if (!cad_hl7_field(s, fno, &f) || f.len == 0) continue;
      char fp[64];
      size_t fpl = path_num(fp, sizeof fp, sp, spl, '-', fno);
      if (!fields ||
          json_array_append_new(fields, node(&t, fp, fpl, &s->d, f, 0, s->header && fno <= 2)))
        t.ok = false;
    }
    put(&t, so, "fields", fields);
    if (!segs || json_array_append_new(segs, so)) t.ok = false;
  }
  put(&t, root, "segments", segs);
  if (!t.ok) {
    json_decref(root);
    return NULL;
  }
  return root;
}

/* ---- xml: the HL7 v2 XML encoding ----------------------------------------- */

/* Text between tags: runs of plain bytes copied whole, the characters
 * XML gives a meaning escaped. */
static int xml_text(cad_buf_t *b, cad_arena_t *a, cad_str_t s) {
  bool ok = true;
  cad_str_t u = as_utf8(a, s, &ok);
  if (!ok) return CAD_E_NOMEM;
  int rc = 0;
  size_t run = 0;
  for (size_t i = 0; i < u.len && !rc; i++) {
    unsigned char c = (unsigned char)u.p[i];
    if (c >= 0x20 && c != '&' && c != '<' && c != '>') continue;
    if (i > run) rc = cad_buf_append(b, u.p + run, i - run);
    run = i + 1;
    if (rc) break;
    switch (c) {
      case '&': rc = cad_buf_append(b, "&amp;", 5); break;
      case '<': rc = cad_buf_append(b, "&lt;", 4); break;
      case '>': rc = cad_buf_append(b, "&gt;", 4); break;
      case '\r': rc = cad_buf_append(b, "&#13;", 5); break;
      case '\n': rc = cad_buf_append(b, "&#10;", 5); break;
      case '\t': rc = cad_buf_append(b, "&#9;", 4); break;
      default:
        /* XML 1.0 has no other control characters, not even escaped */
        rc = cad_buf_putc(b, '?');
    }
  }
  if (!rc && u.len > run) rc = cad_buf_append(b, u.p + run, u.len - run);
  return rc;
}

/* <name> (close: </name>), written by hand. */
static int xml_tag(cad_buf_t *b, const char *name, size_t n, bool close) {
  if (cad_buf_reserve(b, n + 3)) return CAD_E_NOMEM;
  char *o = b->data + b->len;
  *o++ = '<';
  if (close) *o++ = '/';
  memcpy(o, name, n);
  o += n;
  *o++ = '>';
  b->len = (size_t)(o - b->data);
  return 0;
}

/* A leaf's decoded value between <name> and </name>. */
static int xml_leaf(cad_buf_t *b, cad_arena_t *a, const char *name, size_t nl,
                    const cad_hl7_delims_t *d, cad_str_t raw, bool decode) {
  cad_str_t v = raw;
  if (decode && !cad_hl7_decode(d, raw, a, &v)) return CAD_E_NOMEM;
  int rc = xml_tag(b, name, nl, false);
  if (!rc) rc = xml_text(b, a, v);
  return rc ? rc : xml_tag(b, name, nl, true);
}

/* What a field's data type says of its elements, looked up once per field
 * (not per repetition and component). */
typedef struct xtype {
  const char *type; /* NULL: unknown */
  size_t tl;
  bool primitive;
  bool subs_read;
  const char *subs[16]; /* subs[k]: the type of component k when it has subcomponents */
} xtype_t;

static void xtype_init(xtype_t *t, const char *type) {
  t->type = type;
  t->tl = type ? strlen(type) : 0;
  t->primitive = !type || cad__xml_is_primitive(type);
  t->subs_read = false;
}

/* One repetition of a field of type t. */
static int xml_rep(cad_buf_t *b, cad_arena_t *a, const char *fname, size_t fl, xtype_t *t,
                   const cad_hl7_delims_t *d, cad_str_t rep) {
  /* a primitive (or unknown) type is text; a composite one has at least
   * its first component's element (<PID.7><TS.1>1990</TS.1></PID.7>) */
  if (t->primitive && !has_structure(d, rep, 1)) return xml_leaf(b, a, fname, fl, d, rep, true);
  if (t->type && !t->subs_read) {
    cad__xml_comp_types(t->type, t->subs, 16);
    t->subs_read = true;
  }
  int rc = xml_tag(b, fname, fl, false);
  fcur_t ci = fcur(rep, d->comp);
  cad_str_t cv;
  for (int k = 1; !rc && fnext(&ci, &cv); k++) {
    if (!cv.len) continue;
    char cname[64];
    size_t cl = t->type ? path_num(cname, sizeof cname, t->type, t->tl, '.', k)
                        : path_num(cname, sizeof cname, fname, fl, '.', k);
    /* a component of a composite type nests its subcomponents' elements
     * (<CX.4><HD.1>GH</HD.1></CX.4>) even when it has only the first */
    const char *st = t->type && k < 16 ? t->subs[k] : NULL;
    if (!st && (!d->sub || !memchr(cv.p, d->sub, cv.len))) {
      rc = xml_leaf(b, a, cname, cl, d, cv, true);
      continue;
    }
    rc = xml_tag(b, cname, cl, false);
    size_t stl = st ? strlen(st) : 0;
    fcur_t si = fcur(cv, d->sub);
    cad_str_t sv;
    for (int u = 1; !rc && fnext(&si, &sv); u++) {
      if (!sv.len) continue;
      char sname[80];
      size_t sl = st ? path_num(sname, sizeof sname, st, stl, '.', u)
                     : path_num(sname, sizeof sname, cname, cl, '.', u);
      rc = xml_leaf(b, a, sname, sl, d, sv, true);
    }
    if (!rc) rc = xml_tag(b, cname, cl, true);
  }
  if (!rc) rc = xml_tag(b, fname, fl, true);
  return rc;
}

/* The root element: MSH-9.3 (the message structure) or type_event. */
static void root_name(const cad_hl7_seg_t *msh, char *out, size_t cap) {
  cad_str_t m9, t, e, st;
  if (!cad_hl7_field(msh, 9, &m9) || !m9.p) m9 = (cad_str_t){"", 0};
  cad_hl7_piece(m9, msh->d.comp, 1, &t);
  cad_hl7_piece(m9, msh->d.comp, 2, &e);
  cad_hl7_piece(m9, msh->d.comp, 3, &st);
  if (st.len) snprintf(out, cap, "%.*s", (int)st.len, st.p);
  else if (t.len && e.len) snprintf(out, cap, "%.*s_%.*s", (int)t.len, t.p, (int)e.len, e.p);
  else snprintf(out, cap, "%.*s", (int)t.len, t.p);
  /* an XML name: letters, digits and '_' only */
  size_t n = 0;
  for (char *q = out; *q; q++)
    if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
        *q == '_')
      out[n++] = *q;
  out[n] = 0;
  if (n == 0 || (out[0] >= '0' && out[0] <= '9')) snprintf(out, cap, "HL7Message");
}

/* The next type of a comma-separated row (NULL past the last). */
static const char *next_type(const char *tp) {
  const char *q = tp ? strchr(tp, ',') : NULL;
  return q ? q + 1 : NULL;
}

static int render_xml(const cad_hl7_msg_t *m, cad_arena_t *a, cad_buf_t *b) {
  char root[40];
  root_name(&m->segs[0], root, sizeof root);
  int rc = cad_buf_printf(
               b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<%s xmlns=\"urn:hl7-org:v2xml\">",
               root) < 0
               ? CAD_E_NOMEM
               : 0;
  for (uint32_t i = 0; i < m->nsegs && !rc; i++) {
    const cad_hl7_seg_t *s = &m->segs[i];
    const cad_hl7_delims_t *d = &s->d;
    if (i > 0 && s->header) break; /* one message */
    size_t nl = strlen(s->name);
    rc = xml_tag(b, s->name, nl, false);
    int nf = cad_hl7_nfields(s);
    /* OBX-5's type is OBX-2 */
    char obx2[8] = "";
    if (strcmp(s->name, "OBX") == 0) {
      cad_str_t t;
      if (cad_hl7_field(s, 2, &t) && t.len && t.len < sizeof obx2 && !has_structure(d, t, 0)) {
        memcpy(obx2, t.p, t.len);
        obx2[t.len] = 0;
      }
    }
    /* the segment's row of field types, read along with the fields */
    const char *tp = cad__xml_seg_types(s->name);
    for (int fno = 1; fno <= nf && !rc; fno++, tp = next_type(tp)) {
      cad_str_t f;
      if (!cad_hl7_field(s, fno, &f) || f.len == 0) continue;
      char fname[24];
      size_t fl = path_num(fname, sizeof fname, s->name, nl, '.', fno);
      if (s->header && fno <= 2) {
        rc = xml_leaf(b, a, fname, fl, d, f, false);
        continue;
      }
      char tbuf[8];
      const char *type = NULL;
      size_t tl = tp ? strcspn(tp, ",") : 0;
      if (tl > 0 && tl < sizeof tbuf) {
        memcpy(tbuf, tp, tl);
        tbuf[tl] = 0;
        type = tbuf;
      }
      if (fno == 5 && obx2[0] && cad__xml_is_type(obx2)) type = cad__xml_canon_type(obx2);
      xtype_t xt;
      xtype_init(&xt, type);
      fcur_t ri = fcur(f, d->rep);
      cad_str_t rv;
      while (!rc && fnext(&ri, &rv))
        if (rv.len) rc = xml_rep(b, a, fname, fl, &xt, d, rv);
    }
    if (!rc) rc = xml_tag(b, s->name, nl, true);
  }
  if (!rc) rc = cad_buf_printf(b, "</%s>", root) < 0 ? CAD_E_NOMEM : 0;
  return rc;
}

/* ---- the entry point -------------------------------------------------------- */

int cad_render(cad_format_t f, const char *p, size_t len, const cad_fhir_opts_t *o, cad_buf_t *out,
               cad_fhir_diag_t *diag) {
  if (diag) memset(diag, 0, sizeof *diag);
  if (f == CAD_FORMAT_ER7) return cad_buf_append(out, p, len);
  if (f == CAD_FORMAT_FHIR) return cad_fhir_bundle(p, len, o, out, diag);
  cad_arena_t a;
  cad_arena_init(&a, 16384, 64u << 20);
  cad_hl7_msg_t m;
  cad_hl7_diag_t hd;
  int rc = cad_hl7_parse(&m, p, len, &a, NULL, &hd);
  if (rc) {
    if (diag) {
      diag->code = rc;
      snprintf(diag->reason, sizeof diag->reason, "%s",
               hd.reason[0] ? hd.reason : cad_strerror(rc));
    }
  } else if (f == CAD_FORMAT_JSON) {
    json_t *j = cad_render_json_tree(&m, &a);
    rc = j ? cad_json_dump_buf(j, o && o->pretty, out) : CAD_E_NOMEM;
    json_decref(j);
  } else {
    rc = render_xml(&m, &a, out);
  }
  cad_arena_free(&a);
  return rc;
}

int cad_fhir_bundle(const char *p, size_t len, const cad_fhir_opts_t *o, cad_buf_t *out,
                    cad_fhir_diag_t *diag) {
  cad_arena_t a;
  cad_arena_init(&a, 16384, 64u << 20);
  cad_hl7_msg_t m;
  cad_hl7_diag_t hd;
  int rc = cad_hl7_parse(&m, p, len, &a, NULL, &hd);
  if (rc) {
    if (diag) {
      diag->code = rc;
      snprintf(diag->reason, sizeof diag->reason, "%s",
               hd.reason[0] ? hd.reason : cad_strerror(rc));
    }
  } else {
    json_t *b = NULL;
    rc = cad_fhir_convert(&m, o, &b, diag);
    if (!rc) rc = cad_json_dump_buf(b, o && o->pretty, out);
    json_decref(b);
  }
  cad_arena_free(&a);
  return rc;
}
