/* Unit tests of the journal: append, recover, torn tails, corruption in the
 * middle, segment roll-over, retention, failed writes. */
#include "journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "harness.h"
#include "journal_int.h"

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/cad_test_journal_%d", (int)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) abort();
}

static void cleanup(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) abort();
}

/* Append n messages "msg-<i>" for dest d, one write per message. */
static void append_msgs(cad_journal_t *j, int d, int from, int n) {
  for (int i = from; i < from + n; i++) {
    char p[64];
    int l = snprintf(p, sizeof p, "MSH|^~\\&|msg-%d", i);
    cad_jrec_t r = {CAD_JREC_MSG, (uint16_t)d, 0, p, (size_t)l};
    CHECK_INT(cad_journal_write(j, &r, 1, 1000 + (uint64_t)i), 0);
  }
}

/* Read every MSG of dest d from the beginning; returns how many, checks order. */
static int read_all(cad_journal_t *j, int d, int expect_first) {
  cad_jreader_t r;
  if (cad_jreader_init(&r, j->dir) != 0) return -1;
  cad_jpos_t pos = cad_journal_begin(j), end = cad_journal_end(j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  int n = 0;
  int rc;
  while ((rc = cad_jreader_next(&r, &pos, end, d, CAD_JREC_MSG, &rec)) == 1) {
    char want[64];
    int l = snprintf(want, sizeof want, "MSH|^~\\&|msg-%d", expect_first + n);
    CHECK_STRN(rec.payload.data, rec.payload.len, want);
    (void)l;
    CHECK_INT(rec.seq, (uint64_t)(n + 1));
    n++;
  }
  CHECK_INT(rc, 0);
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  return n;
}

static char *last_segment(char *buf, size_t cap) {
  if (cap < 600) abort();
  char jd[256];
  snprintf(jd, sizeof jd, "%s", dir);
  DIR *dd = opendir(jd);
  struct dirent *e;
  char best[256] = "";
  while ((e = readdir(dd)) != NULL)
    if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0)
      snprintf(best, sizeof best, "%s", e->d_name);
  closedir(dd);
  snprintf(buf, cap, "%s/%s", jd, best);
  return buf;
}

TEST(append_and_recover) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int a = cad_journal_dest(&j, "ehr", true);
  int b = cad_journal_dest(&j, "archive", true);
  CHECK_INT(a, 0);
  CHECK_INT(b, 1);
  CHECK_INT(cad_journal_dest(&j, "ehr", true), 0);
  append_msgs(&j, a, 1, 10);
  append_msgs(&j, b, 1, 3);
  cad_jrec_t done = {CAD_JREC_DONE, (uint16_t)a, 4, NULL, 0};
  CHECK_INT(cad_journal_write(&j, &done, 1, 5000), 0);
  cad_journal_close(&j);

  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(cad_journal_dest(&j, "ehr", false), 0);
  CHECK_INT(cad_journal_dest(&j, "archive", false), 1);
  CHECK_INT(cad_journal_dest(&j, "nope", false), CAD_E_NOTFOUND);
  CHECK_INT(j.dests[0].last_seq, 10);
  CHECK_INT(j.dests[0].done_seq, 4);
  CHECK_INT(j.dests[1].last_seq, 3);
  CHECK_INT(j.dests[1].done_seq, 0);
  CHECK_INT(j.stats.torn_bytes, 0);
  CHECK_INT(j.stats.corrupt_records, 0);
  CHECK_INT(read_all(&j, 0, 1), 10);
  CHECK_INT(read_all(&j, 1, 1), 3);
  /* Sequences continue after a restart. */
  append_msgs(&j, a, 11, 1);
  CHECK_INT(j.dests[0].last_seq, 11);
  cad_journal_close(&j);
  cleanup();
}

TEST(batch_write_assigns_sequences) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int a = cad_journal_dest(&j, "a", true), b = cad_journal_dest(&j, "b", true);
  cad_jrec_t recs[4] = {{CAD_JREC_MSG, (uint16_t)a, 0, "MSH|1", 5},
                        {CAD_JREC_MSG, (uint16_t)b, 0, "MSH|2", 5},
                        {CAD_JREC_MSG, (uint16_t)a, 0, "MSH|3", 5},
                        {CAD_JREC_MSG, (uint16_t)a, 0, "MSH|4", 5}};
  CHECK_INT(cad_journal_write(&j, recs, 4, 1), 0);
  CHECK_INT(recs[0].seq, 1);
  CHECK_INT(recs[1].seq, 1);
  CHECK_INT(recs[2].seq, 2);
  CHECK_INT(recs[3].seq, 3);
  cad_journal_close(&j);
  cleanup();
}

