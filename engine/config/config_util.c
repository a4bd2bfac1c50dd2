/* config_util.c - what every section of the configuration uses (config_int.h):
 * error lines with positions, ${ENV} expansion, the generic setters of the
 * key tables (paths, files, enums, durations, sizes, numbers, flags, hosts)
 * and apply_section(), which runs a table over a mapping.
 */
#include "config_int.h"

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

/* Setters and helpers used before their definition. */
static char *expand(loader_t *L, const cad_yaml_node_t *v);
static char *fmt_duration(uint64_t x, char *buf, size_t cap);
static char *fmt_number(uint64_t x, char *buf, size_t cap);
static char *fmt_size(uint64_t x, char *buf, size_t cap);
static bool in_range(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *v, uint64_t x,
                     char *(*fmt)(uint64_t, char *, size_t), const char *text);
static const char *load_str(const void *obj, const conf_key_t *k);
static cad_conf_report_t report(loader_t *L);
static void set_duration(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj);
static void set_file(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj);
static void set_flag(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj);
static void set_host(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj);
static void set_int(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, void *obj);
static void set_path(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj);
static void set_section(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj);
static void set_size(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj);
static void set_template(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj);
static void set_text(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj);
static void set_text_refs(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj);
static void set_u32(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, void *obj);
static void set_u32_64(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj);
static void store_str(void *obj, const conf_key_t *k, char *s);
static bool whole_number(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, uint64_t max, uint64_t *out);

