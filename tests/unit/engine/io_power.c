/* io_power.c - the power-cut cad_io_t table (io_sim.h).
 *
 * Every operation goes to the system; beside it the table keeps, per file,
 * its current bytes (every write applied) and its durable bytes (the
 * current ones as of its last fsync/fdatasync), and two name tables: the
 * current names and the durable ones (a directory's entries become durable
 * when the directory is fsync'd).  A cut writes the durable names with
 * their durable bytes elsewhere. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_sim.h"

#define SYS cad_io_default()

typedef struct pfile {
  unsigned char *cur, *dur;
  size_t cur_len, dur_len;
} pfile_t;

typedef struct pname {
  char *path;
  pfile_t *f; /* NULL: a directory */
} pname_t;

typedef struct names {
  pname_t *v;
  size_t n, cap;
} names_t;

typedef struct pfd {
  int fd;
  pfile_t *f; /* NULL: a directory */
  char *path;
} pfd_t;

struct io_power {
  cad_io_t io;
  pthread_mutex_t mu;
  names_t cur, dur, made; /* made: directories created through the table */
  pfd_t *fds;
  size_t nfds, capfds;
  pfile_t **files;
  size_t nfiles, capfiles;
  pfile_t *last_f; /* the last unsynced write */
  off_t last_off;
  unsigned char *last_b;
  size_t last_len;
  uint64_t nops;
  void (*hook)(void *ud, uint64_t n);
  void *hook_ud;
};

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) abort();
  return q;
}
static char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (!d) abort();
  return d;
}

static void changing(io_power_t *p) {
  pthread_mutex_lock(&p->mu);
  uint64_t n = ++p->nops;
  void (*fn)(void *, uint64_t) = p->hook;
  void *ud = p->hook_ud;
  pthread_mutex_unlock(&p->mu);
  if (fn) fn(ud, n);
}

/* ---- tables ------------------------------------------------------------- */

static pname_t *name_find(names_t *t, const char *path) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].path, path) == 0) return &t->v[i];
  return NULL;
}
static void name_set(names_t *t, const char *path, pfile_t *f) {
  pname_t *e = name_find(t, path);
  if (e) {
    e->f = f;
    return;
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 32;
    t->v = xrealloc(t->v, t->cap * sizeof *t->v);
  }
  t->v[t->n++] = (pname_t){xstrdup(path), f};
}
static void name_del(names_t *t, size_t i) {
  free(t->v[i].path);
  t->v[i] = t->v[--t->n];
}
static void name_drop(names_t *t, const char *path) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].path, path) == 0) {
      name_del(t, i);
      return;
    }
}

static pfd_t *fd_find(io_power_t *p, int fd) {
  for (size_t i = 0; i < p->nfds; i++)
    if (p->fds[i].fd == fd) return &p->fds[i];
  return NULL;
}

/* dirfd + path as one path (malloc'd). */
static char *resolve(io_power_t *p, int dirfd, const char *path) {
  pfd_t *d = dirfd == AT_FDCWD || path[0] == '/' ? NULL : fd_find(p, dirfd);
  char *out;
  if (d) {
    out = xrealloc(NULL, strlen(d->path) + strlen(path) + 2);
    sprintf(out, "%s/%s", d->path, path);
  } else {
    out = xstrdup(path);
  }
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/') out[--n] = 0;
  return out;
}

static bool is_child(const char *path, const char *dir) {
  size_t n = strlen(dir);
  const char *slash = strrchr(path, '/');
  return slash && (size_t)(slash - path) == n && strncmp(path, dir, n) == 0;
}

static pfile_t *file_new(io_power_t *p) {
  pfile_t *f = calloc(1, sizeof *f);
  if (!f) abort();
  if (p->nfiles == p->capfiles) {
    p->capfiles = p->capfiles ? p->capfiles * 2 : 32;
    p->files = xrealloc(p->files, p->capfiles * sizeof *p->files);
  }
  p->files[p->nfiles++] = f;
  return f;
}

static bool referenced(io_power_t *p, pfile_t *f) {
  if (p->last_f == f) return true;
  for (size_t i = 0; i < p->cur.n; i++)
    if (p->cur.v[i].f == f) return true;
  for (size_t i = 0; i < p->dur.n; i++)
    if (p->dur.v[i].f == f) return true;
  for (size_t i = 0; i < p->nfds; i++)
    if (p->fds[i].f == f) return true;
  return false;
}

