/* cli_search.c - `caduceus search` and `caduceus show`: the message archive
 * (engine/store/archive.h) from the command line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "archive.h"
#include "cad_error.h"
#include "cad_io.h"
#include "cad_json.h"
#include "cli.h"

static void fmt_time(int64_t ms, char out[32]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- search ----------------------------------------------------------------- */

static void search_usage(FILE *out) {
  fprintf(out,
          "usage: caduceus search CONFIG|DATA_DIR [filters] [--limit N] [--json] [--count]\n"
          "\n"
          "Finds messages in the archive (DATA_DIR/archive), newest first.\n"
          "\n"
          "  --patient ID[^AUTH]  a PID-3 identifier (any repetition), optionally with its\n"
          "                       assigning authority\n"
          "  --control-id ID      MSH-10\n"
          "  --type T[^TRIGGER]   MSH-9: ORU, or ORU^R01\n"
          "  --channel NAME       the inbound channel\n"
          "  --dest NAME          a destination the message was queued for\n"
          "  --status S           accepted, filtered, rejected (also unparseable and\n"
          "                       too_big), unparseable, too_big, error, dead (dead-lettered\n"
          "                       by a route or a destination), queued, retrying, delivered,\n"
          "                       failed, purged, requeued; refused before a message:\n"
          "                       denied, tls_failed, bad_frame, frame_timeout, garbage\n"
          "  --sender FAC         MSH-4;  --receiver FAC  MSH-6\n"
          "  --since T, --until T received at or after / before T: 2h, 30m, 7d (ago) or\n"
          "                       2026-12-05[T14:00[:00]] (UTC)\n"
          "  --field NAME=VALUE   a field the channel declares (archive: {index: [OBR-4.1]}):\n"
          "                       by its path (OBR-4.1=GLU) or its name; repeatable (all)\n"
          "  --text WORDS         full text (channels with archive fts on): every word, as\n"
          "                       written (no query syntax), case-insensitive\n"
          "  --limit N            at most N rows (default 50)\n"
          "  --json               one JSON object per line instead of the table\n"
          "  --count              only the number of matching messages (no limit)\n"
          "\n"
          "'caduceus show ID' prints one message and its journey.\n"
          "Exit status: 0 (also when nothing matched), 1 failure, 2 usage error.\n");
}

typedef struct {
  bool json;
  int rows;
} out_ctx_t;

static void json_field(const char *k, const char *v, bool comma) {
  printf("%s\"%s\":", comma ? "," : "", k);
  cad_json_fput(stdout, v, strlen(v));
}

static int print_row(void *ud, const cad_archive_row_t *r) {
  out_ctx_t *c = ud;
  char t[32];
  fmt_time(r->t_ms, t);
  if (c->json) {
    printf("{\"id\":\"%llu\"", (unsigned long long)r->id);
    json_field("time", t, true);
    json_field("channel", r->channel, true);
    json_field("peer", r->peer, true);
    json_field("status", r->status, true);
    json_field("reason", r->reason, true);
    json_field("ack", r->ack, true);
    json_field("type", r->type, true);
    json_field("control_id", r->control_id, true);
    json_field("sender", r->sender, true);
    json_field("receiver", r->receiver, true);
    printf(",\"size\":%llu", (unsigned long long)r->size);
    json_field("destinations", r->dests, true);
    printf("}\n");
  } else {
    if (c->rows == 0)
      printf("%-19s %-20s %-12s %-11s %-4s %-10s %-20s %s\n", "ID", "RECEIVED", "CHANNEL", "STATUS",
             "ACK", "TYPE", "CONTROL ID", "DESTINATIONS");
    printf("%-19llu %-20s %-12s %-11s %-4s %-10s %-20.*s %s\n", (unsigned long long)r->id, t,
           r->channel, r->status, r->ack, r->type, 20, r->control_id, r->dests);
  }
  c->rows++;
  return 0;
}

static bool known_status(const char *s) {
  static const char *const all[] = {
      "accepted",   "filtered",  "rejected",      "unparseable", "too_big", "error",
      "dead",       "queued",    "retrying",      "delivered",   "failed",  "denied",
      "tls_failed", "bad_frame", "frame_timeout", "garbage",     "purged",  "requeued"};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (strcmp(s, all[i]) == 0) return true;
  return false;
}

static int time_arg(const char *what, const char *v, int64_t *out) {
  *out = cad_archive_parse_time(v, (int64_t)cad_now_ms());
  if (*out < 0) {
    fprintf(stderr, "caduceus search: %s '%s': expected 2h, 30m, 7d or 2026-12-05T14:00\n", what,
            v);
    return 2;
  }
  return 0;
}

