/* file_batch.c - HL7 batch files (file_batch.h). */
#include "file_batch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "cad_io.h"
#include "file_dest.h"

#define STAGE ".batch.stage"
#define TMP_PREFIX ".batch-tmp."
#define REC_MSG 0x42444143u    /* "CADB" little-endian */
#define REC_COMMIT 0x43444143u /* "CADC" */
#define HDR 12
#define COPY 65536
#define MAX_REC (1u << 30)

typedef struct item {
  struct item *next;
  const char *bytes;
  size_t len;
  cad_file_batch_cb cb;
  void *arg;
} item_t;

struct cad_file_batch {
  uv_loop_t *loop;
  char *dir;
  char *name_fmt;
  uint32_t max_messages;
  size_t max_bytes;
  uint64_t max_age_ms;
  mode_t mode;
  int dirfd, stagefd;
  uint64_t stage_len;    /* valid bytes in the stage */
  uint64_t count, bytes; /* messages staged */
  char delims[8];        /* MSH-1 and MSH-2 of the staged batch's first message */
  uint64_t batches;
  item_t *qhead, *qtail, *work_items;
  uv_work_t work;
  uv_timer_t timer;
  uv_timer_t wait_timer; /* the stage is still another instance's: try again */
  int handles;
  bool busy, closing, roll_due, recover, timer_on, locked, lock_wait;
  uint64_t wait_since;
  int work_rc;
  char *buf;
};

/* ---- the envelope ------------------------------------------------------------- */

int cad_file_batch_envelope(const char *first, size_t len, uint64_t count, int64_t when,
                            const char *name, const char *ctl, char *head, size_t hcap, char *tail,
                            size_t tcap) {
  if (len < 8 || memcmp(first, "MSH", 3) != 0) return CAD_E_INVAL;
  char fs = first[3];
  if (fs == '\r' || fs == '\n' || fs == 0) return CAD_E_INVAL;
  /* MSH-2 .. MSH-6 of the first segment. */
  const char *f[7] = {0};
  size_t fl[7] = {0};
  size_t i = 4, k = 2;
  while (k <= 6) {
    size_t s = i;
    while (i < len && first[i] != fs && first[i] != '\r' && first[i] != '\n') i++;
    f[k] = first + s;
    fl[k] = i - s;
    k++;
    if (i >= len || first[i] != fs) break;
    i++;
  }
  if (!f[2] || fl[2] == 0 || fl[2] > 5) return CAD_E_INVAL;
  struct tm tm;
  time_t t = (time_t)when;
  char ts[20];
  if (!gmtime_r(&t, &tm) || !strftime(ts, sizeof ts, "%Y%m%d%H%M%S", &tm)) return CAD_E_INVAL;
  int n =
      snprintf(head, hcap,
               "FHS%c%.*s%c%.*s%c%.*s%c%.*s%c%.*s%c%s%c%c%s%c%c%s\r"
               "BHS%c%.*s%c%.*s%c%.*s%c%.*s%c%.*s%c%s%c%c%s%c%c%s\r",
               fs, (int)fl[2], f[2], fs, (int)fl[3], f[3] ? f[3] : "", fs, (int)fl[4],
               f[4] ? f[4] : "", fs, (int)fl[5], f[5] ? f[5] : "", fs, (int)fl[6], f[6] ? f[6] : "",
               fs, ts, fs, fs, name, fs, fs, ctl, fs, (int)fl[2], f[2], fs, (int)fl[3],
               f[3] ? f[3] : "", fs, (int)fl[4], f[4] ? f[4] : "", fs, (int)fl[5], f[5] ? f[5] : "",
               fs, (int)fl[6], f[6] ? f[6] : "", fs, ts, fs, fs, name, fs, fs, ctl);
  if (n < 0 || (size_t)n >= hcap) return CAD_E_TOOBIG;
  n = snprintf(tail, tcap, "BTS%c%" PRIu64 "\rFTS%c1\r", fs, count, fs);
  if (n < 0 || (size_t)n >= tcap) return CAD_E_TOOBIG;
  return 0;
}

