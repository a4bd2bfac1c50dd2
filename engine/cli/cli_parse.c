/* cli_parse.c - `caduceus parse` and `caduceus get`. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_json.h"
#include "cli.h"
#include "hl7.h"
#include "cli_archive.h"
#include "hl7_stream.h"

/* ---- output helpers ------------------------------------------------------ */

/* Text for a terminal: control bytes shown as \xHH, the rest as is. */
static void put_text(FILE *out, cad_str_t s) {
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.p[i];
    if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
    else fputc(c, out);
  }
}

static void put_json_str(FILE *out, cad_str_t s) { cad_json_fput(out, s.p, s.len); }

/* ---- reading the input as messages --------------------------------------- */

typedef int (*msg_fn)(void *ud, uint64_t index, uint64_t offset, cad_str_t bytes);
typedef int (*env_fn)(void *ud, uint64_t offset, cad_str_t bytes);

/* Each message (and envelope) of a file, through the one reader of message
 * files (cli_archive.h: chunks, constant memory, gzip).  Returns 0, or 1
 * when some item was an error (reported on stderr). */
static int for_each_message(const char *path, size_t max_msg, msg_fn on_msg, env_fn on_env,
                            void *ud, int *io_error) {
  cad__archive_t ar;
  int rc = cad__archive_init(&ar, "parse");
  if (!rc) rc = cad__archive_add_file(&ar, path);
  ar.all_items = true;
  ar.max_message = max_msg;
  int status = 0;
  cad__archive_item_t it;
  while (!rc && (rc = cad__archive_next(&ar, &it)) == 1) {
    rc = 0;
    cad_str_t bytes = {it.p, it.len};
    if (it.kind == CAD_HL7_ITEM_MESSAGE) {
      if (on_msg(ud, it.index, it.off, bytes)) status = 1;
    } else if (it.kind == CAD_HL7_ITEM_ENVELOPE) {
      if (on_env && on_env(ud, it.off, bytes)) status = 1;
    } else {
      fprintf(stderr, "%s: offset %llu: %s (%zu bytes skipped)\n", path, (unsigned long long)it.off,
              cad_strerror(it.err), it.len);
      status = 1;
    }
  }
  if (rc < 0) {
    fprintf(stderr, "caduceus: %s\n", cad_strerror(rc));
    status = 1;
  }
  if (ar.read_errors) *io_error = status = 1;
  cad__archive_free(&ar);
  return status;
}

static void report_parse_error(const char *path, uint64_t index, uint64_t offset,
                               const cad_hl7_diag_t *dg) {
  fprintf(stderr, "%s: message %llu (offset %llu): %s", path, (unsigned long long)index,
          (unsigned long long)(offset + dg->offset),
          dg->reason[0] ? dg->reason : cad_strerror(dg->code));
  if (dg->segment)
    fprintf(stderr, " [segment %u%s%s", dg->segment, dg->seg_id[0] ? " " : "", dg->seg_id);
  if (dg->segment && dg->field) fprintf(stderr, ", field %u", dg->field);
  if (dg->segment) fputc(']', stderr);
  if (dg->hl7_code)
    fprintf(stderr, " (HL7 error %d: %s)", dg->hl7_code, cad_hl7_err_text(dg->hl7_code));
  fputc('\n', stderr);
}

/* ---- parse ------------------------------------------------------------- */

typedef struct {
  const char *path;
  bool json;
  bool first;
  cad_arena_t arena;
  cad_hl7_limits_t limits;
} parse_ctx_t;

static void seg_path(char *buf, size_t cap, const cad_hl7_seg_t *s, int occ) {
  if (occ > 1) snprintf(buf, cap, "%s[%d]", s->name, occ);
  else snprintf(buf, cap, "%s", s->name);
}

/* Text tree: one line per non-empty node, children indented. */
static void tree_leaf(parse_ctx_t *c, int depth, const char *path, const cad_hl7_delims_t *d,
                      cad_str_t raw, bool decode) {
  cad_str_t v = raw;
  if (decode) cad_hl7_decode(d, raw, &c->arena, &v);
  printf("%*s%-18s ", depth * 2, "", path);
  put_text(stdout, v);
  if (raw.len == 2 && raw.p[0] == '"' && raw.p[1] == '"') fputs("   (null)", stdout);
  putchar('\n');
}

