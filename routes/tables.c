/* tables.c - lookup tables (inline or CSV), error lines. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"
#include "cad_error.h"
#include "cad_io.h"
#include "routes_int.h"

#define MAX_TABLE_FILE ((size_t)64 << 20)
#define MAX_TABLE_ROWS 1000000

/* ---- error lines -------------------------------------------------------- */

void cad__err_at(cad__errs_t *e, const char *file, int line, int col, const char *fmt, ...) {
  e->n++;
  if (!e->buf || e->n > CAD__ROUTES_MAX_ERRORS) return;
  if (e->n == CAD__ROUTES_MAX_ERRORS) {
    cad_buf_printf(e->buf, "%s: too many errors, stopping here\n", file ? file : "?");
    return;
  }
  if (line > 0) cad_buf_printf(e->buf, "%s:%d:%d: ", file ? file : "?", line, col);
  else cad_buf_printf(e->buf, "%s: ", file ? file : "?");
  va_list ap;
  va_start(ap, fmt);
  char tmp[1024];
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  cad_buf_puts(e->buf, tmp);
  cad_buf_putc(e->buf, '\n');
}

void cad__err_node(cad__errs_t *e, const cad_yaml_node_t *n, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  cad__err_at(e, n ? n->file : "?", n ? n->line : 0, n ? n->col : 0, "%s", tmp);
}

/* ---- tables ------------------------------------------------------------- */

