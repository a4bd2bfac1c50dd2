/* routes_recipe.c - a fused run compiled once into a recipe: what every
 * component of every field it writes ends up being.
 *
 * A fused run whose steps set, copy or map components of its segment's
 * fields (e.g. the five OBX steps of examples/lab-to-ehr), or write a whole
 * field no other step of the run uses (a `set` value, a `format_date`: the
 * MSH-5/6 and OBR-7 steps) is, for one occurrence, a fixed function of the
 * fields the occurrence has when the run starts.  cad__recipe_plan() works
 * that function out from the steps, once, when the routes are compiled: a
 * short list of values computed per occurrence (registers: a `map` of a
 * value, a `format_date` of a field, a `set` value that needs escaping) and,
 * for every field written, where each component comes from (a component as
 * read, a constant, a register).  cad__recipe_apply() takes each field apart
 * once, computes the registers in order, and writes every field it changes:
 * straight into the output when the overlay applies the recipe while writing
 * it (cad__step_t.defer, cad__segw_t), else as components into the overlay
 * (routes_overlay.c) or joined into the tree.
 *
 * Why the result is what applying the steps in order gives (comps_steps() and
 * fused_step() in routes_steps.c, themselves checked against the step-by-step
 * path):
 *   - each step's effect on a component is recorded symbolically in step
 *     order, so a step reads what earlier steps of the run wrote;
 *   - a component beyond those the field has reads as empty text, which is
 *     what a copy of it writes and what a map leaves alone (a padded
 *     component is empty too);
 *   - a field written by a `set` or a copy has afterwards max(components it
 *     had, highest component written) components; a `map` never adds one;
 *   - a field is put back when a `set` or a copy writes it, or a `map` or a
 *     `format_date` changed it (as comps_steps() marks it dirty).
 * Whatever the recipe cannot do as those would (a field of more than
 * CAD__WS_COMPS components, a code a `default: reject` map refuses, a value
 * that does not decode, a date that is not one) returns CAD__REDO, and the
 * route is applied step by step, which reports errors.  The recipe runs only
 * on segments with the standard delimiters; others take comps_steps().  The
 * tests (tests/unit/routes/test_recipe.c) and the route fuzzer compare with
 * the step-by-step path (cad_routes_set_stepwise).
 */
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cad_error.h"
#include "routes_int.h"

#define MAX_REGS 32 /* values computed per occurrence (one per step at most) */

/* Where a component's value comes from: a component of a field of the
 * occurrence as read, a constant (a `set` value that needs no escaping), or
 * a register computed per occurrence. */
enum { V_ORIG = 1, V_CONST, V_REG };
typedef struct val {
  uint8_t kind;
  uint8_t slot; /* V_ORIG: the field */
  uint16_t i;   /* V_ORIG: the component, 0-based (may be beyond the
                   field's: empty); V_CONST: index in consts[]; V_REG */
  uint16_t x;   /* where an occurrence's run finds it (vtab_t) */
} val_t;

/* An occurrence's values in one table, so that reading one is two loads
 * and no branch on its kind: component i of slot s at s * CAD__WS_COMPS + i
 * (components beyond the field's read as empty, up to the recipe's nref),
 * constant k at VT_CONST + k, register k at VT_REG + k. */
#define VT_CONST (CAD__WS_FIELDS * CAD__WS_COMPS)
#define VT_REG (VT_CONST + MAX_REGS)
#define VT_N (VT_REG + MAX_REGS)

/* A register: a `map` of a value, a `set` value escaped per occurrence, or
 * a `format_date` of a whole field. */
enum { R_MAP = 1, R_CONST, R_DATE };
typedef struct rop {
  uint8_t kind;
  uint8_t slot;          /* R_MAP, R_DATE: the field it writes */
  val_t arg;             /* R_MAP: the value it maps */
  const cad__step_t *st; /* the step */
} rop_t;

