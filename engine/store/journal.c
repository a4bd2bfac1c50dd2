/* journal.c - segment files, group writes with fdatasync, recovery. */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "journal_int.h"

#define SEG_HDR CAD_JSEG_HDR
#define MAX_SEQ CAD__JMAX_SEQ
#define put64 cad__jput64
#define get64 cad__jget64
#define CLEAN_NAME "clean"
#define CLEAN_MAGIC 0x53444143u /* "CADS" */
#define CLEAN_LEN 32

typedef cad__jhdr_t hdr_t;

/* Append to the recovery report (truncated when full). */
static void say(cad_journal_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(cad_journal_t *j, const char *fmt, ...) {
  size_t len = strlen(j->report);
  if (len + 1 >= sizeof j->report) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->report + len, sizeof j->report - len, fmt, ap);
  va_end(ap);
}

/* 64 random bits whose low 32 (the record tag) have no zero byte: a record
 * then never starts with a zero, so what is left of a torn one can never
 * pass for the zero padding. */
static bool tag_ok(uint64_t s) {
  for (int i = 0; i < 4; i++)
    if (((s >> (8 * i)) & 0xff) == 0) return false;
  return true;
}

static uint64_t new_salt(void) {
  uint64_t s = 0;
  while (!tag_ok(s)) {
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {
      /* No entropy source: still unpredictable enough to a sender. */
      s ^= cad_now_ms() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 32 ^ (uintptr_t)&s;
      s = s * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull;
    }
  }
  return s;
}

/* ---- segment list ------------------------------------------------------- */

static cad_jseg_t *seg_add(cad_journal_t *j, uint64_t no, uint64_t created) {
  if (j->nsegs == j->segs_cap) {
    size_t cap = j->segs_cap ? j->segs_cap * 2 : 16;
    cad_jseg_t *ns = realloc(j->segs, cap * sizeof *ns);
    if (!ns) return NULL;
    j->segs = ns;
    j->segs_cap = cap;
  }
  cad_jseg_t *s = &j->segs[j->nsegs];
  memset(s, 0, sizeof *s);
  s->max_seq = calloc(j->ndest_cap, sizeof *s->max_seq);
  if (!s->max_seq) return NULL;
  s->no = no;
  s->created_ms = created;
  j->nsegs++;
  return s;
}

static int grow_dest_cap(cad_journal_t *j, uint32_t need) {
  if (need <= j->ndest_cap) return 0;
  uint32_t cap = j->ndest_cap ? j->ndest_cap : 8;
  while (cap < need) cap *= 2;
  if (cap > CAD_JOURNAL_MAX_DESTS) cap = CAD_JOURNAL_MAX_DESTS;
  for (size_t i = 0; i < j->nsegs; i++) {
    uint64_t *m = realloc(j->segs[i].max_seq, cap * sizeof *m);
    if (!m) return CAD_E_NOMEM;
    memset(m + j->ndest_cap, 0, (cap - j->ndest_cap) * sizeof *m);
    j->segs[i].max_seq = m;
  }
  j->ndest_cap = cap;
  return 0;
}

/* Apply one valid record to the in-memory state. */
static int apply(cad_journal_t *j, cad_jseg_t *s, const hdr_t *h, const unsigned char *payload) {
  if (h->dest >= j->ndests && h->type != CAD_JREC_DEST) {
    /* A record for a destination whose DEST record is gone: keep counting. */
    if (grow_dest_cap(j, (uint32_t)h->dest + 1)) return CAD_E_NOMEM;
    j->ndests = (uint16_t)(h->dest + 1);
  }
  cad_jdest_t *d = &j->dests[h->dest];
  switch (h->type) {
    case CAD_JREC_DEST: {
      if (h->len < 8) return 0;
      if (grow_dest_cap(j, (uint32_t)h->dest + 1)) return CAD_E_NOMEM;
      if (h->dest >= j->ndests) j->ndests = (uint16_t)(h->dest + 1);
      if (!d->name) {
        d->name = malloc(h->len - 8 + 1);
        if (!d->name) return CAD_E_NOMEM;
        memcpy(d->name, payload + 8, h->len - 8);
        d->name[h->len - 8] = 0;
      }
      if (h->seq > d->last_seq) d->last_seq = h->seq;
      uint64_t done = get64(payload);
      if (done > d->done_seq) d->done_seq = done;
      if (s && s->no > d->dest_seg) d->dest_seg = s->no;
      break;
    }
    case CAD_JREC_MSG:
      if (h->seq > d->last_seq) d->last_seq = h->seq;
      if (s && h->seq > s->max_seq[h->dest]) s->max_seq[h->dest] = h->seq;
      break;
    case CAD_JREC_DONE:
    case CAD_JREC_DEAD:
    case CAD_JREC_PURGE:
      /* `delivered` counts messages: a DONE finishes every one up to its
       * seq; a DEAD comes only after the ones before it were delivered
       * (their DONE may follow it), so those count too; a PURGE counts
       * none. */
      if (h->seq > d->done_seq && h->type != CAD_JREC_PURGE)
        d->delivered += h->seq - d->done_seq - (h->type == CAD_JREC_DEAD);
      if (h->seq > d->done_seq) d->done_seq = h->seq;
      if (h->type == CAD_JREC_DEAD) d->dead++;
      break;
  }
  if (s && h->time_ms > s->last_ms) s->last_ms = h->time_ms;
  return 0;
}

