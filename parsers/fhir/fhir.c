/* fhir.c - HL7 v2 messages to FHIR R4 transaction Bundles (fhir.h).
 *
 * The message is read once, segment by segment, keeping what the segment
 * maps of the v2-to-FHIR IG need as context: the current patient (PID), visit
 * (PV1), report (OBR), order (ORC), observation (OBX), immunization (RXA)
 * and document (TXA).  So groups that repeat (several OBR with their OBX,
 * several patients in one ORU) come out as they are nested. */
#include "fhir.h"

#include <stdio.h>
#include <string.h>

#include "cad_error.h"
#include "fhir_int.h"

#define F(s, n) cad__fhir_field((s), (n))
#define REP(f, n) fpiece((f), d->rep, (n))
#define COMP(r, n) fpiece((r), d->comp, (n))

typedef enum { K_ADT = 1, K_ORU, K_VXU, K_ORDER, K_MDM } kind_t;

typedef struct conv {
  fctx_t c;
  kind_t kind;
  fres_t report;  /* DiagnosticReport (ORU) */
  fres_t order;   /* ServiceRequest (ORM, OML) */
  fres_t obs;     /* the last Observation */
  fres_t imm;     /* Immunization (VXU) */
  fres_t doc;     /* DocumentReference (MDM) */
  json_t *note;   /* where NTE goes: a resource with `note`, or NULL */
  int orc;        /* index of the ORC in force, -1 */
  bool orc_used;  /* it gave a ServiceRequest already */
  cad_str_t obr7; /* OBR-7 of the current report (OBX-14's default) */
} conv_t;

/* ---- small helpers ------------------------------------------------------- */

static void each_rep(conv_t *v, json_t *res, const char *key, const cad_hl7_seg_t *s, int field,
                     json_t *(*fn)(fctx_t *, const cad_hl7_delims_t *, cad_str_t)) {
  const cad_hl7_delims_t *d = &s->d;
  fcur_t it = fcur(F(s, field), d->rep);
  cad_str_t r;
  while (fnext(&it, &r)) cad__fhir_push(&v->c, res, key, fn(&v->c, d, r));
}

static json_t *first_rep(conv_t *v, const cad_hl7_seg_t *s, int field,
                         json_t *(*fn)(fctx_t *, const cad_hl7_delims_t *, cad_str_t)) {
  const cad_hl7_delims_t *d = &s->d;
  return fn(&v->c, d, REP(F(s, field), 1));
}

static cad_str_t text1(conv_t *v, const cad_hl7_seg_t *s, int field, int comp) {
  const cad_hl7_delims_t *d = &s->d;
  return cad__fhir_text(&v->c, d, COMP(REP(F(s, field), 1), comp));
}

/* v2 code -> FHIR code through a small table {v2, fhir, v2, fhir, ..., NULL}. */
static const char *map_code(cad_str_t code, const char *const *tab) {
  for (size_t i = 0; tab[i]; i += 2)
    if (cad__fhir_is(code, tab[i], true)) return tab[i + 1];
  return NULL;
}

static json_t *cc_text(conv_t *v, const char *text) {
  json_t *cc = json_object();
  cad__fhir_set(&v->c, cc, "text", cad__fhir_cstr(&v->c, text));
  return cc;
}

static json_t *coding1(conv_t *v, const char *system, const char *code) {
  json_t *cc = json_object(), *k = json_object();
  cad__fhir_set(&v->c, k, "system", cad__fhir_cstr(&v->c, system));
  cad__fhir_set(&v->c, k, "code", cad__fhir_cstr(&v->c, code));
  cad__fhir_push(&v->c, cc, "coding", k);
  return cc;
}

static void subject(conv_t *v, json_t *res, const char *key) {
  cad__fhir_set(&v->c, res, key, cad__fhir_ref(&v->c, &v->c.patient));
}

/* ContactPoints of a home and a work XTN field, every repetition. */
static void telecoms(conv_t *v, json_t *res, const cad_hl7_seg_t *s, int home, int work) {
  const cad_hl7_delims_t *d = &s->d;
  cad_str_t r;
  fcur_t it = fcur(F(s, home), d->rep);
  while (fnext(&it, &r)) cad__fhir_push(&v->c, res, "telecom", cad__fhir_xtn(&v->c, d, r, "home"));
  it = fcur(F(s, work), d->rep);
  while (fnext(&it, &r)) cad__fhir_push(&v->c, res, "telecom", cad__fhir_xtn(&v->c, d, r, "work"));
}

static void encounter(conv_t *v, json_t *res) {
  cad__fhir_set(&v->c, res, "encounter", cad__fhir_ref(&v->c, &v->c.encounter));
}

/* ---- Patient (PID, PD1) -------------------------------------------------- */

static const char *const genders[] = {"M",     "male", "F",       "female", "O",       "other", "A",
                                      "other", "U",    "unknown", "N",      "unknown", NULL};

static int patient(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  /* The id follows the patient's first identifier with a value, so that
   * every message about the patient updates one Patient. */
  cad_str_t pid3 = F(s, 3), key = {NULL, 0};
  char keybuf[512];
  fcur_t it = fcur(pid3, d->rep);
  cad_str_t rep;
  while (!key.len && fnext(&it, &rep)) {
    cad_str_t k[4];
    fsplit(rep, d->comp, k, 4);
    cad_str_t val = cad__fhir_text(c, d, k[0]), hd = k[3];
    cad_str_t ns = cad__fhir_text(c, d, fpiece(hd, d->sub, 1));
    cad_str_t uid = cad__fhir_text(c, d, fpiece(hd, d->sub, 2));
    if (!val.len) continue;
    /* ns|uid|value, cut to the buffer (as snprintf would) */
    const cad_str_t kp[5] = {ns, {"|", 1}, uid, {"|", 1}, val};
    size_t n = 0;
    for (int i = 0; i < 5 && n < sizeof keybuf - 1; i++) {
      size_t take = kp[i].len < sizeof keybuf - 1 - n ? kp[i].len : sizeof keybuf - 1 - n;
      if (take) memcpy(keybuf + n, kp[i].p, take);
      n += take;
    }
    key.p = keybuf;
    key.len = n;
  }
  int rc = cad__fhir_new(c, "Patient", key.len ? "id" : NULL, key, &c->patient);
  if (rc) return rc;
  c->encounter.res = NULL;
  json_t *p = c->patient.res;
  each_rep(v, p, "identifier", s, 3, cad__fhir_cx);
  cad_str_t ssn = text1(v, s, 19, 1);
  if (ssn.len) {
    json_t *id = json_object();
    cad__fhir_set(c, id, "type", coding1(v, "http://terminology.hl7.org/CodeSystem/v2-0203", "SS"));
    cad__fhir_set(c, id, "system", cad__fhir_cstr(c, "http://hl7.org/fhir/sid/us-ssn"));
    cad__fhir_set(c, id, "value", json_stringn_nocheck(ssn.p, ssn.len));
    cad__fhir_push(c, p, "identifier", id);
  }
  each_rep(v, p, "name", s, 5, cad__fhir_xpn);
  telecoms(v, p, s, 13, 14);
  const char *g = map_code(text1(v, s, 8, 1), genders);
  if (g) cad__fhir_set(c, p, "gender", cad__fhir_cstr(c, g));
  cad__fhir_set(c, p, "birthDate", first_rep(v, s, 7, cad__fhir_date));
  cad_str_t dead = text1(v, s, 30, 1);
  json_t *dod = first_rep(v, s, 29, cad__fhir_datetime);
  if (dod) cad__fhir_set(c, p, "deceasedDateTime", dod);
  else if (cad__fhir_is(dead, "Y", true)) cad__fhir_set(c, p, "deceasedBoolean", json_true());
  else if (cad__fhir_is(dead, "N", true)) cad__fhir_set(c, p, "deceasedBoolean", json_false());
  each_rep(v, p, "address", s, 11, cad__fhir_xad);
  cad__fhir_set(c, p, "maritalStatus", first_rep(v, s, 16, cad__fhir_cwe));
  cad_str_t mb = text1(v, s, 24, 1), order = text1(v, s, 25, 1);
  json_t *bo = order.len ? cad__fhir_number(c, d, REP(F(s, 25), 1)) : NULL;
  if (bo && json_is_integer(bo) && cad__fhir_is(mb, "Y", true))
    cad__fhir_set(c, p, "multipleBirthInteger", bo);
  else {
    json_decref(bo);
    if (cad__fhir_is(mb, "Y", true)) cad__fhir_set(c, p, "multipleBirthBoolean", json_true());
    else if (cad__fhir_is(mb, "N", true)) cad__fhir_set(c, p, "multipleBirthBoolean", json_false());
  }
  json_t *lang = first_rep(v, s, 15, cad__fhir_cwe);
  if (lang) {
    json_t *comm = json_object();
    cad__fhir_set(c, comm, "language", lang);
    cad__fhir_push(c, p, "communication", comm);
  }
  v->note = NULL;
  return c->err;
}

