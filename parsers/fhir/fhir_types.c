/* fhir_types.c - HL7 v2 data types to FHIR R4 data types, following the
 * v2-to-FHIR IG's data type maps: CX/EI -> Identifier, XPN -> HumanName,
 * XAD -> Address, XTN -> ContactPoint, CWE/CE/CNE -> CodeableConcept,
 * XCN/PL -> Reference, DTM/TS/DT -> dateTime/date/instant, NM -> decimal. */
#include "fhir_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_json.h"

#define COMP(r, n) fpiece((r), d->comp, (n))
#define SUB(x, n) fpiece((x), d->sub, (n))

/* ---- small writers (what snprintf did, without its cost) ------------------ */

/* Text into a fixed buffer: bytes past cap - 1 are dropped, n counts every
 * byte asked for (so n >= cap says it was cut), as chained snprintf calls. */
typedef struct capw {
  char *b;
  size_t cap, n;
} capw_t;

static void capw_put(capw_t *w, const char *p, size_t len) {
  if (w->n < w->cap - 1) {
    size_t room = w->cap - 1 - w->n, k = len < room ? len : room;
    if (k) memcpy(w->b + w->n, p, k);
  }
  w->n += len;
}

/* v in decimal, at least `width` digits (zeros in front), as "%0*d"; v >= 0. */
static size_t put_int(char *out, int v, int width) {
  char t[12];
  size_t n = 0;
  unsigned u = (unsigned)v;
  do t[n++] = (char)('0' + u % 10);
  while (u /= 10);
  while (n < (size_t)width) t[n++] = '0';
  for (size_t i = 0; i < n; i++) out[i] = t[n - 1 - i];
  return n;
}

/* ---- code systems -------------------------------------------------------- */

static const struct {
  const char *name, *uri;
} code_systems[] = {
    {"LN", "http://loinc.org"},
    {"LOINC", "http://loinc.org"},
    {"SCT", "http://snomed.info/sct"},
    {"SNM", "http://snomed.info/sct"},
    {"SNOMED", "http://snomed.info/sct"},
    {"SNOMEDCT", "http://snomed.info/sct"},
    {"UCUM", "http://unitsofmeasure.org"},
    {"I10", "http://hl7.org/fhir/sid/icd-10"},
    {"I10C", "http://hl7.org/fhir/sid/icd-10-cm"},
    {"ICD10CM", "http://hl7.org/fhir/sid/icd-10-cm"},
    {"I9", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"I9C", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"I9CDX", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"CVX", "http://hl7.org/fhir/sid/cvx"},
    {"MVX", "http://terminology.hl7.org/CodeSystem/MVX"},
    {"NDC", "http://hl7.org/fhir/sid/ndc"},
    {"RXN", "http://www.nlm.nih.gov/research/umls/rxnorm"},
    {"RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"},
    {"C4", "http://www.ama-assn.org/go/cpt"},
    {"CPT", "http://www.ama-assn.org/go/cpt"},
    {"NUCC", "http://nucc.org/provider-taxonomy"},
};

/* The systems table, by exact name. */
static const char *table_uri(fctx_t *c, cad_str_t name) {
  if (!c->o || name.len == 0) return NULL;
  for (size_t i = 0; i < c->o->nsystems; i++) {
    const char *a = c->o->systems[i].authority;
    if (a && strlen(a) == name.len && memcmp(a, name.p, name.len) == 0) return c->o->systems[i].uri;
  }
  return NULL;
}

const char *cad__fhir_code_system(fctx_t *c, cad_str_t name, char *buf, size_t cap) {
  const char *t = table_uri(c, name);
  if (t) return t;
  for (size_t i = 0; i < sizeof code_systems / sizeof code_systems[0]; i++)
    if (cad__fhir_is(name, code_systems[i].name, true)) return code_systems[i].uri;
  /* HL7nnnn: an HL7 v2 table */
  if (name.len >= 7 && name.len <= 8 && strncmp(name.p, "HL7", 3) == 0) {
    for (size_t i = 3; i < name.len; i++)
      if (name.p[i] < '0' || name.p[i] > '9') return NULL;
    static const char pre[] = "http://terminology.hl7.org/CodeSystem/v2-";
    capw_t w = {buf, cap, 0};
    capw_put(&w, pre, sizeof pre - 1);
    capw_put(&w, name.p + 3, name.len - 3);
    buf[w.n < cap ? w.n : cap - 1] = 0;
    return buf;
  }
  return NULL;
}

