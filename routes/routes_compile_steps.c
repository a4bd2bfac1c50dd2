/* routes_compile_steps.c - transform steps (set, copy, map, ...) from YAML
 * to cad__step_t, with positioned errors (routes_compile_int.h). */
#include "routes_compile_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"

/* ---- transforms --------------------------------------------------------- */

typedef struct {
  const char *name;
  cad__step_kind_t kind;
  const char *opts; /* allowed option keys, space separated */
} action_t;

static const action_t actions[] = {
    {"set", S_SET_VALUE, "value template"},
    {"copy", S_SET_TEMPLATE, "to"},
    {"move", S_MOVE, "to"},
    {"clear", S_CLEAR, ""},
    {"map", S_MAP, "table default"},
    {"replace", S_REPLACE, "pattern with"},
    {"upper", S_UPPER, ""},
    {"lower", S_LOWER, ""},
    {"trim", S_TRIM, ""},
    {"format_date", S_DATE, "precision format"},
    {"delete", S_DELETE, "when"},
    {"add", S_ADD, "after"},
    {"rename", S_RENAME, "to"},
    {"version", S_SET_VALUE, ""},
    {"select", S_SELECT, "where missing"},
};
#define NACTIONS (sizeof actions / sizeof actions[0])
#define ACTIONS_LIST                                                                             \
  "set, copy, move, clear, map, replace, upper, lower, trim, format_date, delete, add, rename, " \
  "version, select"

static bool has_word(const char *list, const char *w) {
  size_t n = strlen(w);
  for (const char *p = list; *p;) {
    const char *sp = strchr(p, ' ');
    size_t l = sp ? (size_t)(sp - p) : strlen(p);
    if (l == n && memcmp(p, w, n) == 0) return true;
    p += l;
    if (*p) p++;
  }
  return false;
}

static const char *const precisions[] = {"year", "month", "day", "hour", "minute", "second"};

/* The step's action (exactly one) and no key its action does not take.
 * Returns NULL (reported) when the step is wrong. */
static const action_t *find_action(comp_t *c, const cad_yaml_node_t *n,
                                   const cad_yaml_node_t **av) {
  char q[CAD_YAML_QUOTE_CAP];
  if (n->type != CAD_YAML_MAPPING) {
    ERR(c, n, "a transform step must be a mapping like { set: MSH-5, value: EHR }, not %s",
        cad_yaml_type_name(n));
    return NULL;
  }
  const action_t *act = NULL;
  for (size_t i = 0; i < n->n; i++) {
    for (size_t a = 0; a < NACTIONS; a++) {
      if (strcmp(n->pairs[i].key->str, actions[a].name) == 0) {
        if (act) {
          ERR(c, n->pairs[i].key, "one action per step: '%s' and '%s' are both here", act->name,
              actions[a].name);
          return NULL;
        }
        act = &actions[a];
        *av = n->pairs[i].value;
      }
    }
  }
  if (!act) {
    ERR(c, n, "a transform step needs an action (one of: " ACTIONS_LIST ")");
    return NULL;
  }
  bool ok = true;
  for (size_t i = 0; i < n->n; i++) {
    const cad_yaml_node_t *k = n->pairs[i].key;
    if (strcmp(k->str, act->name) == 0) continue;
    if (!has_word(act->opts, k->str)) {
      ERR(c, k, "unknown key '%s' in a '%s' step (expected%s%s)",
          cad_yaml_quote(q, sizeof q, k->str, k->len), act->name,
          *act->opts ? ": " : " no other key", act->opts);
      ok = false;
    }
  }
  return ok ? act : NULL;
}

/* set (value or template) and version. */
static bool step_set(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                     const action_t *act, cad__step_t *st) {
  if (strcmp(act->name, "version") == 0) {
    if (!cad__comp_want_scalar(c, av, "'version'")) return false;
    cad_hl7_path_parse("MSH-12", 6, &st->path.p, NULL, NULL);
    strcpy(st->path.text, "MSH-12");
    st->value.p = cad__comp_dupn(c, av->str, av->len);
    st->value.len = av->len;
    return st->value.p != NULL;
  }
  if (!cad__comp_want_target(c, av, &st->path)) return false;
  const cad_yaml_node_t *val = cad_yaml_get(n, "value"), *tpl = cad_yaml_get(n, "template");
  if (!!val == !!tpl) {
    ERR(c, n,
        "'set' needs exactly one of 'value' (a literal, escaped when written) or "
        "'template' (ER7 text with ${PATH} references)");
    return false;
  }
  if (val) {
    if (val->type != CAD_YAML_SCALAR) {
      ERR(c, val, "'value' must be a string, not %s", cad_yaml_type_name(val));
      return false;
    }
    st->value.len = cad_yaml_is_null(val) && !val->quoted ? 0 : val->len;
    st->value.p = cad__comp_dupn(c, val->str, st->value.len);
    return st->value.p != NULL;
  }
  st->kind = S_SET_TEMPLATE;
  return cad__comp_want_template(c, tpl, &st->tpl);
}