TEST(torn_tail_is_cut_at_every_offset) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int a = cad_journal_dest(&j, "ehr", true);
  append_msgs(&j, a, 1, 5);
  cad_journal_close(&j);
  char seg[600];
  last_segment(seg, sizeof seg);
  struct stat st;
  REQUIRE(stat(seg, &st) == 0);
  size_t full = (size_t)st.st_size;
  size_t reclen = CAD_JREC_HDR + strlen("MSH|^~\\&|msg-1");
  /* Cut inside the last record at every byte: 4 messages survive.  A torn
   * tail is what a crash leaves: no clean-shutdown marker. */
  char clean[400];
  snprintf(clean, sizeof clean, "%s/clean", dir);
  for (size_t cut = full - reclen + 1; cut < full; cut += 3) {
    REQUIRE(truncate(seg, (off_t)cut) == 0);
    REQUIRE(unlink(clean) == 0);
    REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
    CHECK_INT(j.dests[0].last_seq, 4);
    CHECK(j.stats.torn_bytes > 0);
    CHECK(strstr(j.report, "torn tail") != NULL);
    CHECK_INT(read_all(&j, 0, 1), 4);
    cad_journal_close(&j);
    /* Recovery truncated the file to the valid prefix. */
    REQUIRE(stat(seg, &st) == 0);
    CHECK_INT(st.st_size, full - reclen);
    /* Put the 5th record back for the next round. */
    REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
    append_msgs(&j, 0, 5, 1);
    cad_journal_close(&j);
  }
  cleanup();
}

TEST(corruption_in_the_middle_is_reported_and_skipped) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int a = cad_journal_dest(&j, "ehr", true);
  append_msgs(&j, a, 1, 5);
  cad_journal_close(&j);
  char seg[600];
  last_segment(seg, sizeof seg);
  struct stat st;
  REQUIRE(stat(seg, &st) == 0);
  size_t reclen = CAD_JREC_HDR + strlen("MSH|^~\\&|msg-1");
  /* Flip a payload byte of the 3rd message (records: DEST, then MSGs). */
  off_t off = (off_t)st.st_size - (off_t)(3 * reclen) + CAD_JREC_HDR + 2;
  int fd = open(seg, O_RDWR);
  REQUIRE(fd >= 0);
  char c;
  REQUIRE(pread(fd, &c, 1, off) == 1);
  c ^= 0x5a;
  REQUIRE(pwrite(fd, &c, 1, off) == 1);
  close(fd);
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(j.stats.corrupt_records, 1);
  CHECK(strstr(j.report, "CORRUPT") != NULL);
  CHECK_INT(j.dests[0].last_seq, 5);
  /* The reader skips the bad record: seq 1, 2, 4, 5. */
  cad_jreader_t r;
  REQUIRE(cad_jreader_init(&r, j.dir) == 0);
  cad_jpos_t pos = cad_journal_begin(&j), end = cad_journal_end(&j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  uint64_t seqs[8];
  int n = 0;
  while (n < 8 && cad_jreader_next(&r, &pos, end, 0, CAD_JREC_MSG, &rec) == 1) seqs[n++] = rec.seq;
  CHECK_INT(n, 4);
  CHECK_INT(seqs[0], 1);
  CHECK_INT(seqs[1], 2);
  CHECK_INT(seqs[2], 4);
  CHECK_INT(seqs[3], 5);
  CHECK(r.corrupt_records >= 1);
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  cad_journal_close(&j);
  cleanup();
}

