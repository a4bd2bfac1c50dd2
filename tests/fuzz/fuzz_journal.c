/* fuzz_journal.c - the durable queue's journal recovery (engine/store/journal.c):
 * arbitrary bytes as the segment files of a journal directory, opened as
 * the engine does after a crash.
 *
 * The input is the segment files one after another: a new file starts at
 * every "CADJ" (the segment magic), at most 8 files; bytes before the first
 * magic are a file of their own.  Files are numbered 1, 2, ... unless a
 * header names a number up to 3 above the one before (a gap in numbering).
 * Each input runs twice, as is and, when that changes anything, with every
 * CRC made right, so that the fuzzer gets past the CRC to what records say.
 *
 * In a fresh directory (mkdtemp under $TMPDIR or /tmp, removed afterwards):
 *   1. a read-only open must succeed and change no file;
 *   2. a read-write open must succeed;
 *   after each, a reader over [begin, end) must yield exactly the records
 *   recovery counted, in order, each with a known type, a destination below
 *   CAD_JOURNAL_MAX_DESTS and the bytes the file holds at its position;
 *   3. one message is appended for a new destination "fuzz" and for each of
 *   the first named ones: each gets the next sequence, above what the
 *   journal counts as finished; then retention runs and the journal closes;
 *   4. an open again must end where that session did (no torn tail) and find
 *   every appended message under its destination's id, and the id under
 *   its name (unless the input named destinations ambiguously, which the
 *   writer never does).
 * Recovery may report damage; it must not fail, crash, leak or lose what
 * was appended after it. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "journal.h"
#include "journal_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[512]; /* this input's journal directory, "" when none */
static void remove_dir(void);

#define FAIL(...)                                  \
  do {                                             \
    fprintf(stderr, "fuzz_journal: " __VA_ARGS__); \
    fputc('\n', stderr);                           \
    remove_dir();                                  \
    abort();                                       \
  } while (0)

#define MAX_FILES 8
#define MAX_APPEND 8 /* named destinations that get a message, besides "fuzz" */

static const unsigned char seg_magic[4] = {'C', 'A', 'D', 'J'};

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

typedef struct {
  const unsigned char *p;
  size_t len;
  uint64_t no;
} piece_t;

/* Cut the input into segment files and number them. */
static size_t split(const unsigned char *b, size_t n, piece_t *out) {
  size_t np = 0, start = 0;
  uint64_t prev = 0;
  while (np < MAX_FILES) {
    const unsigned char *q = NULL;
    if (n - start > 4) q = memmem(b + start + 1, n - start - 1, seg_magic, 4);
    if (np == MAX_FILES - 1) q = NULL;
    size_t end = q ? (size_t)(q - b) : n;
    piece_t *pc = &out[np++];
    pc->p = b + start;
    pc->len = end - start;
    uint64_t no = pc->len >= 16 && memcmp(pc->p, seg_magic, 4) == 0 ? get64(pc->p + 8) : 0;
    pc->no = no > prev && no - prev <= 3 ? no : prev + 1;
    prev = pc->no;
    if (!q) break;
    start = end;
  }
  return np;
}

/* Make every CRC in one segment file right (journal.h has the layout, of
 * either version; records are framed with the salt the header gives).
 * Returns whether anything changed. */
static bool fix_crcs(unsigned char *b, size_t n, uint64_t no) {
  bool changed = false;
  cad__jkey_t k;
  uint64_t created;
  cad__jseg_decode(b, n, no, &k, &created);
  if (n >= k.hdr && memcmp(b, seg_magic, 4) == 0) {
    uint32_t c = (uint32_t)crc32(0L, b, k.hdr - 4);
    changed |= get32(b + k.hdr - 4) != c;
    put32(b + k.hdr - 4, c);
  }
  size_t off = k.hdr;
  while (off + CAD_JREC_HDR <= n) {
    unsigned char *h = b + off;
    cad__jhdr_t rh;
    if (!cad__jrec_parse(h, &k, &rh) || rh.len > n - off - CAD_JREC_HDR) {
      off++;
      continue;
    }
    uint32_t old = get32(h + 12);
    cad__jrec_encode(h, &k, &rh, h + CAD_JREC_HDR);
    changed |= old != get32(h + 12);
    off += CAD_JREC_HDR + rh.len;
  }
  return changed;
}

static void seg_path(char *buf, size_t cap, uint64_t no) {
  snprintf(buf, cap, "%s/%016llu.seg", dir, (unsigned long long)no);
}