/* ---- the stage (thread pool) ------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16),
  p[3] = (unsigned char)(v >> 24);
}
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Append one record at stage_len (not synced). */
static int put_record(cad_file_batch_t *b, uint32_t type, const char *p, size_t len) {
  unsigned char h[HDR];
  put32(h, type);
  put32(h + 4, (uint32_t)len);
  put32(h + 8, (uint32_t)crc32(0, (const Bytef *)p, (uInt)len));
  struct iovec iov[2] = {{h, HDR}, {(void *)p, len}};
  const cad_io_t *io = cad_io_default();
  ssize_t n = io->pwritev(io->ctx, b->stagefd, iov, 2, (off_t)b->stage_len);
  if (n != (ssize_t)(HDR + len)) {
    int rc = n < 0 ? (int)n : -EIO;
    if (ftruncate(b->stagefd, (off_t)b->stage_len) != 0) { /* the next append overwrites */
    }
    return rc;
  }
  b->stage_len += HDR + len;
  return 0;
}

/* Walk the stage's valid records: fn(ud, type, offset of payload, len) for
 * each; returns the valid length.  Payload bytes are read by the caller. */
typedef struct rec {
  uint32_t type;
  uint64_t off;
  uint32_t len;
} rec_t;

static int read_at(int fd, void *p, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, (char *)p + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* The next valid record at *pos (1), or 0 at the end / a torn tail. */
static int next_record(cad_file_batch_t *b, uint64_t *pos, rec_t *r) {
  unsigned char h[HDR];
  if (read_at(b->stagefd, h, HDR, *pos) < 0) return 0;
  r->type = get32(h);
  r->len = get32(h + 4);
  r->off = *pos + HDR;
  if ((r->type != REC_MSG && r->type != REC_COMMIT) || r->len > MAX_REC) return 0;
  uint32_t want = get32(h + 8), crc = (uint32_t)crc32(0, NULL, 0);
  for (uint64_t o = 0; o < r->len;) {
    size_t n = r->len - o < COPY ? (size_t)(r->len - o) : COPY;
    if (read_at(b->stagefd, b->buf, n, r->off + o) < 0) return 0;
    crc = (uint32_t)crc32(crc, (const Bytef *)b->buf, (uInt)n);
    o += n;
  }
  if (crc != want) return 0;
  *pos = r->off + r->len;
  return 1;
}

static int write_all(int fd, const void *p, size_t n) {
  return cad_io_writev_all(cad_io_default(), fd, &(struct iovec){(void *)p, n}, 1);
}

/* Write the staged messages as one batch file; empty the stage. */
static int roll(cad_file_batch_t *b) {
  if (b->count == 0) return 0;
  /* The first message's header, for the envelope. */
  uint64_t pos = 0;
  rec_t r;
  char first[1024];
  size_t flen = 0;
  while (next_record(b, &pos, &r))
    if (r.type == REC_MSG) {
      flen = r.len < sizeof first ? r.len : sizeof first;
      if (read_at(b->stagefd, first, flen, r.off) < 0) return -EIO;
      break;
    }
  time_t now = time(NULL);
  struct tm tm;
  char base[256], name[300], ctl[40], tmp[64];
  gmtime_r(&now, &tm);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  /* The configured pattern (checked at load to be a plain file name). */
  size_t bn = strftime(base, sizeof base, b->name_fmt, &tm);
#pragma GCC diagnostic pop
  if (!bn || strchr(base, '/') || base[0] == '.') snprintf(base, sizeof base, "batch.hl7");
  struct stat st;
  unsigned k = 1;
  for (;; k++) {
    cad_file_name_suffixed(base, k, name, sizeof name);
    if (fstatat(b->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || k >= 9999) break;
  }
  unsigned char rnd[8];
  if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) memset(rnd, 0, sizeof rnd);
  snprintf(ctl, sizeof ctl, "%011" PRIX64 "%02X%02X%02X%02X", (uint64_t)cad_now_ms(), rnd[0],
           rnd[1], rnd[2], rnd[3]);
  snprintf(tmp, sizeof tmp, TMP_PREFIX "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
           rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  char head[2048], tail[64];
  int rc = cad_file_batch_envelope(first, flen, b->count, (int64_t)now, name, ctl, head,
                                   sizeof head, tail, sizeof tail);
  if (rc < 0) /* not an HL7 header: a plain envelope all the same */
    rc = cad_file_batch_envelope("MSH|^~\\&|", 9, b->count, (int64_t)now, name, ctl, head,
                                 sizeof head, tail, sizeof tail);
  if (rc < 0) return rc;
  int fd = openat(b->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, b->mode);
  if (fd < 0) return -errno;
  rc = write_all(fd, head, strlen(head));
  pos = 0;
  while (rc == 0 && next_record(b, &pos, &r)) {
    if (r.type != REC_MSG) continue;
    char last = 0;
    for (uint64_t o = 0; rc == 0 && o < r.len;) {
      size_t n = r.len - o < COPY ? (size_t)(r.len - o) : COPY;
      rc = read_at(b->stagefd, b->buf, n, r.off + o) < 0 ? -EIO : write_all(fd, b->buf, n);
      last = b->buf[n - 1];
      o += n;
    }
    if (rc == 0 && last != '\r' && last != '\n') rc = write_all(fd, "\r", 1);
  }
  if (rc == 0) rc = write_all(fd, tail, strlen(tail));
  if (rc == 0 && fdatasync(fd) != 0) rc = -errno;
  close(fd);
  /* The COMMIT record says which file holds this batch, before it exists. */
  uint64_t before = b->stage_len;
  if (rc == 0) rc = put_record(b, REC_COMMIT, name, strlen(name));
  if (rc == 0 && fdatasync(b->stagefd) != 0) rc = -errno;
  if (rc == 0)
    rc = cad_io_default()->renameat2(cad_io_default()->ctx, b->dirfd, tmp, b->dirfd, name,
                                     CAD_IO_RENAME_NOREPLACE);
  if (rc == 0 && fsync(b->dirfd) != 0) rc = -errno;
  if (rc < 0) {
    unlinkat(b->dirfd, tmp, 0);
    if (b->stage_len > before && ftruncate(b->stagefd, (off_t)before) == 0) b->stage_len = before;
    return rc;
  }
  if (ftruncate(b->stagefd, 0) == 0) fdatasync(b->stagefd);
  b->stage_len = 0;
  b->count = b->bytes = 0;
  b->batches++;
  return 0;
}

/* At open: cut a torn tail, finish or drop a committed batch, publish the
 * rest; remove temporary files of a crash. */
static int recover(cad_file_batch_t *b) {
  int fd = dup(b->dirfd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)))
      if (strncmp(e->d_name, TMP_PREFIX, sizeof TMP_PREFIX - 1) == 0)
        unlinkat(b->dirfd, e->d_name, 0);
    closedir(d);
  } else if (fd >= 0) {
    close(fd);
  }
  uint64_t pos = 0, commit_at = 0, count = 0, bytes = 0;
  rec_t r, commit = {0, 0, 0};
  while (next_record(b, &pos, &r)) {
    if (r.type == REC_COMMIT) {
      commit = r;
      commit_at = r.off - HDR;
    } else {
      count++;
      bytes += r.len;
    }
  }
  if (commit.type) {
    char name[300];
    size_t n = commit.len < sizeof name - 1 ? commit.len : sizeof name - 1;
    struct stat st;
    if (read_at(b->stagefd, name, n, commit.off) == 0) {
      name[n] = 0;
      if (fstatat(b->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        count = 0; /* published before the crash */
        pos = 0;
      } else {
        pos = commit_at; /* not published: publish again */
      }
    }
  }
  if (ftruncate(b->stagefd, (off_t)pos) != 0) return -errno;
  fdatasync(b->stagefd);
  b->stage_len = pos;
  b->count = count;
  b->bytes = bytes;
  return roll(b);
}

