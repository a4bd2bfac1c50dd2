/* test_archive_hdr.c - the archive's header combinations (archive_db.c:
 * channel, type, MSH-4 and MSH-6 indexed together through the hdr table)
 * and the searches that read them (archive_query.c): every answer compared
 * with a brute-force filter of what was written, in order and count, for
 * one combination, a few (merged), many (the sorted fallback), with the
 * selective filters, time ranges and limits; a file of the earlier version
 * (four indexes of its own) upgraded in place and searched; values the
 * writer's cache does not hold (long), values whose bytes could be split
 * two ways, more combinations than the cache has slots; a transaction
 * SQLite rolled back by itself (disk full) forgets the ids learned in it;
 * a second writer of the file is waited for. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "archive_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "harness.h"

#define DAY_MS 86400000LL
#define MAXM 6000

static char DATA[256], DIR_[300];

static void fresh_dir(void) {
  snprintf(DATA, sizeof DATA, "/tmp/cad-test-archive-hdr-XXXXXX");
  REQUIRE(mkdtemp(DATA) != NULL);
  snprintf(DIR_, sizeof DIR_, "%s/archive", DATA);
  REQUIRE(cad_io_mkdir_p(NULL, DIR_, 0700) == 0);
}

static void rm_dir(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", DATA);
  CHECK(system(cmd) == 0);
}

/* What was written, for the brute-force answers. */
typedef struct {
  uint64_t id;
  char channel[16], type[32], msh4[320], msh6[64], ctl[16];
  const char *status;
} ref_t;

static ref_t REF[MAXM];
static int nref;

/* Write message k of day `day` through cad__arch_db_insert (NULL channel:
 * a record rebuilt from the journal). */
static void write_one(cad__arch_db_t *db, int64_t day, int k, const char *channel, const char *type,
                      const char *msh4, const char *msh6, const char *status) {
  REQUIRE(nref < MAXM);
  ref_t *r = &REF[nref++];
  r->id = ((uint64_t)(day * DAY_MS + 1000 + k) << 20) | (uint64_t)k;
  snprintf(r->channel, sizeof r->channel, "%s", channel ? channel : "");
  snprintf(r->type, sizeof r->type, "%s", type);
  snprintf(r->msh4, sizeof r->msh4, "%s", msh4);
  snprintf(r->msh6, sizeof r->msh6, "%s", msh6);
  snprintf(r->ctl, sizeof r->ctl, "C%d", k);
  r->status = status;
  char msg[1024];
  int len =
      snprintf(msg, sizeof msg, "MSH|^~\\&|APP|%s|EHR|%s|20260101||%s|%s|P|2.5.1\rPID|1||M%d\r",
               msh4, msh6, type, r->ctl, k % 7);
  REQUIRE(len > 0 && len < (int)sizeof msg);
  cad__arch_fields_t f;
  cad__arch_fields(msg, (size_t)len, &f);
  cad__arch_msg_t m = {.id = r->id,
                       .t_ms = (int64_t)(r->id >> 20),
                       .channel = channel,
                       .peer = "127.0.0.1:1",
                       .size = (uint64_t)len,
                       .status = status,
                       .ack = "AA",
                       .f = &f,
                       .rawlen = (size_t)len};
  CHECK_INT(cad__arch_db_insert(db, &m), 0);
}

typedef struct {
  uint64_t ids[MAXM];
  int n;
} got_t;

static int collect(void *ud, const cad_archive_row_t *row) {
  got_t *g = ud;
  if (g->n < MAXM) g->ids[g->n++] = row->id;
  return 0;
}

static bool type_match(const char *want, const char *type) {
  if (strchr(want, '^')) return !strcmp(want, type);
  size_t l = strlen(want);
  return !strcmp(want, type) || (!strncmp(want, type, l) && type[l] == '^');
}

