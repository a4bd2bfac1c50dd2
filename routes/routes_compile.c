/* routes_compile.c - YAML nodes to compiled routes, with positioned errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"
#include "cad_error.h"
#include "routes_int.h"
#include "routes_compile_int.h"

void *cad__comp_alloc(comp_t *c, size_t n) {
  void *p = cad_arena_alloc(&c->r->arena, n ? n : 1);
  if (!p) c->nomem = true;
  else memset(p, 0, n ? n : 1);
  return p;
}

char *cad__comp_dupn(comp_t *c, const char *s, size_t n) {
  char *p = cad__comp_alloc(c, n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

bool cad__comp_want_scalar(comp_t *c, const cad_yaml_node_t *n, const char *what) {
  if (n && n->type == CAD_YAML_SCALAR && !cad_yaml_is_null(n)) return true;
  if (n) ERR(c, n, "%s must be a string, not %s", what, cad_yaml_type_name(n));
  return false;
}

static int want_bool(comp_t *c, const cad_yaml_node_t *n, const char *what) {
  int b = cad_yaml_bool(n);
  if (b >= 0) return b;
  ERR(c, n, "%s must be " CAD_YAML_BOOL_WORDS, what);
  return -1;
}

static void add_regex(comp_t *c, regex_t *re) {
  cad_routes_t *r = c->r;
  if (r->nregexes == r->regexes_cap) {
    size_t nc = r->regexes_cap ? r->regexes_cap * 2 : 8;
    regex_t **n = realloc(r->regexes, nc * sizeof *n);
    if (!n) {
      regfree(re);
      c->nomem = true;
      return;
    }
    r->regexes = n;
    r->regexes_cap = nc;
  }
  r->regexes[r->nregexes++] = re;
}

/* glibc's regcomp can take gigabytes for patterns such as "a+++++" or
 * many nested repetitions; a configuration must not be able to do that.
 * Refused: patterns over 512 bytes, more than 32 repetition operators, and
 * a repetition operator directly after another one.  Returns a reason or
 * NULL. */
static const char *regex_too_complex(const char *p, size_t n) {
  if (n > 512) return "longer than 512 characters";
  int quantifiers = 0;
  bool prev_quant = false, in_bracket = false;
  for (size_t i = 0; i < n; i++) {
    char ch = p[i];
    if (ch == '\\' && i + 1 < n) {
      i++;
      prev_quant = false;
      continue;
    }
    if (in_bracket) {
      if (ch == ']') in_bracket = false;
      continue;
    }
    if (ch == '[') {
      in_bracket = true;
      if (i + 1 < n && p[i + 1] == ']') i++; /* "[]...]" */
      prev_quant = false;
      continue;
    }
    bool quant = ch == '*' || ch == '+' || ch == '?' || ch == '{';
    if (ch == '{') {
      while (i < n && p[i] != '}') i++;
    }
    if (quant) {
      if (prev_quant) return "a repetition operator right after another one";
      if (++quantifiers > 32) return "more than 32 repetition operators";
    }
    prev_quant = quant;
  }
  return NULL;
}

regex_t *cad__comp_regex(comp_t *c, const cad_yaml_node_t *n, bool nosub) {
  if (!cad__comp_want_scalar(c, n, "a regular expression")) return NULL;
  if (strlen(n->str) != n->len) {
    ERR(c, n, "a regular expression cannot contain a NUL character");
    return NULL;
  }
  const char *why = regex_too_complex(n->str, n->len);
  if (why) {
    ERR(c, n, "regular expression refused: %s (to keep compile time and memory bounded)", why);
    return NULL;
  }
  regex_t *re = cad__comp_alloc(c, sizeof *re);
  if (!re) return NULL;
  int rc = regcomp(re, n->str, REG_EXTENDED | (nosub ? REG_NOSUB : 0));
  if (rc) {
    char msg[160];
    regerror(rc, re, msg, sizeof msg);
    ERR(c, n, "invalid regular expression (POSIX extended): %s", msg);
    return NULL;
  }
  add_regex(c, re);
  return re;
}