#define LOCK_WAIT 1 /* work_rc: the stage is locked by another instance */

static void work_cb(uv_work_t *w) {
  cad_file_batch_t *b = w->data;
  int rc = 0;
  /* One instance per stage: a reload opens the new destination while the
   * old one may still be finishing; the new one waits for its lock. */
  if (!b->locked) {
    if (flock(b->stagefd, LOCK_EX | LOCK_NB) != 0) {
      b->work_rc = LOCK_WAIT;
      return;
    }
    b->locked = true;
  }
  if (b->recover) {
    rc = recover(b);
    b->recover = false;
  }
  size_t appended = 0;
  for (item_t *it = b->work_items; it && rc == 0; it = it->next) {
    /* A message whose delimiters differ from the batch's starts a new one. */
    /* So does one that would take the batch past max_bytes. */
    if (b->count && ((it->len >= 8 && memcmp(it->bytes, "MSH", 3) == 0 &&
                      memcmp(it->bytes + 3, b->delims, 5) != 0) ||
                     b->bytes + it->len > b->max_bytes)) {
      if (fdatasync(b->stagefd) != 0) rc = -errno;
      if (rc == 0) rc = roll(b);
    }
    if (rc == 0) rc = put_record(b, REC_MSG, it->bytes, it->len);
    if (rc == 0) {
      if (b->count == 0 && it->len >= 8) memcpy(b->delims, it->bytes + 3, 5);
      b->count++;
      b->bytes += it->len;
      appended++;
      if (b->count >= b->max_messages) { /* full: written now */
        if (fdatasync(b->stagefd) != 0) rc = -errno;
        if (rc == 0) rc = roll(b);
        appended = 0;
      }
    }
  }
  if (rc == 0 && appended && fdatasync(b->stagefd) != 0) rc = -errno;
  if (rc == 0 && (b->roll_due || b->count >= b->max_messages || b->bytes >= b->max_bytes)) {
    int rr = roll(b); /* a failed roll is tried again; the messages are staged */
    (void)rr;
  }
  b->roll_due = false;
  b->work_rc = rc;
}

