/* config.c - load, check and model the YAML configuration (see config.h).
 *
 * How it works:
 *   1. Each file is read into a tree (parsers/base/yaml_doc.h).  The top level is
 *      checked against `top_keys`; `include:` loads other files on the spot,
 *      and the entries of `destinations:` and `channels:` of every file are
 *      collected by name (a name defined twice is an error).
 *   2. Then every destination, then every channel (whose `to:` may name a
 *      destination of any file) is checked against its table of keys.
 *   3. Rules that span channels (a listen address used twice) come last.
 *
 * A section of the configuration is a table of conf_key_t, in the spirit of
 * nginx's command tables: a key's name, its setter, where the setter stores
 * the value (offsetof), whether it is required, its default written as YAML
 * would write it, and its range.  A new key is one line in a table; a new
 * section is a table and a setter that applies it (routes will be one).
 *
 * Every problem becomes one line "file:line:column: message" in an error
 * buffer; loading goes on after an error so that one run shows them all (up
 * to MAX_ERRORS).
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cad_error.h"
#include "cad_io.h"
#include "cad_mem.h"
#include "hl7.h"
#include "yaml_doc.h"

#define MAX_ERRORS 50
#define MAX_FILES 64 /* main file + includes */
#define MAX_INCLUDE_DEPTH 16
#define MAX_TOTAL_BYTES ((size_t)64 << 20)
#define MAX_NAMED 4096 /* channels, and destinations */
#define MAX_NAME_LEN CAD_CONF_NAME_MAX
#define MAX_LISTEN 16 /* per channel */
#define MAX_TO 256    /* per channel */
#define QBUF 200      /* a quoted value in a message */

#define MS_SECOND UINT64_C(1000)
#define MS_DAY (UINT64_C(86400) * MS_SECOND)

/* Enums are stored through an int: that needs them to be int-sized. */
_Static_assert(sizeof(cad_log_level_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_log_format_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_ack_mode_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_dest_type_t) == sizeof(int), "enum size");

/* ---- the loader ------------------------------------------------------ */

typedef struct named {
  const cad_yaml_node_t *key, *val; /* "lab:" and its settings */
} named_t;

typedef struct loader {
  cad_config_t *c;
  unsigned flags;
  cad_buf_t err;         /* the error lines */
  int nerr, dropped;     /* lines written, lines beyond MAX_ERRORS */
  bool nomem, io;        /* out of memory; the main file cannot be read */
  cad_yaml_doc_t **docs; /* every parsed file, alive until the end */
  size_t ndocs, docs_cap;
  char **real; /* realpath() of c->files[i], or NULL (in memory) */
  size_t files_cap;
  size_t stack[MAX_INCLUDE_DEPTH + 1]; /* c->files indexes being read */
  size_t depth;
  size_t total_bytes;
  bool in_main; /* applying the main file's top level */
  named_t *dests, *chans;
  size_t ndests, nchans, dests_cap, chans_cap;
  const char *where;             /* "in channel 'lab'": the section being applied */
  size_t kept_refs;              /* ${HL7-path} references the last expand() left */
  struct dest_ref *by_name;      /* c->dests sorted by name, for `to:` */
  const cad_yaml_node_t *tables; /* top-level `tables:` (main file), or NULL */
} loader_t;

typedef struct dest_ref {
  const char *name;
  size_t idx;
} dest_ref_t;

static int dest_ref_cmp(const void *pa, const void *pb) {
  return strcmp(((const dest_ref_t *)pa)->name, ((const dest_ref_t *)pb)->name);
}

static void add_line(loader_t *L, const char *file, int line, int col, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));
static void add_line(loader_t *L, const char *file, int line, int col, const char *fmt,
                     va_list ap) {
  if (L->nerr >= MAX_ERRORS) {
    L->dropped++;
    return;
  }
  L->nerr++;
  int rc = line > 0 ? cad_buf_printf(&L->err, "%s:%d:%d: ", file, line, col)
                    : cad_buf_printf(&L->err, "%s: ", file);
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (rc == 0) rc = cad_buf_puts(&L->err, msg);
  if (rc == 0) rc = cad_buf_putc(&L->err, '\n');
  if (rc) L->nomem = true;
}

static void err_pos(loader_t *L, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void err_pos(loader_t *L, const char *file, int line, int col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  add_line(L, file, line, col, fmt, ap);
  va_end(ap);
}

static void err_at(loader_t *L, const cad_yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err_at(loader_t *L, const cad_yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  add_line(L, n->file, n->line, n->col, fmt, ap);
  va_end(ap);
}

static void add_raw(loader_t *L, const char *line) {
  if (L->nerr >= MAX_ERRORS) {
    L->dropped++;
    return;
  }
  L->nerr++;
  if (cad_buf_puts(&L->err, line) || cad_buf_putc(&L->err, '\n')) L->nomem = true;
}

/* Up to 40 characters of s for a message: printable ASCII and UTF-8 as is,
 * control bytes as \xNN, so that hostile input cannot garble a terminal. */
static const char *quote(char *out, const char *s, size_t len) {
  return cad_yaml_quote(out, QBUF, s, len); /* yaml_doc.h */
}

/* "'text'" for a scalar, else "a mapping" / "a sequence" / "nothing". */
static const char *describe(char *out, const cad_yaml_node_t *v) {
  if (v->type == CAD_YAML_SCALAR && !cad_yaml_is_null(v)) {
    char q[QBUF];
    quote(q, v->str, v->len);
    snprintf(out, QBUF + 2, "'%s'", q);
    return out;
  }
  snprintf(out, QBUF + 2, "%s", cad_yaml_type_name(v));
  return out;
}

static cad_conf_pos_t pos_of(const cad_yaml_node_t *n) {
  return (cad_conf_pos_t){n->file, n->line, n->col};
}

static bool grow(void **arr, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t nc = *cap ? *cap * 2 : 8;
  while (nc < need) nc *= 2;
  void *p = realloc(*arr, nc * elem);
  if (!p) return false;
  *arr = p;
  *cap = nc;
  return true;
}

/* Number of characters (not bytes) in s[0..n). */
static int utf8_chars(const char *s, size_t n) {
  int c = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
  return c;
}

/* The column of byte `off` of a scalar's value, when the value is written on
 * one line without escapes (so that it maps to the text); else its start. */
static int scalar_col(const cad_yaml_node_t *v, size_t off) {
  int q;
  switch (v->style) {
    case CAD_YAML_PLAIN: q = 0; break;
    case CAD_YAML_SINGLE:
    case CAD_YAML_DOUBLE: q = 1; break;
    default: return v->col;
  }
  if (v->end_line != v->line || v->end_col - v->col != utf8_chars(v->str, v->len) + 2 * q)
    return v->col;
  return v->col + q + utf8_chars(v->str, off);
}

/* ---- ${...} in values ------------------------------------------------ */

static bool is_env_name(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
          ch == '_'))
      return false;
  }
  return true;
}

/* An HL7 path (SEG-N...) that the engine evaluates per message. */
static bool is_hl7_path(const char *s, size_t n, size_t *errpos, const char **why) {
  cad_hl7_path_t p;
  if (cad_hl7_path_parse(s, n, &p, errpos, why) != 0) return false;
  if (p.field == 0) {
    *errpos = n;
    *why = "expected '-' and a field number after the segment id";
    return false;
  }
  return true;
}

/* The value of a scalar with ${ENV_VAR} replaced by the variable's value and
 * $${ by a literal ${.  ${SEG-N...} (an HL7 path) is left as written, for the
 * engine to fill from each message.  Returns a malloc'd string, or NULL after
 * reporting the problem. */
static char *expand(loader_t *L, const cad_yaml_node_t *v) {
  L->kept_refs = 0;
  if (memchr(v->str, 0, v->len)) {
    err_at(L, v, "a value cannot contain a NUL character");
    return NULL;
  }
  if (!memchr(v->str, '$', v->len)) {
    char *s = strdup(v->str);
    if (!s) L->nomem = true;
    return s;
  }
  cad_buf_t b = CAD_BUF_INIT;
  const char *s = v->str;
  size_t n = v->len, i = 0;
  int rc = 0;
  char q[QBUF];
  while (i < n && rc == 0) {
    if (s[i] == '$' && i + 2 < n && s[i + 1] == '$' && s[i + 2] == '{') {
      rc = cad_buf_append(&b, "${", 2);
      i += 3;
    } else if (s[i] == '$' && i + 1 < n && s[i + 1] == '{') {
      const char *close = memchr(s + i + 2, '}', n - i - 2);
      if (!close) {
        err_pos(L, v->file, v->line, scalar_col(v, i),
                "'${' without a closing '}' (write $${ for a literal ${)");
        goto fail;
      }
      const char *name = s + i + 2;
      size_t nl = (size_t)(close - name), errpos = 0;
      const char *why = NULL;
      if (is_env_name(name, nl)) {
        char var[256];
        if (nl >= sizeof var) {
          err_pos(L, v->file, v->line, scalar_col(v, i), "environment variable name too long");
          goto fail;
        }
        memcpy(var, name, nl);
        var[nl] = 0;
        const char *val = getenv(var);
        if (!val) {
          err_pos(L, v->file, v->line, scalar_col(v, i), "environment variable '%s' is not set",
                  var);
          goto fail;
        }
        rc = cad_buf_puts(&b, val);
      } else if (is_hl7_path(name, nl, &errpos, &why)) {
        rc = cad_buf_append(&b, s + i, nl + 3);
        L->kept_refs++;
      } else {
        err_pos(L, v->file, v->line, scalar_col(v, i),
                "'${%s}' is neither an environment variable (letters, digits, '_') nor an "
                "HL7 path like ${MSH-10}",
                quote(q, name, nl));
        goto fail;
      }
      i += nl + 3;
    } else {
      rc = cad_buf_putc(&b, s[i]);
      i++;
    }
  }
  if (rc == 0 && cad_buf_cstr(&b) == NULL) rc = CAD_E_NOMEM;
  if (rc) {
    L->nomem = true;
    goto fail;
  }
  if (!b.data) {
    char *e = strdup("");
    if (!e) L->nomem = true;
    return e;
  }
  return b.data; /* NUL-terminated by cad_buf_cstr; ownership passes on */
fail:
  cad_buf_free(&b);
  return NULL;
}

/* ---- the key tables -------------------------------------------------- */

typedef struct conf_key conf_key_t;
typedef struct conf_section conf_section_t;