/* ---- keeping damage aside ------------------------------------------------ */

/* Copy b[0..n) (found at `off` of segment `no`) to DIR/damaged/ for an
 * operator: 0 when copied (or all zeros, or copied by an earlier open), else
 * -errno.  A read-only open copies nothing. */
static int keep_aside(cad_journal_t *j, uint64_t no, size_t off, const unsigned char *b, size_t n) {
  while (n && b[n - 1] == 0) n--; /* trailing zero padding is not damage */
  if (j->readonly || n == 0) return 0;
  const cad_io_t *io = j->io;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/damaged", j->dir);
  int rc = io->mkdirat(io->ctx, AT_FDCWD, path, 0700);
  if (rc == 0) rc = cad_io_fsync_dir(io, j->dirfd, NULL);
  if (rc < 0 && rc != -EEXIST) return rc;
  snprintf(path, sizeof path, "%s/damaged/%016llu-%zu.bin", j->dir, (unsigned long long)no, off);
  int fd = io->openat(io->ctx, AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd == -EEXIST) return 0; /* the same damage, seen by an earlier open */
  if (fd < 0) return fd;
  rc = cad_io_pwrite_all(io, fd, b, n, 0);
  if (rc == 0) rc = io->fsync(io->ctx, fd);
  io->close(io->ctx, fd);
  if (rc == 0) rc = cad_io_fsync_dir(io, -1, path);
  if (rc) {
    io->unlinkat(io->ctx, AT_FDCWD, path, 0);
    return rc;
  }
  j->stats.kept_aside++;
  say(j, "kept in damaged/%016llu-%zu.bin; ", (unsigned long long)no, off);
  return 0;
}

/* What a damaged record's header still says, for the report. */
static void say_damaged(cad_journal_t *j, const unsigned char *b, size_t avail,
                        const cad__jkey_t *k) {
  hdr_t h;
  static const char *const types[] = {"?", "MSG", "DONE", "DEAD", "DEST", "PURGE"};
  if (avail < CAD_JREC_HDR || !cad__jrec_parse(b, k, &h)) {
    say(j, "(header unreadable) ");
    return;
  }
  say(j, "(%s of destination %u, sequence %llu) ", types[h.type], h.dest,
      (unsigned long long)h.seq);
}

/* ---- recovery ------------------------------------------------------------ */