TEST(segments_roll_and_retention_keeps_unfinished) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 8192, false) == 0);
  int a = cad_journal_dest(&j, "ehr", true);
  int b = cad_journal_dest(&j, "lis", true);
  char big[1000];
  memset(big, 'x', sizeof big);
  memcpy(big, "MSH|", 4);
  for (int i = 0; i < 60; i++) {
    cad_jrec_t r = {CAD_JREC_MSG, (uint16_t)(i % 2 ? b : a), 0, big, sizeof big};
    CHECK_INT(cad_journal_write(&j, &r, 1, (uint64_t)i), 0);
  }
  CHECK(j.nsegs >= 5);
  size_t before = j.nsegs;
  /* Nothing finished: nothing may be deleted, even over the size limit. */
  CHECK_INT(cad_journal_retain(&j, 0, 1, 100000, cad_journal_end(&j)), 0);
  /* Finish every "ehr" message but only the first 10 of "lis". */
  cad_jrec_t d1 = {CAD_JREC_DONE, (uint16_t)a, 30, NULL, 0};
  cad_jrec_t d2 = {CAD_JREC_DONE, (uint16_t)b, 10, NULL, 0};
  CHECK_INT(cad_journal_write(&j, &d1, 1, 100), 0);
  CHECK_INT(cad_journal_write(&j, &d2, 1, 100), 0);
  int del = cad_journal_retain(&j, 0, 1, 100000, cad_journal_end(&j));
  CHECK(del >= 1);
  CHECK(j.nsegs < before);
  /* Every unfinished "lis" message (11..30) is still readable after restart. */
  cad_journal_close(&j);
  REQUIRE(cad_journal_open(&j, dir, 8192, false) == 0);
  CHECK_INT(cad_journal_dest(&j, "lis", false), b);
  CHECK_INT(j.dests[b].last_seq, 30);
  CHECK_INT(j.dests[b].done_seq, 10);
  CHECK_INT(j.dests[a].done_seq, 30);
  cad_jreader_t r;
  REQUIRE(cad_jreader_init(&r, j.dir) == 0);
  cad_jpos_t pos = cad_journal_begin(&j), end = cad_journal_end(&j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  uint64_t want = 11;
  bool all = true;
  while (cad_jreader_next(&r, &pos, end, b, CAD_JREC_MSG, &rec) == 1) {
    if (rec.seq <= 10) continue;
    if (rec.seq != want) all = false;
    want++;
  }
  CHECK(all);
  CHECK_INT(want, 31);
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  cad_journal_close(&j);
  cleanup();
}

TEST(failed_write_commits_nothing) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int a = cad_journal_dest(&j, "ehr", true);
  append_msgs(&j, a, 1, 3);
  /* Make the next write fail: the file may not grow past its size. */
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl;
  getrlimit(RLIMIT_FSIZE, &rl);
  struct rlimit small = rl;
  small.rlim_cur = (rlim_t)j.segs[j.nsegs - 1].size + 10;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  char p[200];
  memset(p, 'y', sizeof p);
  cad_jrec_t r = {CAD_JREC_MSG, (uint16_t)a, 0, p, sizeof p};
  int rc = cad_journal_write(&j, &r, 1, 9);
  CHECK(rc < 0);
  CHECK_INT(r.seq, 0);
  CHECK_INT(j.dests[a].last_seq, 3);
  REQUIRE(setrlimit(RLIMIT_FSIZE, &rl) == 0);
  /* Space is back: the next write works and lands where the failed one began. */
  append_msgs(&j, a, 4, 1);
  CHECK_INT(j.dests[a].last_seq, 4);
  cad_journal_close(&j);
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(j.stats.corrupt_records, 0);
  CHECK_INT(j.stats.torn_bytes, 0);
  CHECK_INT(read_all(&j, a, 1), 4);
  cad_journal_close(&j);
  cleanup();
}

TEST(readonly_open_changes_nothing) {
  fresh_dir();
  cad_journal_t j;
  CHECK(cad_journal_open(&j, dir, 0, true) < 0); /* does not exist: not created */
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  append_msgs(&j, cad_journal_dest(&j, "x", true), 1, 2);
  cad_journal_close(&j);
  char seg[600];
  last_segment(seg, sizeof seg);
  struct stat st;
  REQUIRE(stat(seg, &st) == 0);
  REQUIRE(truncate(seg, st.st_size - 5) == 0);
  REQUIRE(cad_journal_open(&j, dir, 0, true) == 0);
  CHECK_INT(j.dests[0].last_seq, 1);
  cad_journal_close(&j);
  struct stat st2;
  REQUIRE(stat(seg, &st2) == 0);
  CHECK_INT(st2.st_size, st.st_size - 5); /* not truncated by a read-only open */
  cleanup();
}

