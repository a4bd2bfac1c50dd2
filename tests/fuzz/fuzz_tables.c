/* fuzz_tables.c - the CSV lookup-table reader (routes/tables.c):
 * `tables: { t: { file: PATH, header: true|false, delimiter: D } }`.
 *
 * The first input byte chooses the delimiter: itself when it is a tab or
 * printable ASCII (space included) other than '"'; otherwise no
 * `delimiter:`, so ','.  The rest is written to a temporary file (under
 * $TMPDIR or /tmp, removed afterwards) and loaded once without and once with
 * `header: true`.
 *
 * A small model of the CSV rules of routes.h, written apart from tables.c,
 * says what each load must give:
 *   - a line that is not two fields (or has a stray or unterminated quote):
 *     CAD_E_CONFIG and one error line "PATH:LINE:COL: ..." for that line,
 *     COL within the line;
 *   - duplicate keys: CAD_E_CONFIG and one such line per duplicate (column
 *     1), the first for the first duplicate, until "too many errors";
 *   - otherwise success, no error text, every key found with its value, and
 *     keys the file does not have not found. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "routes.h"
#include "yaml_doc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[512]; /* this input's CSV file, "" when none */

#define FAIL(...)                                 \
  do {                                            \
    fprintf(stderr, "fuzz_tables: " __VA_ARGS__); \
    fputc('\n', stderr);                          \
    if (path[0]) unlink(path);                    \
    abort();                                      \
  } while (0)

#define MAX_ERROR_LINES 100 /* routes_int.h: CAD__ROUTES_MAX_ERRORS */

typedef struct {
  const char *k, *v;
  size_t kl, vl;
  int line;
} mrow_t;

typedef struct {
  mrow_t *rows;
  size_t n;
  int bad_line;   /* a line that is not key,value; 0 = none */
  size_t bad_len; /* its length without the line end */
  size_t *order;  /* rows sorted by key, then by line */
  size_t ndups;   /* rows whose key an earlier row has */
  int first_dup;  /* line of the first of them (in file order) */
  char *text;     /* unquoted fields */
} model_t;

static int key_cmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : (al > bl) - (al < bl);
}

static const model_t *sorting;
static int order_cmp(const void *x, const void *y) {
  const mrow_t *a = &sorting->rows[*(const size_t *)x], *b = &sorting->rows[*(const size_t *)y];
  int c = key_cmp(a->k, a->kl, b->k, b->kl);
  return c ? c : (a->line > b->line) - (a->line < b->line);
}

/* Fields of one line, as the rules say; false when it is not exactly two
 * good ones. */
static bool model_line(const char *c, size_t len, char delim, char **text, mrow_t *row) {
  size_t i = 0;
  for (int f = 0; f < 2; f++) {
    char *start = *text;
    if (i < len && c[i] == '"') {
      i++;
      for (;;) {
        if (i == len) return false; /* unterminated */
        if (c[i] == '"' && i + 1 < len && c[i + 1] == '"') {
          *(*text)++ = '"';
          i += 2;
        } else if (c[i] == '"') {
          i++;
          break;
        } else {
          *(*text)++ = c[i++];
        }
      }
    } else {
      while (i < len && c[i] != delim) *(*text)++ = c[i++];
    }
    if (f == 0) {
      row->k = start;
      row->kl = (size_t)(*text - start);
      if (i == len || c[i] != delim) return false; /* one field, or junk after a quote */
      i++;
    } else {
      row->v = start;
      row->vl = (size_t)(*text - start);
      if (i != len) return false; /* a third field, or junk after a quote */
    }
  }
  return true;
}

