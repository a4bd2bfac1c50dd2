/* yaml_doc.c - libyaml events to a tree of nodes with positions. */
#include "yaml_doc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cad_error.h"

#define STR_TAG "tag:yaml.org,2002:str"

/* A collection being built: its children wait on the shared `pending` stack
 * from index `start` until the collection ends. */
typedef struct frame {
  cad_yaml_node_t *node;
  size_t start;
} frame_t;

typedef struct builder {
  const char *file;
  const char *data;
  size_t len;
  cad_yaml_limits_t lim;
  cad_yaml_doc_t *doc;
  frame_t *frames; /* malloc'd, lim.max_depth entries */
  size_t depth;
  cad_yaml_node_t **pending; /* malloc'd, grows */
  size_t npending, cap;
  char *err;
  size_t errlen;
} builder_t;

/* yaml_doc.h. */
const char *cad_yaml_quote(char *out, size_t cap, const char *s, size_t len) {
  size_t o = 0;
  if (cap == 0) return out;
  for (size_t i = 0; i < len && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 40) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    if ((c >= 0x20 && c < 0x7f && c != '\\') || c >= 0x80) out[o++] = (char)c;
    else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
  }
  out[o < cap ? o : cap - 1] = 0;
  return out;
}

static int fail_at(builder_t *b, int rc, size_t line, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail_at(builder_t *b, int rc, size_t line, size_t col, const char *fmt, ...) {
  if (!b->err || b->errlen == 0) return rc;
  int n;
  if (line) n = snprintf(b->err, b->errlen, "%s:%zu:%zu: ", b->file, line, col);
  else n = snprintf(b->err, b->errlen, "%s: ", b->file);
  if (n < 0 || (size_t)n >= b->errlen) return rc;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->err + n, b->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return rc;
}

/* Line and column (1-based, columns in characters) of a byte offset. */
static void offset_pos(const builder_t *b, size_t off, size_t *line, size_t *col) {
  size_t l = 1, c = 1;
  if (off > b->len) off = b->len;
  for (size_t i = 0; i < off; i++) {
    unsigned char ch = (unsigned char)b->data[i];
    if (ch == '\n') {
      l++;
      c = 1;
    } else if ((ch & 0xc0) != 0x80) {
      c++;
    }
  }
  *line = l;
  *col = c;
}

static int parser_error(builder_t *b, yaml_parser_t *p) {
  if (p->error == YAML_MEMORY_ERROR)
    return fail_at(b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
  const char *problem = p->problem ? p->problem : "invalid YAML";
  if (p->error == YAML_READER_ERROR) {
    size_t line, col;
    offset_pos(b, p->problem_offset, &line, &col);
    if (p->problem_value != -1)
      return fail_at(b, CAD_E_CONFIG, line, col, "%s (byte 0x%02x)", problem,
                     (unsigned)p->problem_value & 0xffu);
    return fail_at(b, CAD_E_CONFIG, line, col, "%s", problem);
  }
  size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
  if (p->context && p->context_mark.line + 1 != line)
    return fail_at(b, CAD_E_CONFIG, line, col, "%s (%s at line %zu)", problem, p->context,
                   p->context_mark.line + 1);
  if (p->context) return fail_at(b, CAD_E_CONFIG, line, col, "%s (%s)", problem, p->context);
  return fail_at(b, CAD_E_CONFIG, line, col, "%s", problem);
}

static int clamp_int(size_t v) { return v > INT32_MAX ? INT32_MAX : (int)v; }

static cad_yaml_node_t *new_node(builder_t *b, cad_yaml_type_t type, const yaml_event_t *ev,
                                 int *rc) {
  if (b->doc->nnodes >= b->lim.max_nodes) {
    *rc = fail_at(b, CAD_E_TOOBIG, ev->start_mark.line + 1, ev->start_mark.column + 1,
                  "too many YAML nodes (more than %zu)", b->lim.max_nodes);
    return NULL;
  }
  cad_yaml_node_t *n = cad_arena_alloc(&b->doc->arena, sizeof *n);
  if (!n) {
    *rc = fail_at(b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
    return NULL;
  }
  memset(n, 0, sizeof *n);
  n->type = type;
  n->file = b->file;
  n->line = clamp_int(ev->start_mark.line + 1);
  n->col = clamp_int(ev->start_mark.column + 1);
  n->end_line = clamp_int(ev->end_mark.line + 1);
  n->end_col = clamp_int(ev->end_mark.column + 1);
  b->doc->nnodes++;
  return n;
}

/* Attach a finished or opening node to its parent (or make it the root). */
static int attach(builder_t *b, cad_yaml_node_t *n) {
  if (b->depth == 0) {
    b->doc->root = n;
    return 0;
  }
  frame_t *f = &b->frames[b->depth - 1];
  if (f->node->type == CAD_YAML_MAPPING && ((b->npending - f->start) % 2) == 0 &&
      n->type != CAD_YAML_SCALAR)
    return fail_at(b, CAD_E_CONFIG, (size_t)n->line, (size_t)n->col,
                   "a mapping key must be a plain string, not %s",
                   n->type == CAD_YAML_MAPPING ? "a mapping" : "a sequence");
  if (b->npending == b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 64;
    cad_yaml_node_t **np = realloc(b->pending, nc * sizeof *np);
    if (!np) return fail_at(b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
    b->pending = np;
    b->cap = nc;
  }
  b->pending[b->npending++] = n;
  return 0;
}

static int key_cmp(const cad_yaml_node_t *a, const cad_yaml_node_t *b) {
  if (a->len != b->len) return a->len < b->len ? -1 : 1;
  return memcmp(a->str, b->str, a->len);
}

typedef struct keyref {
  const cad_yaml_node_t *key;
  size_t idx;
} keyref_t;

static int keyref_cmp(const void *pa, const void *pb) {
  const keyref_t *a = pa, *b = pb;
  int c = key_cmp(a->key, b->key);
  if (c) return c;
  return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* The index of the earliest key that repeats an earlier one (and in *first
 * the index of that earlier one), or n when the keys are distinct. */
static size_t find_duplicate(const cad_yaml_pair_t *pairs, size_t n, size_t *first, int *rc) {
  size_t best = n;
  if (n <= 32) {
    for (size_t j = 1; j < n && best == n; j++)
      for (size_t i = 0; i < j; i++)
        if (key_cmp(pairs[i].key, pairs[j].key) == 0) {
          best = j;
          *first = i;
          break;
        }
    return best;
  }
  keyref_t *r = malloc(n * sizeof *r);
  if (!r) {
    *rc = CAD_E_NOMEM;
    return n;
  }
  for (size_t i = 0; i < n; i++) r[i] = (keyref_t){pairs[i].key, i};
  qsort(r, n, sizeof *r, keyref_cmp);
  /* In each run of equal keys (sorted by position) the second is the first
   * repetition; keep the earliest over all runs. */
  for (size_t i = 1; i < n; i++) {
    if (key_cmp(r[i - 1].key, r[i].key) == 0 && (i < 2 || key_cmp(r[i - 2].key, r[i].key) != 0) &&
        r[i].idx < best) {
      best = r[i].idx;
      *first = r[i - 1].idx;
    }
  }
  free(r);
  return best;
}

/* Close the innermost collection: move its children into the arena. */
static int close_frame(builder_t *b, const yaml_event_t *ev) {
  frame_t *f = &b->frames[--b->depth];
  cad_yaml_node_t *n = f->node;
  size_t cnt = b->npending - f->start;
  cad_yaml_node_t **kids = cnt ? b->pending + f->start : NULL; /* pending may be NULL */
  n->end_line = clamp_int(ev->end_mark.line + 1);
  n->end_col = clamp_int(ev->end_mark.column + 1);
  if (n->type == CAD_YAML_SEQUENCE) {
    n->n = cnt;
    if (cnt) {
      n->items = cad_arena_alloc(&b->doc->arena, cnt * sizeof *n->items);
      if (!n->items) return fail_at(b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
      memcpy(n->items, kids, cnt * sizeof *n->items);
    }
  } else {
    n->n = cnt / 2; /* libyaml always pairs keys with values */
    if (n->n) {
      n->pairs = cad_arena_alloc(&b->doc->arena, n->n * sizeof *n->pairs);
      if (!n->pairs) return fail_at(b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
      for (size_t i = 0; i < n->n; i++) {
        n->pairs[i].key = kids[2 * i];
        n->pairs[i].value = kids[2 * i + 1];
      }
      int rc = 0;
      size_t first = 0, dup = find_duplicate(n->pairs, n->n, &first, &rc);
      if (rc) return fail_at(b, rc, 0, 0, "out of memory while reading YAML");
      if (dup < n->n) {
        char q[200];
        const cad_yaml_node_t *k = n->pairs[dup].key;
        cad_yaml_quote(q, sizeof q, k->str, k->len);
        return fail_at(b, CAD_E_CONFIG, (size_t)k->line, (size_t)k->col,
                       "duplicate key '%s' (first at line %d)", q, n->pairs[first].key->line);
      }
    }
  }
  b->npending = f->start;
  return 0;
}

static int check_props(builder_t *b, const yaml_event_t *ev, const yaml_char_t *anchor,
                       const yaml_char_t *tag, bool scalar) {
  size_t line = ev->start_mark.line + 1, col = ev->start_mark.column + 1;
  char q[200];
  if (anchor) {
    cad_yaml_quote(q, sizeof q, (const char *)anchor, strlen((const char *)anchor));
    return fail_at(b, CAD_E_CONFIG, line, col,
                   "YAML anchors (&%s) are not supported: write the value out", q);
  }
  if (tag && !(scalar && strcmp((const char *)tag, STR_TAG) == 0)) {
    const char *t = (const char *)tag;
    if (strncmp(t, "tag:yaml.org,2002:", 18) == 0) {
      cad_yaml_quote(q, sizeof q, t + 18, strlen(t + 18));
      return fail_at(b, CAD_E_CONFIG, line, col, "YAML tag !!%s is not supported", q);
    }
    cad_yaml_quote(q, sizeof q, t, strlen(t));
    return fail_at(b, CAD_E_CONFIG, line, col, "YAML tag '%s' is not supported", q);
  }
  return 0;
}

static int on_event(builder_t *b, const yaml_event_t *ev, int *ndocs, bool *done) {
  int rc = 0;
  cad_yaml_node_t *n;
  switch (ev->type) {
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT: return 0;
    case YAML_STREAM_END_EVENT: *done = true; return 0;
    case YAML_DOCUMENT_START_EVENT:
      if ((*ndocs)++ > 0)
        return fail_at(b, CAD_E_CONFIG, ev->start_mark.line + 1, ev->start_mark.column + 1,
                       "a second YAML document: one file holds one document (remove '---')");
      return 0;
    case YAML_ALIAS_EVENT: {
      char q[200];
      const char *a = (const char *)ev->data.alias.anchor;
      cad_yaml_quote(q, sizeof q, a, strlen(a));
      return fail_at(b, CAD_E_CONFIG, ev->start_mark.line + 1, ev->start_mark.column + 1,
                     "YAML aliases (*%s) are not supported: write the value out", q);
    }
    case YAML_SCALAR_EVENT:
      if ((rc = check_props(b, ev, ev->data.scalar.anchor, ev->data.scalar.tag, true))) return rc;
      if (!(n = new_node(b, CAD_YAML_SCALAR, ev, &rc))) return rc;
      n->len = ev->data.scalar.length;
      n->str = cad_arena_dup(&b->doc->arena, ev->data.scalar.value, n->len);
      if (!n->str) return fail_at(b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
      switch (ev->data.scalar.style) {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE: n->style = CAD_YAML_SINGLE; break;
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE: n->style = CAD_YAML_DOUBLE; break;
        case YAML_LITERAL_SCALAR_STYLE: n->style = CAD_YAML_LITERAL; break;
        case YAML_FOLDED_SCALAR_STYLE: n->style = CAD_YAML_FOLDED; break;
        default: n->style = CAD_YAML_PLAIN; break;
      }
      n->quoted = n->style != CAD_YAML_PLAIN || ev->data.scalar.tag != NULL;
      return attach(b, n);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
      const yaml_char_t *anchor =
          seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
      const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
      if ((rc = check_props(b, ev, anchor, tag, false))) return rc;
      if (b->depth >= b->lim.max_depth)
        return fail_at(b, CAD_E_TOOBIG, ev->start_mark.line + 1, ev->start_mark.column + 1,
                       "YAML nested too deeply (more than %zu levels)", b->lim.max_depth);
      if (!(n = new_node(b, seq ? CAD_YAML_SEQUENCE : CAD_YAML_MAPPING, ev, &rc))) return rc;
      if ((rc = attach(b, n))) return rc;
      b->frames[b->depth].node = n;
      b->frames[b->depth].start = b->npending;
      b->depth++;
      return 0;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      if (b->depth == 0) return 0; /* cannot happen: libyaml balances events */
      return close_frame(b, ev);
  }
  return 0;
}

int cad_yaml_parse(const char *file, const char *data, size_t len, const cad_yaml_limits_t *limits,
                   cad_yaml_doc_t **out, char *err, size_t errlen) {
  builder_t b;
  memset(&b, 0, sizeof b);
  b.file = file;
  b.data = data;
  b.len = len;
  b.err = err;
  b.errlen = errlen;
  if (err && errlen) err[0] = 0;
  if (limits) b.lim = *limits;
  if (!b.lim.max_bytes) b.lim.max_bytes = CAD_YAML_MAX_BYTES;
  if (!b.lim.max_depth) b.lim.max_depth = CAD_YAML_MAX_DEPTH;
  if (!b.lim.max_nodes) b.lim.max_nodes = CAD_YAML_MAX_NODES;
  *out = NULL;
  if (len > b.lim.max_bytes)
    return fail_at(&b, CAD_E_TOOBIG, 0, 0, "file is larger than %zu bytes", b.lim.max_bytes);

  b.doc = calloc(1, sizeof *b.doc);
  b.frames = malloc(b.lim.max_depth * sizeof *b.frames);
  if (!b.doc || !b.frames) {
    free(b.doc);
    free(b.frames);
    return fail_at(&b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
  }
  cad_arena_init(&b.doc->arena, 16384, 0);

  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) {
    free(b.doc);
    free(b.frames);
    return fail_at(&b, CAD_E_NOMEM, 0, 0, "out of memory while reading YAML");
  }
  yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
  int rc = 0, ndocs = 0;
  bool done = false;
  while (!done && rc == 0) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      rc = parser_error(&b, &p);
      break;
    }
    rc = on_event(&b, &ev, &ndocs, &done);
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  free(b.frames);
  free(b.pending);
  if (rc) {
    cad_yaml_free(b.doc);
    return rc;
  }
  *out = b.doc;
  return 0;
}

void cad_yaml_free(cad_yaml_doc_t *doc) {
  if (!doc) return;
  cad_arena_free(&doc->arena);
  free(doc);
}

const cad_yaml_node_t *cad_yaml_get(const cad_yaml_node_t *map, const char *key) {
  if (!map || map->type != CAD_YAML_MAPPING) return NULL;
  size_t kl = strlen(key);
  for (size_t i = 0; i < map->n; i++) {
    const cad_yaml_node_t *k = map->pairs[i].key;
    if (k->len == kl && memcmp(k->str, key, kl) == 0) return map->pairs[i].value;
  }
  return NULL;
}

bool cad_yaml_is_null(const cad_yaml_node_t *n) {
  if (!n || n->type != CAD_YAML_SCALAR || n->quoted) return false;
  return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
         strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

int cad_yaml_bool_text(const char *s, size_t len) {
  static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False", "FALSE"};
  for (size_t i = 0; i < 3; i++) {
    if (len == strlen(t[i]) && memcmp(s, t[i], len) == 0) return 1;
    if (len == strlen(f[i]) && memcmp(s, f[i], len) == 0) return 0;
  }
  return -1;
}

int cad_yaml_bool(const cad_yaml_node_t *n) {
  if (!n || n->type != CAD_YAML_SCALAR) return -1;
  return cad_yaml_bool_text(n->str, n->len);
}

const char *cad_yaml_type_name(const cad_yaml_node_t *n) {
  if (!n) return "nothing";
  switch (n->type) {
    case CAD_YAML_MAPPING: return "a mapping";
    case CAD_YAML_SEQUENCE: return "a sequence";
    case CAD_YAML_SCALAR: return cad_yaml_is_null(n) ? "nothing" : "a string";
  }
  return "nothing";
}