/* Apply value `v` (written after `key`; for a default, key is NULL) to the
 * field of `obj` that `k` names.  Problems are reported, never returned. */
typedef void (*conf_set_fn)(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                            const cad_yaml_node_t *v, void *obj);

enum {
  K_REQUIRED = 1u << 0,  /* no default: the key must be written */
  K_MAIN_ONLY = 1u << 1, /* only in the main file (not in an included one) */
  K_ZERO_OK = 1u << 2,   /* 0 is allowed (means "off") even below `lo` */
};

struct conf_key {
  const char *name;
  conf_set_fn set;
  size_t off; /* offsetof the field in obj */
  unsigned flags;
  const char *def; /* default, as YAML would write it; NULL = none */
  uint64_t lo, hi; /* range: ms for durations, bytes for sizes */
  const void *arg; /* setter-specific (enum names, a sub-section) */
  const char *doc; /* what it is, for "missing 'x'" messages */
};

struct conf_section {
  const char *what; /* "channel", ... for "expected a mapping of ... settings" */
  const conf_key_t *keys;
  size_t nkeys;
  /* Rules between keys, after every key is applied (seen[i]: keys[i] was
   * written). May be NULL. */
  void (*check)(loader_t *L, const cad_yaml_node_t *key, const cad_yaml_node_t *map, void *obj,
                const bool *seen);
};

#define FIELD(obj, k, type) ((type *)(void *)((char *)(obj) + (k)->off))

/* For a null value, point at the key that introduced it: the value has no
 * position of its own worth showing. */
static const cad_yaml_node_t *at(const cad_yaml_node_t *key, const cad_yaml_node_t *v) {
  return (key && cad_yaml_is_null(v)) ? key : v;
}

/* A scalar's expanded text, or NULL after reporting "expected <what>". */
static char *scalar(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, const char *what) {
  char d[QBUF + 2];
  if (v->type != CAD_YAML_SCALAR || cad_yaml_is_null(v)) {
    err_at(L, at(key, v), "%s: expected %s, got %s", k->name, what, describe(d, v));
    return NULL;
  }
  return expand(L, v);
}

/* `s` (malloc'd, taken) resolved against the directory of `file`, the
 * configuration file that wrote it: every relative path of a configuration
 * is relative to the file it is written in (an included file's paths to
 * that file).  Returns the malloc'd result, or NULL (out of memory). */
static char *resolve(loader_t *L, const char *file, char *s) {
  const char *slash = strrchr(file, '/');
  if (s[0] == '/' || !slash) return s;
  size_t dl = (size_t)(slash - file) + 1, sl = strlen(s);
  char *r = malloc(dl + sl + 1);
  if (!r) {
    L->nomem = true;
    free(s);
    return NULL;
  }
  memcpy(r, file, dl);
  memcpy(r + dl, s, sl + 1);
  free(s);
  return r;
}

/* A file system path: not empty, and no ${HL7-path} (message fields only
 * make sense in a template). */
static void set_path(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  char *s = scalar(L, k, key, v, "a path");
  if (!s) return;
  const char *ref = L->kept_refs ? strstr(s, "${") : NULL;
  if (*s == 0) {
    err_at(L, v, "%s: expected a path, got an empty string", k->name);
  } else if (ref) {
    const char *end = strchr(ref, '}');
    char q[QBUF];
    err_at(L, v,
           "%s: cannot use message fields like %s: only a file destination's 'name' is a template",
           k->name, quote(q, ref, end ? (size_t)(end - ref) + 1 : strlen(ref)));
  } else if ((s = resolve(L, key ? v->file : L->c->files[0], s)) != NULL) {
    char **dst = FIELD(obj, k, char *);
    free(*dst);
    *dst = s;
    return;
  }
  free(s);
}

/* A file the engine reads (a TLS certificate, key or CA bundle): a path as
 * set_path takes it, which must name a readable regular file now, so that
 * `check` finds what `run` would fail on. */
static void set_file(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  char **dst = FIELD(obj, k, char *);
  free(*dst);
  *dst = NULL;
  set_path(L, k, key, v, obj);
  if (!*dst) return;
  const char *why = NULL;
  char q[QBUF];
  if (cad_io_check_regular(*dst, &why) != 0)
    err_at(L, at(key, v), "%s: cannot read '%s': %s", k->name, quote(q, *dst, strlen(*dst)), why);
}

/* A file name template: literal text and ${HL7-path} references; no '/' and
 * no '..' outside the references (the engine makes the field values safe). */
static void set_template(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj) {
  char *s = scalar(L, k, key, v, "a file name template like \"${MSH-7}_${MSH-10}.hl7\"");
  if (!s) return;
  size_t n = strlen(s), refs = 0;
  bool ok = true;
  for (size_t i = 0; i < n && ok; i++) {
    if (s[i] == '$' && s[i + 1] == '{') {
      const char *close = strchr(s + i, '}');
      if (!close) { /* only from an environment variable's value */
        err_at(L, v, "%s: '${' without a closing '}'", k->name);
        ok = false;
        break;
      }
      i = (size_t)(close - s); /* expand() checked the references it left */
      refs++;
    } else if (s[i] == '/' || s[i] == '\\') {
      err_at(
          L, v,
          "%s: '%c' is not allowed in a file name template: the name stays inside the destination's 'dir'",
          k->name, s[i]);
      ok = false;
    } else if (s[i] == '.' && s[i + 1] == '.') {
      err_at(L, v, "%s: '..' is not allowed in a file name template", k->name);
      ok = false;
    } else if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
      err_at(L, v, "%s: control characters are not allowed in a file name template", k->name);
      ok = false;
    }
  }
  if (ok && n == 0) {
    err_at(L, v, "%s: expected a file name template, got an empty string", k->name);
    ok = false;
  }
  if (ok && refs == 0) {
    err_at(L, v,
           "%s: a template without ${...} gives every message the same file name "
           "(use 'append' to write all messages to one file)",
           k->name);
    ok = false;
  }
  if (!ok) {
    free(s);
    return;
  }
  char **dst = FIELD(obj, k, char *);
  free(*dst);
  *dst = s;
}

typedef struct enum_arg {
  const char *const *names; /* NULL-terminated; value = base + index */
  int base;
  const char *doc; /* "debug, info, warn or error" */
} enum_arg_t;

static void set_enum(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  const enum_arg_t *e = k->arg;
  char what[160];
  snprintf(what, sizeof what, "one of %s", e->doc);
  char *s = scalar(L, k, key, v, what);
  if (!s) return;
  for (int i = 0; e->names[i]; i++) {
    if (strcmp(s, e->names[i]) == 0) {
      int val = e->base + i;
      memcpy(FIELD(obj, k, int), &val, sizeof val);
      free(s);
      return;
    }
  }
  char q[QBUF];
  err_at(L, v, "%s: expected %s, got '%s'", k->name, what, quote(q, s, strlen(s)));
  free(s);
}

/* Check `x` against the key's range; report and return false if outside. */
static bool in_range(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *v, uint64_t x,
                     char *(*fmt)(uint64_t, char *, size_t), const char *text) {
  if ((x == 0 && (k->flags & K_ZERO_OK)) || (x >= k->lo && x <= k->hi)) return true;
  char lo[32], hi[32], q[QBUF];
  err_at(L, v, "%s: must be from %s to %s%s, got %s", k->name, fmt(k->lo, lo, sizeof lo),
         fmt(k->hi, hi, sizeof hi), (k->flags & K_ZERO_OK) ? " (or 0 for none)" : "",
         quote(q, text, strlen(text)));
  return false;
}

static char *fmt_duration(uint64_t x, char *buf, size_t cap) {
  return cad_config_format_duration(x, buf, cap);
}
static char *fmt_size(uint64_t x, char *buf, size_t cap) {
  return cad_config_format_size((size_t)x, buf, cap);
}
static char *fmt_number(uint64_t x, char *buf, size_t cap) {
  snprintf(buf, cap, "%llu", (unsigned long long)x);
  return buf;
}

static void set_duration(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj) {
  static const char what[] = "a duration like 30s, 250ms or 5m";
  char *s = scalar(L, k, key, v, what);
  if (!s) return;
  uint64_t ms;
  char q[QBUF];
  if (cad_config_parse_duration(s, &ms) != 0)
    err_at(L, v, "%s: expected %s, got '%s'", k->name, what, quote(q, s, strlen(s)));
  else if (in_range(L, k, v, ms, fmt_duration, s)) *FIELD(obj, k, uint64_t) = ms;
  free(s);
}

static void set_size(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  static const char what[] = "a size like 4MiB, 64KiB or 1000000";
  char *s = scalar(L, k, key, v, what);
  if (!s) return;
  size_t bytes;
  char q[QBUF];
  if (cad_config_parse_size(s, &bytes) != 0)
    err_at(L, v, "%s: expected %s, got '%s'", k->name, what, quote(q, s, strlen(s)));
  else if (in_range(L, k, v, bytes, fmt_size, s)) *FIELD(obj, k, size_t) = bytes;
  free(s);
}

/* A whole number within the key's range; false after reporting. */
static bool whole_number(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, uint64_t max, uint64_t *out) {
  static const char what[] = "a whole number";
  char *s = scalar(L, k, key, v, what);
  if (!s) return false;
  uint64_t x = 0;
  bool ok = *s != 0;
  for (const char *p = s; *p && ok; p++) {
    if (*p < '0' || *p > '9' || x > max / 10) ok = false;
    else x = x * 10 + (uint64_t)(*p - '0');
  }
  char q[QBUF];
  bool good = false;
  if (!ok) err_at(L, v, "%s: expected %s, got '%s'", k->name, what, quote(q, s, strlen(s)));
  else if (in_range(L, k, v, x, fmt_number, s)) good = true;
  free(s);
  *out = x;
  return good;
}

static void set_u32(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, void *obj) {
  uint64_t x;
  if (whole_number(L, k, key, v, UINT32_MAX, &x)) *FIELD(obj, k, uint32_t) = (uint32_t)x;
}

static void set_u32_64(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  uint64_t x;
  if (whole_number(L, k, key, v, UINT64_MAX / 10, &x)) *FIELD(obj, k, uint64_t) = x;
}

static void apply_section(loader_t *L, const conf_section_t *sec, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *map, void *obj, const char *where);