static void text_field(parse_ctx_t *c, const cad_hl7_seg_t *s, const char *sp, int fno) {
  cad_str_t f;
  if (!cad_hl7_field(s, fno, &f) || f.len == 0) return;
  char path[96];
  snprintf(path, sizeof path, "%s-%d", sp, fno);
  const cad_hl7_delims_t *d = &s->d;
  if (s->header && fno <= 2) {
    tree_leaf(c, 1, path, d, f, false);
    return;
  }
  int nrep = cad_hl7_npieces(f, d->rep);
  bool structured =
      nrep > 1 || memchr(f.p, d->comp, f.len) || (d->sub && memchr(f.p, d->sub, f.len));
  if (!structured) {
    tree_leaf(c, 1, path, d, f, true);
    return;
  }
  printf("  %-18s ", path);
  put_text(stdout, f);
  putchar('\n');
  for (int r = 1; r <= nrep; r++) {
    cad_str_t rv;
    cad_hl7_piece(f, d->rep, r, &rv);
    if (rv.len == 0) continue;
    char rpath[112];
    if (nrep > 1) snprintf(rpath, sizeof rpath, "%s[%d]", path, r);
    else snprintf(rpath, sizeof rpath, "%s", path);
    int depth = 2;
    int ncomp = cad_hl7_npieces(rv, d->comp);
    if (nrep > 1) {
      bool leaf = ncomp == 1 && !(d->sub && memchr(rv.p, d->sub, rv.len));
      if (leaf) {
        tree_leaf(c, 2, rpath, d, rv, true);
        continue;
      }
      printf("    %-18s ", rpath);
      put_text(stdout, rv);
      putchar('\n');
      depth = 3;
    }
    for (int k = 1; k <= ncomp; k++) {
      cad_str_t cv;
      cad_hl7_piece(rv, d->comp, k, &cv);
      if (cv.len == 0) continue;
      char cpath[128];
      snprintf(cpath, sizeof cpath, "%s.%d", rpath, k);
      int nsub = cad_hl7_npieces(cv, d->sub);
      if (nsub == 1) {
        tree_leaf(c, depth, cpath, d, cv, true);
        continue;
      }
      printf("%*s%-18s ", depth * 2, "", cpath);
      put_text(stdout, cv);
      putchar('\n');
      for (int u = 1; u <= nsub; u++) {
        cad_str_t sv;
        cad_hl7_piece(cv, d->sub, u, &sv);
        if (sv.len == 0) continue;
        char spath[144];
        snprintf(spath, sizeof spath, "%s.%d", cpath, u);
        tree_leaf(c, depth + 1, spath, d, sv, true);
      }
    }
  }
}

/* JSON: the same tree, every node with its path; leaves have "value"
 * (decoded), inner nodes "raw" and "children". */
static void json_node(parse_ctx_t *c, const char *path, const cad_hl7_delims_t *d, cad_str_t raw,
                      int level, bool never_split);

static void json_children(parse_ctx_t *c, const char *path, const cad_hl7_delims_t *d,
                          cad_str_t raw, int level) {
  /* level 0: field -> repetitions; 1: repetition -> components; 2: component -> subs */
  char sep = level == 0 ? d->rep : level == 1 ? d->comp : d->sub;
  int n = cad_hl7_npieces(raw, sep);
  bool first = true;
  for (int k = 1; k <= n; k++) {
    cad_str_t v;
    cad_hl7_piece(raw, sep, k, &v);
    if (v.len == 0) continue;
    char p[160];
    if (level == 0) snprintf(p, sizeof p, "%s[%d]", path, k);
    else snprintf(p, sizeof p, "%s.%d", path, k);
    if (!first) putchar(',');
    first = false;
    json_node(c, p, d, v, level + 1, false);
  }
}

static bool has_structure(const cad_hl7_delims_t *d, cad_str_t raw, int level) {
  char seps[3] = {d->rep, d->comp, d->sub};
  for (int k = level; k < 3; k++)
    if (seps[k] && memchr(raw.p, seps[k], raw.len)) return true;
  return false;
}

static void json_node(parse_ctx_t *c, const char *path, const cad_hl7_delims_t *d, cad_str_t raw,
                      int level, bool never_split) {
  fputs("{\"path\":", stdout);
  put_json_str(stdout, (cad_str_t){path, strlen(path)});
  if (never_split || level >= 3 || !has_structure(d, raw, level)) {
    cad_str_t v = raw;
    if (!never_split) cad_hl7_decode(d, raw, &c->arena, &v);
    fputs(",\"value\":", stdout);
    put_json_str(stdout, v);
    if (raw.len == 2 && raw.p[0] == '"' && raw.p[1] == '"') fputs(",\"null\":true", stdout);
    putchar('}');
    return;
  }
  fputs(",\"raw\":", stdout);
  put_json_str(stdout, raw);
  fputs(",\"children\":[", stdout);
  json_children(c, path, d, raw, level);
  fputs("]}", stdout);
}