/* An OID: digits and dots, starting with 0, 1 or 2. */
static bool is_oid(cad_str_t s) {
  if (s.len < 3 || s.p[0] < '0' || s.p[0] > '2' || s.p[1] != '.') return false;
  for (size_t i = 0; i < s.len; i++)
    if (!(s.p[i] == '.' || (s.p[i] >= '0' && s.p[i] <= '9'))) return false;
  return s.p[s.len - 1] != '.';
}

const char *cad__fhir_id_system(fctx_t *c, cad_str_t ns, cad_str_t uid, cad_str_t uid_type,
                                char *buf, size_t cap) {
  const char *t = table_uri(c, ns);
  if (!t) t = table_uri(c, uid);
  if (t) return t;
  /* (the lengths checked leave room: nothing is cut) */
  const char *pre = NULL;
  cad_str_t v = uid;
  if (!uid.len && is_oid(ns) && ns.len < cap - 16) { /* an OID written as the namespace */
    pre = "urn:oid:";
    v = ns;
  } else if (uid.len && uid.len < cap - 16) {
    if ((uid_type.len == 0 || cad__fhir_is(uid_type, "ISO", true)) && is_oid(uid)) pre = "urn:oid:";
    else if (cad__fhir_is(uid_type, "UUID", true)) pre = "urn:uuid:";
    else if (cad__fhir_is(uid_type, "URI", true)) pre = "";
  }
  if (!pre) return NULL;
  size_t pl = strlen(pre);
  memcpy(buf, pre, pl);
  memcpy(buf + pl, v.p, v.len);
  buf[pl + v.len] = 0;
  return buf;
}

/* ---- identifiers --------------------------------------------------------- */

/* Identifier from value, an HD authority (namespace^uid^type, as
 * subcomponents or components) and its type code. */
static json_t *identifier(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t value, cad_str_t ns,
                          cad_str_t uid, cad_str_t uidt, cad_str_t type) {
  json_t *v = cad__fhir_str(c, d, value);
  if (!v) return NULL;
  json_t *id = json_object();
  if (!id) {
    json_decref(v);
    c->err = CAD_E_NOMEM;
    return NULL;
  }
  cad_str_t tcode = cad__fhir_text(c, d, type);
  if (tcode.len) {
    json_t *cc = json_object(), *coding = json_object();
    cad__fhir_set(c, coding, "system",
                  cad__fhir_cstr(c, "http://terminology.hl7.org/CodeSystem/v2-0203"));
    cad__fhir_set(c, coding, "code", json_stringn_nocheck(tcode.p, tcode.len));
    cad__fhir_push(c, cc, "coding", coding);
    cad__fhir_set(c, id, "type", cc);
  }
  char buf[300];
  cad_str_t nst = cad__fhir_text(c, d, ns), uidv = cad__fhir_text(c, d, uid);
  cad_str_t uidtv = cad__fhir_text(c, d, uidt);
  const char *sys = cad__fhir_id_system(c, nst, uidv, uidtv, buf, sizeof buf);
  if (sys) cad__fhir_set(c, id, "system", cad__fhir_cstr(c, sys));
  cad__fhir_set(c, id, "value", v);
  if (!sys && nst.len) {
    json_t *as = json_object();
    cad__fhir_set(c, as, "display", json_stringn_nocheck(nst.p, nst.len));
    cad__fhir_set(c, id, "assigner", as);
  }
  return id;
}

json_t *cad__fhir_cx(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep) {
  cad_str_t k[8], h[3];
  fsplit(rep, d->comp, k, 8);
  fsplit(k[3], d->sub, h, 3);
  json_t *id = identifier(c, d, k[0], h[0], h[1], h[2], k[4]);
  if (!id) return NULL;
  json_t *start = cad__fhir_date(c, d, k[6]), *end = cad__fhir_date(c, d, k[7]);
  if (start || end) {
    json_t *p = json_object();
    cad__fhir_set(c, p, "start", start);
    cad__fhir_set(c, p, "end", end);
    cad__fhir_set(c, id, "period", p);
  }
  return id;
}