/* A nested mapping (`ack:`) whose keys set fields of the same object. */
static void set_section(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj) {
  char where[300];
  const char *outer = L->where;
  /* "in channel 'lab'" -> "in ack of channel 'lab'"; "at the top level" -> "in engine" */
  if (strncmp(outer, "in ", 3) == 0)
    snprintf(where, sizeof where, "in %s of %s", k->name, outer + 3);
  else snprintf(where, sizeof where, "in %s", k->name);
  apply_section(L, k->arg, key, v, obj, where);
}

/* Apply `sec` to `obj`: every key of `map` through its setter, then the
 * defaults of the keys not written, then the section's own check.  With
 * map == NULL only the defaults are applied. */
static void apply_section(loader_t *L, const conf_section_t *sec, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *map, void *obj, const char *where) {
  const char *saved = L->where;
  L->where = where;
  bool seen[32] = {false};
  assert(sec->nkeys <= sizeof seen / sizeof seen[0]);
  bool checkable = true;
  if (map && cad_yaml_is_null(map)) map = NULL; /* "ack:" with nothing: the defaults */
  if (map && map->type != CAD_YAML_MAPPING) {
    char d[QBUF + 2];
    err_at(L, at(key, map), "expected a mapping of %s settings %s, got %s", sec->what, where,
           describe(d, map));
    map = NULL;
    checkable = false;
  }
  for (size_t i = 0; map && i < map->n; i++) {
    const cad_yaml_node_t *kn = map->pairs[i].key, *vn = map->pairs[i].value;
    size_t j = 0;
    while (j < sec->nkeys && strcmp(sec->keys[j].name, kn->str) != 0) j++;
    if (j == sec->nkeys || memchr(kn->str, 0, kn->len)) {
      char list[512], q[QBUF];
      size_t o = 0;
      list[0] = 0;
      for (size_t m = 0; m < sec->nkeys && o < sizeof list; m++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", m ? ", " : "", sec->keys[m].name);
      err_at(L, kn, "unknown key '%s' %s (expected one of: %s)", quote(q, kn->str, kn->len), where,
             list);
      continue;
    }
    const conf_key_t *k = &sec->keys[j];
    seen[j] = true;
    if ((k->flags & K_MAIN_ONLY) && !L->in_main) {
      err_at(L, kn, "'%s' may only be set in the main file (%s)", k->name, L->c->files[0]);
      continue;
    }
    k->set(L, k, kn, vn, obj);
  }
  for (size_t j = 0; j < sec->nkeys; j++) {
    const conf_key_t *k = &sec->keys[j];
    if (seen[j]) continue;
    if ((k->flags & K_REQUIRED) && checkable && key) {
      err_at(L, key, "missing '%s' %s (%s)", k->name, where, k->doc);
    } else if (k->set == set_section && (!(k->flags & K_MAIN_ONLY) || L->in_main)) {
      k->set(L, k, NULL, NULL, obj); /* the sub-section's defaults */
    } else if (k->def) {
      cad_yaml_node_t d = {.type = CAD_YAML_SCALAR,
                           .file = "(default)",
                           .str = k->def,
                           .len = strlen(k->def),
                           .quoted = true,
                           .style = CAD_YAML_DOUBLE};
      k->set(L, k, NULL, &d, obj);
    }
  }
  if (sec->check && checkable && map) sec->check(L, key, map, obj, seen);
  L->where = saved;
}

/* ---- engine ---------------------------------------------------------- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const enum_arg_t log_level_arg = {log_levels, CAD_LOG_DEBUG, "debug, info, warn or error"};
static const char *const log_formats[] = {"kv", "json", NULL};
static const enum_arg_t log_format_arg = {log_formats, CAD_LOG_KV, "kv or json"};

static const conf_key_t queue_keys[] = {
    {"segment_size", set_size, offsetof(cad_config_t, queue_segment_bytes), 0, "64MiB",
     (uint64_t)1 << 16, (uint64_t)1 << 32, NULL, "the size of one journal segment file"},
    {"retain", set_duration, offsetof(cad_config_t, queue_retain_ms), 0, "7d", MS_SECOND,
     3650 * MS_DAY, NULL, "how long delivered messages are kept as an archive"},
    {"retain_size", set_size, offsetof(cad_config_t, queue_retain_bytes), K_ZERO_OK, "0",
     (uint64_t)1 << 20, (uint64_t)1 << 50, NULL,
     "the most bytes of delivered messages kept (0 = no limit)"},
    {"max_pending", set_size, offsetof(cad_config_t, queue_max_pending), 0, "64MiB",
     (uint64_t)1 << 20, (uint64_t)1 << 34, NULL, "bytes waiting to be written to disk"},
};
static const conf_section_t queue_section = {"queue", queue_keys,
                                             sizeof queue_keys / sizeof queue_keys[0], NULL};

static const conf_key_t engine_keys[] = {
    {"data_dir", set_path, offsetof(cad_config_t, data_dir), 0, "var/data", 0, 0, NULL,
     "the directory for the engine's state"},
    {"log_level", set_enum, offsetof(cad_config_t, log_level), 0, "info", 0, 0, &log_level_arg,
     "debug, info, warn or error"},
    {"log_format", set_enum, offsetof(cad_config_t, log_format), 0, "kv", 0, 0, &log_format_arg,
     "kv or json"},
    {"stats_interval", set_duration, offsetof(cad_config_t, stats_interval_ms), K_ZERO_OK, "60s",
     MS_SECOND, 7 * MS_DAY, NULL, "how often counters are logged"},
    {"queue", set_section, 0, 0, NULL, 0, 0, &queue_section, "the durable queue"},
};
static const conf_section_t engine_section = {"engine", engine_keys,
                                              sizeof engine_keys / sizeof engine_keys[0], NULL};

/* ---- destinations ---------------------------------------------------- */

static const char *const dest_types[] = {"file", "mllp", NULL};
static const enum_arg_t dest_type_arg = {dest_types, CAD_DEST_FILE, "file or mllp"};

static void check_file_dest(loader_t *L, const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                            void *obj, const bool *seen) {
  cad_conf_dest_t *d = obj;
  /* indexes in file_dest_keys: 1 dir, 2 append, 3 name */
  if (!seen[1] && !seen[2]) {
    err_at(L, key,
           "missing 'dir' or 'append' %s (dir: one file per message in a directory; "
           "append: every message appended to one file)",
           L->where);
  } else if (seen[1] && seen[2]) {
    const cad_yaml_node_t *dir = NULL, *app = NULL;
    for (size_t i = 0; i < map->n; i++) {
      if (strcmp(map->pairs[i].key->str, "dir") == 0) dir = map->pairs[i].key;
      if (strcmp(map->pairs[i].key->str, "append") == 0) app = map->pairs[i].key;
    }
    const cad_yaml_node_t *second =
        (dir->line > app->line || (dir->line == app->line && dir->col > app->col)) ? dir : app;
    err_at(L, second,
           "'dir' and 'append' cannot both be set %s: choose one file per message "
           "(dir) or one file for all (append)",
           L->where);
  } else if (seen[2] && seen[3]) {
    const cad_yaml_node_t *nm = NULL;
    for (size_t i = 0; i < map->n; i++)
      if (strcmp(map->pairs[i].key->str, "name") == 0) nm = map->pairs[i].key;
    err_at(L, nm, "'name' applies only with 'dir' (one file per message), not with 'append' %s",
           L->where);
  }
  if (d->dir && !d->name_tmpl && !seen[3]) {
    d->name_tmpl = strdup("${MSH-10}.hl7");
    if (!d->name_tmpl) L->nomem = true;
  }
}

/* Delivery keys every destination type has (appended to each type's table). */
static const char *const on_failures[] = {"block", "dead_letter", NULL};
static const enum_arg_t on_failure_arg = {on_failures, CAD_ON_FAILURE_BLOCK,
                                          "block or dead_letter"};

static const conf_key_t retry_keys[] = {
    {"initial", set_duration, offsetof(cad_conf_dest_t, retry_initial_ms), 0, "1s", 10, MS_DAY,
     NULL, "the first wait before a retry"},
    {"max", set_duration, offsetof(cad_conf_dest_t, retry_max_ms), 0, "60s", 10, MS_DAY, NULL,
     "the longest wait between retries"},
    {"attempts", set_u32, offsetof(cad_conf_dest_t, retry_attempts), 0, "10", 1, 1000000, NULL,
     "attempts before on_failure applies"},
};
static const conf_section_t retry_section = {"retry", retry_keys,
                                             sizeof retry_keys / sizeof retry_keys[0], NULL};

#define DELIVERY_KEYS                                                                           \
  {"retry", set_section, 0, 0, NULL, 0, 0, &retry_section, "retries with exponential backoff"}, \
      {"on_failure",                                                                            \
       set_enum,                                                                                \
       offsetof(cad_conf_dest_t, on_failure),                                                   \
       0,                                                                                       \
       "block",                                                                                 \
       0,                                                                                       \
       0,                                                                                       \
       &on_failure_arg,                                                                         \
       "block or dead_letter"},                                                                 \
  {                                                                                             \
    "max_backlog", set_u32_64, offsetof(cad_conf_dest_t, max_backlog), K_ZERO_OK, "0", 1,       \
        (uint64_t)1 << 40, NULL, "messages allowed to wait (0 = no limit)"                      \
  }

/* Permission bits in octal ("0640", "640"): 0 to 0777. */
static void set_mode(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  char *s = scalar(L, k, key, v, "permission bits in octal, like 0640");
  if (!s) return;
  uint32_t x = 0;
  bool ok = *s != 0 && strlen(s) <= 4;
  for (const char *p = s; *p && ok; p++) {
    if (*p < '0' || *p > '7') ok = false;
    else x = x * 8 + (uint32_t)(*p - '0');
  }
  char q[QBUF];
  if (!ok || x > 0777)
    err_at(L, v, "%s: expected permission bits in octal from 0000 to 0777, like 0640, got '%s'",
           k->name, quote(q, s, strlen(s)));
  else *FIELD(obj, k, uint32_t) = x;
  free(s);
}

static const conf_key_t file_dest_keys[] = {
    {"type", set_enum, offsetof(cad_conf_dest_t, type), K_REQUIRED, NULL, 0, 0, &dest_type_arg,
     "one of: file or mllp"},
    {"dir", set_path, offsetof(cad_conf_dest_t, dir), 0, NULL, 0, 0, NULL,
     "the directory for one file per message"},
    {"append", set_path, offsetof(cad_conf_dest_t, append_path), 0, NULL, 0, 0, NULL,
     "the one file every message is appended to"},
    {"name", set_template, offsetof(cad_conf_dest_t, name_tmpl), 0, NULL, 0, 0, NULL,
     "the file name template, default \"${MSH-10}.hl7\""},
    {"mode", set_mode, offsetof(cad_conf_dest_t, file_mode), 0, "0600", 0, 0, NULL,
     "permissions of the files it creates"},
    {"dir_mode", set_mode, offsetof(cad_conf_dest_t, dir_mode), 0, "0700", 0, 0, NULL,
     "permissions of the directories it creates"},
    DELIVERY_KEYS,
};
static const conf_section_t file_dest_section = {"destination", file_dest_keys,
                                                 sizeof file_dest_keys / sizeof file_dest_keys[0],
                                                 check_file_dest};

/* ---- MLLP destinations (type: mllp) and TLS settings ------------------ */

_Static_assert(sizeof(cad_nak_action_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_tls_min_t) == sizeof(int), "enum size");

/* The key node `name` of a mapping (for the position of an error). */
static const cad_yaml_node_t *key_node(const cad_yaml_node_t *map, const char *name) {
  for (size_t i = 0; i < map->n; i++)
    if (strcmp(map->pairs[i].key->str, name) == 0) return map->pairs[i].key;
  return map;
}

/* true or false: the one rule of cad_yaml_bool_text (YAML 1.2 core). */
static void set_flag(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  static const char what[] = CAD_YAML_BOOL_WORDS;
  char *s = scalar(L, k, key, v, what);
  if (!s) return;
  int val = cad_yaml_bool_text(s, strlen(s));
  char q[QBUF];
  if (val < 0) err_at(L, v, "%s: expected %s, got '%s'", k->name, what, quote(q, s, strlen(s)));
  else *FIELD(obj, k, bool) = val == 1;
  free(s);
}

/* A host to connect to: an IP address ([v6] brackets are dropped) or a DNS
 * name of letters, digits, '-', '_' and '.' (resolved when connecting). */
static void set_host(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  static const char what[] = "a host name or IP address like ehr.example.org or 10.0.0.5";
  char *s = scalar(L, k, key, v, what);
  if (!s) return;
  size_t n = strlen(s);
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
    memmove(s, s + 1, n - 2);
    s[n -= 2] = 0;
  }
  unsigned char bin[16];
  bool ok = n > 0 && n <= 253;
  if (ok && inet_pton(AF_INET6, s, bin) != 1)
    for (size_t i = 0; i < n && ok; i++)
      ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
           (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.' || s[i] == '_';
  if (!ok) {
    char q[QBUF];
    err_at(L, v, "%s: expected %s, got '%s'", k->name, what, quote(q, s, n));
    free(s);
    return;
  }
  char **dst = FIELD(obj, k, char *);
  free(*dst);
  *dst = s;
}

/* A non-empty string, used as is (a cipher list). */
static void set_text(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  char *s = scalar(L, k, key, v, k->doc);
  if (!s) return;
  if (*s == 0 || L->kept_refs) {
    err_at(L, v, "%s: expected %s, got '%s'", k->name, k->doc, s);
    free(s);
    return;
  }
  char **dst = FIELD(obj, k, char *);
  free(*dst);
  *dst = s;
}

static void check_tls_client(loader_t *L, const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                             void *obj, const bool *seen) {
  (void)key;
  (void)obj;
  /* indexes in tls_client_keys: 1 cert, 2 key */
  if (seen[1] != seen[2])
    err_at(L, key_node(map, seen[1] ? "cert" : "key"),
           "'cert' and 'key' go together %s: a client certificate needs its key", L->where);
}

static const conf_key_t tls_client_keys[] = {
    {"ca", set_file, offsetof(cad_conf_dest_t, tls.ca), 0, NULL, 0, 0, NULL,
     "the CAs the receiver's certificate must chain to (default: the system's)"},
    {"cert", set_file, offsetof(cad_conf_dest_t, tls.cert), 0, NULL, 0, 0, NULL,
     "our client certificate, for receivers that ask for one"},
    {"key", set_file, offsetof(cad_conf_dest_t, tls.key), 0, NULL, 0, 0, NULL,
     "the key of the client certificate"},
    {"verify_hostname", set_flag, offsetof(cad_conf_dest_t, tls.verify_hostname), 0, "true", 0, 0,
     NULL, "check that the receiver's certificate names the host"},
    {"server_name", set_host, offsetof(cad_conf_dest_t, tls.server_name), 0, NULL, 0, 0, NULL,
     "the name to verify and send (SNI), default the host"},
};
static const conf_section_t tls_client_section = {
    "tls", tls_client_keys, sizeof tls_client_keys / sizeof tls_client_keys[0], check_tls_client};

/* `tls:` of a destination: present means TLS (`tls: {}` takes every default). */
static void set_tls_client(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                           const cad_yaml_node_t *v, void *obj) {
  ((cad_conf_dest_t *)obj)->tls.enabled = true;
  set_section(L, k, key, v, obj);
}

static const char *const nak_actions[] = {"retry", "dead_letter", NULL};
static const enum_arg_t nak_action_arg = {nak_actions, CAD_NAK_RETRY, "retry or dead_letter"};

#define MS_HOUR (UINT64_C(3600) * MS_SECOND)

static const conf_key_t mllp_dest_keys[] = {
    {"type", set_enum, offsetof(cad_conf_dest_t, type), K_REQUIRED, NULL, 0, 0, &dest_type_arg,
     "one of: file or mllp"},
    {"host", set_host, offsetof(cad_conf_dest_t, host), K_REQUIRED, NULL, 0, 0, NULL,
     "the receiver's host name or IP address"},
    {"port", set_u32, offsetof(cad_conf_dest_t, port), K_REQUIRED, NULL, 1, 65535, NULL,
     "the receiver's port"},
    {"persistent", set_flag, offsetof(cad_conf_dest_t, persistent), 0, "true", 0, 0, NULL,
     "keep the connection open between messages"},
    {"connect_timeout", set_duration, offsetof(cad_conf_dest_t, connect_timeout_ms), 0, "10s", 100,
     MS_HOUR, NULL, "the longest wait for a connection: DNS lookup, every address, TLS handshake"},
    {"ack_timeout", set_duration, offsetof(cad_conf_dest_t, ack_timeout_ms), 0, "30s", 100, MS_HOUR,
     NULL, "the longest wait for an ACK"},
    {"idle_close", set_duration, offsetof(cad_conf_dest_t, idle_close_ms), K_ZERO_OK, "0",
     MS_SECOND, 7 * MS_DAY, NULL, "close a connection unused this long"},
    {"on_ae", set_enum, offsetof(cad_conf_dest_t, on_ae), 0, "retry", 0, 0, &nak_action_arg,
     "retry or dead_letter"},
    {"on_ar", set_enum, offsetof(cad_conf_dest_t, on_ar), 0, "dead_letter", 0, 0, &nak_action_arg,
     "retry or dead_letter"},
    {"new_control_id", set_flag, offsetof(cad_conf_dest_t, new_control_id), 0, "false", 0, 0, NULL,
     "a new MSH-10 for every attempt"},
    {"tls", set_tls_client, 0, 0, NULL, 0, 0, &tls_client_section, "MLLP over TLS"},
    DELIVERY_KEYS,
};
static const conf_section_t mllp_dest_section = {
    "destination", mllp_dest_keys, sizeof mllp_dest_keys / sizeof mllp_dest_keys[0], NULL};

/* One line per destination type: its `type:` value and its table. */
static const struct {
  cad_dest_type_t type;
  const conf_section_t *sec;
} dest_kinds[] = {
    {CAD_DEST_FILE, &file_dest_section},
    {CAD_DEST_MLLP, &mllp_dest_section},
};

static void apply_dest(loader_t *L, cad_conf_dest_t *d, const named_t *e) {
  char where[160];
  snprintf(where, sizeof where, "in destination '%s'", d->name);
  const cad_yaml_node_t *map = e->val;
  if (map->type != CAD_YAML_MAPPING) {
    apply_section(L, &file_dest_section, e->key, map, d, where); /* reports the type */
    return;
  }
  const cad_yaml_node_t *tv = cad_yaml_get(map, "type");
  if (!tv) {
    err_at(L, e->key, "missing 'type' %s (one of: %s)", where, dest_type_arg.doc);
    return;
  }
  /* Apply `type` alone first: it chooses the table for the other keys. */
  const char *saved = L->where;
  L->where = where;
  set_enum(L, &file_dest_keys[0], NULL, tv, d);
  L->where = saved;
  for (size_t i = 0; i < sizeof dest_kinds / sizeof dest_kinds[0]; i++)
    if (dest_kinds[i].type == d->type) apply_section(L, dest_kinds[i].sec, e->key, map, d, where);
}

/* ---- channels -------------------------------------------------------- */

static const char *const ack_modes[] = {"auto", "original", "enhanced", NULL};
static const enum_arg_t ack_mode_arg = {ack_modes, CAD_ACK_AUTO, "auto, original or enhanced"};

static const char *const ack_policies[] = {"persisted", "received", "delivered", NULL};
static const enum_arg_t ack_policy_arg = {ack_policies, CAD_ACK_PERSISTED,
                                          "persisted, received or delivered"};

static const conf_key_t ack_keys[] = {
    {"mode", set_enum, offsetof(cad_conf_channel_t, ack_mode), 0, "auto", 0, 0, &ack_mode_arg,
     "auto, original or enhanced"},
    {"policy", set_enum, offsetof(cad_conf_channel_t, ack_policy), 0, "persisted", 0, 0,
     &ack_policy_arg, "persisted, received or delivered"},
};
static const conf_section_t ack_section = {"ack", ack_keys, sizeof ack_keys / sizeof ack_keys[0],
                                           NULL};

/* Parse "host:port" or "[v6]:port" into a numeric host (canonical text) and
 * a port. Returns NULL or the reason it is wrong. */
static const char *parse_listen(const char *s, char *host, size_t hcap, int *family, int *port) {
  const char *colon, *h = s;
  size_t hl;
  if (*s == '[') {
    const char *rb = strchr(s, ']');
    if (!rb) return "an IPv6 address needs a closing ']', like [::1]:2575";
    h = s + 1;
    hl = (size_t)(rb - h);
    if (rb[1] != ':') return "expected ':' and a port after ']', like [::1]:2575";
    colon = rb + 1;
    *family = AF_INET6;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return "expected host:port, like 127.0.0.1:2575";
    if (memchr(s, ':', (size_t)(colon - s)))
      return "an IPv6 address needs brackets, like [::1]:2575";
    hl = (size_t)(colon - s);
    *family = AF_INET;
  }
  char tmp[64];
  if (hl == 0) return "the host is missing: write 0.0.0.0 for every IPv4 interface";
  if (hl >= sizeof tmp) return "the host is too long";
  memcpy(tmp, h, hl);
  tmp[hl] = 0;
  unsigned char bin[16];
  if (inet_pton(*family, tmp, bin) != 1)
    return *family == AF_INET6
               ? "not a valid IPv6 address"
               : "the host must be a numeric IP address like 127.0.0.1 (names are not resolved)";
  if (!inet_ntop(*family, bin, host, (socklen_t)hcap)) return "not a valid address";
  const char *p = colon + 1;
  long v = 0;
  if (!*p) return "the port is missing, like 127.0.0.1:2575";
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return "the port must be a number from 1 to 65535";
    v = v * 10 + (*p - '0');
    if (v > 65535) return "the port must be a number from 1 to 65535";
  }
  if (v < 1) return "the port must be a number from 1 to 65535";
  *port = (int)v;
  return NULL;
}

