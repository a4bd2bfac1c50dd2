/* test_archive.c - the message archive's store (engine/store/archive.h):
 * batched writes, the bounded queue that drops instead of blocking,
 * retention that deletes whole day files, reopening, delivery attempts
 * before and after their message, and the header fields it indexes. */
#include "archive.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "harness.h"

#define DAY_MS 86400000LL

static char DATA[256], DIR_[300];

static void fresh_dir(void) {
  snprintf(DATA, sizeof DATA, "/tmp/cad-test-archive-XXXXXX");
  REQUIRE(mkdtemp(DATA) != NULL);
  snprintf(DIR_, sizeof DIR_, "%s/archive", DATA);
}

static void rm_dir(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", DATA);
  CHECK(system(cmd) == 0);
}

#define MSG_FMT                                                                     \
  "MSH|^~\\&|LIS|LABFAC|EHR|EHRFAC|20260101120000||ORU^R01^ORU_R01|CTL%d|P|2.5.1\r" \
  "PID|1||MRN%d^^^HOSP^MR~SSN%d^^^SSA^SS||DOE^JANE\r"                               \
  "OBX|1|NM|WBC||7.5\r"

static uint64_t last_id;

/* Queue message number n (accepted, one record for queue 3, seq n). */
static int put(cad_archive_t *a, int n) {
  char msg[512];
  int len = snprintf(msg, sizeof msg, MSG_FMT, n, n, n);
  uint16_t qid = 3;
  uint64_t seq = (uint64_t)n;
  cad_archive_in_t in = {cad_archive_next_id(&last_id),
                         "lab",
                         "127.0.0.1:1",
                         1,
                         "accepted",
                         NULL,
                         "AA",
                         msg,
                         (size_t)len,
                         (uint64_t)len,
                         &qid,
                         &seq,
                         1,
                         0};
  return cad_archive_inbound(a, &in);
}

static int count_cb(void *ud, const cad_archive_row_t *r) {
  (void)r;
  (*(int *)ud)++;
  return 0;
}

static int count(const cad_archive_query_t *q) {
  int n = 0;
  char err[256] = "";
  int rc = cad_archive_search(DIR_, q, count_cb, &n, err, sizeof err);
  if (rc < 0) fprintf(stderr, "search: %s\n", err);
  CHECK_INT(rc, n);
  return n;
}

/* Open the archive of DATA (exits the test's child when it cannot). */
static cad_archive_t *open_with(size_t max_queue, size_t max_bytes, unsigned batch) {
  cad_archive_opts_t o = {
      .data_dir = DATA, .max_queue = max_queue, .max_queue_bytes = max_bytes, .batch = batch};
  cad_archive_t *a = NULL;
  if (cad_archive_open(&o, &a) != 0) {
    fprintf(stderr, "cad_archive_open failed\n");
    exit(1);
  }
  return a;
}

TEST(batches_and_search) {
  fresh_dir();
  cad_archive_t *a = open_with(0, 0, 8);
  for (int i = 1; i <= 100; i++) CHECK_INT(put(a, i), 0);
  cad_archive_flush(a);
  cad_archive_stats_t st;
  cad_archive_get_stats(a, &st);
  CHECK_INT((int)st.written, 100);
  CHECK_INT((int)st.dropped, 0);
  CHECK(st.batches >= 13); /* at most 8 per transaction */
  CHECK_INT((int)st.pending, 0);
  cad_archive_close(a);
  cad_archive_query_t q = {.limit = 1000};
  CHECK_INT(count(&q), 100);
  q.control_id = "CTL42";
  CHECK_INT(count(&q), 1);
  q = (cad_archive_query_t){.patient = "SSN42^SSA"}; /* the second repetition */
  CHECK_INT(count(&q), 1);
  q = (cad_archive_query_t){.patient = "MRN42^SSA"}; /* the wrong authority */
  CHECK_INT(count(&q), 0);
  q = (cad_archive_query_t){.type = "ORU", .limit = 1000};
  CHECK_INT(count(&q), 100);
  q = (cad_archive_query_t){.type = "OR", .limit = 1000}; /* not a prefix match */
  CHECK_INT(count(&q), 0);
  q = (cad_archive_query_t){.sender = "LABFAC", .receiver = "EHRFAC", .limit = 7};
  CHECK_INT(count(&q), 7);
  q = (cad_archive_query_t){.status = "queued", .dest = NULL, .limit = 1000};
  CHECK_INT(count(&q), 100); /* no attempt yet: queued */
  rm_dir();
}