bool cad__comp_is_segid(const char *s, size_t n) {
  if (n != 3) return false;
  for (int k = 0; k < 3; k++)
    if (!((s[k] >= 'A' && s[k] <= 'Z') || (s[k] >= '0' && s[k] <= '9'))) return false;
  return true;
}

bool cad__comp_want_segid(comp_t *c, const cad_yaml_node_t *n, const char *what, char out[4]) {
  if (!cad__comp_want_scalar(c, n, what)) return false;
  if (!cad__comp_is_segid(n->str, n->len)) {
    char q[CAD_YAML_QUOTE_CAP];
    ERR(c, n, "%s must be a segment id of 3 capital letters or digits, like NTE, not '%s'", what,
        cad_yaml_quote(q, sizeof q, n->str, n->len));
    return false;
  }
  memcpy(out, n->str, 3);
  out[3] = 0;
  return true;
}

/* Parse path text (at byte `off` of scalar `n`, for error columns). */
static bool parse_rpath(comp_t *c, const cad_yaml_node_t *n, const char *s, size_t len, size_t off,
                        cad__rpath_t *out) {
  size_t epos = 0;
  const char *emsg = NULL;
  char q[CAD_YAML_QUOTE_CAP];
  memset(out, 0, sizeof *out);
  if (cad_hl7_path_parse(s, len, &out->p, &epos, &emsg) != 0) {
    cad__err_at(&c->e, n->file, n->line, scalar_col(n, off + epos), "invalid path '%s': %s",
                cad_yaml_quote(q, sizeof q, s, len), emsg ? emsg : "syntax error");
    return false;
  }
  const char *dash = memchr(s, '-', len);
  size_t segpart = dash ? (size_t)(dash - s) : len;
  out->relative = memchr(s, '[', segpart) == NULL;
  size_t tl = len < sizeof out->text - 1 ? len : sizeof out->text - 1;
  memcpy(out->text, s, tl);
  out->text[tl] = 0;
  return true;
}

bool cad__comp_want_path(comp_t *c, const cad_yaml_node_t *n, cad__rpath_t *out) {
  if (!cad__comp_want_scalar(c, n, "a path")) return false;
  return parse_rpath(c, n, n->str, n->len, 0, out);
}

/* A header id (MSH, BHS, FHS) written as text, at least 3 characters. */

/* A path that a transform writes to. */
bool cad__comp_want_target(comp_t *c, const cad_yaml_node_t *n, cad__rpath_t *out) {
  if (!cad__comp_want_path(c, n, out)) return false;
  if (out->p.field == 0) {
    ERR(c, n, "'%s' names a whole segment; a transform needs a field, like %s-3", out->text,
        out->p.seg);
    return false;
  }
  if (is_header_seg(&out->p) && out->p.field <= 2) {
    ERR(c, n, "%s-1 and %s-2 (the delimiters) cannot be changed", out->p.seg, out->p.seg);
    return false;
  }
  return true;
}

const cad__table_t *cad__comp_want_table(comp_t *c, const cad_yaml_node_t *n) {
  if (!cad__comp_want_scalar(c, n, "a table name")) return NULL;
  const cad__table_t *t = cad__tables_find(c->tables, n->str, n->len);
  if (!t) {
    char q[CAD_YAML_QUOTE_CAP], list[512] = "";
    size_t o = 0;
    for (size_t i = 0; c->tables && i < c->tables->n && o < sizeof list - 64; i++)
      o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", c->tables->t[i].name);
    ERR(c, n, "unknown table '%s' (tables defined: %s)",
        cad_yaml_quote(q, sizeof q, n->str, n->len), o ? list : "none");
  }
  return t;
}