static int on_parse_msg(void *ud, uint64_t index, uint64_t offset, cad_str_t bytes) {
  parse_ctx_t *c = ud;
  cad_hl7_msg_t m;
  cad_hl7_diag_t dg;
  cad_arena_reset(&c->arena);
  int rc = cad_hl7_parse(&m, bytes.p, bytes.len, &c->arena, &c->limits, &dg);
  if (rc) {
    report_parse_error(c->path, index, offset, &dg);
    if (c->json) {
      if (!c->first) puts(",");
      c->first = false;
      printf(
          "{\"message\":%llu,\"offset\":%llu,\"error\":{\"code\":\"%s\",\"hl7_code\":%d,"
          "\"segment\":%u,\"field\":%u,\"offset\":%llu,\"reason\":",
          (unsigned long long)index, (unsigned long long)offset, cad_err_name(dg.code), dg.hl7_code,
          dg.segment, dg.field, (unsigned long long)(offset + dg.offset));
      put_json_str(stdout, (cad_str_t){dg.reason, strlen(dg.reason)});
      fputs("}}", stdout);
    }
    return 1;
  }
  if (c->json) {
    if (!c->first) puts(",");
    c->first = false;
    printf("{\"message\":%llu,\"offset\":%llu,\"segments\":[", (unsigned long long)index,
           (unsigned long long)offset);
  } else {
    printf("message %llu (offset %llu, %u segments)\n", (unsigned long long)index,
           (unsigned long long)offset, m.nsegs);
  }
  for (uint32_t i = 0; i < m.nsegs; i++) {
    const cad_hl7_seg_t *s = &m.segs[i];
    int occ = 0;
    for (uint32_t k = 0; k <= i; k++)
      if (m.segs[k].id == s->id) occ++;
    char sp[16];
    seg_path(sp, sizeof sp, s, occ);
    int nf = cad_hl7_nfields(s);
    if (c->json) {
      if (i) putchar(',');
      printf("{\"segment\":\"%s\",\"path\":\"%s\",\"fields\":[", s->name, sp);
      bool first = true;
      for (int fno = 1; fno <= nf; fno++) {
        cad_str_t f;
        if (!cad_hl7_field(s, fno, &f) || f.len == 0) continue;
        char fp[64];
        snprintf(fp, sizeof fp, "%s-%d", sp, fno);
        if (!first) putchar(',');
        first = false;
        json_node(c, fp, &s->d, f, 0, s->header && fno <= 2);
      }
      fputs("]}", stdout);
    } else {
      printf("%s\n", sp);
      for (int fno = 1; fno <= nf; fno++) text_field(c, s, sp, fno);
    }
  }
  if (c->json) fputs("]}", stdout);
  else putchar('\n');
  return 0;
}

int cad_cli_print_tree(const char *p, size_t len) {
  parse_ctx_t c = {.path = "archive"};
  cad_arena_init(&c.arena, 8192, 64 * (len + 1024));
  cad_hl7_msg_t m;
  cad_hl7_diag_t dg;
  int rc = cad_hl7_parse(&m, p, len, &c.arena, &c.limits, &dg);
  for (uint32_t i = 0; rc == 0 && i < m.nsegs; i++) {
    const cad_hl7_seg_t *s = &m.segs[i];
    int occ = 0;
    for (uint32_t k = 0; k <= i; k++)
      if (m.segs[k].id == s->id) occ++;
    char sp[16];
    seg_path(sp, sizeof sp, s, occ);
    printf("%s\n", sp);
    for (int fno = 1; fno <= cad_hl7_nfields(s); fno++) text_field(&c, s, sp, fno);
  }
  cad_arena_free(&c.arena);
  return rc;
}

static int on_parse_env(void *ud, uint64_t offset, cad_str_t bytes) {
  parse_ctx_t *c = ud;
  if (c->json) return 0;
  printf("envelope (offset %llu) ", (unsigned long long)offset);
  put_text(stdout, bytes);
  printf("\n\n");
  return 0;
}

static void parse_usage(FILE *out) {
  fprintf(out,
          "usage: caduceus parse [--json] [--max-size BYTES] FILE|-\n"
          "\n"
          "Shows every message in FILE (or standard input) as a tree: segments, then\n"
          "fields, repetitions, components and subcomponents, each with the path that\n"
          "addresses it (use those paths with 'caduceus get' and in routes).  Empty\n"
          "elements are not shown; leaf values are decoded (escapes resolved).\n"
          "\n"
          "FILE may hold many messages: ER7 text (CR, LF or CRLF terminators, blank\n"
          "lines and '#' comments between messages), FHS/BHS batches, or MLLP frames.\n"
          "\n"
          "  --json           one JSON array; each node has \"path\" and either \"value\"\n"
          "                   (decoded leaf) or \"raw\" and \"children\"\n"
          "  --max-size N     largest message accepted, in bytes (default 16777216)\n"
          "\n"
          "Exit status: 0 all messages parsed, 1 some message or the file could not be\n"
          "read (the others are still shown), 2 usage error.\n");
}