static void model_run(model_t *m, const char *p, size_t n, bool header, char delim) {
  memset(m, 0, sizeof *m);
  m->rows = malloc((n / 2 + 1) * sizeof *m->rows);
  m->order = malloc((n / 2 + 1) * sizeof *m->order);
  m->text = malloc(n + 1);
  if (!m->rows || !m->order || !m->text) FAIL("out of memory");
  char *text = m->text;
  size_t i = n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  int line = 0;
  bool skip_header = header;
  while (i < n) {
    line++;
    size_t e = i;
    while (e < n && p[e] != '\n') e++;
    size_t next = e < n ? e + 1 : e;
    if (e > i && p[e - 1] == '\r') e--;
    size_t len = e - i;
    if (len == 0 || p[i] == '#') {
      i = next;
      continue;
    }
    if (skip_header) {
      skip_header = false;
      i = next;
      continue;
    }
    mrow_t *row = &m->rows[m->n];
    if (!model_line(p + i, len, delim, &text, row)) {
      m->bad_line = line;
      m->bad_len = len;
      return;
    }
    row->line = line;
    m->n++;
    i = next;
  }
  for (size_t k = 0; k < m->n; k++) m->order[k] = k;
  sorting = m;
  qsort(m->order, m->n, sizeof *m->order, order_cmp);
  for (size_t k = 1; k < m->n; k++) {
    const mrow_t *a = &m->rows[m->order[k - 1]], *b = &m->rows[m->order[k]];
    if (key_cmp(a->k, a->kl, b->k, b->kl) != 0) continue;
    m->ndups++;
    if (!m->first_dup || b->line < m->first_dup) m->first_dup = b->line;
  }
}

static bool model_has(const model_t *m, const char *k, size_t kl) {
  size_t lo = 0, hi = m->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const mrow_t *r = &m->rows[m->order[mid]];
    int c = key_cmp(r->k, r->kl, k, kl);
    if (c == 0) return true;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return false;
}

static void model_free(model_t *m) {
  free(m->rows);
  free(m->order);
  free(m->text);
}

/* Check the error lines; returns how many, and the first's line and column. */
static size_t check_errors(const cad_buf_t *errors, int *line1, int *col1) {
  size_t nl = 0, plen = strlen(path);
  if (!errors->len) return 0;
  const char *p = errors->data, *end = p + errors->len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) FAIL("error text does not end with a newline");
    if ((size_t)(eol - p) <= plen + 1 || memcmp(p, path, plen) != 0 || p[plen] != ':')
      FAIL("error line without the file name: %.*s", (int)(eol - p), p);
    const char *q = p + plen + 1;
    static const char many[] = " too many errors, stopping here";
    if ((size_t)(eol - q) == sizeof many - 1 && memcmp(q, many, sizeof many - 1) == 0) {
      if (eol + 1 != end) FAIL("error lines after 'too many errors'");
    } else {
      char *e1, *e2;
      long l = strtol(q, &e1, 10);
      if (e1 == q || *e1 != ':') FAIL("error line without a line number: %.*s", (int)(eol - p), p);
      long c = strtol(e1 + 1, &e2, 10);
      if (e2 == e1 + 1 || e2[0] != ':' || e2[1] != ' ' || e2 + 2 >= eol || l < 1 || c < 1)
        FAIL("error line without line:column: %.*s", (int)(eol - p), p);
      if (nl == 0) {
        *line1 = (int)l;
        *col1 = (int)c;
      }
    }
    nl++;
    p = eol + 1;
  }
  return nl;
}