bool cad__comp_want_template(comp_t *c, const cad_yaml_node_t *n, cad__tpl_t *out) {
  if (!n || n->type != CAD_YAML_SCALAR) {
    cad__comp_want_scalar(c, n, "a template");
    return false;
  }
  const char *s = n->str;
  size_t len = n->len, i = 0, np = 0;
  for (size_t k = 0; k + 1 < len; k++)
    if (s[k] == '$' && s[k + 1] == '{') np++;
  out->parts = cad__comp_alloc(c, (2 * np + 1) * sizeof *out->parts);
  if (!out->parts) return false;
  out->n = 0;
  size_t lit = 0;
  while (i <= len) {
    if (i == len || (s[i] == '$' && i + 1 < len && s[i + 1] == '{')) {
      if (i > lit) {
        cad__tpart_t *tp = &out->parts[out->n++];
        tp->text.p = s + lit;
        tp->text.len = i - lit;
        tp->text.p = cad__comp_dupn(c, tp->text.p, tp->text.len);
        if (!tp->text.p) return false;
      }
      if (i == len) break;
      const char *close = memchr(s + i + 2, '}', len - i - 2);
      if (!close) {
        cad__err_at(&c->e, n->file, n->line, scalar_col(n, i), "'${' without a closing '}'");
        return false;
      }
      cad__tpart_t *tp = &out->parts[out->n++];
      tp->is_path = true;
      if (!parse_rpath(c, n, s + i + 2, (size_t)(close - s - i - 2), i + 2, &tp->path))
        return false;
      i = (size_t)(close - s) + 1;
      lit = i;
      continue;
    }
    i++;
  }
  return true;
}

/* ---- conditions --------------------------------------------------------- */

static const char *const op_names[] = {NULL,      "equals", "not_equals", "in",     "in_table",
                                       "matches", "exists", "empty",      "prefix", "lt",
                                       "le",      "gt",     "ge",         "before", "after"};
#define NOPS ((int)(sizeof op_names / sizeof op_names[0]))
#define OPS_LIST                                                                               \
  "equals, not_equals, in, in_table, matches, exists, empty, prefix, lt, le, gt, ge, before, " \
  "after"

static int op_kind(const char *k) {
  for (int i = 1; i < NOPS; i++)
    if (strcmp(k, op_names[i]) == 0) return i;
  return 0;
}

static bool compile_op(comp_t *c, int kind, const cad_yaml_node_t *v, cad__op_t *op) {
  op->kind = (cad__op_kind_t)kind;
  char q[CAD_YAML_QUOTE_CAP];
  switch (kind) {
    case OP_EQUALS:
    case OP_NOT_EQUALS:
    case OP_PREFIX:
      if (!v || v->type != CAD_YAML_SCALAR) {
        ERR(c, v, "'%s' needs a string, not %s", op_names[kind], cad_yaml_type_name(v));
        return false;
      }
      op->s.len = cad_yaml_is_null(v) && !v->quoted ? 0 : v->len;
      op->s.p = cad__comp_dupn(c, v->str, op->s.len);
      return op->s.p != NULL;
    case OP_IN:
      if (!v || v->type != CAD_YAML_SEQUENCE) {
        ERR(c, v, "'in' needs a list of values, like [F, C], not %s", cad_yaml_type_name(v));
        return false;
      }
      op->list = cad__comp_alloc(c, (v->n + 1) * sizeof *op->list);
      if (!op->list) return false;
      for (size_t i = 0; i < v->n; i++) {
        const cad_yaml_node_t *it = v->items[i];
        if (it->type != CAD_YAML_SCALAR) {
          ERR(c, it, "the items of 'in' must be strings, not %s", cad_yaml_type_name(it));
          return false;
        }
        op->list[i].len = cad_yaml_is_null(it) && !it->quoted ? 0 : it->len;
        op->list[i].p = cad__comp_dupn(c, it->str, op->list[i].len);
        if (!op->list[i].p) return false;
      }
      op->nlist = v->n;
      return true;
    case OP_IN_TABLE: return (op->table = cad__comp_want_table(c, v)) != NULL;
    case OP_MATCHES: return (op->re = cad__comp_regex(c, v, true)) != NULL;
    case OP_EXISTS:
    case OP_EMPTY: {
      int b = want_bool(c, v, op_names[kind]);
      op->flag = b == 1;
      return b >= 0;
    }
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
      if (!cad__comp_want_scalar(c, v, "a number")) return false;
      char *end = NULL;
      op->num = strtod(v->str, &end);
      if (end == v->str || *end) {
        ERR(c, v, "'%s' needs a decimal number, not '%s'", op_names[kind],
            cad_yaml_quote(q, sizeof q, v->str, v->len));
        return false;
      }
      return true;
    }
    case OP_BEFORE:
    case OP_AFTER:
      if (!cad__comp_want_scalar(c, v, "an HL7 date/time")) return false;
      if (!cad_hl7_dtm_parse(v->str, v->len, &op->dtm)) {
        ERR(c, v, "'%s' needs an HL7 date/time like 20240131 or 202401311200+0100, not '%s'",
            op_names[kind], cad_yaml_quote(q, sizeof q, v->str, v->len));
        return false;
      }
      return true;
  }
  return false;
}