static void pd1(conv_t *v, const cad_hl7_seg_t *s) {
  if (!v->c.patient.res) return;
  each_rep(v, v->c.patient.res, "generalPractitioner", s, 4, cad__fhir_xcn);
}

/* ---- Encounter (PV1, PV2) ------------------------------------------------ */

static const char *const classes[] = {"E",     "EMER", "I",   "IMP", "O",   "AMB", "P",
                                      "PRENC", "R",    "AMB", "B",   "IMP", NULL};

static const char *enc_status(conv_t *v, const cad_hl7_seg_t *s) {
  const char *e = v->c.event;
  if (v->kind != K_ADT) return text1(v, s, 45, 1).len ? "finished" : "unknown";
  if (!strcmp(e, "A03")) return "finished";
  if (!strcmp(e, "A11")) return "cancelled";
  if (!strcmp(e, "A05") || !strcmp(e, "A14")) return "planned";
  if (!strcmp(e, "A01") || !strcmp(e, "A02") || !strcmp(e, "A04") || !strcmp(e, "A13"))
    return "in-progress";
  if (text1(v, s, 45, 1).len) return "finished";
  if (text1(v, s, 44, 1).len) return "in-progress";
  return "unknown";
}

static void participant(conv_t *v, json_t *enc, const cad_hl7_seg_t *s, int field,
                        const char *type) {
  const cad_hl7_delims_t *d = &s->d;
  fcur_t it = fcur(F(s, field), d->rep);
  cad_str_t r;
  while (fnext(&it, &r)) {
    json_t *who = cad__fhir_xcn(&v->c, d, r);
    if (!who) continue;
    json_t *p = json_object();
    cad__fhir_push(&v->c, p, "type",
                   coding1(v, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", type));
    cad__fhir_set(&v->c, p, "individual", who);
    cad__fhir_push(&v->c, enc, "participant", p);
  }
}

static int pv1(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  cad_str_t cls = text1(v, s, 2, 1);
  /* A28/A31 carry "PV1|1|N": no visit */
  if (cad__fhir_is(cls, "N", true) || (s->nfields <= 3 && !cls.len)) return 0;
  cad_str_t visit = REP(F(s, 19), 1), vkey = cad__fhir_text(c, d, COMP(visit, 1));
  int rc = cad__fhir_new(c, "Encounter", vkey.len ? "visit" : NULL, vkey, &c->encounter);
  if (rc) return rc;
  json_t *e = c->encounter.res;
  cad__fhir_push(c, e, "identifier", cad__fhir_cx(c, d, visit));
  cad__fhir_set(c, e, "status", cad__fhir_cstr(c, enc_status(v, s)));
  const char *k = map_code(cls, classes);
  json_t *coding = json_object();
  if (k) {
    cad__fhir_set(c, coding, "system",
                  cad__fhir_cstr(c, "http://terminology.hl7.org/CodeSystem/v3-ActCode"));
    cad__fhir_set(c, coding, "code", cad__fhir_cstr(c, k));
  } else if (cls.len) {
    cad__fhir_set(c, coding, "system",
                  cad__fhir_cstr(c, "http://terminology.hl7.org/CodeSystem/v2-0004"));
    cad__fhir_set(c, coding, "code", json_stringn_nocheck(cls.p, cls.len));
  } else {
    cad__fhir_set(c, coding, "system",
                  cad__fhir_cstr(c, "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"));
    cad__fhir_set(c, coding, "code", cad__fhir_cstr(c, "UNK"));
  }
  cad__fhir_set(c, e, "class", coding);
  cad__fhir_set(c, e, "serviceType", first_rep(v, s, 10, cad__fhir_cwe));
  subject(v, e, "subject");
  participant(v, e, s, 7, "ATND");
  participant(v, e, s, 8, "REF");
  participant(v, e, s, 9, "CON");
  participant(v, e, s, 17, "ADM");
  json_t *start = first_rep(v, s, 44, cad__fhir_datetime);
  json_t *end = first_rep(v, s, 45, cad__fhir_datetime);
  if (start || end) {
    json_t *p = json_object();
    cad__fhir_set(c, p, "start", start);
    cad__fhir_set(c, p, "end", end);
    cad__fhir_set(c, e, "period", p);
  }
  json_t *src = first_rep(v, s, 14, cad__fhir_cwe), *disp = first_rep(v, s, 36, cad__fhir_cwe);
  if (src || disp) {
    json_t *h = json_object();
    cad__fhir_set(c, h, "admitSource", src);
    cad__fhir_set(c, h, "dischargeDisposition", disp);
    cad__fhir_set(c, e, "hospitalization", h);
  }
  json_t *loc = first_rep(v, s, 3, cad__fhir_pl);
  if (loc) {
    json_t *l = json_object();
    cad__fhir_set(c, l, "location", loc);
    cad__fhir_set(c, l, "status",
                  cad__fhir_cstr(c, strcmp(enc_status(v, s), "finished") ? "active" : "completed"));
    cad__fhir_push(c, e, "location", l);
  }
  return c->err;
}

static void pv2(conv_t *v, const cad_hl7_seg_t *s) {
  if (!v->c.encounter.res) return;
  cad__fhir_push(&v->c, v->c.encounter.res, "reasonCode", first_rep(v, s, 3, cad__fhir_cwe));
}

/* ---- RelatedPerson, AllergyIntolerance, Condition, Coverage -------------- */

static int nk1(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  fres_t r;
  if (!c->patient.res) return 0;
  int rc = cad__fhir_new(c, "RelatedPerson", NULL, (cad_str_t){NULL, 0}, &r);
  if (rc) return rc;
  json_t *p = r.res;
  each_rep(v, p, "identifier", s, 33, cad__fhir_cx);
  subject(v, p, "patient");
  cad__fhir_push(c, p, "relationship", first_rep(v, s, 3, cad__fhir_cwe));
  cad__fhir_push(c, p, "relationship", first_rep(v, s, 7, cad__fhir_cwe));
  each_rep(v, p, "name", s, 2, cad__fhir_xpn);
  telecoms(v, p, s, 5, 6);
  const char *g = map_code(text1(v, s, 15, 1), genders);
  if (g) cad__fhir_set(c, p, "gender", cad__fhir_cstr(c, g));
  cad__fhir_set(c, p, "birthDate", first_rep(v, s, 16, cad__fhir_date));
  each_rep(v, p, "address", s, 4, cad__fhir_xad);
  return c->err;
}

static const char *const allergy_cat[] = {
    "DA", "medication",  "MA", "medication",  "FA", "food",        "EA", "environment",
    "AA", "environment", "PA", "environment", "LA", "environment", NULL};
static const char *const severities[] = {"SV", "severe", "MO", "moderate", "MI", "mild", NULL};

static int al1(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  fres_t r;
  if (!c->patient.res) return 0;
  int rc = cad__fhir_new(c, "AllergyIntolerance", NULL, (cad_str_t){NULL, 0}, &r);
  if (rc) return rc;
  json_t *a = r.res;
  cad__fhir_set(
      c, a, "clinicalStatus",
      coding1(v, "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"));
  const char *cat = map_code(text1(v, s, 2, 1), allergy_cat);
  if (cat) cad__fhir_push(c, a, "category", cad__fhir_cstr(c, cat));
  cad__fhir_set(c, a, "code", first_rep(v, s, 3, cad__fhir_cwe));
  subject(v, a, "patient");
  cad__fhir_set(c, a, "onsetDateTime", first_rep(v, s, 6, cad__fhir_datetime));
  cad_str_t reac = F(s, 5);
  const char *sev = map_code(text1(v, s, 4, 1), severities);
  if (reac.len || sev) {
    json_t *re = json_object();
    fcur_t it = fcur(reac, d->rep);
    cad_str_t rv;
    while (fnext(&it, &rv)) {
      json_t *t = cad__fhir_str(c, d, rv);
      if (!t) continue;
      json_t *cc = json_object();
      cad__fhir_set(c, cc, "text", t);
      cad__fhir_push(c, re, "manifestation", cc);
    }
    if (!json_object_get(re, "manifestation")) {
      /* a reaction needs a manifestation: the severity alone is not said */
      json_decref(re);
    } else {
      if (sev) cad__fhir_set(c, re, "severity", cad__fhir_cstr(c, sev));
      cad__fhir_push(c, a, "reaction", re);
    }
  }
  return c->err;
}

static int dg1(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  fres_t r;
  if (!c->patient.res) return 0;
  int rc = cad__fhir_new(c, "Condition", NULL, (cad_str_t){NULL, 0}, &r);
  if (rc) return rc;
  json_t *k = r.res;
  cad__fhir_push(c, k, "category",
                 coding1(v, "http://terminology.hl7.org/CodeSystem/condition-category",
                         "encounter-diagnosis"));
  json_t *code = first_rep(v, s, 3, cad__fhir_cwe), *desc = cad__fhir_str(c, d, REP(F(s, 4), 1));
  if (!code && desc) code = json_object();
  if (code && desc && !json_object_get(code, "text")) cad__fhir_set(c, code, "text", desc);
  else json_decref(desc);
  cad__fhir_set(c, k, "code", code);
  subject(v, k, "subject");
  encounter(v, k);
  cad__fhir_set(c, k, "onsetDateTime", first_rep(v, s, 5, cad__fhir_datetime));
  cad__fhir_set(c, k, "recordedDate", first_rep(v, s, 19, cad__fhir_datetime));
  return c->err;
}

static int in1(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  fres_t r;
  if (!c->patient.res) return 0;
  int rc = cad__fhir_new(c, "Coverage", NULL, (cad_str_t){NULL, 0}, &r);
  if (rc) return rc;
  json_t *k = r.res;
  cad__fhir_push(c, k, "identifier", first_rep(v, s, 36, cad__fhir_cx));
  cad__fhir_set(c, k, "status", cad__fhir_cstr(c, "active"));
  cad__fhir_set(c, k, "type", first_rep(v, s, 15, cad__fhir_cwe));
  cad__fhir_set(c, k, "subscriberId", cad__fhir_str(c, d, COMP(REP(F(s, 49), 1), 1)));
  subject(v, k, "beneficiary");
  cad__fhir_set(c, k, "relationship", first_rep(v, s, 17, cad__fhir_cwe));
  json_t *start = first_rep(v, s, 12, cad__fhir_date), *end = first_rep(v, s, 13, cad__fhir_date);
  if (start || end) {
    json_t *p = json_object();
    cad__fhir_set(c, p, "start", start);
    cad__fhir_set(c, p, "end", end);
    cad__fhir_set(c, k, "period", p);
  }
  /* payor (1..*): the company's id and name; "unknown" when neither */
  json_t *payor = json_object();
  cad__fhir_set(c, payor, "identifier", first_rep(v, s, 3, cad__fhir_cx));
  json_t *name = cad__fhir_str(c, d, COMP(REP(F(s, 4), 1), 1));
  cad__fhir_set(c, payor, "display", name ? name : cad__fhir_cstr(c, "unknown"));
  cad__fhir_push(c, k, "payor", payor);
  static const struct {
    int field, name_field;
    const char *type;
  } classes_[] = {{2, 0, "plan"}, {8, 9, "group"}};
  for (size_t i = 0; i < 2; i++) {
    json_t *val = cad__fhir_str(c, d, COMP(REP(F(s, classes_[i].field), 1), 1));
    if (!val) continue;
    json_t *cl = json_object();
    cad__fhir_set(
        c, cl, "type",
        coding1(v, "http://terminology.hl7.org/CodeSystem/coverage-class", classes_[i].type));
    cad__fhir_set(c, cl, "value", val);
    if (classes_[i].name_field)
      cad__fhir_set(c, cl, "name", cad__fhir_str(c, d, REP(F(s, classes_[i].name_field), 1)));
    cad__fhir_push(c, k, "class", cl);
  }
  return c->err;
}

/* ---- orders and reports (ORC, OBR) --------------------------------------- */

static const char *const report_status[] = {"F", "final",       "C", "corrected",  "A", "partial",
                                            "P", "preliminary", "R", "partial",    "S", "partial",
                                            "I", "registered",  "O", "registered", "X", "cancelled",
                                            "Y", "unknown",     "Z", "unknown",    NULL};

static void identifiers_po(conv_t *v, json_t *res, const cad_hl7_seg_t *s, int placer, int filler) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  static const char *const types[2] = {"PLAC", "FILL"};
  int fields[2] = {placer, filler};
  for (int i = 0; i < 2; i++) {
    json_t *id = cad__fhir_ei(c, d, REP(F(s, fields[i]), 1));
    if (!id) continue;
    cad__fhir_set(c, id, "type",
                  coding1(v, "http://terminology.hl7.org/CodeSystem/v2-0203", types[i]));
    cad__fhir_push(c, res, "identifier", id);
  }
}

static json_t *code_or_unknown(conv_t *v, const cad_hl7_seg_t *s, int field) {
  json_t *cc = first_rep(v, s, field, cad__fhir_cwe);
  return cc ? cc : cc_text(v, "unknown");
}

static int report(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  int rc = cad__fhir_new(c, "DiagnosticReport", NULL, (cad_str_t){NULL, 0}, &v->report);
  if (rc) return rc;
  json_t *r = v->report.res;
  identifiers_po(v, r, s, 2, 3);
  const char *st = map_code(text1(v, s, 25, 1), report_status);
  cad__fhir_set(c, r, "status", cad__fhir_cstr(c, st ? st : "unknown"));
  cad__fhir_push(c, r, "category", first_rep(v, s, 24, cad__fhir_cwe));
  cad__fhir_set(c, r, "code", code_or_unknown(v, s, 4));
  subject(v, r, "subject");
  encounter(v, r);
  v->obr7 = REP(F(s, 7), 1);
  json_t *eff = cad__fhir_datetime(c, d, v->obr7);
  json_t *end = first_rep(v, s, 8, cad__fhir_datetime);
  if (eff && end) {
    json_t *p = json_object();
    cad__fhir_set(c, p, "start", eff);
    cad__fhir_set(c, p, "end", end);
    cad__fhir_set(c, r, "effectivePeriod", p);
  } else {
    cad__fhir_set(c, r, "effectiveDateTime", eff);
    json_decref(end);
  }
  cad__fhir_set(c, r, "issued", first_rep(v, s, 22, cad__fhir_instant));
  each_rep(v, r, "resultsInterpreter", s, 32, cad__fhir_xcn);
  v->note = NULL; /* R4 DiagnosticReport has no note: NTE after OBR is not mapped */
  v->obs.res = NULL;
  return c->err;
}

static const char *const order_control[] = {
    "NW", "active", "CA", "revoked", "DC", "revoked", "HD", "on-hold",   "RL", "active",
    "XO", "active", "SC", "active",  "OC", "revoked", "CM", "completed", NULL};
static const char *const order_status[] = {
    "A",  "active",  "CA", "revoked", "CM", "completed", "DC", "revoked", "ER", "entered-in-error",
    "HD", "on-hold", "IP", "active",  "SC", "active",    NULL};
static const char *const priorities[] = {
    "S", "stat", "A", "asap", "R", "routine", "P", "urgent", "C", "urgent", "T", "urgent", NULL};

/* A ServiceRequest from the ORC in force and an OBR (or the ORC alone). */
static int service_request(conv_t *v, const cad_hl7_seg_t *obr) {
  fctx_t *c = &v->c;
  if (!c->patient.res) return 0;
  const cad_hl7_seg_t *orc = v->orc >= 0 ? cad_hl7_seg(c->m, (uint32_t)v->orc) : NULL;
  int rc = cad__fhir_new(c, "ServiceRequest", NULL, (cad_str_t){NULL, 0}, &v->order);
  if (rc) return rc;
  json_t *r = v->order.res;
  if (orc) identifiers_po(v, r, orc, 2, 3);
  if (obr && !json_object_get(r, "identifier")) identifiers_po(v, r, obr, 2, 3);
  if (orc) {
    const cad_hl7_delims_t *d = &orc->d;
    cad__fhir_set(c, r, "requisition", cad__fhir_ei(c, d, REP(F(orc, 4), 1)));
  }
  const char *st = orc ? map_code(text1(v, orc, 5, 1), order_status) : NULL;
  if (!st && orc) st = map_code(text1(v, orc, 1, 1), order_control);
  cad__fhir_set(c, r, "status", cad__fhir_cstr(c, st ? st : "unknown"));
  cad__fhir_set(c, r, "intent", cad__fhir_cstr(c, "order"));
  const char *prio = orc ? map_code(text1(v, orc, 7, 6), priorities) : NULL;
  if (!prio && obr) prio = map_code(text1(v, obr, 5, 1), priorities);
  if (prio) cad__fhir_set(c, r, "priority", cad__fhir_cstr(c, prio));
  if (obr) cad__fhir_set(c, r, "code", first_rep(v, obr, 4, cad__fhir_cwe));
  subject(v, r, "subject");
  encounter(v, r);
  if (obr) cad__fhir_set(c, r, "occurrenceDateTime", first_rep(v, obr, 7, cad__fhir_datetime));
  if (orc) {
    cad__fhir_set(c, r, "authoredOn", first_rep(v, orc, 9, cad__fhir_datetime));
    cad__fhir_set(c, r, "requester", first_rep(v, orc, 12, cad__fhir_xcn));
  }
  if (obr && !json_object_get(r, "requester"))
    cad__fhir_set(c, r, "requester", first_rep(v, obr, 16, cad__fhir_xcn));
  if (obr) cad__fhir_push(c, r, "reasonCode", first_rep(v, obr, 31, cad__fhir_cwe));
  v->orc_used = true;
  v->note = r;
  return c->err;
}

/* ---- Observation (OBX) ---------------------------------------------------- */

static const char *const obs_status[] = {
    "F", "final",      "C", "corrected",        "P", "preliminary",
    "R", "registered", "I", "registered",       "S", "preliminary",
    "X", "cancelled",  "D", "entered-in-error", "W", "entered-in-error",
    "U", "final",      "A", "amended",          NULL};

/* A UCUM unit when OBX-6 names UCUM (or no system), else its text. */
static void quantity_unit(conv_t *v, json_t *q, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  cad_str_t code = text1(v, s, 6, 1), text = text1(v, s, 6, 2), sys = text1(v, s, 6, 3);
  if (!code.len && !text.len) return;
  bool ucum = code.len &&
              (sys.len == 0 || cad__fhir_is(sys, "UCUM", true) || cad__fhir_is(sys, "ANS+", true));
  cad_str_t shown = text.len ? text : code;
  cad__fhir_set(c, q, "unit", json_stringn_nocheck(shown.p, shown.len));
  if (ucum) {
    cad__fhir_set(c, q, "system", cad__fhir_cstr(c, "http://unitsofmeasure.org"));
    cad__fhir_set(c, q, "code", json_stringn_nocheck(code.p, code.len));
  }
}

static json_t *quantity(conv_t *v, const cad_hl7_seg_t *s, json_t *num) {
  json_t *q = json_object();
  cad__fhir_set(&v->c, q, "value", num);
  quantity_unit(v, q, s);
  return q;
}

/* SN: comparator^num1^separator^num2. */
static void value_sn(conv_t *v, json_t *o, const cad_hl7_seg_t *s, cad_str_t rep) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  cad_str_t cmp = cad__fhir_text(c, d, COMP(rep, 1)), sep = cad__fhir_text(c, d, COMP(rep, 3));
  json_t *n1 = cad__fhir_number(c, d, COMP(rep, 2)), *n2 = cad__fhir_number(c, d, COMP(rep, 4));
  if (n1 && n2 && (cad__fhir_is(sep, "-", false) || cad__fhir_is(sep, "", false))) {
    json_t *range = json_object();
    cad__fhir_set(c, range, "low", quantity(v, s, n1));
    cad__fhir_set(c, range, "high", quantity(v, s, n2));
    cad__fhir_set(c, o, "valueRange", range);
  } else if (n1 && n2 && (cad__fhir_is(sep, ":", false) || cad__fhir_is(sep, "/", false))) {
    json_t *ratio = json_object(), *a = json_object(), *b = json_object();
    cad__fhir_set(c, a, "value", n1);
    cad__fhir_set(c, b, "value", n2);
    cad__fhir_set(c, ratio, "numerator", a);
    cad__fhir_set(c, ratio, "denominator", b);
    cad__fhir_set(c, o, "valueRatio", ratio);
  } else if (n1 && !n2) {
    json_t *q = quantity(v, s, n1);
    static const char *const cmps[] = {"<", "<", ">", ">", "<=", "<=", ">=", ">=", NULL};
    const char *k = map_code(cmp, cmps);
    if (k) cad__fhir_set(c, q, "comparator", cad__fhir_cstr(c, k));
    cad__fhir_set(c, o, "valueQuantity", q);
  } else {
    json_decref(n1);
    json_decref(n2);
    cad__fhir_set(c, o, "valueString", cad__fhir_str(c, d, rep));
  }
}

