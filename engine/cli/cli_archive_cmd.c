/* cli_archive_cmd.c - `caduceus archive stats|prune|check|reindex`, and the
 * argument every archive command takes: a configuration or a data dir. */
#include <dirent.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <pwd.h>
#include <unistd.h>

#include "archive.h"
#include "cad_error.h"
#include "cad_io.h"
#include "cli.h"
#include "config.h"

#define DAY_MS 86400000LL

int cad_cli_archive_dir(const char *cmd, const char *arg, char *dir, size_t cap,
                        uint64_t limits[2]) {
  struct stat st;
  if (stat(arg, &st) != 0) {
    fprintf(stderr, "caduceus %s: %s: no such configuration or data directory\n", cmd, arg);
    return 1;
  }
  if (S_ISDIR(st.st_mode)) {
    snprintf(dir, cap, "%s", arg);
    return 0;
  }
  cad_config_t *cfg = NULL;
  char *errors = NULL;
  int rc = cad_config_load(arg, &cfg, &errors);
  if (rc < 0) {
    fprintf(stderr, "caduceus %s: %s: %s\n", cmd, arg,
            errors && *errors ? errors : cad_strerror(rc));
    free(errors);
    return 1;
  }
  free(errors);
  snprintf(dir, cap, "%s", cfg->data_dir);
  if (limits) {
    limits[0] = cfg->archive_retain_ms;
    limits[1] = cfg->archive_max_bytes;
  }
  cad_config_free(cfg);
  return 0;
}

void cad_cli_archive_note(const char *jdir, const char *kind, const char *dest, uint16_t qid,
                          uint64_t seq, uint64_t new_seq, uint64_t count) {
  char data_dir[4096], who[160];
  snprintf(data_dir, sizeof data_dir, "%s", jdir);
  char *slash = strrchr(data_dir, '/');
  if (slash) *slash = 0;
  struct passwd *pw = getpwuid(getuid());
  snprintf(who, sizeof who, "%s (uid %u, caduceus queue)", pw ? pw->pw_name : "?",
           (unsigned)getuid());
  cad_archive_note_t n = {kind, who, dest, qid, seq, new_seq, count, NULL};
  uint64_t touched = 0;
  int rc = cad_archive_note(data_dir, &n, &touched);
  if (rc < 0)
    fprintf(stderr, "caduceus queue: not recorded in the archive (%s/archive): %s\n", data_dir,
            cad_strerror(rc));
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus archive COMMAND CONFIG|DATA_DIR [options]\n"
          "\n"
          "The message archive under DATA_DIR/archive: one SQLite file per day (UTC).\n"
          "\n"
          "  stats    per day file: messages by status, delivery records, bytes on disk\n"
          "  prune    delete the day files that retention expires [--retain 7d]\n"
          "           [--max-bytes N] (defaults: the configuration's, else 7d); given a\n"
          "           configuration, also the messages of channels whose own\n"
          "           archive.retain has passed\n"
          "  check    every file's integrity, and the journal's queue records against the\n"
          "           archive: how many the archive lacks [--since 2h] (default: retention)\n"
          "  reindex  rebuild the records the archive lacks from the journal (as at start\n"
          "           after a crash) [--since 2h]\n"
          "  events   the queue changes operators made (requeue, purge): when, who, what\n"
          "           [--since 2h]\n"
          "\n"
          "All are safe while the engine runs.  Exit status: 0 (check: consistent), 1\n"
          "failure or inconsistent, 2 usage error.\n");
}

static uint64_t bytes_of(const char *path) {
  static const char *const sfx[] = {"", "-wal", "-shm"};
  uint64_t sum = 0;
  for (int i = 0; i < 3; i++) {
    char p[4300];
    struct stat st;
    snprintf(p, sizeof p, "%s%s", path, sfx[i]);
    if (stat(p, &st) == 0) sum += (uint64_t)st.st_size;
  }
  return sum;
}

/* One query's rows printed as "key=count" pairs. */
static void print_counts(sqlite3 *db, const char *sql) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) return;
  while (sqlite3_step(s) == SQLITE_ROW)
    printf(" %s=%lld", (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1));
  sqlite3_finalize(s);
}