/* Free the files nothing can reach any more (unlinked for good, closed). */
static void gc(io_power_t *p) {
  for (size_t i = 0; i < p->nfiles;) {
    pfile_t *f = p->files[i];
    if (referenced(p, f)) {
      i++;
      continue;
    }
    free(f->cur);
    free(f->dur);
    free(f);
    p->files[i] = p->files[--p->nfiles];
  }
}

static void cur_write(pfile_t *f, off_t off, const void *b, size_t n) {
  size_t end = (size_t)off + n;
  if (end > f->cur_len) {
    f->cur = xrealloc(f->cur, end);
    memset(f->cur + f->cur_len, 0, end - f->cur_len);
    f->cur_len = end;
  }
  memcpy(f->cur + off, b, n);
}

/* An existing file the table has not seen: its bytes are durable. */
static pfile_t *adopt(io_power_t *p, int fd, const char *path) {
  pfile_t *f = file_new(p);
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    f->cur = xrealloc(NULL, (size_t)st.st_size);
    f->cur_len = (size_t)pread(fd, f->cur, (size_t)st.st_size, 0);
    f->dur = xrealloc(NULL, f->cur_len);
    memcpy(f->dur, f->cur, f->cur_len);
    f->dur_len = f->cur_len;
  }
  name_set(&p->cur, path, f);
  name_set(&p->dur, path, f);
  return f;
}

/* ---- the table ---------------------------------------------------------- */

static int p_openat(void *c, int d, const char *path, int fl, mode_t m) {
  io_power_t *p = c;
  if (fl & (O_CREAT | O_TRUNC)) changing(p);
  int fd = SYS->openat(SYS->ctx, d, path, fl, m);
  if (fd < 0) return fd;
  pthread_mutex_lock(&p->mu);
  char *full = resolve(p, d, path);
  pfile_t *f = NULL;
  if (!(fl & O_DIRECTORY)) {
    pname_t *e = name_find(&p->cur, full);
    struct stat st;
    bool untracked = !e && !name_find(&p->dur, full);
    if (e && e->f) {
      f = e->f;
    } else if (untracked && (!(fl & O_CREAT) || (fstat(fd, &st) == 0 && st.st_size > 0))) {
      f = adopt(p, fd, full); /* there before the table */
    } else {
      f = file_new(p); /* created now (a durable name may still point to an older file) */
      name_set(&p->cur, full, f);
    }
    if (fl & O_TRUNC) f->cur_len = 0;
  }
  if (p->nfds == p->capfds) {
    p->capfds = p->capfds ? p->capfds * 2 : 32;
    p->fds = xrealloc(p->fds, p->capfds * sizeof *p->fds);
  }
  p->fds[p->nfds++] = (pfd_t){fd, f, full};
  pthread_mutex_unlock(&p->mu);
  return fd;
}

static int p_close(void *c, int fd) {
  io_power_t *p = c;
  pthread_mutex_lock(&p->mu);
  pfd_t *e = fd_find(p, fd);
  if (e) {
    free(e->path);
    *e = p->fds[--p->nfds];
  }
  pthread_mutex_unlock(&p->mu);
  return SYS->close(SYS->ctx, fd);
}

static ssize_t p_pread(void *c, int fd, void *b, size_t n, off_t o) {
  (void)c;
  return SYS->pread(SYS->ctx, fd, b, n, o);
}

/* Apply a write that reached the file, and remember it as the last one. */
static void wrote(io_power_t *p, int fd, off_t off, const struct iovec *v, int k, size_t n) {
  pthread_mutex_lock(&p->mu);
  pfd_t *e = fd_find(p, fd);
  if (e && e->f) {
    p->last_b = xrealloc(p->last_b, n);
    size_t done = 0;
    for (int i = 0; i < k && done < n; i++) {
      size_t take = v[i].iov_len < n - done ? v[i].iov_len : n - done;
      memcpy(p->last_b + done, v[i].iov_base, take);
      done += take;
    }
    cur_write(e->f, off, p->last_b, n);
    p->last_f = e->f;
    p->last_off = off;
    p->last_len = n;
  }
  pthread_mutex_unlock(&p->mu);
}

static ssize_t p_pwritev(void *c, int fd, const struct iovec *v, int k, off_t o) {
  changing(c);
  ssize_t r = SYS->pwritev(SYS->ctx, fd, v, k, o);
  if (r > 0) wrote(c, fd, o, v, k, (size_t)r);
  return r;
}
static ssize_t p_pwrite(void *c, int fd, const void *b, size_t n, off_t o) {
  struct iovec v = {(void *)b, n};
  return p_pwritev(c, fd, &v, 1, o);
}
static ssize_t p_writev(void *c, int fd, const struct iovec *v, int k) {
  off_t o = lseek(fd, 0, SEEK_CUR);
  changing(c);
  ssize_t r = SYS->writev(SYS->ctx, fd, v, k);
  if (r > 0) wrote(c, fd, o, v, k, (size_t)r);
  return r;
}
static ssize_t p_write(void *c, int fd, const void *b, size_t n) {
  struct iovec v = {(void *)b, n};
  return p_writev(c, fd, &v, 1);
}