/* Every repetition's text, one per line. */
static json_t *joined_text(conv_t *v, const cad_hl7_seg_t *s, int field) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  fcur_t it = fcur(F(s, field), d->rep);
  cad_buf_t b = CAD_BUF_INIT;
  cad_str_t rv;
  for (int r = 1; fnext(&it, &rv); r++) {
    cad_str_t t = cad__fhir_text(c, d, rv);
    if (r > 1) cad_buf_putc(&b, '\n');
    cad_buf_append(&b, t.p, t.len);
  }
  size_t n = b.len;
  while (n && (b.data[n - 1] == '\n' || b.data[n - 1] == ' ')) n--;
  json_t *j = n ? json_stringn_nocheck(b.data, n) : NULL;
  cad_buf_free(&b);
  return j;
}

static void obs_value(conv_t *v, json_t *o, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  cad_str_t type = text1(v, s, 2, 1), val = REP(F(s, 5), 1);
  if (!F(s, 5).len) return;
  if (cad__fhir_is(type, "NM", true)) {
    json_t *n = cad__fhir_number(c, d, val);
    if (n) cad__fhir_set(c, o, "valueQuantity", quantity(v, s, n));
    else cad__fhir_set(c, o, "valueString", cad__fhir_str(c, d, val));
  } else if (cad__fhir_is(type, "SN", true)) {
    value_sn(v, o, s, val);
  } else if (cad__fhir_is(type, "CE", true) || cad__fhir_is(type, "CWE", true) ||
             cad__fhir_is(type, "CNE", true) || cad__fhir_is(type, "CF", true)) {
    cad__fhir_set(c, o, "valueCodeableConcept", cad__fhir_cwe(c, d, val));
  } else if (cad__fhir_is(type, "DT", true) || cad__fhir_is(type, "TS", true) ||
             cad__fhir_is(type, "DTM", true)) {
    json_t *dt = cad__fhir_datetime(c, d, val);
    cad__fhir_set(c, o, dt ? "valueDateTime" : "valueString", dt ? dt : cad__fhir_str(c, d, val));
  } else if (cad__fhir_is(type, "TM", true)) {
    cad_str_t t = cad__fhir_text(c, d, val);
    char buf[16];
    if (t.len >= 4 && t.len <= 6 && strspn(t.p, "0123456789") >= t.len) {
      snprintf(buf, sizeof buf, "%.2s:%.2s:%.2s", t.p, t.p + 2, t.len == 6 ? t.p + 4 : "00");
      cad__fhir_set(c, o, "valueTime", cad__fhir_cstr(c, buf));
    } else {
      cad__fhir_set(c, o, "valueString", cad__fhir_str(c, d, val));
    }
  } else {
    /* ST, TX, FT and anything else: the text, repetitions one per line */
    cad__fhir_set(c, o, "valueString", joined_text(v, s, 5));
  }
}