/* With the writer stuck (another connection holds the write lock), a full
 * queue drops records at once instead of blocking the caller. */
TEST(full_queue_drops_without_blocking) {
  fresh_dir();
  cad_archive_t *a = open_with(10, 0, 4);
  char path[400], name[16];
  cad_archive_day_name((int64_t)cad_now_ms(), name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  sqlite3 *db;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
  uint64_t t0 = cad_mono_ms();
  int full = 0;
  for (int i = 1; i <= 200; i++)
    if (put(a, i) == CAD_E_FULL) full++;
  CHECK(cad_mono_ms() - t0 < 1000); /* never waited for the disk */
  CHECK(full >= 200 - 10 - 4);      /* queue bound + one batch in the writer's hands */
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(db);
  cad_archive_flush(a);
  cad_archive_stats_t st;
  cad_archive_get_stats(a, &st);
  CHECK_INT((int)st.dropped, full);
  CHECK_INT((int)(st.written + st.failed + st.dropped), 200);
  cad_archive_close(a);
  rm_dir();
}

TEST(byte_bound) {
  fresh_dir();
  cad_archive_t *a = open_with(0, 1, 4); /* 1 byte: every record is over it */
  CHECK_INT(put(a, 1), CAD_E_FULL);
  cad_archive_stats_t st;
  cad_archive_get_stats(a, &st);
  CHECK_INT((int)st.dropped, 1);
  cad_archive_close(a);
  rm_dir();
}

static void make_day(int64_t day) {
  cad__arch_db_t *db;
  REQUIRE(cad_io_mkdir_p(NULL, DIR_, 0700) == 0);
  REQUIRE(cad__arch_db_open(DIR_, day, true, false, &db) == 0);
  cad__arch_db_close(db);
}

static bool day_exists(int64_t day) {
  char name[16], path[400];
  cad_archive_day_name(day * DAY_MS, name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  return access(path, F_OK) == 0;
}

TEST(retention_deletes_whole_days) {
  fresh_dir();
  int64_t now = (int64_t)cad_now_ms(), today = now / DAY_MS;
  make_day(today - 10);
  make_day(today - 8);
  make_day(today - 3);
  make_day(today);
  uint64_t freed = 0;
  CHECK_INT(cad_archive_prune(DIR_, now, 7 * DAY_MS, 0, &freed), 2);
  CHECK(freed > 0);
  CHECK(!day_exists(today - 10));
  CHECK(!day_exists(today - 8));
  CHECK(day_exists(today - 3));
  CHECK(day_exists(today));
  /* By size: the oldest go first, never today's. */
  CHECK_INT(cad_archive_prune(DIR_, now, 30 * DAY_MS, 1, &freed), 1);
  CHECK(!day_exists(today - 3));
  CHECK(day_exists(today));
  CHECK_INT(cad_archive_prune(DIR_, now, 30 * DAY_MS, 1, &freed), 0);
  /* And the engine prunes at start. */
  make_day(today - 30);
  cad_archive_t *a = open_with(0, 0, 0);
  CHECK_INT(put(a, 1), 0);
  cad_archive_flush(a);
  cad_archive_close(a);
  CHECK(!day_exists(today - 30));
  rm_dir();
}

TEST(reopen_keeps_and_adds) {
  fresh_dir();
  for (int round = 0; round < 3; round++) {
    cad_archive_t *a = open_with(0, 0, 0);
    for (int i = 1; i <= 10; i++) CHECK_INT(put(a, round * 10 + i), 0);
    cad_archive_close(a); /* writes what is queued */
  }
  cad_archive_query_t q = {.limit = 1000};
  CHECK_INT(count(&q), 30);
  struct stat st;
  REQUIRE(stat(DIR_, &st) == 0);
  CHECK_INT((int)(st.st_mode & 0777), 0700);
  char name[16], path[400];
  cad_archive_day_name((int64_t)cad_now_ms(), name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  REQUIRE(stat(path, &st) == 0);
  CHECK_INT((int)(st.st_mode & 0777), 0600);
  rm_dir();
}

typedef struct {
  char dests[256];
  char status[32];
} row_t;

static int row_cb(void *ud, const cad_archive_row_t *r) {
  row_t *x = ud;
  snprintf(x->dests, sizeof x->dests, "%s", r->dests);
  snprintf(x->status, sizeof x->status, "%s", r->status);
  return 0;
}

/* Attempts land on their message's delivery row, whichever comes first
 * (the `delivered` ACK policy archives the message after its delivery). */
TEST(attempts_before_and_after_the_message) {
  fresh_dir();
  cad_archive_t *a = open_with(0, 0, 0);
  cad_archive_dest_name(a, 3, "ehr");
  CHECK_INT(put(a, 1), 0);
  CHECK_INT(cad_archive_attempt(a, 3, 1, CAD_ARCH_RETRY, "ECONNREFUSED"), 0);
  CHECK_INT(cad_archive_attempt(a, 3, 1, CAD_ARCH_DELIVERED, "AA"), 0);
  CHECK_INT(cad_archive_attempt(a, 3, 2, CAD_ARCH_FAILED, "AR from receiver"), 0);
  CHECK_INT(cad_archive_attempt(a, 3, 2, CAD_ARCH_DEAD, "AR after 1 attempt(s)"), 0);
  CHECK_INT(put(a, 2), 0);
  cad_archive_close(a);
  row_t r = {"", ""};
  char err[256];
  cad_archive_query_t q = {.control_id = "CTL1"};
  CHECK_INT(cad_archive_search(DIR_, &q, row_cb, &r, err, sizeof err), 1);
  CHECK_STR(r.dests, "ehr:delivered");
  q.control_id = "CTL2";
  CHECK_INT(cad_archive_search(DIR_, &q, row_cb, &r, err, sizeof err), 1);
  CHECK_STR(r.dests, "ehr:dead");
  q = (cad_archive_query_t){.status = "dead"};
  CHECK_INT(count(&q), 1);
  q = (cad_archive_query_t){.status = "delivered", .dest = "ehr"};
  CHECK_INT(count(&q), 1);
  q = (cad_archive_query_t){.dest = "other"};
  CHECK_INT(count(&q), 0);
  rm_dir();
}

TEST(time_range_spans_day_files) {
  fresh_dir();
  int64_t now = (int64_t)cad_now_ms();
  cad_archive_t *a = open_with(0, 0, 0);
  /* Ids of two and of five days ago: each goes to its own day file. */
  for (int back = 0; back < 3; back++) {
    int64_t ms = now - (int64_t)(back == 0 ? 0 : back == 1 ? 2 : 5) * DAY_MS;
    char msg[512];
    int len = snprintf(msg, sizeof msg, MSG_FMT, back, back, back);
    cad_archive_in_t in = {(uint64_t)ms << 20, "lab", NULL, 1,    "accepted", NULL, "AA", msg,
                           (size_t)len,        0,     NULL, NULL, 0,          0};
    CHECK_INT(cad_archive_inbound(a, &in), 0);
  }
  cad_archive_close(a);
  char name[16];
  cad_archive_day_name(now - 5 * DAY_MS, name);
  CHECK(cad_archive_day_of(name) == (now - 5 * DAY_MS) / DAY_MS);
  cad_archive_query_t q = {.limit = 100};
  CHECK_INT(count(&q), 3);
  q.since_ms = now - 3 * DAY_MS;
  CHECK_INT(count(&q), 2);
  q.until_ms = now - DAY_MS;
  CHECK_INT(count(&q), 1);
  q = (cad_archive_query_t){.limit = 2};
  CHECK_INT(count(&q), 2); /* the limit holds across files */
  rm_dir();
}

/* An attempt whose delivery row is in no cached file looks in the day
 * before, which evicts the file holding the batch's open transaction: that
 * transaction is committed first, and the batch goes on (no record lost, no
 * use of a closed file). */
TEST(eviction_commits_the_open_transaction) {
  fresh_dir();
  int64_t now = (int64_t)cad_now_ms();
  make_day(now / DAY_MS - 6); /* the day before exists: opening it evicts */
  cad_archive_t *a = open_with(0, 0, 64);
  int64_t old_ms = now - 5 * DAY_MS;
  char msg[512];
  for (int i = 1; i <= 3; i++) {
    int len = snprintf(msg, sizeof msg, MSG_FMT, i, i, i);
    uint16_t qid = 3;
    uint64_t seq = (uint64_t)i;
    cad_archive_in_t in = {((uint64_t)old_ms << 20) + (uint64_t)i,
                           "lab",
                           NULL,
                           1,
                           "accepted",
                           NULL,
                           "AA",
                           msg,
                           (size_t)len,
                           0,
                           &qid,
                           &seq,
                           1,
                           0};
    CHECK_INT(cad_archive_inbound(a, &in), 0);
    /* Unknown (qid, seq): looked up on that day and the day before. */
    CHECK_INT(cad__archive_attempt_at(a, 9, (uint64_t)i, CAD_ARCH_DELIVERED, "AA", old_ms), 0);
  }
  cad_archive_flush(a);
  cad_archive_stats_t st;
  cad_archive_get_stats(a, &st);
  CHECK_INT((int)st.failed, 0);
  CHECK_INT((int)st.written, 6);
  cad_archive_close(a);
  cad_archive_query_t q = {.limit = 100};
  CHECK_INT(count(&q), 3);
  rm_dir();
}

TEST(header_fields) {
  cad__arch_fields_t f;
  const char *m =
      "MSH#@%$*#A#B#C#D#20260101##ORU@R01@X#CTL#P#2.3\r"
      "PID#1##111@@@AUTH1*x%222@@@AUTH2*y%%333\r";
  cad__arch_fields(m, strlen(m), &f);
  CHECK_STRN(f.msh[3].p, f.msh[3].len, "A");
  CHECK_STRN(f.msh[6].p, f.msh[6].len, "D");
  CHECK_STRN(f.msh[10].p, f.msh[10].len, "CTL");
  CHECK_STRN(f.msh[12].p, f.msh[12].len, "2.3");
  CHECK_STR(f.type, "ORU^R01");  // normalised to ^
  REQUIRE(f.npid == 3);
  CHECK_STRN(f.pid_value[0].p, f.pid_value[0].len, "111");
  CHECK_STRN(f.pid_auth[0].p, f.pid_auth[0].len, "AUTH1");
  CHECK_STRN(f.pid_value[1].p, f.pid_value[1].len, "222");
  CHECK_STRN(f.pid_auth[1].p, f.pid_auth[1].len, "AUTH2");
  CHECK_STRN(f.pid_value[2].p, f.pid_value[2].len, "333");
  CHECK_INT((int)f.pid_auth[2].len, 0);
  /* Not a message: nothing, no crash. */
  cad__arch_fields("HELLO", 5, &f);
  CHECK_INT((int)f.npid, 0);
  CHECK_STR(f.type, "");
}

/* ---- declared fields, full text, retention per channel -------------------- */

#define LAB_FMT                                                          \
  "MSH|^~\\&|LIS|LABFAC|EHR|EHRFAC|20260101120000||ORU^R01|%s|P|2.5.1\r" \
  "PID|1||M1^^^HOSP^MR\r"                                                \
  "PV1|1|O|LAB||||||||||||||||%s\r"                                      \
  "OBR|1||R1|%s^Glucose^L\r"                                             \
  "OBX|1|NM|%s||5.5\rOBX|2|NM|K||4.1\r"                                  \
  "NTE|1||%s\r"

/* Message `ctl` of `channel` received at ms. */
static void put_at(cad_archive_t *a, int64_t ms, const char *channel, const char *ctl,
                   const char *test, const char *visit, const char *note) {
  char msg[1024];
  int len = snprintf(msg, sizeof msg, LAB_FMT, ctl, visit, test, test, note);
  static uint64_t seq = 100;
  uint16_t qid = 1;
  uint64_t sq = ++seq;
  uint64_t id = ((uint64_t)ms << 20) | (sq & 0xFFFF);
  cad_archive_in_t in = {id,  channel,     NULL, 1,    "accepted", NULL, "AA",
                         msg, (size_t)len, 0,    &qid, &sq,        1,    0};
  CHECK_INT(cad_archive_inbound(a, &in), 0);
}

static cad_archive_field_t FIELDS[2];

/* lab: OBR-4.1 and visit (PV1-19), full text; adt: full text; other:
 * nothing declared.  Retentions (0 = the engine's) as given. */
static cad_archive_t *open_chans(uint64_t lab_ms, uint64_t adt_ms, uint64_t retain_ms) {
  memset(FIELDS, 0, sizeof FIELDS);
  FIELDS[0].name = "OBR-4.1";
  FIELDS[1].name = "visit";
  CHECK(cad_hl7_path_parse("OBR-4.1", 7, &FIELDS[0].path, NULL, NULL) == 0);
  CHECK(cad_hl7_path_parse("PV1-19", 6, &FIELDS[1].path, NULL, NULL) == 0);
  cad_archive_chan_t ch[2] = {{"lab", FIELDS, 2, true, lab_ms}, {"adt", NULL, 0, true, adt_ms}};
  cad_archive_opts_t o = {.data_dir = DATA, .chans = ch, .nchans = 2, .retain_ms = retain_ms};
  cad_archive_t *a = NULL;
  if (cad_archive_open(&o, &a) != 0) {
    fprintf(stderr, "cad_archive_open failed\n");
    exit(1);
  }
  return a;
}

static uint64_t count_q(const cad_archive_query_t *q) {
  uint64_t n = 0;
  char err[256] = "";
  int rc = cad_archive_count(DIR_, q, &n, err, sizeof err);
  if (rc < 0) fprintf(stderr, "count: %s\n", err);
  CHECK_INT(rc, 0);
  return n;
}

TEST(declared_fields_and_full_text) {
  fresh_dir();
  int64_t now = (int64_t)cad_now_ms();
  cad_archive_t *a = open_chans(0, 0, 0);
  put_at(a, now - 3, "lab", "L1", "GLU", "V1", "fasting sample");
  put_at(a, now - 2, "lab", "L2", "NA", "V2", "hemolyzed sample");
  put_at(a, now - 1, "other", "O1", "GLU", "V1", "fasting sample");
  cad_archive_close(a);
  cad_archive_query_t q = {.fields = {"OBR-4.1=GLU"}, .nfields = 1};
  CHECK_INT((int)count_q(&q), 1); /* other declares nothing */
  q.fields[0] = "obr-4.1=GLU";    /* canonical form */
  CHECK_INT((int)count_q(&q), 1);
  q.fields[0] = "visit=V2";
  CHECK_INT((int)count_q(&q), 1);
  q.fields[1] = "OBR-4.1=GLU";
  q.nfields = 2;
  CHECK_INT((int)count_q(&q), 0);
  q = (cad_archive_query_t){.text = "sample"};
  CHECK_INT((int)count_q(&q), 2);
  q.text = "FASTING   Sample";
  CHECK_INT((int)count_q(&q), 1);
  q.text = "GLU^glucose"; /* split by the tokenizer: a phrase */
  CHECK_INT((int)count_q(&q), 1);
  q.text = "glucose^GLU";
  CHECK_INT((int)count_q(&q), 0);
  /* Operators and quotes are words. */
  const char *hostile[] = {"OR", "sample OR x", "NOT sample", "\"",
                           "*",  "a:b",         "NEAR(x y)",  "'; DROP TABLE msg; --",
                           "(",  "^",           "sample*"};
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    q.text = hostile[i];
    uint64_t n = 99;
    char err[256] = "";
    CHECK_INT(cad_archive_count(DIR_, &q, &n, err, sizeof err), 0);
    CHECK(n == 0 || strcmp(hostile[i], "sample OR x") != 0);
  }
  q.text = "sample OR x";
  CHECK_INT((int)count_q(&q), 0); /* all three words: no body has "x" nor "or" */
  q.text = " \t ";
  uint64_t n;
  char err[256] = "";
  CHECK_INT(cad_archive_count(DIR_, &q, &n, err, sizeof err), CAD_E_INVAL);
  q = (cad_archive_query_t){.fields = {"novalue"}, .nfields = 1};
  CHECK_INT(cad_archive_count(DIR_, &q, &n, err, sizeof err), CAD_E_INVAL);
  q = (cad_archive_query_t){.limit = 10};
  CHECK_INT((int)count_q(&q), 3);
  rm_dir();
}

TEST(fts_query_quotes_every_word) {
  char out[256];
  CHECK(cad__arch_fts_query("a b", out, sizeof out));
  CHECK_STR(out, "\"a\" \"b\"");
  CHECK(cad__arch_fts_query(" say \"hi\" ", out, sizeof out));
  CHECK_STR(out, "\"say\" \"\"\"hi\"\"\"");
  CHECK(!cad__arch_fts_query("  ", out, sizeof out));
  CHECK(!cad__arch_fts_query("abcdefgh", out, 6));
  char name[64];
  CHECK(cad__arch_field_name("obr-4.1", 7, name));
  CHECK_STR(name, "OBR-4.1");
  CHECK(cad__arch_field_name("visit", 5, name));
  CHECK_STR(name, "visit");
}

static uint64_t fts_hits(const char *day_path, const char *word) {
  sqlite3 *db;
  uint64_t n = 0;
  if (sqlite3_open_v2(day_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return 999;
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM fts WHERE fts MATCH ?", -1, &s, NULL) ==
      SQLITE_OK) {
    sqlite3_bind_text(s, 1, word, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) n = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return n;
}

/* lab keeps 30 days, adt 1 day, the rest the engine's 7 days. */
TEST(retention_per_channel) {
  fresh_dir();
  int64_t now = (int64_t)cad_now_ms();
  /* Written with nothing expiring (the writer prunes at its first batch),
   * then pruned by hand as the writer does. */
  cad_archive_t *a = open_chans(0, 0, 100 * DAY_MS);
  static const int back[] = {3, 10, 40};
  for (int i = 0; i < 3; i++) {
    int64_t t = now - back[i] * DAY_MS;
    put_at(a, t, "lab", "L", "GLU", "V", "labword");
    put_at(a, t + 1, "adt", "A", "GLU", "V", "adtword");
    put_at(a, t + 2, "other", "O", "GLU", "V", "otherword");
  }
  put_at(a, now, "adt", "A", "GLU", "V", "adtword");
  cad_archive_close(a);
  cad_archive_chan_t ch[2] = {{"lab", NULL, 0, false, 30 * DAY_MS},
                              {"adt", NULL, 0, false, 1 * DAY_MS}};
  uint64_t freed = 0, rows = 0;
  uint64_t longest = cad_archive_longest_retain(7 * DAY_MS, ch, 2);
  CHECK(longest == 30 * DAY_MS);
  CHECK_INT(cad_archive_prune(DIR_, now, longest, 0, &freed), 1); /* day -40, whole */
  CHECK_INT(cad_archive_prune_channels(DIR_, now, 7 * DAY_MS, ch, 2, &rows), 0);
  CHECK_INT((int)rows, 3); /* adt at -3; adt and other at -10 */
  cad_archive_query_t q = {.channel = "lab"};
  CHECK_INT((int)count_q(&q), 2);
  q.channel = "adt";
  CHECK_INT((int)count_q(&q), 1); /* today's */
  q.channel = "other";
  CHECK_INT((int)count_q(&q), 1); /* -3 */
  /* No word of a deleted message stays in the full-text index. */
  char name[16], path[400];
  cad_archive_day_name(now - 10 * DAY_MS, name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  CHECK_INT((int)fts_hits(path, "labword"), 1);
  CHECK_INT((int)fts_hits(path, "adtword"), 0);
  cad_archive_day_name(now - 3 * DAY_MS, name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  CHECK_INT((int)fts_hits(path, "adtword"), 0);
  CHECK_INT((int)fts_hits(path, "labword"), 1);
  /* Nothing left to do: a second pass deletes nothing. */
  CHECK_INT(cad_archive_prune_channels(DIR_, now, 7 * DAY_MS, ch, 2, &rows), 0);
  CHECK_INT((int)rows, 0);
  rm_dir();
}

/* A first attempt that delivered, in the batch of its message: the row is
 * written delivered at once; one before its message (an earlier batch),
 * a retry, or a dead letter the usual way. */
TEST(first_delivery_with_its_message) {
  fresh_dir();
  cad_archive_t *a = open_with(0, 0, 512);
  cad_archive_dest_name(a, 3, "ehr");
  CHECK_INT(cad_archive_attempt(a, 3, 99, CAD_ARCH_DELIVERED, "AA early"), 0);
  cad_archive_flush(a); /* its own batch: no message yet */
  for (int i = 1; i <= 40; i++) {
    CHECK_INT(put(a, i), 0);
    CHECK_INT(cad_archive_attempt(a, 3, (uint64_t)i, i == 7 ? CAD_ARCH_RETRY : CAD_ARCH_DELIVERED,
                                  i == 7 ? "timeout" : "AA"),
              0);
  }
  CHECK_INT(cad_archive_attempt(a, 3, 7, CAD_ARCH_DELIVERED, "AA"), 0);
  CHECK_INT(put(a, 99), 0);
  cad_archive_close(a);
  cad_archive_query_t q = {.status = "delivered", .limit = 100};
  CHECK_INT(count(&q), 41);
  char name[16], path[400];
  cad_archive_day_name((int64_t)cad_now_ms(), name);
  snprintf(path, sizeof path, "%s/%s", DIR_, name);
  sqlite3 *db;
  REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
  sqlite3_stmt *s;
  REQUIRE(sqlite3_prepare_v2(db,
                             "SELECT (SELECT count(*) FROM att), (SELECT attempts FROM dlv WHERE"
                             " seq=7), (SELECT sum(attempts) FROM dlv), (SELECT count(*) FROM dlv"
                             " WHERE msg IS NULL), (SELECT detail FROM dlv WHERE seq=5)",
                             -1, &s, NULL) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  CHECK_INT(sqlite3_column_int(s, 0), 2); /* only message 7's two attempts */
  CHECK_INT(sqlite3_column_int(s, 1), 2);
  CHECK_INT(sqlite3_column_int(s, 2), 42); /* 39 + 2 + 1 (the early one) */
  CHECK_INT(sqlite3_column_int(s, 3), 0);  /* every row linked to its message */
  CHECK_STR((const char *)sqlite3_column_text(s, 4), "AA");
  sqlite3_finalize(s);
  sqlite3_close(db);
  rm_dir();
}

/* Bodies of many messages of two channels, written in one batch: stored in
 * blocks per channel, each read back exactly; a big one alone. */
TEST(bodies_in_blocks_read_back) {
  fresh_dir();
  cad_archive_t *a = open_with(0, 0, 512);
  int64_t now = (int64_t)cad_now_ms();
  enum { N = 300 };
  static char msgs[N + 1][40000];
  uint64_t ids[N + 1];
  for (int i = 0; i <= N; i++) {
    int len = snprintf(msgs[i], sizeof msgs[i], LAB_FMT, "C", "V", "GLU", "GLU", "note");
    if (i == N) { /* bigger than a block takes: alone */
      memset(msgs[i] + len, 'x', 30000);
      len += 30000;
      msgs[i][len] = 0;
    } else {
      len += snprintf(msgs[i] + len, sizeof msgs[i] - (size_t)len, "NTE|2||%d\r", i);
    }
    ids[i] = ((uint64_t)(now - N + i) << 20) | 7;
    cad_archive_in_t in = {
        ids[i],  i % 2 ? "lab" : "adt", NULL,          1,    "accepted", NULL, "AA",
        msgs[i], (size_t)len,           (uint64_t)len, NULL, NULL,       0,    0};
    CHECK_INT(cad_archive_inbound(a, &in), 0);
  }
  cad_archive_close(a);
  cad__arch_db_t *db = NULL;
  REQUIRE(cad__arch_db_open(DIR_, now / DAY_MS, false, true, &db) == 0);
  sqlite3_stmt *s;
  REQUIRE(sqlite3_prepare_v2(db->db, "SELECT count(*) FROM blk", -1, &s, NULL) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  int nblk = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  CHECK(nblk >= 2 && nblk < N / 4); /* shared, and per channel */
  for (int i = 0; i <= N; i++) {
    char *body = NULL;
    size_t len = 0;
    CHECK_INT(cad__arch_body(db->db, ids[i], &body, &len), 0);
    CHECK(body && len == strlen(msgs[i]) && memcmp(body, msgs[i], len) == 0);
    free(body);
  }
  char *body = NULL;
  size_t len;
  CHECK_INT(cad__arch_body(db->db, 12345, &body, &len), CAD_E_NOTFOUND);
  cad__arch_db_close(db);
  rm_dir();
}

/* The one time parser of search, prune and the admin API. */
TEST(parse_time_forms) {
  int64_t now = 1700000000000;
  CHECK(cad_archive_parse_time("2h", now) == now - 7200000);
  CHECK(cad_archive_parse_time("1.5m", now) == now - 90000);
  CHECK(cad_archive_parse_time("100000000d", 1000) == 0); /* before the epoch: clamped */
  CHECK(cad_archive_parse_time("1e300h", now) == -1);       /* out of range, no overflow */
  CHECK(cad_archive_parse_time("12345", now) == 12345);
  CHECK(cad_archive_parse_time("2023-11-14", now) == 1699920000000);
  CHECK(cad_archive_parse_time("2023-11-14T22:13:20Z", now) == 1700000000000);
  CHECK(cad_archive_parse_time("2023-11-14 22:13", now) == 1699999980000);
  CHECK(cad_archive_parse_time("2023-13-01", now) == -1);
  CHECK(cad_archive_parse_time("2023-11-14T25:00", now) == -1);
  CHECK(cad_archive_parse_time("h", now) == -1);
  CHECK(cad_archive_parse_time("-2h", now) == -1);
  CHECK(cad_archive_parse_time("", now) == -1);
}

TEST_MAIN()