/* ---- the loop ----------------------------------------------------------------- */

static void start(cad_file_batch_t *b);
static void batch_free(cad_file_batch_t *b);

static void on_timer(uv_timer_t *t) {
  cad_file_batch_t *b = t->data;
  b->roll_due = true;
  b->timer_on = false;
  start(b);
}

static void on_wait(uv_timer_t *t) {
  cad_file_batch_t *b = t->data;
  start(b);
}

static void after_work(uv_work_t *w, int status) {
  cad_file_batch_t *b = w->data;
  b->busy = false;
  if (status == 0 && b->work_rc == LOCK_WAIT && !b->closing) {
    /* Put the messages back in front and try again shortly. */
    item_t *last = b->work_items;
    while (last && last->next) last = last->next;
    if (last) {
      last->next = b->qhead;
      if (!b->qhead) b->qtail = last;
      b->qhead = b->work_items;
    }
    b->work_items = NULL;
    uint64_t now = cad_mono_ms();
    if (!b->wait_since) b->wait_since = now;
    if (now - b->wait_since > 30000 && !b->lock_wait) {
      b->lock_wait = true; /* said once by the caller's retries: fail them */
    }
    uv_timer_start(&b->wait_timer, on_wait, 50, 0);
    if (!b->lock_wait) return;
  }
  b->wait_since = 0;
  int rc = status < 0 ? status : b->work_rc == LOCK_WAIT ? CAD_E_STATE : b->work_rc;
  item_t *it = b->work_items;
  if (b->work_rc == LOCK_WAIT && b->lock_wait) { /* 30 s: fail what waits (retried) */
    it = b->qhead;
    b->qhead = b->qtail = NULL;
    b->lock_wait = false;
  }
  b->work_items = NULL;
  while (it) {
    item_t *next = it->next;
    it->cb(rc, it->arg);
    free(it);
    it = next;
  }
  if (b->count && !b->timer_on && !b->closing) {
    uv_timer_start(&b->timer, on_timer, b->max_age_ms, 0);
    b->timer_on = true;
  } else if (!b->count && b->timer_on) {
    uv_timer_stop(&b->timer);
    b->timer_on = false;
  }
  start(b);
  if (b->closing && !b->busy && !b->qhead) batch_free(b);
}