int cad__conf_dest_ref_cmp(const void *pa, const void *pb) {
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

void cad__conf_err_pos(loader_t *L, const char *file, int line, int col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  add_line(L, file, line, col, fmt, ap);
  va_end(ap);
}

void cad__conf_err_at(loader_t *L, const cad_yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  add_line(L, n->file, n->line, n->col, fmt, ap);
  va_end(ap);
}

void cad__conf_add_raw(loader_t *L, const char *line) {
  if (L->nerr >= MAX_ERRORS) {
    L->dropped++;
    return;
  }
  L->nerr++;
  if (cad_buf_puts(&L->err, line) || cad_buf_putc(&L->err, '\n')) L->nomem = true;
}

/* Up to 40 characters of s for a message: printable ASCII and UTF-8 as is,
 * control bytes as \xNN, so that hostile input cannot garble a terminal. */
const char *cad__conf_quote(char *out, const char *s, size_t len) {
  return cad_yaml_quote(out, QBUF, s, len); /* yaml_doc.h */
}

/* "'text'" for a scalar, else "a mapping" / "a sequence" / "nothing". */
const char *cad__conf_describe(char *out, const cad_yaml_node_t *v) {
  if (v->type == CAD_YAML_SCALAR && !cad_yaml_is_null(v)) {
    char q[QBUF];
    cad__conf_quote(q, v->str, v->len);
    snprintf(out, QBUF + 2, "'%s'", q);
    return out;
  }
  snprintf(out, QBUF + 2, "%s", cad_yaml_type_name(v));
  return out;
}

cad_conf_pos_t cad__conf_pos_of(const cad_yaml_node_t *n) {
  return (cad_conf_pos_t){n->file, n->line, n->col};
}

bool cad__conf_grow(void **arr, size_t *cap, size_t need, size_t elem) {
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
    cad__conf_err_at(L, v, "a value cannot contain a NUL character");
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
        cad__conf_err_pos(L, v->file, v->line, scalar_col(v, i),
                          "'${' without a closing '}' (write $${ for a literal ${)");
        goto fail;
      }
      const char *name = s + i + 2;
      size_t nl = (size_t)(close - name), errpos = 0;
      const char *why = NULL;
      if (is_env_name(name, nl)) {
        char var[256];
        if (nl >= sizeof var) {
          cad__conf_err_pos(L, v->file, v->line, scalar_col(v, i),
                            "environment variable name too long");
          goto fail;
        }
        memcpy(var, name, nl);
        var[nl] = 0;
        const char *val = getenv(var);
        if (!val) {
          cad__conf_err_pos(L, v->file, v->line, scalar_col(v, i),
                            "environment variable '%s' is not set", var);
          goto fail;
        }
        rc = cad_buf_puts(&b, val);
      } else if (is_hl7_path(name, nl, &errpos, &why)) {
        rc = cad_buf_append(&b, s + i, nl + 3);
        L->kept_refs++;
      } else {
        cad__conf_err_pos(
            L, v->file, v->line, scalar_col(v, i),
            "'${%s}' is neither an environment variable (letters, digits, '_') nor an "
            "HL7 path like ${MSH-10}",
            cad__conf_quote(q, name, nl));
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

/* For a null value, point at the key that introduced it: the value has no
 * position of its own worth showing. */
const cad_yaml_node_t *cad__conf_at(const cad_yaml_node_t *key, const cad_yaml_node_t *v) {
  return (key && cad_yaml_is_null(v)) ? key : v;
}

/* The string field `k` names (a `char *` of the config, or a `const char *`
 * of a channel's options: both owned by the config).  Bytes are copied, so
 * either declaration works; the old value is freed. */
static void store_str(void *obj, const conf_key_t *k, char *s) {
  char *old;
  memcpy(&old, FIELD(obj, k, char), sizeof old);
  free(old);
  memcpy(FIELD(obj, k, char), &s, sizeof s);
}

static const char *load_str(const void *obj, const conf_key_t *k) {
  const char *s;
  memcpy(&s, (const char *)obj + k->off, sizeof s);
  return s;
}

/* A scalar's expanded text, or NULL after reporting "expected <what>". */
char *cad__conf_scalar(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, const char *what) {
  char d[QBUF + 2];
  if (v->type != CAD_YAML_SCALAR || cad_yaml_is_null(v)) {
    cad__conf_err_at(L, cad__conf_at(key, v), "%s: expected %s, got %s", k->name, what,
                     cad__conf_describe(d, v));
    return NULL;
  }
  return expand(L, v);
}

/* `s` (malloc'd, taken) resolved against the directory of `file`, the
 * configuration file that wrote it: every relative path of a configuration
 * is relative to the file it is written in (an included file's paths to
 * that file).  Returns the malloc'd result, or NULL (out of memory). */
char *cad__conf_resolve(loader_t *L, const char *file, char *s) {
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
  char *s = cad__conf_scalar(L, k, key, v, "a path");
  if (!s) return;
  const char *ref = L->kept_refs ? strstr(s, "${") : NULL;
  if (*s == 0) {
    cad__conf_err_at(L, v, "%s: expected a path, got an empty string", k->name);
  } else if (ref) {
    const char *end = strchr(ref, '}');
    char q[QBUF];
    cad__conf_err_at(
        L, v,
        "%s: cannot use message fields like %s: only a file destination's 'name' is a template",
        k->name, cad__conf_quote(q, ref, end ? (size_t)(end - ref) + 1 : strlen(ref)));
  } else if ((s = cad__conf_resolve(L, key ? v->file : L->c->files[0], s)) != NULL) {
    store_str(obj, k, s);
    return;
  }
  free(s);
}

/* A file the engine reads (a TLS certificate, key or CA bundle): a path as
 * set_path takes it, which must name a readable regular file now, so that
 * `check` finds what `run` would fail on. */
static void set_file(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  store_str(obj, k, NULL);
  set_path(L, k, key, v, obj);
  const char *path = load_str(obj, k);
  if (!path) return;
  const char *why = NULL;
  char q[QBUF];
  if (cad_io_check_regular(path, &why) != 0)
    cad__conf_err_at(L, cad__conf_at(key, v), "%s: cannot read '%s': %s", k->name,
                     cad__conf_quote(q, path, strlen(path)), why);
}

/* A file name template: literal text and ${HL7-path} references; no '/' and
 * no '..' outside the references (the engine makes the field values safe). */
static void set_template(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj) {
  char *s = cad__conf_scalar(L, k, key, v, "a file name template like \"${MSH-7}_${MSH-10}.hl7\"");
  if (!s) return;
  size_t n = strlen(s), refs = 0;
  bool ok = true;
  for (size_t i = 0; i < n && ok; i++) {
    if (s[i] == '$' && s[i + 1] == '{') {
      const char *close = strchr(s + i, '}');
      if (!close) { /* only from an environment variable's value */
        cad__conf_err_at(L, v, "%s: '${' without a closing '}'", k->name);
        ok = false;
        break;
      }
      i = (size_t)(close - s); /* expand() checked the references it left */
      refs++;
    } else if (s[i] == '/' || s[i] == '\\') {
      cad__conf_err_at(
          L, v,
          "%s: '%c' is not allowed in a file name template: the name stays inside the destination's 'dir'",
          k->name, s[i]);
      ok = false;
    } else if (s[i] == '.' && s[i + 1] == '.') {
      cad__conf_err_at(L, v, "%s: '..' is not allowed in a file name template", k->name);
      ok = false;
    } else if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
      cad__conf_err_at(L, v, "%s: control characters are not allowed in a file name template",
                       k->name);
      ok = false;
    }
  }
  if (ok && n == 0) {
    cad__conf_err_at(L, v, "%s: expected a file name template, got an empty string", k->name);
    ok = false;
  }
  if (ok && refs == 0) {
    cad__conf_err_at(L, v,
                     "%s: a template without ${...} gives every message the same file name "
                     "(use 'append' to write all messages to one file)",
                     k->name);
    ok = false;
  }
  if (!ok) {
    free(s);
    return;
  }
  store_str(obj, k, s);
}

void cad__conf_set_enum(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj) {
  const enum_arg_t *e = k->arg;
  char what[160];
  snprintf(what, sizeof what, "one of %s", e->doc);
  char *s = cad__conf_scalar(L, k, key, v, what);
  if (!s) return;
  for (int i = 0; e->names[i]; i++) {
    if (strcmp(s, e->names[i]) == 0) {
      int val = e->base + i;
      if (k->flags & K_BOOL) *FIELD(obj, k, bool) = i > 0;
      else memcpy(FIELD(obj, k, int), &val, sizeof val);
      free(s);
      return;
    }
  }
  char q[QBUF];
  cad__conf_err_at(L, v, "%s: expected %s, got '%s'", k->name, what,
                   cad__conf_quote(q, s, strlen(s)));
  free(s);
}

/* Check `x` against the key's range; report and return false if outside. */
static bool in_range(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *v, uint64_t x,
                     char *(*fmt)(uint64_t, char *, size_t), const char *text) {
  if ((x == 0 && (k->flags & K_ZERO_OK)) || (x >= k->lo && x <= k->hi)) return true;
  char lo[32], hi[32], q[QBUF];
  cad__conf_err_at(L, v, "%s: must be from %s to %s%s, got %s", k->name, fmt(k->lo, lo, sizeof lo),
                   fmt(k->hi, hi, sizeof hi),
                   !(k->flags & K_ZERO_OK)           ? ""
                   : (k->flags & CAD_CONF_ZERO_AUTO) ? " (or 0 for the default)"
                                                     : " (or 0 for none)",
                   cad__conf_quote(q, text, strlen(text)));
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
  char *s = cad__conf_scalar(L, k, key, v, what);
  if (!s) return;
  uint64_t ms;
  char q[QBUF];
  if (cad_config_parse_duration(s, &ms) != 0)
    cad__conf_err_at(L, v, "%s: expected %s, got '%s'", k->name, what,
                     cad__conf_quote(q, s, strlen(s)));
  else if (in_range(L, k, v, ms, fmt_duration, s)) *FIELD(obj, k, uint64_t) = ms;
  free(s);
}

static void set_size(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  static const char what[] = "a size like 4MiB, 64KiB or 1000000";
  char *s = cad__conf_scalar(L, k, key, v, what);
  if (!s) return;
  size_t bytes;
  char q[QBUF];
  if (cad_config_parse_size(s, &bytes) != 0)
    cad__conf_err_at(L, v, "%s: expected %s, got '%s'", k->name, what,
                     cad__conf_quote(q, s, strlen(s)));
  else if (in_range(L, k, v, bytes, fmt_size, s)) *FIELD(obj, k, size_t) = bytes;
  free(s);
}

/* A whole number within the key's range; false after reporting. */
static bool whole_number(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, uint64_t max, uint64_t *out) {
  static const char what[] = "a whole number";
  char *s = cad__conf_scalar(L, k, key, v, what);
  if (!s) return false;
  uint64_t x = 0;
  bool ok = *s != 0;
  for (const char *p = s; *p && ok; p++) {
    if (*p < '0' || *p > '9' || x > max / 10) ok = false;
    else x = x * 10 + (uint64_t)(*p - '0');
  }
  char q[QBUF];
  bool good = false;
  if (!ok)
    cad__conf_err_at(L, v, "%s: expected %s, got '%s'", k->name, what,
                     cad__conf_quote(q, s, strlen(s)));
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

static void set_int(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, void *obj) {
  uint64_t x;
  if (whole_number(L, k, key, v, INT32_MAX, &x)) *FIELD(obj, k, int) = (int)x;
}

static void set_u32_64(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  uint64_t x;
  if (whole_number(L, k, key, v, UINT64_MAX / 10, &x)) *FIELD(obj, k, uint64_t) = x;
}

/* A nested mapping (`ack:`) whose keys set fields of the same object; with
 * CAD_CONF_PRESENCE (`tls:`) the bool at k->off records that it was written
 * (`tls: {}` takes every default; no `tls:` applies none). */
static void set_section(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj) {
  char where[300];
  const char *outer = L->where;
  if (k->flags & CAD_CONF_PRESENCE) *FIELD(obj, k, bool) = true;
  if (k->flags & CAD_CONF_NESTED) obj = FIELD(obj, k, char);
  /* "in channel 'lab'" -> "in ack of channel 'lab'"; "at the top level" -> "in engine" */
  if (strncmp(outer, "in ", 3) == 0)
    snprintf(where, sizeof where, "in %s of %s", k->name, outer + 3);
  else snprintf(where, sizeof where, "in %s", k->name);
  cad__conf_apply_section(L, k->arg, key, v, obj, where);
}

/* One name or a list of non-empty names (allowed_clients), count in lo..hi. */
static void set_names(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                      const cad_yaml_node_t *v, void *obj) {
  const cad_conf_names_t *a = k->arg;
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items =
      cad__conf_list(L, k, key, v, "a name or a list of names", &n, &one);
  if (!items) return;
  if (n < k->lo || n > k->hi) {
    cad__conf_err_at(L, v, "%s: expected %llu to %llu names", k->name, (unsigned long long)k->lo,
                     (unsigned long long)k->hi);
    return;
  }
  char **names = calloc(n, sizeof *names);
  if (!names) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = cad__conf_scalar(L, k, NULL, items[i], a->item);
    if (s && *s == 0) {
      cad__conf_err_at(L, items[i], "%s: expected %s, got an empty string", k->name, a->item);
      free(s);
    } else if (s) {
      names[m++] = s;
    }
  }
  /* The array and its strings are owned by the config (freed with it). */
  char **old;
  memcpy(&old, FIELD(obj, k, char), sizeof old);
  size_t *count = (size_t *)(void *)((char *)obj + a->count_off);
  for (size_t i = 0; old && i < *count; i++) free(old[i]);
  free(old);
  memcpy(FIELD(obj, k, char), &names, sizeof names);
  *count = m;
}

static void set_custom(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  ((const conf_custom_t *)k->arg)->fn(L, k, key, v, obj);
}

/* Permission bits in octal ("0640", "640"): 0 to 0777. */
static void set_mode(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  char *s = cad__conf_scalar(L, k, key, v, "permission bits in octal, like 0640");
  if (!s) return;
  uint32_t x = 0;
  bool ok = *s != 0 && strlen(s) <= 4;
  for (const char *p = s; *p && ok; p++) {
    if (*p < '0' || *p > '7') ok = false;
    else x = x * 8 + (uint32_t)(*p - '0');
  }
  char q[QBUF];
  if (!ok || x > 0777)
    cad__conf_err_at(L, v,
                     "%s: expected permission bits in octal from 0000 to 0777, like 0640, got '%s'",
                     k->name, cad__conf_quote(q, s, strlen(s)));
  else *FIELD(obj, k, uint32_t) = x;
  free(s);
}

/* The setter of a key's type (cad_conf.h). */
static conf_set_fn setter_of(const conf_key_t *k) {
  switch (k->type) {
    case CAD_CONF_PATH: return set_path;
    case CAD_CONF_FILE: return set_file;
    case CAD_CONF_TEMPLATE: return set_template;
    case CAD_CONF_ENUM: return cad__conf_set_enum;
    case CAD_CONF_DURATION: return set_duration;
    case CAD_CONF_SIZE: return set_size;
    case CAD_CONF_U32: return set_u32;
    case CAD_CONF_U64: return set_u32_64;
    case CAD_CONF_INT: return set_int;
    case CAD_CONF_FLAG: return set_flag;
    case CAD_CONF_HOST: return set_host;
    case CAD_CONF_MODE: return set_mode;
    case CAD_CONF_TEXT: return set_text;
    case CAD_CONF_NAMES: return set_names;
    case CAD_CONF_SECTION: return set_section;
    case CAD_CONF_CUSTOM: return set_custom;
    case CAD_CONF_URL: return set_text_refs;
  }
  assert(!"a key table names an unknown type");
  return set_custom;
}

static void report_err(void *ctx, const cad_yaml_node_t *at, const char *msg) {
  cad__conf_err_at(ctx, at, "%s", msg);
}

static cad_conf_report_t report(loader_t *L) {
  return (cad_conf_report_t){report_err, L, L->where, &L->nomem};
}

void cad__conf_apply_section(loader_t *L, const conf_section_t *sec, const cad_yaml_node_t *key,
                             const cad_yaml_node_t *map, void *obj, const char *where) {
  conf_part_t part = {sec, obj};
  cad__conf_apply_parts(L, &part, 1, key, map, where);
}

#define MAX_PARTS 4

/* "unknown key 'x' in ... (expected one of: a, b, ...)": every part's keys. */
static void unknown_key(loader_t *L, const conf_part_t *parts, size_t nparts,
                        const cad_yaml_node_t *kn, const char *where) {
  char list[512], q[QBUF];
  size_t o = 0;
  list[0] = 0;
  for (size_t p = 0; p < nparts; p++)
    for (size_t m = 0; m < parts[p].sec->nkeys && o < sizeof list; m++)
      o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "",
                            parts[p].sec->keys[m].name);
  cad__conf_err_at(L, kn, "unknown key '%s' %s (expected one of: %s)",
                   cad__conf_quote(q, kn->str, kn->len), where, list);
}

