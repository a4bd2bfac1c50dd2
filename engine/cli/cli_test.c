/* cli_test.c - `caduceus test CONFIG`: run the route test cases of a
 * configuration without opening any socket.
 *
 * A channel may declare test cases beside its routes:
 *
 *   channels:
 *     lab:
 *       routes: [...]
 *       tests:
 *         - name: a final result goes to the EHR and the archive
 *           input: { file: messages/oru_final.hl7 }   # or the message inline
 *           expect:
 *             ehr: { file: expected/oru_final.ehr.hl7 }  # or inline, or none
 *             archive: { file: messages/oru_final.hl7 }
 *         - name: an unmapped code is refused
 *           input: { file: messages/oru_unmapped.hl7 }
 *           expect:
 *             disposition: error      # deliver | filtered | rejected | error | dead_letter
 *             error: { code: 103, reason: "table 'loinc'" }   # reason: a substring
 *
 * A destination that the expectation does not name must receive nothing.
 * Messages are compared after normalising segment terminators (CR, LF, CRLF)
 * and dropping trailing ones; a difference is printed by path:
 *   OBX[2]-3.1: expected "2345-7", got "GLU"
 *
 * The configuration is loaded by engine/config (the loader `run` and `check`
 * use: include:, ${ENV}, every key checked); this file runs each channel's
 * compiled routes on its `tests:`.  File paths (inputs, expectations) are
 * relative to the directory of the file the test is written in.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "chan_route.h"
#include "cli.h"
#include "cli_test_int.h"
#include "config.h"
#include "hl7.h"
#include "routes.h"
#include "yaml_doc.h"

#define MAX_DIFF_LINES 20

typedef struct run {
  const cad_config_t *cfg; /* destination formats and the fhir: settings */
  const char *const *dests;
  size_t ndests;
  int passed, failed;
  bool show;
  cad_buf_t out; /* report of the current test */
  int lines;     /* diff lines in `out` */
} run_t;

static void fail_line(run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_line(run_t *r, const char *fmt, ...) {
  r->lines++;
  if (r->lines > MAX_DIFF_LINES) {
    if (r->lines == MAX_DIFF_LINES + 1) cad_buf_puts(&r->out, "    ... (more differences)\n");
    return;
  }
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  cad_buf_printf(&r->out, "    %s\n", tmp);
}

static void line_cb(void *ud, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_cb(void *ud, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  fail_line(ud, "%s", tmp);
}

/* Printable form of a value (at most 60 bytes, control bytes escaped). */
static const char *show(char *buf, size_t cap, cad_str_t v) {
  size_t o = 0;
  for (size_t i = 0; i < v.len && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)v.p[i];
    if (i == 60) {
      memcpy(buf + o, "...", 3);
      o += 3;
      break;
    }
    if (c == '"' || c == '\\') buf[o++] = '\\', buf[o++] = (char)c;
    else if (c >= 0x20 && c != 0x7f) buf[o++] = (char)c;
    else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
  }
  buf[o] = 0;
  return buf;
}

/* CR/LF/CRLF -> CR, trailing terminators and blanks dropped; malloc'd. */
static char *normalise(const char *p, size_t n, size_t *out_len) {
  char *b = malloc(n + 1);
  if (!b) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\n') {
      if (!(o > 0 && i > 0 && p[i - 1] == '\r')) b[o++] = '\r';
    } else {
      b[o++] = p[i];
    }
  }
  while (o > 0 && (b[o - 1] == '\r' || b[o - 1] == ' ' || b[o - 1] == '\t')) o--;
  b[o] = 0;
  *out_len = o;
  return b;
}

/* ---- difference by path ------------------------------------------------- */

typedef struct diff_ctx {
  run_t *r;
  const char *dest;
} diff_ctx_t;

static void on_diff(void *ctx, const cad_hl7_diff_t *d) {
  diff_ctx_t *dc = ctx;
  if (!d->path) {
    if (!d->b_seg)
      fail_line(dc->r, "%s: segment %u: expected %s, got nothing (message too short)", dc->dest,
                d->seg, d->a_seg->name);
    else if (!d->a_seg)
      fail_line(dc->r, "%s: segment %u: expected nothing, got %s", dc->dest, d->seg,
                d->b_seg->name);
    else
      fail_line(dc->r, "%s: segment %u: expected %s, got %s", dc->dest, d->seg, d->a_seg->name,
                d->b_seg->name);
    return;
  }
  char b1[256], b2[256];
  fail_line(dc->r, "%s: %s: expected \"%s\", got \"%s\"", dc->dest, d->path,
            show(b1, sizeof b1, d->a), show(b2, sizeof b2, d->b));
}

