/* archive_rebuild.c - the journal against the archive: find the queue
 * records the archive lacks (a SIGKILL lost the writer's last batch) and,
 * when asked, rebuild them from the journal (archive.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "archive_int.h"
#include "cad_error.h"
#include "journal.h"

#define DAY_MS 86400000LL
#define NDAYS 3

typedef struct {
  const char *dir;
  cad__arch_db_t *db[NDAYS]; /* days around the record's: -1, 0, +1 */
  int64_t base;              /* the day of db[1] */
} days_t;

static void days_close(days_t *d) {
  for (int i = 0; i < NDAYS; i++) {
    cad__arch_db_close(d->db[i]);
    d->db[i] = NULL;
  }
}

static void days_at(days_t *d, int64_t day, bool fix) {
  if (d->base == day && (d->db[0] || d->db[1] || d->db[2])) return;
  days_close(d);
  d->base = day;
  for (int i = 0; i < NDAYS; i++)
    cad__arch_db_open(d->dir, day - 1 + i, fix && i == 1, !(fix && i == 1), &d->db[i]);
}

static bool known(days_t *d, uint16_t qid, uint64_t seq) {
  for (int i = 0; i < NDAYS; i++) {
    if (!d->db[i]) continue;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(d->db[i]->db, "SELECT 1 FROM dlv WHERE qid=? AND seq=?", -1, &s, NULL) !=
        SQLITE_OK)
      continue;
    sqlite3_bind_int(s, 1, qid);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
    bool hit = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    if (hit) return true;
  }
  return false;
}

/* A record for a queue record the archive lacks: its payload is what the
 * destination gets (the routed bytes), its channel unknown. */
static int rebuild_one(cad__arch_db_t *db, const cad_jread_t *r, const cad_journal_t *j) {
  cad__arch_fields_t f;
  cad__arch_fields(r->payload.data, r->payload.len, &f);
  uLongf zlen = compressBound((uLong)r->payload.len);
  unsigned char *z = malloc(zlen);
  if (!z) return CAD_E_NOMEM;
  if (compress2(z, &zlen, (const Bytef *)r->payload.data, (uLong)r->payload.len, 6) != Z_OK)
    zlen = 0;
  const char *name = j->dests[r->dest].name;
  /* An id in the record's millisecond that the pipeline does not use (its
   * counter stays far below 2^19 within one millisecond). */
  uint64_t id = ((uint64_t)r->time_ms << 20) | 0x80000u | (r->seq & 0x7FFFFu);
  cad__arch_msg_t m = {id,         (int64_t)r->time_ms,
                       NULL,       NULL,
                       0,          r->payload.len,
                       "accepted", "rebuilt from the journal",
                       NULL,       0,
                       &f,         z,
                       zlen,       r->payload.len,
                       &r->dest,   &r->seq,
                       &name,      1,
                       0,          0,
                       NULL,       NULL};
  int rc = cad__arch_db_insert(db, &m);
  free(z);
  if (rc == 0 && r->seq <= j->dests[r->dest].done_seq)
    rc = cad__arch_db_attempt(db, r->dest, r->seq, CAD_ARCH_DELIVERED,
                              "finished before the restart (rebuilt from the journal)",
                              (int64_t)r->time_ms, name, false);
  return rc;
}

int cad_archive_reindex(const char *data_dir, int64_t from_ms, int64_t until_ms, bool fix,
                        uint64_t *checked, uint64_t *missing, uint64_t *rebuilt) {
  return cad_archive_reindex_until(data_dir, from_ms, until_ms, fix, NULL, checked, missing,
                                   rebuilt);
}

/* Commit the open transaction of the day being rebuilt, if any. */
static void tx_end(days_t *d, size_t *in_tx) {
  if (*in_tx && d->db[1]) cad__arch_db_commit(d->db[1]);
  *in_tx = 0;
}

int cad_archive_reindex_until(const char *data_dir, int64_t from_ms, int64_t until_ms, bool fix,
                              const _Atomic bool *stop, uint64_t *checked, uint64_t *missing,
                              uint64_t *rebuilt) {
  char jdir[4200], adir[4200];
  snprintf(jdir, sizeof jdir, "%s/journal", data_dir);
  snprintf(adir, sizeof adir, "%s/archive", data_dir);
  *checked = *missing = *rebuilt = 0;
  cad_journal_t j;
  int rc = cad_journal_open(&j, jdir, 0, true);
  if (rc < 0) return rc == -ENOENT ? 0 : rc;
  cad_jreader_t rd;
  if ((rc = cad_jreader_init(&rd, jdir)) < 0) {
    cad_journal_close(&j);
    return rc;
  }
  days_t d = {adir, {NULL, NULL, NULL}, -1};
  cad_jpos_t pos = cad_journal_begin(&j), end = cad_journal_end(&j);
  /* Whole segments older than from_ms are skipped unread (a week of journal
   * is not read back at every start); a segment begins where the first one
   * does, after its header. */
  size_t first = 0;
  while (first < j.nsegs && j.segs[first].last_ms && (int64_t)j.segs[first].last_ms < from_ms)
    first++;
  if (first == j.nsegs) pos = end;
  else pos.seg = j.segs[first].no;
  cad_jread_t r;
  memset(&r, 0, sizeof r);
  size_t in_tx = 0; /* rows in the open transaction of d.db[1] */
  while ((rc = cad_jreader_next(&rd, &pos, end, -1, CAD_JREC_MSG, &r)) == 1) {
    if (stop && *stop) break;
    if ((int64_t)r.time_ms < from_ms || (until_ms && (int64_t)r.time_ms >= until_ms)) continue;
    /* Route dead letters ("channel:NAME") are archived with their message. */
    const char *name = j.dests[r.dest].name;
    if (name && strncmp(name, "channel:", 8) == 0) continue;
    (*checked)++;
    if (d.base != (int64_t)r.time_ms / DAY_MS) tx_end(&d, &in_tx);
    days_at(&d, (int64_t)r.time_ms / DAY_MS, fix);
    if (known(&d, r.dest, r.seq)) continue;
    (*missing)++;
    if (!fix || !d.db[1]) continue;
    if (!in_tx && cad__arch_db_begin(d.db[1]) < 0) continue;
    in_tx++;
    if (rebuild_one(d.db[1], &r, &j) == 0) (*rebuilt)++;
    if (in_tx >= 256) tx_end(&d, &in_tx);
  }
  tx_end(&d, &in_tx);
  days_close(&d);
  cad_buf_free(&r.payload);
  cad_jreader_free(&rd);
  cad_journal_close(&j);
  return rc < 0 ? rc : 0;
}

/* The time of the newest archived message (0 = none). */
int64_t cad_archive_newest(const char *dir) {
  char **names;
  size_t n;
  if (cad__arch_list(dir, &names, &n) < 0) return 0;
  int64_t t = 0;
  for (size_t i = n; i-- > 0 && t == 0;) {
    cad__arch_db_t *db;
    if (cad__arch_db_open(dir, cad_archive_day_of(names[i]), false, true, &db) < 0) continue;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->db, "SELECT max(t) FROM msg", -1, &s, NULL) == SQLITE_OK) {
      if (sqlite3_step(s) == SQLITE_ROW) t = sqlite3_column_int64(s, 0);
      sqlite3_finalize(s);
    }
    cad__arch_db_close(db);
  }
  cad__arch_list_free(names, n);
  return t;
}