/* The defaults of the keys of one part that were not written. */
static void apply_defaults(loader_t *L, const conf_part_t *pt, const bool *seen, bool checkable,
                           const cad_yaml_node_t *key, const char *where) {
  for (size_t j = 0; j < pt->sec->nkeys; j++) {
    const conf_key_t *k = &pt->sec->keys[j];
    if (seen[j]) continue;
    if ((k->flags & K_REQUIRED) && checkable && key) {
      cad__conf_err_at(L, key, "missing '%s' %s (%s)", k->name, where, k->doc);
    } else if (k->type == CAD_CONF_SECTION && !(k->flags & CAD_CONF_PRESENCE) &&
               (!(k->flags & K_MAIN_ONLY) || L->in_main)) {
      set_section(L, k, NULL, NULL, pt->obj); /* the sub-section's defaults */
    } else if (k->def) {
      cad_yaml_node_t d = {.type = CAD_YAML_SCALAR,
                           .file = "(default)",
                           .str = k->def,
                           .len = strlen(k->def),
                           .quoted = true,
                           .style = CAD_YAML_DOUBLE};
      setter_of(k)(L, k, NULL, &d, pt->obj);
    }
  }
}

/* Apply the parts' tables to their structs: every key of `map` through its
 * setter (a key belongs to the first part that has it), then the defaults
 * of the keys not written, then each section's own check.  With map ==
 * NULL only the defaults are applied. */
