/* src_dir.c - the directory source (src_dir.h). */
#include "src_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "cad_io.h"
#include "cad_mem.h"
#include "hl7_stream.h"
#include "log.h"
#include "file_dest.h"

#define MAX_CANDIDATES 64
#define CHUNK (256 * 1024)
#define BATCH_ITEMS 1024
#define BATCH_BYTES (1024 * 1024)
#define RING 4096
#define INFLIGHT_ITEMS 1024       /* read on below this many in flight ... */
#define INFLIGHT_BYTES (4u << 20) /* ... and below this many bytes */
#define SAVE_EVERY_MS 200
#define MAX_REASONS 100
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define MAX_SUFFIX 9999
#define WARNED 256
#define STATE_DIR ".caduceus"

typedef enum { ST_PENDING = 0, ST_OK, ST_REFUSED, ST_TRANSIENT } slot_state_t;

typedef struct dsrc dsrc_t;

/* One message in flight (or answered past the answered prefix). */
typedef struct slot {
  dsrc_t *s;
  uint64_t num;
  uint64_t end; /* byte offset after it */
  uint32_t len;
  bool exact; /* a message: reading may resume at `end` */
  unsigned char state;
} slot_t;

/* One item read ahead by the worker (bytes in the batch buffer). */
typedef struct bitem {
  int kind, err;
  uint64_t num, offset;
  size_t boff, len;
} bitem_t;

typedef struct cand {
  char name[256];
  struct stat st;
} cand_t;

typedef struct file {
  char name[256];
  char prog[40]; /* its progress file in the state folder */
  struct stat st0;
  int fd;
  uint64_t seq; /* for logs (conn=) */
  char peer[64];
  cad_hl7_stream_t stream;
  uint64_t stream_base; /* file offset of the stream's byte 0 */
  uint64_t read_off;
  bool eof;
  int rerr;
  char *chunk;
  cad_buf_t bbuf;
  bitem_t *bitems;
  size_t nb;
  uint64_t next_num;  /* items numbered so far */
  uint64_t skip_upto; /* answered before a restart */
  uint64_t done_upto; /* answered prefix */
  uint64_t submitted;
  uint64_t resume_off, resume_num; /* where reading may resume (ER7) */
  uint64_t saved_upto, last_save_ms;
  size_t inflight, inflight_bytes;
  uint64_t taken, refused;
  bool transient;
  int fmt; /* the format the stream found */
  cad_buf_t reasons;
  size_t nreasons;
  char outcome[16]; /* "done", "error", "replaced", ... after finish */
  char final[300];
  slot_t ring[RING];
} file_t;

typedef enum { JOB_NONE, JOB_SCAN, JOB_OPEN, JOB_READ, JOB_SAVE, JOB_FINISH } job_t;