/* A scalar, or a sequence of scalars, as a list (for listen: and to:). */
static const cad_yaml_node_t *const *as_list(const cad_yaml_node_t *v, size_t *n,
                                             const cad_yaml_node_t **one) {
  if (v->type == CAD_YAML_SEQUENCE) {
    *n = v->n;
    return (const cad_yaml_node_t *const *)v->items;
  }
  *one = v;
  *n = 1;
  return one;
}

static void set_listen(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  cad_conf_channel_t *ch = obj;
  char d[QBUF + 2];
  if (v->type == CAD_YAML_MAPPING || cad_yaml_is_null(v)) {
    err_at(L, at(key, v), "%s: expected an address like 127.0.0.1:2575 or a list of them, got %s",
           k->name, describe(d, v));
    return;
  }
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items = as_list(v, &n, &one);
  if (n == 0) {
    err_at(L, v, "%s: needs at least one address, like 127.0.0.1:2575", k->name);
    return;
  }
  if (n > MAX_LISTEN) {
    err_at(L, v, "%s: at most %d addresses per channel", k->name, MAX_LISTEN);
    return;
  }
  cad_conf_listen_t *ls = calloc(n, sizeof *ls);
  if (!ls) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = scalar(L, k, NULL, items[i], "an address like 127.0.0.1:2575");
    if (!s) continue;
    char host[INET6_ADDRSTRLEN], q[QBUF];
    int family, port;
    const char *why = parse_listen(s, host, sizeof host, &family, &port);
    if (why) {
      err_at(L, items[i], "%s: '%s': %s", k->name, quote(q, s, strlen(s)), why);
    } else if (!(ls[m].host = strdup(host))) {
      L->nomem = true;
    } else {
      ls[m].port = port;
      ls[m].pos = pos_of(items[i]);
      m++;
    }
    free(s);
  }
  for (size_t i = 0; i < ch->nlisten; i++) free(ch->listen[i].host);
  free(ch->listen);
  ch->listen = ls;
  ch->nlisten = m;
}