void cad__conf_apply_parts(loader_t *L, const conf_part_t *parts, size_t nparts,
                           const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                           const char *where) {
  const char *saved = L->where;
  L->where = where;
  bool seen[MAX_PARTS][32] = {{false}};
  assert(nparts <= MAX_PARTS);
  for (size_t p = 0; p < nparts; p++) assert(parts[p].sec->nkeys <= sizeof seen[0]);
  bool checkable = true;
  if (map && cad_yaml_is_null(map)) map = NULL; /* "ack:" with nothing: the defaults */
  if (map && map->type != CAD_YAML_MAPPING) {
    char d[QBUF + 2];
    cad__conf_err_at(L, cad__conf_at(key, map), "expected a mapping of %s settings %s, got %s",
                     parts[0].sec->what, where, cad__conf_describe(d, map));
    map = NULL;
    checkable = false;
  }
  for (size_t i = 0; map && i < map->n; i++) {
    const cad_yaml_node_t *kn = map->pairs[i].key, *vn = map->pairs[i].value;
    size_t p = 0, j = 0;
    for (; p < nparts; p++) {
      const conf_section_t *sec = parts[p].sec;
      for (j = 0; j < sec->nkeys && strcmp(sec->keys[j].name, kn->str) != 0; j++) continue;
      if (j < sec->nkeys) break;
    }
    if (p == nparts || memchr(kn->str, 0, kn->len)) {
      unknown_key(L, parts, nparts, kn, where);
      continue;
    }
    const conf_key_t *k = &parts[p].sec->keys[j];
    seen[p][j] = true;
    if ((k->flags & K_MAIN_ONLY) && !L->in_main) {
      cad__conf_err_at(L, kn, "'%s' may only be set in the main file (%s)", k->name,
                       L->c->files[0]);
      continue;
    }
    setter_of(k)(L, k, kn, vn, parts[p].obj);
  }
  for (size_t p = 0; p < nparts; p++) apply_defaults(L, &parts[p], seen[p], checkable, key, where);
  cad_conf_report_t r = report(L);
  for (size_t p = 0; p < nparts; p++)
    if (parts[p].sec->check && checkable && map)
      parts[p].sec->check(&r, key, map, parts[p].obj, seen[p]);
  L->where = saved;
}