/* copy and move: FROM, to: PATH. */
static bool step_copy(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                      const action_t *act, cad__step_t *st) {
  const cad_yaml_node_t *o;
  cad__rpath_t from;
  if (!cad__comp_want_path(c, av, &from)) return false;
  if (from.p.field == 0) {
    ERR(c, av, "'%s' copies a field or a part of one, not a whole segment", act->name);
    return false;
  }
  o = cad_yaml_get(n, "to");
  if (!o) {
    ERR(c, n, "'%s' needs 'to', the path to write", act->name);
    return false;
  }
  if (!cad__comp_want_target(c, o, &st->path)) return false;
  st->from = from;
  st->tpl.parts = cad__comp_alloc(c, sizeof *st->tpl.parts);
  if (!st->tpl.parts) return false;
  st->tpl.parts[0].is_path = true;
  st->tpl.parts[0].path = from;
  st->tpl.n = 1;
  if (act->kind == S_MOVE && is_header_seg(&from.p) && from.p.field <= 2) {
    ERR(c, av, "%s-1 and %s-2 cannot be moved", from.p.seg, from.p.seg);
    return false;
  }
  return true;
}

/* map: a table and what to do with a code it lacks. */
static bool step_map(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                     cad__step_t *st) {
  const cad_yaml_node_t *o;
  if (!cad__comp_want_target(c, av, &st->path)) return false;
  o = cad_yaml_get(n, "table");
  if (!o) {
    ERR(c, n, "'map' needs 'table', the name of a table under the top-level 'tables'");
    return false;
  }
  if (!(st->table = cad__comp_want_table(c, o))) return false;
  st->dflt = DFLT_KEEP;
  o = cad_yaml_get(n, "default");
  if (o) {
    if (o->type == CAD_YAML_MAPPING && o->n == 1 && strcmp(o->pairs[0].key->str, "value") == 0 &&
        o->pairs[0].value->type == CAD_YAML_SCALAR) {
      st->dflt = DFLT_VALUE;
      st->value.p = cad__comp_dupn(c, o->pairs[0].value->str, o->pairs[0].value->len);
      st->value.len = o->pairs[0].value->len;
      return st->value.p != NULL;
    }
    if (o->type != CAD_YAML_SCALAR) {
      ERR(c, o, "'default' must be keep, empty, reject, a value, or { value: TEXT }");
      return false;
    }
    if (!o->quoted && strcmp(o->str, "keep") == 0) st->dflt = DFLT_KEEP;
    else if (!o->quoted && strcmp(o->str, "empty") == 0) st->dflt = DFLT_EMPTY;
    else if (!o->quoted && strcmp(o->str, "reject") == 0) st->dflt = DFLT_REJECT;
    else {
      st->dflt = DFLT_VALUE;
      st->value.len = cad_yaml_is_null(o) && !o->quoted ? 0 : o->len;
      st->value.p = cad__comp_dupn(c, o->str, st->value.len);
      return st->value.p != NULL;
    }
  }
  return true;
}

/* replace: a regular expression and its replacement. */
static bool step_replace(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                         cad__step_t *st) {
  const cad_yaml_node_t *o;
  if (!cad__comp_want_target(c, av, &st->path)) return false;
  o = cad_yaml_get(n, "pattern");
  if (!o) {
    ERR(c, n, "'replace' needs 'pattern' (a POSIX extended regular expression)");
    return false;
  }
  if (!(st->re = cad__comp_regex(c, o, false))) return false;
  o = cad_yaml_get(n, "with");
  if (!o) {
    ERR(c, n, "'replace' needs 'with' (the replacement; \\1..\\9 insert groups)");
    return false;
  }
  if (o->type != CAD_YAML_SCALAR) {
    ERR(c, o, "'with' must be a string, not %s", cad_yaml_type_name(o));
    return false;
  }
  st->value.len = cad_yaml_is_null(o) && !o->quoted ? 0 : o->len;
  st->value.p = cad__comp_dupn(c, o->str, st->value.len);
  return st->value.p != NULL;
}