json_t *cad__fhir_ei(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep) {
  cad_str_t none = {NULL, 0}, k[4];
  fsplit(rep, d->comp, k, 4);
  return identifier(c, d, k[0], k[1], k[2], k[3], none);
}

/* ---- names, addresses, telecoms ------------------------------------------ */

json_t *cad__fhir_xpn(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep) {
  json_t *n = json_object();
  if (!n) {
    c->err = CAD_E_NOMEM;
    return NULL;
  }
  static const struct {
    const char *v2, *use;
  } uses[] = {{"L", "official"}, {"D", "usual"},     {"M", "maiden"}, {"N", "nickname"},
              {"A", "usual"},    {"S", "anonymous"}, {"T", "temp"},   {"BAD", "old"}};
  cad_str_t k[7];
  fsplit(rep, d->comp, k, 7);
  cad_str_t u = cad__fhir_text(c, d, k[6]);
  for (size_t i = 0; u.len && i < sizeof uses / sizeof uses[0]; i++)
    if (cad__fhir_is(u, uses[i].v2, false))
      cad__fhir_set(c, n, "use", cad__fhir_cstr(c, uses[i].use));
  cad__fhir_set(c, n, "family", cad__fhir_str(c, d, SUB(k[0], 1)));
  cad__fhir_push(c, n, "given", cad__fhir_str(c, d, k[1]));
  cad__fhir_push(c, n, "given", cad__fhir_str(c, d, k[2]));
  cad__fhir_push(c, n, "prefix", cad__fhir_str(c, d, k[4]));
  cad__fhir_push(c, n, "suffix", cad__fhir_str(c, d, k[3]));
  cad__fhir_push(c, n, "suffix", cad__fhir_str(c, d, k[5]));
  if (!json_object_get(n, "family") && !json_object_get(n, "given")) {
    json_decref(n);
    return NULL;
  }
  return n;
}

json_t *cad__fhir_xad(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep) {
  json_t *a = json_object();
  if (!a) {
    c->err = CAD_E_NOMEM;
    return NULL;
  }
  cad_str_t k[9];
  fsplit(rep, d->comp, k, 9);
  cad_str_t t = cad__fhir_text(c, d, k[6]);
  if (cad__fhir_is(t, "H", false) || cad__fhir_is(t, "P", false))
    cad__fhir_set(c, a, "use", cad__fhir_cstr(c, "home"));
  else if (cad__fhir_is(t, "B", false) || cad__fhir_is(t, "O", false))
    cad__fhir_set(c, a, "use", cad__fhir_cstr(c, "work"));
  else if (cad__fhir_is(t, "C", false)) cad__fhir_set(c, a, "use", cad__fhir_cstr(c, "temp"));
  else if (cad__fhir_is(t, "BA", false)) cad__fhir_set(c, a, "use", cad__fhir_cstr(c, "old"));
  else if (cad__fhir_is(t, "M", false)) cad__fhir_set(c, a, "type", cad__fhir_cstr(c, "postal"));
  cad__fhir_push(c, a, "line", cad__fhir_str(c, d, SUB(k[0], 1)));
  cad__fhir_push(c, a, "line", cad__fhir_str(c, d, k[1]));
  cad__fhir_set(c, a, "city", cad__fhir_str(c, d, k[2]));
  cad__fhir_set(c, a, "district", cad__fhir_str(c, d, k[8]));
  cad__fhir_set(c, a, "state", cad__fhir_str(c, d, k[3]));
  cad__fhir_set(c, a, "postalCode", cad__fhir_str(c, d, k[4]));
  cad__fhir_set(c, a, "country", cad__fhir_str(c, d, k[5]));
  if (json_object_size(a) == 0 ||
      (json_object_size(a) <= 2 && !json_object_get(a, "line") && !json_object_get(a, "city") &&
       !json_object_get(a, "state") && !json_object_get(a, "postalCode") &&
       !json_object_get(a, "country") && !json_object_get(a, "district"))) {
    json_decref(a);
    return NULL;
  }
  return a;
}