static void set_dest_refs(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj) {
  cad_conf_channel_t *ch = obj;
  const cad_config_t *c = L->c;
  char d[QBUF + 2], q[QBUF];
  if (v->type == CAD_YAML_MAPPING || cad_yaml_is_null(v)) {
    err_at(L, at(key, v), "%s: expected a destination name or a list of them, got %s", k->name,
           describe(d, v));
    return;
  }
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items = as_list(v, &n, &one);
  if (n == 0) {
    err_at(L, v, "%s: needs at least one destination", k->name);
    return;
  }
  if (n > MAX_TO) {
    err_at(L, v, "%s: at most %d destinations", k->name, MAX_TO);
    return;
  }
  size_t *to = calloc(n, sizeof *to);
  if (!to) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = scalar(L, k, NULL, items[i], "a destination name");
    if (!s) continue;
    dest_ref_t want = {s, 0};
    const dest_ref_t *found =
        L->by_name ? bsearch(&want, L->by_name, c->ndests, sizeof want, dest_ref_cmp) : NULL;
    size_t j = found ? found->idx : c->ndests;
    if (j == c->ndests) {
      char list[400];
      size_t o = 0;
      list[0] = 0;
      for (size_t x = 0; x < c->ndests && o < sizeof list; x++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", x ? ", " : "", c->dests[x].name);
      if (c->ndests)
        err_at(L, items[i], "unknown destination '%s' %s (defined: %s)", quote(q, s, strlen(s)),
               L->where, list);
      else
        err_at(L, items[i], "unknown destination '%s' %s (no destinations are defined)",
               quote(q, s, strlen(s)), L->where);
    } else {
      bool dup = false;
      for (size_t x = 0; x < m; x++) dup |= to[x] == j;
      if (dup)
        err_at(L, items[i], "destination '%s' is listed twice %s", c->dests[j].name, L->where);
      else to[m++] = j;
    }
    free(s);
  }
  free(ch->to);
  ch->to = to;
  ch->nto = m;
}

/* ---- channel TLS and address allow-lists ------------------------------- */

#define MAX_LIST 256 /* allowed_clients, allow */

/* A list of names (allowed_clients): one or a sequence of non-empty strings. */
static void set_names(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                      const cad_yaml_node_t *v, void *obj) {
  cad_conf_channel_t *ch = obj;
  char d[QBUF + 2];
  if (v->type == CAD_YAML_MAPPING || cad_yaml_is_null(v)) {
    err_at(L, at(key, v), "%s: expected a name or a list of names, got %s", k->name,
           describe(d, v));
    return;
  }
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items = as_list(v, &n, &one);
  if (n == 0 || n > MAX_LIST) {
    err_at(L, v, "%s: expected 1 to %d names", k->name, MAX_LIST);
    return;
  }
  char **names = calloc(n, sizeof *names);
  if (!names) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = scalar(L, k, NULL, items[i], "a certificate name (subject CN or SAN)");
    if (!s) continue;
    if (*s == 0) {
      err_at(L, items[i], "%s: expected a certificate name, got an empty string", k->name);
      free(s);
      continue;
    }
    names[m++] = s;
  }
  for (size_t i = 0; i < ch->tls.nallowed; i++) free(ch->tls.allowed_clients[i]);
  free(ch->tls.allowed_clients);
  ch->tls.allowed_clients = names;
  ch->tls.nallowed = m;
}

/* "10.0.0.0/8", "127.0.0.1" (one address), "fd00::/8".  NULL or why not. */
static const char *parse_cidr(const char *s, cad_conf_cidr_t *out) {
  char host[64];
  const char *slash = strchr(s, '/');
  size_t hl = slash ? (size_t)(slash - s) : strlen(s);
  if (hl == 0 || hl >= sizeof host) return "expected an address or a range like 10.0.0.0/8";
  memcpy(host, s, hl);
  host[hl] = 0;
  memset(out, 0, sizeof *out);
  int max = 32;
  if (inet_pton(AF_INET, host, out->addr) == 1) {
    out->family = AF_INET;
  } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
    out->family = AF_INET6;
    max = 128;
  } else {
    return "not a numeric IP address (names are not allowed here)";
  }
  out->prefix = max;
  if (slash) {
    const char *p = slash + 1;
    int v = 0;
    if (!*p) return "the prefix length is missing after '/'";
    for (; *p; p++) {
      if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > max)
        return max == 32 ? "the prefix length must be from 0 to 32"
                         : "the prefix length must be from 0 to 128";
    }
    out->prefix = v;
  }
  return NULL;
}

static void set_allow(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                      const cad_yaml_node_t *v, void *obj) {
  cad_conf_channel_t *ch = obj;
  char d[QBUF + 2], q[QBUF];
  if (v->type == CAD_YAML_MAPPING || cad_yaml_is_null(v)) {
    err_at(L, at(key, v), "%s: expected an address range like 10.0.0.0/8 or a list of them, got %s",
           k->name, describe(d, v));
    return;
  }
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items = as_list(v, &n, &one);
  if (n == 0 || n > MAX_LIST) {
    err_at(L, v, "%s: expected 1 to %d address ranges", k->name, MAX_LIST);
    return;
  }
  cad_conf_cidr_t *list = calloc(n, sizeof *list);
  if (!list) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = scalar(L, k, NULL, items[i], "an address range like 10.0.0.0/8");
    if (!s) continue;
    const char *why = parse_cidr(s, &list[m]);
    if (why) err_at(L, items[i], "%s: '%s': %s", k->name, quote(q, s, strlen(s)), why);
    else m++;
    free(s);
  }
  free(ch->allow);
  ch->allow = list;
  ch->nallow = m;
}

static void check_tls_server(loader_t *L, const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                             void *obj, const bool *seen) {
  (void)key;
  const cad_conf_channel_t *ch = obj;
  /* indexes in tls_server_keys: 2 ca, 3 require_client_cert, 4 allowed_clients */
  if (ch->tls.require_client_cert && !seen[2])
    err_at(L, key_node(map, "require_client_cert"),
           "require_client_cert needs 'ca' %s: the CA that client certificates must chain to",
           L->where);
  if (seen[4] && !seen[2])
    err_at(L, key_node(map, "allowed_clients"),
           "allowed_clients needs 'ca' %s: the CA that client certificates must chain to",
           L->where);
}

static const char *const tls_versions[] = {"1.2", "1.3", NULL};
static const enum_arg_t tls_version_arg = {tls_versions, CAD_TLS_MIN_1_2, "1.2 or 1.3"};