static int day_files(const char *dir, int (*fn)(const char *path, const char *name, void *),
                     void *ud) {
  int rc = 0;
  /* Days in order: YYYY-MM-DD.db sorts by name. */
  struct dirent **ents = NULL;
  int n = scandir(dir, &ents, NULL, alphasort);
  if (n < 0) {
    fprintf(stderr, "caduceus archive: %s: no archive\n", dir);
    return 1;
  }
  for (int i = 0; i < n; i++) {
    if (rc == 0 && cad_archive_day_of(ents[i]->d_name) >= 0) {
      char p[4300];
      snprintf(p, sizeof p, "%s/%s", dir, ents[i]->d_name);
      rc = fn(p, ents[i]->d_name, ud);
    }
    free(ents[i]);
  }
  free(ents);
  return rc;
}

/* ---- stats ------------------------------------------------------------------ */

typedef struct {
  uint64_t files, bytes, msgs;
} totals_t;

static int stats_one(const char *path, const char *name, void *ud) {
  totals_t *t = ud;
  sqlite3 *db;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "caduceus archive: %s: %s\n", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return 1;
  }
  sqlite3_busy_timeout(db, 5000);
  uint64_t bytes = bytes_of(path), msgs = 0;
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM msg", -1, &s, NULL) == SQLITE_OK) {
    if (sqlite3_step(s) == SQLITE_ROW) msgs = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
  }
  printf("%.10s  %9llu messages  %12llu bytes  %6llu bytes/message\n  status:", name,
         (unsigned long long)msgs, (unsigned long long)bytes,
         (unsigned long long)(msgs ? bytes / msgs : 0));
  print_counts(db, "SELECT status, count(*) FROM msg GROUP BY status ORDER BY status");
  printf("\n  deliveries:");
  print_counts(db,
               "SELECT coalesce(dest, '#' || qid) || ':' || state, count(*) FROM dlv"
               " GROUP BY 1 ORDER BY 1");
  printf("\n");
  sqlite3_close(db);
  t->files++;
  t->bytes += bytes;
  t->msgs += msgs;
  return 0;
}

static int cmd_stats(const char *dir) {
  totals_t t = {0};
  int rc = day_files(dir, stats_one, &t);
  if (rc == 0)
    printf("total: %llu day file(s), %llu messages, %llu bytes\n", (unsigned long long)t.files,
           (unsigned long long)t.msgs, (unsigned long long)t.bytes);
  return rc;
}

/* ---- check ------------------------------------------------------------------ */

static int check_one(const char *path, const char *name, void *ud) {
  int *bad = ud;
  sqlite3 *db;
  int ok = 0;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL) == SQLITE_OK) {
      ok = sqlite3_step(s) == SQLITE_ROW &&
           strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0;
      sqlite3_finalize(s);
    }
  }
  printf("%s: %s\n", name, ok ? "ok" : "DAMAGED (quick_check failed)");
  if (!ok) (*bad)++;
  sqlite3_close(db);
  return 0;
}

static int cmd_check(const char *data_dir, const char *dir, int64_t since, bool fix) {
  int bad = 0;
  if (!fix && day_files(dir, check_one, &bad)) return 1;
  uint64_t checked, missing, rebuilt;
  int rc = cad_archive_reindex(data_dir, since, 0, fix, &checked, &missing, &rebuilt);
  if (rc < 0) {
    fprintf(stderr, "caduceus archive: %s/journal: %s\n", data_dir, cad_strerror(rc));
    return 1;
  }
  printf("journal: %llu queue record(s) checked, %llu missing from the archive",
         (unsigned long long)checked, (unsigned long long)missing);
  if (fix) printf(", %llu rebuilt", (unsigned long long)rebuilt);
  printf("\n");
  if (fix) return rebuilt == missing ? 0 : 1;
  return bad || missing ? 1 : 0;
}

/* prune: whole day files past the longest retention, then (given a
 * configuration, without --retain) the messages of channels whose own
 * `archive.retain` has passed. */
