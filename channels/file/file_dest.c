/* file_dest.c - file destination (file_dest.h). */
#include "file_dest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cad_error.h"

#define MAX_PIECES 16
#define VALUE_MAX 64
#define NAME_MAX_BYTES 200

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
  char tmp[NAME_MAX_BYTES + 32];
} item_t;

struct cad_file_dest {
  uv_loop_t *loop;
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
  uint64_t tmp_seq;
};

/* mkdir -p */
static int make_dirs(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return -EINVAL;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] == '/' || buf[i] == 0) {
      char c = buf[i];
      buf[i] = 0;
      if (mkdir(buf, 0755) < 0 && errno != EEXIST) return -errno;
      buf[i] = c;
    }
  }
  return 0;
}

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
  if (d->dirfd >= 0) close(d->dirfd);
  if (d->appendfd >= 0) close(d->appendfd);
  free(d->dir);
  free(d);
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
  d->dirfd = d->appendfd = -1;
  d->max_batch = o->max_batch ? o->max_batch : 256;
  d->max_queue = o->max_queue ? o->max_queue : 65536;
  int rc;
  if (o->dir) {
    rc = parse_template(d, o->name_tmpl ? o->name_tmpl : "${MSH-10}.hl7", err, errcap);
    if (rc < 0) goto fail;
    rc = make_dirs(o->dir);
    if (rc < 0) {
      snprintf(err, errcap, "cannot create %s: %s", o->dir, strerror(-rc));
      goto fail;
    }
    d->dir = strdup(o->dir);
    d->dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!d->dir) {
      rc = CAD_E_NOMEM;
      goto fail;
    }
    if (d->dirfd < 0) {
      rc = -errno;
      snprintf(err, errcap, "cannot open %s: %s", o->dir, strerror(errno));
      goto fail;
    }
  } else {
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", o->append_path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
      *slash = 0;
      rc = make_dirs(parent);
      if (rc < 0) {
        snprintf(err, errcap, "cannot create %s: %s", parent, strerror(-rc));
        goto fail;
      }
    }
    d->appendfd = open(o->append_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (d->appendfd < 0) {
      rc = -errno;
      snprintf(err, errcap, "cannot open %s: %s", o->append_path, strerror(errno));
      goto fail;
    }
    /* A new file: make its directory entry durable too. */
    int pfd =
        open(slash ? (slash == parent ? "/" : parent) : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd >= 0) {
      fsync(pfd);
      close(pfd);
    }
  }
  *out = d;
  return 0;
fail:
  dest_free(d);
  return rc;
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

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

#define IOV_BATCH 512 /* even; below IOV_MAX (1024 on Linux) */

static int writev_all(int fd, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t w = writev(fd, iov, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

/* One batch of per-message files: write every temp file, make them all
 * durable with one sync (fdatasync for a single file; for several, one
 * syncfs() of the filesystem, which flushes them all with one journal
 * commit instead of one per file), rename each into place, then fsync the
 * directory once so the new names are durable too. */
static void work_dir(cad_file_dest_t *d) {
  /* A directory removed under us (st_nlink 0) is created and opened again,
   * so the delivery worker's retries succeed once the path is usable. */
  struct stat st;
  if (fstat(d->dirfd, &st) == 0 && st.st_nlink == 0 && make_dirs(d->dir) == 0) {
    int fd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      close(d->dirfd);
      d->dirfd = fd;
    }
  }
  int nok = 0;
  bool synced_one = false; /* a batch of one: fdatasync'd already */
  for (item_t *it = d->batch; it; it = it->next) {
    int fd = openat(d->dirfd, it->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      it->status = -errno;
      continue;
    }
    int rc = write_all(fd, it->bytes, it->len);
    if (rc == 0 && d->nbatch == 1) {
      if (fdatasync(fd) < 0) rc = -errno;
      synced_one = true;
    }
    if (close(fd) < 0 && rc == 0) rc = -errno;
    if (rc < 0) unlinkat(d->dirfd, it->tmp, 0);
    it->status = rc;
    if (rc == 0) nok++;
  }
  if (nok && !synced_one && syncfs(d->dirfd) < 0) {
    int e = -errno;
    for (item_t *it = d->batch; it; it = it->next)
      if (it->status == 0) {
        it->status = e;
        unlinkat(d->dirfd, it->tmp, 0);
      }
    return;
  }
  bool any = false;
  for (item_t *it = d->batch; it; it = it->next) {
    if (it->status < 0) continue;
    if (renameat(d->dirfd, it->tmp, d->dirfd, it->name) < 0) {
      it->status = -errno;
      unlinkat(d->dirfd, it->tmp, 0);
    } else {
      any = true;
    }
  }
  if (any && fsync(d->dirfd) < 0) {
    int e = -errno;
    for (item_t *it = d->batch; it; it = it->next)
      if (it->status == 0) it->status = e;
  }
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
      rc = writev_all(d->appendfd, iov, n);
      n = 0;
    }
  }
  if (rc == 0 && fdatasync(d->appendfd) < 0) rc = -errno;
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
  if (d->dirfd >= 0) {
    cad_file_dest_name(d, m, it->name, sizeof it->name);
    snprintf(it->tmp, sizeof it->tmp, ".tmp.%llu.%d", (unsigned long long)++d->tmp_seq,
             (int)getpid());
  } else {
    it->name[0] = it->tmp[0] = 0;
  }
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