/* true or false: the one rule of cad_yaml_bool_text (YAML 1.2 core). */
static void set_flag(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  static const char what[] = CAD_YAML_BOOL_WORDS;
  char *s = cad__conf_scalar(L, k, key, v, what);
  if (!s) return;
  int val = cad_yaml_bool_text(s, strlen(s));
  char q[QBUF];
  if (val < 0)
    cad__conf_err_at(L, v, "%s: expected %s, got '%s'", k->name, what,
                     cad__conf_quote(q, s, strlen(s)));
  else *FIELD(obj, k, bool) = (val == 1) != ((k->flags & K_INVERT) != 0);
  free(s);
}

/* A host to connect to: an IP address ([v6] brackets are dropped) or a DNS
 * name of letters, digits, '-', '_' and '.' (resolved when connecting). */
static void set_host(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  static const char what[] = "a host name or IP address like ehr.example.org or 10.0.0.5";
  char *s = cad__conf_scalar(L, k, key, v, what);
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
    cad__conf_err_at(L, v, "%s: expected %s, got '%s'", k->name, what, cad__conf_quote(q, s, n));
    free(s);
    return;
  }
  store_str(obj, k, s);
}

/* A non-empty string, used as is (a cipher list). */
static void set_text(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  char *s = cad__conf_scalar(L, k, key, v, k->doc);
  if (!s) return;
  if (*s == 0 || L->kept_refs) {
    cad__conf_err_at(L, v, "%s: expected %s, got '%s'", k->name, k->doc, s);
    free(s);
    return;
  }
  store_str(obj, k, s);
}

/* A text whose ${HL7-path} references the kind fills per message. */
static void set_text_refs(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj) {
  char *s = cad__conf_scalar(L, k, key, v, k->doc);
  if (!s) return;
  if (*s == 0) {
    cad__conf_err_at(L, v, "%s: expected %s, got an empty string", k->name, k->doc);
    free(s);
    return;
  }
  store_str(obj, k, s);
}

const cad_yaml_node_t *const *cad__conf_list(loader_t *L, const conf_key_t *k,
                                             const cad_yaml_node_t *key, const cad_yaml_node_t *v,
                                             const char *what, size_t *n,
                                             const cad_yaml_node_t **one) {
  if (v->type == CAD_YAML_MAPPING || cad_yaml_is_null(v)) {
    char d[QBUF + 2];
    cad__conf_err_at(L, cad__conf_at(key, v), "%s: expected %s, got %s", k->name, what,
                     cad__conf_describe(d, v));
    return NULL;
  }
  *one = v;
  if (v->type == CAD_YAML_SEQUENCE) {
    *n = v->n; /* `[]`: 0 items, not NULL (the caller says what is missing) */
    return v->n ? (const cad_yaml_node_t *const *)v->items : one;
  }
  *n = 1;
  return one;
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