/* Read a whole file through the seam into *out (malloc'd, caller frees). */
static int slurp(const cad_io_t *io, int fd, unsigned char **out, size_t *n) {
  struct stat st;
  *out = NULL;
  *n = 0;
  int rc = io->fstat(io->ctx, fd, &st);
  if (rc) return rc;
  size_t want = (size_t)st.st_size;
  unsigned char *b = malloc(want ? want : 1);
  if (!b) return CAD_E_NOMEM;
  size_t got = 0;
  while (got < want) {
    ssize_t r = io->pread(io->ctx, fd, b + got, want - got, (off_t)got);
    if (r == -EINTR) continue;
    if (r < 0) {
      free(b);
      return (int)r;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  *out = b;
  *n = got;
  return 0;
}

/* The last segment of a clean shutdown and its committed size, from
 * DIR/clean: 1 when present and valid, 0 when not. */
static int read_clean(cad_journal_t *j, uint64_t *seg, uint64_t *size) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", j->dir, CLEAN_NAME);
  int fd = j->io->openat(j->io->ctx, AT_FDCWD, path, O_RDONLY, 0);
  if (fd < 0) return 0;
  unsigned char b[CLEAN_LEN];
  ssize_t r = j->io->pread(j->io->ctx, fd, b, sizeof b, 0);
  j->io->close(j->io->ctx, fd);
  if (r != CLEAN_LEN || cad__jget32(b) != CLEAN_MAGIC ||
      cad__jget32(b + 28) != (uint32_t)crc32(0L, b, 28))
    return 0;
  *seg = get64(b + 8);
  *size = get64(b + 16);
  return 1;
}

static int write_clean(cad_journal_t *j) {
  const cad_io_t *io = j->io;
  const cad_jseg_t *s = &j->segs[j->nsegs - 1];
  unsigned char b[CLEAN_LEN] = {0};
  cad__jput32(b, CLEAN_MAGIC);
  b[4] = 1;
  put64(b + 8, s->no);
  put64(b + 16, s->size);
  cad__jput32(b + 28, (uint32_t)crc32(0L, b, 28));
  char tmp[PATH_MAX], path[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s/%s.tmp", j->dir, CLEAN_NAME);
  snprintf(path, sizeof path, "%s/%s", j->dir, CLEAN_NAME);
  int fd = io->openat(io->ctx, AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return fd;
  int rc = cad_io_pwrite_all(io, fd, b, sizeof b, 0);
  if (rc == 0) rc = io->fsync(io->ctx, fd);
  io->close(io->ctx, fd);
  if (rc == 0) rc = io->renameat(io->ctx, AT_FDCWD, tmp, AT_FDCWD, path);
  if (rc == 0) rc = cad_io_fsync_dir(io, j->dirfd, NULL);
  return rc;
}

/* Remove the marker before anything is written (a crash from now on is not a
 * clean shutdown). */
static int remove_clean(cad_journal_t *j) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", j->dir, CLEAN_NAME);
  int rc = j->io->unlinkat(j->io->ctx, AT_FDCWD, path, 0);
  if (rc == -ENOENT) return 0;
  if (rc == 0) rc = cad_io_fsync_dir(j->io, j->dirfd, NULL);
  return rc;
}

typedef struct scan {
  cad_journal_t *j;
  cad_jseg_t *s;
  const unsigned char *b;
  size_t n;
  bool last;
  uint64_t clean_end; /* last segment after a clean shutdown: its size then; else 0 */
} scan_t;

/* An invalid region from `off` with nothing valid after it. */
static int scan_bad_end(scan_t *c, size_t off) {
  cad_journal_t *j = c->j;
  uint64_t no = c->s->no;
  size_t len = c->n - off;
  if (c->last && off >= c->clean_end) {
    say(j, "segment %llu: cut %zu bytes of torn tail at offset %zu ", (unsigned long long)no, len,
        off);
    say_damaged(j, c->b + off, len, &c->s->key);
    j->stats.torn_bytes += len;
  } else {
    say(j, "segment %llu: CORRUPT end%s, %zu bytes unreadable from offset %zu ",
        (unsigned long long)no, c->last ? " after a clean shutdown" : "", len, off);
    say_damaged(j, c->b + off, len, &c->s->key);
    j->stats.corrupt_bytes += len;
    j->stats.corrupt_records++;
  }
  int rc = keep_aside(j, no, off, c->b + off, len);
  if (rc) say(j, "COULD NOT keep it aside: %s; ", cad_strerror(rc));
  /* Only what is cut from the file needs its copy first. */
  return c->last ? rc : 0;
}

/* Walk the records of one segment from `off`: apply the valid ones, report
 * and keep aside the damage.  Returns the end of the valid data or a
 * negative error. */
static long long scan_records(scan_t *c, size_t off, bool *zero_tail) {
  cad_journal_t *j = c->j;
  const cad__jkey_t *k = &c->s->key;
  while (off < c->n) {
    hdr_t h;
    long long r = cad__jrec_check(c->b + off, c->n - off, k, &h);
    if (r > 0) {
      int rc = apply(j, c->s, &h, c->b + off + CAD_JREC_HDR);
      if (rc) return rc;
      j->stats.records++;
      off += (size_t)r;
      continue;
    }
    size_t z = off;
    while (z < c->n && c->b[z] == 0) z++;
    if (z == c->n && !(c->last && off < c->clean_end)) {
      *zero_tail = true; /* zero-filled ahead of the writes: not damage */
      break;
    }
    size_t next = cad__jresync(c->b, c->n, off + 1, k);
    if (next >= c->n) {
      int rc = scan_bad_end(c, off);
      return rc ? rc : (long long)off;
    }
    if (c->last && !c->clean_end && z >= next) {
      /* Zeros, then valid records: a write that never reached the disk
       * before a crash while a later one did (the space was zero-filled
       * ahead).  A torn write, not damage. */
      say(j, "segment %llu: %zu zero bytes at offset %zu (a write lost in a crash); ",
          (unsigned long long)c->s->no, next - off, off);
      j->stats.torn_bytes += next - off;
      off = next;
      continue;
    }
    say(j, "segment %llu: CORRUPT record at offset %zu, %zu bytes skipped ",
        (unsigned long long)c->s->no, off, next - off);
    say_damaged(j, c->b + off, next - off, k);
    j->stats.corrupt_records++;
    j->stats.corrupt_bytes += next - off;
    int rc = keep_aside(j, c->s->no, off, c->b + off, next - off);
    if (rc) say(j, "COULD NOT keep it aside: %s; ", cad_strerror(rc));
    off = next;
  }
  return (long long)off;
}

/* A segment whose header does not prove itself.  Returns where its records
 * start (the first valid one), or 0 when none is valid (*rc set when the
 * open must fail). */
static size_t scan_bad_header(scan_t *c, int fd, int *rc) {
  cad_journal_t *j = c->j;
  cad_jseg_t *s = c->s;
  say(j, "segment %llu: invalid header (%zu bytes); ", (unsigned long long)s->no, c->n);
  size_t first = c->n > s->key.hdr ? cad__jresync(c->b, c->n, s->key.hdr, &s->key) : c->n;
  if (first < c->n) {
    /* The records prove the salt right: only the header is damaged (what
     * lies between it and the first record is reported by the scan). */
    j->stats.corrupt_bytes += s->key.hdr;
    return s->key.hdr;
  }
  s->size = SEG_HDR;
  if (!c->last) {
    j->stats.corrupt_bytes += c->n;
    j->stats.corrupt_records++;
    (void)keep_aside(j, s->no, 0, c->b, c->n); /* nothing is cut from an older segment */
    return 0;
  }
  /* The crash came while the segment was being created (nothing was
   * committed to it): start it again with a fresh header. */
  j->stats.torn_bytes += c->n;
  if ((*rc = keep_aside(j, s->no, 0, c->b, c->n)) != 0 || j->readonly) return 0;
  s->key = (cad__jkey_t){CAD_JOURNAL_VERSION, 0, new_salt(), SEG_HDR};
  s->key.tag = (uint32_t)s->key.salt;
  unsigned char h[SEG_HDR];
  cad__jseg_encode(h, s->no, s->created_ms, s->key.salt);
  const cad_io_t *io = j->io;
  *rc = io->ftruncate(io->ctx, fd, 0);
  if (!*rc) *rc = cad_io_pwrite_all(io, fd, h, SEG_HDR, 0);
  if (!*rc) *rc = io->fdatasync(io->ctx, fd);
  return 0;
}

static int scan_segment(cad_journal_t *j, uint64_t no, bool last, uint64_t clean_end) {
  const cad_io_t *io = j->io;
  char path[PATH_MAX];
  cad__jseg_name(path, sizeof path, j->dir, no);
  int fd = io->openat(io->ctx, AT_FDCWD, path, j->readonly ? O_RDONLY : O_RDWR, 0);
  if (fd < 0) return fd;
  unsigned char *b = NULL;
  size_t n = 0;
  int rc = slurp(io, fd, &b, &n);
  if (rc) goto out;
  cad__jkey_t key;
  uint64_t created;
  bool hdr_ok = cad__jseg_decode(b, n, no, &key, &created) == 1;
  cad_jseg_t *s = seg_add(j, no, created);
  if (!s) {
    rc = CAD_E_NOMEM;
    goto out;
  }
  s->key = key;
  scan_t c = {j, s, b, n, last, last ? clean_end : 0};
  if (last && clean_end > n) {
    say(j, "segment %llu: CORRUPT, %llu bytes shorter than at its clean shutdown; ",
        (unsigned long long)no, (unsigned long long)(clean_end - n));
    j->stats.corrupt_records++;
    j->stats.corrupt_bytes += clean_end - n;
  }
  size_t off = key.hdr;
  if (!hdr_ok && (off = scan_bad_header(&c, fd, &rc)) == 0) goto out;
  bool zero_tail = false;
  long long end = scan_records(&c, off, &zero_tail);
  if (end < 0) {
    rc = (int)end;
    goto out;
  }
  s->size = (uint64_t)end < key.hdr ? key.hdr : (uint64_t)end;
  if (!j->readonly && s->size < n && (last || zero_tail)) {
    rc = io->ftruncate(io->ctx, fd, (off_t)s->size);
    if (!rc) rc = io->fdatasync(io->ctx, fd);
  }
out:
  free(b);
  if (rc == 0 && last && !j->readonly) j->fd = fd;
  else io->close(io->ctx, fd);
  return rc;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static int fsync_dir(cad_journal_t *j) { return cad_io_fsync_dir(j->io, j->dirfd, NULL); }

static int write_dest_records(cad_journal_t *j, uint64_t now_ms);
static int cut_padding(cad_journal_t *j);

/* Create segment `no` (version 2, a fresh salt) and make it the active one. */
static int new_segment(cad_journal_t *j, uint64_t no, uint64_t now_ms) {
  const cad_io_t *io = j->io;
  char path[PATH_MAX];
  cad__jseg_name(path, sizeof path, j->dir, no);
  int fd = io->openat(io->ctx, AT_FDCWD, path, O_RDWR | O_CREAT | O_EXCL, 0640);
  if (fd < 0) return fd;
  uint64_t salt = new_salt();
  unsigned char h[SEG_HDR];
  cad__jseg_encode(h, no, now_ms, salt);
  int rc = cad_io_pwrite_all(io, fd, h, SEG_HDR, 0);
  if (rc == 0) rc = io->fdatasync(io->ctx, fd);
  if (rc == 0) rc = fsync_dir(j);
  /* The segment we leave loses its padding for good (its records are
   * synced already; a failure here fails the roll, which is retried). */
  if (rc == 0) rc = cut_padding(j);
  if (rc) {
    io->close(io->ctx, fd);
    io->unlinkat(io->ctx, AT_FDCWD, path, 0);
    return rc;
  }
  cad_jseg_t *s = seg_add(j, no, now_ms);
  if (!s) {
    io->close(io->ctx, fd);
    return CAD_E_NOMEM;
  }
  s->key = (cad__jkey_t){CAD_JOURNAL_VERSION, (uint32_t)salt, salt, SEG_HDR};
  s->size = SEG_HDR;
  if (j->fd >= 0) io->close(io->ctx, j->fd);
  j->fd = fd;
  j->zeroed = SEG_HDR;
  /* Every segment restates the destinations, so deleting old segments never
   * loses a name or a position; if that write fails it is retried before
   * anything else goes into this segment. */
  rc = write_dest_records(j, now_ms);
  j->dests_pending = rc != 0;
  return rc;
}

/* The segment numbers in the directory, sorted. */
static int list_segments(const char *dir, uint64_t **out, size_t *count) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) return -errno;
  uint64_t *nos = NULL;
  size_t nn = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l != 20 || strcmp(e->d_name + 16, ".seg") != 0) continue;
    char *endp;
    unsigned long long no = strtoull(e->d_name, &endp, 10);
    if (endp != e->d_name + 16) continue;
    if (nn == cap) {
      cap = cap ? cap * 2 : 64;
      uint64_t *nv = realloc(nos, cap * sizeof *nv);
      if (!nv) {
        free(nos);
        closedir(d);
        return CAD_E_NOMEM;
      }
      nos = nv;
    }
    nos[nn++] = no;
  }
  closedir(d);
  if (nn) qsort(nos, nn, sizeof *nos, cmp_u64);
  *out = nos;
  *count = nn;
  return 0;
}