/* OBX-7: "low-high", "<high", ">low", else text. */
static void ref_range(conv_t *v, json_t *o, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  cad_str_t t = text1(v, s, 7, 1);
  if (!t.len) return;
  json_t *rr = json_object();
  const char *dash = t.len > 1 ? memchr(t.p + 1, '-', t.len - 1) : NULL;
  json_t *lo = NULL, *hi = NULL;
  if (dash) {
    lo = cad__fhir_number(c, d, (cad_str_t){t.p, (size_t)(dash - t.p)});
    hi = cad__fhir_number(c, d, (cad_str_t){dash + 1, (size_t)(t.p + t.len - dash - 1)});
  } else if (t.p[0] == '<' || t.p[0] == '>') {
    size_t k = t.len > 1 && t.p[1] == '=' ? 2 : 1;
    json_t *n = cad__fhir_number(c, d, (cad_str_t){t.p + k, t.len - k});
    if (t.p[0] == '<') hi = n;
    else lo = n;
  }
  if ((dash && lo && hi) || (!dash && (lo || hi))) {
    if (lo) cad__fhir_set(c, rr, "low", quantity(v, s, lo));
    if (hi) cad__fhir_set(c, rr, "high", quantity(v, s, hi));
  } else {
    json_decref(lo);
    json_decref(hi);
  }
  cad__fhir_set(c, rr, "text", json_stringn_nocheck(t.p, t.len));
  cad__fhir_push(c, o, "referenceRange", rr);
}

