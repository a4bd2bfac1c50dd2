/* archive_retain.c - retention per channel (archive.h).  A day file holds
 * every channel's messages of that UTC day, so it is deleted whole once the
 * longest retention (the engine's or a channel's) has passed it
 * (cad_archive_prune); before that, the messages of the channels whose own
 * retention has passed it are deleted row by row: their msg rows, patient
 * ids, fields, delivery records and attempts, and their words in the
 * full-text index (FTS5 'delete' with the original text, so no token of a
 * deleted message stays).  The space comes back at once in files created
 * with auto_vacuum=incremental (every file since this version): an
 * incremental vacuum then truncates the freed pages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive_int.h"
#include "cad_error.h"

#define DAY_MS 86400000LL

/* The first day a retention keeps, as of `today`. */
static int64_t keep_from(int64_t today, uint64_t retain_ms) {
  return today - (int64_t)((retain_ms + DAY_MS - 1) / DAY_MS);
}

/* Remove message `id`'s words from fts (its body decompressed). */
static int fts_forget(sqlite3 *db, sqlite3_stmt *del, int64_t id) {
  char *raw;
  size_t len;
  if (cad__arch_body(db, (uint64_t)id, &raw, &len) < 0) return 0; /* nothing to give back */
  int rc = 0;
  sqlite3_bind_int64(del, 1, id);
  sqlite3_bind_text(del, 2, raw, (int)len, SQLITE_STATIC);
  if (sqlite3_step(del) != SQLITE_DONE) rc = CAD_E_IO;
  sqlite3_reset(del);
  free(raw);
  return rc;
}

/* Delete the messages of `day`'s file (open read-write) that `drop` (a
 * WHERE over msg m) selects; *rows += how many.  One transaction. */
static int drop_rows(sqlite3 *db, const char *drop, uint64_t *rows) {
  int rc = 0;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return CAD_E_IO;
  char *sql = sqlite3_mprintf(
      "CREATE TEMP TABLE IF NOT EXISTS gone(id INTEGER PRIMARY KEY); DELETE FROM gone;"
      " INSERT INTO gone SELECT id FROM msg m WHERE %s;",
      drop);
  if (!sql || sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) rc = CAD_E_IO;
  sqlite3_free(sql);
  if (rc == 0 && cad__arch_has(db, "fts_rows")) {
    sqlite3_stmt *ids = NULL, *del = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id FROM fts_rows WHERE id IN (SELECT id FROM gone)", -1,
                           &ids, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO fts(fts, rowid, body) VALUES('delete', ?, ?)", -1, &del,
                           NULL) != SQLITE_OK)
      rc = CAD_E_IO;
    while (rc == 0 && sqlite3_step(ids) == SQLITE_ROW)
      rc = fts_forget(db, del, sqlite3_column_int64(ids, 0));
    sqlite3_finalize(ids);
    sqlite3_finalize(del);
    if (rc == 0 && sqlite3_exec(db, "DELETE FROM fts_rows WHERE id IN (SELECT id FROM gone)", NULL,
                                NULL, NULL) != SQLITE_OK)
      rc = CAD_E_IO;
  }
  static const char DEL[] =
      "DELETE FROM att WHERE (qid, seq) IN (SELECT qid, seq FROM dlv WHERE msg IN"
      " (SELECT id FROM gone));"
      "DELETE FROM dlv WHERE msg IN (SELECT id FROM gone);"
      "DELETE FROM pid WHERE msg IN (SELECT id FROM gone);"
      "DELETE FROM fld WHERE msg IN (SELECT id FROM gone);"
      "DELETE FROM blk WHERE id IN (SELECT blk FROM msg WHERE id IN (SELECT id FROM gone));"
      "DELETE FROM msg WHERE id IN (SELECT id FROM gone);";
  if (rc == 0 && sqlite3_exec(db, DEL, NULL, NULL, NULL) != SQLITE_OK) rc = CAD_E_IO;
  if (rc == 0) *rows += (uint64_t)sqlite3_changes(db);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = CAD_E_IO;
  if (rc < 0) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  else sqlite3_exec(db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
  return rc;
}

/* The WHERE selecting, in a file of `day`, the messages no retention keeps:
 * channels with their own retention are kept by it, the others (and
 * rebuilt records, which have no channel) by the engine's.  NULL = none
 * (or no memory: then nothing is deleted, never too much).  sqlite3_free. */
static char *drop_clause(int64_t day, int64_t today, uint64_t retain_ms,
                         const cad_archive_chan_t *ch, size_t n, bool hdr_only) {
  bool dflt_keeps = day >= keep_from(today, retain_ms);
  /* Channels with their own retention that passed this day: dropped (when
   * the engine's keeps the day); those that keep it: kept (when it does
   * not).  Names quoted by SQLite (%Q). */
  sqlite3_str *list = sqlite3_str_new(NULL);
  int k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ch[i].retain_ms) continue;
    bool keeps = day >= keep_from(today, ch[i].retain_ms);
    if (keeps == dflt_keeps) continue;
    sqlite3_str_appendf(list, "%s%Q", k++ ? "," : "", ch[i].name);
  }
  char *names = sqlite3_str_finish(list);
  char *out = NULL;
  if (k && !names) out = NULL; /* out of memory */
  /* A file indexed through hdr finds a channel's rows on msg_hdr (its
   * hdr rows hold '' for no channel); an older one on msg_channel. */
  else if (dflt_keeps && k && hdr_only)
    out = sqlite3_mprintf("m.hdr IN (SELECT id FROM hdr WHERE channel IN (%s))", names);
  else if (dflt_keeps && k) out = sqlite3_mprintf("m.channel IN (%s)", names);
  else if (!dflt_keeps && k && hdr_only)
    out = sqlite3_mprintf("m.hdr IN (SELECT id FROM hdr WHERE channel NOT IN (%s))", names);
  else if (!dflt_keeps && k)
    out = sqlite3_mprintf("m.channel IS NULL OR m.channel NOT IN (%s)", names);
  else if (!dflt_keeps) out = sqlite3_mprintf("1");
  sqlite3_free(names);
  return out;
}

int cad_archive_prune_channels(const char *dir, int64_t now_ms, uint64_t retain_ms,
                               const cad_archive_chan_t *ch, size_t n, uint64_t *rows) {
  *rows = 0;
  if (!retain_ms) retain_ms = 7 * (uint64_t)DAY_MS;
  bool any = false;
  for (size_t i = 0; i < n; i++) any |= ch[i].retain_ms && ch[i].retain_ms != retain_ms;
  if (!any) return 0;
  char **names;
  size_t nn;
  int rc = cad__arch_list(dir, &names, &nn);
  if (rc < 0) return rc;
  int64_t today = now_ms / DAY_MS;
  for (size_t i = 0; i < nn && rc == 0; i++) {
    int64_t day = cad_archive_day_of(names[i]);
    if (day >= today) break;
    cad__arch_db_t *db;
    if (cad__arch_db_open(dir, day, false, false, &db) < 0) continue;
    char *where = drop_clause(day, today, retain_ms, ch, n, db->hdr_only);
    if (where) rc = drop_rows(db->db, where, rows);
    sqlite3_free(where);
    cad__arch_db_close(db);
  }
  cad__arch_list_free(names, nn);
  return rc;
}

uint64_t cad_archive_longest_retain(uint64_t retain_ms, const cad_archive_chan_t *ch, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ch[i].retain_ms > retain_ms) retain_ms = ch[i].retain_ms;
  return retain_ms;
}