TEST(zero_padding_is_not_damage) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int a = cad_journal_dest(&j, "ehr", true);
  append_msgs(&j, a, 1, 5);
  /* A crash now leaves the zero-filled space after the last record: copy
   * the open segment as it is on disk and recover the copy. */
  char seg[600], copydir[300], cmd[2000];
  last_segment(seg, sizeof seg);
  struct stat st;
  REQUIRE(stat(seg, &st) == 0);
  CHECK(st.st_size > (off_t)j.segs[j.nsegs - 1].size); /* padded ahead */
  snprintf(copydir, sizeof copydir, "%s.copy", dir);
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir %s && cp %s %s/", copydir, copydir, seg, copydir);
  REQUIRE(system(cmd) == 0);
  cad_journal_close(&j);
  cad_journal_t k;
  REQUIRE(cad_journal_open(&k, copydir, 0, false) == 0);
  CHECK_INT(k.stats.torn_bytes, 0);
  CHECK_INT(k.stats.corrupt_records, 0);
  CHECK_INT(k.report[0], 0);
  CHECK_INT(k.dests[0].last_seq, 5);
  CHECK_INT(read_all(&k, 0, 1), 5);
  append_msgs(&k, 0, 6, 1);
  CHECK_INT(read_all(&k, 0, 1), 6);
  cad_journal_close(&k);
  /* A closed segment has no padding left. */
  REQUIRE(cad_journal_open(&k, copydir, 0, true) == 0);
  uint64_t committed = k.segs[k.nsegs - 1].size;
  cad_journal_close(&k);
  char copyseg[700];
  snprintf(copyseg, sizeof copyseg, "%s/%s", copydir, strrchr(seg, '/') + 1);
  REQUIRE(stat(copyseg, &st) == 0);
  CHECK_INT(st.st_size, committed);
  snprintf(cmd, sizeof cmd, "rm -rf %s", copydir);
  REQUIRE(system(cmd) == 0);
  cleanup();
}

TEST(corrupt_length_of_another_destination_skips_nothing) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int a = cad_journal_dest(&j, "a", true), b = cad_journal_dest(&j, "b", true);
  cad_jrec_t recs[4] = {{CAD_JREC_MSG, (uint16_t)a, 0, "MSH|a1", 6},
                        {CAD_JREC_MSG, (uint16_t)b, 0, "MSH|b1", 6},
                        {CAD_JREC_MSG, (uint16_t)b, 0, "MSH|b2", 6},
                        {CAD_JREC_MSG, (uint16_t)a, 0, "MSH|a2", 6}};
  REQUIRE(cad_journal_write(&j, recs, 4, 1) == 0);
  cad_journal_close(&j);
  char seg[600];
  last_segment(seg, sizeof seg);
  struct stat st;
  REQUIRE(stat(seg, &st) == 0);
  /* a1's length field claims it also covers b1 and b2. */
  off_t a1 = st.st_size - 4 * (CAD_JREC_HDR + 6);
  int fd = open(seg, O_RDWR);
  REQUIRE(fd >= 0);
  unsigned char len4[4] = {(unsigned char)(6 + 2 * (CAD_JREC_HDR + 6)), 0, 0, 0};
  REQUIRE(pwrite(fd, len4, 4, a1 + 8) == 4);
  close(fd);
  REQUIRE(cad_journal_open(&j, dir, 0, true) == 0);
  CHECK_INT(j.dests[b].last_seq, 2); /* recovery kept b1 and b2 */
  cad_jreader_t r;
  REQUIRE(cad_jreader_init(&r, j.dir) == 0);
  cad_jpos_t pos = cad_journal_begin(&j), end = cad_journal_end(&j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  int n = 0;
  while (cad_jreader_next(&r, &pos, end, b, CAD_JREC_MSG, &rec) == 1) n++;
  CHECK_INT(n, 2); /* the reader for b does not jump over them */
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  cad_journal_close(&j);
  cleanup();
}

static size_t read_file(const char *path, unsigned char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

static void write_file(const char *path, const unsigned char *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, n, f) != n) abort();
  fclose(f);
}

