/* cad_io.h - the one I/O seam for durable writes, and the small file helpers.
 *
 * Every file operation of the journal, the queue, dead letters and the file
 * destination goes through a cad_io_t (SQLite's VFS is the model).  The
 * process uses cad_io_default(), which calls the system; tests plug in their
 * own table: one that fails the Nth write, sync or rename (EIO, ENOSPC,
 * EDQUOT, short write), or one that records what was synced and simulates a
 * power cut by throwing away every unsynced byte.
 *
 * Contract of every function in the table: it behaves as the system call of
 * the same name, except that it returns a negative errno (-EIO, ...) on
 * failure instead of setting errno; read/write calls return the byte count
 * (which may be short) or a negative errno.  `ctx` is the table's own state.
 *
 * Memory: a table is owned by whoever built it and must outlive every user;
 * cad_io_default() is static and never freed.  The helpers below allocate
 * nothing that outlives the call.
 *
 * This lives in parsers/base/ because it is the lowest layer every other
 * library links (parsers <- routes <- channels <- engine), and both
 * channels/file/ and engine/store/ write durably.
 */
#ifndef CAD_IO_H
#define CAD_IO_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct cad_io cad_io_t;
struct cad_io {
  void *ctx;
  int (*openat)(void *ctx, int dirfd, const char *path, int flags, mode_t mode); /* fd or -errno */
  int (*close)(void *ctx, int fd);
  ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, off_t off);
  ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, off_t off);
  ssize_t (*pwritev)(void *ctx, int fd, const struct iovec *iov, int cnt, off_t off);
  ssize_t (*write)(void *ctx, int fd, const void *buf, size_t n); /* at the file offset */
  ssize_t (*writev)(void *ctx, int fd, const struct iovec *iov, int cnt);
  int (*fsync)(void *ctx, int fd);
  int (*fdatasync)(void *ctx, int fd);
  int (*ftruncate)(void *ctx, int fd, off_t len);
  int (*renameat)(void *ctx, int olddir, const char *oldp, int newdir, const char *newp);
  int (*unlinkat)(void *ctx, int dirfd, const char *path, int flags);
  int (*mkdirat)(void *ctx, int dirfd, const char *path, mode_t mode);
  /* renameat2(2): flags CAD_IO_RENAME_NOREPLACE fails with -EEXIST instead
   * of replacing newp; a filesystem without it gives -EINVAL (the default
   * table then falls back to link + unlink, which is also no-replace). */
  int (*renameat2)(void *ctx, int olddir, const char *oldp, int newdir, const char *newp,
                   unsigned flags);
  int (*syncfs)(void *ctx, int fd); /* the whole filesystem that holds fd */
  int (*fstat)(void *ctx, int fd, struct stat *st); /* for a file's size */
};

#define CAD_IO_RENAME_NOREPLACE 1u

/* The system's table.  Never NULL. */
const cad_io_t *cad_io_default(void);

/* `io` if not NULL, else cad_io_default(). */
static inline const cad_io_t *cad_io_or_default(const cad_io_t *io) {
  return io ? io : cad_io_default();
}

/* Write all of buf at off, retrying short writes and EINTR: 0 or -errno
 * (-EIO when a write makes no progress). */
int cad_io_pwrite_all(const cad_io_t *io, int fd, const void *buf, size_t n, off_t off);

/* Write all iov at the file offset, retrying short writes: 0 or -errno. */
int cad_io_writev_all(const cad_io_t *io, int fd, struct iovec *iov, int cnt);

/* fsync the directory `dirfd`, or the directory that holds `path` when
 * dirfd < 0 (path "x" means "."): 0 or -errno. */
int cad_io_fsync_dir(const cad_io_t *io, int dirfd, const char *path);

/* mkdir -p with `mode` for every directory it creates (existing ones are
 * left as they are): 0 or -errno.  Refuses an empty path or one longer
 * than PATH_MAX with CAD_E_INVAL. */
int cad_io_mkdir_p(const cad_io_t *io, const char *path, mode_t mode);

/* Configuration files (the YAML, its includes, lookup tables, TLS files,
 * route test messages) must be regular files: a FIFO or a device would block
 * the reader forever.  Both open with O_NONBLOCK and check fstat S_ISREG.
 * cad_io_check_regular: 0 when `path` opens for reading and is a regular
 * file.  cad_io_read_regular: 0 and *data (malloc'd, NUL-terminated, the
 * caller frees it) of *len bytes; CAD_E_TOOBIG past `max` bytes.  On failure
 * both return -errno, CAD_E_INVAL (not a regular file), CAD_E_TOOBIG,
 * CAD_E_IO or CAD_E_NOMEM, and set *why to a static reason for a message
 * ("a FIFO, not a regular file", strerror(errno), ...). */
int cad_io_check_regular(const char *path, const char **why);
int cad_io_read_regular(const char *path, size_t max, char **data, size_t *len, const char **why);

/* Milliseconds since the epoch (CLOCK_REALTIME) and of a monotonic clock. */
uint64_t cad_now_ms(void);
uint64_t cad_mono_ms(void);

#endif
