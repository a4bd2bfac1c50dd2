/* journal.c - segment files, group writes with fdatasync, recovery, reading. */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"

#define REC_MAGIC 0x51444143u /* "CADQ" */
#define SEG_MAGIC 0x4a444143u /* "CADJ" */
#define VERSION 1
#define SEG_HDR 32
#define MAX_PAYLOAD (256u << 20)
/* Sequences (and a DEST record's finished position) stay below 2^62: at a
 * million messages a second that is 146,000 years, so a larger one is damage
 * that happens to have a valid CRC, and taking it would make the next
 * sequence wrap. */
#define MAX_SEQ ((uint64_t)1 << 62)

/* ---- little-endian helpers ---------------------------------------------- */

static void put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

typedef struct {
  uint8_t type;
  uint16_t dest;
  uint32_t len;
  uint32_t crc;
  uint64_t seq;
  uint64_t time_ms;
} hdr_t;

static void hdr_encode(unsigned char *b, const hdr_t *h) {
  put32(b, REC_MAGIC);
  b[4] = VERSION;
  b[5] = h->type;
  put16(b + 6, h->dest);
  put32(b + 8, h->len);
  put32(b + 12, 0);
  put64(b + 16, h->seq);
  put64(b + 24, h->time_ms);
}

static uint32_t rec_crc(const unsigned char *hdr, const void *payload, size_t len) {
  unsigned char tmp[CAD_JREC_HDR];
  memcpy(tmp, hdr, CAD_JREC_HDR);
  put32(tmp + 12, 0);
  uLong c = crc32(0L, Z_NULL, 0);
  c = crc32(c, tmp, CAD_JREC_HDR);
  /* zlib's length is uInt; payloads are bounded by MAX_PAYLOAD. */
  if (len) c = crc32(c, payload, (uInt)len);
  return (uint32_t)c;
}

/* Is there a valid record at b[0..avail)?  Returns its total size, 0 when
 * invalid, or -1 when the header says more bytes than avail. */
/* What a record with a valid CRC must also hold (recovery and the reader
 * apply the same rules, so they agree on which records exist). */
static bool rec_sane(const hdr_t *h, const unsigned char *payload) {
  if (h->type < CAD_JREC_MSG || h->type > CAD_JREC_PURGE || h->len > MAX_PAYLOAD ||
      h->dest >= CAD_JOURNAL_MAX_DESTS || h->seq >= MAX_SEQ)
    return false;
  return !(h->type == CAD_JREC_DEST && h->len >= 8 && get64(payload) >= MAX_SEQ);
}

static long long rec_check(const unsigned char *b, size_t avail, hdr_t *h) {
  if (avail < CAD_JREC_HDR) return -1;
  if (get32(b) != REC_MAGIC || b[4] != VERSION) return 0;
  h->type = b[5];
  h->dest = get16(b + 6);
  h->len = get32(b + 8);
  h->crc = get32(b + 12);
  h->seq = get64(b + 16);
  h->time_ms = get64(b + 24);
  if (h->type < CAD_JREC_MSG || h->type > CAD_JREC_PURGE || h->len > MAX_PAYLOAD ||
      h->dest >= CAD_JOURNAL_MAX_DESTS)
    return 0;
  if (avail < CAD_JREC_HDR + (size_t)h->len) return -1;
  if (rec_crc(b, b + CAD_JREC_HDR, h->len) != h->crc) return 0;
  if (!rec_sane(h, b + CAD_JREC_HDR)) return 0;
  return (long long)(CAD_JREC_HDR + h->len);
}