static void write_file(const char *path, const unsigned char *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) FAIL("cannot create %s", path);
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, p + done, n - done);
    if (w <= 0) FAIL("cannot write %s", path);
    done += (size_t)w;
  }
  close(fd);
}

static bool same_file(const char *path, const unsigned char *p, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned char buf[4096];
  size_t off = 0;
  bool same = true;
  ssize_t r;
  while (same && (r = read(fd, buf, sizeof buf)) > 0) {
    same = off + (size_t)r <= n && memcmp(buf, p + off, (size_t)r) == 0;
    off += (size_t)r;
  }
  close(fd);
  return same && off == n;
}

static void empty_dir(void) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[800];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) == 0) continue;
    /* damaged/: what recovery kept aside */
    DIR *sd = opendir(path);
    struct dirent *se;
    char sub[1200];
    while (sd && (se = readdir(sd)) != NULL) {
      if (se->d_name[0] == '.') continue;
      snprintf(sub, sizeof sub, "%s/%s", path, se->d_name);
      unlink(sub);
    }
    if (sd) closedir(sd);
    rmdir(path);
  }
  closedir(d);
}

/* Also before a FAIL's abort, so that findings leave nothing behind. */
static void remove_dir(void) {
  if (!dir[0]) return;
  empty_dir();
  rmdir(dir);
  dir[0] = 0;
}

/* Where a read-write open may write: from the end of the last segment's
 * valid prefix (as a read-only open finds it) on, the journal restates the
 * destinations that segment does not name.  0: no such place (read-only). */
static uint64_t restate_seg, restate_off;

/* Read every record from the start; check each (against the files written,
 * pc[0..np), where the journal has not rewritten them); returns how many,
 * not counting DEST records the open itself wrote.
 * *clash: a DEST record names its destination otherwise than recovery did. */
