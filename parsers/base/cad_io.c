/* cad_io.c - the system's I/O table and the helpers built on any table. */
#include "cad_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cad_error.h"

#define RET(x) return (x) < 0 ? -errno : (x)

static int sys_openat(void *c, int d, const char *p, int fl, mode_t m) {
  (void)c;
  int fd = openat(d, p, fl | O_CLOEXEC, m);
  return fd < 0 ? -errno : fd;
}
static int sys_close(void *c, int fd) {
  (void)c;
  return close(fd) == 0 ? 0 : -errno;
}
static ssize_t sys_pread(void *c, int fd, void *b, size_t n, off_t o) {
  (void)c;
  ssize_t r = pread(fd, b, n, o);
  RET(r);
}
static ssize_t sys_pwrite(void *c, int fd, const void *b, size_t n, off_t o) {
  (void)c;
  ssize_t r = pwrite(fd, b, n, o);
  RET(r);
}
static ssize_t sys_pwritev(void *c, int fd, const struct iovec *v, int k, off_t o) {
  (void)c;
  ssize_t r = pwritev(fd, v, k, o);
  RET(r);
}
static ssize_t sys_write(void *c, int fd, const void *b, size_t n) {
  (void)c;
  ssize_t r = write(fd, b, n);
  RET(r);
}
static ssize_t sys_writev(void *c, int fd, const struct iovec *v, int k) {
  (void)c;
  ssize_t r = writev(fd, v, k);
  RET(r);
}
static int sys_fsync(void *c, int fd) {
  (void)c;
  return fsync(fd) == 0 ? 0 : -errno;
}
static int sys_fdatasync(void *c, int fd) {
  (void)c;
  return fdatasync(fd) == 0 ? 0 : -errno;
}
static int sys_ftruncate(void *c, int fd, off_t len) {
  (void)c;
  return ftruncate(fd, len) == 0 ? 0 : -errno;
}
static int sys_renameat(void *c, int od, const char *op, int nd, const char *np) {
  (void)c;
  return renameat(od, op, nd, np) == 0 ? 0 : -errno;
}
static int sys_unlinkat(void *c, int d, const char *p, int fl) {
  (void)c;
  return unlinkat(d, p, fl) == 0 ? 0 : -errno;
}
static int sys_mkdirat(void *c, int d, const char *p, mode_t m) {
  (void)c;
  return mkdirat(d, p, m) == 0 ? 0 : -errno;
}