/* A field the run writes. */
typedef struct rout {
  uint8_t slot;
  bool whole; /* one step writes the whole field: its text is `text` */
  val_t text;
  bool always;     /* a `set` or a copy writes it: put back whatever happens */
  uint32_t nmin;   /* components it has at least afterwards */
  uint32_t nlay;   /* component k + 1 (k < nlay) is lay[k]; the others stay
                    as read */
  uint32_t norig;  /* lay[] values that are components as read */
  uint32_t nreg;   /* lay[] values that are registers (one may be laid twice) */
  size_t constlen; /* the length of the lay[] values that are constants */
  val_t lay[CAD__WS_COMPS];
} rout_t;

struct cad__recipe {
  cad__recipe_head_t h; /* first: cad__recipe_hint() */
  uint32_t nops, nouts, nslots, nconsts;
  int field[CAD__WS_FIELDS];     /* the field of each slot */
  bool whole[CAD__WS_FIELDS];    /* a slot written whole: read as text, not split */
  uint32_t nref[CAD__WS_FIELDS]; /* components of each slot read (as read) */
  rop_t *ops;
  rout_t *outs;
  cad_str_t *consts;
};

/* ---- taking a field apart ----------------------------------------------- */

int cad__split_comps(cad_str_t t, const char *limit, char cs, char rs, const char **cp, size_t *cl,
                     uint32_t *np, cad_str_t *rest) {
  const char *a = t.p, *q = t.p, *end = t.p + t.len;
  uint32_t n = 0;
  /* A separator that is not declared (0) splits nothing; where a byte could
   * be both, it is the component separator. */
#if defined(__SSE2__)
  /* 16 bytes at a time while [q, q + 16) is readable (limit). */
  if (cs && rs && limit) {
    const __m128i vc = _mm_set1_epi8(cs), vr = _mm_set1_epi8(rs);
    while (q < end && limit - q >= 16) {
      __m128i x = _mm_loadu_si128((const __m128i *)(const void *)q);
      unsigned m =
          (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, vc), _mm_cmpeq_epi8(x, vr)));
      size_t left = (size_t)(end - q);
      if (left < 16) m &= (1u << left) - 1;
      for (; m; m &= m - 1) {
        const char *h = q + __builtin_ctz(m);
        if (*h != cs) {
          q = h;
          goto done;
        }
        if (n == CAD__WS_COMPS - 1) return CAD__REDO;
        cp[n] = a;
        cl[n++] = (size_t)(h - a);
        a = h + 1;
      }
      q += left < 16 ? left : 16;
    }
  }
#else
  (void)limit;
#endif
  if (cs && rs) {
    for (; q < end; q++) {
      char c = *q;
      if (c == cs) {
        if (n == CAD__WS_COMPS - 1) return CAD__REDO;
        cp[n] = a;
        cl[n++] = (size_t)(q - a);
        a = q + 1;
      } else if (c == rs) {
        break;
      }
    }
  } else {
    for (; q < end; q++) {
      if (*q == rs && rs) break;
      if (*q != cs || !cs) continue;
      if (n == CAD__WS_COMPS - 1) return CAD__REDO;
      cp[n] = a;
      cl[n++] = (size_t)(q - a);
      a = q + 1;
    }
  }
#if defined(__SSE2__)
done:
#endif
  cp[n] = a;
  cl[n++] = (size_t)(q - a);
  *rest = (cad_str_t){q, (size_t)(end - q)};
  *np = n;
  return 0;
}

/* ---- compiling ---------------------------------------------------------- */

typedef struct plan {
  rop_t ops[MAX_REGS];
  uint32_t nops, nconsts;
  cad_str_t consts[MAX_REGS];
  val_t now[CAD__WS_FIELDS][CAD__WS_COMPS]; /* what a component holds; kind 0:
                                               as read */
  uint32_t nmin[CAD__WS_FIELDS], nlay[CAD__WS_FIELDS];
  bool written[CAD__WS_FIELDS], always[CAD__WS_FIELDS], used[CAD__WS_FIELDS];
  bool whole[CAD__WS_FIELDS]; /* written whole by its only step */
  val_t text[CAD__WS_FIELDS]; /* whole: the text written */
  int field[CAD__WS_FIELDS];
  uint32_t nslots;
} plan_t;