static cad__cond_t *compile_list(comp_t *c, const cad_yaml_node_t *n, cad__cond_kind_t kind,
                                 int depth, const char *what) {
  if (n->type != CAD_YAML_SEQUENCE || n->n == 0) {
    ERR(c, n, "'%s' needs a non-empty list of conditions, not %s", what,
        n->type == CAD_YAML_SEQUENCE ? "an empty list" : cad_yaml_type_name(n));
    return NULL;
  }
  cad__cond_t *k = cad__comp_alloc(c, sizeof *k);
  if (!k) return NULL;
  k->kind = kind;
  k->kids = cad__comp_alloc(c, n->n * sizeof *k->kids);
  if (!k->kids) return NULL;
  bool ok = true;
  for (size_t i = 0; i < n->n; i++) {
    k->kids[i] = cad__comp_cond(c, n->items[i], depth + 1);
    if (!k->kids[i]) ok = false;
  }
  k->nkids = n->n;
  return ok ? k : NULL;
}

/* The operators of a leaf: the keys of `m` other than path/any/all. */
static bool leaf_ops(comp_t *c, const cad_yaml_node_t *m, cad__cond_t *k, bool skip_path) {
  char q[CAD_YAML_QUOTE_CAP];
  k->ops = cad__comp_alloc(c, (m->n + 1) * sizeof *k->ops);
  if (!k->ops) return false;
  bool ok = true;
  for (size_t i = 0; i < m->n; i++) {
    const cad_yaml_node_t *key = m->pairs[i].key;
    if (skip_path && (strcmp(key->str, "path") == 0 || strcmp(key->str, "any") == 0 ||
                      strcmp(key->str, "all") == 0))
      continue;
    int kind = op_kind(key->str);
    if (!kind) {
      ERR(c, key,
          "unknown key '%s' in a condition (expected path with one of: " OPS_LIST
          "; or all, any, not)",
          cad_yaml_quote(q, sizeof q, key->str, key->len));
      ok = false;
      continue;
    }
    if (!compile_op(c, kind, m->pairs[i].value, &k->ops[k->nops])) ok = false;
    k->nops++;
  }
  return ok;
}