static void diff_messages(run_t *r, const char *dest, const char *ep, size_t elen, const char *gp,
                          size_t glen) {
  cad_arena_t a;
  cad_arena_init(&a, 65536, 0);
  cad_hl7_msg_t em, gm;
  cad_hl7_diag_t dg;
  int rc1 = cad_hl7_parse(&em, ep, elen, &a, NULL, &dg);
  int rc2 = cad_hl7_parse(&gm, gp, glen, &a, NULL, &dg);
  if (rc1 || rc2) {
    fail_line(r, "%s: the %s message does not parse (%s); bytes differ", dest,
              rc1 ? "expected" : "produced", cad_strerror(rc1 ? rc1 : rc2));
    cad_arena_free(&a);
    return;
  }
  diff_ctx_t dc = {r, dest};
  if (cad_hl7_diff(&em, &gm, on_diff, &dc) == 0)
    fail_line(r,
              "%s: same values by path, but the bytes differ (expected %zu bytes, got %zu): "
              "trailing delimiters or encoding",
              dest, elen, glen);
  cad_arena_free(&a);
}

/* ---- reading test cases ------------------------------------------------- */

static int errorf(const cad_yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int errorf(const cad_yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "%s:%d:%d: ", n->file, n->line, n->col);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return -1;
}

/* An expectation may be { fhir: PATH }: the FHIR Bundle of the output. */
static bool allow_fhir(const cad_yaml_node_t *n) {
  return n->type == CAD_YAML_MAPPING && cad_yaml_get(n, "fhir") != NULL;
}

/* A message given inline (a string) or as { file: PATH }.  *data is
 * malloc'd.  Returns 0, 1 for `none`, or -1 (error printed). */
static int load_message(run_t *r, const cad_yaml_node_t *n, char **data, size_t *len,
                        bool allow_none) {
  *data = NULL;
  *len = 0;
  if (n->type == CAD_YAML_SCALAR) {
    if (allow_none && !n->quoted && (strcmp(n->str, "none") == 0 || cad_yaml_is_null(n))) return 1;
    if (n->len == 0) return errorf(n, "an empty message");
    *data = malloc(n->len + 1);
    if (!*data) return errorf(n, "out of memory");
    memcpy(*data, n->str, n->len);
    *len = n->len;
    return 0;
  }
  const cad_yaml_node_t *f = cad_yaml_get(n, "file");
  if (!f && allow_fhir(n)) f = cad_yaml_get(n, "fhir"); /* a Bundle expected */
  if (n->type != CAD_YAML_MAPPING || n->n != 1 || !f || f->type != CAD_YAML_SCALAR)
    return errorf(n, "a message is written inline (a string), as { file: PATH }%s",
                  allow_none ? ", { fhir: PATH } or none" : "");
  /* Relative to the file the test is written in (as config.h says). */
  char path[4096];
  const char *slash = strrchr(f->file, '/');
  if (f->str[0] == '/' || !slash) snprintf(path, sizeof path, "%s", f->str);
  else snprintf(path, sizeof path, "%.*s/%s", (int)(slash - f->file), f->file, f->str);
  int rc = cad_cli_read_file(path, data, len);
  if (rc) return errorf(f, "cannot read '%s': %s", path, strerror(-rc));
  return 0;
}

static const char *const dispositions[] = {"deliver", "filtered", "rejected", "error",
                                           "dead_letter"};

static void print_outputs(const cad_routes_t *routes, const cad_route_result_t *res) {
  for (size_t i = 0; i < res->nouts; i++) {
    printf("  --- %s (%zu bytes)\n", cad_routes_dest_name(routes, res->outs[i].dest),
           res->outs[i].bytes.len);
    for (size_t k = 0; k < res->outs[i].bytes.len; k++) {
      char c = res->outs[i].bytes.p[k];
      putchar(c == '\r' ? '\n' : c);
    }
  }
}

/* The keys of a test case: its name, input (loaded) and expect.  Returns
 * true when the case is well formed (errors printed otherwise). */