TEST(a_segment_left_without_names_names_them_at_open) {
  /* A crash between creating a segment (header synced) and writing its DEST
   * records leaves the newest segment without names; once retention deletes
   * the older ones, the names must still be known. */
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int d = cad_journal_dest(&j, "ehr", true);
  REQUIRE(d >= 0);
  append_msgs(&j, d, 1, 3);
  cad_jrec_t done = {CAD_JREC_DONE, (uint16_t)d, 3, NULL, 0};
  CHECK_INT(cad_journal_write(&j, &done, 1, 2000), 0);
  uint64_t no = j.segs[j.nsegs - 1].no;
  cad_journal_close(&j);
  /* The next segment as the crash left it: a valid header, nothing else. */
  char path[600], next[600];
  last_segment(path, sizeof path);
  unsigned char h[CAD_JSEG_HDR];
  cad__jseg_encode(h, no + 1, 5000, 0x1122334455667788ull);
  snprintf(next, sizeof next, "%s/%016llu.seg", dir, (unsigned long long)(no + 1));
  write_file(next, h, sizeof h);

  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(j.segs[j.nsegs - 1].no, no + 1);
  /* Everything in the older segment is finished: retention deletes it. */
  CHECK(cad_journal_retain(&j, 0, 1, 0, cad_journal_end(&j)) >= 1);
  CHECK_INT(j.nsegs, 1);
  cad_journal_close(&j);
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(cad_journal_dest(&j, "ehr", false), d);
  CHECK_INT(j.dests[d].last_seq, 3);
  CHECK_INT(j.dests[d].done_seq, 3);
  cad_journal_close(&j);
  cleanup();
}

TEST(finished_beyond_the_last_readable_message) {
  /* The last MSG of a destination is damaged, its DONE mark is not: the next
   * message must go after the finished position, not count as finished. */
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  int d = cad_journal_dest(&j, "ehr", true);
  append_msgs(&j, d, 1, 2);
  cad_jrec_t done = {CAD_JREC_DONE, (uint16_t)d, 2, NULL, 0};
  CHECK_INT(cad_journal_write(&j, &done, 1, 2000), 0);
  cad_journal_close(&j);
  char path[600];
  last_segment(path, sizeof path);
  static unsigned char b[1 << 16];
  size_t n = read_file(path, b, sizeof b);
  unsigned char *m2 = memmem(b, n, "msg-2", 5);
  REQUIRE(m2);
  m2[4] ^= 1; /* bit rot in MSG 2's payload: its CRC no longer holds */
  write_file(path, b, n);

  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK(strstr(j.report, "finished up to 2") != NULL);
  CHECK_INT(j.dests[d].last_seq, 2);
  char p[] = "MSH|^~\\&|msg-3";
  cad_jrec_t r = {CAD_JREC_MSG, (uint16_t)d, 0, p, strlen(p)};
  CHECK_INT(cad_journal_write(&j, &r, 1, 3000), 0);
  CHECK_INT(r.seq, 3);
  CHECK(r.seq > j.dests[d].done_seq);
  cad_journal_close(&j);
  cleanup();
}

/* Count the files in DIR/damaged and check each is 0600; returns how many. */
static int damaged_files(void) {
  char dd[400];
  snprintf(dd, sizeof dd, "%s/damaged", dir);
  DIR *d = opendir(dd);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dd, e->d_name);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    n++;
  }
  closedir(d);
  return n;
}

/* A message body carrying a byte-exact forged DONE record for `seq` of
 * destination 0: once in version 1's framing (what fooled recovery before),
 * once in version 2's with a guessed salt (a sender cannot know the real
 * one). */
static size_t forged_body(char *out, size_t cap, int i, uint64_t seq) {
  size_t n = (size_t)snprintf(out, cap, "MSH|^~\\&|msg-%d\rOBX|1|ED|||", i);
  cad__jhdr_t h = {CAD_JREC_DONE, 0, 0, 0, seq, 4242};
  cad__jkey_t v1 = {1, CAD__JREC_MAGIC1, 0, 32};
  cad__jkey_t v2 = {2, 0x55667788u, 0x1122334455667788ull, CAD_JSEG_HDR};
  if (n + 2 * CAD_JREC_HDR + 2 > cap) abort();
  cad__jrec_encode((unsigned char *)out + n, &v1, &h, NULL);
  n += CAD_JREC_HDR;
  cad__jrec_encode((unsigned char *)out + n, &v2, &h, NULL);
  n += CAD_JREC_HDR;
  out[n++] = '\r';
  return n;
}

