/* file_dest.c - file destination (file_dest.h). */
#include "file_dest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cad_error.h"

#define MAX_PIECES 16
#define VALUE_MAX 64
#define NAME_MAX_BYTES 200
#define MAX_SUFFIX 9999 /* name~2 .. name~9999, then the delivery fails */
#define TMP_PREFIX ".tmp."
#define TMP_HEX 24 /* random hex digits after the prefix */

typedef struct piece {
  char *lit; /* literal text, or NULL for a path */
  cad_hl7_path_t path;
} piece_t;

typedef struct item {
  struct item *next;
  const char *bytes;
  size_t len;
  cad_file_dest_cb cb;
  void *arg;
  int status;
  char name[NAME_MAX_BYTES + 1];
  char tmp[sizeof TMP_PREFIX + TMP_HEX];
} item_t;

struct cad_file_dest {
  uv_loop_t *loop;
  const cad_io_t *io;
  mode_t mode, dir_mode;
  piece_t pieces[MAX_PIECES];
  int npieces;
  bool msh_only; /* the template reads only fields of the first MSH */
  int dirfd;     /* dir mode */
  char *dir;     /* its path, to reopen it when it was removed */
  int appendfd;  /* append mode */
  uint32_t max_batch, max_queue;
  item_t *qhead, *qtail; /* waiting */
  size_t nqueued;
  item_t *batch; /* being written */
  size_t nbatch;
  uv_work_t work;
  bool busy, closing, dispatching;
};

static int parse_template(cad_file_dest_t *d, const char *t, char *err, size_t errcap) {
  d->msh_only = true;
  const char *p = t;
  if (!*t) {
    snprintf(err, errcap, "the name template is empty");
    return CAD_E_INVAL;
  }
  while (*p) {
    if (d->npieces >= MAX_PIECES) {
      snprintf(err, errcap, "the name template has more than %d parts", MAX_PIECES);
      return CAD_E_INVAL;
    }
    piece_t *pc = &d->pieces[d->npieces];
    if (p[0] == '$' && p[1] == '{') {
      const char *e = strchr(p + 2, '}');
      if (!e) {
        snprintf(err, errcap, "'${' without '}' in the name template");
        return CAD_E_INVAL;
      }
      size_t epos = 0;
      const char *emsg = NULL;
      if (cad_hl7_path_parse(p + 2, (size_t)(e - p - 2), &pc->path, &epos, &emsg) < 0) {
        snprintf(err, errcap, "bad path '%.*s' in the name template: %s", (int)(e - p - 2), p + 2,
                 emsg ? emsg : "syntax error");
        return CAD_E_INVAL;
      }
      pc->lit = NULL;
      if (pc->path.segid != cad_hl7_segid("MSH") || pc->path.occ != 1 || pc->path.field == 0)
        d->msh_only = false;
      p = e + 1;
    } else {
      const char *e = strstr(p, "${");
      size_t n = e ? (size_t)(e - p) : strlen(p);
      if (memchr(p, '/', n)) {
        snprintf(err, errcap, "the name template may not contain '/'");
        return CAD_E_INVAL;
      }
      pc->lit = malloc(n + 1);
      if (!pc->lit) return CAD_E_NOMEM;
      memcpy(pc->lit, p, n);
      pc->lit[n] = 0;
      p += n;
    }
    d->npieces++;
  }
  return 0;
}

static void dest_free(cad_file_dest_t *d) {
  for (int i = 0; i < d->npieces; i++) free(d->pieces[i].lit);
  if (d->dirfd >= 0) d->io->close(d->io->ctx, d->dirfd);
  if (d->appendfd >= 0) d->io->close(d->io->ctx, d->appendfd);
  free(d->dir);
  free(d);
}

/* A temp file name: TMP_PREFIX and TMP_HEX random hex digits. */
static int tmp_name(char *out) {
  unsigned char r[TMP_HEX / 2];
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t n = getrandom(r + got, sizeof r - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    got += (size_t)n;
  }
  static const char hex[] = "0123456789abcdef";
  memcpy(out, TMP_PREFIX, sizeof TMP_PREFIX - 1);
  char *p = out + sizeof TMP_PREFIX - 1;
  for (size_t i = 0; i < sizeof r; i++) {
    *p++ = hex[r[i] >> 4];
    *p++ = hex[r[i] & 15];
  }
  *p = 0;
  return 0;
}

