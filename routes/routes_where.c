/* routes_where.c - a one-line condition syntax (`caduceus replay --where`),
 * translated into the YAML tree a route's `when:` would be, then compiled by
 * cad_route_cond_compile(): one language, one set of checks and errors.
 *
 *   expr  := and ( "or" and )*
 *   and   := unary ( "and" unary )*
 *   unary := "not" unary | "(" expr ")" | PATH op
 *   op    := ("="|"==") V | "!=" V | "^=" V | "~" V | "<" N | "<=" N | ">" N
 *          | ">=" N | "in" ( "(" V ("," V)* ")" | V ("," V)* )
 *          | "exists" | "empty" | WORD V   (WORD: any operator name of
 *            routes/README.md: equals, prefix, before, in_table, ...)
 *   V     := a bare word (no blank, parenthesis or comma) or '...' / "..."
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "routes.h"
#include "cad_error.h"
#include "routes_int.h"

#define WHERE_FILE "--where"

typedef struct wp {
  const char *s;
  size_t i, n;
  cad_arena_t *a;
  cad__errs_t *e;
  bool nomem;
  int depth;
} wp_t;

static cad_yaml_node_t *node(wp_t *w, cad_yaml_type_t t, size_t at) {
  cad_yaml_node_t *n = cad_arena_alloc(w->a, sizeof *n);
  if (!n) {
    w->nomem = true;
    return NULL;
  }
  memset(n, 0, sizeof *n);
  n->type = t;
  n->file = WHERE_FILE;
  n->line = n->end_line = 1;
  n->col = n->end_col = (int)at + 1;
  n->str = "";
  return n;
}

static cad_yaml_node_t *scalar(wp_t *w, const char *p, size_t len, size_t at, bool quoted) {
  cad_yaml_node_t *n = node(w, CAD_YAML_SCALAR, at);
  char *s = n ? cad_arena_dup(w->a, p, len + 1) : NULL;
  if (!s) {
    w->nomem = true;
    return NULL;
  }
  s[len] = 0;
  n->str = s;
  n->len = len;
  n->quoted = quoted;
  n->style = quoted ? CAD_YAML_SINGLE : CAD_YAML_PLAIN;
  return n;
}

/* A mapping of one pair { key: value }. */
static cad_yaml_node_t *map1(wp_t *w, const char *key, cad_yaml_node_t *v, size_t at) {
  cad_yaml_node_t *m = node(w, CAD_YAML_MAPPING, at);
  cad_yaml_pair_t *pr = m ? cad_arena_alloc(w->a, sizeof *pr) : NULL;
  cad_yaml_node_t *k = pr ? scalar(w, key, strlen(key), at, false) : NULL;
  if (!k || !v) {
    w->nomem = w->nomem || !k;
    return NULL;
  }
  pr->key = k;
  pr->value = v;
  m->pairs = pr;
  m->n = 1;
  return m;
}

static void err(wp_t *w, size_t at, const char *what) {
  cad__err_at(w->e, WHERE_FILE, 1, (int)at + 1, "%s", what);
}

static void skip_blank(wp_t *w) {
  while (w->i < w->n && (w->s[w->i] == ' ' || w->s[w->i] == '\t')) w->i++;
}

/* The keyword `kw` (case-insensitive) as a whole word at the cursor. */
static bool keyword(wp_t *w, const char *kw) {
  skip_blank(w);
  size_t k = strlen(kw);
  if (w->n - w->i < k) return false;
  for (size_t j = 0; j < k; j++)
    if (tolower((unsigned char)w->s[w->i + j]) != kw[j]) return false;
  if (w->i + k < w->n) {
    unsigned char c = (unsigned char)w->s[w->i + k];
    if (isalnum(c) || c == '_') return false;
  }
  w->i += k;
  return true;
}

static bool is_bare(char c) {
  return c && c != ' ' && c != '\t' && c != '(' && c != ')' && c != ',';
}