json_t *cad__fhir_xtn(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep,
                      const char *use_default) {
  cad_str_t k[8];
  fsplit(rep, d->comp, k, 8);
  cad_str_t use = cad__fhir_text(c, d, k[1]), eq = cad__fhir_text(c, d, k[2]);
  const char *system = "phone", *u = use_default;
  if (cad__fhir_is(eq, "FX", false)) system = "fax";
  else if (cad__fhir_is(eq, "BP", false)) system = "pager";
  else if (cad__fhir_is(eq, "Internet", true) || cad__fhir_is(eq, "X.400", true) ||
           cad__fhir_is(use, "NET", false))
    system = "email";
  if (cad__fhir_is(eq, "CP", false)) u = "mobile";
  else if (cad__fhir_is(use, "WPN", false)) u = "work";
  else if (cad__fhir_is(use, "PRN", false) || cad__fhir_is(use, "ORN", false)) u = "home";
  else if (cad__fhir_is(use, "VHN", false)) u = "temp";
  /* The value: the email (XTN-4), the number from its parts (XTN-5..8),
   * or the unformatted XTN-1. */
  char buf[256];
  cad_str_t value = {NULL, 0};
  if (strcmp(system, "email") == 0) {
    value = cad__fhir_text(c, d, k[3]);
  } else {
    cad_str_t cc = cad__fhir_text(c, d, k[4]), area = cad__fhir_text(c, d, k[5]);
    cad_str_t local = cad__fhir_text(c, d, k[6]), ext = cad__fhir_text(c, d, k[7]);
    if (local.len && cc.len + area.len + local.len + ext.len + 16 < sizeof buf) {
      /* "+cc (area) local xext": the room was checked */
      capw_t w = {buf, sizeof buf, 0};
      if (cc.len) capw_put(&w, "+", 1), capw_put(&w, cc.p, cc.len), capw_put(&w, " ", 1);
      if (area.len) capw_put(&w, "(", 1), capw_put(&w, area.p, area.len), capw_put(&w, ") ", 2);
      capw_put(&w, local.p, local.len);
      if (ext.len) capw_put(&w, " x", 2), capw_put(&w, ext.p, ext.len);
      value.p = buf;
      value.len = w.n;
    }
  }
  if (!value.len) value = cad__fhir_text(c, d, k[0]);
  if (!value.len) return NULL;
  json_t *t = json_object();
  cad__fhir_set(c, t, "system", cad__fhir_cstr(c, system));
  cad__fhir_set(c, t, "value", json_stringn_nocheck(value.p, value.len));
  if (u) cad__fhir_set(c, t, "use", cad__fhir_cstr(c, u));
  return t;
}

/* ---- codes --------------------------------------------------------------- */

/* One coding from code, display, system name, version. */
static json_t *coding(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t code, cad_str_t display,
                      cad_str_t sysname, cad_str_t version) {
  cad_str_t cv = cad__fhir_text(c, d, code);
  if (!cv.len) return NULL;
  json_t *k = json_object();
  char buf[128];
  const char *sys = cad__fhir_code_system(c, cad__fhir_text(c, d, sysname), buf, sizeof buf);
  if (sys) cad__fhir_set(c, k, "system", cad__fhir_cstr(c, sys));
  cad__fhir_set(c, k, "version", cad__fhir_str(c, d, version));
  cad__fhir_set(c, k, "code", json_stringn_nocheck(cv.p, cv.len));
  cad__fhir_set(c, k, "display", cad__fhir_str(c, d, display));
  return k;
}

json_t *cad__fhir_cwe(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep) {
  json_t *cc = json_object();
  if (!cc) {
    c->err = CAD_E_NOMEM;
    return NULL;
  }
  cad_str_t k[9]; /* each component found once */
  fsplit(rep, d->comp, k, 9);
  cad__fhir_push(c, cc, "coding", coding(c, d, k[0], k[1], k[2], k[6]));
  cad__fhir_push(c, cc, "coding", coding(c, d, k[3], k[4], k[5], k[7]));
  json_t *text = cad__fhir_str(c, d, k[8]);
  if (!text && !FHIR_GETN(cc, "coding")) text = cad__fhir_str(c, d, k[1]);
  cad__fhir_set(c, cc, "text", text);
  if (json_object_size(cc) == 0) {
    json_decref(cc);
    return NULL;
  }
  return cc;
}