static bool read_case(run_t *r, const cad_yaml_node_t *t, char *name, size_t cap,
                      const cad_yaml_node_t **expect, char **in, size_t *inlen) {
  if (t->type != CAD_YAML_MAPPING) {
    errorf(t, "a test case is a mapping with name, input and expect");
    return false;
  }
  const cad_yaml_node_t *input = NULL;
  bool bad = false;
  *expect = NULL;
  for (size_t i = 0; i < t->n; i++) {
    const cad_yaml_node_t *k = t->pairs[i].key, *v = t->pairs[i].value;
    if (strcmp(k->str, "name") == 0 && v->type == CAD_YAML_SCALAR)
      snprintf(name, cap, "%s", v->str);
    else if (strcmp(k->str, "input") == 0) input = v;
    else if (strcmp(k->str, "expect") == 0) *expect = v;
    else {
      errorf(k, "unknown key '%s' in a test case (expected one of: name, input, expect)", k->str);
      bad = true;
    }
  }
  if (!input) bad = true, errorf(t, "test '%s' needs 'input', the message to route", name);
  if (!*expect) bad = true, errorf(t, "test '%s' needs 'expect'", name);
  else if ((*expect)->type != CAD_YAML_MAPPING)
    bad = true,
    errorf(*expect, "'expect' must be a mapping of destinations (and disposition, error)");
  if (!bad && load_message(r, input, in, inlen, false) != 0) bad = true;
  return !bad;
}

static size_t count_outs(const cad_route_result_t *res, size_t d) {
  size_t got = 0;
  for (size_t o = 0; o < res->nouts; o++)
    if (res->outs[o].dest == d) got++;
  return got;
}

/* What destination d (named by key k) must receive, given by v: one
 * message, none, or a list.  Sets *any_dest when a message is expected.
 * Returns false when the expectation itself is wrong (printed). */
static bool check_dest(run_t *r, const cad_route_result_t *res, size_t d, const cad_yaml_node_t *k,
                       const cad_yaml_node_t *v, bool *any_dest) {
  size_t nexp = v->type == CAD_YAML_SEQUENCE ? v->n : 1;
  size_t got = count_outs(res, d);
  size_t seen = 0;
  for (size_t e = 0; e < nexp; e++) {
    const cad_yaml_node_t *item = v->type == CAD_YAML_SEQUENCE ? v->items[e] : v;
    char *exp = NULL;
    size_t elen = 0;
    int lr = load_message(r, item, &exp, &elen, v->type != CAD_YAML_SEQUENCE);
    if (lr < 0) return false;
    if (lr == 1) {
      if (got) fail_line(r, "%s: expected no message, got %zu", k->str, got);
      return true;
    }
    *any_dest = true;
    /* The e-th output to this destination. */
    const cad_route_out_t *out = NULL;
    for (size_t o = 0, c = 0; o < res->nouts; o++)
      if (res->outs[o].dest == d && c++ == e) out = &res->outs[o];
    seen++;
    if (!out && nexp > 1) {
      fail_line(r, "%s: expected %zu messages, got %zu", k->str, nexp, got);
      free(exp);
      return true;
    } else if (!out) {
      fail_line(r, "%s: expected a message, got none (disposition %s%s%s)", k->str,
                cad_route_disposition_name(res->disposition), res->diag.reason[0] ? ": " : "",
                res->diag.reason);
    } else if (allow_fhir(item) || r->cfg->dests[d].format != CAD_FORMAT_ER7) {
      /* what the destination delivers after its format: compared as JSON */
      cad_format_t f = allow_fhir(item) ? CAD_FORMAT_FHIR : r->cfg->dests[d].format;
      cad__test_compare_rendered(line_cb, r, k->str, f, &r->cfg->fhir.opts, exp, elen, out->bytes.p,
                                 out->bytes.len);
    } else {
      size_t nl1, nl2;
      char *ne = normalise(exp, elen, &nl1), *ng = normalise(out->bytes.p, out->bytes.len, &nl2);
      if (ne && ng && (nl1 != nl2 || memcmp(ne, ng, nl1) != 0))
        diff_messages(r, k->str, ne, nl1, ng, nl2);
      free(ne);
      free(ng);
    }
    free(exp);
  }
  if (v->type == CAD_YAML_SEQUENCE && got > seen)
    fail_line(r, "%s: expected %zu messages, got %zu", k->str, seen, got);
  return true;
}