static bool is_tmp_name(const char *n) {
  if (strncmp(n, TMP_PREFIX, sizeof TMP_PREFIX - 1) != 0) return false;
  n += sizeof TMP_PREFIX - 1;
  size_t k = strspn(n, "0123456789abcdef");
  return k == TMP_HEX && n[k] == 0;
}

/* Remove temp files a crash left behind: names of our exact shape, not
 * changed for STALE_TMP_S (a destination of the configuration a reload is
 * replacing may still be writing its own); unlinkat never follows a
 * symlink. */
#define STALE_TMP_S 60
static void remove_stale_tmps(cad_file_dest_t *d) {
  int fd = dup(d->dirfd);
  DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
  if (!dir) {
    if (fd >= 0) close(fd);
    return;
  }
  struct dirent *e;
  time_t now = time(NULL);
  struct stat st;
  while ((e = readdir(dir)))
    if (is_tmp_name(e->d_name) && fstatat(d->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_mtime + STALE_TMP_S < now)
      d->io->unlinkat(d->io->ctx, d->dirfd, e->d_name, 0);
  closedir(dir);
}

static const char *file_kind(mode_t m) {
  return S_ISLNK(m)    ? "a symbolic link"
         : S_ISFIFO(m) ? "a FIFO"
         : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISDIR(m)  ? "a directory"
                       : "not a regular file";
}

static int open_dir(cad_file_dest_t *d, const char *dir, char *err, size_t errcap) {
  int rc = cad_io_mkdir_p(d->io, dir, d->dir_mode);
  if (rc < 0) {
    snprintf(err, errcap, "cannot create %s: %s", dir, cad_strerror(rc));
    return rc;
  }
  d->dir = strdup(dir);
  if (!d->dir) return CAD_E_NOMEM;
  d->dirfd = d->io->openat(d->io->ctx, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
  if (d->dirfd < 0) {
    rc = d->dirfd;
    snprintf(err, errcap, "cannot open %s: %s", dir, cad_strerror(rc));
    return rc;
  }
  remove_stale_tmps(d);
  return 0;
}

/* The append target: a regular file or nothing (created), never followed
 * through a symlink, never a FIFO or device; opened without blocking. */
static int open_append(cad_file_dest_t *d, const char *path, char *err, size_t errcap) {
  char parent[4096];
  if (snprintf(parent, sizeof parent, "%s", path) >= (int)sizeof parent) return CAD_E_INVAL;
  char *slash = strrchr(parent, '/');
  const char *base = slash ? slash + 1 : parent;
  const char *pdir = !slash ? "." : slash == parent ? "/" : parent;
  if (slash) *slash = 0;
  if (!*base) {
    snprintf(err, errcap, "append: %s names a directory, not a file", path);
    return CAD_E_INVAL;
  }
  const cad_io_t *io = d->io;
  int rc = slash && slash != parent ? cad_io_mkdir_p(io, parent, d->dir_mode) : 0;
  int pfd = rc < 0 ? rc : io->openat(io->ctx, AT_FDCWD, pdir, O_RDONLY | O_DIRECTORY, 0);
  if (pfd < 0) {
    snprintf(err, errcap, "cannot create %s: %s", pdir, cad_strerror(pfd));
    return pfd;
  }
  const int fl = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK;
  bool created = true;
  int fd = io->openat(io->ctx, pfd, base, fl | O_CREAT | O_EXCL, d->mode);
  if (fd == -EEXIST) {
    created = false;
    fd = io->openat(io->ctx, pfd, base, fl, 0);
  }
  struct stat st;
  if (fd < 0) {
    rc = fd;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
      snprintf(err, errcap, "append: %s is %s; only a regular file can be appended to", path,
               file_kind(st.st_mode));
      rc = CAD_E_INVAL;
    } else {
      snprintf(err, errcap, "cannot open %s: %s", path, cad_strerror(fd));
    }
  } else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errcap, "append: %s is %s; only a regular file can be appended to", path,
             file_kind(st.st_mode));
    rc = CAD_E_INVAL;
  } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
    rc = -errno;
    snprintf(err, errcap, "cannot open %s: %s", path, strerror(errno));
  } else {
    d->appendfd = fd;
    fd = -1;
    /* A new file: make its directory entry durable too. */
    if (created) cad_io_fsync_dir(io, pfd, NULL);
  }
  if (fd >= 0) io->close(io->ctx, fd);
  io->close(io->ctx, pfd);
  return rc;
}