static const conf_key_t tls_server_keys[] = {
    {"cert", set_file, offsetof(cad_conf_channel_t, tls.cert), K_REQUIRED, NULL, 0, 0, NULL,
     "the server certificate, PEM"},
    {"key", set_file, offsetof(cad_conf_channel_t, tls.key), K_REQUIRED, NULL, 0, 0, NULL,
     "the server certificate's key, PEM"},
    {"ca", set_file, offsetof(cad_conf_channel_t, tls.ca), 0, NULL, 0, 0, NULL,
     "the CAs client certificates must chain to"},
    {"require_client_cert", set_flag, offsetof(cad_conf_channel_t, tls.require_client_cert), 0,
     "false", 0, 0, NULL, "mutual TLS: refuse clients without a valid certificate"},
    {"allowed_clients", set_names, 0, 0, NULL, 0, 0, NULL,
     "the client certificate names (subject CN or SAN) accepted"},
    {"ciphers", set_text, offsetof(cad_conf_channel_t, tls.ciphers), 0, NULL, 0, 0, NULL,
     "an OpenSSL cipher list like \"ECDHE+AESGCM\""},
    {"min_version", set_enum, offsetof(cad_conf_channel_t, tls.min_version), 0, "1.2", 0, 0,
     &tls_version_arg, "1.2 or 1.3"},
};
static const conf_section_t tls_server_section = {
    "tls", tls_server_keys, sizeof tls_server_keys / sizeof tls_server_keys[0], check_tls_server};

static void set_tls_server(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                           const cad_yaml_node_t *v, void *obj) {
  ((cad_conf_channel_t *)obj)->tls.enabled = true;
  set_section(L, k, key, v, obj);
}

/* Keys read by routes/ (cad_routes_compile checks them, with positions). */
static void set_by_routes(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj) {
  (void)L, (void)k, (void)key, (void)v, (void)obj;
}

static const conf_section_t channel_section;

static void check_channel(loader_t *L, const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                          void *obj, const bool *seen) {
  (void)obj;
  (void)map;
  size_t to = 0, routes = 0;
  for (size_t i = 0; i < channel_section.nkeys; i++) {
    if (strcmp(channel_section.keys[i].name, "to") == 0) to = i;
    if (strcmp(channel_section.keys[i].name, "routes") == 0) routes = i;
  }
  if (!seen[to] && !seen[routes])
    err_at(L, key, "missing 'to' or 'routes' %s (where accepted messages go)", L->where);
}

static const conf_key_t channel_keys[] = {
    {"listen", set_listen, 0, K_REQUIRED, NULL, 0, 0, NULL,
     "the addresses to accept MLLP connections on, like 127.0.0.1:2575"},
    {"ack", set_section, 0, 0, NULL, 0, 0, &ack_section, "how messages are acknowledged"},
    {"max_message_size", set_size, offsetof(cad_conf_channel_t, max_message_size), 0, "4MiB", 1024,
     (uint64_t)1 << 30, NULL, "the largest message accepted"},
    {"idle_timeout", set_duration, offsetof(cad_conf_channel_t, idle_timeout_ms), K_ZERO_OK, "300s",
     MS_SECOND, 7 * MS_DAY, NULL, "close a connection idle this long"},
    {"frame_timeout", set_duration, offsetof(cad_conf_channel_t, frame_timeout_ms), 0, "30s", 100,
     MS_DAY, NULL, "close a connection that stalls mid-message this long"},
    {"max_connections", set_u32, offsetof(cad_conf_channel_t, max_connections), 0, "4096", 1,
     1000000, NULL, "connections accepted at once"},
    {"to", set_dest_refs, 0, 0, NULL, 0, 0, NULL,
     "the destinations every accepted message goes to"},
    {"tls", set_tls_server, 0, 0, NULL, 0, 0, &tls_server_section, "MLLP over TLS"},
    {"allow", set_allow, 0, 0, NULL, 0, 0, NULL, "the client addresses accepted (CIDR)"},
    {"routes", set_by_routes, 0, 0, NULL, 0, 0, NULL, "filters, transforms and destinations"},
    {"unrouted", set_by_routes, 0, 0, NULL, 0, 0, NULL, "what happens to a message no route takes"},
    {"on_error", set_by_routes, 0, 0, NULL, 0, 0, NULL, "what happens when a transform fails"},
    {"tests", set_by_routes, 0, 0, NULL, 0, 0, NULL, "route test cases (caduceus test)"},
};
static const conf_section_t channel_section = {
    "channel", channel_keys, sizeof channel_keys / sizeof channel_keys[0], check_channel};

/* Two channels (or one, twice) listening on the same address, or on one
 * address and the wildcard of its family with the same port. */
typedef struct listen_ref {
  const cad_conf_listen_t *l;
  const cad_conf_channel_t *ch;
  int family;
  bool wildcard;
  size_t order;
} listen_ref_t;

static int listen_cmp(const void *pa, const void *pb) {
  const listen_ref_t *a = pa, *b = pb;
  if (a->family != b->family) return a->family < b->family ? -1 : 1;
  if (a->l->port != b->l->port) return a->l->port < b->l->port ? -1 : 1;
  if (a->wildcard != b->wildcard) return a->wildcard ? -1 : 1;
  int c = strcmp(a->l->host, b->l->host);
  if (c) return c;
  return a->order < b->order ? -1 : a->order > b->order;
}

typedef struct clash {
  const listen_ref_t *a, *b; /* a written before b */
} clash_t;

static int clash_cmp(const void *pa, const void *pb) {
  const clash_t *a = pa, *b = pb;
  if (a->b->order != b->b->order) return a->b->order < b->b->order ? -1 : 1;
  return a->a->order < b->a->order ? -1 : a->a->order > b->a->order;
}

static void format_listen(char *buf, size_t cap, const cad_conf_listen_t *l) {
  if (strchr(l->host, ':')) snprintf(buf, cap, "[%s]:%d", l->host, l->port);
  else snprintf(buf, cap, "%s:%d", l->host, l->port);
}

static void check_listen_conflicts(loader_t *L) {
  const cad_config_t *c = L->c;
  size_t n = 0;
  for (size_t i = 0; i < c->nchannels; i++) n += c->channels[i].nlisten;
  if (n < 2) return;
  listen_ref_t *r = calloc(n, sizeof *r);
  if (!r) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < c->nchannels; i++)
    for (size_t j = 0; j < c->channels[i].nlisten; j++) {
      const cad_conf_listen_t *l = &c->channels[i].listen[j];
      bool v6 = strchr(l->host, ':') != NULL;
      r[m] = (listen_ref_t){l, &c->channels[i], v6 ? AF_INET6 : AF_INET,
                            strcmp(l->host, v6 ? "::" : "0.0.0.0") == 0, m};
      m++;
    }
  qsort(r, n, sizeof *r, listen_cmp);
  /* Within a run of one family and port, sorted wildcard first then by host:
   * an equal neighbour is a duplicate; with a wildcard, all others clash.
   * Each clash is reported at the later of the two, in document order. */
  clash_t *cl = calloc(n, sizeof *cl);
  size_t ncl = 0;
  if (!cl) {
    free(r);
    L->nomem = true;
    return;
  }
  for (size_t i = 1, s = 0; i < n; i++) {
    if (r[s].family != r[i].family || r[s].l->port != r[i].l->port) s = i;
    const listen_ref_t *other = NULL;
    if (r[s].wildcard && s != i) other = &r[s];
    if (i > s && strcmp(r[i - 1].l->host, r[i].l->host) == 0) other = &r[i - 1];
    if (!other) continue;
    bool first = other->order < r[i].order;
    cl[ncl++] = (clash_t){first ? other : &r[i], first ? &r[i] : other};
  }
  qsort(cl, ncl, sizeof *cl, clash_cmp);
  for (size_t i = 0; i < ncl && L->nerr < MAX_ERRORS; i++) {
    const listen_ref_t *a = cl[i].a, *b = cl[i].b;
    char aa[80], bb[80];
    format_listen(aa, sizeof aa, a->l);
    format_listen(bb, sizeof bb, b->l);
    if (strcmp(aa, bb) == 0)
      err_pos(L, b->l->pos.file, b->l->pos.line, b->l->pos.col,
              "listen address %s is already used by channel '%s' (%s:%d:%d)", bb, a->ch->name,
              a->l->pos.file, a->l->pos.line, a->l->pos.col);
    else
      err_pos(L, b->l->pos.file, b->l->pos.line, b->l->pos.col,
              "listen address %s overlaps %s of channel '%s' (%s:%d:%d)", bb, aa, a->ch->name,
              a->l->pos.file, a->l->pos.line, a->l->pos.col);
  }
  free(cl);
  free(r);
}

/* ---- the top level and files ----------------------------------------- */

static void load_file(loader_t *L, const char *path, const cad_yaml_node_t *from);

static bool valid_name(const char *s, size_t n) {
  if (n == 0 || n > MAX_NAME_LEN) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-' || ch == '.'))
      return false;
  }
  return true;
}

static void collect(loader_t *L, const char *what, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, named_t **list, size_t *n, size_t *cap) {
  char d[QBUF + 2], q[QBUF];
  if (v->type != CAD_YAML_MAPPING) {
    if (cad_yaml_is_null(v)) return; /* "channels:" with nothing under it yet */
    err_at(L, v, "%s: expected a mapping of %s names to their settings, got %s", key->str, what,
           describe(d, v));
    return;
  }
  for (size_t i = 0; i < v->n; i++) {
    const cad_yaml_node_t *kn = v->pairs[i].key;
    if (!valid_name(kn->str, kn->len)) {
      err_at(L, kn, "%s name '%s' must be 1 to %d letters, digits, '_', '-' or '.'", what,
             quote(q, kn->str, kn->len), MAX_NAME_LEN);
      continue;
    }
    size_t j = 0;
    while (j < *n && strcmp((*list)[j].key->str, kn->str) != 0) j++;
    if (j < *n) {
      const cad_yaml_node_t *first = (*list)[j].key;
      err_at(L, kn, "%s '%s' is already defined (%s:%d:%d)", what, kn->str, first->file,
             first->line, first->col);
      continue;
    }
    if (*n >= MAX_NAMED) {
      err_at(L, kn, "too many %ss (at most %d)", what, MAX_NAMED);
      return;
    }
    if (!grow((void **)list, cap, *n + 1, sizeof **list)) {
      L->nomem = true;
      return;
    }
    (*list)[(*n)++] = (named_t){kn, v->pairs[i].value};
  }
}

static void set_dests(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                      const cad_yaml_node_t *v, void *obj) {
  (void)k;
  (void)obj;
  collect(L, "destination", key, v, &L->dests, &L->ndests, &L->dests_cap);
}

static void set_channels(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj) {
  (void)k;
  (void)obj;
  collect(L, "channel", key, v, &L->chans, &L->nchans, &L->chans_cap);
}