/* Every destination the expectation names, then those it does not (which
 * must receive nothing).  Returns false when the expectation is wrong. */
static bool check_dests(run_t *r, const cad_route_result_t *res, const cad_yaml_node_t *expect,
                        bool *any_dest) {
  bool *named = calloc(r->ndests + 1, sizeof *named);
  if (!named) return false;
  bool ok = true;
  for (size_t i = 0; ok && i < expect->n; i++) {
    const cad_yaml_node_t *k = expect->pairs[i].key, *v = expect->pairs[i].value;
    if (strcmp(k->str, "disposition") == 0 || strcmp(k->str, "error") == 0) continue;
    size_t d = r->ndests;
    for (size_t j = 0; j < r->ndests; j++)
      if (strcmp(r->dests[j], k->str) == 0) d = j;
    if (d == r->ndests) {
      errorf(k, "'%s' is not a destination (expected a destination name, disposition or error)",
             k->str);
      ok = false;
      break;
    }
    named[d] = true;
    ok = check_dest(r, res, d, k, v, any_dest);
  }
  for (size_t d = 0; ok && d < r->ndests; d++) {
    size_t got = named[d] ? 0 : count_outs(res, d);
    if (got)
      fail_line(r,
                "%s: got %zu message%s, but the test does not expect any (add '%s: ...' or "
                "'%s: none' to expect)",
                r->dests[d], got, got > 1 ? "s" : "", r->dests[d], r->dests[d]);
  }
  free(named);
  return ok;
}

/* 'error: { code, reason }' against the result.  False when it is wrong. */
static bool check_error(run_t *r, const cad_route_result_t *res, const cad_yaml_node_t *err) {
  const cad_yaml_node_t *code = cad_yaml_get(err, "code"), *reason = cad_yaml_get(err, "reason");
  if (err->type != CAD_YAML_MAPPING || (!code && !reason)) {
    errorf(err,
           "'error' must be a mapping with 'code' (HL7 table 0357) and/or 'reason' (a "
           "substring)");
    return false;
  }
  if (res->disposition == CAD_ROUTE_DELIVER || res->disposition == CAD_ROUTE_FILTERED) {
    fail_line(r, "error: expected an error, got disposition %s",
              cad_route_disposition_name(res->disposition));
    return true;
  }
  if (code && (code->type != CAD_YAML_SCALAR || atoi(code->str) != res->diag.hl7_code))
    fail_line(r, "error: expected code %s, got %d (%s)",
              code->type == CAD_YAML_SCALAR ? code->str : "?", res->diag.hl7_code,
              cad_hl7_err_text(res->diag.hl7_code));
  if (reason && (reason->type != CAD_YAML_SCALAR || !strstr(res->diag.reason, reason->str)))
    fail_line(r, "error: expected a reason containing \"%s\", got \"%s\"",
              reason->type == CAD_YAML_SCALAR ? reason->str : "?", res->diag.reason);
  return true;
}

/* The disposition the test names: -1 none, -2 wrong (printed), else the
 * index in dispositions[]. */
static int want_disposition(const cad_yaml_node_t *expect) {
  const cad_yaml_node_t *disp = cad_yaml_get(expect, "disposition");
  if (!disp) return -1;
  for (int i = 0; i < 5; i++)
    if (disp->type == CAD_YAML_SCALAR && strcmp(disp->str, dispositions[i]) == 0) return i;
  errorf(disp, "'disposition' must be one of: deliver, filtered, rejected, error, dead_letter");
  return -2;
}

/* The disposition the test wants (explicit, or implied by the messages it
 * expects), and its error.  False when the expectation is wrong. */
static bool check_outcome(run_t *r, const cad_route_result_t *res, const cad_yaml_node_t *expect,
                          int want_disp, bool any_dest) {
  const cad_yaml_node_t *err = cad_yaml_get(expect, "error");
  if (want_disp < 0 && any_dest) want_disp = CAD_ROUTE_DELIVER;
  if (want_disp < 0 && !err && res->disposition != CAD_ROUTE_DELIVER &&
      res->disposition != CAD_ROUTE_FILTERED)
    fail_line(r, "disposition: got %s (%s) but the test expects messages or nothing",
              cad_route_disposition_name(res->disposition), res->diag.reason);
  if (want_disp >= 0 && (int)res->disposition != want_disp)
    fail_line(r, "disposition: expected %s, got %s%s%s", dispositions[want_disp],
              cad_route_disposition_name(res->disposition), res->diag.reason[0] ? " — " : "",
              res->diag.reason);
  return err ? check_error(r, res, err) : true;
}