/* A new register; kind 0 when there is no room. */
static val_t new_reg(plan_t *p, rop_t op) {
  if (p->nops == MAX_REGS) return (val_t){0, 0, 0, 0};
  p->ops[p->nops] = op;
  uint16_t k = (uint16_t)p->nops++;
  return (val_t){V_REG, 0, k, (uint16_t)(VT_REG + k)};
}

/* What component c (1-based) of slot s holds now. */
static val_t value_of(plan_t *p, int s, uint32_t c) {
  if (c <= CAD__WS_COMPS && p->now[s][c - 1].kind) return p->now[s][c - 1];
  return (val_t){V_ORIG, (uint8_t)s, (uint16_t)(c - 1), (uint16_t)(s * CAD__WS_COMPS + (int)c - 1)};
}

/* Slot s holds field `field` and is used by a component-level step: false
 * when a step writes it whole. */
static bool use_slot(plan_t *p, int s, int field) {
  p->field[s] = field;
  p->used[s] = true;
  if ((uint32_t)s + 1 > p->nslots) p->nslots = (uint32_t)s + 1;
  return !p->whole[s];
}

/* A `set` value: a constant when it needs no escaping, else a register. */
static val_t set_value(plan_t *p, const cad__step_t *st) {
  if (st->value_std_plain && p->nconsts < MAX_REGS) {
    p->consts[p->nconsts] = st->value;
    uint16_t k = (uint16_t)p->nconsts++;
    return (val_t){V_CONST, 0, k, (uint16_t)(VT_CONST + k)};
  }
  return new_reg(p, (rop_t){.kind = R_CONST, .st = st});
}

/* A step that writes a whole field (rep 0: fusable_target() in
 * routes_steps.c), a `set` value or a `format_date`: the only step of the
 * run that uses that field. */
static bool plan_whole(plan_t *p, const cad__step_t *st) {
  int s = st->slot;
  if (s < 0 || s >= CAD__WS_FIELDS || p->used[s] || st->path.p.rep != 0) return false;
  val_t v;
  if (st->kind == S_SET_VALUE) v = set_value(p, st);
  else if (st->kind == S_DATE)
    v = new_reg(p, (rop_t){.kind = R_DATE, .slot = (uint8_t)s, .st = st});
  else return false;
  if (!v.kind) return false;
  use_slot(p, s, st->path.p.field);
  p->whole[s] = p->written[s] = true;
  p->always[s] = st->kind == S_SET_VALUE;
  p->text[s] = v;
  return true;
}

/* One step into the plan: false when it does not fit. */
static bool plan_step(plan_t *p, const cad__step_t *st) {
  int s = st->slot;
  uint32_t c = (uint32_t)st->path.p.comp;
  if (c == 0 && !st->cop) return plan_whole(p, st);
  if (s < 0 || s >= CAD__WS_FIELDS || c == 0 || c > CAD__WS_COMPS) return false;
  if (!use_slot(p, s, st->path.p.field)) return false;
  val_t v;
  switch (st->cop) {
    case COP_SET: v = set_value(p, st); break;
    case COP_COPY: {
      const cad__tpart_t *tp = &st->tpl.parts[0];
      if (tp->slot < 0 || tp->slot >= CAD__WS_FIELDS || tp->path.p.comp <= 0 ||
          tp->path.p.comp > 65535)
        return false;
      if (!use_slot(p, tp->slot, tp->path.p.field)) return false;
      v = value_of(p, tp->slot, (uint32_t)tp->path.p.comp);
      break;
    }
    case COP_MAP:
      if (!st->table) return false; /* a table that was not found: the routes are refused */
      v = new_reg(p,
                  (rop_t){.kind = R_MAP, .slot = (uint8_t)s, .arg = value_of(p, s, c), .st = st});
      break;
    default: return false;
  }
  if (!v.kind) return false;
  p->now[s][c - 1] = v;
  p->written[s] = true;
  if (c > p->nlay[s]) p->nlay[s] = c;
  if (st->cop != COP_MAP) {
    p->always[s] = true;
    if (c > p->nmin[s]) p->nmin[s] = c;
  }
  return true;
}