/* A value: bare or quoted ('it''s' doubles the quote). */
static cad_yaml_node_t *value(wp_t *w, const char *after) {
  skip_blank(w);
  size_t at = w->i;
  if (w->i < w->n && (w->s[w->i] == '\'' || w->s[w->i] == '"')) {
    char q = w->s[w->i++];
    char tmp[4096];
    size_t o = 0;
    for (;;) {
      if (w->i >= w->n) {
        err(w, at, "a quoted value is not closed");
        return NULL;
      }
      char c = w->s[w->i++];
      if (c == q) {
        if (w->i < w->n && w->s[w->i] == q) w->i++;
        else break;
      }
      if (o + 1 >= sizeof tmp) {
        err(w, at, "a quoted value is longer than 4095 bytes");
        return NULL;
      }
      tmp[o++] = c;
    }
    return scalar(w, tmp, o, at, true);
  }
  while (w->i < w->n && is_bare(w->s[w->i])) w->i++;
  if (w->i == at) {
    char m[96];
    snprintf(m, sizeof m, "a value is expected after '%s'", after);
    err(w, at, m);
    return NULL;
  }
  return scalar(w, w->s + at, w->i - at, at, false);
}

static const struct {
  const char *sym, *op;
} symbols[] = {{"==", "equals"}, {"!=", "not_equals"}, {"^=", "prefix"}, {"<=", "le"}, {">=", "ge"},
               {"=", "equals"},  {"~", "matches"},     {"<", "lt"},      {">", "gt"}};

static const char *const words[] = {"equals", "not_equals", "prefix", "matches", "in_table", "lt",
                                    "le",     "gt",         "ge",     "before",  "after"};

static cad_yaml_node_t *leaf(wp_t *w) {
  skip_blank(w);
  size_t at = w->i;
  while (w->i < w->n) {
    unsigned char c = (unsigned char)w->s[w->i];
    if (!(isalnum(c) || c == '[' || c == ']' || c == '*' || c == '-' || c == '.')) break;
    w->i++;
  }
  if (w->i == at) {
    err(w, at, "a path like MSH-9.1 is expected");
    return NULL;
  }
  cad_yaml_node_t *path = scalar(w, w->s + at, w->i - at, at, false);
  if (!path) return NULL;
  skip_blank(w);
  size_t opat = w->i;
  const char *op = NULL;
  cad_yaml_node_t *arg = NULL;
  for (size_t k = 0; k < sizeof symbols / sizeof symbols[0] && !op; k++) {
    size_t l = strlen(symbols[k].sym);
    if (w->n - w->i >= l && memcmp(w->s + w->i, symbols[k].sym, l) == 0) {
      op = symbols[k].op;
      w->i += l;
      if (!(arg = value(w, symbols[k].sym))) return NULL;
    }
  }
  if (!op && (keyword(w, "exists") || keyword(w, "empty"))) {
    op = w->s[opat + 1] == 'x' || w->s[opat + 1] == 'X' ? "exists" : "empty";
    if (!(arg = scalar(w, "true", 4, opat, false))) return NULL;
  }
  if (!op && keyword(w, "in")) {
    op = "in";
    cad_yaml_node_t *seq = node(w, CAD_YAML_SEQUENCE, opat);
    if (!seq) return NULL;
    skip_blank(w);
    bool paren = w->i < w->n && w->s[w->i] == '(';
    if (paren) w->i++;
    cad_yaml_node_t *items[256];
    size_t ni = 0;
    for (;;) {
      if (ni == sizeof items / sizeof items[0]) {
        err(w, w->i, "'in' takes at most 256 values");
        return NULL;
      }
      if (!(items[ni++] = value(w, "in"))) return NULL;
      skip_blank(w);
      if (w->i < w->n && w->s[w->i] == ',') {
        w->i++;
        continue;
      }
      break;
    }
    if (paren) {
      if (w->i >= w->n || w->s[w->i] != ')') {
        err(w, w->i, "')' is expected to close the list of 'in'");
        return NULL;
      }
      w->i++;
    }
    seq->items = cad_arena_alloc(w->a, ni * sizeof *seq->items);
    if (!seq->items) {
      w->nomem = true;
      return NULL;
    }
    memcpy(seq->items, items, ni * sizeof *items);
    seq->n = ni;
    arg = seq;
  }
  for (size_t k = 0; k < sizeof words / sizeof words[0] && !op; k++)
    if (keyword(w, words[k])) {
      op = words[k];
      if (!(arg = value(w, words[k]))) return NULL;
    }
  if (!op) {
    err(w, opat,
        "an operator is expected after the path: = != ^= ~ < <= > >= in exists empty, "
        "or an operator name (before, after, in_table, ...)");
    return NULL;
  }
  cad_yaml_node_t *m = node(w, CAD_YAML_MAPPING, at);
  cad_yaml_pair_t *pr = m ? cad_arena_alloc(w->a, 2 * sizeof *pr) : NULL;
  cad_yaml_node_t *kp = pr ? scalar(w, "path", 4, at, false) : NULL;
  cad_yaml_node_t *ko = kp ? scalar(w, op, strlen(op), opat, false) : NULL;
  if (!ko) {
    w->nomem = true;
    return NULL;
  }
  pr[0].key = kp;
  pr[0].value = path;
  pr[1].key = ko;
  pr[1].value = arg;
  m->pairs = pr;
  m->n = 2;
  return m;
}