static uint64_t read_all(const cad_journal_t *j, const piece_t *pc, size_t np, bool *clash) {
  cad_jreader_t r;
  if (cad_jreader_init(&r, j->dir) != 0) FAIL("cad_jreader_init failed");
  cad_jpos_t pos = cad_journal_begin(j), end = cad_journal_end(j), last = {0, 0};
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  uint64_t n = 0;
  int rc;
  while ((rc = cad_jreader_next(&r, &pos, end, -1, 0, &rec)) == 1) {
    if (rec.type < CAD_JREC_MSG || rec.type > CAD_JREC_PURGE) FAIL("record of type %d", rec.type);
    if (rec.dest >= CAD_JOURNAL_MAX_DESTS) FAIL("record for destination %u", rec.dest);
    if (rec.pos.seg < last.seg || (rec.pos.seg == last.seg && rec.pos.off < last.off))
      FAIL("record at %llu:%llu before the one read last", (unsigned long long)rec.pos.seg,
           (unsigned long long)rec.pos.off);
    /* (In a new segment when the last one is of format version 1.) */
    if (restate_seg &&
        (rec.pos.seg > restate_seg || (rec.pos.seg == restate_seg && rec.pos.off >= restate_off))) {
      if (rec.type != CAD_JREC_DEST)
        FAIL("record of type %d written by the open at %llu:%llu", rec.type,
             (unsigned long long)rec.pos.seg, (unsigned long long)rec.pos.off);
      last = rec.next;
      continue;
    }
    if (rec.next.seg != rec.pos.seg || rec.next.off != rec.pos.off + CAD_JREC_HDR + rec.payload.len)
      FAIL("record at %llu:%llu: payload of %zu bytes, next at %llu:%llu",
           (unsigned long long)rec.pos.seg, (unsigned long long)rec.pos.off, rec.payload.len,
           (unsigned long long)rec.next.seg, (unsigned long long)rec.next.off);
    /* What the reader gives is what the file holds there. */
    for (size_t i = 0; i < np; i++) {
      if (pc[i].no != rec.pos.seg) continue;
      if (rec.next.off > pc[i].len)
        FAIL("record at %llu:%llu ends past the file", (unsigned long long)rec.pos.seg,
             (unsigned long long)rec.pos.off);
      const unsigned char *h = pc[i].p + rec.pos.off;
      if (h[5] != rec.type || (h[6] | h[7] << 8) != rec.dest || get64(h + 16) != rec.seq ||
          get64(h + 24) != rec.time_ms ||
          (rec.payload.len && memcmp(h + CAD_JREC_HDR, rec.payload.data, rec.payload.len) != 0))
        FAIL("record at %llu:%llu is not the bytes of the file", (unsigned long long)rec.pos.seg,
             (unsigned long long)rec.pos.off);
    }
    if (rec.type == CAD_JREC_DEST && rec.payload.len >= 8 && rec.dest < CAD_JOURNAL_MAX_DESTS) {
      const char *name = j->dests[rec.dest].name;
      size_t nl = strnlen(rec.payload.data + 8, rec.payload.len - 8);
      *clash |= !name || strlen(name) != nl || memcmp(name, rec.payload.data + 8, nl) != 0;
    }
    last = rec.next;
    n++;
  }
  if (rc != 0) FAIL("cad_jreader_next: %s", cad_strerror(rc));
  if (pos.seg != end.seg || pos.off != end.off) FAIL("the reader stopped before the end");
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  return n;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Check what an open recovered.  Returns whether the input names
 * destinations ambiguously: two names for one, or one name for two (the
 * writer never does that; then which name wins is not checked). */
static bool check_recovered(const cad_journal_t *j, const char *what, const piece_t *pc,
                            size_t np) {
  bool clash = false;
  uint64_t n = read_all(j, pc, np, &clash);
  if (n != j->stats.records)
    FAIL("%s open: recovery counted %llu records, the reader yields %llu (%s)", what,
         (unsigned long long)j->stats.records, (unsigned long long)n, j->report);
  if (j->ndests > CAD_JOURNAL_MAX_DESTS) FAIL("%u destinations", j->ndests);
  const char *names[CAD_JOURNAL_MAX_DESTS];
  size_t nn = 0;
  for (uint16_t d = 0; d < j->ndests; d++)
    if (j->dests[d].name) names[nn++] = j->dests[d].name;
  qsort(names, nn, sizeof *names, name_cmp);
  for (size_t i = 1; i < nn; i++) clash |= strcmp(names[i - 1], names[i]) == 0;
  return clash;
}

typedef struct {
  char name[260];
  uint16_t id;
  uint64_t seq;
  char payload[32];
  size_t len;
} appended_t;

/* Is the MSG `a` of destination `id` in the journal? */
static bool find_msg(const cad_journal_t *j, int id, const appended_t *a) {
  cad_jreader_t r;
  if (cad_jreader_init(&r, j->dir) != 0) FAIL("cad_jreader_init failed");
  cad_jpos_t pos = cad_journal_begin(j), end = cad_journal_end(j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  bool found = false;
  while (!found && cad_jreader_next(&r, &pos, end, id, CAD_JREC_MSG, &rec) == 1)
    found = rec.seq == a->seq && rec.payload.len == a->len &&
            memcmp(rec.payload.data, a->payload, a->len) == 0;
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  return found;
}

static void run(const piece_t *pc, size_t np) {
  char path[600];
  for (size_t i = 0; i < np; i++) {
    seg_path(path, sizeof path, pc[i].no);
    write_file(path, pc[i].p, pc[i].len);
  }

  /* 1. Read-only: what `caduceus queue` does; nothing may change. */
  cad_journal_t j;
  int rc = cad_journal_open(&j, dir, 0, true);
  if (rc != 0) FAIL("read-only open failed: %s", cad_strerror(rc));
  restate_seg = restate_off = 0;
  check_recovered(&j, "read-only", pc, np);
  if (j.nsegs) {
    restate_seg = j.segs[j.nsegs - 1].no;
    restate_off = j.segs[j.nsegs - 1].size;
  }
  cad_journal_close(&j);
  for (size_t i = 0; i < np; i++) {
    seg_path(path, sizeof path, pc[i].no);
    if (!same_file(path, pc[i].p, pc[i].len)) FAIL("a read-only open changed %s", path);
  }

  /* 2. Read-write: what the engine does at start.  Small segments, so that
   * appending may roll over to a new one. */
  rc = cad_journal_open(&j, dir, 8192, false);
  if (rc != 0) FAIL("open failed: %s", cad_strerror(rc));
  bool clash = check_recovered(&j, "first", pc, np);

  /* 3. Append one message for "fuzz" and for the first named destinations. */
  appended_t app[MAX_APPEND + 1];
  size_t na = 0;
  for (uint16_t d = 0; d < j.ndests && na < MAX_APPEND; d++) {
    const char *name = j.dests[d].name;
    if (!name || !*name || strlen(name) > 256) continue;
    snprintf(app[na].name, sizeof app[na].name, "%s", name);
    app[na++].id = d;
  }
  int id = cad_journal_dest(&j, "fuzz", true);
  if (id >= 0) {
    snprintf(app[na].name, sizeof app[na].name, "fuzz");
    app[na++].id = (uint16_t)id;
  } else if (id != CAD_E_FULL) {
    FAIL("cad_journal_dest: %s", cad_strerror(id));
  }
  for (size_t i = 0; i < na; i++) {
    appended_t *a = &app[i];
    a->len = (size_t)snprintf(a->payload, sizeof a->payload, "MSH|^~\\&|fuzz|%zu", i);
    uint64_t want = j.dests[a->id].last_seq + 1;
    cad_jrec_t r = {CAD_JREC_MSG, a->id, 0, a->payload, a->len};
    rc = cad_journal_write(&j, &r, 1, 1000);
    if (want >= (uint64_t)1 << 62) {
      /* Sequences stay below 2^62 (journal.h): refused, nothing written. */
      if (rc != CAD_E_FULL || r.seq != 0) FAIL("append at sequence 2^62 gave %s", cad_strerror(rc));
      a->len = 0; /* not appended: not looked for below */
      continue;
    }
    if (rc != 0) FAIL("append failed: %s", cad_strerror(rc));
    if (r.seq != want)
      FAIL("appended as %llu, expected %llu", (unsigned long long)r.seq, (unsigned long long)want);
    /* A new message is waiting, whatever the journal said was finished. */
    if (r.seq <= j.dests[a->id].done_seq)
      FAIL("message %llu appended for '%s' counts as finished already (done up to %llu)",
           (unsigned long long)r.seq, a->name, (unsigned long long)j.dests[a->id].done_seq);
    a->seq = r.seq;
  }
  cad_journal_retain(&j, 0, 1, 2000, cad_journal_end(&j));
  cad_jpos_t end = cad_journal_end(&j);
  cad_journal_close(&j);

  /* 4. Open again: the damage is behind us (nothing more is cut from the
   * last segment), every appended message is there. */
  seg_path(path, sizeof path, end.seg);
  struct stat st;
  if (stat(path, &st) != 0 || (uint64_t)st.st_size != end.off)
    FAIL("closed with the end at %llu:%llu, the file has %lld bytes", (unsigned long long)end.seg,
         (unsigned long long)end.off, (long long)st.st_size);
  rc = cad_journal_open(&j, dir, 8192, false);
  if (rc != 0) FAIL("second open failed: %s", cad_strerror(rc));
  restate_seg = restate_off = 0; /* every destination is named where we write */
  check_recovered(&j, "second", NULL, 0);
  cad_jpos_t end2 = cad_journal_end(&j);
  if (end2.seg != end.seg || end2.off != end.off)
    FAIL("closed with the end at %llu:%llu, opened with it at %llu:%llu: %s",
         (unsigned long long)end.seg, (unsigned long long)end.off, (unsigned long long)end2.seg,
         (unsigned long long)end2.off, j.report);
  for (size_t i = 0; i < na; i++) {
    const appended_t *a = &app[i];
    if (a->len == 0) continue; /* refused at 2^62 */
    if (!find_msg(&j, a->id, a))
      FAIL("message %llu for '%s' (id %u) lost", (unsigned long long)a->seq, a->name, a->id);
    if (clash) continue;
    if (cad_journal_dest(&j, a->name, false) != a->id)
      FAIL("destination %u lost its name '%s' after a message was appended to it (%s)", a->id,
           a->name, j.report);
  }
  cad_journal_close(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/cad-fuzz-journal.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    dir[0] = 0;
    FAIL("mkdtemp under %s failed", tmp && *tmp ? tmp : "/tmp");
  }
  piece_t pc[MAX_FILES];
  size_t np = split(data, size, pc);
  run(pc, np);

  /* Again with every CRC right, when that is another input. */
  unsigned char *copy = malloc(size ? size : 1);
  if (!copy) FAIL("out of memory");
  memcpy(copy, data, size);
  bool changed = false;
  for (size_t i = 0; i < np; i++) {
    pc[i].p = copy + (pc[i].p - data);
    changed |= fix_crcs((unsigned char *)pc[i].p, pc[i].len, pc[i].no);
  }
  if (changed) {
    empty_dir();
    run(pc, np);
  }
  free(copy);
  remove_dir();
  return 0;
}