static int cmd_prune(const char *arg, const char *dir, int64_t now, const uint64_t limits[2],
                     const char *retain_opt) {
  cad_archive_chan_t ch[256];
  size_t nch = 0;
  cad_config_t *cfg = NULL;
  struct stat st;
  if (!retain_opt && stat(arg, &st) == 0 && !S_ISDIR(st.st_mode)) {
    char *errors = NULL;
    if (cad_config_load(arg, &cfg, &errors) == 0) {
      for (size_t i = 0; i < cfg->nchannels && nch < 256; i++)
        if (cfg->channels[i].archive.retain_ms)
          ch[nch++] = (cad_archive_chan_t){cfg->channels[i].name, NULL, 0, false,
                                           cfg->channels[i].archive.retain_ms};
    }
    free(errors);
  }
  uint64_t freed = 0, rows = 0;
  int n = cad_archive_prune(dir, now, cad_archive_longest_retain(limits[0], ch, nch), limits[1],
                            &freed);
  int rc = n < 0 ? n : nch ? cad_archive_prune_channels(dir, now, limits[0], ch, nch, &rows) : 0;
  cad_config_free(cfg);
  if (rc < 0) {
    fprintf(stderr, "caduceus archive: %s: %s\n", dir, cad_strerror(rc));
    return 1;
  }
  printf("deleted %d day file(s), %llu bytes", n, (unsigned long long)freed);
  if (nch) printf("; %llu message(s) past their channel's retention", (unsigned long long)rows);
  printf("\n");
  return 0;
}

static void print_event(void *ud, const cad_archive_event_t *e) {
  (void)ud;
  char t[40];
  time_t sec = (time_t)(e->t_ms / 1000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("%s  %-10s %-16s by %s", t, e->kind, e->dest, e->who);
  if (!strcmp(e->kind, "requeue"))
    printf(": queue record %llu as %llu", (unsigned long long)e->seq,
           (unsigned long long)e->new_seq);
  else printf(": %llu message(s)", (unsigned long long)e->count);
  printf("%s%s\n", e->detail[0] ? " - " : "", e->detail);
}

int cad_cli_archive(int argc, char **argv) {
  static const struct option opts[] = {{"retain", required_argument, 0, 'r'},
                                       {"max-bytes", required_argument, 0, 'm'},
                                       {"since", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *retain = NULL, *since = NULL;
  uint64_t max_bytes = 0;
  bool have_max = false;
  int o;
  optind = 1;
  while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (o) {
      case 'r': retain = optarg; break;
      case 'm':
        max_bytes = strtoull(optarg, NULL, 10);
        have_max = true;
        break;
      case 's': since = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (argc - optind != 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[optind];
  int64_t now = (int64_t)cad_now_ms();
  uint64_t limits[2] = {7 * DAY_MS, 0};
  char data_dir[4096], dir[4200];
  if (cad_cli_archive_dir("archive", argv[optind + 1], data_dir, sizeof data_dir, limits)) return 1;
  snprintf(dir, sizeof dir, "%s/archive", data_dir);
  if (retain) {
    int64_t t = cad_archive_parse_time(retain, now);
    if (t < 0 || t > now) {
      fprintf(stderr, "caduceus archive: --retain '%s': expected a duration like 7d\n", retain);
      return 2;
    }
    limits[0] = (uint64_t)(now - t);
  }
  if (have_max) limits[1] = max_bytes;
  int64_t from = now - (int64_t)limits[0];
  if (since && (from = cad_archive_parse_time(since, now)) < 0) {
    fprintf(stderr, "caduceus archive: --since '%s': expected 2h, 7d or a date\n", since);
    return 2;
  }
  if (strcmp(cmd, "stats") == 0) return cmd_stats(dir);
  if (strcmp(cmd, "events") == 0) {
    int n = cad_archive_events(dir, since ? from : 0, print_event, NULL);
    if (n < 0) {
      fprintf(stderr, "caduceus archive: %s: %s\n", dir, cad_strerror(n));
      return 1;
    }
    if (n == 0) fprintf(stderr, "no event recorded\n");
    return 0;
  }
  if (strcmp(cmd, "check") == 0) return cmd_check(data_dir, dir, from, false);
  if (strcmp(cmd, "reindex") == 0) return cmd_check(data_dir, dir, from, true);
  if (strcmp(cmd, "prune") == 0) return cmd_prune(argv[optind + 1], dir, now, limits, retain);
  fprintf(stderr, "caduceus archive: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