static int observation(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  int rc = cad__fhir_new(c, "Observation", NULL, (cad_str_t){NULL, 0}, &v->obs);
  if (rc) return rc;
  json_t *o = v->obs.res;
  if (v->report.res) cad__fhir_push(c, v->report.res, "result", cad__fhir_ref(c, &v->obs));
  if (v->imm.res) cad__fhir_push(c, o, "partOf", cad__fhir_ref(c, &v->imm));
  const char *st = map_code(text1(v, s, 11, 1), obs_status);
  cad__fhir_set(c, o, "status", cad__fhir_cstr(c, st ? st : "unknown"));
  if (v->report.res && v->kind == K_ORU)
    cad__fhir_push(
        c, o, "category",
        coding1(v, "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory"));
  cad__fhir_set(c, o, "code", code_or_unknown(v, s, 3));
  subject(v, o, "subject");
  encounter(v, o);
  json_t *eff = first_rep(v, s, 14, cad__fhir_datetime);
  if (!eff && v->report.res) eff = cad__fhir_datetime(c, d, v->obr7);
  cad__fhir_set(c, o, "effectiveDateTime", eff);
  each_rep(v, o, "performer", s, 16, cad__fhir_xcn);
  obs_value(v, o, s);
  fcur_t it = fcur(F(s, 8), d->rep);
  cad_str_t iv;
  while (fnext(&it, &iv)) {
    cad_str_t code = cad__fhir_text(c, d, COMP(iv, 1));
    if (!code.len) continue;
    json_t *cc = json_object(), *k = json_object();
    cad__fhir_set(
        c, k, "system",
        cad__fhir_cstr(c, "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"));
    cad__fhir_set(c, k, "code", json_stringn_nocheck(code.p, code.len));
    cad__fhir_push(c, cc, "coding", k);
    cad__fhir_push(c, o, "interpretation", cc);
  }
  ref_range(v, o, s);
  cad__fhir_set(c, o, "method", first_rep(v, s, 17, cad__fhir_cwe));
  v->note = o;
  return c->err;
}