void cad__recipe_plan(cad__step_t *st, size_t n, cad_arena_t *a) {
  st->recipe = NULL;
  if (n == 0) return;
  plan_t plan, *p = &plan;
  memset(p, 0, sizeof *p);
  for (size_t k = 0; k < n; k++)
    if (!plan_step(p, &st[k])) return;
  struct cad__recipe *r = cad_arena_alloc(a, sizeof *r);
  if (!r) return;
  memset(r, 0, sizeof *r);
  r->nops = p->nops;
  r->nslots = p->nslots;
  r->nconsts = p->nconsts;
  memcpy(r->field, p->field, sizeof r->field);
  memcpy(r->whole, p->whole, sizeof r->whole);
  for (uint32_t s = 0; s < p->nslots; s++) r->nouts += p->written[s];
  r->ops = cad_arena_alloc(a, (p->nops + 1) * sizeof *r->ops);
  r->outs = cad_arena_alloc(a, r->nouts * sizeof *r->outs);
  r->consts = cad_arena_alloc(a, (p->nconsts + 1) * sizeof *r->consts);
  if (!r->ops || !r->outs || !r->consts) return;
  memcpy(r->ops, p->ops, p->nops * sizeof *r->ops);
  for (uint32_t k = 0; k < p->nconsts; k++) {
    /* Padded (CAD__PAD), for the output's fixed-size moves. */
    char *c = cad_arena_alloc(a, p->consts[k].len + CAD__PAD);
    if (!c) return;
    if (p->consts[k].len) memcpy(c, p->consts[k].p, p->consts[k].len); /* an empty one: NULL */
    memset(c + p->consts[k].len, 0, CAD__PAD);
    r->consts[k] = (cad_str_t){c, p->consts[k].len};
  }
  /* What an occurrence may add (a hint for the output's size): values at
   * most three times as long once escaped, and separators. */
  for (uint32_t i = 0; i < p->nops; i++) {
    const cad__step_t *t = p->ops[i].st;
    size_t most = t->value.len;
    if (p->ops[i].kind == R_MAP && t->table)
      for (size_t k = 0; k < t->table->n; k++)
        most = t->table->vlen[k] > most ? t->table->vlen[k] : most;
    if (p->ops[i].kind == R_DATE) most = (t->fmt ? strlen(t->fmt) * 6 : 0) + 40;
    r->h.extra += most * 3;
  }
  for (uint32_t k = 0; k < p->nconsts; k++) r->h.extra += p->consts[k].len;
  for (uint32_t s = 0; s < p->nslots; s++) {
    r->h.extra += p->nlay[s];
    for (uint32_t c = 0; c < p->nlay[s]; c++) r->h.nrefs += p->now[s][c].kind == V_ORIG;
  }
  /* The fields written in ascending order (the output is written in that
   * order, routes_overlay.c). */
  int order[CAD__WS_FIELDS];
  uint32_t no = 0;
  for (uint32_t s = 0; s < p->nslots; s++) {
    if (!p->written[s]) continue;
    uint32_t j = no++;
    for (; j > 0 && p->field[order[j - 1]] > p->field[s]; j--) order[j] = order[j - 1];
    order[j] = (int)s;
  }
  rout_t *o = r->outs;
  for (uint32_t j = 0; j < no; j++) {
    uint32_t s = (uint32_t)order[j];
    memset(o, 0, sizeof *o);
    o->slot = (uint8_t)s;
    o->whole = p->whole[s];
    o->text = p->text[s];
    o->always = p->always[s];
    o->nmin = p->nmin[s];
    o->nlay = p->nlay[s];
    for (uint32_t c = 0; c < o->nlay; c++) {
      val_t v = o->lay[c] = value_of(p, (int)s, c + 1);
      if (v.kind == V_ORIG && v.i + 1u > r->nref[v.slot]) r->nref[v.slot] = v.i + 1u;
      o->norig += v.kind == V_ORIG;
      o->nreg += v.kind == V_REG;
      if (v.kind == V_CONST) o->constlen += p->consts[v.i].len;
    }
    o++;
  }
  for (uint32_t i = 0; i < p->nops; i++) {
    val_t v = p->ops[i].arg;
    if (p->ops[i].kind == R_MAP && v.kind == V_ORIG && v.i + 1u > r->nref[v.slot])
      r->nref[v.slot] = v.i + 1u;
  }
  st->recipe = r;
}