json_t *cad__fhir_table(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep, int table) {
  cad_str_t code = cad__fhir_text(c, d, COMP(rep, 1));
  if (!code.len) return NULL;
  char sys[80];
  snprintf(sys, sizeof sys, "http://terminology.hl7.org/CodeSystem/v2-%04d", table);
  json_t *cc = json_object(), *k = json_object();
  cad__fhir_set(c, k, "system", cad__fhir_cstr(c, sys));
  cad__fhir_set(c, k, "code", json_stringn_nocheck(code.p, code.len));
  cad__fhir_set(c, k, "display", cad__fhir_str(c, d, COMP(rep, 2)));
  cad__fhir_push(c, cc, "coding", k);
  return cc;
}

/* ---- references ---------------------------------------------------------- */

/* The longest prefix of buf[0..n) that ends on a whole UTF-8 character (a
 * fixed buffer may have cut the last one). */
static size_t utf8_cut(const char *buf, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t k = cad_utf8_seq(buf + i, n - i);
    if (!k) break;
    i += k;
  }
  return i;
}

json_t *cad__fhir_xcn(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep) {
  cad_str_t k[9], h[3];
  fsplit(rep, d->comp, k, 9);
  fsplit(k[8], d->sub, h, 3);
  cad_str_t family = cad__fhir_text(c, d, SUB(k[1], 1));
  cad_str_t given = cad__fhir_text(c, d, k[2]), pre = cad__fhir_text(c, d, k[5]);
  cad_str_t none = {NULL, 0};
  json_t *ident = identifier(c, d, k[0], h[0], h[1], h[2], none);
  char buf[512];
  /* "prefix given family", cut to the buffer on a whole character */
  capw_t w = {buf, sizeof buf, 0};
  if (pre.len) capw_put(&w, pre.p, pre.len), capw_put(&w, " ", 1);
  if (given.len) capw_put(&w, given.p, given.len), capw_put(&w, " ", 1);
  if (family.len) capw_put(&w, family.p, family.len);
  int n = (int)(w.n >= sizeof buf ? utf8_cut(buf, sizeof buf - 1) : w.n);
  while (n > 0 && buf[n - 1] == ' ') n--;
  if (!ident && n == 0) return NULL;
  json_t *r = json_object();
  cad__fhir_set(c, r, "identifier", ident);
  if (n) cad__fhir_set(c, r, "display", json_stringn(buf, (size_t)n));
  return r;
}

json_t *cad__fhir_pl(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep) {
  char buf[512];
  capw_t w = {buf, sizeof buf, 0};
  static const int parts[] = {1, 2, 3, 4, 7, 8};
  cad_str_t k[8];
  fsplit(rep, d->comp, k, 8);
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    cad_str_t v = cad__fhir_text(c, d, SUB(k[parts[i] - 1], 1));
    if (v.len && w.n < sizeof buf) {
      if (w.n) capw_put(&w, " ", 1);
      capw_put(&w, v.p, v.len);
    }
  }
  int n = (int)(w.n >= sizeof buf ? utf8_cut(buf, sizeof buf - 1) : w.n);
  if (n == 0) return NULL;
  json_t *r = json_object();
  cad__fhir_set(c, r, "display", json_stringn(buf, (size_t)n));
  return r;
}

/* ---- dates --------------------------------------------------------------- */

/* FHIR allows zones from -14:00 to +14:00 (hours 00..13, or 14:00). */
static bool fhir_zone(int tz_min, char out[8]) {
  int a = tz_min < 0 ? -tz_min : tz_min;
  if (a > 14 * 60) return false;
  if (tz_min == 0) {
    out[0] = 'Z', out[1] = 0;
  } else {
    out[0] = tz_min < 0 ? '-' : '+';
    put_int(out + 1, a / 60, 2); /* a <= 14 * 60: two digits each */
    out[3] = ':';
    put_int(out + 4, a % 60, 2);
    out[6] = 0;
  }
  return true;
}