static void set_include(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj) {
  (void)obj;
  char d[QBUF + 2];
  if (L->flags & CAD_CONFIG_NO_INCLUDE) {
    err_at(L, key, "'include' is not allowed here");
    return;
  }
  if (v->type == CAD_YAML_MAPPING || cad_yaml_is_null(v)) {
    err_at(L, at(key, v), "include: expected a file name or a list of them, got %s",
           describe(d, v));
    return;
  }
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items = as_list(v, &n, &one);
  const char *cur = L->c->files[L->stack[L->depth - 1]];
  const char *slash = strrchr(cur, '/');
  size_t dirlen = slash ? (size_t)(slash - cur) + 1 : 0;
  for (size_t i = 0; i < n; i++) {
    char *s = scalar(L, k, NULL, items[i], "a file name");
    if (!s) continue;
    if (*s == 0) {
      err_at(L, items[i], "include: expected a file name, got an empty string");
      free(s);
      continue;
    }
    cad_buf_t path = CAD_BUF_INIT;
    int rc = 0;
    if (s[0] != '/') rc = cad_buf_append(&path, cur, dirlen);
    if (rc == 0) rc = cad_buf_puts(&path, s);
    const char *p = rc == 0 ? cad_buf_cstr(&path) : NULL;
    if (p) load_file(L, p, items[i]);
    else L->nomem = true;
    cad_buf_free(&path);
    free(s);
  }
}

static void set_tables(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  (void)k, (void)key, (void)obj;
  L->tables = v; /* loaded in build(), relative to the main file */
}

static const conf_key_t top_keys[] = {
    {"include", set_include, 0, 0, NULL, 0, 0, NULL, "other files to read"},
    {"engine", set_section, 0, K_MAIN_ONLY, NULL, 0, 0, &engine_section, "engine settings"},
    {"destinations", set_dests, 0, 0, NULL, 0, 0, NULL, "where messages are written"},
    {"channels", set_channels, 0, 0, NULL, 0, 0, NULL, "where messages come in"},
    {"tables", set_tables, 0, K_MAIN_ONLY, NULL, 0, 0, NULL, "lookup tables for routes"},
};
static const conf_section_t top_section = {"top-level", top_keys,
                                           sizeof top_keys / sizeof top_keys[0], NULL};

/* Record a file; returns its index in c->files, or -1 (out of memory). */
static long add_file(loader_t *L, const char *name, char *real) {
  cad_config_t *c = L->c;
  size_t cap = L->files_cap;
  if (!grow((void **)&c->files, &L->files_cap, c->nfiles + 1, sizeof *c->files) ||
      !grow((void **)&L->real, &cap, c->nfiles + 1, sizeof *L->real)) {
    free(real);
    L->nomem = true;
    return -1;
  }
  char *dup = strdup(name);
  if (!dup) {
    free(real);
    L->nomem = true;
    return -1;
  }
  c->files[c->nfiles] = dup;
  L->real[c->nfiles] = real;
  return (long)c->nfiles++;
}

static void apply_file(loader_t *L, size_t idx, const char *data, size_t len) {
  cad_yaml_doc_t *doc = NULL;
  char ebuf[600];
  const char *name = L->c->files[idx];
  int rc = cad_yaml_parse(name, data, len, NULL, &doc, ebuf, sizeof ebuf);
  if (rc == CAD_E_NOMEM) {
    L->nomem = true;
    return;
  }
  if (rc) {
    add_raw(L, ebuf); /* already "file:line:column: problem" */
    return;
  }
  if (!grow((void **)&L->docs, &L->docs_cap, L->ndocs + 1, sizeof *L->docs)) {
    cad_yaml_free(doc);
    L->nomem = true;
    return;
  }
  L->docs[L->ndocs++] = doc;
  const cad_yaml_node_t *root = doc->root;
  if (!root || cad_yaml_is_null(root)) return; /* an empty file */
  if (root->type != CAD_YAML_MAPPING) {
    char d[QBUF + 2];
    err_at(L, root,
           "expected a mapping at the top level (with include, engine, destinations, "
           "channels, tables), got %s",
           describe(d, root));
    return;
  }
  bool was_main = L->in_main;
  L->in_main = idx == 0;
  L->stack[L->depth++] = idx;
  apply_section(L, &top_section, NULL, root, L->c, "at the top level");
  L->depth--;
  L->in_main = was_main;
}

/* Read one file and apply it. `from` is the include: entry naming it (NULL
 * for the main file). */
static void load_file(loader_t *L, const char *path, const cad_yaml_node_t *from) {
  cad_config_t *c = L->c;
  char q[QBUF];
  if (from && L->depth >= MAX_INCLUDE_DEPTH) {
    err_at(L, from, "includes nested too deeply (more than %d levels)", MAX_INCLUDE_DEPTH);
    return;
  }
  char *real = realpath(path, NULL);
  if (!real) {
    int e = errno;
    if (e == ENOMEM) {
      L->nomem = true;
    } else if (from) {
      err_at(L, from, "cannot read included file '%s': %s", quote(q, path, strlen(path)),
             strerror(e));
    } else {
      err_pos(L, path, 0, 0, "cannot read: %s", strerror(e));
      L->io = true;
    }
    return;
  }
  for (size_t i = 0; i < L->depth; i++) {
    const char *r = L->real[L->stack[i]];
    if (r && strcmp(r, real) == 0) {
      cad_buf_t chain = CAD_BUF_INIT;
      for (size_t j = i; j < L->depth; j++) cad_buf_printf(&chain, "%s -> ", c->files[L->stack[j]]);
      cad_buf_puts(&chain, path);
      const char *txt = cad_buf_cstr(&chain);
      err_at(L, from, "include cycle: %s", txt ? txt : path);
      cad_buf_free(&chain);
      free(real);
      return;
    }
  }
  for (size_t i = 0; i < c->nfiles; i++) {
    if (L->real[i] && strcmp(L->real[i], real) == 0) { /* read already: once is enough */
      free(real);
      return;
    }
  }
  if (c->nfiles >= MAX_FILES) {
    err_at(L, from, "too many included files (at most %d)", MAX_FILES);
    free(real);
    return;
  }
  char *data = NULL;
  size_t len = 0;
  const char *why = NULL;
  int rrc = cad_io_read_regular(path, CAD_YAML_MAX_BYTES, &data, &len, &why);
  if (rrc == CAD_E_TOOBIG) why = "file is larger than 16 MiB";
  else if (rrc == 0 && L->total_bytes + len > MAX_TOTAL_BYTES)
    why = "the configuration files together are larger than 64 MiB", rrc = CAD_E_TOOBIG;
  if (rrc == CAD_E_NOMEM) {
    L->nomem = true;
    free(real);
    return;
  }
  if (rrc) {
    if (from)
      err_at(L, from, "cannot read included file '%s': %s", quote(q, path, strlen(path)), why);
    else err_pos(L, path, 0, 0, "cannot read: %s", why);
    if (!from) L->io = true;
    free(real);
    free(data);
    return;
  }
  L->total_bytes += len;
  long idx = add_file(L, path, real);
  if (idx >= 0) apply_file(L, (size_t)idx, data, len);
  free(data);
}

/* ---- route tests ----------------------------------------------------- */

/* A message written as { file: PATH } in a route test: the file must be a
 * readable regular file (relative to the file the test is written in). */
static void check_message_file(loader_t *L, const cad_yaml_node_t *n) {
  const cad_yaml_node_t *f = n->type == CAD_YAML_MAPPING ? cad_yaml_get(n, "file") : NULL;
  if (!f || f->type != CAD_YAML_SCALAR || f->len == 0) return; /* `caduceus test` says why */
  char *s = strdup(f->str);
  if (!s || !(s = resolve(L, f->file, s))) {
    L->nomem = true;
    return;
  }
  const char *why = NULL;
  char q[QBUF];
  if (cad_io_check_regular(s, &why) != 0)
    err_at(L, f, "file: cannot read test message '%s': %s", quote(q, s, strlen(s)), why);
  free(s);
}

/* A channel's `tests:` (NULL = none): a list of cases whose input and
 * expected messages may name files.  Returns the list, or NULL. */
static const cad_yaml_node_t *check_tests(loader_t *L, const cad_yaml_node_t *tests) {
  if (!tests || cad_yaml_is_null(tests)) return NULL;
  if (tests->type != CAD_YAML_SEQUENCE) {
    char d[QBUF + 2];
    err_at(L, tests, "tests: expected a list of test cases, got %s", describe(d, tests));
    return NULL;
  }
  for (size_t i = 0; i < tests->n; i++) {
    const cad_yaml_node_t *t = tests->items[i];
    if (t->type != CAD_YAML_MAPPING) continue;
    const cad_yaml_node_t *in = cad_yaml_get(t, "input"), *ex = cad_yaml_get(t, "expect");
    if (in) check_message_file(L, in);
    for (size_t j = 0; ex && ex->type == CAD_YAML_MAPPING && j < ex->n; j++)
      check_message_file(L, ex->pairs[j].value);
  }
  return tests;
}

/* ---- load ------------------------------------------------------------ */