cad__cond_t *cad__comp_cond(comp_t *c, const cad_yaml_node_t *n, int depth) {
  if (depth > CAD__ROUTES_MAX_DEPTH) {
    ERR(c, n, "conditions nested deeper than %d levels", CAD__ROUTES_MAX_DEPTH);
    return NULL;
  }
  if (n->type == CAD_YAML_SEQUENCE) return compile_list(c, n, C_ALL, depth, "when");
  if (n->type != CAD_YAML_MAPPING) {
    ERR(c, n, "a condition must be a mapping like { path: MSH-9.1, equals: ORU }, not %s",
        cad_yaml_type_name(n));
    return NULL;
  }
  const cad_yaml_node_t *path = cad_yaml_get(n, "path");
  const cad_yaml_node_t *all = cad_yaml_get(n, "all"), *any = cad_yaml_get(n, "any"),
                        *not_ = cad_yaml_get(n, "not");
  if (!path) {
    int nk = !!all + !!any + !!not_;
    if (nk != 1 || n->n != 1) {
      if (n->n == 0)
        ERR(c, n, "an empty condition (expected path with an operator, or all, any, not)");
      else if (nk == 0 && op_kind(n->pairs[0].key->str))
        ERR(c, n, "a condition with '%s' needs a 'path'", n->pairs[0].key->str);
      else if (nk == 0) {
        char q[CAD_YAML_QUOTE_CAP];
        ERR(c, n->pairs[0].key, "unknown key '%s' in a condition (expected path, all, any or not)",
            cad_yaml_quote(q, sizeof q, n->pairs[0].key->str, n->pairs[0].key->len));
      } else ERR(c, n, "a combinator condition has exactly one key: all, any or not");
      return NULL;
    }
    if (all) return compile_list(c, all, C_ALL, depth, "all");
    if (any) return compile_list(c, any, C_ANY, depth, "any");
    cad__cond_t *k = cad__comp_alloc(c, sizeof *k);
    if (!k) return NULL;
    k->kind = C_NOT;
    k->kids = cad__comp_alloc(c, sizeof *k->kids);
    if (!k->kids) return NULL;
    k->nkids = 1;
    k->kids[0] = cad__comp_cond(c, not_, depth + 1);
    return k->kids[0] ? k : NULL;
  }
  cad__cond_t *k = cad__comp_alloc(c, sizeof *k);
  if (!k) return NULL;
  k->kind = C_LEAF;
  if (!cad__comp_want_path(c, path, &k->path)) return NULL;
  if (all && any) {
    ERR(c, any, "a condition takes 'all' or 'any', not both");
    return NULL;
  }
  const cad_yaml_node_t *q = all ? all : any;
  if (q) {
    if (q->type != CAD_YAML_MAPPING) {
      ERR(c, q, "with a path, '%s' needs a mapping of operators, like { equals: TEST }",
          all ? "all" : "any");
      return NULL;
    }
    k->quant_all = all != NULL;
    for (size_t i = 0; i < n->n; i++) {
      const char *key = n->pairs[i].key->str;
      if (strcmp(key, "path") && strcmp(key, "all") && strcmp(key, "any")) {
        ERR(c, n->pairs[i].key, "'%s' beside '%s': put every operator inside '%s'", key,
            all ? "all" : "any", all ? "all" : "any");
        return NULL;
      }
    }
    if (!leaf_ops(c, q, k, false)) return NULL;
  } else if (!leaf_ops(c, n, k, true)) {
    return NULL;
  }
  if (k->nops == 0) {
    ERR(c, q ? q : n, "a condition on '%s' needs an operator (one of: " OPS_LIST ")", k->path.text);
    return NULL;
  }
  return k;
}

/* ---- routes ------------------------------------------------------------- */

static bool find_dest(comp_t *c, const cad_yaml_node_t *n, size_t *out) {
  if (!cad__comp_want_scalar(c, n, "a destination name")) return false;
  for (size_t i = 0; i < c->r->ndests; i++)
    if (strlen(c->r->dest_names[i]) == n->len && memcmp(c->r->dest_names[i], n->str, n->len) == 0) {
      *out = i;
      return true;
    }
  char q[CAD_YAML_QUOTE_CAP], list[512] = "";
  size_t o = 0;
  for (size_t i = 0; i < c->r->ndests && o < sizeof list - 64; i++)
    o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", c->r->dest_names[i]);
  ERR(c, n, "unknown destination '%s' (destinations defined: %s)",
      cad_yaml_quote(q, sizeof q, n->str, n->len), o ? list : "none");
  return false;
}

static bool compile_to(comp_t *c, const cad_yaml_node_t *n, cad__route_t *rt) {
  const cad_yaml_node_t *const *items = NULL;
  size_t cnt = 1;
  if (n->type == CAD_YAML_SEQUENCE) {
    items = (const cad_yaml_node_t *const *)n->items;
    cnt = n->n;
    if (!cnt) {
      ERR(c, n, "'to' needs at least one destination");
      return false;
    }
  } else if (n->type != CAD_YAML_SCALAR) {
    ERR(c, n, "'to' must be a destination name or a list of them, not %s", cad_yaml_type_name(n));
    return false;
  }
  rt->to = cad__comp_alloc(c, cnt * sizeof *rt->to);
  if (!rt->to) return false;
  bool ok = true;
  for (size_t i = 0; i < cnt; i++) {
    if (!find_dest(c, items ? items[i] : n, &rt->to[i])) ok = false;
  }
  rt->nto = cnt;
  return ok;
}