/* kind 0: dateTime, 1: date, 2: instant. */
static json_t *dtm(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw, int kind) {
  cad_str_t s = cad__fhir_text(c, d, COMP(raw, 1)); /* TS: DTM^precision */
  cad_hl7_dtm_t t;
  if (!s.len || !cad_hl7_dtm_parse(s.p, s.len, &t) || t.v[0] < 1) return NULL;
  char zone[8] = "";
  if (t.has_tz && !fhir_zone(t.tz_min, zone)) return NULL;
  if (!t.has_tz) memcpy(zone, c->tz, sizeof zone); /* c->tz is NUL-terminated, 8 bytes */
  int prec = t.prec;
  if (kind == 1 && prec > 3) prec = 3;
  if (prec >= 4 && !zone[0]) prec = 3; /* a time needs a zone in FHIR */
  if (kind == 2 && prec < 6) return NULL;
  /* written by hand: YYYY-MM-DDThh:mm:ss.ffff+zz:zz at most (the parts are
   * in range: cad_hl7_dtm_parse read them from at most 4 and 2 digits) */
  char buf[48];
  size_t n = put_int(buf, t.v[0], 4);
  if (prec >= 2) buf[n++] = '-', n += put_int(buf + n, t.v[1], 2);
  if (prec >= 3) buf[n++] = '-', n += put_int(buf + n, t.v[2], 2);
  if (prec >= 4) {
    /* FHIR needs seconds once there is a time: a minute precision gets :00 */
    buf[n++] = 'T', n += put_int(buf + n, t.v[3], 2);
    buf[n++] = ':', n += put_int(buf + n, t.v[4], 2);
    buf[n++] = ':', n += put_int(buf + n, t.v[5], 2);
    if (prec == 7) {
      /* keep the digits given (1..4) */
      const char *dot = memchr(s.p, '.', s.len);
      size_t nd = 0;
      while (dot && dot + 1 + nd < s.p + s.len && dot[1 + nd] >= '0' && dot[1 + nd] <= '9' &&
             nd < 8)
        nd++;
      buf[n++] = '.';
      if (nd) memcpy(buf + n, dot + 1, nd);
      n += nd;
    }
    size_t zl = strlen(zone);
    memcpy(buf + n, zone, zl);
    n += zl;
  }
  json_t *j = json_stringn_nocheck(buf, n);
  if (!j) c->err = CAD_E_NOMEM;
  return j;
}

json_t *cad__fhir_datetime(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw) {
  return dtm(c, d, raw, 0);
}
json_t *cad__fhir_date(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw) {
  return dtm(c, d, raw, 1);
}
json_t *cad__fhir_instant(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw) {
  return dtm(c, d, raw, 2);
}

json_t *cad__fhir_number(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw) {
  cad_str_t s = cad__fhir_text(c, d, raw);
  if (!s.len || s.len > 40) return NULL;
  char buf[48];
  size_t i = 0, n = 0, sig = 0; /* significant digits: from the first non-zero */
  bool neg = false, dot = false, digit = false;
  if (s.p[0] == '+' || s.p[0] == '-') neg = s.p[i++] == '-';
  for (; i < s.len; i++) {
    if (s.p[i] >= '0' && s.p[i] <= '9') {
      digit = true, buf[n++] = s.p[i];
      sig += sig || s.p[i] != '0';
    } else if (s.p[i] == '.' && !dot) {
      dot = true, buf[n++] = '.';
    } else {
      return NULL;
    }
  }
  if (!digit) return NULL;
  buf[n] = 0;
  if (!dot && n <= 18) {
    long long v = strtoll(buf, NULL, 10);
    return json_integer(neg ? -v : v);
  }
  /* The value the Bundle carries is the one it prints: JSON is written with
   * 15 significant digits (render.c), so a longer decimal is rounded here,
   * not only in the output (the tree and its text then agree). */
  double v = strtod(buf, NULL);
  if (sig > 15) { /* 15 or fewer come back from "%.15g" as they are (DBL_DIG) */
    char t[32];
    snprintf(t, sizeof t, "%.15g", v);
    v = strtod(t, NULL);
  }
  return json_real(neg ? -v : v);
}