/* Run one test case. Returns 1 passed, 0 failed. */
static int run_case(run_t *r, const cad_conf_channel_t *ch, const cad_yaml_node_t *t, size_t idx) {
  const char *channel = ch->name;
  const cad_routes_t *routes = ch->routes;
  r->out.len = 0;
  r->lines = 0;
  char name[256];
  snprintf(name, sizeof name, "test %zu", idx + 1);
  const cad_yaml_node_t *expect = NULL;
  char *in = NULL;
  size_t inlen = 0;
  if (!read_case(r, t, name, sizeof name, &expect, &in, &inlen)) {
    free(in);
    printf("FAIL %s / %s (the test case is wrong, see above)\n", channel, name);
    return 0;
  }
  cad_arena_t arena;
  cad_arena_init(&arena, 65536, 64u << 20);
  cad_route_result_t res;
  /* With the channel's character sets, as the engine routes (chan_route.h). */
  int erc = cad_chan_route(ch, in, inlen, NULL, &arena, &res);
  if (erc == 1) erc = 0;
  bool any_dest = false;
  int want_disp = want_disposition(expect);
  bool bad = want_disp == -2 || !check_dests(r, &res, expect, &any_dest);
  if (!bad) bad = !check_outcome(r, &res, expect, want_disp, any_dest);
  if (erc && !bad) fail_line(r, "evaluation failed: %s", cad_strerror(erc));
  bool ok = !bad && r->lines == 0;
  printf("%s %s / %s\n", ok ? "ok  " : "FAIL", channel, name);
  if (!ok && r->out.len) fwrite(r->out.data, 1, r->out.len, stdout);
  if (r->show) print_outputs(routes, &res);
  cad_arena_free(&arena);
  free(in);
  return ok;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: caduceus test [--show] [--channel NAME] CONFIG\n"
          "\n"
          "Run the route test cases that CONFIG declares (a `tests:` list per channel):\n"
          "route each input message, compare what every destination receives with the\n"
          "expected messages, and print differences by path. No socket is opened.\n"
          "Exit status 0 when every test passes, 1 otherwise, 2 on a usage error.\n"
          "\n"
          "  --show          print every message produced, per destination\n"
          "  --channel NAME  only this channel's tests\n");
}

int cad_cli_test(int argc, char **argv) {
  const char *config = NULL, *only = NULL;
  bool showflag = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--show") == 0) {
      showflag = true;
    } else if (strcmp(argv[i], "--channel") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "caduceus test: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    } else if (!config) {
      config = argv[i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!config) {
    usage(stderr);
    return 2;
  }
  cad_config_t *cfg = NULL;
  char *cerr = NULL;
  int rc = cad_config_load(config, &cfg, &cerr);
  if (rc) {
    if (cerr && *cerr) fputs(cerr, stderr);
    else fprintf(stderr, "caduceus test: %s: %s\n", config, cad_strerror(rc));
    free(cerr);
    return 1;
  }
  free(cerr);
  int status = 1;
  const char **dests = calloc(cfg->ndests + 1, sizeof *dests);
  run_t r = {cfg, NULL, 0, 0, 0, showflag, CAD_BUF_INIT, 0};
  if (!dests) goto done;
  for (size_t i = 0; i < cfg->ndests; i++) dests[i] = cfg->dests[i].name;
  r.dests = dests;
  r.ndests = cfg->ndests;
  int ntests = 0;
  for (size_t c = 0; c < cfg->nchannels; c++) {
    const cad_conf_channel_t *ch = &cfg->channels[c];
    if (only && strcmp(only, ch->name) != 0) continue;
    for (size_t t = 0; ch->tests && t < ch->tests->n; t++) {
      ntests++;
      if (run_case(&r, ch, ch->tests->items[t], t)) r.passed++;
      else r.failed++;
    }
  }
  if (only && ntests == 0) fprintf(stderr, "caduceus test: no tests in channel '%s'\n", only);
  printf("%d tests: %d passed, %d failed\n", ntests, r.passed, r.failed);
  status = r.failed ? 1 : 0;
done:
  cad_buf_free(&r.out);
  free(dests);
  cad_config_free(cfg);
  return status;
}