/* format_date: to a precision, or with a strftime-like format. */
static bool step_date(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                      cad__step_t *st) {
  if (!cad__comp_want_target(c, av, &st->path)) return false;
  const cad_yaml_node_t *pr = cad_yaml_get(n, "precision"), *fm = cad_yaml_get(n, "format");
  if (!!pr == !!fm) {
    ERR(c, n,
        "'format_date' needs exactly one of 'precision' (year, month, day, hour, "
        "minute, second) or 'format' (like \"%%Y-%%m-%%d\")");
    return false;
  }
  if (pr) {
    if (!cad__comp_want_scalar(c, pr, "'precision'")) return false;
    for (int i = 0; i < 6; i++)
      if (strcmp(pr->str, precisions[i]) == 0) st->precision = i + 1;
    if (!st->precision) {
      ERR(c, pr, "'precision' must be one of: year, month, day, hour, minute, second");
      return false;
    }
    st->date_mode = DATE_PRECISION;
    return true;
  }
  if (!cad__comp_want_scalar(c, fm, "'format'")) return false;
  for (size_t i = 0; i < fm->len; i++) {
    if (fm->str[i] != '%') continue;
    char f = i + 1 < fm->len ? fm->str[i + 1] : 0;
    if (!f || !strchr("YmdHMSz%", f)) {
      cad__err_at(&c->e, fm->file, fm->line, scalar_col(fm, i),
                  "unknown conversion in 'format' (expected %%Y %%m %%d %%H %%M %%S %%z %%%%)");
      return false;
    }
    i++;
  }
  st->date_mode = DATE_FORMAT;
  st->fmt = cad__comp_dupn(c, fm->str, fm->len);
  return st->fmt != NULL;
}

/* delete a segment (not a header), optionally when a condition holds. */
static bool step_delete(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                        cad__step_t *st) {
  const cad_yaml_node_t *o;
  if (!cad__comp_want_segid(c, av, "'delete'", st->seg)) return false;
  if (is_header_text(st->seg)) {
    /* cad_hl7_seg_delete refuses every header segment (the segments
       * after it are written in its delimiters). */
    ERR(c, av, "a header segment (MSH, BHS, FHS) cannot be deleted");
    return false;
  }
  st->segid = cad_hl7_segid(st->seg);
  o = cad_yaml_get(n, "when");
  if (o && !(st->when = cad__comp_cond(c, o, 1))) return false;
  return true;
}

/* add a segment written as an ER7 template, optionally after a segment id. */
static bool step_add(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                     cad__step_t *st) {
  const cad_yaml_node_t *o;
  if (!cad__comp_want_template(c, av, &st->tpl)) return false;
  const cad__tpart_t *p0 = st->tpl.n ? &st->tpl.parts[0] : NULL;
  if (!p0 || p0->is_path || p0->text.len < 3 || !cad__comp_is_segid(p0->text.p, 3) ||
      (p0->text.len > 3 && p0->text.p[3] != '|')) {
    ERR(c, av, "'add' needs a segment in ER7, starting with its id: \"ZPI|1|...\"");
    return false;
  }
  if (is_header_text(p0->text.p)) {
    ERR(c, av, "'add' cannot add a header segment");
    return false;
  }
  for (size_t i = 0; i < st->tpl.n; i++) {
    const cad__tpart_t *tp = &st->tpl.parts[i];
    if (!tp->is_path &&
        (memchr(tp->text.p, '\r', tp->text.len) || memchr(tp->text.p, '\n', tp->text.len))) {
      ERR(c, av, "'add' adds one segment: no line breaks");
      return false;
    }
  }
  o = cad_yaml_get(n, "after");
  if (o) {
    if (!cad__comp_want_segid(c, o, "'after'", st->to)) return false;
    st->has_after = true;
  }
  return true;
}

/* rename a segment (never to or from a header segment). */
static bool step_rename(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                        cad__step_t *st) {
  const cad_yaml_node_t *o;
  if (!cad__comp_want_segid(c, av, "'rename'", st->seg)) return false;
  if (is_header_text(st->seg)) {
    ERR(c, av, "a header segment cannot be renamed");
    return false;
  }
  st->segid = cad_hl7_segid(st->seg);
  o = cad_yaml_get(n, "to");
  if (!o) {
    ERR(c, n, "'rename' needs 'to', the new segment id");
    return false;
  }
  if (!cad__comp_want_segid(c, o, "'to'", st->to)) return false;
  if (is_header_text(st->to)) {
    ERR(c, o, "a segment cannot be renamed to a header segment");
    return false;
  }
  return true;
}