static int p_sync(void *c, int fd, bool data) {
  io_power_t *p = c;
  changing(p);
  /* The real files need no durability: the table keeps what would be. */
  (void)data;
  pthread_mutex_lock(&p->mu);
  pfd_t *e = fd_find(p, fd);
  if (e && e->f) {
    pfile_t *f = e->f;
    f->dur = xrealloc(f->dur, f->cur_len);
    if (f->cur_len) memcpy(f->dur, f->cur, f->cur_len);
    f->dur_len = f->cur_len;
    if (p->last_f == f) p->last_f = NULL;
  } else if (e) {
    /* A directory: its entries, as they are now, become durable. */
    for (size_t i = 0; i < p->dur.n;)
      if (is_child(p->dur.v[i].path, e->path)) name_del(&p->dur, i);
      else i++;
    for (size_t i = 0; i < p->cur.n; i++)
      if (is_child(p->cur.v[i].path, e->path)) name_set(&p->dur, p->cur.v[i].path, p->cur.v[i].f);
    gc(p);
  }
  pthread_mutex_unlock(&p->mu);
  return 0;
}
static int p_fsync(void *c, int fd) { return p_sync(c, fd, false); }
static int p_fdatasync(void *c, int fd) { return p_sync(c, fd, true); }

static int p_ftruncate(void *c, int fd, off_t len) {
  io_power_t *p = c;
  changing(p);
  int rc = SYS->ftruncate(SYS->ctx, fd, len);
  if (rc) return rc;
  pthread_mutex_lock(&p->mu);
  pfd_t *e = fd_find(p, fd);
  if (e && e->f) {
    pfile_t *f = e->f;
    if ((size_t)len > f->cur_len) {
      f->cur = xrealloc(f->cur, (size_t)len);
      memset(f->cur + f->cur_len, 0, (size_t)len - f->cur_len);
    } else {
      f->cur = xrealloc(f->cur, (size_t)len);
    }
    f->cur_len = (size_t)len;
  }
  pthread_mutex_unlock(&p->mu);
  return 0;
}

static int p_rename(void *c, int od, const char *op, int nd, const char *np, unsigned fl) {
  io_power_t *p = c;
  changing(p);
  int rc = SYS->renameat2(SYS->ctx, od, op, nd, np, fl);
  if (rc) return rc;
  pthread_mutex_lock(&p->mu);
  char *from = resolve(p, od, op), *to = resolve(p, nd, np);
  pname_t *e = name_find(&p->cur, from);
  pfile_t *f = e ? e->f : NULL;
  name_drop(&p->cur, from);
  name_set(&p->cur, to, f);
  free(from);
  free(to);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

static int p_renameat(void *c, int od, const char *op, int nd, const char *np) {
  return p_rename(c, od, op, nd, np, 0);
}
static int p_renameat2(void *c, int od, const char *op, int nd, const char *np, unsigned fl) {
  return p_rename(c, od, op, nd, np, fl);
}

/* Everything becomes durable: every file's bytes and every name. */
static int p_syncfs(void *c, int fd) {
  io_power_t *p = c;
  changing(p);
  (void)fd;
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < p->nfiles; i++) {
    pfile_t *f = p->files[i];
    f->dur = xrealloc(f->dur, f->cur_len);
    if (f->cur_len) memcpy(f->dur, f->cur, f->cur_len);
    f->dur_len = f->cur_len;
  }
  p->last_f = NULL;
  while (p->dur.n) name_del(&p->dur, p->dur.n - 1);
  for (size_t i = 0; i < p->cur.n; i++) name_set(&p->dur, p->cur.v[i].path, p->cur.v[i].f);
  gc(p);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

static int p_unlinkat(void *c, int d, const char *path, int fl) {
  io_power_t *p = c;
  changing(p);
  int rc = SYS->unlinkat(SYS->ctx, d, path, fl);
  if (rc) return rc;
  pthread_mutex_lock(&p->mu);
  char *full = resolve(p, d, path);
  name_drop(&p->cur, full);
  free(full);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

static int p_mkdirat(void *c, int d, const char *path, mode_t m) {
  io_power_t *p = c;
  changing(p);
  int rc = SYS->mkdirat(SYS->ctx, d, path, m);
  if (rc) return rc;
  pthread_mutex_lock(&p->mu);
  char *full = resolve(p, d, path);
  name_set(&p->cur, full, NULL);
  name_set(&p->made, full, NULL);
  free(full);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

static int p_fstat(void *c, int fd, struct stat *st) {
  (void)c;
  return SYS->fstat(SYS->ctx, fd, st);
}

io_power_t *io_power_new(void) {
  io_power_t *p = calloc(1, sizeof *p);
  if (!p) abort();
  pthread_mutex_init(&p->mu, NULL);
  p->io = (cad_io_t){.ctx = p,
                     .openat = p_openat,
                     .close = p_close,
                     .pread = p_pread,
                     .pwrite = p_pwrite,
                     .pwritev = p_pwritev,
                     .write = p_write,
                     .writev = p_writev,
                     .fsync = p_fsync,
                     .fdatasync = p_fdatasync,
                     .ftruncate = p_ftruncate,
                     .renameat = p_renameat,
                     .unlinkat = p_unlinkat,
                     .mkdirat = p_mkdirat,
                     .renameat2 = p_renameat2,
                     .syncfs = p_syncfs,
                     .fstat = p_fstat};
  return p;
}

const cad_io_t *io_power_io(io_power_t *p) { return &p->io; }

void io_power_set_hook(io_power_t *p, void (*fn)(void *ud, uint64_t n), void *ud) {
  pthread_mutex_lock(&p->mu);
  p->hook = fn;
  p->hook_ud = ud;
  pthread_mutex_unlock(&p->mu);
}

/* Is every directory above `path` (below root) durable? */
static bool reachable(io_power_t *p, const char *root, const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  size_t rl = strlen(root);
  for (char *s = strrchr(buf, '/'); s && (size_t)(s - buf) > rl; s = strrchr(buf, '/')) {
    *s = 0;
    if (name_find(&p->made, buf) && !name_find(&p->dur, buf)) return false;
  }
  return true;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const pname_t *)a)->path, ((const pname_t *)b)->path);
}