/* ---- Specimen (SPM) ------------------------------------------------------ */

static int specimen(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  fres_t r;
  int rc = cad__fhir_new(c, "Specimen", NULL, (cad_str_t){NULL, 0}, &r);
  if (rc) return rc;
  json_t *k = r.res;
  cad_str_t eip = REP(F(s, 2), 1); /* placer&..^filler&.. */
  for (int i = 1; i <= 2; i++) {
    cad_str_t part = COMP(eip, i);
    cad_str_t val = fpiece(part, d->sub, 1), ns = fpiece(part, d->sub, 2);
    cad_str_t uid = fpiece(part, d->sub, 3), uidt = fpiece(part, d->sub, 4);
    cad_str_t t = cad__fhir_text(c, d, val);
    if (!t.len) continue;
    json_t *id = json_object();
    char buf[300];
    const char *sys = cad__fhir_id_system(c, cad__fhir_text(c, d, ns), cad__fhir_text(c, d, uid),
                                          cad__fhir_text(c, d, uidt), buf, sizeof buf);
    if (sys) cad__fhir_set(c, id, "system", cad__fhir_cstr(c, sys));
    cad__fhir_set(c, id, "value", json_stringn_nocheck(t.p, t.len));
    cad__fhir_push(c, k, "identifier", id);
  }
  cad__fhir_set(c, k, "type", first_rep(v, s, 4, cad__fhir_cwe));
  subject(v, k, "subject");
  cad__fhir_set(c, k, "receivedTime", first_rep(v, s, 18, cad__fhir_datetime));
  cad_str_t dr = REP(F(s, 17), 1);
  json_t *t1 = cad__fhir_datetime(c, d, COMP(dr, 1)), *t2 = cad__fhir_datetime(c, d, COMP(dr, 2));
  json_t *site = first_rep(v, s, 8, cad__fhir_cwe);
  if (t1 || site) {
    json_t *col = json_object();
    if (t1 && t2) {
      json_t *p = json_object();
      cad__fhir_set(c, p, "start", t1);
      cad__fhir_set(c, p, "end", t2);
      cad__fhir_set(c, col, "collectedPeriod", p);
    } else {
      cad__fhir_set(c, col, "collectedDateTime", t1);
      json_decref(t2);
    }
    cad__fhir_set(c, col, "bodySite", site);
    cad__fhir_set(c, k, "collection", col);
  } else {
    json_decref(t2);
  }
  if (v->report.res) cad__fhir_push(c, v->report.res, "specimen", cad__fhir_ref(c, &r));
  if (v->order.res) cad__fhir_push(c, v->order.res, "specimen", cad__fhir_ref(c, &r));
  return c->err;
}

/* ---- Immunization (RXA, RXR) --------------------------------------------- */

static int immunization(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  if (!c->patient.res) return 0;
  int rc = cad__fhir_new(c, "Immunization", NULL, (cad_str_t){NULL, 0}, &v->imm);
  if (rc) return rc;
  json_t *k = v->imm.res;
  cad_str_t done = text1(v, s, 20, 1), action = text1(v, s, 21, 1);
  const char *st = "completed";
  if (cad__fhir_is(action, "D", true)) st = "entered-in-error";
  else if (cad__fhir_is(done, "RE", true) || cad__fhir_is(done, "NA", true)) st = "not-done";
  cad__fhir_set(c, k, "status", cad__fhir_cstr(c, st));
  if (!strcmp(st, "not-done"))
    cad__fhir_set(c, k, "statusReason", first_rep(v, s, 18, cad__fhir_cwe));
  cad__fhir_set(c, k, "vaccineCode", code_or_unknown(v, s, 5));
  subject(v, k, "patient");
  encounter(v, k);
  json_t *when = first_rep(v, s, 3, cad__fhir_datetime);
  if (when) cad__fhir_set(c, k, "occurrenceDateTime", when);
  else cad__fhir_set(c, k, "occurrenceString", cad__fhir_cstr(c, "unknown"));
  cad_str_t src = text1(v, s, 9, 1);
  if (cad__fhir_is(src, "00", false)) cad__fhir_set(c, k, "primarySource", json_true());
  else if (src.len) {
    cad__fhir_set(c, k, "primarySource", json_false());
    cad__fhir_set(c, k, "reportOrigin", first_rep(v, s, 9, cad__fhir_cwe));
  }
  cad_str_t man = REP(F(s, 17), 1);
  json_t *mname = cad__fhir_str(c, d, COMP(man, 2));
  if (!mname) mname = cad__fhir_str(c, d, COMP(man, 1));
  if (mname) {
    json_t *ref = json_object();
    cad__fhir_set(c, ref, "display", mname);
    cad__fhir_set(c, k, "manufacturer", ref);
  }
  cad__fhir_set(c, k, "lotNumber", cad__fhir_str(c, d, REP(F(s, 15), 1)));
  cad__fhir_set(c, k, "expirationDate", first_rep(v, s, 16, cad__fhir_date));
  cad_str_t amount = text1(v, s, 6, 1);
  json_t *n = cad__fhir_is(amount, "999", false) ? NULL : first_rep(v, s, 6, cad__fhir_number);
  if (n) {
    json_t *q = json_object();
    cad__fhir_set(c, q, "value", n);
    cad_str_t u = text1(v, s, 7, 1), usys = text1(v, s, 7, 3);
    if (u.len) {
      cad__fhir_set(c, q, "unit", json_stringn_nocheck(u.p, u.len));
      if (!usys.len || cad__fhir_is(usys, "UCUM", true)) {
        cad__fhir_set(c, q, "system", cad__fhir_cstr(c, "http://unitsofmeasure.org"));
        cad__fhir_set(c, q, "code", json_stringn_nocheck(u.p, u.len));
      }
    }
    cad__fhir_set(c, k, "doseQuantity", q);
  }
  fcur_t it = fcur(F(s, 10), d->rep);
  cad_str_t pv;
  while (fnext(&it, &pv)) {
    json_t *who = cad__fhir_xcn(c, d, pv);
    if (!who) continue;
    json_t *p = json_object();
    cad__fhir_set(c, p, "function",
                  coding1(v, "http://terminology.hl7.org/CodeSystem/v2-0443", "AP"));
    cad__fhir_set(c, p, "actor", who);
    cad__fhir_push(c, k, "performer", p);
  }
  v->note = k;
  return c->err;
}