static bool ref_match(const ref_t *r, const cad_archive_query_t *q) {
  if (q->channel && strcmp(q->channel, r->channel)) return false;
  if (q->type && !type_match(q->type, r->type)) return false;
  if (q->sender && strcmp(q->sender, r->msh4)) return false;
  if (q->receiver && strcmp(q->receiver, r->msh6)) return false;
  if (q->control_id && strcmp(q->control_id, r->ctl)) return false;
  if (q->status && strcmp(q->status, r->status)) return false;
  uint64_t t = r->id >> 20;
  if (q->since_ms && t < (uint64_t)q->since_ms) return false;
  if (q->until_ms && t >= (uint64_t)q->until_ms) return false;
  return true;
}

/* Search q and compare with the brute-force answer: the same ids, newest
 * first, at most the limit; and the same count.  Returns the rows. */
static int agree(const char *what, cad_archive_query_t q) {
  got_t *want = calloc(1, sizeof *want), *got = calloc(1, sizeof *got);
  if (!want || !got) abort();
  for (int i = nref; i-- > 0;) /* ids grow with i: newest first */
    if (ref_match(&REF[i], &q)) want->ids[want->n++] = REF[i].id;
  uint64_t all = (uint64_t)want->n;
  int limit = q.limit ? (int)q.limit : 50;
  if (want->n > limit) want->n = limit;
  char err[256] = "";
  int rc = cad_archive_search(DIR_, &q, collect, got, err, sizeof err);
  if (rc != want->n || got->n != want->n)
    fprintf(stderr, "%s: rc %d (%s), want %d\n", what, rc, err, want->n);
  CHECK_INT(got->n, want->n);
  bool same = got->n == want->n;
  for (int i = 0; same && i < got->n; i++) same = got->ids[i] == want->ids[i];
  if (!same) fprintf(stderr, "%s: rows differ from the brute-force answer\n", what);
  CHECK(same);
  uint64_t n = 0;
  CHECK_INT(cad_archive_count(DIR_, &q, &n, err, sizeof err), 0);
  if (n != all)
    fprintf(stderr, "%s: count %llu, want %llu\n", what, (unsigned long long)n,
            (unsigned long long)all);
  CHECK(n == all);
  int rows = got->n;
  free(want);
  free(got);
  return rows;
}

static const char *const CHANS[] = {"lab", "adt", "rad", NULL};
static const char *const TYPES[] = {"ORU^R01", "ORU^R30", "ADT^A08", "ORM^O01", "ORU"};
static const char *const FAC[] = {"LABFAC", "ADTFAC", "RADFAC"};

/* n messages over the combinations above, one in 40 with a MSH-4 of its
 * own (so some filters match more combinations than are merged). */
static void write_mix(cad__arch_db_t *db, int64_t day, int from, int n) {
  for (int k = from; k < from + n; k++) {
    char own[16];
    snprintf(own, sizeof own, "FAC%d", k);
    write_one(db, day, k, CHANS[k % 4], TYPES[(k / 4) % 5], k % 40 == 7 ? own : FAC[k % 3],
              k % 2 ? "EHRFAC" : "", k % 13 == 0 ? "rejected" : "accepted");
  }
}

static void every_query(const char *tag, int64_t day) {
  int64_t t0 = day * DAY_MS + 1000;
  char w[128];
  const char *fac7 = "FAC47";
  struct {
    const char *name;
    cad_archive_query_t q;
  } qs[] = {
      {"channel", {.channel = "lab"}},
      {"channel, limit 1000", {.channel = "adt", .limit = 1000}},
      {"type exact", {.type = "ORU^R01", .limit = 7}},
      {"type prefix (several combinations merged)", {.type = "ORU", .limit = 120}},
      {"type alone without trigger", {.type = "ORU^"}},
      {"sender (dozens of combinations merged)", {.sender = "LABFAC", .limit = 500}},
      {"sender of one message", {.sender = fac7}},
      {"receiver", {.receiver = "EHRFAC", .limit = 30}},
      {"channel and type", {.channel = "rad", .type = "ADT", .limit = 1000}},
      {"channel, type, sender, receiver",
       {.channel = "lab", .type = "ORU^R01", .sender = "LABFAC", .receiver = "EHRFAC"}},
      {"type and time range", {.type = "ORU", .since_ms = t0 + 100, .until_ms = t0 + 300}},
      {"channel and control id (selective)", {.channel = "lab", .control_id = "C120"}},
      {"control id of another channel", {.channel = "adt", .control_id = "C120"}},
      {"type and rare status (selective)", {.type = "ORU", .status = "rejected", .limit = 1000}},
      {"sender and accepted status", {.sender = "RADFAC", .status = "accepted", .limit = 40}},
      {"no such channel", {.channel = "nope"}},
      {"rebuilt records have no channel", {.channel = ""}},
      {"messages without MSH-6", {.receiver = "", .limit = 1000}},
      {"no header filter", {.limit = 25}},
  };
  for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
    snprintf(w, sizeof w, "%s: %s", tag, qs[i].name);
    agree(w, qs[i].q);
  }
}