static int put_file(const char *path, const unsigned char *b, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, b + done, n - done);
    if (w <= 0) {
      close(fd);
      return -EIO;
    }
    done += (size_t)w;
  }
  close(fd);
  return 0;
}

int io_power_cut(io_power_t *p, const char *root, const char *dst, long tear) {
  pthread_mutex_lock(&p->mu);
  size_t rl = strlen(root);
  pname_t *v = xrealloc(NULL, p->dur.n * sizeof *v);
  size_t n = 0;
  for (size_t i = 0; i < p->dur.n; i++) {
    const char *path = p->dur.v[i].path;
    if (strncmp(path, root, rl) == 0 && path[rl] == '/' && reachable(p, root, path))
      v[n++] = p->dur.v[i];
  }
  qsort(v, n, sizeof *v, cmp_name); /* parents before what they hold */
  int rc = 0;
  char out[4096];
  for (size_t i = 0; i < n && rc == 0; i++) {
    snprintf(out, sizeof out, "%s%s", dst, v[i].path + rl);
    if (!v[i].f) {
      rc = mkdir(out, 0700) == 0 ? 0 : -errno;
      continue;
    }
    pfile_t *f = v[i].f;
    if (tear >= 0 && p->last_f == f && p->last_len) {
      size_t t = (size_t)tear % (p->last_len + 1);
      size_t end = (size_t)p->last_off + t;
      size_t len = end > f->dur_len ? end : f->dur_len;
      unsigned char *img = calloc(len ? len : 1, 1);
      if (!img) abort();
      if (f->dur_len) memcpy(img, f->dur, f->dur_len);
      memcpy(img + p->last_off, p->last_b, t);
      rc = put_file(out, img, len);
      free(img);
    } else {
      rc = put_file(out, f->dur, f->dur_len);
    }
  }
  free(v);
  pthread_mutex_unlock(&p->mu);
  return rc;
}

void io_power_free(io_power_t *p) {
  names_t *t[3] = {&p->cur, &p->dur, &p->made};
  for (int k = 0; k < 3; k++) {
    for (size_t i = 0; i < t[k]->n; i++) free(t[k]->v[i].path);
    free(t[k]->v);
  }
  for (size_t i = 0; i < p->nfds; i++) free(p->fds[i].path);
  free(p->fds);
  for (size_t i = 0; i < p->nfiles; i++) {
    free(p->files[i]->cur);
    free(p->files[i]->dur);
    free(p->files[i]);
  }
  free(p->files);
  free(p->last_b);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