/* ---- applying ----------------------------------------------------------- */

/* Components and register values are kept as separate pointer and length
 * arrays, not as cad_str_t: a 16-byte load of a pair just written as two
 * 8-byte stores cannot be forwarded from the store buffer and stalls the
 * CPU, which was most of the time such a run took. */

/* A field of the occurrence, taken apart (its components in the vtab_t,
 * below) or as text, when written whole. */
typedef struct rfield {
  cad_str_t text; /* whole: the field's text */
  bool present;   /* whole: the occurrence has the field */
  uint32_t ncomp;
  uint32_t padded; /* bit k: component k is padded (CAD__PAD) */
  cad_str_t rest;
  size_t len; /* the length of the field's text */
} rfield_t;

/* The values of one occurrence (see VT_CONST): pointer, length and padded
 * (CAD__PAD) apart. */
typedef struct vtab {
  const char *p[VT_N];
  size_t n[VT_N];
  bool pad[VT_N];
} vtab_t;

/* Field `field` of segment `seg` as the run starts: as an earlier run left
 * it (overlay), else as the segment has it (an absent field is empty); its
 * components to cp[], cl[]. */
static int load(cad__ev_t *e, uint32_t seg, int field, bool whole, rfield_t *f, const char **cp,
                size_t *cl) {
  const cad_hl7_seg_t *s = &e->m->segs[seg];
  cad_str_t t = {"", 0};
  const cad__fedit_t *ed = e->ov ? cad__overlay_get(e->ov, seg, field) : NULL;
  if (whole) {
    /* Left as components by an earlier run: not joined here (rare). */
    if (ed && ed->ncomp) return CAD__REDO;
    f->present = ed || cad_hl7_field(s, field, &t);
    f->text = ed ? ed->text : f->present ? t : (cad_str_t){"", 0};
    f->len = f->text.len;
    return 0;
  }
  if (ed && ed->ncomp) {
    f->ncomp = ed->ncomp;
    f->padded = ed->padded;
    for (uint32_t k = 0; k < ed->ncomp; k++) {
      cp[k] = ed->comp[k].p;
      cl[k] = ed->comp[k].len;
    }
    f->rest = ed->rest;
    f->len = ed->len;
    return 0;
  }
  f->padded = 0;
  if (ed) t = ed->text;
  else if (!cad_hl7_field(s, field, &t)) t = (cad_str_t){"", 0};
  f->len = t.len;
  /* Text inside the message as received may be read up to its end. */
  return cad__split_comps(t, cad__input_limit(e->m, t.p), s->d.comp, s->d.rep, cp, cl, &f->ncomp,
                          &f->rest);
}

/* No byte of the key's words is 0x80 or above, none is e8's byte (e8: a
 * byte repeated); both words at once, without a branch between them. */
static inline bool plain_words(cad__kw_t kw, uint64_t e8) {
  const uint64_t ones = 0x0101010101010101ull;
  uint64_t x0 = kw.w[0] ^ e8, x1 = kw.w[1] ^ e8;
  uint64_t bad = kw.w[0] | kw.w[1] | ((x0 - ones) & ~x0) | ((x1 - ones) & ~x1);
  return !(bad & 0x8080808080808080ull);
}

/* R_MAP: the new value of (*vp, *vl) (what comp_map() in routes_steps.c
 * writes), or the value left as it is; *changed when it writes.  in16:
 * 16 bytes may be read at *vp. */