static void seg_name(char *buf, size_t cap, const char *dir, uint64_t no) {
  snprintf(buf, cap, "%s/%016llu.seg", dir, (unsigned long long)no);
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

/* Find the next valid record at or after `from` in b[0..n). Returns its
 * offset or n. */
static size_t resync(const unsigned char *b, size_t n, size_t from) {
  static const unsigned char m[4] = {0x43, 0x41, 0x44, 0x51};
  while (from + CAD_JREC_HDR <= n) {
    const unsigned char *q = memmem(b + from, n - from, m, 4);
    if (!q) return n;
    size_t off = (size_t)(q - b);
    hdr_t h;
    if (rec_check(b + off, n - off, &h) > 0) return off;
    from = off + 1;
  }
  return n;
}

static int scan_segment(cad_journal_t *j, uint64_t no, bool last) {
  char path[PATH_MAX];
  seg_name(path, sizeof path, j->dir, no);
  int fd = open(path, (j->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  size_t n = (size_t)st.st_size;
  unsigned char *b = NULL;
  if (n) {
    b = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (b == MAP_FAILED) {
      int e = -errno;
      close(fd);
      return e;
    }
  }
  uint64_t created = 0;
  size_t off = SEG_HDR;
  bool zero_tail = false;
  bool hdr_ok = n >= SEG_HDR && get32(b) == SEG_MAGIC && b[4] == VERSION && get64(b + 8) == no;
  if (hdr_ok) {
    uLong c = crc32(0L, b, 28);
    hdr_ok = get32(b + 28) == (uint32_t)c;
    created = get64(b + 16);
  }
  int rc = 0;
  cad_jseg_t *s = seg_add(j, no, created);
  if (!s) {
    rc = CAD_E_NOMEM;
    goto out;
  }
  if (!hdr_ok) {
    /* A segment whose header did not reach the disk: the crash came while
     * it was being created (nothing was committed to it yet). */
    size_t len = strlen(j->report);
    snprintf(j->report + len, sizeof j->report - len, "segment %llu: invalid header (%zu bytes); ",
             (unsigned long long)no, n);
    if (n == 0 || resync(b, n, 0) == n) {
      j->stats.torn_bytes += n;
      s->size = SEG_HDR;
      if (!j->readonly && last) {
        /* Rewrite the header. */
        unsigned char h[SEG_HDR] = {0};
        put32(h, SEG_MAGIC);
        h[4] = VERSION;
        put64(h + 8, no);
        put64(h + 16, created);
        put32(h + 28, (uint32_t)crc32(0L, h, 28));
        if (ftruncate(fd, 0) != 0 || pwrite(fd, h, SEG_HDR, 0) != SEG_HDR || fdatasync(fd) != 0) {
          rc = -errno;
          goto out;
        }
      }
      goto out;
    }
    j->stats.corrupt_bytes += SEG_HDR;
  }
  while (off < n) {
    hdr_t h;
    long long r = rec_check(b + off, n - off, &h);
    if (r > 0) {
      if ((rc = apply(j, s, &h, b + off + CAD_JREC_HDR))) goto out;
      j->stats.records++;
      off += (size_t)r;
      continue;
    }
    size_t z = off;
    while (z < n && b[z] == 0) z++;
    if (z == n) { /* zero-filled ahead of the writes: not damage */
      zero_tail = true;
      break;
    }
    size_t next = resync(b, n, off + 1);
    if (next >= n) {
      /* Nothing valid after it: a torn tail. */
      size_t len = strlen(j->report);
      snprintf(j->report + len, sizeof j->report - len,
               last ? "segment %llu: cut %zu bytes of torn tail at offset %zu; "
                    : "segment %llu: CORRUPT end, %zu bytes unreadable from offset %zu; ",
               (unsigned long long)no, n - off, off);
      if (last) {
        j->stats.torn_bytes += n - off;
      } else {
        j->stats.corrupt_bytes += n - off;
        j->stats.corrupt_records++;
      }
      break;
    }
    size_t len = strlen(j->report);
    snprintf(j->report + len, sizeof j->report - len,
             "segment %llu: CORRUPT record at offset %zu, %zu bytes skipped; ",
             (unsigned long long)no, off, next - off);
    j->stats.corrupt_records++;
    j->stats.corrupt_bytes += next - off;
    off = next;
  }
  s->size = off < SEG_HDR ? SEG_HDR : off;
  if (!j->readonly && s->size < n && (last || zero_tail)) {
    if (ftruncate(fd, (off_t)s->size) != 0 || fdatasync(fd) != 0) {
      rc = -errno;
      goto out;
    }
  }
out:
  if (b) munmap(b, n);
  if (rc == 0 && last && !j->readonly) j->fd = fd;
  else close(fd);
  return rc;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static int fsync_dir(cad_journal_t *j) { return fsync(j->dirfd) == 0 ? 0 : -errno; }

static int write_dest_records(cad_journal_t *j, uint64_t now_ms);
static void cut_padding(cad_journal_t *j);

/* Create segment `no` and make it the active one. */
static int new_segment(cad_journal_t *j, uint64_t no, uint64_t now_ms) {
  char path[PATH_MAX];
  seg_name(path, sizeof path, j->dir, no);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return -errno;
  unsigned char h[SEG_HDR] = {0};
  put32(h, SEG_MAGIC);
  h[4] = VERSION;
  put64(h + 8, no);
  put64(h + 16, now_ms);
  put32(h + 28, (uint32_t)crc32(0L, h, 28));
  if (pwrite(fd, h, SEG_HDR, 0) != SEG_HDR || fdatasync(fd) != 0) {
    int e = errno ? -errno : CAD_E_IO;
    close(fd);
    unlink(path);
    return e;
  }
  int rc = fsync_dir(j);
  if (rc) {
    close(fd);
    unlink(path);
    return rc;
  }
  cut_padding(j);
  cad_jseg_t *s = seg_add(j, no, now_ms);
  if (!s) {
    close(fd);
    return CAD_E_NOMEM;
  }
  s->size = SEG_HDR;
  if (j->fd >= 0) close(j->fd);
  j->fd = fd;
  j->zeroed = SEG_HDR;
  /* Every segment restates the destinations, so deleting old segments never
   * loses a name or a position; if that write fails it is retried before
   * anything else goes into this segment. */
  rc = write_dest_records(j, now_ms);
  j->dests_pending = rc != 0;
  return rc;
}

int cad_journal_open(cad_journal_t *j, const char *dir, uint64_t segment_bytes, bool readonly) {
  memset(j, 0, sizeof *j);
  j->fd = -1;
  j->dirfd = -1;
  j->readonly = readonly;
  j->segment_bytes = segment_bytes ? segment_bytes : (64u << 20);
  j->dir = strdup(dir);
  if (!j->dir) return CAD_E_NOMEM;
  if (!readonly && mkdir(dir, 0750) != 0 && errno != EEXIST) {
    int e = -errno;
    cad_journal_close(j);
    return e;
  }
  j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (j->dirfd < 0) {
    int e = -errno;
    cad_journal_close(j);
    return e;
  }
  if (grow_dest_cap(j, 8)) {
    cad_journal_close(j);
    return CAD_E_NOMEM;
  }
  DIR *d = opendir(dir);
  if (!d) {
    int e = -errno;
    cad_journal_close(j);
    return e;
  }
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
        cad_journal_close(j);
        return CAD_E_NOMEM;
      }
      nos = nv;
    }
    nos[nn++] = no;
  }
  closedir(d);
  if (nn) qsort(nos, nn, sizeof *nos, cmp_u64);
  int rc = 0;
  for (size_t i = 0; i < nn && rc == 0; i++) rc = scan_segment(j, nos[i], i == nn - 1);
  uint64_t next_no = nn ? nos[nn - 1] + 1 : 1;
  free(nos);
  for (uint16_t i = 0; rc == 0 && i < j->ndests; i++) {
    cad_jdest_t *jd = &j->dests[i];
    if (jd->done_seq <= jd->last_seq) continue;
    /* Its newest messages were unreadable but a later DONE mark was not:
     * new messages must go on after the finished position, or they would
     * count as finished on arrival. */
    size_t len = strlen(j->report);
    snprintf(j->report + len, sizeof j->report - len,
             "destination %u: finished up to %llu but messages end at %llu; ", i,
             (unsigned long long)jd->done_seq, (unsigned long long)jd->last_seq);
    jd->last_seq = jd->done_seq;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  if (rc == 0 && !readonly && j->fd < 0) {
    rc = new_segment(j, next_no, now_ms);
  } else if (rc == 0 && !readonly) {
    /* The segment we go on writing must name every destination (deleting
     * older ones must never lose a name): a crash between creating it and
     * writing its DEST records leaves it without them. */
    uint64_t active = j->segs[j->nsegs - 1].no;
    bool missing = false;
    for (uint16_t i = 0; i < j->ndests; i++)
      missing |= j->dests[i].name && j->dests[i].dest_seg != active;
    if (missing) rc = write_dest_records(j, now_ms);
  }
  if (rc) {
    cad_journal_close(j);
    return rc;
  }
  return 0;
}

void cad_journal_close(cad_journal_t *j) {
  if (!j->readonly) cut_padding(j);
  if (j->fd >= 0) close(j->fd);
  if (j->dirfd >= 0) close(j->dirfd);
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
  if (to > j->segment_bytes + ZERO_CHUNK) to = j->segment_bytes + ZERO_CHUNK;
  for (uint64_t o = from; o < to;) {
    size_t n = (size_t)(to - o < sizeof zeros ? to - o : sizeof zeros);
    ssize_t w = pwrite(j->fd, zeros, n, (off_t)o);
    if (w <= 0) return;
    o += (uint64_t)w;
    j->zeroed = o;
  }
}

/* A segment that is no longer written loses its zero padding. */
static void cut_padding(cad_journal_t *j) {
  if (j->fd < 0 || j->nsegs == 0) return;
  if (ftruncate(j->fd, (off_t)j->segs[j->nsegs - 1].size) == 0) fdatasync(j->fd);
  j->zeroed = 0;
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
    hdr_encode(hdrs[i].hdr, &h);
    put32(hdrs[i].hdr + 12, rec_crc(hdrs[i].hdr, recs[i].payload, recs[i].len));
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
    ssize_t w = pwritev(j->fd, iov + vi, cnt, (off_t)off);
    if (w < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
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
  if (rc == 0 && sync && fdatasync(j->fd) != 0) rc = -errno;
  if (rc == 0) j->unsynced = !sync;
  free(hdrs);
  free(iov);
  if (rc) {
    /* Nothing of this batch counts; drop what reached the file. */
    if (ftruncate(j->fd, (off_t)s->size) != 0) { /* next write overwrites it anyway */
    }
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
  if (fdatasync(j->fd) != 0) return -errno;
  j->unsynced = false;
  return 0;
}

cad_jpos_t cad_journal_end(const cad_journal_t *j) {
  const cad_jseg_t *s = &j->segs[j->nsegs - 1];
  return (cad_jpos_t){s->no, s->size};
}

cad_jpos_t cad_journal_begin(const cad_journal_t *j) {
  if (j->nsegs == 0) return (cad_jpos_t){1, SEG_HDR};
  return (cad_jpos_t){j->segs[0].no, SEG_HDR};
}

uint64_t cad_journal_bytes(const cad_journal_t *j) {
  uint64_t t = 0;
  for (size_t i = 0; i < j->nsegs; i++) t += j->segs[i].size;
  return t;
}

int cad_journal_retain(cad_journal_t *j, uint64_t max_age_ms, uint64_t max_bytes, uint64_t now_ms,
                       cad_jpos_t min_reader) {
  if (j->readonly) return 0;
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
    seg_name(path, sizeof path, j->dir, s->no);
    if (unlink(path) != 0 && errno != ENOENT) break;
    bytes -= s->size;
    free(s->max_seq);
    memmove(&j->segs[0], &j->segs[1], (j->nsegs - 1) * sizeof j->segs[0]);
    j->nsegs--;
    deleted++;
  }
  if (deleted) fsync_dir(j);
  return deleted;
}

/* ---- reading ------------------------------------------------------------ */

int cad_jreader_init(cad_jreader_t *r, const char *dir) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  r->dir = strdup(dir);
  r->chunk_cap = 256 * 1024;
  r->chunk = malloc(r->chunk_cap);
  if (!r->dir || !r->chunk) {
    cad_jreader_free(r);
    return CAD_E_NOMEM;
  }
  return 0;
}

void cad_jreader_free(cad_jreader_t *r) {
  if (r->fd >= 0) close(r->fd);
  free(r->dir);
  free(r->chunk);
  memset(r, 0, sizeof *r);
  r->fd = -1;
}

static int reader_open(cad_jreader_t *r, uint64_t seg) {
  if (r->fd >= 0 && r->fd_seg == seg) return 0;
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  r->chunk_len = 0;
  char path[PATH_MAX];
  seg_name(path, sizeof path, r->dir, seg);
  r->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (r->fd < 0) return -errno;
  r->fd_seg = seg;
  return 0;
}

/* Make bytes [off, off+need) of segment seg available in the chunk, reading
 * no further than limit. Returns a pointer or NULL (with *err). */
static const unsigned char *reader_bytes(cad_jreader_t *r, uint64_t seg, uint64_t off, size_t need,
                                         uint64_t limit, int *err) {
  if (r->chunk_len && r->chunk_seg == seg && off >= r->chunk_off &&
      off + need <= r->chunk_off + r->chunk_len)
    return (const unsigned char *)r->chunk + (off - r->chunk_off);
  if ((*err = reader_open(r, seg))) return NULL;
  if (need > r->chunk_cap) {
    char *nc = realloc(r->chunk, need);
    if (!nc) {
      *err = CAD_E_NOMEM;
      return NULL;
    }
    r->chunk = nc;
    r->chunk_cap = need;
  }
  size_t want = r->chunk_cap;
  if (off + want > limit) want = (size_t)(limit - off);
  if (want < need) {
    *err = CAD_E_IO;
    return NULL;
  }
  size_t got = 0;
  while (got < want) {
    ssize_t n = pread(r->fd, r->chunk + got, want - got, (off_t)(off + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = -errno;
      return NULL;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  r->chunk_seg = seg;
  r->chunk_off = off;
  r->chunk_len = got;
  if (got < need) {
    *err = CAD_E_IO;
    return NULL;
  }
  return (const unsigned char *)r->chunk;
}

int cad_jreader_next(cad_jreader_t *r, cad_jpos_t *pos, cad_jpos_t end, int want_dest,
                     uint8_t want_type, cad_jread_t *out) {
  for (;;) {
    if (pos->seg > end.seg || (pos->seg == end.seg && pos->off >= end.off)) {
      *pos = end;
      return 0;
    }
    uint64_t limit;
    if (pos->seg == end.seg) {
      limit = end.off;
    } else {
      /* An older segment: its committed size is its file size. */
      int e = reader_open(r, pos->seg);
      if (e == -ENOENT) {
        /* Deleted by retention or a gap in numbering: go on. */
        pos->seg++;
        pos->off = SEG_HDR;
        continue;
      }
      if (e) return e;
      struct stat st;
      if (fstat(r->fd, &st) != 0) return -errno;
      limit = (uint64_t)st.st_size;
    }
    if (pos->off < SEG_HDR) pos->off = SEG_HDR;
    if (pos->off + CAD_JREC_HDR > limit) {
      pos->seg++;
      pos->off = SEG_HDR;
      continue;
    }
    int err = 0;
    const unsigned char *b = reader_bytes(r, pos->seg, pos->off, CAD_JREC_HDR, limit, &err);
    if (!b) return err;
    hdr_t h;
    bool valid = get32(b) == REC_MAGIC && b[4] == VERSION;
    if (valid) {
      h.type = b[5];
      h.dest = get16(b + 6);
      h.len = get32(b + 8);
      h.crc = get32(b + 12);
      h.seq = get64(b + 16);
      h.time_ms = get64(b + 24);
      /* The same rules as rec_check (recovery), so both agree on which
       * records exist. */
      valid = h.len <= MAX_PAYLOAD && pos->off + CAD_JREC_HDR + h.len <= limit &&
              h.type >= CAD_JREC_MSG && h.type <= CAD_JREC_PURGE && h.dest < CAD_JOURNAL_MAX_DESTS;
    }
    if (valid) {
      bool match =
          (want_dest < 0 || h.dest == want_dest) && (want_type == 0 || h.type == want_type);
      size_t total = CAD_JREC_HDR + h.len;
      /* Every record's CRC is checked, also one skipped for another
       * destination: a corrupt length must not make us jump over valid
       * records. */
      const unsigned char *rb = reader_bytes(r, pos->seg, pos->off, total, limit, &err);
      if (!rb) return err;
      if (rec_crc(rb, rb + CAD_JREC_HDR, h.len) == h.crc && rec_sane(&h, rb + CAD_JREC_HDR)) {
        cad_jpos_t here = *pos;
        pos->off += total;
        if (!match) continue;
        out->type = h.type;
        out->dest = h.dest;
        out->seq = h.seq;
        out->time_ms = h.time_ms;
        out->pos = here;
        out->next = *pos;
        cad_buf_clear(&out->payload);
        if (h.len && cad_buf_append(&out->payload, rb + CAD_JREC_HDR, h.len)) return CAD_E_NOMEM;
        return 1;
      }
    }
    /* Invalid record: search forward for the next valid one in this segment. */
    r->corrupt_records++;
    uint64_t from = pos->off + 1;
    bool found = false;
    while (from + CAD_JREC_HDR <= limit && !found) {
      size_t span = (size_t)(limit - from);
      if (span > r->chunk_cap) span = r->chunk_cap;
      const unsigned char *cb = reader_bytes(r, pos->seg, from, span, limit, &err);
      if (!cb) return err;
      size_t k = resync(cb, span, 0);
      if (k < span) {
        pos->off = from + k;
        found = true;
      } else {
        from += span > CAD_JREC_HDR ? span - CAD_JREC_HDR : span;
      }
    }
    if (!found) {
      pos->seg++;
      pos->off = SEG_HDR;
    }
  }
}