static void rxr(conv_t *v, const cad_hl7_seg_t *s) {
  if (!v->imm.res) return;
  cad__fhir_set(&v->c, v->imm.res, "route", first_rep(v, s, 1, cad__fhir_cwe));
  cad__fhir_set(&v->c, v->imm.res, "site", first_rep(v, s, 2, cad__fhir_cwe));
}

/* ---- DocumentReference (TXA, OBX) ---------------------------------------- */

static const char *const doc_status[] = {
    "AU", "final",       "LA", "final",       "DO", "final",       "IP", "preliminary",
    "IN", "preliminary", "PA", "preliminary", "DI", "preliminary", NULL};

static int document(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  if (!c->patient.res) return 0;
  int rc = cad__fhir_new(c, "DocumentReference", NULL, (cad_str_t){NULL, 0}, &v->doc);
  if (rc) return rc;
  json_t *k = v->doc.res;
  cad__fhir_set(c, k, "masterIdentifier", cad__fhir_ei(c, d, REP(F(s, 12), 1)));
  cad_str_t avail = text1(v, s, 19, 1);
  const char *st = "current";
  if (cad__fhir_is(avail, "CA", true) || cad__fhir_is(avail, "OB", true)) st = "superseded";
  cad__fhir_set(c, k, "status", cad__fhir_cstr(c, st));
  const char *ds = map_code(text1(v, s, 17, 1), doc_status);
  if (ds) cad__fhir_set(c, k, "docStatus", cad__fhir_cstr(c, ds));
  cad__fhir_set(c, k, "type", first_rep(v, s, 2, cad__fhir_cwe));
  subject(v, k, "subject");
  cad__fhir_set(c, k, "date", first_rep(v, s, 4, cad__fhir_instant));
  each_rep(v, k, "author", s, 9, cad__fhir_xcn);
  cad__fhir_set(c, k, "authenticator", first_rep(v, s, 22, cad__fhir_xcn));
  if (c->encounter.res) {
    json_t *ctx = json_object();
    cad__fhir_push(c, ctx, "encounter", cad__fhir_ref(c, &c->encounter));
    cad__fhir_set(c, k, "context", ctx);
  }
  v->note = NULL;
  return c->err;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int base64(cad_buf_t *o, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i += 3) {
    unsigned x = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    char q[4] = {b64[x >> 18], b64[(x >> 12) & 63], i + 1 < n ? b64[(x >> 6) & 63] : '=',
                 i + 2 < n ? b64[x & 63] : '='};
    if (cad_buf_append(o, q, 4)) return CAD_E_NOMEM;
  }
  return 0;
}

/* OBX of an MDM: the document's text (TX, FT, ST) or encapsulated data
 * (ED: ^type^subtype^encoding^data) as an attachment. */
static void doc_content(conv_t *v, const cad_hl7_seg_t *s) {
  fctx_t *c = &v->c;
  const cad_hl7_delims_t *d = &s->d;
  json_t *att = json_object();
  cad_buf_t b = CAD_BUF_INIT;
  cad_str_t type = text1(v, s, 2, 1);
  if (cad__fhir_is(type, "ED", true)) {
    cad_str_t ed = REP(F(s, 5), 1), sub = cad__fhir_text(c, d, COMP(ed, 3));
    cad_str_t enc = cad__fhir_text(c, d, COMP(ed, 4)), data = cad__fhir_text(c, d, COMP(ed, 5));
    cad_str_t mt = cad__fhir_text(c, d, COMP(ed, 2));
    char ct[128];
    if (sub.len && sub.len + 16 < sizeof ct) {
      const char *top = cad__fhir_is(mt, "TEXT", true) ? "text" : "application";
      snprintf(ct, sizeof ct, "%s/%.*s", top, (int)sub.len, sub.p);
      for (char *q = ct; *q; q++)
        if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
      cad__fhir_set(c, att, "contentType", cad__fhir_cstr(c, ct));
    }
    if (cad__fhir_is(enc, "Base64", true)) cad_buf_append(&b, data.p, data.len);
    else base64(&b, (const unsigned char *)data.p, data.len);
  } else {
    json_t *t = joined_text(v, s, 5);
    if (t) base64(&b, (const unsigned char *)json_string_value(t), json_string_length(t));
    json_decref(t);
    cad__fhir_set(c, att, "contentType", cad__fhir_cstr(c, "text/plain"));
  }
  if (b.len) cad__fhir_set(c, att, "data", json_stringn_nocheck(b.data, b.len));
  cad_buf_free(&b);
  if (!json_object_get(att, "data")) {
    json_decref(att);
    return;
  }
  json_t *content = json_object();
  cad__fhir_set(c, content, "attachment", att);
  cad__fhir_push(c, v->doc.res, "content", content);
}

/* ---- NTE ------------------------------------------------------------------ */

static void nte(conv_t *v, const cad_hl7_seg_t *s) {
  if (!v->note) return;
  json_t *t = joined_text(v, s, 3);
  if (!t) return;
  json_t *a = json_object();
  cad__fhir_set(&v->c, a, "text", t);
  cad__fhir_push(&v->c, v->note, "note", a);
}

/* ---- the message ---------------------------------------------------------- */

static const struct {
  const char *type, *events;
  kind_t kind;
} supported[] = {
    {"ADT", "A01 A02 A03 A04 A08 A11 A13 A28 A31", K_ADT},
    {"ORU", "R01", K_ORU},
    {"VXU", "V04", K_VXU},
    {"ORM", "O01", K_ORDER},
    {"OML", "O21", K_ORDER},
    {"MDM", "T02", K_MDM},
};

static kind_t message_kind(cad_str_t type, cad_str_t event) {
  if (type.len != 3 || event.len != 3) return 0;
  for (size_t i = 0; i < sizeof supported / sizeof supported[0]; i++) {
    if (memcmp(type.p, supported[i].type, 3) != 0) continue;
    for (const char *e = supported[i].events; *e; e += e[3] ? 4 : 3)
      if (memcmp(e, event.p, 3) == 0) return supported[i].kind;
  }
  return 0;
}

/* The ORC in force gave no ServiceRequest: give it one alone. */
static int flush_orc(conv_t *v) {
  if (v->kind != K_ORDER || v->orc < 0 || v->orc_used) return 0;
  /* its id is keyed by the ORC's own position, whichever segment ends it */
  uint32_t seg = v->c.seg;
  v->c.seg = (uint32_t)v->orc;
  int rc = service_request(v, NULL);
  v->c.seg = seg;
  return rc;
}