static int map_value(cad__ev_t *e, const cad__step_t *st, const cad_hl7_delims_t *d,
                     const char **vp, size_t *vl, bool in16, bool *padded, bool *changed) {
  const char *p = *vp;
  size_t n = *vl;
  /* Only a value is mapped (not empty, not the null ""). */
  if (n == 0 || (n == 2 && p[0] == '"' && p[1] == '"')) return 0;
  cad_str_t v = {p, n}, nv;
  /* ASCII without the escape character is its own value.  A key of up to
   * 16 bytes that may be read whole is checked and looked up as words (a
   * byte past it is 0: not the escape character, recipes running only with
   * the standard delimiters). */
  const bool words = n <= 16 && in16;
  cad__kw_t kw = {{0, 0}};
  bool plain = true;
  if (words) {
    kw = cad__key_words(p, n);
    plain = plain_words(kw, (unsigned char)d->esc * 0x0101010101010101ull);
  } else {
    for (size_t i = 0; i < n; i++) plain &= (unsigned char)p[i] < 0x80 && p[i] != d->esc;
  }
  if (!plain) {
    cad_hl7_match_t mt = {.raw = v, .present = true, .d = d};
    if (!cad_hl7_value(&st->path.p, &mt, e->a, &v)) return CAD__REDO;
  }
  bool found = plain && words ? cad__table_get_kw(st->table, kw, n, &nv)
                              : cad__table_get(st->table, v.p, v.len, &nv);
  if (!found) {
    if (st->dflt == DFLT_KEEP) return 0;
    if (st->dflt == DFLT_EMPTY) nv = (cad_str_t){"", 0};
    else if (st->dflt == DFLT_VALUE) nv = st->value;
    else return CAD__REDO; /* reject: reported by the stepwise path */
  }
  bool as_is = st->dflt == DFLT_VALUE ? st->value_std_plain && st->table->vals_std_plain
                                      : st->table->vals_std_plain;
  const char *was = nv.p;
  if (!as_is && cad_hl7_encode(d, nv, e->a, &nv)) return CAD__REDO;
  *vp = nv.p;
  *vl = nv.len;
  *padded = found && nv.p == was; /* a table value, as it is */
  *changed = true;
  return 0;
}

/* R_DATE: the field's text as `format_date` st writes it (what fused_step()
 * in routes_steps.c writes); left as it is when it holds no value.  A
 * value that is not a date (cad_hl7_dtm_parse() takes digits, '.', '+' and
 * '-' only: no delimiter, escape or byte of 0x80 and above) is left to the
 * step-by-step path, which reports it. */
static int date_value(cad__ev_t *e, const cad__step_t *st, const cad_hl7_delims_t *d,
                      const rfield_t *f, const char **vp, size_t *vl, bool *changed) {
  cad_str_t t = f->text, nv;
  *vp = t.p;
  *vl = t.len;
  if (!f->present || t.len == 0 || (t.len == 2 && t.p[0] == '"' && t.p[1] == '"')) return 0;
  cad_hl7_dtm_t tm;
  if (!cad_hl7_dtm_parse(t.p, t.len, &tm)) return CAD__REDO;
  *changed = true;
  if (st->date_mode == DATE_PRECISION && tm.prec >= st->precision && !tm.has_tz) {
    /* Every part up to the precision is there, as fixed-width digits at
     * the start of the text, and no zone follows: cad__date_format() would
     * write those digits again. */
    *vl = 2 + 2 * (size_t)st->precision;
    return 0;
  }
  if (cad__date_format(e, st, &tm, &nv) || cad_hl7_encode(d, nv, e->a, &nv)) return CAD__REDO;
  *vp = nv.p;
  *vl = nv.len;
  return 0;
}

/* The text of value v in the occurrence; returns whether it is padded. */
static inline bool value(const vtab_t *t, val_t v, const char **p, size_t *n) {
  *p = t->p[v.x];
  *n = t->n[v.x];
  return t->pad[v.x];
}

/* Where cad__recipe_apply() puts a field when it is given no writer: into
 * the overlay (its components copied to the arena), or joined into the
 * tree.  comp[0..n) joined by cs, then rest (n == 0: rest alone), len bytes
 * in all; bit k of padded: comp[k] is padded. */
