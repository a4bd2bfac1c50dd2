/* lock.c - the data directory's lock (see lock.h). */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cad_io.h"

/* The pid holding a FLOCK on inode `st` per /proc/locks, or 0. */
static long holder_from_proc(const struct stat *st) {
  FILE *f = fopen("/proc/locks", "re");
  if (!f) return 0;
  char line[256];
  long pid = 0;
  while (!pid && fgets(line, sizeof line, f)) {
    char kind[16];
    long p;
    unsigned maj, min;
    unsigned long long ino;
    /* "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" */
    if (sscanf(line, "%*[^:]: %15s %*s %*s %ld %x:%x:%llu", kind, &p, &maj, &min, &ino) != 5)
      continue;
    if (strcmp(kind, "FLOCK") == 0 && ino == (unsigned long long)st->st_ino &&
        maj == major(st->st_dev) && min == minor(st->st_dev))
      pid = p;
  }
  fclose(f);
  return pid;
}

static long holder_from_file(const char *data_dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/lock", data_dir);
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  long pid = 0;
  if (fscanf(f, "%ld", &pid) != 1) pid = 0;
  fclose(f);
  return pid;
}

/* Best effort: DATA_DIR/lock says who holds the directory. */
static void write_pid(const char *data_dir) {
  char path[4200], buf[32];
  snprintf(path, sizeof path, "%s/lock", data_dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return;
  int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (write(fd, buf, (size_t)n) != n) { /* information only */
  }
  close(fd);
}

int cad_store_lock(const char *data_dir, char *err, size_t cap) {
  int rc = cad_io_mkdir_p(NULL, data_dir, 0750);
  if (rc < 0) {
    snprintf(err, cap, "%s: cannot create: %s", data_dir, strerror(-rc));
    return rc;
  }
  int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    snprintf(err, cap, "%s: cannot open: %s", data_dir, strerror(errno));
    return rc;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    write_pid(data_dir);
    return fd;
  }
  rc = -errno;
  if (rc == -EWOULDBLOCK) {
    struct stat st;
    long pid = fstat(fd, &st) == 0 ? holder_from_proc(&st) : 0;
    if (!pid) pid = holder_from_file(data_dir);
    if (pid)
      snprintf(err, cap, "%s is in use by another process (pid %ld): one engine per data_dir",
               data_dir, pid);
    else snprintf(err, cap, "%s is in use by another process: one engine per data_dir", data_dir);
  } else {
    snprintf(err, cap, "%s: cannot lock: %s", data_dir, strerror(-rc));
  }
  close(fd);
  return rc;
}