static void start(cad_file_batch_t *b) {
  if (b->busy || (!b->qhead && !b->roll_due && !b->recover)) return;
  b->work_items = b->qhead;
  b->qhead = b->qtail = NULL;
  b->busy = true;
  b->work.data = b;
  if (uv_queue_work(b->loop, &b->work, work_cb, after_work) < 0) {
    b->work_rc = CAD_E_STATE;
    after_work(&b->work, CAD_E_STATE);
  }
}

static void timer_closed(uv_handle_t *h) {
  cad_file_batch_t *b = h->data;
  if (--b->handles > 0) return;
  if (b->stagefd >= 0) close(b->stagefd); /* and its lock */
  if (b->dirfd >= 0) close(b->dirfd);
  free(b->dir);
  free(b->name_fmt);
  free(b->buf);
  free(b);
}

static void batch_free(cad_file_batch_t *b) {
  uv_timer_stop(&b->timer);
  uv_timer_stop(&b->wait_timer);
  uv_close((uv_handle_t *)&b->timer, timer_closed);
  uv_close((uv_handle_t *)&b->wait_timer, timer_closed);
}

int cad_file_batch_open(uv_loop_t *loop, const char *dir, const cad_file_batch_opts_t *o,
                        uint32_t mode, uint32_t dir_mode, cad_file_batch_t **out, char *err,
                        size_t cap) {
  cad_file_batch_t *b = calloc(1, sizeof *b);
  if (!b) return CAD_E_NOMEM;
  b->loop = loop;
  b->dirfd = b->stagefd = -1;
  b->dir = strdup(dir);
  b->name_fmt = strdup(o->name ? o->name : "batch_%Y%m%d_%H%M%S.hl7");
  b->buf = malloc(COPY);
  b->max_messages = o->max_messages ? o->max_messages : 1000;
  b->max_bytes = o->max_bytes ? o->max_bytes : (size_t)10 << 20;
  b->max_age_ms = o->max_age_ms ? o->max_age_ms : 60000;
  b->mode = mode ? (mode_t)mode : 0600;
  int rc = b->dir && b->name_fmt && b->buf ? 0 : CAD_E_NOMEM;
  if (rc == 0) rc = cad_io_mkdir_p(cad_io_default(), dir, dir_mode ? dir_mode : 0700);
  if (rc == 0 && (b->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) rc = -errno;
  if (rc == 0 &&
      (b->stagefd = openat(b->dirfd, STAGE, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                           0600)) < 0)
    rc = -errno;
  struct stat st;
  if (rc == 0 && (fstat(b->stagefd, &st) != 0 || !S_ISREG(st.st_mode))) rc = CAD_E_INVAL;
  if (rc < 0) {
    snprintf(err, cap, "batch: cannot open %s/%s: %s", dir, STAGE, cad_strerror(rc));
    if (b->stagefd >= 0) close(b->stagefd);
    if (b->dirfd >= 0) close(b->dirfd);
    free(b->dir), free(b->name_fmt), free(b->buf), free(b);
    return rc;
  }
  fsync(b->dirfd);
  uv_timer_init(loop, &b->timer);
  b->timer.data = b;
  uv_timer_init(loop, &b->wait_timer);
  b->wait_timer.data = b;
  b->handles = 2;
  b->recover = true;
  start(b);
  *out = b;
  return 0;
}

int cad_file_batch_write(cad_file_batch_t *b, const char *bytes, size_t len, cad_file_batch_cb cb,
                         void *arg) {
  if (b->closing) return CAD_E_STATE;
  if (len > MAX_REC) return CAD_E_TOOBIG;
  item_t *it = malloc(sizeof *it);
  if (!it) return CAD_E_NOMEM;
  *it = (item_t){NULL, bytes, len, cb, arg};
  if (b->qtail) b->qtail->next = it;
  else b->qhead = it;
  b->qtail = it;
  start(b);
  return 0;
}

uint64_t cad_file_batch_count(const cad_file_batch_t *b) { return b->batches; }

void cad_file_batch_close(cad_file_batch_t *b) {
  b->closing = true;
  if (!b->busy && !b->qhead) batch_free(b);
}
