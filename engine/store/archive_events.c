/* archive_events.c - what happens to a message outside the pipeline, in
 * the archive (archive.h): connections and frames the listener refuses
 * before the pipeline sees a message, and operators' purges and requeues
 * (table evt, with who and when; the delivery rows they touch take the
 * state `purged` or `requeued`). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "archive_int.h"
#include "cad_error.h"
#include "cad_io.h"

#define DAY_MS 86400000LL

int cad_archive_refused(cad_archive_t *a, uint64_t *last_id, const char *channel, const char *peer,
                        uint64_t conn, const char *status, const char *reason) {
  if (!a) return 0;
  cad_archive_in_t in = {cad_archive_next_id(last_id),
                         channel,
                         peer,
                         conn,
                         status,
                         reason,
                         NULL,
                         "",
                         0,
                         0,
                         NULL,
                         NULL,
                         0,
                         0};
  return cad_archive_inbound(a, &in);
}

static int exec_bind(sqlite3 *db, const char *sql, const cad_archive_note_t *n, int64_t now,
                     int *changed) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) return CAD_E_IO;
  /* Named parameters: whichever the statement uses. */
  struct {
    const char *name;
    bool text;
    const char *s;
    int64_t num;
  } p[] = {{":t", false, NULL, now},
           {":kind", true, n->kind, 0},
           {":who", true, n->who, 0},
           {":dest", true, n->dest, 0},
           {":qid", false, NULL, n->qid},
           {":seq", false, NULL, (int64_t)n->seq},
           {":new", false, NULL, (int64_t)n->new_seq},
           {":count", false, NULL, (int64_t)n->count},
           {":detail", true, n->detail, 0}};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
    int k = sqlite3_bind_parameter_index(s, p[i].name);
    if (!k) continue;
    if (!p[i].text) sqlite3_bind_int64(s, k, p[i].num);
    else if (p[i].s) sqlite3_bind_text(s, k, p[i].s, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, k);
  }
  int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : CAD_E_IO;
  if (changed) *changed += sqlite3_changes(db);
  sqlite3_finalize(s);
  return rc;
}

int cad_archive_note(const char *data_dir, const cad_archive_note_t *n, uint64_t *touched) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/archive", data_dir);
  *touched = 0;
  int64_t now = (int64_t)cad_now_ms();
  int rc = cad_io_mkdir_p(NULL, dir, 0700);
  cad__arch_db_t *db = NULL;
  if (rc == 0) rc = cad__arch_db_open(dir, now / DAY_MS, true, false, &db);
  if (rc < 0) return rc;
  rc = exec_bind(db->db,
                 "INSERT INTO evt(t, kind, who, dest, seq, new_seq, n, detail)"
                 " VALUES(:t, :kind, :who, :dest, :seq, :new, :count, :detail)",
                 n, now, NULL);
  cad__arch_db_close(db);
  if (rc < 0) return rc;
  /* The delivery rows it ends, in every day file (newest first). */
  const char *sql = NULL;
  if (!strcmp(n->kind, "requeue"))
    sql =
        "UPDATE dlv SET state='requeued', t=:t, detail='requeued as queue record ' || :new ||"
        " ' by ' || :who WHERE qid=:qid AND seq=:seq";
  else if (!strcmp(n->kind, "purge"))
    sql =
        "UPDATE dlv SET state='purged', t=:t, detail='purged by ' || :who"
        " WHERE qid=:qid AND seq<=:seq AND state IN ('queued','retrying')";
  else if (!strcmp(n->kind, "purge_dead"))
    sql =
        "UPDATE dlv SET state='purged', t=:t, detail='dead letter purged by ' || :who"
        " WHERE dest=:dest AND state='dead'";
  if (!sql) return 0;
  char **names;
  size_t nn;
  if ((rc = cad__arch_list(dir, &names, &nn)) < 0) return rc;
  int changed = 0;
  for (size_t i = nn; i-- > 0 && rc == 0;) {
    if (cad__arch_db_open(dir, cad_archive_day_of(names[i]), false, false, &db) < 0) continue;
    rc = exec_bind(db->db, sql, n, now, &changed);
    cad__arch_db_close(db);
    if (!strcmp(n->kind, "requeue") && changed) break; /* one row */
  }
  cad__arch_list_free(names, nn);
  *touched = (uint64_t)changed;
  return rc;
}

int cad_archive_events(const char *dir, int64_t since_ms, cad_archive_event_cb cb, void *ud) {
  char **names;
  size_t nn;
  int rc = cad__arch_list(dir, &names, &nn);
  if (rc < 0) return rc;
  int total = 0;
  for (size_t i = 0; i < nn && rc == 0; i++) {
    int64_t day = cad_archive_day_of(names[i]);
    if ((day + 1) * DAY_MS <= since_ms) continue;
    cad__arch_db_t *db;
    if (cad__arch_db_open(dir, day, false, true, &db) < 0) continue;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->db,
                           "SELECT t, kind, coalesce(who,''), coalesce(dest,''), seq, new_seq, n,"
                           " coalesce(detail,'') FROM evt WHERE t >= ? ORDER BY rowid",
                           -1, &s, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(s, 1, since_ms);
      while (sqlite3_step(s) == SQLITE_ROW) {
        cad_archive_event_t e = {sqlite3_column_int64(s, 0),
                                 (const char *)sqlite3_column_text(s, 1),
                                 (const char *)sqlite3_column_text(s, 2),
                                 (const char *)sqlite3_column_text(s, 3),
                                 (uint64_t)sqlite3_column_int64(s, 4),
                                 (uint64_t)sqlite3_column_int64(s, 5),
                                 (uint64_t)sqlite3_column_int64(s, 6),
                                 (const char *)sqlite3_column_text(s, 7)};
        total++;
        cb(ud, &e);
      }
      sqlite3_finalize(s);
    }
    cad__arch_db_close(db);
  }
  cad__arch_list_free(names, nn);
  return rc < 0 ? rc : total;
}