static void compile_route(comp_t *c, const cad_yaml_node_t *n, cad__route_t *rt, size_t idx) {
  char q[CAD_YAML_QUOTE_CAP];
  if (n->type != CAD_YAML_MAPPING) {
    ERR(c, n, "a route must be a mapping with name, when, transform, to, continue; not %s",
        cad_yaml_type_name(n));
    return;
  }
  const cad_yaml_node_t *to = NULL;
  char defname[32];
  snprintf(defname, sizeof defname, "route-%zu", idx + 1);
  rt->name = cad__comp_dupn(c, defname, strlen(defname));
  for (size_t i = 0; i < n->n; i++) {
    const cad_yaml_node_t *k = n->pairs[i].key, *v = n->pairs[i].value;
    if (strcmp(k->str, "name") == 0) {
      if (cad__comp_want_scalar(c, v, "'name'")) rt->name = cad__comp_dupn(c, v->str, v->len);
    } else if (strcmp(k->str, "when") == 0) {
      rt->when = cad__comp_cond(c, v, 1);
    } else if (strcmp(k->str, "transform") == 0) {
      if (v->type != CAD_YAML_SEQUENCE) {
        ERR(c, v, "'transform' must be a list of steps, not %s", cad_yaml_type_name(v));
        continue;
      }
      rt->steps = cad__comp_alloc(c, (v->n + 1) * sizeof *rt->steps);
      if (!rt->steps) return;
      for (size_t s = 0; s < v->n; s++) cad__comp_step(c, v->items[s], &rt->steps[s], s);
      rt->nsteps = v->n;
      cad__route_plan(rt, &c->r->arena);
    } else if (strcmp(k->str, "to") == 0) {
      to = v;
    } else if (strcmp(k->str, "continue") == 0) {
      rt->cont = want_bool(c, v, "'continue'") == 1;
    } else {
      ERR(c, k,
          "unknown key '%s' in a route (expected one of: name, when, transform, to, "
          "continue)",
          cad_yaml_quote(q, sizeof q, k->str, k->len));
    }
  }
  if (!to) {
    ERR(c, n, "route '%s' needs 'to', the destinations it sends to", rt->name ? rt->name : "?");
    return;
  }
  compile_to(c, to, rt);
}