static cad_yaml_node_t *expr(wp_t *w);

static cad_yaml_node_t *unary(wp_t *w) {
  skip_blank(w);
  size_t at = w->i;
  if (++w->depth > CAD__ROUTES_MAX_DEPTH) {
    err(w, at, "conditions nested too deep");
    return NULL;
  }
  cad_yaml_node_t *r = NULL;
  if (keyword(w, "not")) {
    cad_yaml_node_t *k = unary(w);
    r = k ? map1(w, "not", k, at) : NULL;
  } else if (w->i < w->n && w->s[w->i] == '(') {
    w->i++;
    r = expr(w);
    skip_blank(w);
    if (r && (w->i >= w->n || w->s[w->i] != ')')) {
      err(w, w->i, "')' is expected");
      r = NULL;
    } else if (r) {
      w->i++;
    }
  } else {
    r = leaf(w);
  }
  w->depth--;
  return r;
}

/* kids joined by `kw` ("and" / "or") into { all|any: [...] }. */
static cad_yaml_node_t *chain(wp_t *w, const char *kw, const char *comb,
                              cad_yaml_node_t *(*sub)(wp_t *)) {
  skip_blank(w);
  size_t at = w->i;
  cad_yaml_node_t *kids[64];
  size_t nk = 0;
  do {
    if (nk == sizeof kids / sizeof kids[0]) {
      err(w, w->i, "more than 64 conditions in a row");
      return NULL;
    }
    if (!(kids[nk++] = sub(w))) return NULL;
  } while (keyword(w, kw));
  if (nk == 1) return kids[0];
  cad_yaml_node_t *seq = node(w, CAD_YAML_SEQUENCE, at);
  if (!seq || !(seq->items = cad_arena_alloc(w->a, nk * sizeof *seq->items))) {
    w->nomem = true;
    return NULL;
  }
  memcpy(seq->items, kids, nk * sizeof *kids);
  seq->n = nk;
  return map1(w, comb, seq, at);
}

static cad_yaml_node_t *and_expr(wp_t *w) { return chain(w, "and", "all", unary); }
static cad_yaml_node_t *expr(wp_t *w) { return chain(w, "or", "any", and_expr); }

int cad_route_cond_parse(const char *text, const cad_tables_t *tables, cad_route_cond_t **out,
                         cad_buf_t *errors) {
  *out = NULL;
  cad__errs_t e = {errors, 0};
  size_t n = strlen(text), lead = 0;
  while (lead < n && (text[lead] == ' ' || text[lead] == '\t')) lead++;
  if (lead < n && (text[lead] == '{' || text[lead] == '[')) {
    cad_yaml_doc_t *doc = NULL;
    char msg[512];
    int rc = cad_yaml_parse(WHERE_FILE, text, n, NULL, &doc, msg, sizeof msg);
    if (rc) {
      if (errors) cad_buf_printf(errors, "%s\n", msg);
      return rc;
    }
    rc = cad_route_cond_compile(doc->root, tables, out, errors);
    cad_yaml_free(doc);
    return rc;
  }
  cad_arena_t a;
  cad_arena_init(&a, 4096, (size_t)1 << 20);
  wp_t w = {text, 0, n, &a, &e, false, 0};
  cad_yaml_node_t *root = expr(&w);
  int rc = 0;
  if (w.nomem) {
    rc = CAD_E_NOMEM;
  } else if (!root) {
    rc = CAD_E_CONFIG;
  } else {
    skip_blank(&w);
    if (w.i < w.n) {
      err(&w, w.i, "'and', 'or' or the end is expected here");
      rc = CAD_E_CONFIG;
    } else {
      rc = cad_route_cond_compile(root, tables, out, errors);
    }
  }
  cad_arena_free(&a);
  return rc;
}