static int64_t count_sql(cad__arch_db_t *db, const char *sql) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db->db, sql, -1, &s, NULL) != SQLITE_OK) return -1;
  int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  return n;
}

/* A new directory with today's file open for writing; nothing written. */
static cad__arch_db_t *start_today(int64_t *day) {
  fresh_dir();
  nref = 0;
  *day = (int64_t)(cad_now_ms() / DAY_MS);
  cad__arch_db_t *db = NULL;
  if (cad__arch_db_open(DIR_, *day, true, false, &db) != 0) abort();
  return db;
}

TEST(searches_agree_with_brute_force) {
  int64_t day;
  cad__arch_db_t *db = start_today(&day);
  CHECK(db->hdr_only);
  CHECK_INT(cad__arch_db_begin(db), 0);
  write_mix(db, day, 0, 800);
  CHECK_INT(cad__arch_db_commit(db), 0);
  /* One hdr row per combination, one msg_hdr entry per message. */
  int64_t combos = count_sql(db,
                             "SELECT count(DISTINCT ifnull(channel,'')||'|'||ifnull(type,'')||'|'||"
                             "ifnull(msh4,'')||'|'||ifnull(msh6,'')) FROM msg");
  CHECK(combos > 16);
  CHECK_INT((int)count_sql(db, "SELECT count(*) FROM hdr"), (int)combos);
  CHECK_INT((int)count_sql(db, "SELECT count(*) FROM msg WHERE hdr IS NULL"), 0);
  CHECK_INT((int)count_sql(db,
                           "SELECT count(*) FROM sqlite_master WHERE name IN ('msg_channel',"
                           "'msg_type','msg_msh4','msg_msh6')"),
            0);
  cad__arch_db_close(db);
  every_query("new file", day);
  rm_dir();
}

/* The schema before hdr (what an archive of the previous version holds). */
static const char OLD_SCHEMA[] =
    "CREATE TABLE msg(id INTEGER PRIMARY KEY, t INTEGER NOT NULL, channel TEXT,"
    " peer TEXT, conn INTEGER, size INTEGER, status TEXT NOT NULL, reason TEXT, ack TEXT,"
    " dl_seq INTEGER, msh3 TEXT, msh4 TEXT, msh5 TEXT, msh6 TEXT, msh7 TEXT, type TEXT,"
    " msh10 TEXT, msh11 TEXT, msh12 TEXT, body BLOB, body_len INTEGER, blk INTEGER,"
    " blk_off INTEGER);"
    "CREATE TABLE blk(id INTEGER PRIMARY KEY, z BLOB, raw_len INTEGER NOT NULL);"
    "CREATE INDEX msg_channel ON msg(channel, id);"
    "CREATE INDEX msg_rare ON msg(status, id) WHERE status <> 'accepted';"
    "CREATE INDEX msg_type ON msg(type, id);"
    "CREATE INDEX msg_ctl ON msg(msh10);"
    "CREATE INDEX msg_msh4 ON msg(msh4, id);"
    "CREATE INDEX msg_msh6 ON msg(msh6, id);";