static int sys_renameat2(void *c, int od, const char *op, int nd, const char *np, unsigned fl) {
  (void)c;
  if (!(fl & CAD_IO_RENAME_NOREPLACE)) return renameat(od, op, nd, np) == 0 ? 0 : -errno;
  if (renameat2(od, op, nd, np, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -errno;
  /* No RENAME_NOREPLACE here: a hard link never replaces either. */
  if (linkat(od, op, nd, np, 0) < 0) return -errno;
  unlinkat(od, op, 0);
  return 0;
}
static int sys_syncfs(void *c, int fd) {
  (void)c;
  return syncfs(fd) == 0 ? 0 : -errno;
}

static int sys_fstat(void *c, int fd, struct stat *st) {
  (void)c;
  return fstat(fd, st) == 0 ? 0 : -errno;
}

static const cad_io_t sys_io = {
  .ctx = NULL,
  .openat = sys_openat,
  .close = sys_close,
  .pread = sys_pread,
  .pwrite = sys_pwrite,
  .pwritev = sys_pwritev,
  .write = sys_write,
  .writev = sys_writev,
  .fsync = sys_fsync,
  .fdatasync = sys_fdatasync,
  .ftruncate = sys_ftruncate,
  .renameat = sys_renameat,
  .unlinkat = sys_unlinkat,
  .mkdirat = sys_mkdirat,
  .renameat2 = sys_renameat2,
  .syncfs = sys_syncfs,
  .fstat = sys_fstat,
};

const cad_io_t *cad_io_default(void) { return &sys_io; }

int cad_io_pwrite_all(const cad_io_t *io, int fd, const void *buf, size_t n, off_t off) {
  io = cad_io_or_default(io);
  const char *p = buf;
  while (n > 0) {
    ssize_t w = io->pwrite(io->ctx, fd, p, n, off);
    if (w == -EINTR) continue;
    if (w < 0) return (int)w;
    if (w == 0) return -EIO;
    p += w;
    n -= (size_t)w;
    off += w;
  }
  return 0;
}

int cad_io_writev_all(const cad_io_t *io, int fd, struct iovec *iov, int cnt) {
  io = cad_io_or_default(io);
  while (cnt > 0) {
    if (iov->iov_len == 0) {
      iov++;
      cnt--;
      continue;
    }
    ssize_t w = io->writev(io->ctx, fd, iov, cnt);
    if (w == -EINTR) continue;
    if (w < 0) return (int)w;
    if (w == 0) return -EIO;
    size_t left = (size_t)w;
    while (cnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

int cad_io_fsync_dir(const cad_io_t *io, int dirfd, const char *path) {
  io = cad_io_or_default(io);
  if (dirfd >= 0) return io->fsync(io->ctx, dirfd);
  char dir[PATH_MAX];
  size_t n = path ? strlen(path) : 0;
  if (n >= sizeof dir) return CAD_E_INVAL;
  memcpy(dir, path ? path : "", n + 1);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  int fd = io->openat(io->ctx, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return fd;
  int rc = io->fsync(io->ctx, fd);
  io->close(io->ctx, fd);
  return rc;
}

int cad_io_mkdir_p(const cad_io_t *io, const char *path, mode_t mode) {
  io = cad_io_or_default(io);
  char tmp[PATH_MAX];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof tmp) return CAD_E_INVAL;
  memcpy(tmp, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (tmp[i] != '/' && tmp[i] != 0) continue;
    char c = tmp[i];
    tmp[i] = 0;
    int rc = io->mkdirat(io->ctx, AT_FDCWD, tmp, mode);
    if (rc < 0 && rc != -EEXIST) return rc;
    tmp[i] = c;
  }
  return 0;
}

static uint64_t clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t cad_now_ms(void) { return clock_ms(CLOCK_REALTIME); }
uint64_t cad_mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

/* ---- reading configuration files ----------------------------------------- */

/* Open `path` for reading without waiting (a FIFO with no writer, a tty) and
 * make sure it is a regular file.  Returns the fd, or -errno / CAD_E_INVAL
 * with *why set. */
static const char *not_regular(const struct stat *st) {
  if (S_ISDIR(st->st_mode)) return "a directory, not a regular file";
  if (S_ISFIFO(st->st_mode)) return "a FIFO, not a regular file";
  if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) return "a device, not a regular file";
  if (S_ISSOCK(st->st_mode)) return "a socket, not a regular file";
  return "not a regular file";
}

static int open_regular(const char *path, struct stat *st, const char **why) {
  /* stat first: a device is never opened (opening some has effects). */
  if (stat(path, st) != 0) {
    int e = errno;
    *why = strerror(e);
    return -e;
  }
  if (!S_ISREG(st->st_mode)) {
    *why = not_regular(st);
    return CAD_E_INVAL;
  }
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    *why = strerror(e);
    return -e;
  }
  if (fstat(fd, st) != 0) {
    int e = errno;
    close(fd);
    *why = strerror(e);
    return -e;
  }
  if (!S_ISREG(st->st_mode)) { /* replaced since the stat */
    close(fd);
    *why = not_regular(st);
    return CAD_E_INVAL;
  }
  return fd;
}

int cad_io_check_regular(const char *path, const char **why) {
  struct stat st;
  int fd = open_regular(path, &st, why);
  if (fd < 0) return fd;
  close(fd);
  return 0;
}

int cad_io_read_regular(const char *path, size_t max, char **data, size_t *len, const char **why) {
  struct stat st;
  *data = NULL;
  *len = 0;
  int fd = open_regular(path, &st, why);
  if (fd < 0) return fd;
  if ((uint64_t)st.st_size > max) {
    close(fd);
    *why = "the file is too large";
    return CAD_E_TOOBIG;
  }
  size_t n = (size_t)st.st_size, got = 0;
  char *buf = malloc(n + 1);
  if (!buf) {
    close(fd);
    *why = "out of memory";
    return CAD_E_NOMEM;
  }
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      free(buf);
      *why = strerror(e);
      return -e;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != n) {
    free(buf);
    *why = "the file changed while it was read";
    return CAD_E_IO;
  }
  buf[n] = 0;
  *data = buf;
  *len = n;
  return 0;
}