/* select: keep the repetitions of a field whose components hold the given
 * values.  `where` maps component numbers to a value or a list of values. */
static bool step_select(comp_t *c, const cad_yaml_node_t *n, const cad_yaml_node_t *av,
                        cad__step_t *st) {
  if (!cad__comp_want_target(c, av, &st->path)) return false;
  const cad_hl7_path_t *p = &st->path.p;
  if (p->field <= 0 || p->rep != 0 || p->comp != 0 || (is_header_seg(p) && p->field <= 2)) {
    ERR(c, av, "'select' works on a whole field (like PID-3), not on a repetition or a part");
    return false;
  }
  cad__select_t *sel = cad__comp_alloc(c, sizeof *sel);
  if (!sel) return false;
  st->sel = sel;
  const cad_yaml_node_t *w = cad_yaml_get(n, "where");
  if (!w || w->type != CAD_YAML_MAPPING || w->n == 0 || w->n > SELECT_MAX_CRIT) {
    ERR(c, w ? w : n,
        "'select' needs 'where', a mapping of 1 to %d component numbers to values, like "
        "{ 4: EPI, 5: MR }",
        SELECT_MAX_CRIT);
    return false;
  }
  for (size_t i = 0; i < w->n; i++) {
    const cad_yaml_node_t *k = w->pairs[i].key, *v = w->pairs[i].value;
    char *end = NULL;
    long comp = k->type == CAD_YAML_SCALAR ? strtol(k->str, &end, 10) : 0;
    if (!end || *end || comp < 1 || comp > 100) {
      ERR(c, k, "'where' keys are component numbers (1 to 100), like 4");
      return false;
    }
    size_t nv = v->type == CAD_YAML_SEQUENCE ? v->n : 1;
    if (nv == 0 || (v->type != CAD_YAML_SEQUENCE && v->type != CAD_YAML_SCALAR)) {
      ERR(c, v, "a value of 'where' is a string or a list of strings");
      return false;
    }
    cad_str_t *vals = cad__comp_alloc(c, nv * sizeof *vals);
    if (!vals) return false;
    for (size_t j = 0; j < nv; j++) {
      const cad_yaml_node_t *x = v->type == CAD_YAML_SEQUENCE ? v->items[j] : v;
      if (x->type != CAD_YAML_SCALAR) {
        ERR(c, x, "a value of 'where' is a string, not %s", cad_yaml_type_name(x));
        return false;
      }
      vals[j].len = cad_yaml_is_null(x) && !x->quoted ? 0 : x->len;
      if (!(vals[j].p = cad__comp_dupn(c, x->str, vals[j].len))) return false;
    }
    sel->crit[i].comp = (int)comp;
    sel->crit[i].vals = vals;
    sel->crit[i].nvals = nv;
  }
  sel->ncrit = w->n;
  sel->missing = MISSING_KEEP;
  const cad_yaml_node_t *m = cad_yaml_get(n, "missing");
  if (m) {
    if (m->type == CAD_YAML_SCALAR && strcmp(m->str, "keep") == 0) sel->missing = MISSING_KEEP;
    else if (m->type == CAD_YAML_SCALAR && strcmp(m->str, "clear") == 0)
      sel->missing = MISSING_CLEAR;
    else if (m->type == CAD_YAML_SCALAR && strcmp(m->str, "reject") == 0)
      sel->missing = MISSING_REJECT;
    else {
      ERR(c, m, "'missing' must be keep (the field as it was), clear or reject");
      return false;
    }
  }
  return true;
}

bool cad__comp_step(comp_t *c, const cad_yaml_node_t *n, cad__step_t *st, size_t idx) {
  const cad_yaml_node_t *av = NULL;
  const action_t *act = find_action(c, n, &av);
  if (!act) return false;
  st->kind = act->kind;
  switch (act->kind) {
    case S_SET_VALUE: return step_set(c, n, av, act, st);
    case S_SET_TEMPLATE: /* copy */
    case S_MOVE: return step_copy(c, n, av, act, st);
    case S_CLEAR:
    case S_UPPER:
    case S_LOWER:
    case S_TRIM: return cad__comp_want_target(c, av, &st->path);
    case S_MAP: return step_map(c, n, av, st);
    case S_REPLACE: return step_replace(c, n, av, st);
    case S_DATE: return step_date(c, n, av, st);
    case S_DELETE: return step_delete(c, n, av, st);
    case S_ADD: return step_add(c, n, av, st);
    case S_RENAME: return step_rename(c, n, av, st);
    case S_SELECT: return step_select(c, n, av, st);
    default: return false;
  }
}