TEST(a_file_of_the_earlier_version) {
  fresh_dir();
  nref = 0;
  int64_t day = (int64_t)(cad_now_ms() / DAY_MS) - 1;
  char name[16], path[400];
  cad_archive_day_name(day * DAY_MS, name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  sqlite3 *raw;
  REQUIRE(sqlite3_open(path, &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw, OLD_SCHEMA, NULL, NULL, NULL) == SQLITE_OK);
  /* 300 rows as the earlier version wrote them (no hdr column). */
  sqlite3_stmt *s;
  REQUIRE(sqlite3_prepare_v2(raw,
                             "INSERT INTO msg(id,t,channel,status,msh4,msh6,type,msh10)"
                             " VALUES(?,?,?,?,?,?,?,?)",
                             -1, &s, NULL) == SQLITE_OK);
  for (int k = 0; k < 300; k++) {
    ref_t *r = &REF[nref++];
    r->id = ((uint64_t)(day * DAY_MS + 1000 + k) << 20) | (uint64_t)k;
    snprintf(r->channel, sizeof r->channel, "%s", CHANS[k % 3]);
    snprintf(r->type, sizeof r->type, "%s", TYPES[(k / 3) % 5]);
    snprintf(r->msh4, sizeof r->msh4, "%s", FAC[k % 3]);
    snprintf(r->msh6, sizeof r->msh6, "%s", k % 2 ? "EHRFAC" : "");
    snprintf(r->ctl, sizeof r->ctl, "C%d", k);
    r->status = k % 13 == 0 ? "rejected" : "accepted";
    sqlite3_bind_int64(s, 1, (sqlite3_int64)r->id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)(r->id >> 20));
    sqlite3_bind_text(s, 3, r->channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, r->status, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, r->msh4, -1, SQLITE_STATIC);
    if (r->msh6[0]) sqlite3_bind_text(s, 6, r->msh6, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, r->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, r->ctl, -1, SQLITE_STATIC);
    CHECK(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  sqlite3_finalize(s);
  sqlite3_close(raw);
  /* Opened by this version: upgraded in place (hdr column, hdr table), its
   * four indexes kept, so its old rows stay found; new rows go on. */
  cad__arch_db_t *db;
  REQUIRE(cad__arch_db_open(DIR_, day, false, false, &db) == 0);
  CHECK(!db->hdr_only);
  CHECK_INT(cad__arch_db_begin(db), 0);
  write_mix(db, day, 300, 400);
  CHECK_INT(cad__arch_db_commit(db), 0);
  CHECK_INT((int)count_sql(db, "SELECT count(*) FROM msg WHERE hdr IS NULL"), 300);
  cad__arch_db_close(db);
  REQUIRE(cad__arch_db_open(DIR_, day, false, true, &db) == 0);
  CHECK(!db->hdr_only);
  cad__arch_db_close(db);
  every_query("upgraded file", day);
  /* And beside it today's file of the new kind: a search spans both. */
  REQUIRE(cad__arch_db_open(DIR_, day + 1, true, false, &db) == 0);
  CHECK(db->hdr_only);
  write_mix(db, day + 1, 0, 200);
  cad__arch_db_close(db);
  every_query("two files, two versions", day);
  rm_dir();
}

TEST(values_the_cache_cannot_hold_or_could_confuse) {
  int64_t day;
  cad__arch_db_t *db = start_today(&day);
  CHECK_INT(cad__arch_db_begin(db), 0);
  /* A MSH-4 of 300 bytes (not cached): the same combination each time. */
  char big[301];
  memset(big, 'F', 300);
  big[300] = '\0';
  for (int k = 0; k < 3; k++) write_one(db, day, k, "lab", "ORU^R01", big, "EHR", "accepted");
  /* The same bytes split two ways between MSH-4 and MSH-6. */
  write_one(db, day, 3, "lab", "ORU^R01", "AB", "C", "accepted");
  write_one(db, day, 4, "lab", "ORU^R01", "A", "BC", "accepted");
  write_one(db, day, 5, "lab", "ORU^R0", "1A", "BC", "accepted");
  /* More combinations than the cache has slots, twice over. */
  char fac[16];
  for (int round = 0; round < 2; round++)
    for (int k = 0; k < 600; k++) {
      snprintf(fac, sizeof fac, "F%d", k);
      write_one(db, day, 10 + round * 600 + k, "adt", "ADT^A08", fac, "EHR", "accepted");
    }
  CHECK_INT(cad__arch_db_commit(db), 0);
  CHECK_INT((int)count_sql(db, "SELECT count(*) FROM hdr WHERE length(msh4)=300"), 1);
  CHECK_INT((int)count_sql(db, "SELECT count(*) FROM hdr WHERE channel='lab'"), 4);
  CHECK_INT((int)count_sql(db, "SELECT count(*) FROM hdr WHERE channel='adt'"), 600);
  cad__arch_db_close(db);
  CHECK_INT(agree("long sender", (cad_archive_query_t){.sender = big}), 3);
  CHECK_INT(agree("split A|BC", (cad_archive_query_t){.sender = "A"}), 1);
  CHECK_INT(agree("split AB|C", (cad_archive_query_t){.receiver = "C"}), 1);
  CHECK_INT(agree("split type", (cad_archive_query_t){.type = "ORU^R01", .receiver = "BC"}), 1);
  CHECK_INT(agree("evicted combination", (cad_archive_query_t){.sender = "F3"}), 2);
  /* More combinations than are counted (MANY_COMBOS): newest first, each
   * message's combination looked up. */
  REQUIRE(cad__arch_db_open(DIR_, day, false, false, &db) == 0);
  CHECK_INT(cad__arch_db_begin(db), 0);
  for (int k = 0; k < 4200; k++) {
    snprintf(fac, sizeof fac, "R%d", k);
    write_one(db, day, 2000 + k, "rad", k % 2 ? "ORU^R01" : "ADT^A08", fac, "EHR", "accepted");
  }
  CHECK_INT(cad__arch_db_commit(db), 0);
  cad__arch_db_close(db);
  agree("4,200 combinations", (cad_archive_query_t){.channel = "rad", .type = "ORU", .limit = 30});
  agree("4,200 combinations, a time range",
        (cad_archive_query_t){.channel = "rad",
                              .since_ms = day * DAY_MS + 1000 + 3000,
                              .until_ms = day * DAY_MS + 1000 + 3100,
                              .limit = 1000});
  /* A selective filter among them: the count, as the search, looks each
   * message's combination up instead of building the set. */
  CHECK_INT(agree("4,200 combinations, a control id",
                  (cad_archive_query_t){.channel = "rad", .type = "ORU", .control_id = "C3001"}),
            1);
  agree("600 combinations, fewer matches than SORT_MAX: read and sorted",
        (cad_archive_query_t){.channel = "adt", .limit = 700});
  rm_dir();
}

TEST(a_rollback_by_sqlite_forgets_its_ids) {
  int64_t day;
  cad__arch_db_t *db = start_today(&day);
  CHECK_INT(cad__arch_db_begin(db), 0);
  write_one(db, day, 0, "lab", "ORU^R01", "FIRST", "EHR", "accepted");
  CHECK_INT(cad__arch_db_commit(db), 0);
  /* The file may not grow: a message too big for it fills the "disk"; SQLite
   * then rolls the whole transaction back, the new combination AAA (its hdr
   * id, in the writer's cache) with it. */
  int64_t pages = count_sql(db, "PRAGMA page_count");
  char pragma[64];
  snprintf(pragma, sizeof pragma, "PRAGMA max_page_count=%lld", (long long)pages + 1);
  REQUIRE(sqlite3_exec(db->db, pragma, NULL, NULL, NULL) == SQLITE_OK);
  CHECK_INT(cad__arch_db_begin(db), 0);
  write_one(db, day, 1, "lab", "ORU^R01", "AAA", "EHR", "accepted");
  static char big[200000];
  memset(big, 'Z', sizeof big - 1);
  char msg[256];
  int len = snprintf(msg, sizeof msg, "MSH|^~\\&|APP|X|EHR|EHR|20260101||ADT^A08|CBIG|P|2.5.1\r");
  cad__arch_fields_t f;
  cad__arch_fields(msg, (size_t)len, &f);
  f.msh[4] = (cad__arch_span_t){big, sizeof big - 1};
  cad__arch_msg_t m = {.id = ((uint64_t)(day * DAY_MS + 5000) << 20),
                       .t_ms = day * DAY_MS + 5000,
                       .channel = "lab",
                       .status = "accepted",
                       .f = &f};
  CHECK(cad__arch_db_insert(db, &m) < 0);
  /* What follows is refused, not written alone without the transaction. */
  cad__arch_msg_t m2 = m;
  m2.id += 1;
  f.msh[4] = (cad__arch_span_t){"AAA", 3};
  CHECK(cad__arch_db_insert(db, &m2) < 0);
  CHECK(cad__arch_db_commit(db) < 0);
  nref = 1; /* AAA's message is gone with the transaction */
  snprintf(pragma, sizeof pragma, "PRAGMA max_page_count=1073741823");
  REQUIRE(sqlite3_exec(db->db, pragma, NULL, NULL, NULL) == SQLITE_OK);
  /* Again: AAA gets its row anew, BBB one of its own. */
  CHECK_INT(cad__arch_db_begin(db), 0);
  write_one(db, day, 2, "lab", "ORU^R01", "AAA", "EHR", "accepted");
  write_one(db, day, 3, "lab", "ORU^R01", "BBB", "EHR", "accepted");
  CHECK_INT(cad__arch_db_commit(db), 0);
  CHECK_INT((int)count_sql(db,
                           "SELECT count(*) FROM msg m JOIN hdr h ON h.id = m.hdr"
                           " WHERE h.msh4 <> ifnull(m.msh4, '')"),
            0);
  cad__arch_db_close(db);
  CHECK_INT(agree("AAA after the rollback", (cad_archive_query_t){.sender = "AAA"}), 1);
  CHECK_INT(agree("BBB after the rollback", (cad_archive_query_t){.sender = "BBB"}), 1);
  rm_dir();
}

/* The other writer: holds the file's write lock a while, with a hdr row of
 * its own, then commits. */
static void *other_writer(void *arg) {
  sqlite3 *o = arg;
  usleep(300 * 1000);
  if (sqlite3_exec(o, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) abort();
  return NULL;
}

TEST(a_second_writer_is_waited_for) {
  int64_t day;
  cad__arch_db_t *db = start_today(&day);
  char name[16], path[400];
  cad_archive_day_name(day * DAY_MS, name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  sqlite3 *o;
  REQUIRE(sqlite3_open(path, &o) == SQLITE_OK);
  REQUIRE(sqlite3_exec(o,
                       "BEGIN IMMEDIATE; INSERT INTO hdr(channel,type,msh4,msh6)"
                       " VALUES('lab','ORU^R01','OTHER','EHR')",
                       NULL, NULL, NULL) == SQLITE_OK);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, other_writer, o) == 0);
  /* Waits for the other's commit (busy timeout), then sees its row. */
  CHECK_INT(cad__arch_db_begin(db), 0);
  write_one(db, day, 0, "lab", "ORU^R01", "OTHER", "EHR", "accepted");
  write_one(db, day, 1, "lab", "ORU^R01", "MINE", "EHR", "accepted");
  CHECK_INT(cad__arch_db_commit(db), 0);
  pthread_join(t, NULL);
  sqlite3_close(o);
  CHECK_INT((int)count_sql(db, "SELECT count(*) FROM hdr"), 2);
  cad__arch_db_close(db);
  CHECK_INT(agree("the other writer's combination", (cad_archive_query_t){.sender = "OTHER"}), 1);
  rm_dir();
}

TEST_MAIN()