static int segment(conv_t *v, const cad_hl7_seg_t *s) {
  switch (s->id) {
    case ('P' << 16) | ('I' << 8) | 'D':
      /* a new patient: what followed the last one is closed */
      v->report.res = v->order.res = v->obs.res = v->imm.res = v->doc.res = NULL;
      return patient(v, s);
    case ('P' << 16) | ('D' << 8) | '1': pd1(v, s); return 0;
    case ('P' << 16) | ('V' << 8) | '1': return pv1(v, s);
    case ('P' << 16) | ('V' << 8) | '2': pv2(v, s); return 0;
    case ('N' << 16) | ('K' << 8) | '1': return nk1(v, s);
    case ('A' << 16) | ('L' << 8) | '1': return al1(v, s);
    case ('D' << 16) | ('G' << 8) | '1': return dg1(v, s);
    case ('I' << 16) | ('N' << 8) | '1': return in1(v, s);
    case ('N' << 16) | ('T' << 8) | 'E': nte(v, s); return 0;
    case ('S' << 16) | ('P' << 8) | 'M': return specimen(v, s);
    case ('R' << 16) | ('X' << 8) | 'A': return immunization(v, s);
    case ('R' << 16) | ('X' << 8) | 'R': rxr(v, s); return 0;
    case ('T' << 16) | ('X' << 8) | 'A': return document(v, s);
    case ('O' << 16) | ('R' << 8) | 'C': {
      int rc = flush_orc(v);
      v->orc = (int)v->c.seg;
      v->orc_used = false;
      v->note = NULL;
      return rc;
    }
    case ('O' << 16) | ('B' << 8) | 'R':
      if (v->kind == K_ORDER) return service_request(v, s);
      if (v->kind == K_MDM) return 0;
      return v->c.patient.res || v->kind == K_ORU ? report(v, s) : 0;
    case ('O' << 16) | ('B' << 8) | 'X':
      if (v->kind == K_MDM) {
        if (v->doc.res) doc_content(v, s);
        return 0;
      }
      return observation(v, s);
    default: return 0;
  }
}

static void set_reason(cad_fhir_diag_t *diag, int code, const char *what, const char *a) {
  if (!diag) return;
  diag->code = code;
  snprintf(diag->reason, sizeof diag->reason, "%s%s", what, a);
}

/* The zone of MSH-7 (or the configured one) for times that carry none. */
static void default_zone(fctx_t *c, const cad_hl7_seg_t *msh) {
  cad_hl7_dtm_t t;
  cad_str_t m7 = fpiece(F(msh, 7), msh->d.comp, 1);
  c->tz[0] = 0;
  if (cad_hl7_dtm_parse(m7.p, m7.len, &t) && t.has_tz) {
    int a = t.tz_min < 0 ? -t.tz_min : t.tz_min;
    if (a <= 14 * 60) {
      if (t.tz_min == 0) snprintf(c->tz, sizeof c->tz, "Z");
      else snprintf(c->tz, sizeof c->tz, "%c%02d:%02d", t.tz_min < 0 ? '-' : '+', a / 60, a % 60);
    }
  }
  if (!c->tz[0] && c->o && c->o->tz) snprintf(c->tz, sizeof c->tz, "%s", c->o->tz);
}

int cad_fhir_convert(const cad_hl7_msg_t *m, const cad_fhir_opts_t *o, json_t **out,
                     cad_fhir_diag_t *diag) {
  *out = NULL;
  if (diag) memset(diag, 0, sizeof *diag);
  const cad_hl7_seg_t *msh = cad_hl7_seg(m, 0);
  if (!msh || strcmp(msh->name, "MSH") != 0) {
    set_reason(diag, CAD_E_NOMSH, "the message does not start with MSH", "");
    return CAD_E_NOMSH;
  }
  cad_str_t m9 = F(msh, 9);
  cad_str_t type = fpiece(m9, msh->d.comp, 1), event = fpiece(m9, msh->d.comp, 2);
  conv_t v;
  memset(&v, 0, sizeof v);
  v.kind = message_kind(type, event);
  if (!v.kind) {
    char t[16];
    snprintf(t, sizeof t, "%.3s^%.3s", type.len == 3 ? type.p : "???",
             event.len == 3 ? event.p : "???");
    for (char *q = t; *q; q++)
      if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f) *q = '?';
    set_reason(diag, CAD_E_INVAL, "unsupported message type ", t);
    return CAD_E_INVAL;
  }
  cad_arena_t arena;
  cad_arena_init(&arena, 16384, 64u << 20);
  v.c.m = m;
  v.c.o = o;
  v.c.a = &arena;
  v.c.msh10 = F(msh, 10);
  memcpy(v.c.event, event.p, 3);
  default_zone(&v.c, msh);
  v.orc = -1;
  json_t *bundle = json_object();
  v.c.entries = json_array();
  char id[37];
  const char *parts[2] = {"Bundle", v.c.msh10.p ? v.c.msh10.p : ""};
  size_t lens[2] = {6, v.c.msh10.len};
  cad__fhir_uuid(parts, lens, 2, id);
  cad__fhir_set(&v.c, bundle, "resourceType", cad__fhir_cstr(&v.c, "Bundle"));
  cad__fhir_set(&v.c, bundle, "id", cad__fhir_cstr(&v.c, id));
  json_t *ident = cad__fhir_str(&v.c, &msh->d, v.c.msh10);
  if (ident) {
    json_t *bi = json_object();
    cad__fhir_set(&v.c, bi, "value", ident);
    cad__fhir_set(&v.c, bundle, "identifier", bi);
  }
  cad__fhir_set(&v.c, bundle, "type", cad__fhir_cstr(&v.c, "transaction"));
  cad__fhir_set(&v.c, bundle, "timestamp", cad__fhir_instant(&v.c, &msh->d, F(msh, 7)));
  if (v.c.entries) json_incref(v.c.entries);
  cad__fhir_set(&v.c, bundle, "entry", v.c.entries);
  int rc = v.c.err;
  for (uint32_t i = 1; rc == 0 && i < m->nsegs; i++) {
    const cad_hl7_seg_t *s = &m->segs[i];
    if (s->header) break; /* a batch: one message at a time */
    v.c.seg = i;
    rc = segment(&v, s);
    if (!rc) rc = v.c.err;
  }
  if (!rc) rc = flush_orc(&v);
  if (!rc) rc = v.c.err;
  if (!rc && json_array_size(v.c.entries) == 0) {
    set_reason(diag, CAD_E_INVAL, "no segment to convert (no PID)", "");
    rc = CAD_E_INVAL;
  }
  json_decref(v.c.entries);
  cad_arena_free(&arena);
  if (rc) {
    json_decref(bundle);
    if (diag && !diag->code && rc == CAD_E_TOOBIG)
      set_reason(diag, rc, "more resources than a Bundle may hold (CAD_FHIR_MAX_ENTRIES)", "");
    else if (diag && !diag->code) set_reason(diag, rc, "conversion failed: ", cad_strerror(rc));
    return rc;
  }
  *out = bundle;
  return 0;
}