int cad_cli_parse(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                       {"max-size", required_argument, 0, 'm'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  parse_ctx_t c;
  memset(&c, 0, sizeof c);
  c.first = true;
  size_t max = 16u << 20;
  int o;
  optind = 1;
  while ((o = getopt_long(argc, argv, "jm:h", opts, NULL)) != -1) {
    switch (o) {
      case 'j': c.json = true; break;
      case 'm': max = strtoull(optarg, NULL, 10); break;
      case 'h': parse_usage(stdout); return 0;
      default: parse_usage(stderr); return 2;
    }
  }
  if (optind != argc - 1 || max == 0) {
    parse_usage(stderr);
    return 2;
  }
  c.path = argv[optind];
  c.limits.max_bytes = max;
  cad_arena_init(&c.arena, 64 * 1024, 0);
  if (c.json) putchar('[');
  int io = 0;
  int st = for_each_message(c.path, max, on_parse_msg, on_parse_env, &c, &io);
  if (c.json) puts("]");
  cad_arena_free(&c.arena);
  return st ? 1 : 0;
}

/* ---- get --------------------------------------------------------------- */

typedef struct {
  const char *file;
  cad_hl7_path_t path;
  bool number;
  bool raw;
  bool envelope;     /* the path is in a batch header or trailer (FHS BHS BTS FTS) */
  uint64_t messages; /* messages read so far */
  char delims[8];    /* "|^~\\&": separator + encoding characters in force */
  size_t ndelims;
  cad_arena_t arena;
  cad_hl7_limits_t limits;
} get_ctx_t;

static void print_matches(get_ctx_t *c, const cad_hl7_msg_t *m, uint64_t index);

/* A path into FHS, BHS, BTS or FTS: those segments come between messages
 * (stream ENVELOPE items), not in them. */
static bool is_envelope_seg(const char *id) {
  return strcmp(id, "FHS") == 0 || strcmp(id, "BHS") == 0 || strcmp(id, "BTS") == 0 ||
         strcmp(id, "FTS") == 0;
}

/* Remember the delimiters a header segment (MSH, BHS, FHS) declares: a
 * trailer (BTS, FTS) is read with the last ones. */
static void note_delims(get_ctx_t *c, cad_str_t seg) {
  if (seg.len < 5) return;
  size_t n = 4;
  while (n < seg.len && n < sizeof c->delims - 1 && seg.p[n] != seg.p[3] && seg.p[n] != '\r' &&
         seg.p[n] != '\n')
    n++;
  memcpy(c->delims, seg.p + 3, n - 3);
  c->ndelims = n - 3;
}

/* `get` on a batch header or trailer: one line per such segment; with -n
 * its number is the count of messages read before it. */
static int on_get_env(void *ud, uint64_t offset, cad_str_t bytes) {
  get_ctx_t *c = ud;
  bool header =
      bytes.len >= 4 && (memcmp(bytes.p, "BHS", 3) == 0 || memcmp(bytes.p, "FHS", 3) == 0);
  if (header) note_delims(c, bytes);
  if (bytes.len < 3 || memcmp(bytes.p, c->path.seg, 3) != 0) return 0;
  /* A trailer is parsed behind a header line that carries the delimiters. */
  cad_buf_t b = CAD_BUF_INIT;
  if (!header) {
    cad_buf_puts(&b, "BHS");
    cad_buf_append(&b, c->ndelims ? c->delims : "|^~\\&", c->ndelims ? c->ndelims : 5);
    cad_buf_putc(&b, '\r');
  }
  int rc = cad_buf_append(&b, bytes.p, bytes.len);
  cad_hl7_msg_t m;
  cad_hl7_diag_t dg;
  cad_arena_reset(&c->arena);
  if (rc == 0) rc = cad_hl7_parse(&m, b.data, b.len, &c->arena, &c->limits, &dg);
  if (rc) {
    report_parse_error(c->file, c->messages, offset, &dg);
    if (c->number) printf("%llu\t", (unsigned long long)c->messages);
    putchar('\n');
  } else {
    print_matches(c, &m, c->messages);
  }
  cad_buf_free(&b);
  return rc ? 1 : 0;
}

static int on_get_msg(void *ud, uint64_t index, uint64_t offset, cad_str_t bytes) {
  get_ctx_t *c = ud;
  c->messages = index;
  if (c->envelope) {
    note_delims(c, bytes);
    return 0;
  }
  cad_hl7_msg_t m;
  cad_hl7_diag_t dg;
  cad_arena_reset(&c->arena);
  int rc = cad_hl7_parse(&m, bytes.p, bytes.len, &c->arena, &c->limits, &dg);
  if (rc) {
    report_parse_error(c->file, index, offset, &dg);
    if (c->number) printf("%llu\t", (unsigned long long)index);
    putchar('\n'); /* keep the output aligned with the messages */
    return 1;
  }
  print_matches(c, &m, index);
  return 0;
}

/* Print every match of the path in m (an empty line when none). */
static void print_matches(get_ctx_t *c, const cad_hl7_msg_t *m, uint64_t index) {
  cad_hl7_iter_t it;
  cad_hl7_match_t mt;
  cad_hl7_iter_init(&it, m, &c->path);
  int n = 0;
  while (cad_hl7_iter_next(&it, &mt)) {
    cad_str_t v;
    if (c->raw) v = mt.raw;
    else if (!cad_hl7_value(&c->path, &mt, &c->arena, &v)) v = mt.raw;
    if (c->number) printf("%llu\t", (unsigned long long)index);
    put_text(stdout, v);
    putchar('\n');
    n++;
  }
  if (n == 0) {
    if (c->number) printf("%llu\t", (unsigned long long)index);
    putchar('\n');
  }
}

static void get_usage(FILE *out) {
  fprintf(
      out,
      "usage: caduceus get [-n] [--raw] PATH FILE|-\n"
      "\n"
      "Prints the value at PATH for every message in FILE (or standard input), one\n"
      "value per line; a message without the element prints an empty line, so the\n"
      "output lines up with the messages.  Wildcards ([*]) print one line per match.\n"
      "\n"
      "PATH: SEG[occurrence]-field[repetition].component.subcomponent, 1-based;\n"
      "  PID-5.1  PID-3[2].1  OBX[*]-5  PID-3[*].4  MSH-9.2  PID-5.1.2\n"
      "MSH-1 is the field separator and MSH-2 the encoding characters.\n"
      "Batch headers and trailers (FHS, BHS, BTS, FTS) sit between messages: a\n"
      "path into one prints one line per such segment (BHS-1/BHS-2 and FHS-1/FHS-2\n"
      "are the delimiters, as for MSH); with -n, its number is the count of\n"
      "messages before it.\n"
      "\n"
      "A leaf is decoded (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ resolved; formatting escapes such\n"
      "as \\.br\\ kept); an element that still has components or repetitions is\n"
      "printed as its raw encoded text.  Control characters print as \\xHH.\n"
      "\n"
      "  -n, --number   prefix each line with the message number and a TAB\n"
      "  --raw          print raw encoded text, never decoded\n"
      "\n"
      "Exit status: 0 success, 1 some message could not be parsed or the file could\n"
      "not be read, 2 usage error or invalid path.\n");
}

int cad_cli_get(int argc, char **argv) {
  static const struct option opts[] = {{"number", no_argument, 0, 'n'},
                                       {"raw", no_argument, 0, 'r'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  get_ctx_t c;
  memset(&c, 0, sizeof c);
  int o;
  optind = 1;
  while ((o = getopt_long(argc, argv, "nrh", opts, NULL)) != -1) {
    switch (o) {
      case 'n': c.number = true; break;
      case 'r': c.raw = true; break;
      case 'h': get_usage(stdout); return 0;
      default: get_usage(stderr); return 2;
    }
  }
  if (optind != argc - 2) {
    get_usage(stderr);
    return 2;
  }
  const char *ps = argv[optind];
  size_t errpos = 0;
  const char *errmsg = NULL;
  if (cad_hl7_path_parse(ps, strlen(ps), &c.path, &errpos, &errmsg) != 0) {
    fprintf(stderr, "caduceus get: invalid path '%s' at position %zu: %s\n", ps, errpos + 1,
            errmsg);
    fprintf(stderr, "  %s\n  %*s^\n", ps, (int)errpos, "");
    return 2;
  }
  c.file = argv[optind + 1];
  cad_arena_init(&c.arena, 64 * 1024, 0);
  int io = 0;
  c.envelope = is_envelope_seg(c.path.seg);
  int st = for_each_message(c.file, 16u << 20, on_get_msg, c.envelope ? on_get_env : NULL, &c, &io);
  cad_arena_free(&c.arena);
  return st ? 1 : 0;
}