static void build(loader_t *L) {
  cad_config_t *c = L->c;
  if (L->ndests) {
    c->dests = calloc(L->ndests, sizeof *c->dests);
    if (!c->dests) {
      L->nomem = true;
      return;
    }
  }
  for (size_t i = 0; i < L->ndests; i++) {
    cad_conf_dest_t *d = &c->dests[c->ndests];
    if (!(d->name = strdup(L->dests[i].key->str))) {
      L->nomem = true;
      return;
    }
    d->pos = pos_of(L->dests[i].key);
    c->ndests++;
    apply_dest(L, d, &L->dests[i]);
  }
  if (c->ndests) {
    if (!(L->by_name = calloc(c->ndests, sizeof *L->by_name))) {
      L->nomem = true;
      return;
    }
    for (size_t i = 0; i < c->ndests; i++) L->by_name[i] = (dest_ref_t){c->dests[i].name, i};
    qsort(L->by_name, c->ndests, sizeof *L->by_name, dest_ref_cmp); /* names are distinct */
  }
  /* Lookup tables, relative to the main file's directory. */
  cad_buf_t rerr = CAD_BUF_INIT;
  if (L->tables && !cad_yaml_is_null(L->tables)) {
    const char *main = c->files[0];
    const char *slash = strrchr(main, '/');
    char *base = slash ? strndup(main, (size_t)(slash - main)) : NULL;
    if (slash && !base) {
      L->nomem = true;
      return;
    }
    if (cad_tables_load(L->tables, base, &c->tables, &rerr) == CAD_E_NOMEM) L->nomem = true;
    free(base);
  }
  const char **names = calloc(c->ndests ? c->ndests : 1, sizeof *names);
  if (!names) {
    L->nomem = true;
    cad_buf_free(&rerr);
    return;
  }
  for (size_t i = 0; i < c->ndests; i++) names[i] = c->dests[i].name;
  if (L->nchans && !(c->channels = calloc(L->nchans, sizeof *c->channels))) L->nomem = true;
  for (size_t i = 0; c->channels && i < L->nchans; i++) {
    cad_conf_channel_t *ch = &c->channels[c->nchannels];
    if (!(ch->name = strdup(L->chans[i].key->str))) {
      L->nomem = true;
      break;
    }
    ch->pos = pos_of(L->chans[i].key);
    c->nchannels++;
    char where[160];
    snprintf(where, sizeof where, "in channel '%s'", ch->name);
    int before = L->nerr + L->dropped;
    apply_section(L, &channel_section, L->chans[i].key, L->chans[i].val, ch, where);
    if (cad_yaml_is_null(L->chans[i].val)) /* "lab:" alone: the section check did not run */
      err_at(L, L->chans[i].key, "missing 'to' or 'routes' %s (where accepted messages go)", where);
    /* A channel with only `to:` becomes one route; its `to:` problems were
     * reported above, so the routes' own report would repeat them. */
    const cad_yaml_node_t *cv = L->chans[i].val;
    bool has_routes = cv->type == CAD_YAML_MAPPING && cad_yaml_get(cv, "routes");
    if (cv->type == CAD_YAML_MAPPING) ch->tests = check_tests(L, cad_yaml_get(cv, "tests"));
    if (cv->type == CAD_YAML_MAPPING && (has_routes || L->nerr + L->dropped == before)) {
      if (cad_routes_compile(cv, c->tables, names, c->ndests, &ch->routes, &rerr) == CAD_E_NOMEM)
        L->nomem = true;
    }
  }
  free(names);
  /* The routes module's lines are already "file:line:column: problem". */
  if (rerr.len && cad_buf_cstr(&rerr)) {
    char *save = NULL;
    for (char *line = strtok_r(rerr.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
      add_raw(L, line);
  }
  cad_buf_free(&rerr);
  check_listen_conflicts(L);
  if (c->nchannels == 0 && L->nerr == 0)
    err_pos(L, c->files[0], 0, 0, "no channels: define at least one under 'channels:'");
}

static int load(const char *path, const char *data, size_t len, unsigned flags, cad_config_t **out,
                char **errors) {
  loader_t L;
  memset(&L, 0, sizeof L);
  L.flags = flags;
  L.where = "at the top level";
  *out = NULL;
  if (errors) *errors = NULL;
  cad_config_t *c = calloc(1, sizeof *c);
  if (!c || !(c->path = strdup(path))) {
    free(c);
    return CAD_E_NOMEM;
  }
  L.c = c;
  if (data) {
    if (len > CAD_YAML_MAX_BYTES) {
      err_pos(&L, path, 0, 0, "cannot read: file is larger than 16 MiB");
    } else {
      char *real = realpath(path, NULL); /* may not exist: then includes cannot cycle back */
      long idx = add_file(&L, path, real);
      if (idx >= 0) apply_file(&L, (size_t)idx, data, len);
    }
  } else {
    load_file(&L, path, NULL);
  }
  if (!L.nomem && c->nfiles > 0) build(&L); /* after errors too: report them all */

  int rc = 0;
  if (L.nomem) {
    rc = CAD_E_NOMEM;
    cad_buf_clear(&L.err);
    cad_buf_printf(&L.err, "%s: out of memory while loading the configuration\n", path);
  } else if (L.io) {
    rc = CAD_E_IO;
  } else if (L.nerr) {
    rc = CAD_E_CONFIG;
  }
  if (L.dropped)
    cad_buf_printf(&L.err, "%s: %d more error%s not shown\n", path, L.dropped,
                   L.dropped == 1 ? "" : "s");
  c->docs = L.docs; /* kept: channels' `tests` point into them */
  c->ndocs = L.ndocs;
  for (size_t i = 0; i < c->nfiles; i++) free(L.real[i]);
  free(L.real);
  free(L.dests);
  free(L.chans);
  free(L.by_name);
  /* The positions point at file names owned by c: from here on no node is
   * used, so the documents could go first. */
  if (rc) {
    cad_config_free(c);
    if (errors && L.err.len && cad_buf_cstr(&L.err)) {
      *errors = L.err.data;
      L.err.data = NULL;
    }
  } else {
    *out = c;
  }
  cad_buf_free(&L.err);
  return rc;
}

int cad_config_load(const char *path, cad_config_t **out, char **errors) {
  return load(path, NULL, 0, 0, out, errors);
}

int cad_config_load_mem(const char *name, const char *data, size_t len, unsigned flags,
                        cad_config_t **out, char **errors) {
  return load(name, data ? data : "", len, flags, out, errors);
}

void cad_config_free(cad_config_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->ndests; i++) {
    free(c->dests[i].name);
    free(c->dests[i].dir);
    free(c->dests[i].name_tmpl);
    free(c->dests[i].append_path);
    free(c->dests[i].host);
    free(c->dests[i].tls.ca);
    free(c->dests[i].tls.cert);
    free(c->dests[i].tls.key);
    free(c->dests[i].tls.server_name);
  }
  free(c->dests);
  for (size_t i = 0; i < c->nchannels; i++) {
    cad_conf_channel_t *ch = &c->channels[i];
    free(ch->name);
    for (size_t j = 0; j < ch->nlisten; j++) free(ch->listen[j].host);
    free(ch->listen);
    free(ch->to);
    cad_routes_free(ch->routes);
    free(ch->tls.cert);
    free(ch->tls.key);
    free(ch->tls.ca);
    free(ch->tls.ciphers);
    for (size_t j = 0; j < ch->tls.nallowed; j++) free(ch->tls.allowed_clients[j]);
    free(ch->tls.allowed_clients);
    free(ch->allow);
  }
  free(c->channels);
  cad_tables_free(c->tables);
  for (size_t i = 0; i < c->ndocs; i++) cad_yaml_free(c->docs[i]);
  free(c->docs);
  for (size_t i = 0; i < c->nfiles; i++) free(c->files[i]);
  free(c->files);
  free(c->data_dir);
  free(c->path);
  free(c);
}

/* ---- durations and sizes --------------------------------------------- */

static bool mul_add(uint64_t *acc, uint64_t v, uint64_t mult) {
  if (v > (UINT64_MAX - *acc) / mult) return false;
  *acc += v * mult;
  return true;
}

int cad_config_parse_duration(const char *s, uint64_t *ms) {
  static const struct {
    const char *unit;
    uint64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  if (!s || !*s) return CAD_E_INVAL;
  uint64_t total = 0, last = UINT64_MAX;
  const char *p = s;
  while (*p) {
    if (*p < '0' || *p > '9') return CAD_E_INVAL;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
      if (v > (UINT64_MAX - 9) / 10) return CAD_E_INVAL;
      v = v * 10 + (uint64_t)(*p - '0');
    }
    if (*p == 0 && p != s && total == 0 && last == UINT64_MAX) /* a bare number: seconds */
      return mul_add(&total, v, 1000) ? (*ms = total, 0) : CAD_E_INVAL;
    size_t u = 0;
    while (u < sizeof units / sizeof units[0] &&
           !(strncmp(p, units[u].unit, strlen(units[u].unit)) == 0 &&
             !(units[u].unit[0] == 'm' && units[u].unit[1] == 0 && p[1] == 's')))
      u++;
    if (u == sizeof units / sizeof units[0]) return CAD_E_INVAL;
    if (units[u].ms >= last) return CAD_E_INVAL; /* "1h30m", not "30m1h" or "1s1s" */
    if (!mul_add(&total, v, units[u].ms)) return CAD_E_INVAL;
    last = units[u].ms;
    p += strlen(units[u].unit);
  }
  *ms = total;
  return 0;
}

int cad_config_parse_size(const char *s, size_t *bytes) {
  static const struct {
    const char *unit;
    uint64_t mult;
  } units[] = {{"", 1},
               {"b", 1},
               {"kb", 1000},
               {"mb", 1000000},
               {"gb", 1000000000},
               {"tb", UINT64_C(1000000000000)},
               {"kib", UINT64_C(1) << 10},
               {"mib", UINT64_C(1) << 20},
               {"gib", UINT64_C(1) << 30},
               {"tib", UINT64_C(1) << 40}};
  if (!s || *s < '0' || *s > '9') return CAD_E_INVAL;
  uint64_t v = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (UINT64_MAX - 9) / 10) return CAD_E_INVAL;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (*p == ' ' && p[1]) p++; /* "4 MiB" */
  for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
    if (strcasecmp(p, units[u].unit) != 0) continue;
    uint64_t total = 0;
    if (!mul_add(&total, v, units[u].mult) || total > SIZE_MAX) return CAD_E_INVAL;
    *bytes = (size_t)total;
    return 0;
  }
  return CAD_E_INVAL;
}

char *cad_config_format_duration(uint64_t ms, char *buf, size_t cap) {
  static const struct {
    const char *unit;
    uint64_t ms;
  } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
  size_t o = 0;
  if (cap == 0) return buf;
  buf[0] = 0;
  if (ms == 0) {
    snprintf(buf, cap, "0s");
    return buf;
  }
  for (size_t u = 0; u < sizeof units / sizeof units[0] && ms; u++) {
    uint64_t v = ms / units[u].ms;
    if (!v) continue;
    ms -= v * units[u].ms;
    int n = snprintf(buf + o, cap - o, "%llu%s", (unsigned long long)v, units[u].unit);
    if (n < 0 || (size_t)n >= cap - o) break;
    o += (size_t)n;
  }
  return buf;
}

char *cad_config_format_size(size_t bytes, char *buf, size_t cap) {
  static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; i++) {
    uint64_t m = UINT64_C(1) << (10 * (4 - i));
    if (bytes >= m && bytes % m == 0) {
      snprintf(buf, cap, "%llu%s", (unsigned long long)(bytes / m), units[i]);
      return buf;
    }
  }
  snprintf(buf, cap, "%zuB", bytes);
  return buf;
}