static void load(const char *csv, size_t n, bool header, int delim) {
  char yaml[700], q[8];
  if (delim == '\t') snprintf(q, sizeof q, "\"\\t\"");
  else if (delim == '\'') snprintf(q, sizeof q, "''''");
  else if (delim) snprintf(q, sizeof q, "'%c'", delim);
  int yl = snprintf(yaml, sizeof yaml, "t:\n  file: '%s'\n  header: %s\n%s%s%s", path,
                    header ? "true" : "false", delim ? "  delimiter: " : "", delim ? q : "",
                    delim ? "\n" : "");
  cad_yaml_limits_t lim = {4096, 8, 64};
  cad_yaml_doc_t *doc = NULL;
  char err[256];
  if (cad_yaml_parse("fuzz.yaml", yaml, (size_t)yl, &lim, &doc, err, sizeof err) != 0)
    FAIL("the tables document does not parse: %s\n%s", err, yaml);

  model_t m;
  model_run(&m, csv, n, header, delim ? (char)delim : ',');
  cad_buf_t errors = CAD_BUF_INIT;
  errors.limit = 1 << 20;
  cad_tables_t *t = NULL;
  int rc = cad_tables_load(doc->root, NULL, &t, &errors);
  int line1 = 0, col1 = 0;
  size_t nerr = check_errors(&errors, &line1, &col1);
  if (m.bad_line) {
    if (rc != CAD_E_CONFIG || t)
      FAIL("line %d is not key,value but the load gave %d", m.bad_line, rc);
    if (nerr != 1 || line1 != m.bad_line || (size_t)col1 > m.bad_len + 1)
      FAIL("bad line %d (%zu bytes): %zu error lines, the first at %d:%d", m.bad_line, m.bad_len,
           nerr, line1, col1);
  } else if (m.ndups) {
    size_t want = m.ndups < MAX_ERROR_LINES ? m.ndups : MAX_ERROR_LINES;
    if (rc != CAD_E_CONFIG || t) FAIL("%zu duplicate keys but the load gave %d", m.ndups, rc);
    if (nerr != want || line1 != m.first_dup || col1 != 1)
      FAIL("%zu duplicate keys, the first at line %d: %zu error lines, the first at %d:%d", m.ndups,
           m.first_dup, nerr, line1, col1);
  } else {
    if (rc != 0 || !t || nerr)
      FAIL("%zu good rows but the load gave %d: %.*s", m.n, rc, (int)errors.len,
           errors.data ? errors.data : "");
    char probe[256];
    for (size_t k = 0; k < m.n; k++) {
      const mrow_t *r = &m.rows[k];
      cad_str_t v = {NULL, 0};
      if (!cad_tables_get(t, "t", r->k, r->kl, &v))
        FAIL("key of line %d (%zu bytes) not found", r->line, r->kl);
      if (v.len != r->vl || (v.len && memcmp(v.p, r->v, v.len) != 0))
        FAIL("key of line %d: value of %zu bytes, expected %zu", r->line, v.len, r->vl);
      /* The key one byte longer or shorter: found only if the file has it. */
      if (r->kl < sizeof probe) {
        memcpy(probe, r->k, r->kl);
        probe[r->kl] = 'x';
        if (cad_tables_get(t, "t", probe, r->kl + 1, NULL) != model_has(&m, probe, r->kl + 1))
          FAIL("a key one byte longer than line %d's is wrongly (not) found", r->line);
        if (r->kl &&
            cad_tables_get(t, "t", probe, r->kl - 1, NULL) != model_has(&m, probe, r->kl - 1))
          FAIL("a key one byte shorter than line %d's is wrongly (not) found", r->line);
      }
    }
    if (cad_tables_get(t, "nope", "", 0, NULL)) FAIL("a table that does not exist has a key");
  }
  cad_tables_free(t);
  cad_buf_free(&errors);
  model_free(&m);
  cad_yaml_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || size > 65536) return 0;
  int c = data[0];
  int delim = c == '\t' || (c >= ' ' && c < 0x7f && c != '"') ? c : 0;
  const char *csv = (const char *)data + 1;
  size_t n = size - 1;
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/cad-fuzz-table.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0) {
    path[0] = 0;
    FAIL("mkstemp under %s failed", tmp && *tmp ? tmp : "/tmp");
  }
  for (size_t done = 0; done < n;) {
    ssize_t w = write(fd, csv + done, n - done);
    if (w <= 0) FAIL("cannot write %s", path);
    done += (size_t)w;
  }
  close(fd);
  load(csv, n, false, delim);
  load(csv, n, true, delim);
  unlink(path);
  path[0] = 0;
  return 0;
}
