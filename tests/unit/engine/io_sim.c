/* io_sim.c - fault-injecting and power-cut cad_io_t tables (io_sim.h). */
#include "io_sim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYS cad_io_default()

/* ---- faults ---------------------------------------------------------------- */

struct io_fault {
  cad_io_t io;
  pthread_mutex_t mu;
  int ops;
  long nth;
  int err;
  bool sticky, firing;
  long injected;
};

/* 0: go on; else the error (or IOF_SHORT) to inject. */
static int fault_due(io_fault_t *f, int kind) {
  pthread_mutex_lock(&f->mu);
  int r = 0;
  if ((f->ops & kind) && (f->firing || (f->nth > 0 && --f->nth == 0))) {
    r = f->err;
    f->injected++;
    f->firing = f->sticky;
  }
  pthread_mutex_unlock(&f->mu);
  return r;
}

static int f_openat(void *c, int d, const char *p, int fl, mode_t m) {
  (void)c;
  return SYS->openat(SYS->ctx, d, p, fl, m);
}
static int f_close(void *c, int fd) {
  (void)c;
  return SYS->close(SYS->ctx, fd);
}
static ssize_t f_pread(void *c, int fd, void *b, size_t n, off_t o) {
  (void)c;
  return SYS->pread(SYS->ctx, fd, b, n, o);
}
static ssize_t f_pwrite(void *c, int fd, const void *b, size_t n, off_t o) {
  int e = fault_due(c, IOF_WRITE);
  if (e == IOF_SHORT && n > 1) n /= 2;
  else if (e) return e;
  return SYS->pwrite(SYS->ctx, fd, b, n, o);
}
/* The first half of an iovec array, into out (cap entries): its count. */
static int half_iov(const struct iovec *v, int k, struct iovec *out, int cap) {
  size_t total = 0;
  for (int i = 0; i < k; i++) total += v[i].iov_len;
  size_t left = total > 1 ? total / 2 : total;
  int n = 0;
  for (int i = 0; i < k && left && n < cap; i++) {
    out[n] = v[i];
    if (out[n].iov_len > left) out[n].iov_len = left;
    left -= out[n].iov_len;
    n++;
  }
  return n;
}
static ssize_t f_pwritev(void *c, int fd, const struct iovec *v, int k, off_t o) {
  int e = fault_due(c, IOF_WRITE);
  if (e == IOF_SHORT) {
    struct iovec h[64];
    int n = half_iov(v, k, h, 64);
    return SYS->pwritev(SYS->ctx, fd, h, n, o);
  }
  if (e) return e;
  return SYS->pwritev(SYS->ctx, fd, v, k, o);
}
static ssize_t f_write(void *c, int fd, const void *b, size_t n) {
  int e = fault_due(c, IOF_WRITE);
  if (e == IOF_SHORT && n > 1) n /= 2;
  else if (e) return e;
  return SYS->write(SYS->ctx, fd, b, n);
}
static ssize_t f_writev(void *c, int fd, const struct iovec *v, int k) {
  int e = fault_due(c, IOF_WRITE);
  if (e == IOF_SHORT) {
    struct iovec h[64];
    int n = half_iov(v, k, h, 64);
    return SYS->writev(SYS->ctx, fd, h, n);
  }
  if (e) return e;
  return SYS->writev(SYS->ctx, fd, v, k);
}
static int f_fsync(void *c, int fd) {
  int e = fault_due(c, IOF_SYNC);
  if (e && e != IOF_SHORT) return e;
  return SYS->fsync(SYS->ctx, fd);
}
static int f_fdatasync(void *c, int fd) {
  int e = fault_due(c, IOF_SYNC);
  if (e && e != IOF_SHORT) return e;
  return SYS->fdatasync(SYS->ctx, fd);
}
static int f_ftruncate(void *c, int fd, off_t len) {
  (void)c;
  return SYS->ftruncate(SYS->ctx, fd, len);
}
static int f_renameat(void *c, int od, const char *op, int nd, const char *np) {
  int e = fault_due(c, IOF_RENAME);
  if (e && e != IOF_SHORT) return e;
  return SYS->renameat(SYS->ctx, od, op, nd, np);
}
static int f_renameat2(void *c, int od, const char *op, int nd, const char *np, unsigned fl) {
  int e = fault_due(c, IOF_RENAME);
  if (e && e != IOF_SHORT) return e;
  return SYS->renameat2(SYS->ctx, od, op, nd, np, fl);
}
static int f_syncfs(void *c, int fd) {
  int e = fault_due(c, IOF_SYNC);
  if (e && e != IOF_SHORT) return e;
  return SYS->syncfs(SYS->ctx, fd);
}
static int f_unlinkat(void *c, int d, const char *p, int fl) {
  (void)c;
  return SYS->unlinkat(SYS->ctx, d, p, fl);
}
static int f_mkdirat(void *c, int d, const char *p, mode_t m) {
  (void)c;
  return SYS->mkdirat(SYS->ctx, d, p, m);
}
static int f_fstat(void *c, int fd, struct stat *st) {
  (void)c;
  return SYS->fstat(SYS->ctx, fd, st);
}

io_fault_t *io_fault_new(void) {
  io_fault_t *f = calloc(1, sizeof *f);
  if (!f) abort();
  pthread_mutex_init(&f->mu, NULL);
  f->io = (cad_io_t){.ctx = f,
                     .openat = f_openat,
                     .close = f_close,
                     .pread = f_pread,
                     .pwrite = f_pwrite,
                     .pwritev = f_pwritev,
                     .write = f_write,
                     .writev = f_writev,
                     .fsync = f_fsync,
                     .fdatasync = f_fdatasync,
                     .ftruncate = f_ftruncate,
                     .renameat = f_renameat,
                     .unlinkat = f_unlinkat,
                     .mkdirat = f_mkdirat,
                     .renameat2 = f_renameat2,
                     .syncfs = f_syncfs,
                     .fstat = f_fstat};
  return f;
}
const cad_io_t *io_fault_io(io_fault_t *f) { return &f->io; }
void io_fault_arm(io_fault_t *f, int ops, long nth, int err, bool sticky) {
  pthread_mutex_lock(&f->mu);
  f->ops = ops;
  f->nth = nth;
  f->err = err;
  f->sticky = sticky;
  f->firing = false;
  pthread_mutex_unlock(&f->mu);
}
void io_fault_clear(io_fault_t *f) { io_fault_arm(f, 0, 0, 0, false); }
long io_fault_injected(io_fault_t *f) {
  pthread_mutex_lock(&f->mu);
  long n = f->injected;
  pthread_mutex_unlock(&f->mu);
  return n;
}
void io_fault_free(io_fault_t *f) {
  pthread_mutex_destroy(&f->mu);
  free(f);
}