static int put_back(cad__ev_t *e, uint32_t seg, int field, const cad_str_t *comp, uint32_t n,
                    uint32_t padded, char cs, cad_str_t rest, size_t len) {
  if (n == 0 && e->ov) return cad__overlay_put(e->ov, e->a, seg, field, rest);
  if (e->ov) {
    cad_str_t *c = cad_arena_alloc(e->a, n * sizeof *c);
    if (!c) return CAD_E_NOMEM;
    memcpy(c, comp, n * sizeof *c);
    return cad__overlay_put_comps(e->ov, e->a, seg, field, c, n, padded, cs, rest, len);
  }
  char *b = cad_arena_alloc(e->a, len + 1), *o = b;
  if (!b) return CAD_E_NOMEM;
  for (uint32_t k = 0; k < n; k++) {
    if (k) *o++ = cs;
    o += cad_copy_small(o, comp[k].p, comp[k].len);
  }
  o += cad_copy_small(o, rest.p, rest.len);
  cad_hl7_path_t whole = {.field = field};
  int rc = cad_hl7_seg_set(e->m, seg, &whole, 0, b, (size_t)(o - b), CAD_HL7_SET_RAW);
  return rc < 0 ? rc : 0;
}

/* The length of field o's text as written: n components, of which the
 * first nlay laid by the recipe and the rest up to src's kept as read, then
 * src's rest. */
static size_t out_len(const vtab_t *t, const rout_t *o, const rfield_t *src, uint32_t n,
                      uint32_t nlay) {
  const uint32_t b = o->slot * CAD__WS_COMPS;
  size_t len = n - 1 + src->rest.len;
  uint32_t c = 0;
  for (; c < nlay; c++) len += t->n[o->lay[c].x];
  for (; c < src->ncomp; c++) len += t->n[b + c];
  return len;
}

/* Field o of the recipe, as components, through put_back(). */
static int put_back_comps(cad__ev_t *e, const vtab_t *t, const rout_t *o, const rfield_t *src,
                          uint32_t seg, int field, char cs) {
  const uint32_t b = o->slot * CAD__WS_COMPS;
  uint32_t n = o->nmin > src->ncomp ? o->nmin : src->ncomp, padded = 0;
  cad_str_t comp[CAD__WS_COMPS];
  uint32_t c = 0, nlay = o->nlay < n ? o->nlay : n; /* a map beyond them adds none */
  for (; c < nlay; c++) padded |= (uint32_t)value(t, o->lay[c], &comp[c].p, &comp[c].len) << c;
  for (; c < src->ncomp; c++)
    padded |= (uint32_t)value(t, (val_t){.x = (uint16_t)(b + c)}, &comp[c].p, &comp[c].len) << c;
  for (; c < n; c++) comp[c].p = "", comp[c].len = 0;
  return put_back(e, seg, field, comp, n, padded, cs, src->rest, out_len(t, o, src, n, nlay));
}