TEST(forged_record_in_a_body_is_not_taken_for_a_record) {
  /* 60 messages; the 30th carries forged DONE records for seq 60 and its
   * own header is damaged, so recovery searches for the next record from
   * inside its body.  Only the 30th may be lost (version 1 counted all 60
   * delivered). */
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  REQUIRE(cad_journal_dest(&j, "ehr", true) == 0);
  off_t at30 = 0;
  for (int i = 1; i <= 60; i++) {
    char p[256];
    size_t l = i == 30 ? forged_body(p, sizeof p, i, 60)
                       : (size_t)snprintf(p, sizeof p, "MSH|^~\\&|msg-%d", i);
    if (i == 30) at30 = (off_t)j.segs[j.nsegs - 1].size;
    cad_jrec_t r = {CAD_JREC_MSG, 0, 0, p, l};
    CHECK_INT(cad_journal_write(&j, &r, 1, 1000 + (uint64_t)i), 0);
  }
  cad_journal_close(&j);
  char seg[600];
  last_segment(seg, sizeof seg);
  int fd = open(seg, O_RDWR);
  REQUIRE(fd >= 0);
  unsigned char junk[4] = {0xde, 0xad, 0xbe, 0xef};
  REQUIRE(pwrite(fd, junk, 4, at30) == 4); /* the 30th record's tag */
  close(fd);
  for (int round = 0; round < 2; round++) { /* and again: the same answer */
    REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
    CHECK_INT(j.dests[0].done_seq, 0);
    CHECK_INT(j.dests[0].delivered, 0);
    CHECK_INT(j.dests[0].last_seq, 60);
    CHECK_INT(j.stats.corrupt_records, 1);
    CHECK(strstr(j.report, "CORRUPT record") != NULL);
    cad_jreader_t r;
    REQUIRE(cad_jreader_init(&r, j.dir) == 0);
    cad_jpos_t pos = cad_journal_begin(&j), end = cad_journal_end(&j);
    cad_jread_t rec;
    memset(&rec, 0, sizeof rec);
    int n = 0;
    bool only30 = true;
    while (cad_jreader_next(&r, &pos, end, 0, 0, &rec) == 1) {
      if (rec.type == CAD_JREC_DEST) continue;
      CHECK_INT(rec.type, CAD_JREC_MSG);
      n++;
      only30 &= rec.seq != 30;
    }
    CHECK_INT(n, 59);
    CHECK(only30);
    cad_buf_free(&rec.payload);
    cad_jreader_free(&r);
    cad_journal_close(&j);
  }
  CHECK_INT(damaged_files(), 1); /* the 30th, kept aside once */
  cleanup();
}

TEST(torn_forged_message_at_the_tail_loses_nothing_before_it) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  REQUIRE(cad_journal_dest(&j, "ehr", true) == 0);
  append_msgs(&j, 0, 1, 40);
  char p[256];
  size_t l = forged_body(p, sizeof p, 41, 40);
  off_t at41 = (off_t)j.segs[j.nsegs - 1].size;
  cad_jrec_t r = {CAD_JREC_MSG, 0, 0, p, l};
  CHECK_INT(cad_journal_write(&j, &r, 1, 5000), 0);
  cad_journal_close(&j);
  /* A power cut tore the 41st record after its forged records. */
  char seg[600], clean[400];
  last_segment(seg, sizeof seg);
  REQUIRE(truncate(seg, at41 + CAD_JREC_HDR + (off_t)l - 1) == 0);
  snprintf(clean, sizeof clean, "%s/clean", dir);
  REQUIRE(unlink(clean) == 0);
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(j.dests[0].done_seq, 0);
  CHECK_INT(j.dests[0].last_seq, 40);
  CHECK(j.stats.torn_bytes > 0);
  CHECK_INT(j.stats.corrupt_records, 0);
  CHECK_INT(read_all(&j, 0, 1), 40);
  cad_journal_close(&j);
  cleanup();
}