int cad_file_dest_open(uv_loop_t *loop, const cad_file_dest_opts_t *o, cad_file_dest_t **out,
                       char *err, size_t errcap) {
  char dummy[2];
  if (!err || !errcap) {
    err = dummy;
    errcap = sizeof dummy;
  }
  err[0] = 0;
  if (!o || (!o->dir == !o->append_path)) {
    snprintf(err, errcap, "a file destination needs exactly one of dir and append");
    return CAD_E_INVAL;
  }
  cad_file_dest_t *d = calloc(1, sizeof *d);
  if (!d) return CAD_E_NOMEM;
  d->loop = loop;
  d->io = cad_io_or_default(o->io);
  d->mode = o->mode ? (mode_t)o->mode : 0600;
  d->dir_mode = o->dir_mode ? (mode_t)o->dir_mode : 0700;
  d->dirfd = d->appendfd = -1;
  d->max_batch = o->max_batch ? o->max_batch : 256;
  d->max_queue = o->max_queue ? o->max_queue : 65536;
  int rc;
  if (o->dir) {
    rc = parse_template(d, o->name_tmpl ? o->name_tmpl : "${MSH-10}.hl7", err, errcap);
    if (rc == 0) rc = open_dir(d, o->dir, err, errcap);
  } else {
    rc = open_append(d, o->append_path, err, errcap);
  }
  if (rc < 0) {
    dest_free(d);
    return rc;
  }
  *out = d;
  return 0;
}

int cad_file_dest_namer(const char *name_tmpl, cad_file_dest_t **out, char *err, size_t errcap) {
  cad_file_dest_t *d = calloc(1, sizeof *d);
  if (!d) return CAD_E_NOMEM;
  d->io = cad_io_default();
  d->dirfd = d->appendfd = -1;
  int rc = parse_template(d, name_tmpl ? name_tmpl : "${MSH-10}.hl7", err, errcap);
  if (rc < 0) {
    dest_free(d);
    return rc;
  }
  *out = d;
  return 0;
}