int cad__recipe_apply(cad__ev_t *e, const struct cad__recipe *r, uint32_t seg, cad__segw_t *g) {
  const cad_hl7_delims_t *d = &e->m->segs[seg].d;
  const cad__inrange_t ir = cad__inrange_of(e->m);
  rfield_t f[CAD__WS_FIELDS];
  vtab_t t; /* only what the recipe reads is set */
  bool dirty[CAD__WS_FIELDS] = {false};
  size_t flen = 0, regs = 0; /* the longest field loaded; the registers' lengths */
  for (uint32_t s = 0; s < r->nslots; s++) {
    const uint32_t b = s * CAD__WS_COMPS;
    if (load(e, seg, r->field[s], r->whole[s], &f[s], &t.p[b], &t.n[b])) return CAD__REDO;
    flen = f[s].len > flen ? f[s].len : flen;
    if (r->whole[s]) continue;
    uint32_t nc = f[s].ncomp;
    if (f[s].padded)
      for (uint32_t k = 0; k < nc; k++) t.pad[b + k] = (f[s].padded >> k) & 1;
    else memset(&t.pad[b], 0, CAD__WS_COMPS); /* one move: components are few and vary */
    for (uint32_t k = nc; k < r->nref[s]; k++)
      t.p[b + k] = "", t.n[b + k] = 0, t.pad[b + k] = false;
  }
  for (uint32_t k = 0; k < r->nconsts; k++) {
    t.p[VT_CONST + k] = r->consts[k].p;
    t.n[VT_CONST + k] = r->consts[k].len;
    t.pad[VT_CONST + k] = true;
  }
  for (uint32_t i = 0; i < r->nops; i++) {
    const rop_t *op = &r->ops[i];
    const uint32_t x = VT_REG + i;
    bool changed = false;
    if (op->kind == R_MAP) {
      t.pad[x] = value(&t, op->arg, &t.p[x], &t.n[x]);
      bool in16 = t.pad[x] | ((uintptr_t)t.p[x] - ir.in <= ir.lim);
      if (map_value(e, op->st, d, &t.p[x], &t.n[x], in16, &t.pad[x], &changed)) return CAD__REDO;
      dirty[op->slot] |= changed;
    } else if (op->kind == R_DATE) {
      t.pad[x] = false;
      if (date_value(e, op->st, d, &f[op->slot], &t.p[x], &t.n[x], &changed)) return CAD__REDO;
      dirty[op->slot] |= changed;
    } else {
      cad_str_t v;
      if (cad_hl7_encode(d, op->st->value, e->a, &v)) return CAD__REDO;
      t.p[x] = v.p;
      t.n[x] = v.len;
      t.pad[x] = false;
    }
    regs += t.n[x];
  }
  const char cs = d->comp;
  for (uint32_t k = 0; k < r->nouts; k++) {
    const rout_t *o = &r->outs[k];
    if (!o->always && !dirty[o->slot]) continue;
    const int field = r->field[o->slot];
    if (o->whole) {
      cad_str_t v;
      bool pad = value(&t, o->text, &v.p, &v.len);
      if (!g) {
        if (put_back(e, seg, field, NULL, 0, pad, cs, v, v.len)) return CAD__REDO;
        continue;
      }
      char *w = cad__segw_begin_n(g, field, v.len);
      if (!w) return CAD__REDO;
      cad__segw_end(g, cad__put_piece(w, v.p, v.len, pad, ir));
      continue;
    }
    const rfield_t *src = &f[o->slot];
    if (!g) {
      if (put_back_comps(e, &t, o, src, seg, field, cs)) return CAD__REDO;
      continue;
    }
    /* Written straight into the output: components laid by the recipe,
     * then those it keeps as read, then empty ones up to n, then the rest
     * of the field. */
    const uint32_t b = o->slot * CAD__WS_COMPS, nc = src->ncomp;
    const uint32_t n = o->nmin > nc ? o->nmin : nc;
    const uint32_t nlay = o->nlay < n ? o->nlay : n; /* a map beyond them adds none; >= 1 */
    uint32_t c;
    size_t room;
    char *w = cad__segw_begin(g, field, &room);
    if (!w) return CAD__REDO;
    /* At most: each component as read no longer than its field, the field
     * itself for those kept and the rest, the constants, each register no
     * longer than all of them, a separator per component.  When the output has less room than that,
     * it grows by what the field really takes, not by the bound (copies of
     * a long field would otherwise ask for a multiple of it). */
    if (room < flen * (o->norig + 1) + o->constlen + regs * o->nreg + n &&
        !(w = cad__segw_reserve(g, out_len(&t, o, src, n, nlay))))
      return CAD__REDO;
    uint16_t x = o->lay[0].x;
    w = cad__put_piece(w, t.p[x], t.n[x], t.pad[x], ir);
    for (c = 1; c < nlay; c++) {
      x = o->lay[c].x;
      *w++ = cs;
      w = cad__put_piece(w, t.p[x], t.n[x], t.pad[x], ir);
    }
    for (; c < nc; c++) {
      *w++ = cs;
      w = cad__put_piece(w, t.p[b + c], t.n[b + c], t.pad[b + c], ir);
    }
    for (; c < n; c++) *w++ = cs;
    cad__segw_end(g, cad__put_piece(w, src->rest.p, src->rest.len, false, ir));
  }
  return 0;
}