TEST(after_a_clean_shutdown_a_damaged_last_record_is_damage) {
  fresh_dir();
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  REQUIRE(cad_journal_dest(&j, "ehr", true) == 0);
  append_msgs(&j, 0, 1, 5);
  cad_journal_close(&j);
  char seg[600];
  last_segment(seg, sizeof seg);
  struct stat st;
  REQUIRE(stat(seg, &st) == 0);
  REQUIRE(truncate(seg, st.st_size - 3) == 0);
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK(j.stats.clean);
  CHECK_INT(j.stats.torn_bytes, 0);
  CHECK(j.stats.corrupt_records >= 1);
  CHECK(strstr(j.report, "after a clean shutdown") != NULL);
  CHECK(strstr(j.report, "sequence 5") != NULL);
  CHECK_INT(j.stats.kept_aside, 1);
  CHECK_INT(read_all(&j, 0, 1), 4);
  cad_journal_close(&j);
  CHECK_INT(damaged_files(), 1);
  /* The copy holds the damaged record's bytes as they were. */
  char kept[800];
  snprintf(kept, sizeof kept, "%s/damaged/%016llu-%lld.bin", dir,
           (unsigned long long)strtoull(strrchr(seg, '/') + 1, NULL, 10),
           (long long)(st.st_size - (off_t)(CAD_JREC_HDR + strlen("MSH|^~\\&|msg-5"))));
  REQUIRE(stat(kept, &st) == 0);
  CHECK_INT(st.st_size, CAD_JREC_HDR + strlen("MSH|^~\\&|msg-5") - 3);
  /* A crash (no marker) with the same tail is a torn tail. */
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK(j.stats.clean);
  CHECK_INT(j.stats.corrupt_records, 0);
  cad_journal_close(&j);
  cleanup();
}

TEST(version_1_segments_are_read_and_never_appended_to) {
  /* A journal written by the previous format: a 32-byte segment header and
   * records tagged "CADQ" whose CRC has no salt. */
  fresh_dir();
  REQUIRE(mkdir(dir, 0750) == 0);
  unsigned char b[1024];
  memset(b, 0, 32);
  cad__jput32(b, CAD__JSEG_MAGIC);
  b[4] = 1;
  cad__jput64(b + 8, 7);
  cad__jput64(b + 16, 1000);
  cad__jput32(b + 28, (uint32_t)crc32(0L, b, 28));
  size_t n = 32;
  cad__jkey_t v1 = {1, CAD__JREC_MAGIC1, 0, 32};
  unsigned char dest[8 + 3] = {0, 0, 0, 0, 0, 0, 0, 0, 'e', 'h', 'r'};
  cad__jhdr_t h = {CAD_JREC_DEST, 0, sizeof dest, 0, 0, 1000};
  cad__jrec_encode(b + n, &v1, &h, dest);
  memcpy(b + n + CAD_JREC_HDR, dest, sizeof dest);
  n += CAD_JREC_HDR + sizeof dest;
  for (int i = 1; i <= 3; i++) {
    char p[32];
    int l = snprintf(p, sizeof p, "MSH|^~\\&|msg-%d", i);
    h = (cad__jhdr_t){CAD_JREC_MSG, 0, (uint32_t)l, 0, (uint64_t)i, 1000};
    cad__jrec_encode(b + n, &v1, &h, p);
    memcpy(b + n + CAD_JREC_HDR, p, (size_t)l);
    n += CAD_JREC_HDR + (size_t)l;
  }
  char path[400];
  snprintf(path, sizeof path, "%s/%016d.seg", dir, 7);
  write_file(path, b, n);
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(j.stats.corrupt_records, 0);
  CHECK_INT(cad_journal_dest(&j, "ehr", false), 0);
  CHECK_INT(j.dests[0].last_seq, 3);
  CHECK_INT(j.nsegs, 2); /* writing goes on in a new, version-2 segment */
  CHECK_INT(j.segs[0].key.version, 1);
  CHECK_INT(j.segs[1].key.version, CAD_JOURNAL_VERSION);
  append_msgs(&j, 0, 4, 2);
  CHECK_INT(read_all(&j, 0, 1), 5);
  cad_journal_close(&j);
  struct stat st;
  REQUIRE(stat(path, &st) == 0);
  CHECK_INT(st.st_size, n); /* the old segment is as it was */
  REQUIRE(cad_journal_open(&j, dir, 0, false) == 0);
  CHECK_INT(read_all(&j, 0, 1), 5);
  cad_journal_close(&j);
  cleanup();
}

TEST_MAIN()