static size_t put_safe(char *out, size_t n, size_t cap, const char *v, size_t len) {
  if (len > VALUE_MAX) len = VALUE_MAX;
  for (size_t i = 0; i < len && n + 1 < cap; i++) {
    unsigned char c = (unsigned char)v[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '+';
    out[n++] = ok ? (char)c : '_';
  }
  return n;
}

size_t cad_file_dest_name_input(const cad_file_dest_t *d, const char *bytes, size_t len) {
  if (!d->msh_only) return len;
  for (size_t i = 0; i < len; i++)
    if (bytes[i] == '\r' || bytes[i] == '\n') return i;
  return len;
}

size_t cad_file_dest_name(const cad_file_dest_t *d, const cad_hl7_msg_t *m, char *out, size_t cap) {
  size_t n = 0;
  if (cap > NAME_MAX_BYTES + 1) cap = NAME_MAX_BYTES + 1;
  for (int i = 0; i < d->npieces; i++) {
    const piece_t *pc = &d->pieces[i];
    if (pc->lit) {
      /* Literal text was checked at open (no '/'); still pass it through the
       * same filter for control characters. */
      size_t k = strlen(pc->lit);
      for (size_t j = 0; j < k && n + 1 < cap; j++) {
        unsigned char c = (unsigned char)pc->lit[j];
        out[n++] = (c < 0x20 || c == 0x7f) ? '_' : (char)c;
      }
    } else if (m) {
      cad_hl7_match_t mt;
      if (cad_hl7_get(m, &pc->path, &mt) && mt.raw.len)
        n = put_safe(out, n, cap, mt.raw.p, mt.raw.len);
    }
  }
  if (n == 0 && cap >= 2) out[n++] = '_';
  if (out[0] == '.') out[0] = '_';
  out[n < cap ? n : cap - 1] = 0;
  return n;
}

/* ---- the worker -------------------------------------------------------- */

#define IOV_BATCH 512 /* even; below IOV_MAX (1024 on Linux) */

/* Write one message to a new temp file (fdatasync'd when `sync`). */
static int write_tmp(cad_file_dest_t *d, item_t *it, bool sync) {
  const cad_io_t *io = d->io;
  int fd = -EEXIST;
  for (int tries = 0; tries < 8 && fd == -EEXIST; tries++) {
    int rc = tmp_name(it->tmp);
    if (rc < 0) return rc;
    fd = io->openat(io->ctx, d->dirfd, it->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, d->mode);
  }
  if (fd < 0) {
    it->tmp[0] = 0;
    return fd;
  }
  int rc = cad_io_pwrite_all(io, fd, it->bytes, it->len, 0);
  if (rc == 0 && sync) rc = io->fdatasync(io->ctx, fd);
  int crc = io->close(io->ctx, fd);
  if (rc == 0) rc = crc;
  return rc;
}

static void drop_tmp(cad_file_dest_t *d, item_t *it) {
  if (it->tmp[0]) d->io->unlinkat(d->io->ctx, d->dirfd, it->tmp, 0);
  it->tmp[0] = 0;
}

/* Is `name` a regular file holding exactly these bytes? */
static bool same_content(cad_file_dest_t *d, const char *name, const char *p, size_t len) {
  const cad_io_t *io = d->io;
  int fd = io->openat(io->ctx, d->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0);
  if (fd < 0) return false;
  struct stat st;
  bool same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == len;
  char buf[8192];
  for (size_t off = 0; same && off < len;) {
    size_t want = len - off < sizeof buf ? len - off : sizeof buf;
    ssize_t n = io->pread(io->ctx, fd, buf, want, (off_t)off);
    if (n <= 0 || memcmp(buf, p + off, (size_t)n) != 0) same = false;
    else off += (size_t)n;
  }
  io->close(io->ctx, fd);
  return same;
}

void cad_file_name_suffixed(const char *name, unsigned k, char *out, size_t cap) {
  if (k == 1) {
    snprintf(out, cap, "%s", name);
    return;
  }
  const char *dot = strrchr(name, '.');
  if (!dot || dot == name) dot = name + strlen(name);
  snprintf(out, cap, "%.*s~%u%s", (int)(dot - name), name, k, dot);
}

/* Give the temp file its name without replacing anything.  A taken name
 * holding these very bytes is this message written before (redelivery; its
 * name may not be durable yet, so the caller still syncs the directory). */
static int publish(cad_file_dest_t *d, item_t *it) {
  const cad_io_t *io = d->io;
  char cand[NAME_MAX_BYTES + 16];
  for (unsigned k = 1; k <= MAX_SUFFIX; k++) {
    cad_file_name_suffixed(it->name, k, cand, sizeof cand);
    int rc = io->renameat2(io->ctx, d->dirfd, it->tmp, d->dirfd, cand, CAD_IO_RENAME_NOREPLACE);
    if (rc == 0) {
      it->tmp[0] = 0;
      return 0;
    }
    if (rc != -EEXIST) return rc;
    if (same_content(d, cand, it->bytes, it->len)) {
      drop_tmp(d, it);
      return 0;
    }
  }
  return -EEXIST;
}

/* A batch fails from its first failed message on: nothing after it is
 * published, so a later message never overtakes an earlier one. */
static void fail_rest(cad_file_dest_t *d, item_t *from, int err) {
  for (item_t *it = from; it; it = it->next) {
    if (it->status == 0) it->status = err;
    drop_tmp(d, it);
  }
}

/* A directory removed under us (st_nlink 0) is created and opened again,
 * so the delivery worker's retries succeed once the path is usable. */
static void reopen_dir_if_gone(cad_file_dest_t *d) {
  struct stat st;
  if (fstat(d->dirfd, &st) != 0 || st.st_nlink != 0) return;
  if (cad_io_mkdir_p(d->io, d->dir, d->dir_mode) != 0) return;
  int fd = d->io->openat(d->io->ctx, AT_FDCWD, d->dir, O_RDONLY | O_DIRECTORY, 0);
  if (fd >= 0) {
    d->io->close(d->io->ctx, d->dirfd);
    d->dirfd = fd;
  }
}

/* One batch of per-message files: write every temp file, make them all
 * durable with one sync (fdatasync for a single file; for several, one
 * syncfs() of the filesystem, which flushes them all with one journal
 * commit instead of one per file), publish each under its name, then fsync
 * the directory once so the new names are durable too. */
static void work_dir(cad_file_dest_t *d) {
  const cad_io_t *io = d->io;
  reopen_dir_if_gone(d);
  for (item_t *it = d->batch; it; it = it->next) it->tmp[0] = 0;
  for (item_t *it = d->batch; it; it = it->next) {
    int rc = write_tmp(d, it, d->nbatch == 1);
    if (rc < 0) {
      fail_rest(d, it, rc);
      break;
    }
  }
  if (d->batch->status < 0) return;
  if (d->nbatch > 1) {
    int rc = io->syncfs(io->ctx, d->dirfd);
    if (rc < 0) {
      fail_rest(d, d->batch, rc);
      return;
    }
  }
  bool any = false;
  for (item_t *it = d->batch; it && it->status == 0; it = it->next) {
    int rc = publish(d, it);
    if (rc < 0) {
      fail_rest(d, it, rc);
      break;
    }
    any = true;
  }
  int rc = any ? io->fsync(io->ctx, d->dirfd) : 0;
  if (rc < 0) fail_rest(d, d->batch, rc);
}

/* One batch appended with as few writev() calls as the kernel allows (one,
 * normally: with O_APPEND a single write lands whole, even if another
 * descriptor appends to the same file, e.g. during a reload), then one
 * fdatasync for the whole batch. */
static void work_append(cad_file_dest_t *d) {
  struct iovec iov[IOV_BATCH];
  int n = 0, rc = 0;
  for (item_t *it = d->batch; it && rc == 0; it = it->next) {
    bool term = it->len && (it->bytes[it->len - 1] == '\r' || it->bytes[it->len - 1] == '\n');
    iov[n++] = (struct iovec){(void *)it->bytes, it->len};
    iov[n++] = term ? (struct iovec){(void *)"\n", 1} : (struct iovec){(void *)"\r\n", 2};
    if (n == IOV_BATCH || !it->next) {
      rc = cad_io_writev_all(d->io, d->appendfd, iov, n);
      n = 0;
    }
  }
  if (rc == 0) rc = d->io->fdatasync(d->io->ctx, d->appendfd);
  for (item_t *it = d->batch; it; it = it->next) it->status = rc;
}

static void work_cb(uv_work_t *w) {
  cad_file_dest_t *d = w->data;
  if (d->dirfd >= 0) work_dir(d);
  else work_append(d);
}

static void start_batch(cad_file_dest_t *d);

static void after_work_cb(uv_work_t *w, int status) {
  cad_file_dest_t *d = w->data;
  item_t *it = d->batch;
  d->batch = NULL;
  d->nbatch = 0;
  /* A callback may close the destination: it is freed only after the loop. */
  d->dispatching = true;
  while (it) {
    item_t *next = it->next;
    it->cb(status < 0 ? status : it->status, it->arg);
    free(it);
    it = next;
  }
  d->dispatching = false;
  d->busy = false;
  start_batch(d);
  if (d->closing && !d->busy && !d->qhead) dest_free(d);
}

static void start_batch(cad_file_dest_t *d) {
  if (d->busy || !d->qhead) return;
  item_t *head = d->qhead, *last = head;
  size_t n = 1;
  while (last->next && n < d->max_batch) {
    last = last->next;
    n++;
  }
  d->qhead = last->next;
  if (!d->qhead) d->qtail = NULL;
  last->next = NULL;
  d->nqueued -= n;
  d->batch = head;
  d->nbatch = n;
  d->work.data = d;
  int rc = uv_queue_work(d->loop, &d->work, work_cb, after_work_cb);
  if (rc < 0) {
    /* Cannot happen with a valid loop; fail the batch rather than lose it. */
    for (item_t *it = head; it; it = it->next) it->status = rc;
    d->busy = true;
    after_work_cb(&d->work, rc);
    return;
  }
  d->busy = true;
}

int cad_file_dest_write(cad_file_dest_t *d, const cad_hl7_msg_t *m, const char *bytes, size_t len,
                        cad_file_dest_cb cb, void *arg) {
  if (d->closing) return CAD_E_STATE;
  if (d->nqueued >= d->max_queue) return CAD_E_FULL;
  item_t *it = malloc(sizeof *it);
  if (!it) return CAD_E_NOMEM;
  it->next = NULL;
  it->bytes = bytes;
  it->len = len;
  it->cb = cb;
  it->arg = arg;
  it->status = 0;
  it->tmp[0] = 0;
  if (d->dirfd >= 0) cad_file_dest_name(d, m, it->name, sizeof it->name);
  else it->name[0] = 0;
  if (d->qtail) d->qtail->next = it;
  else d->qhead = it;
  d->qtail = it;
  d->nqueued++;
  start_batch(d);
  return 0;
}

size_t cad_file_dest_pending(const cad_file_dest_t *d) { return d->nqueued + d->nbatch; }

void cad_file_dest_close(cad_file_dest_t *d) {
  d->closing = true;
  if (!d->busy && !d->qhead && !d->dispatching) dest_free(d);
}