/* After the scan: where writing goes on (a new segment when there is none
 * or the last one is version 1), and every destination named in it. */
static int open_for_writing(cad_journal_t *j, uint64_t next_no) {
  uint64_t now_ms = cad_now_ms();
  if (j->fd >= 0 && j->segs[j->nsegs - 1].key.version != CAD_JOURNAL_VERSION) {
    cut_padding(j);
    j->io->close(j->io->ctx, j->fd);
    j->fd = -1;
  }
  if (j->fd < 0) return new_segment(j, next_no, now_ms);
  /* The segment we go on writing must name every destination (deleting
   * older ones must never lose a name): a crash between creating it and
   * writing its DEST records leaves it without them. */
  uint64_t active = j->segs[j->nsegs - 1].no;
  bool missing = false;
  for (uint16_t i = 0; i < j->ndests; i++)
    missing |= j->dests[i].name && j->dests[i].dest_seg != active;
  return missing ? write_dest_records(j, now_ms) : 0;
}

static int open_dir(cad_journal_t *j, const char *dir) {
  const cad_io_t *io = j->io;
  if (!j->readonly) {
    int rc = io->mkdirat(io->ctx, AT_FDCWD, dir, 0750);
    /* A new directory's name must be durable before anything in it counts. */
    if (rc == 0) rc = cad_io_fsync_dir(io, -1, dir);
    if (rc < 0 && rc != -EEXIST) return rc;
  }
  j->dirfd = io->openat(io->ctx, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
  return j->dirfd < 0 ? j->dirfd : 0;
}

int cad_journal_open_opts(cad_journal_t *j, const char *dir, const cad_journal_opts_t *o) {
  memset(j, 0, sizeof *j);
  j->fd = -1;
  j->dirfd = -1;
  j->io = cad_io_or_default(o->io);
  j->readonly = o->readonly;
  j->segment_bytes = o->segment_bytes ? o->segment_bytes : (64u << 20);
  j->dir = strdup(dir);
  int rc = j->dir ? open_dir(j, dir) : CAD_E_NOMEM;
  if (!rc && grow_dest_cap(j, 8)) rc = CAD_E_NOMEM;
  uint64_t *nos = NULL;
  size_t nn = 0;
  if (!rc) rc = list_segments(dir, &nos, &nn);
  uint64_t clean_seg = 0, clean_end = 0;
  j->stats.clean = !rc && read_clean(j, &clean_seg, &clean_end) && nn && clean_seg == nos[nn - 1];
  if (!j->stats.clean) clean_end = 0;
  for (size_t i = 0; i < nn && rc == 0; i++) rc = scan_segment(j, nos[i], i == nn - 1, clean_end);
  uint64_t next_no = nn ? nos[nn - 1] + 1 : 1;
  free(nos);
  for (uint16_t i = 0; rc == 0 && i < j->ndests; i++) {
    cad_jdest_t *jd = &j->dests[i];
    if (jd->done_seq <= jd->last_seq) continue;
    /* Its newest messages were unreadable but a later DONE mark was not:
     * new messages must go on after the finished position, or they would
     * count as finished on arrival. */
    say(j, "destination %u: finished up to %llu but messages end at %llu; ", i,
        (unsigned long long)jd->done_seq, (unsigned long long)jd->last_seq);
    jd->last_seq = jd->done_seq;
  }
  if (rc == 0 && !j->readonly) rc = remove_clean(j);
  if (rc == 0 && !j->readonly) rc = open_for_writing(j, next_no);
  if (rc) cad_journal_close(j);
  return rc;
}

int cad_journal_open(cad_journal_t *j, const char *dir, uint64_t segment_bytes, bool readonly) {
  cad_journal_opts_t o = {segment_bytes, readonly, NULL};
  return cad_journal_open_opts(j, dir, &o);
}

void cad_journal_close(cad_journal_t *j) {
  const cad_io_t *io = cad_io_or_default(j->io);
  /* Clean only when everything written is synced and the marker is safe. */
  if (!j->readonly && j->fd >= 0 && j->nsegs && !j->dests_pending && cut_padding(j) == 0)
    write_clean(j);
  if (j->fd >= 0) io->close(io->ctx, j->fd);
  if (j->dirfd >= 0) io->close(io->ctx, j->dirfd);
  for (size_t i = 0; i < j->nsegs; i++) free(j->segs[i].max_seq);
  free(j->segs);
  for (uint32_t i = 0; i < CAD_JOURNAL_MAX_DESTS; i++) free(j->dests[i].name);
  free(j->dir);
  memset(j, 0, sizeof *j);
  j->fd = j->dirfd = -1;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct {
  unsigned char hdr[CAD_JREC_HDR];
} enc_hdr_t;

static int write_raw(cad_journal_t *j, cad_jrec_t *recs, size_t n, uint64_t now_ms, bool sync);

#define ZERO_CHUNK ((uint64_t)1 << 20)

/* Zero-fill the active segment ahead of `upto` (in whole chunks). Best
 * effort: on failure (disk full) the write goes on without it. */
static void zero_ahead(cad_journal_t *j, uint64_t upto) {
  if (j->zeroed >= upto + ZERO_CHUNK / 4) return;
  static const char zeros[65536];
  uint64_t from = j->zeroed > upto ? j->zeroed : upto;
  uint64_t to = (from / ZERO_CHUNK + 1) * ZERO_CHUNK;
  /* Not far past where the segment rolls over (small segments, in tests). */
  uint64_t cap = j->segment_bytes + ZERO_CHUNK / 16;
  if (to > cap) to = cap > upto ? cap : upto;
  for (uint64_t o = from; o < to;) {
    size_t n = (size_t)(to - o < sizeof zeros ? to - o : sizeof zeros);
    ssize_t w = j->io->pwrite(j->io->ctx, j->fd, zeros, n, (off_t)o);
    if (w <= 0) return;
    o += (uint64_t)w;
    j->zeroed = o;
  }
}

/* A segment that is no longer written loses its zero padding. */
static int cut_padding(cad_journal_t *j) {
  if (j->fd < 0 || j->nsegs == 0) return 0;
  int rc = j->io->ftruncate(j->io->ctx, j->fd, (off_t)j->segs[j->nsegs - 1].size);
  if (rc == 0) rc = j->io->fdatasync(j->io->ctx, j->fd);
  if (rc == 0) j->unsynced = false;
  j->zeroed = 0;
  return rc;
}

static int write_dest_records(cad_journal_t *j, uint64_t now_ms) {
  if (j->ndests == 0) return 0;
  cad_jrec_t *recs = calloc(j->ndests, sizeof *recs);
  unsigned char(*pl)[8 + 256] = calloc(j->ndests, sizeof *pl);
  if (!recs || !pl) {
    free(recs);
    free(pl);
    return CAD_E_NOMEM;
  }
  size_t n = 0;
  for (uint16_t i = 0; i < j->ndests; i++) {
    if (!j->dests[i].name) continue;
    size_t nl = strlen(j->dests[i].name);
    if (nl > 256) nl = 256;
    put64(pl[n], j->dests[i].done_seq);
    memcpy(pl[n] + 8, j->dests[i].name, nl);
    recs[n] = (cad_jrec_t){CAD_JREC_DEST, i, j->dests[i].last_seq, pl[n], 8 + nl};
    n++;
  }
  int rc = write_raw(j, recs, n, now_ms, true);
  free(recs);
  free(pl);
  return rc;
}

static int write_raw(cad_journal_t *j, cad_jrec_t *recs, size_t n, uint64_t now_ms, bool sync) {
  cad_jseg_t *s = &j->segs[j->nsegs - 1];
  enc_hdr_t *hdrs = malloc((n ? n : 1) * sizeof *hdrs);
  struct iovec *iov = malloc((n ? n : 1) * 2 * sizeof *iov);
  if (!hdrs || !iov) {
    free(hdrs);
    free(iov);
    return CAD_E_NOMEM;
  }
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    hdr_t h = {recs[i].type, recs[i].dest, (uint32_t)recs[i].len, 0, recs[i].seq, now_ms};
    cad__jrec_encode(hdrs[i].hdr, &s->key, &h, recs[i].payload);
    iov[2 * i].iov_base = hdrs[i].hdr;
    iov[2 * i].iov_len = CAD_JREC_HDR;
    iov[2 * i + 1].iov_base = (void *)recs[i].payload;
    iov[2 * i + 1].iov_len = recs[i].len;
    total += CAD_JREC_HDR + recs[i].len;
  }
  int rc = 0;
  uint64_t off = s->size;
  zero_ahead(j, off + total);
  size_t vi = 0, nv = 2 * n;
  while (vi < nv) {
    int cnt = (int)(nv - vi > IOV_MAX ? IOV_MAX : nv - vi);
    ssize_t w = j->io->pwritev(j->io->ctx, j->fd, iov + vi, cnt, (off_t)off);
    if (w == -EINTR) continue;
    if (w < 0) {
      rc = (int)w;
      break;
    }
    if (w == 0) {
      rc = CAD_E_IO;
      break;
    }
    off += (uint64_t)w;
    /* Advance over what was written (short writes happen near ENOSPC). */
    size_t left = (size_t)w;
    while (vi < nv && left >= iov[vi].iov_len) left -= iov[vi++].iov_len;
    if (vi < nv && left) {
      iov[vi].iov_base = (char *)iov[vi].iov_base + left;
      iov[vi].iov_len -= left;
    }
  }
  if (rc == 0 && sync) rc = j->io->fdatasync(j->io->ctx, j->fd);
  if (rc == 0) j->unsynced = !sync;
  free(hdrs);
  free(iov);
  if (rc) {
    /* Nothing of this batch counts; drop what reached the file. */
    (void)j->io->ftruncate(j->io->ctx, j->fd,
                           (off_t)s->size); /* else the next write overwrites it */
    j->zeroed = s->size;
    return rc;
  }
  s->size += total;
  for (size_t i = 0; i < n; i++) {
    hdr_t h = {recs[i].type, recs[i].dest, (uint32_t)recs[i].len, 0, recs[i].seq, now_ms};
    if (recs[i].type == CAD_JREC_DEST) continue; /* already in memory */
    if ((rc = apply(j, s, &h, recs[i].payload))) return rc;
  }
  if (now_ms > s->last_ms) s->last_ms = now_ms;
  return 0;
}

int cad_journal_dest(cad_journal_t *j, const char *name, bool create) {
  for (uint16_t i = 0; i < j->ndests; i++)
    if (j->dests[i].name && strcmp(j->dests[i].name, name) == 0) return i;
  if (!create) return CAD_E_NOTFOUND;
  if (j->readonly) return CAD_E_STATE;
  if (j->ndests >= CAD_JOURNAL_MAX_DESTS) return CAD_E_FULL;
  size_t nl = strlen(name);
  if (nl == 0 || nl > 256) return CAD_E_INVAL;
  uint16_t id = j->ndests;
  if (grow_dest_cap(j, (uint32_t)id + 1)) return CAD_E_NOMEM;
  cad_jdest_t *d = &j->dests[id];
  d->name = strdup(name);
  if (!d->name) return CAD_E_NOMEM;
  j->ndests++;
  unsigned char pl[8 + 256];
  put64(pl, 0);
  memcpy(pl + 8, name, nl);
  cad_jrec_t r = {CAD_JREC_DEST, id, 0, pl, 8 + nl};
  int rc = write_raw(j, &r, 1, 0, true);
  if (rc) {
    free(d->name);
    d->name = NULL;
    j->ndests--;
    return rc;
  }
  return id;
}

static int journal_write(cad_journal_t *j, cad_jrec_t *recs, size_t n, uint64_t now_ms, bool sync) {
  if (j->readonly) return CAD_E_STATE;
  if (j->dests_pending) {
    int rc = write_dest_records(j, now_ms);
    if (rc) return rc;
    j->dests_pending = false;
  }
  cad_jseg_t *s = &j->segs[j->nsegs - 1];
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += CAD_JREC_HDR + recs[i].len;
  if (s->size > SEG_HDR + 4096 && s->size + total > j->segment_bytes) {
    int rc = new_segment(j, s->no + 1, now_ms);
    if (rc) return rc;
  }
  /* Assign sequences; undo them if the write fails. */
  uint64_t saved[CAD_JOURNAL_MAX_DESTS];
  uint16_t touched[64];
  size_t nt = 0;
  bool overflow = false;
  for (size_t i = 0; i < n; i++) {
    /* (explicit sequences too: the undo below compares every MSG's dest) */
    if (recs[i].type != CAD_JREC_MSG) continue;
    uint16_t d = recs[i].dest;
    bool seen = false;
    for (size_t k = 0; k < nt; k++) seen |= touched[k] == d;
    if (!seen) {
      if (nt < 64) touched[nt++] = d;
      else overflow = true;
      saved[d] = j->dests[d].last_seq;
    }
  }
  if (overflow) {
    for (uint16_t d = 0; d < j->ndests; d++) saved[d] = j->dests[d].last_seq;
  }
  uint64_t next[CAD_JOURNAL_MAX_DESTS];
  for (size_t k = 0; k < nt; k++) next[touched[k]] = j->dests[touched[k]].last_seq;
  if (overflow)
    for (uint16_t d = 0; d < j->ndests; d++) next[d] = j->dests[d].last_seq;
  for (size_t i = 0; i < n; i++)
    if (recs[i].type == CAD_JREC_MSG && recs[i].seq == 0) recs[i].seq = ++next[recs[i].dest];
  for (size_t i = 0; i < n; i++)
    if (recs[i].seq >= MAX_SEQ) {
      /* A record recovery would refuse must not be written. */
      for (size_t k = 0; k < n; k++)
        if (recs[k].type == CAD_JREC_MSG && recs[k].seq > saved[recs[k].dest]) recs[k].seq = 0;
      return CAD_E_FULL;
    }
  int rc = write_raw(j, recs, n, now_ms, sync);
  if (rc) {
    for (size_t i = 0; i < n; i++)
      if (recs[i].type == CAD_JREC_MSG && recs[i].seq > saved[recs[i].dest]) recs[i].seq = 0;
  }
  return rc;
}

int cad_journal_write(cad_journal_t *j, cad_jrec_t *recs, size_t n, uint64_t now_ms) {
  return journal_write(j, recs, n, now_ms, true);
}

int cad_journal_write_lazy(cad_journal_t *j, cad_jrec_t *recs, size_t n, uint64_t now_ms) {
  return journal_write(j, recs, n, now_ms, false);
}

int cad_journal_sync(cad_journal_t *j) {
  if (!j->unsynced || j->fd < 0) return 0;
  int rc = j->io->fdatasync(j->io->ctx, j->fd);
  if (rc) return rc;
  j->unsynced = false;
  return 0;
}

cad_jpos_t cad_journal_end(const cad_journal_t *j) {
  const cad_jseg_t *s = &j->segs[j->nsegs - 1];
  return (cad_jpos_t){s->no, s->size};
}

cad_jpos_t cad_journal_begin(const cad_journal_t *j) {
  if (j->nsegs == 0) return (cad_jpos_t){1, SEG_HDR};
  return (cad_jpos_t){j->segs[0].no, j->segs[0].key.hdr};
}

uint64_t cad_journal_bytes(const cad_journal_t *j) {
  uint64_t t = 0;
  for (size_t i = 0; i < j->nsegs; i++) t += j->segs[i].size;
  return t;
}

int cad_journal_retain(cad_journal_t *j, uint64_t max_age_ms, uint64_t max_bytes, uint64_t now_ms,
                       cad_jpos_t min_reader) {
  if (j->readonly) return 0;
  /* A segment is deleted because DONE marks say its messages are finished:
   * those marks must be on disk first, or a crash would bring the messages
   * back as unfinished with their segment gone. */
  if (j->unsynced && cad_journal_sync(j) != 0) return 0;
  int deleted = 0;
  uint64_t bytes = cad_journal_bytes(j);
  while (j->nsegs > 1) {
    cad_jseg_t *s = &j->segs[0];
    if (s->no >= min_reader.seg) break;
    bool unfinished = false;
    for (uint16_t d = 0; d < j->ndests && !unfinished; d++)
      unfinished = s->max_seq[d] > j->dests[d].done_seq;
    if (unfinished) break;
    bool old = max_age_ms && now_ms > s->last_ms && now_ms - s->last_ms > max_age_ms;
    bool big = max_bytes && bytes > max_bytes;
    if (!old && !big) break;
    char path[PATH_MAX];
    cad__jseg_name(path, sizeof path, j->dir, s->no);
    int rc = j->io->unlinkat(j->io->ctx, AT_FDCWD, path, 0);
    if (rc != 0 && rc != -ENOENT) break;
    bytes -= s->size;
    free(s->max_seq);
    memmove(&j->segs[0], &j->segs[1], (j->nsegs - 1) * sizeof j->segs[0]);
    j->nsegs--;
    deleted++;
  }
  if (deleted) fsync_dir(j);
  return deleted;
}