int cad_cli_search(int argc, char **argv) {
  static const struct option opts[] = {{"patient", required_argument, 0, 'p'},
                                       {"control-id", required_argument, 0, 'c'},
                                       {"type", required_argument, 0, 't'},
                                       {"channel", required_argument, 0, 'C'},
                                       {"dest", required_argument, 0, 'd'},
                                       {"status", required_argument, 0, 's'},
                                       {"since", required_argument, 0, 'S'},
                                       {"until", required_argument, 0, 'U'},
                                       {"limit", required_argument, 0, 'l'},
                                       {"json", no_argument, 0, 'j'},
                                       {"sender", required_argument, 0, 'f'},
                                       {"receiver", required_argument, 0, 'r'},
                                       {"field", required_argument, 0, 'F'},
                                       {"text", required_argument, 0, 'x'},
                                       {"count", no_argument, 0, 'n'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  cad_archive_query_t q = {0};
  bool count = false;
  out_ctx_t c = {0};
  int o;
  char *end;
  optind = 1;
  while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (o) {
      case 'p': q.patient = optarg; break;
      case 'c': q.control_id = optarg; break;
      case 't': q.type = optarg; break;
      case 'C': q.channel = optarg; break;
      case 'd': q.dest = optarg; break;
      case 's': q.status = optarg; break;
      case 'f': q.sender = optarg; break;
      case 'r': q.receiver = optarg; break;
      case 'S':
        if (time_arg("--since", optarg, &q.since_ms)) return 2;
        break;
      case 'U':
        if (time_arg("--until", optarg, &q.until_ms)) return 2;
        break;
      case 'l':
        q.limit = strtoull(optarg, &end, 10);
        if (!*optarg || *end || q.limit == 0) {
          fprintf(stderr, "caduceus search: --limit '%s': expected a positive number\n", optarg);
          return 2;
        }
        break;
      case 'j': c.json = true; break;
      case 'n': count = true; break;
      case 'x': q.text = optarg; break;
      case 'F':
        if (q.nfields == CAD_ARCHIVE_MAX_QFIELDS || !strchr(optarg, '=') || optarg[0] == '=') {
          fprintf(stderr, "caduceus search: --field '%s': expected NAME=VALUE (at most %d)\n",
                  optarg, CAD_ARCHIVE_MAX_QFIELDS);
          return 2;
        }
        q.fields[q.nfields++] = optarg;
        break;
      case 'h': search_usage(stdout); return 0;
      default: search_usage(stderr); return 2;
    }
  }
  if (argc - optind != 1) {
    search_usage(stderr);
    return 2;
  }
  if (q.status && !known_status(q.status)) {
    fprintf(stderr,
            "caduceus search: --status '%s': expected accepted, filtered, rejected, unparseable, "
            "too_big, error, dead, queued, retrying, delivered, failed, purged, requeued, "
            "denied, tls_failed, bad_frame, frame_timeout or garbage\n",
            q.status);
    return 2;
  }
  char data_dir[4096], dir[4200], err[512] = "";
  if (cad_cli_archive_dir("search", argv[optind], data_dir, sizeof data_dir, NULL)) return 1;
  snprintf(dir, sizeof dir, "%s/archive", data_dir);
  if (count) {
    uint64_t n = 0;
    int rc = cad_archive_count(dir, &q, &n, err, sizeof err);
    if (rc < 0) {
      fprintf(stderr, "caduceus search: %s\n", err[0] ? err : cad_strerror(rc));
      return rc == CAD_E_INVAL ? 2 : 1;
    }
    if (c.json) printf("{\"count\":%llu}\n", (unsigned long long)n);
    else printf("%llu\n", (unsigned long long)n);
    return 0;
  }
  int rc = cad_archive_search(dir, &q, print_row, &c, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "caduceus search: %s\n", err[0] ? err : cad_strerror(rc));
    return rc == CAD_E_INVAL ? 2 : 1;
  }
  if (!c.json && c.rows == 0) fprintf(stderr, "no message matched\n");
  return 0;
}

/* ---- show ------------------------------------------------------------------- */

static void show_usage(FILE *out) {
  fprintf(out,
          "usage: caduceus show CONFIG|DATA_DIR ID [--raw]\n"
          "\n"
          "Prints one archived message (its id is the first column of 'caduceus search' and\n"
          "the id= of its log line): where it came from, its status and the ACK we sent, the\n"
          "message as a tree with paths (as 'caduceus parse'), and its journey: every\n"
          "destination with each delivery attempt and the receiver's answer.\n"
          "\n"
          "  --raw   the message bytes only (segments ended by CR), nothing else\n"
          "\n"
          "Exit status: 0, 1 not found or failure, 2 usage error.\n");
}

static void body_tree(void *ud, const char *p, size_t len) {
  (void)ud;
  if (cad_cli_print_tree(p, len) != 0) {
    /* Not a message (unparseable, too big): the bytes as text. */
    for (size_t i = 0; i < len; i++) putchar(p[i] == '\r' ? '\n' : p[i]);
    putchar('\n');
  }
}

static void body_raw(void *ud, const char *p, size_t len) {
  (void)ud;
  fwrite(p, 1, len, stdout);
}

int cad_cli_show(int argc, char **argv) {
  static const struct option opts[] = {
      {"raw", no_argument, 0, 'r'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  bool raw = false;
  int o;
  optind = 1;
  while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (o) {
      case 'r': raw = true; break;
      case 'h': show_usage(stdout); return 0;
      default: show_usage(stderr); return 2;
    }
  }
  char *end;
  unsigned long long id = 0;
  if (argc - optind != 2 || (id = strtoull(argv[optind + 1], &end, 10)) == 0 || *end) {
    show_usage(stderr);
    return 2;
  }
  char data_dir[4096], dir[4200], err[512] = "";
  if (cad_cli_archive_dir("show", argv[optind], data_dir, sizeof data_dir, NULL)) return 1;
  snprintf(dir, sizeof dir, "%s/archive", data_dir);
  int rc = cad_archive_show(dir, id, raw, raw ? body_raw : body_tree, NULL, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "caduceus show: %s\n", err[0] ? err : cad_strerror(rc));
    return 1;
  }
  return 0;
}