const unsigned char cad__key_mask[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

const cad__table_t *cad__tables_find(const cad_tables_t *t, const char *name, size_t len) {
  if (!t) return NULL;
  for (size_t i = 0; i < t->n; i++)
    if (strlen(t->t[i].name) == len && memcmp(t->t[i].name, name, len) == 0) return &t->t[i];
  return NULL;
}

bool cad_tables_get(const cad_tables_t *t, const char *table, const char *key, size_t klen,
                    cad_str_t *value) {
  const cad__table_t *tb = cad__tables_find(t, table, strlen(table));
  return cad__table_get(tb, key, klen, value);
}

void cad__tables_ref(const cad_tables_t *t) {
  if (t) ((cad_tables_t *)t)->refs++;
}

void cad_tables_free(cad_tables_t *t) {
  if (!t || --t->refs > 0) return;
  cad_arena_free(&t->arena);
  free(t);
}

/* Rows being collected for one table, with where each was written. */
typedef struct rows {
  char **k, **v;
  size_t *kl, *vl;
  int *line;
  size_t n, cap;
} rows_t;

static int rows_push(rows_t *r, cad_arena_t *a, const char *k, size_t kl, const char *v, size_t vl,
                     int line) {
  if (r->n == r->cap) {
    size_t nc = r->cap ? r->cap * 2 : 16;
    char **nk = realloc(r->k, nc * sizeof *nk), **nv;
    if (!nk) return CAD_E_NOMEM;
    r->k = nk;
    if (!(nv = realloc(r->v, nc * sizeof *nv))) return CAD_E_NOMEM;
    r->v = nv;
    size_t *nkl = realloc(r->kl, nc * sizeof *nkl);
    if (!nkl) return CAD_E_NOMEM;
    r->kl = nkl;
    if (!(nkl = realloc(r->vl, nc * sizeof *nkl))) return CAD_E_NOMEM;
    r->vl = nkl;
    int *nl = realloc(r->line, nc * sizeof *nl);
    if (!nl) return CAD_E_NOMEM;
    r->line = nl;
    r->cap = nc;
  }
  /* Keys and values with CAD__PAD zero bytes after them (routes_int.h). */
  char *kc = cad_arena_alloc(a, kl + CAD__PAD), *vc = cad_arena_alloc(a, vl + CAD__PAD);
  if (!kc || !vc) return CAD_E_NOMEM;
  memcpy(kc, k, kl);
  memset(kc + kl, 0, CAD__PAD);
  memcpy(vc, v, vl);
  memset(vc + vl, 0, CAD__PAD);
  r->k[r->n] = kc;
  r->v[r->n] = vc;
  r->kl[r->n] = kl;
  r->vl[r->n] = vl;
  r->line[r->n] = line;
  r->n++;
  return 0;
}

static void rows_free(rows_t *r) {
  free(r->k);
  free(r->v);
  free(r->kl);
  free(r->vl);
  free(r->line);
  memset(r, 0, sizeof *r);
}

/* Build the hash index; report duplicates. */
static int build(cad__table_t *t, cad_arena_t *a, rows_t *r, cad__errs_t *e, const char *file,
                 const char *what) {
  size_t ns = 16;
  while (ns < r->n * 2 + 2) ns *= 2;
  t->slots = cad_arena_alloc(a, ns * sizeof *t->slots);
  t->keys = cad_arena_alloc(a, (r->n + 1) * sizeof *t->keys);
  t->vals = cad_arena_alloc(a, (r->n + 1) * sizeof *t->vals);
  t->klen = cad_arena_alloc(a, (r->n + 1) * sizeof *t->klen);
  t->vlen = cad_arena_alloc(a, (r->n + 1) * sizeof *t->vlen);
  if (!t->slots || !t->keys || !t->vals || !t->klen || !t->vlen) return CAD_E_NOMEM;
  memset(t->slots, 0, ns * sizeof *t->slots);
  t->nslots = ns;
  t->n = 0;
  int rc = 0;
  for (size_t i = 0; i < r->n; i++) {
    size_t mask = ns - 1, j = (size_t)cad__table_hash(r->k[i], r->kl[i]) & mask;
    bool dup = false;
    for (; t->slots[j]; j = (j + 1) & mask) {
      size_t k = t->slots[j] - 1;
      if (t->klen[k] == r->kl[i] && memcmp(t->keys[k], r->k[i], r->kl[i]) == 0) {
        char q[CAD_YAML_QUOTE_CAP];
        cad__err_at(e, file, r->line[i], 1, "duplicate key '%s' in table '%s' (first at line %d)",
                    cad_yaml_quote(q, sizeof q, r->k[i], r->kl[i]), what, r->line[k]);
        dup = true;
        rc = CAD_E_CONFIG;
        break;
      }
    }
    if (dup) continue;
    t->keys[t->n] = r->k[i];
    t->vals[t->n] = r->v[i];
    t->klen[t->n] = r->kl[i];
    t->vlen[t->n] = r->vl[i];
    r->line[t->n] = r->line[i];
    t->slots[j] = (uint32_t)(t->n + 1);
    t->n++;
  }
  t->vals_std_plain = true;
  for (size_t i = 0; i < t->n; i++) t->vals_std_plain &= cad__std_plain(t->vals[i], t->vlen[i]);
  return rc;
}

/* One CSV field starting at p (< end); quoted or not.  Writes the unquoted
 * text into out (room for the line) and returns the position after it. */
static const char *csv_field(const char *p, const char *end, char delim, char *out, size_t *olen,
                             bool *bad) {
  size_t o = 0;
  *bad = false;
  if (p < end && *p == '"') {
    p++;
    for (;;) {
      if (p >= end) {
        *bad = true;
        break;
      }
      if (*p == '"') {
        if (p + 1 < end && p[1] == '"') {
          out[o++] = '"';
          p += 2;
          continue;
        }
        p++;
        break;
      }
      out[o++] = *p++;
    }
    if (p < end && *p != delim) *bad = true;
  } else {
    while (p < end && *p != delim) out[o++] = *p++;
  }
  *olen = o;
  return p;
}

static int load_csv(const char *path, const char *shown, bool header, char delim, rows_t *r,
                    cad_arena_t *a, cad__errs_t *e, const cad_yaml_node_t *at) {
  char *buf = NULL;
  size_t n = 0;
  const char *why = NULL;
  int rc = cad_io_read_regular(path, MAX_TABLE_FILE, &buf, &n, &why);
  if (rc == CAD_E_TOOBIG) {
    cad__err_node(e, at, "table file '%s' is larger than 64 MiB", shown);
    return CAD_E_CONFIG;
  }
  if (rc == CAD_E_NOMEM) return rc;
  if (rc) {
    cad__err_node(e, at, "cannot read table file '%s': %s", shown, why);
    return CAD_E_CONFIG;
  }
  char *field = NULL;
  if (!rc && n) field = malloc(n * 2 + 2);
  if (!rc && n && !field) rc = CAD_E_NOMEM;
  const char *p = buf, *end = buf ? buf + n : NULL; /* an empty file has no buffer */
  if (!rc && n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) p += 3; /* UTF-8 BOM */
  int line = 0;
  bool first = true;
  while (!rc && p < end) {
    line++;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *le = eol ? eol : end;
    const char *next = eol ? eol + 1 : end;
    if (le > p && le[-1] == '\r') le--;
    bool skip = (le == p) || *p == '#';
    if (first && !skip && header) {
      first = false;
      p = next;
      continue;
    }
    if (skip) {
      p = next;
      continue;
    }
    first = false;
    size_t kl, vl;
    bool bad1, bad2 = false;
    char *kb = field, *vb = field + (le - p) + 1;
    const char *q = csv_field(p, le, delim, kb, &kl, &bad1);
    if (bad1 || q >= le) {
      cad__err_at(e, shown, line, (int)(q - p) + 1,
                  bad1 ? "unterminated or misplaced quote" : "expected key%cvalue", delim);
      rc = CAD_E_CONFIG;
      break;
    }
    const char *q2 = csv_field(q + 1, le, delim, vb, &vl, &bad2);
    if (bad2 || q2 < le) {
      cad__err_at(e, shown, line, (int)(q2 - p) + 1,
                  bad2 ? "unterminated or misplaced quote"
                       : "expected 2 fields (key%cvalue), found more; quote a value that "
                         "contains the delimiter",
                  delim);
      rc = CAD_E_CONFIG;
      break;
    }
    if (r->n >= MAX_TABLE_ROWS) {
      cad__err_at(e, shown, line, 1, "more than %d rows", MAX_TABLE_ROWS);
      rc = CAD_E_CONFIG;
      break;
    }
    if ((rc = rows_push(r, a, kb, kl, vb, vl, line))) break;
    p = next;
  }
  free(field);
  free(buf);
  return rc;
}

/* One table `kn: v` into tb.  Returns 1 (loaded: count it), 0 (an error,
 * reported in e) or CAD_E_NOMEM. */
static int load_table(cad_tables_t *t, cad__table_t *tb, cad__errs_t *e, const cad_yaml_node_t *kn,
                      const cad_yaml_node_t *v, const char *base_dir, const char *file_of_values) {
  char q[CAD_YAML_QUOTE_CAP];
  memset(tb, 0, sizeof *tb);
  tb->name = cad_arena_dup(&t->arena, kn->str, kn->len + 1);
  if (!tb->name) return CAD_E_NOMEM;
  if (v->type != CAD_YAML_MAPPING) {
    cad__err_node(e, v, "table '%s' must be a mapping with 'values' or 'file', not %s",
                  cad_yaml_quote(q, sizeof q, kn->str, kn->len), cad_yaml_type_name(v));
    return 0;
  }
  const cad_yaml_node_t *values = NULL, *file = NULL, *header = NULL, *delim = NULL;
  bool ok = true;
  for (size_t j = 0; j < v->n; j++) {
    const cad_yaml_node_t *k2 = v->pairs[j].key;
    if (strcmp(k2->str, "values") == 0) values = v->pairs[j].value;
    else if (strcmp(k2->str, "file") == 0) file = v->pairs[j].value;
    else if (strcmp(k2->str, "header") == 0) header = v->pairs[j].value;
    else if (strcmp(k2->str, "delimiter") == 0) delim = v->pairs[j].value;
    else {
      cad__err_node(e, k2,
                    "unknown key '%s' in table '%s' (expected one of: values, file, "
                    "header, delimiter)",
                    cad_yaml_quote(q, sizeof q, k2->str, k2->len), tb->name);
      ok = false;
    }
  }
  if (!ok) return 0;
  if (!!values == !!file) {
    cad__err_node(e, v, "table '%s' needs exactly one of 'values' (inline) or 'file' (CSV)",
                  tb->name);
    return 0;
  }
  bool hdr = false;
  char dch = ',';
  if (header) {
    int b = cad_yaml_bool(header);
    if (b >= 0) hdr = b == 1;
    else {
      cad__err_node(e, header, "'header' must be " CAD_YAML_BOOL_WORDS);
      return 0;
    }
  }
  if (delim) {
    if (delim->type != CAD_YAML_SCALAR || delim->len != 1 || delim->str[0] == '"' ||
        delim->str[0] == '\n' || delim->str[0] == '\r') {
      cad__err_node(e, delim, "'delimiter' must be one character, like \",\" or \";\"");
      return 0;
    }
    dch = delim->str[0];
  }
  rows_t rows = {0};
  const char *src_file = NULL;
  int lrc = 0;
  if (values) {
    if (header || delim) {
      cad__err_node(e, header ? header : delim, "'header' and 'delimiter' apply to 'file' only");
      return 0;
    }
    if (values->type != CAD_YAML_MAPPING) {
      cad__err_node(e, values, "'values' must be a mapping of KEY: VALUE, not %s",
                    cad_yaml_type_name(values));
      return 0;
    }
    for (size_t j = 0; j < values->n && !lrc; j++) {
      const cad_yaml_node_t *vk = values->pairs[j].key, *vv = values->pairs[j].value;
      if (vv->type != CAD_YAML_SCALAR) {
        cad__err_node(e, vv, "the value of '%s' must be a string, not %s",
                      cad_yaml_quote(q, sizeof q, vk->str, vk->len), cad_yaml_type_name(vv));
        continue;
      }
      lrc = rows_push(&rows, &t->arena, vk->str, vk->len, vv->str,
                      cad_yaml_is_null(vv) ? 0 : vv->len, vk->line);
    }
    src_file = file_of_values;
  } else {
    if (file->type != CAD_YAML_SCALAR || file->len == 0) {
      cad__err_node(e, file, "'file' must be a path to a CSV file");
      return 0;
    }
    char path[4096];
    if (file->str[0] == '/' || !base_dir || !*base_dir)
      snprintf(path, sizeof path, "%s", file->str);
    else snprintf(path, sizeof path, "%s/%s", base_dir, file->str);
    src_file = cad_arena_dup(&t->arena, path, strlen(path) + 1);
    if (!src_file) return CAD_E_NOMEM;
    lrc = load_csv(path, src_file, hdr, dch, &rows, &t->arena, e, file);
  }
  if (lrc == CAD_E_NOMEM) {
    rows_free(&rows);
    return lrc;
  }
  int rc = 0;
  if (lrc == 0 && build(tb, &t->arena, &rows, e, src_file, tb->name) == CAD_E_NOMEM)
    rc = CAD_E_NOMEM;
  rows_free(&rows);
  return rc < 0 ? rc : 1;
}

int cad_tables_load(const cad_yaml_node_t *node, const char *base_dir, cad_tables_t **out,
                    cad_buf_t *errors) {
  cad__errs_t e = {errors, 0};
  *out = NULL;
  cad_tables_t *t = calloc(1, sizeof *t);
  if (!t) return CAD_E_NOMEM;
  t->refs = 1;
  cad_arena_init(&t->arena, 16384, 0);
  int rc = 0;
  if (!node || cad_yaml_is_null(node)) goto done;
  if (node->type != CAD_YAML_MAPPING) {
    cad__err_node(&e, node, "'tables' must be a mapping of table names, not %s",
                  cad_yaml_type_name(node));
    goto done;
  }
  t->t = cad_arena_alloc(&t->arena, (node->n + 1) * sizeof *t->t);
  if (!t->t) {
    rc = CAD_E_NOMEM;
    goto done;
  }
  for (size_t i = 0; i < node->n && !rc; i++) {
    cad__table_t *tb = &t->t[t->n];
    int lr = load_table(t, tb, &e, node->pairs[i].key, node->pairs[i].value, base_dir, node->file);
    if (lr < 0) rc = lr;
    else if (lr == 1) t->n++;
  }
done:
  if (!rc && e.n) rc = CAD_E_CONFIG;
  if (rc) {
    cad_tables_free(t);
    return rc;
  }
  *out = t;
  return 0;
}