int cad_routes_compile(const cad_yaml_node_t *channel, const cad_tables_t *tables,
                       const char *const *dest_names, size_t ndests, cad_routes_t **out,
                       cad_buf_t *errors) {
  *out = NULL;
  cad_routes_t *r = calloc(1, sizeof *r);
  if (!r) return CAD_E_NOMEM;
  cad_arena_init(&r->arena, 16384, 0);
  comp_t c = {r, {errors, 0}, tables, false};
  r->unrouted = UNROUTED_DROP;
  r->on_error = ON_ERROR_REJECT;
  r->tables = tables;
  cad__tables_ref(tables);
  r->dest_names = cad__comp_alloc(&c, (ndests + 1) * sizeof *r->dest_names);
  for (size_t i = 0; r->dest_names && i < ndests; i++)
    r->dest_names[i] = cad__comp_dupn(&c, dest_names[i], strlen(dest_names[i]));
  r->ndests = ndests;
  if (c.nomem) goto done;

  const cad_yaml_node_t *routes = NULL, *unrouted = NULL, *on_error = NULL, *to = NULL;
  if (channel && channel->type == CAD_YAML_SEQUENCE) {
    routes = channel;
  } else if (channel && channel->type == CAD_YAML_MAPPING) {
    routes = cad_yaml_get(channel, "routes");
    unrouted = cad_yaml_get(channel, "unrouted");
    on_error = cad_yaml_get(channel, "on_error");
    to = cad_yaml_get(channel, "to");
  } else if (channel && !cad_yaml_is_null(channel)) {
    ERR(&c, channel, "expected a channel (a mapping) or a list of routes, not %s",
        cad_yaml_type_name(channel));
    goto done;
  }
  if (routes && to) {
    ERR(&c, to, "a channel with 'routes' names its destinations in each route's 'to', not here");
  } else if (routes) {
    if (routes->type != CAD_YAML_SEQUENCE) {
      ERR(&c, routes, "'routes' must be a list of routes, not %s", cad_yaml_type_name(routes));
    } else {
      r->routes = cad__comp_alloc(&c, (routes->n + 1) * sizeof *r->routes);
      if (!r->routes) goto done;
      for (size_t i = 0; i < routes->n; i++) compile_route(&c, routes->items[i], &r->routes[i], i);
      r->nroutes = routes->n;
    }
  } else if (to) {
    /* No routes: every message goes to the channel's `to`. */
    r->routes = cad__comp_alloc(&c, sizeof *r->routes);
    if (!r->routes) goto done;
    r->routes[0].name = "to";
    compile_to(&c, to, &r->routes[0]);
    r->nroutes = 1;
  }
  if (unrouted) {
    if (cad__comp_want_scalar(&c, unrouted, "'unrouted'")) {
      if (strcmp(unrouted->str, "drop") == 0) r->unrouted = UNROUTED_DROP;
      else if (strcmp(unrouted->str, "reject") == 0) r->unrouted = UNROUTED_REJECT;
      else {
        size_t d;
        bool found = false;
        for (size_t i = 0; i < r->ndests && !found; i++)
          if (strcmp(r->dest_names[i], unrouted->str) == 0) found = true, d = i;
        if (found) {
          r->unrouted = UNROUTED_DEST;
          r->unrouted_dest = d;
        } else {
          char q[CAD_YAML_QUOTE_CAP];
          ERR(&c, unrouted,
              "'unrouted' must be drop, reject or a destination name; '%s' is "
              "none of these",
              cad_yaml_quote(q, sizeof q, unrouted->str, unrouted->len));
        }
      }
    }
  }
  if (on_error && cad__comp_want_scalar(&c, on_error, "'on_error'")) {
    if (strcmp(on_error->str, "reject") == 0) r->on_error = ON_ERROR_REJECT;
    else if (strcmp(on_error->str, "dead_letter") == 0) r->on_error = ON_ERROR_DEAD_LETTER;
    else ERR(&c, on_error, "'on_error' must be reject (ACK AE with an ERR segment) or dead_letter");
  }
  for (size_t i = 0; i < r->nroutes; i++) r->max_outs += r->routes[i].nto;
  if (r->max_outs == 0) r->max_outs = 1;
done:
  if (c.nomem || c.e.n) {
    int rc = c.nomem ? CAD_E_NOMEM : CAD_E_CONFIG;
    cad_routes_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void cad_routes_free(cad_routes_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->nregexes; i++) regfree(r->regexes[i]);
  free(r->regexes);
  cad_tables_free((cad_tables_t *)r->tables);
  cad_arena_free(&r->arena);
  free(r);
}

size_t cad_routes_count(const cad_routes_t *r) { return r ? r->nroutes : 0; }

const char *cad_routes_name(const cad_routes_t *r, size_t i) {
  return r && i < r->nroutes ? r->routes[i].name : NULL;
}

const char *cad_routes_dest_name(const cad_routes_t *r, size_t d) {
  return r && d < r->ndests ? r->dest_names[d] : NULL;
}

/* ---- standalone conditions (routes.h: cad_route_cond_*) ---------------- */

int cad_route_cond_compile(const cad_yaml_node_t *node, const cad_tables_t *tables,
                           cad_route_cond_t **out, cad_buf_t *errors) {
  *out = NULL;
  cad_route_cond_t *k = calloc(1, sizeof *k);
  cad_routes_t *r = calloc(1, sizeof *r);
  if (!k || !r) {
    free(k);
    free(r);
    return CAD_E_NOMEM;
  }
  cad_arena_init(&r->arena, 4096, 0);
  comp_t c = {r, {errors, 0}, tables, false};
  r->unrouted = UNROUTED_DROP;
  r->on_error = ON_ERROR_REJECT;
  r->tables = tables;
  cad__tables_ref(tables);
  k->r = r;
  if (!node || cad_yaml_is_null(node))
    ERR(&c, node, "an empty condition (expected path with an operator, or all, any, not)");
  else k->when = cad__comp_cond(&c, node, 0);
  if (c.nomem || c.e.n || !k->when) {
    int rc = c.nomem ? CAD_E_NOMEM : CAD_E_CONFIG;
    cad_route_cond_free(k);
    return rc;
  }
  *out = k;
  return 0;
}

void cad_route_cond_free(cad_route_cond_t *k) {
  if (!k) return;
  cad_routes_free(k->r);
  free(k);
}