struct dsrc {
  uv_loop_t *loop;
  cad_pipe_t *pipe;
  cad_pipe_chan_t *pc;
  char chan[CAD_CONF_NAME_MAX + 1]; /* for logs, also while stopping */
  cad_pipe_src_t src;
  char *dir, *pattern, *done, *error;
  uint64_t stable_ms, rescan_ms;
  int format, max_message;
  int dirfd, donefd, errfd, statefd, lockfd;
  bool locked;
  uv_fs_event_t ev;
  bool ev_on;
  uv_timer_t timer;
  int handles;
  uv_work_t work;
  job_t job;
  int job_rc;
  bool busy, submitting, stopping, dirty, want_scan;
  uint64_t retry_at, backoff;
  /* scan results */
  cand_t cands[MAX_CANDIDATES];
  size_t ncands, next_cand;
  cand_t skipped[8]; /* names that are not regular files, to warn about */
  size_t nskipped;
  bool moved_any;    /* a file of this list was moved: scan again at once */
  uint64_t ready_at; /* earliest time a young file becomes stable (0 = none) */
  int scan_err;
  uint64_t warned[WARNED]; /* hashes of names warned about */
  size_t nwarned;
  file_t *cur;
  uint64_t files_seq;
  void (*done_cb)(void *);
  void *done_arg;
};

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t fnv64(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* A file name fit for a log line or a reason file: printable ASCII. */
static void safe_name(char *out, size_t cap, const char *in) {
  size_t n = 0;
  for (; *in && n + 1 < cap; in++) {
    unsigned char c = (unsigned char)*in;
    out[n++] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
  }
  out[n] = 0;
}

static void log_file(dsrc_t *s, cad_log_level_t lvl, const char *event, const char *name, int err,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void log_file(dsrc_t *s, cad_log_level_t lvl, const char *event, const char *name, int err,
                     const char *fmt, ...) {
  if (!CAD_LOG_ON(lvl)) return;
  char text[512], nm[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  safe_name(nm, sizeof nm, name ? name : "");
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = s->chan;
  c.peer = nm;
  if (err) c.error = cad_err_name(err);
  cad_log_emit(lvl, event, &c, "%s", text);
}

static bool warn_once(dsrc_t *s, uint64_t h) {
  for (size_t i = 0; i < s->nwarned && i < WARNED; i++)
    if (s->warned[i] == h) return false;
  s->warned[s->nwarned++ % WARNED] = h;
  return true;
}

static bool ignored_name(const char *n) {
  static const char *const suffixes[] = {".tmp", ".part", ".filepart"};
  if (n[0] == '.') return true;
  size_t len = strlen(n);
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t k = strlen(suffixes[i]);
    if (len >= k && strcmp(n + len - k, suffixes[i]) == 0) return true;
  }
  return false;
}

static int64_t mtime_ms(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static bool same_file(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int cand_cmp(const void *pa, const void *pb) {
  const cand_t *a = pa, *b = pb;
  int64_t ma = mtime_ms(&a->st), mb = mtime_ms(&b->st);
  if (ma != mb) return ma < mb ? -1 : 1;
  return strcmp(a->name, b->name);
}

/* ---- the scan (thread pool) ------------------------------------------------- */

/* Remove progress files whose file is gone (moved before the progress
 * file was removed: a crash in between) and temporary leftovers. */
static void clean_state(dsrc_t *s) {
  int fd = dup(s->statefd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  struct dirent *e;
  char buf[512];
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "p-", 2) != 0) continue;
    if (strstr(e->d_name, ".tmp")) {
      unlinkat(s->statefd, e->d_name, 0);
      continue;
    }
    int pf = openat(s->statefd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (pf < 0) continue;
    ssize_t n = read(pf, buf, sizeof buf - 1);
    close(pf);
    if (n <= 0) continue;
    buf[n] = 0;
    /* line 2: "name <hex>" */
    char *p = strstr(buf, "\nname ");
    if (!p) continue;
    p += 6;
    char name[256];
    size_t k = 0;
    while (p[0] && p[1] && p[0] != '\n' && k + 1 < sizeof name) {
      unsigned v;
      if (sscanf(p, "%2x", &v) != 1) break;
      name[k++] = (char)v;
      p += 2;
    }
    name[k] = 0;
    struct stat st;
    if (k && fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
      unlinkat(s->statefd, e->d_name, 0);
  }
  closedir(d);
}

static void scan_dir(dsrc_t *s) {
  s->ncands = s->next_cand = s->nskipped = 0;
  s->ready_at = 0;
  s->scan_err = 0;
  int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    s->scan_err = -errno;
    if (fd >= 0) close(fd);
    return;
  }
  uint64_t now = cad_now_ms();
  struct dirent *e;
  size_t n = 0;
  cand_t *c = s->cands;
  while ((e = readdir(d))) {
    if (ignored_name(e->d_name) || strlen(e->d_name) >= sizeof c->name) continue;
    if (fnmatch(s->pattern, e->d_name, 0) != 0) continue;
    struct stat st;
    if (fstatat(s->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    cand_t x;
    snprintf(x.name, sizeof x.name, "%s", e->d_name);
    x.st = st;
    if (S_ISDIR(st.st_mode)) continue; /* done/, error/, a folder: never a file */
    if (!S_ISREG(st.st_mode)) {
      if (s->nskipped < sizeof s->skipped / sizeof s->skipped[0]) s->skipped[s->nskipped++] = x;
      continue;
    } else {
      int64_t age = (int64_t)now - mtime_ms(&st);
      if (age < (int64_t)s->stable_ms) {
        uint64_t at = (uint64_t)mtime_ms(&st) + s->stable_ms;
        if (!s->ready_at || at < s->ready_at) s->ready_at = at;
        continue;
      }
    }
    /* Keep the MAX_CANDIDATES oldest: replace the youngest when full. */
    if (n < MAX_CANDIDATES) {
      c[n++] = x;
    } else {
      size_t y = 0;
      for (size_t i = 1; i < n; i++)
        if (cand_cmp(&c[i], &c[y]) > 0) y = i;
      if (cand_cmp(&x, &c[y]) < 0) c[y] = x;
    }
  }
  closedir(d);
  qsort(c, n, sizeof *c, cand_cmp);
  s->ncands = n;
}

/* ---- progress files (thread pool) ------------------------------------------- */

static int write_progress(dsrc_t *s, file_t *f) {
  cad_buf_t b = CAD_BUF_INIT;
  cad_buf_printf(&b, "caduceus-dir-progress 1\nname ");
  for (const char *p = f->name; *p; p++) cad_buf_printf(&b, "%02x", (unsigned char)*p);
  cad_buf_printf(&b,
                 "\nfile %" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64
                 " %ld\n"
                 "format %d\ndone %" PRIu64 "\nresume %" PRIu64 " %" PRIu64
                 "\n"
                 "count %" PRIu64 " %" PRIu64 "\n",
                 (uint64_t)f->st0.st_dev, (uint64_t)f->st0.st_ino, (int64_t)f->st0.st_size,
                 (int64_t)f->st0.st_mtim.tv_sec, (long)f->st0.st_mtim.tv_nsec, f->fmt, f->done_upto,
                 f->resume_off, f->resume_num, f->taken, f->refused);
  if (f->reasons.len) cad_buf_append(&b, f->reasons.data, f->reasons.len);
  int rc = b.len ? 0 : CAD_E_NOMEM;
  uLong crc = crc32(0, (const Bytef *)b.data, (uInt)b.len);
  if (rc == 0) rc = cad_buf_printf(&b, "crc %08lx\n", (unsigned long)crc);
  char tmp[48];
  snprintf(tmp, sizeof tmp, "%s.tmp", f->prog);
  int fd =
      rc < 0 ? rc
             : openat(s->statefd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = rc < 0 ? rc : -errno;
  } else {
    rc = cad_io_pwrite_all(cad_io_default(), fd, b.data, b.len, 0);
    if (rc == 0 && fdatasync(fd) != 0) rc = -errno;
    close(fd);
    if (rc == 0 && renameat(s->statefd, tmp, s->statefd, f->prog) != 0) rc = -errno;
    if (rc < 0) unlinkat(s->statefd, tmp, 0);
  }
  cad_buf_free(&b);
  return rc;
}

/* Read f's progress file: 1 when it is f's (same identity) and valid,
 * with f's counters and reasons set; 0 when there is none or it is
 * stale (removed). */
int cad__dir_progress_parse(const char *buf, size_t n, cad_dir_progress_t *p) {
  memset(p, 0, sizeof *p);
  if (n == 0 || memchr(buf, 0, n)) return CAD_E_INVAL;
  /* The last line, "crc XXXXXXXX\n", covers every byte before it. */
  if (n < 14 || buf[n - 1] != '\n') return CAD_E_INVAL;
  size_t c = n - 1;
  while (c > 0 && buf[c - 1] != '\n') c--;
  unsigned long want = 0;
  char tailc[32];
  if (n - c >= sizeof tailc) return CAD_E_INVAL;
  memcpy(tailc, buf + c, n - c);
  tailc[n - c] = 0;
  if (sscanf(tailc, "crc %8lx\n", &want) != 1 || crc32(0, (const Bytef *)buf, (uInt)c) != want)
    return CAD_E_INVAL;
  /* The header, then reason lines up to the crc line. */
  char head[1024];
  size_t hn = c < sizeof head - 1 ? c : sizeof head - 1;
  memcpy(head, buf, hn);
  head[hn] = 0;
  char hex[520] = "";
  int used = 0;
  if (sscanf(head,
             "caduceus-dir-progress 1\nname %519[0-9a-f]\nfile %" SCNu64 " %" SCNu64 " %" SCNd64
             " %" SCNd64 " %ld\nformat %d\ndone %" SCNu64 "\nresume %" SCNu64 " %" SCNu64
             "\ncount %" SCNu64 " %" SCNu64 "\n%n",
             hex, &p->dev, &p->ino, &p->size, &p->msec, &p->mns, &p->fmt, &p->done, &p->roff,
             &p->rnum, &p->taken, &p->refused, &used) != 12 ||
      used == 0)
    return CAD_E_INVAL;
  size_t hl = strlen(hex);
  if (hl % 2 || hl / 2 >= sizeof p->name || p->fmt < 0 || p->fmt > 2 || p->rnum > p->done ||
      p->size < 0 || p->roff > (uint64_t)p->size)
    return CAD_E_INVAL;
  for (size_t k = 0; k < hl / 2; k++) {
    unsigned v;
    if (sscanf(hex + 2 * k, "%2x", &v) != 1) return CAD_E_INVAL;
    p->name[k] = (char)v;
  }
  p->name[hl / 2] = 0;
  if (strlen(p->name) != hl / 2) return CAD_E_INVAL; /* a NUL inside */
  p->reasons = buf + used;
  p->reasons_len = (size_t)used <= c ? c - (size_t)used : 0;
  return 0;
}

static int read_progress(dsrc_t *s, file_t *f) {
  char *buf = malloc(64 * 1024);
  if (!buf) return 0;
  int fd = openat(s->statefd, f->prog, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, 64 * 1024) : -1;
  if (fd >= 0) close(fd);
  int ok = 0;
  cad_dir_progress_t p;
  if (n > 0 && cad__dir_progress_parse(buf, (size_t)n, &p) == 0 && strcmp(p.name, f->name) == 0 &&
      p.dev == (uint64_t)f->st0.st_dev && p.ino == (uint64_t)f->st0.st_ino &&
      p.size == (int64_t)f->st0.st_size && p.msec == (int64_t)f->st0.st_mtim.tv_sec &&
      p.mns == (long)f->st0.st_mtim.tv_nsec) {
    f->fmt = p.fmt;
    f->done_upto = f->skip_upto = f->saved_upto = p.done;
    f->resume_off = p.roff;
    f->resume_num = p.rnum;
    f->taken = p.taken;
    f->refused = p.refused;
    /* The reason lines of messages answered before the restart (a later
     * one is answered again, and says so again). */
    const char *line = p.reasons, *end = p.reasons + p.reasons_len;
    while (line < end && f->nreasons < MAX_REASONS) {
      const char *nl = memchr(line, '\n', (size_t)(end - line));
      if (!nl) break;
      unsigned long long num = 0;
      if (sscanf(line, "message %llu ", &num) != 1 || num <= p.done) {
        cad_buf_append(&f->reasons, line, (size_t)(nl - line + 1));
        f->nreasons++;
      }
      line = nl + 1;
    }
    ok = 1;
  }
  if (n >= 0 && !ok) unlinkat(s->statefd, f->prog, 0);
  free(buf);
  return ok;
}

/* ---- opening, reading, finishing (thread pool) ------------------------------ */

static void file_free(file_t *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  cad_hl7_stream_free(&f->stream);
  cad_buf_free(&f->bbuf);
  cad_buf_free(&f->reasons);
  free(f->bitems);
  free(f->chunk);
  free(f);
}

static int open_file(dsrc_t *s, file_t *f, const cand_t *c) {
  f->fd = openat(s->dirfd, c->name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (f->fd < 0) return -errno;
  if (fstat(f->fd, &f->st0) != 0) return -errno;
  if (!S_ISREG(f->st0.st_mode) || f->st0.st_ino != c->st.st_ino) return CAD_E_STATE;
  snprintf(f->prog, sizeof f->prog, "p-%016" PRIx64, fnv64(f->name));
  f->fmt = s->format;
  if (read_progress(s, f)) {
    if (f->fmt != CAD_HL7_STREAM_ER7) f->resume_off = f->resume_num = 0;
  } else {
    f->resume_off = f->resume_num = 0;
  }
  f->submitted = f->done_upto;
  cad_hl7_stream_init(&f->stream, (cad_hl7_stream_format_t)f->fmt, (size_t)s->max_message);
  f->stream_base = f->read_off = f->resume_off;
  f->next_num = f->resume_num;
  return 0;
}

static int read_batch(file_t *f) {
  f->nb = 0;
  cad_buf_clear(&f->bbuf);
  while (f->nb < BATCH_ITEMS && f->bbuf.len < BATCH_BYTES) {
    cad_hl7_item_t it;
    int r = cad_hl7_stream_next(&f->stream, &it);
    if (r < 0) return r;
    if (r == 1) {
      if (it.kind == CAD_HL7_ITEM_ENVELOPE) continue;
      bitem_t *b = &f->bitems[f->nb];
      *b = (bitem_t){it.kind,     it.err,      ++f->next_num, f->stream_base + it.offset,
                     f->bbuf.len, it.bytes.len};
      if (cad_buf_append(&f->bbuf, it.bytes.p, it.bytes.len) < 0) return CAD_E_NOMEM;
      f->nb++;
      continue;
    }
    if (f->stream.eof) {
      f->eof = true;
      break;
    }
    ssize_t n = pread(f->fd, f->chunk, CHUNK, (off_t)f->read_off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) {
      cad_hl7_stream_finish(&f->stream);
      continue;
    }
    f->read_off += (uint64_t)n;
    if (cad_hl7_stream_feed(&f->stream, f->chunk, (size_t)n) < 0) return CAD_E_NOMEM;
  }
  if (f->fmt == CAD_HL7_STREAM_AUTO && f->stream.format != CAD_HL7_STREAM_AUTO)
    f->fmt = (int)f->stream.format;
  return 0;
}

static int write_reason(dsrc_t *s, file_t *f, const char *extra) {
  char nm[260], rname[320], tmp[340];
  safe_name(nm, sizeof nm, f->name);
  snprintf(rname, sizeof rname, "%s.reason", f->final);
  snprintf(tmp, sizeof tmp, ".%s.tmp", rname);
  cad_buf_t b = CAD_BUF_INIT;
  cad_buf_printf(&b,
                 "file: %s\nmessages: %" PRIu64 " read, %" PRIu64 " taken, %" PRIu64 " refused\n",
                 nm, f->taken + f->refused, f->taken, f->refused);
  if (extra) cad_buf_printf(&b, "%s\n", extra);
  if (f->reasons.len) cad_buf_append(&b, f->reasons.data, f->reasons.len);
  if (f->refused > f->nreasons)
    cad_buf_printf(&b, "(and %" PRIu64 " more refused messages: see the log)\n",
                   f->refused - f->nreasons);
  int rc = b.len ? 0 : CAD_E_NOMEM;
  int fd = rc < 0
               ? rc
               : openat(s->errfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = rc < 0 ? rc : -errno;
  } else {
    rc = cad_io_pwrite_all(cad_io_default(), fd, b.data, b.len, 0);
    if (rc == 0 && fdatasync(fd) != 0) rc = -errno;
    close(fd);
    if (rc == 0 && renameat(s->errfd, tmp, s->errfd, rname) != 0) rc = -errno;
    if (rc < 0) unlinkat(s->errfd, tmp, 0);
  }
  cad_buf_free(&b);
  return rc;
}

/* Every message of f is answered: save, then move it to done/ or error/
 * (with its reason), make both folders durable, drop the progress. */
static int finish_file(dsrc_t *s, file_t *f) {
  struct stat now;
  char extra[160] = "";
  if (fstat(f->fd, &now) == 0 && !same_file(&now, &f->st0))
    snprintf(extra, sizeof extra,
             "the file changed while it was read (size %" PRId64 " -> %" PRId64
             " bytes); the messages read are kept",
             (int64_t)f->st0.st_size, (int64_t)now.st_size);
  int rc = write_progress(s, f);
  if (rc < 0) return rc;
  struct stat cur;
  if (fstatat(s->dirfd, f->name, &cur, AT_SYMLINK_NOFOLLOW) != 0 || cur.st_ino != f->st0.st_ino ||
      cur.st_dev != f->st0.st_dev) {
    /* Replaced (or removed) while read: what is there now is another file,
     * read on its own; this one is finished. */
    snprintf(f->outcome, sizeof f->outcome, "replaced");
    unlinkat(s->statefd, f->prog, 0);
    return 0;
  }
  bool bad = f->refused || extra[0];
  int tfd = bad ? s->errfd : s->donefd;
  rc = -EEXIST;
  for (unsigned k = 1; k <= MAX_SUFFIX && rc == -EEXIST; k++) {
    cad_file_name_suffixed(f->name, k, f->final, sizeof f->final);
    /* error/: the reason's name must be free as well. */
    char rn[320];
    struct stat x;
    snprintf(rn, sizeof rn, "%s.reason", f->final);
    if (bad && fstatat(tfd, rn, &x, AT_SYMLINK_NOFOLLOW) == 0) continue;
    rc = cad_io_default()->renameat2(cad_io_default()->ctx, s->dirfd, f->name, tfd, f->final,
                                     CAD_IO_RENAME_NOREPLACE);
  }
  if (rc < 0) return rc;
  if (bad) write_reason(s, f, extra[0] ? extra : NULL);
  fsync(tfd);
  fsync(s->dirfd);
  unlinkat(s->statefd, f->prog, 0);
  snprintf(f->outcome, sizeof f->outcome, "%s", bad ? "error" : "done");
  return 0;
}

static void work_cb(uv_work_t *w) {
  dsrc_t *s = w->data;
  file_t *f = s->cur;
  switch (s->job) {
    case JOB_SCAN:
      clean_state(s);
      scan_dir(s);
      break;
    case JOB_OPEN: s->job_rc = open_file(s, f, &s->cands[s->next_cand]); break;
    case JOB_READ: s->job_rc = read_batch(f); break;
    case JOB_SAVE: s->job_rc = write_progress(s, f); break;
    case JOB_FINISH: s->job_rc = finish_file(s, f); break;
    case JOB_NONE: break;
  }
}

/* ---- the loop side ---------------------------------------------------------- */

static void pump(dsrc_t *s);
static void after_work(uv_work_t *w, int status);

static void run_job(dsrc_t *s, job_t j) {
  s->job = j;
  s->job_rc = 0;
  s->busy = true;
  s->work.data = s;
  int rc = uv_queue_work(s->loop, &s->work, work_cb, after_work);
  if (rc < 0) {
    s->busy = false;
    s->job_rc = rc;
    log_file(s, CAD_LOG_ERROR, "dir.failed", NULL, rc, "cannot use the thread pool");
  }
}

static void on_timer(uv_timer_t *t) {
  dsrc_t *s = t->data;
  s->want_scan = true;
  pump(s);
}

static void arm_timer(dsrc_t *s, uint64_t delay_ms) {
  if (s->stopping) return;
  uv_timer_start(&s->timer, on_timer, delay_ms, 0);
}

static void on_event(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)name, (void)events, (void)status;
  dsrc_t *s = h->data;
  s->dirty = true;
  /* Many events come together: scan once, a little later. */
  if (!s->busy && !s->cur) arm_timer(s, 20);
}

/* What the reply of a message means for its file. */
static int classify(int outcome) {
  switch (outcome) {
    case CAD_PIPE_ACCEPTED:
    case CAD_PIPE_FILTERED:
    case CAD_PIPE_DEAD_LETTER: return ST_OK;
    case CAD_PIPE_REJECTED:
    case CAD_PIPE_UNROUTED:
    case CAD_PIPE_ROUTE_ERROR:
    case CAD_PIPE_TOO_BIG: return ST_REFUSED;
    default: return ST_TRANSIENT;
  }
}

/* One field of the ACK (raw), for the reason: "" when absent. */
static void ack_field(const char *ack, size_t len, const char *seg, int field, char *out,
                      size_t cap) {
  out[0] = 0;
  if (len < 8 || memcmp(ack, "MSH", 3) != 0) return;
  char fs = ack[3];
  for (size_t i = 0; i + 3 < len; i++) {
    if ((i == 0 || ack[i - 1] == '\r') && memcmp(ack + i, seg, 3) == 0 && ack[i + 3] == fs) {
      size_t p = i + 4;
      for (int k = 1; k < field && p < len; p++)
        if (ack[p] == fs) k++;
        else if (ack[p] == '\r') return;
      size_t n = 0;
      while (p < len && ack[p] != fs && ack[p] != '\r' && n + 1 < cap) {
        unsigned char c = (unsigned char)ack[p++];
        out[n++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
      }
      out[n] = 0;
      return;
    }
  }
}

static void add_reason(file_t *f, const slot_t *sl, const char *what, const char *ack, size_t len) {
  f->refused++;
  if (f->nreasons >= MAX_REASONS) return;
  char ctl[64], text[200];
  ack_field(ack, len, "MSA", 2, ctl, sizeof ctl);
  ack_field(ack, len, "ERR", 8, text, sizeof text);
  if (!text[0]) ack_field(ack, len, "MSA", 3, text, sizeof text);
  cad_buf_printf(&f->reasons, "message %" PRIu64 " at byte %" PRIu64 "%s%s%s: %s%s%s\n", sl->num,
                 sl->end - sl->len, ctl[0] ? " (MSH-10 " : "", ctl, ctl[0] ? ")" : "", what,
                 text[0] ? ": " : "", text);
  f->nreasons++;
}

static void advance(file_t *f) {
  while (f->done_upto < f->submitted) {
    slot_t *sl = &f->ring[(f->done_upto + 1) % RING];
    if (sl->state != ST_OK && sl->state != ST_REFUSED) break;
    f->done_upto++;
    if (sl->exact && f->fmt == CAD_HL7_STREAM_ER7) {
      f->resume_off = sl->end;
      f->resume_num = sl->num;
    }
  }
}

static void on_reply(void *req, const char *ack, size_t len, unsigned flags) {
  slot_t *sl = req;
  dsrc_t *s = sl->s;
  file_t *f = s->cur;
  int o = CAD_PIPE_REPLY_OUTCOME(flags);
  int st = classify(o);
  if (st == ST_OK) f->taken++;
  else if (st == ST_REFUSED)
    add_reason(f, sl, cad_pipe_outcome_event((cad_pipe_outcome_t)o), ack, len);
  else f->transient = true;
  sl->state = (unsigned char)st;
  f->inflight--;
  f->inflight_bytes -= sl->len;
  advance(f);
  if (!s->submitting) pump(s);
}

static void submit_batch(dsrc_t *s, file_t *f) {
  s->submitting = true;
  for (size_t i = 0; i < f->nb && !s->stopping; i++) {
    const bitem_t *b = &f->bitems[i];
    if (b->num <= f->skip_upto) continue; /* answered before a restart */
    slot_t *sl = &f->ring[b->num % RING];
    *sl = (slot_t){
        s,         b->num, b->offset + b->len, (uint32_t)b->len, b->kind == CAD_HL7_ITEM_MESSAGE,
        ST_PENDING};
    f->submitted = b->num;
    cad_str_t bytes = {f->bbuf.data + b->boff, b->len};
    if (b->kind == CAD_HL7_ITEM_ERROR && b->err == CAD_E_FRAME) {
      /* A broken MLLP frame: cut short, so never offered as a message. */
      s->pc->st->received++;
      s->pc->st->rejected++;
      add_reason(f, sl, "broken MLLP framing (a frame not closed)", NULL, 0);
      sl->state = ST_REFUSED;
      log_file(s, CAD_LOG_WARN, "dir.bad_frame", f->name, CAD_E_FRAME,
               "message %" PRIu64 " at byte %" PRIu64 ": a frame not closed", b->num, b->offset);
      advance(f);
      continue;
    }
    f->inflight++;
    f->inflight_bytes += b->len;
    cad_pipe_frame_t fr = {
        .req = sl, .bytes = bytes, .conn = f->seq, .peer = f->peer, .src = &s->src};
    if (b->kind == CAD_HL7_ITEM_ERROR && b->err == CAD_E_TOOBIG) {
      fr.status = CAD_E_TOOBIG;
      fr.size = b->len;
      fr.cut = true;
    }
    cad_pipe_frame(s->pipe, s->pc, &fr);
  }
  s->submitting = false;
  f->nb = 0;
  cad_buf_clear(&f->bbuf);
}

static void end_file(dsrc_t *s) {
  file_free(s->cur);
  s->cur = NULL;
  s->next_cand++;
}

static void start_file(dsrc_t *s) {
  const cand_t *c = &s->cands[s->next_cand];
  file_t *f = calloc(1, sizeof *f);
  if (f) {
    f->fd = -1;
    f->chunk = malloc(CHUNK);
    f->bitems = malloc(BATCH_ITEMS * sizeof *f->bitems);
  }
  if (!f || !f->chunk || !f->bitems) {
    file_free(f);
    arm_timer(s, BACKOFF_MIN_MS);
    return;
  }
  snprintf(f->name, sizeof f->name, "%s", c->name);
  f->seq = ++s->files_seq;
  char nm[60];
  safe_name(nm, sizeof nm, c->name);
  snprintf(f->peer, sizeof f->peer, "dir:%s", nm);
  s->cur = f;
  run_job(s, JOB_OPEN);
}

static void after_open(dsrc_t *s, file_t *f) {
  if (s->job_rc < 0) {
    const cand_t *c = &s->cands[s->next_cand];
    uint64_t h = fnv64(c->name) ^ (uint64_t)c->st.st_ino ^ (uint64_t)mtime_ms(&c->st);
    if (s->job_rc != -ENOENT && warn_once(s, h))
      log_file(
          s, CAD_LOG_WARN, "dir.cannot_open", c->name, s->job_rc,
          "cannot read it (%s); left where it is, tried again at every rescan",
          s->job_rc == CAD_E_STATE ? "not the regular file the scan saw" : cad_strerror(s->job_rc));
    end_file(s);
    return;
  }
  log_file(s, CAD_LOG_INFO, "dir.file_start", f->name, 0, "reading %" PRId64 " bytes%s",
           (int64_t)f->st0.st_size, f->skip_upto ? " (resumed after a restart)" : "");
  if (f->skip_upto)
    log_file(s, CAD_LOG_INFO, "dir.resume", f->name, 0,
             "%" PRIu64 " messages were answered before the restart; reading on from byte %" PRIu64,
             f->skip_upto, f->resume_off);
}

static void after_finish(dsrc_t *s, file_t *f) {
  if (s->job_rc < 0) {
    log_file(s, CAD_LOG_ERROR, "dir.move_failed", f->name, s->job_rc,
             "every message is answered but the file cannot be moved to %s: %s; tried again "
             "later",
             f->refused ? s->error : s->done, cad_strerror(s->job_rc));
    end_file(s);
    s->retry_at = cad_mono_ms() + BACKOFF_MAX_MS;
    return;
  }
  cad_log_level_t lvl = strcmp(f->outcome, "done") == 0 ? CAD_LOG_INFO : CAD_LOG_WARN;
  char fin[200];
  safe_name(fin, sizeof fin, f->final);
  log_file(s, lvl,
           strcmp(f->outcome, "done") == 0    ? "dir.file_done"
           : strcmp(f->outcome, "error") == 0 ? "dir.file_error"
                                              : "dir.file_replaced",
           f->name, 0, "%" PRIu64 " messages taken, %" PRIu64 " refused%s%s", f->taken, f->refused,
           f->outcome[0] == 'r' ? "; the name now holds another file" : "; moved as ",
           f->outcome[0] == 'r' ? "" : fin);
  s->backoff = 0;
  s->moved_any = true;
  end_file(s);
  if (s->next_cand >= s->ncands) s->want_scan = true; /* more may wait */
}

static void after_work(uv_work_t *w, int status) {
  dsrc_t *s = w->data;
  file_t *f = s->cur;
  s->busy = false;
  if (status < 0 && !s->job_rc) s->job_rc = status;
  switch (s->job) {
    case JOB_SCAN:
      s->want_scan = false;
      if (s->scan_err < 0) {
        if (warn_once(s, 1))
          log_file(s, CAD_LOG_ERROR, "dir.scan_failed", s->dir, s->scan_err,
                   "cannot list the folder: %s", cad_strerror(s->scan_err));
      }
      s->moved_any = false;
      for (size_t i = 0; i < s->nskipped; i++) {
        uint64_t h = fnv64(s->skipped[i].name) ^ (uint64_t)s->skipped[i].st.st_ino;
        if (warn_once(s, h))
          log_file(s, CAD_LOG_WARN, "dir.skipped", s->skipped[i].name, 0,
                   "not a regular file (a symbolic link, FIFO, socket or device): skipped");
      }
      break;
    case JOB_OPEN: after_open(s, f); break;
    case JOB_READ:
      if (s->job_rc < 0) {
        log_file(s, CAD_LOG_ERROR, "dir.read_failed", f->name, s->job_rc,
                 "cannot read it: %s; read again later from its last answered message",
                 cad_strerror(s->job_rc));
        f->transient = true;
        f->nb = 0;
      } else if (!s->stopping) {
        submit_batch(s, f);
      } else {
        f->nb = 0; /* not offered: read again after the restart */
      }
      break;
    case JOB_SAVE:
      if (s->job_rc < 0)
        log_file(s, CAD_LOG_WARN, "dir.progress_failed", f->name, s->job_rc,
                 "cannot save the progress: %s (after a restart more may repeat)",
                 cad_strerror(s->job_rc));
      break;
    case JOB_FINISH: after_finish(s, f); break;
    case JOB_NONE: break;
  }
  pump(s);
}

static void maybe_done(dsrc_t *s);

/* Decide the next step; one job on the thread pool at a time. */
static void pump(dsrc_t *s) {
  if (s->busy) return;
  if (s->stopping && !s->cur) {
    maybe_done(s);
    return;
  }
  if (!s->locked) {
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
      arm_timer(s, 200); /* a source of the configuration being replaced still reads */
      return;
    }
    s->locked = true;
    s->want_scan = true;
  }
  file_t *f = s->cur;
  if (!f) {
    uint64_t now = cad_mono_ms();
    if (s->retry_at > now) {
      arm_timer(s, s->retry_at - now);
      return;
    }
    if (s->next_cand < s->ncands) {
      start_file(s);
      return;
    }
    if (s->want_scan || s->dirty) {
      s->dirty = false;
      run_job(s, JOB_SCAN);
      return;
    }
    uint64_t delay = s->rescan_ms;
    if (s->ready_at) {
      uint64_t wall = cad_now_ms();
      uint64_t d = s->ready_at > wall ? s->ready_at - wall + 5 : 5;
      if (d < delay) delay = d;
    }
    arm_timer(s, delay);
    return;
  }
  if (f->fd < 0) return; /* opening failed: handled in after_open */
  bool answered = f->inflight == 0 && f->nb == 0;
  bool ended = f->eof && answered && f->done_upto == f->submitted && !f->transient;
  if (ended && !s->stopping) {
    run_job(s, JOB_FINISH);
    return;
  }
  uint64_t now = cad_mono_ms();
  bool forced = answered && (f->transient || s->stopping || ended);
  if (f->done_upto > f->saved_upto && (forced || now - f->last_save_ms >= SAVE_EVERY_MS)) {
    f->saved_upto = f->done_upto;
    f->last_save_ms = now;
    run_job(s, JOB_SAVE);
    return;
  }
  if (answered && (f->transient || s->stopping)) {
    if (f->transient) {
      s->backoff = s->backoff ? s->backoff * 2 : BACKOFF_MIN_MS;
      if (s->backoff > BACKOFF_MAX_MS) s->backoff = BACKOFF_MAX_MS;
      s->retry_at = now + s->backoff;
      log_file(s, CAD_LOG_WARN, "dir.not_accepted", f->name, 0,
               "a message was not accepted (queue write failed or full); %" PRIu64
               " messages answered, the rest is read again in %" PRIu64 " ms",
               f->done_upto, s->backoff);
    }
    end_file(s);
    s->ncands = s->next_cand = 0; /* scan again: the folder may have changed */
    s->want_scan = true;
    pump(s);
    return;
  }
  /* The ring holds every message from the answered prefix on: a message
   * slow to answer ahead of many quick ones must not let them wrap it. */
  if (!s->stopping && !f->transient && !f->eof && f->inflight < INFLIGHT_ITEMS &&
      f->inflight_bytes < INFLIGHT_BYTES && f->submitted - f->done_upto + BATCH_ITEMS < RING) {
    run_job(s, JOB_READ);
    return;
  }
  if (f->done_upto > f->saved_upto) arm_timer(s, SAVE_EVERY_MS);
}

/* ---- start, adopt, stop ----------------------------------------------------- */

static char *join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", a, b);
  return p;
}

static int open_dirs(dsrc_t *s, char *err, size_t cap) {
  const char *paths[3] = {s->dir, s->done, s->error};
  int *fds[3] = {&s->dirfd, &s->donefd, &s->errfd};
  struct stat st0;
  for (int i = 0; i < 3; i++) {
    int rc = cad_io_mkdir_p(cad_io_default(), paths[i], 0700);
    if (rc < 0) {
      snprintf(err, cap, "cannot create %s: %s", paths[i], cad_strerror(rc));
      return rc;
    }
    *fds[i] = open(paths[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fds[i] < 0) {
      rc = -errno;
      snprintf(err, cap, "cannot open %s: %s", paths[i], cad_strerror(rc));
      return rc;
    }
    struct stat st;
    if (fstat(*fds[i], &st) != 0) return -errno;
    if (i == 0) st0 = st;
    else if (st.st_dev != st0.st_dev) {
      snprintf(err, cap, "%s is not on the filesystem of %s: files are moved by rename", paths[i],
               s->dir);
      return CAD_E_CONFIG;
    }
  }
  if (mkdirat(s->dirfd, STATE_DIR, 0700) != 0 && errno != EEXIST) {
    int rc = -errno;
    snprintf(err, cap, "cannot create %s/%s: %s", s->dir, STATE_DIR, cad_strerror(rc));
    return rc;
  }
  s->statefd = openat(s->dirfd, STATE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  s->lockfd = s->statefd < 0
                  ? -1
                  : openat(s->statefd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (s->statefd < 0 || s->lockfd < 0) {
    int rc = -errno;
    snprintf(err, cap, "cannot open %s/%s: %s", s->dir, STATE_DIR, cad_strerror(rc));
    return rc;
  }
  return 0;
}

static void dsrc_free(dsrc_t *s) {
  int fds[] = {s->dirfd, s->donefd, s->errfd, s->statefd, s->lockfd};
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    if (fds[i] >= 0) close(fds[i]); /* closing lockfd drops the lock */
  free(s->dir);
  free(s->pattern);
  free(s->done);
  free(s->error);
  free(s);
}

static bool wanted(const cad_conf_channel_t *cc) { return cc->listen_dir.enabled; }

int cad__dir_source_start(const cad_source_env_t *env, cad_pipe_chan_t *pc,
                          const cad_dir_source_opts_t *o, void **out, char *err, size_t cap) {
  dsrc_t *s = calloc(1, sizeof *s);
  if (!s) return CAD_E_NOMEM;
  s->dirfd = s->donefd = s->errfd = s->statefd = s->lockfd = -1;
  s->loop = env->loop;
  s->pipe = env->pipe;
  s->pc = pc;
  snprintf(s->chan, sizeof s->chan, "%s", pc->cc->name);
  s->src = (cad_pipe_src_t){"dir", on_reply};
  s->dir = strdup(o->dir);
  s->pattern = strdup(o->pattern ? o->pattern : "*");
  s->done = o->done_dir ? strdup(o->done_dir) : join(o->dir, "done");
  s->error = o->error_dir ? strdup(o->error_dir) : join(o->dir, "error");
  s->stable_ms = o->stable_ms;
  s->rescan_ms = o->rescan_ms ? o->rescan_ms : 5000;
  s->format = o->format;
  s->max_message = (int)(pc->cc->listener.max_frame ? pc->cc->listener.max_frame : 4u << 20);
  if (!s->dir || !s->pattern || !s->done || !s->error) {
    dsrc_free(s);
    return CAD_E_NOMEM;
  }
  int rc = open_dirs(s, err, cap);
  if (rc < 0) {
    dsrc_free(s);
    return rc;
  }
  uv_timer_init(s->loop, &s->timer);
  s->timer.data = s;
  s->handles = 1;
  if (uv_fs_event_init(s->loop, &s->ev) == 0) {
    s->handles++;
    s->ev.data = s;
    if (uv_fs_event_start(&s->ev, on_event, s->dir, 0) == 0) s->ev_on = true;
    else
      log_file(s, CAD_LOG_WARN, "dir.no_events", s->dir, 0,
               "cannot watch the folder for changes; it is rescanned every %" PRIu64 " ms",
               s->rescan_ms);
  }
  if (pc->cc->ack_policy == CAD_ACK_RECEIVED)
    log_file(s, CAD_LOG_WARN, "dir.ack_received", s->dir, 0,
             "ack.policy received: a file is moved before its messages are durable, so a crash "
             "can lose them");
  s->want_scan = true;
  *out = s;
  pump(s);
  return 0;
}

static int dir_start(const cad_source_env_t *env, cad_pipe_chan_t *pc, void **out, char *err,
                     size_t cap) {
  return cad__dir_source_start(env, pc, &pc->cc->listen_dir, out, err, cap);
}

void cad__dir_source_set_chan(void *impl, cad_pipe_chan_t *pc) {
  dsrc_t *s = impl;
  s->pc = pc;
}

static bool same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int dir_adopt(void *impl, cad_pipe_chan_t *pc) {
  dsrc_t *s = impl;
  const cad_dir_source_opts_t *o = &pc->cc->listen_dir;
  char *done = o->done_dir ? strdup(o->done_dir) : join(o->dir, "done");
  char *error = o->error_dir ? strdup(o->error_dir) : join(o->dir, "error");
  bool same = done && error && strcmp(s->dir, o->dir) == 0 &&
              same_str(s->pattern, o->pattern ? o->pattern : "*") && strcmp(s->done, done) == 0 &&
              strcmp(s->error, error) == 0 && s->stable_ms == o->stable_ms &&
              s->rescan_ms == o->rescan_ms && s->format == o->format &&
              (size_t)s->max_message == pc->cc->listener.max_frame;
  free(done);
  free(error);
  if (!same) return 1;
  s->pc = pc;
  return 0;
}

static void handle_closed(uv_handle_t *h) {
  dsrc_t *s = h->data;
  if (--s->handles > 0) return;
  void (*cb)(void *) = s->done_cb;
  void *arg = s->done_arg;
  dsrc_free(s);
  if (cb) cb(arg);
}

static void maybe_done(dsrc_t *s) {
  if (s->busy || s->cur || s->handles <= 0 || uv_is_closing((uv_handle_t *)&s->timer)) return;
  uv_close((uv_handle_t *)&s->timer, handle_closed);
  if (s->handles > 1) uv_close((uv_handle_t *)&s->ev, handle_closed);
}

void cad__dir_source_stop(void *impl, void (*done)(void *arg), void *arg) {
  dsrc_t *s = impl;
  s->stopping = true;
  s->done_cb = done;
  s->done_arg = arg;
  if (s->ev_on) uv_fs_event_stop(&s->ev);
  uv_timer_stop(&s->timer);
  pump(s);
}

const cad_source_kind_t cad_source_dir = {"dir", wanted, dir_start, dir_adopt,
                                          cad__dir_source_stop};
