/* src_sftp.c - the SFTP source (`listen_sftp:` on a channel).
 *
 * A remote folder is polled every `poll` on a thread of its own
 * (channels/sftp/sftp_bg.h; the loop never waits for the network).  A
 * remote file is taken when it matches `pattern`, is a regular file whose
 * name does not start with '.' nor end in .tmp/.part/.filepart, and has
 * the same size and mtime in two polls in a row (a writer still writing
 * changes one of them).  It is downloaded into the local spool folder under
 * a hidden temporary name, fdatasync'd and renamed into the spool, whose
 * directory source (src_dir.h) then reads it exactly as a dropped file:
 * every message through the channel, the file to the spool's done/ or
 * error/ (with its .reason) once every message is durable, a progress file
 * for restarts.  Once the local copy is durable the remote file is deleted
 * (`after: delete`) or renamed into `move_to` (`after: move`): a ledger
 * entry (<spool>/.caduceus/r-<hash>, the remote path) written before that
 * step makes a crash in between finish the step at the next poll instead of
 * downloading the file again.  What may repeat after a crash: a file whose
 * local copy was renamed in but whose ledger entry was not yet written (one
 * file, in a window of a few milliseconds) is downloaded again and its
 * messages read twice; what the directory source says for its own part.
 * Nothing is lost: the remote file goes only after the local copy is on
 * disk.
 *
 * Connection: kept between polls, opened again after any failure; host key
 * checking is mandatory (sftp_conn.h).  Errors are logged (sftp.poll_failed)
 * and the poll is tried again at the next interval.  Memory: the listing
 * keeps at most 256 names between polls; a download streams through a 64
 * KiB buffer. */
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
#include <dirent.h>

#include "cad_error.h"
#include "cad_io.h"
#include "log.h"
#include "sftp_bg.h"
#include "sftp_conn.h"
#include "src_dir.h"
#include "src_sftp.h"

#define SEEN_MAX 256
#define TAKE_MAX 16 /* files downloaded per poll */

typedef struct seen {
  char name[256];
  uint64_t size, mtime;
} seen_t;

typedef struct ssrc ssrc_t;

typedef struct poll_job {
  cad_bg_job_t job;
  ssrc_t *s;
  bool close_only;
  int rc;
  char err[512];
  unsigned got, moved;
  bool more;
} poll_job_t;

struct ssrc {
  uv_loop_t *loop;
  cad_pipe_chan_t *pc;
  char chan[CAD_CONF_NAME_MAX + 1];
  cad_sftp_source_opts_t o; /* a deep copy */
  char *spool;
  int spoolfd, statefd, lockfd;
  bool locked;
  cad_bg_t *bg;
  cad_sftp_t *conn;   /* the thread's */
  seen_t *seen, *now; /* the last listing and this one (thread) */
  size_t nseen, nnow;
  poll_job_t job;
  bool busy, stopping, bg_stopped, dir_stopped;
  uv_timer_t timer;
  bool timer_closed;
  void *dir; /* the spool's directory source */
  char last_err[512];
  void (*done_cb)(void *);
  void *done_arg;
};

/* ---- the thread --------------------------------------------------------------- */

static uint64_t fnv64(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static bool ignored_name(const char *n) {
  static const char *const suffixes[] = {".tmp", ".part", ".filepart"};
  if (n[0] == '.' || strchr(n, '/')) return true;
  size_t len = strlen(n);
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t k = strlen(suffixes[i]);
    if (len >= k && strcmp(n + len - k, suffixes[i]) == 0) return true;
  }
  return false;
}

static void remote_path(const ssrc_t *s, const char *dir, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", dir, name);
}

/* The step after a durable local copy: delete or move the remote file.
 * A file already gone is fine (the step was done before a crash). */
static int after_step(ssrc_t *s, const char *name, char *err, size_t cap) {
  char from[1024], to[1024];
  remote_path(s, s->o.dir, name, from, sizeof from);
  int rc;
  if (s->o.after == CAD_SFTP_AFTER_MOVE) {
    remote_path(s, s->o.move_to, name, to, sizeof to);
    rc = cad_sftp_rename(s->conn, from, to, err, cap);
  } else {
    rc = cad_sftp_remove(s->conn, from, err, cap);
  }
  return rc == -ENOENT ? 0 : rc;
}

/* Ledger entries of remote files already copied here: finish their step. */
static int finish_ledger(ssrc_t *s, char *err, size_t cap) {
  int fd = dup(s->statefd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return 0;
  }
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) && rc == 0) {
    if (strncmp(e->d_name, "r-", 2) != 0) continue;
    char name[300];
    int lf = openat(s->statefd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = lf >= 0 ? read(lf, name, sizeof name - 1) : -1;
    if (lf >= 0) close(lf);
    if (n <= 0) {
      unlinkat(s->statefd, e->d_name, 0);
      continue;
    }
    name[n] = 0;
    rc = after_step(s, name, err, cap);
    if (rc == 0) unlinkat(s->statefd, e->d_name, 0);
  }
  closedir(d);
  return rc;
}

static bool in_ledger(ssrc_t *s, const char *name) {
  char ln[40];
  snprintf(ln, sizeof ln, "r-%016" PRIx64, fnv64(name));
  struct stat st;
  return fstatat(s->statefd, ln, &st, 0) == 0;
}

static int list_cb(void *ud, const cad_sftp_entry_t *e) {
  ssrc_t *s = ud;
  if (!e->regular || ignored_name(e->name) || strlen(e->name) >= sizeof s->now->name) return 0;
  if (fnmatch(s->o.pattern ? s->o.pattern : "*", e->name, 0) != 0) return 0;
  if (s->nnow >= SEEN_MAX) return 1;
  seen_t *x = &s->now[s->nnow++];
  snprintf(x->name, sizeof x->name, "%s", e->name);
  x->size = e->size;
  x->mtime = e->mtime;
  return 0;
}

/* Copy one remote file into the spool, durably, then record it. */
static int take(ssrc_t *s, const seen_t *x, char *err, size_t cap) {
  char tmp[300], remote[1024], final[300];
  snprintf(tmp, sizeof tmp, ".in.%016" PRIx64 ".part", fnv64(x->name));
  remote_path(s, s->o.dir, x->name, remote, sizeof remote);
  unlinkat(s->spoolfd, tmp, 0);
  int fd = openat(s->spoolfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, cap, "cannot create %s in the spool: %s", tmp, strerror(errno));
    return -errno;
  }
  uint64_t bytes = 0;
  int rc = cad_sftp_download(s->conn, remote, fd, &bytes, err, cap);
  if (rc == 0 && fdatasync(fd) != 0) {
    rc = -errno;
    snprintf(err, cap, "cannot sync the local copy of %.300s: %s", remote, cad_strerror(rc));
  }
  close(fd);
  if (rc == 0 && bytes != x->size) {
    rc = CAD_E_STATE; /* it changed since the listing: the next poll sees it again */
    snprintf(err, cap,
             "%.300s changed while it was copied (%" PRIu64 " bytes listed, %" PRIu64
             " read); taken at a later poll",
             remote, x->size, bytes);
  }
  for (unsigned k = 1; rc == 0; k++) {
    if (k == 1) snprintf(final, sizeof final, "%s", x->name);
    else snprintf(final, sizeof final, "%s~%u", x->name, k);
    rc = cad_io_default()->renameat2(cad_io_default()->ctx, s->spoolfd, tmp, s->spoolfd, final,
                                     CAD_IO_RENAME_NOREPLACE);
    if (rc == -EEXIST && k < 9999) {
      rc = 0;
      continue;
    }
    break;
  }
  if (rc < 0) {
    unlinkat(s->spoolfd, tmp, 0);
    if (!err[0])
      snprintf(err, cap, "cannot copy %.300s into the spool: %s", remote, cad_strerror(rc));
    return rc;
  }
  fsync(s->spoolfd);
  /* The ledger entry, then the remote step. */
  char ln[40];
  snprintf(ln, sizeof ln, "r-%016" PRIx64, fnv64(x->name));
  int lf = openat(s->statefd, ln, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (lf >= 0) {
    cad_io_pwrite_all(cad_io_default(), lf, x->name, strlen(x->name), 0);
    fdatasync(lf);
    close(lf);
    fsync(s->statefd);
  }
  rc = after_step(s, x->name, err, cap);
  if (rc == 0) unlinkat(s->statefd, ln, 0);
  return rc;
}

static void poll_run(cad_bg_job_t *bj) {
  poll_job_t *j = (poll_job_t *)bj;
  ssrc_t *s = j->s;
  if (j->close_only) {
    cad_sftp_close(s->conn);
    s->conn = NULL;
    return;
  }
  j->rc = 0;
  j->err[0] = 0;
  j->got = j->moved = 0;
  j->more = false;
  if (!s->conn) j->rc = cad_sftp_connect(&s->o.conn, &s->conn, j->err, sizeof j->err);
  if (j->rc == 0) j->rc = finish_ledger(s, j->err, sizeof j->err);
  s->nnow = 0;
  if (j->rc == 0) j->rc = cad_sftp_list(s->conn, s->o.dir, list_cb, s, j->err, sizeof j->err);
  for (size_t i = 0; j->rc == 0 && i < s->nnow; i++) {
    const seen_t *x = &s->now[i];
    bool stable = false;
    for (size_t k = 0; k < s->nseen && !stable; k++)
      stable = strcmp(s->seen[k].name, x->name) == 0 && s->seen[k].size == x->size &&
               s->seen[k].mtime == x->mtime;
    if (!stable || in_ledger(s, x->name)) continue;
    if (j->got >= TAKE_MAX) {
      j->more = true;
      continue;
    }
    j->rc = take(s, x, j->err, sizeof j->err);
    if (j->rc == CAD_E_STATE) j->rc = 0; /* changed: later */
    else if (j->rc == 0) j->got++;
  }
  if (j->rc < 0) {
    cad_sftp_close(s->conn);
    s->conn = NULL;
  } else { /* this listing is the next poll's reference */
    seen_t *t = s->seen;
    s->seen = s->now;
    s->nseen = s->nnow;
    s->now = t;
  }
}

/* ---- the loop ----------------------------------------------------------------- */

static void schedule(ssrc_t *s, uint64_t ms);

static void on_timer(uv_timer_t *t) {
  ssrc_t *s = t->data;
  if (s->busy || s->stopping) return;
  if (!s->locked) {
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
      schedule(s, 200); /* the source of the configuration being replaced still polls */
      return;
    }
    s->locked = true;
  }
  s->job.close_only = false;
  if (cad_bg_post(s->bg, &s->job.job) == 0) s->busy = true;
}

static void schedule(ssrc_t *s, uint64_t ms) {
  if (!s->stopping) uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void maybe_done(ssrc_t *s) {
  if (!s->bg_stopped || !s->dir_stopped || !s->timer_closed) return;
  void (*cb)(void *) = s->done_cb;
  void *arg = s->done_arg;
  const cad_sftp_opts_t *c = &s->o.conn;
  free((void *)c->host), free((void *)c->user), free((void *)c->known_hosts);
  free((void *)c->key), free((void *)c->passphrase_env), free((void *)c->password_env);
  free((void *)s->o.dir), free((void *)s->o.pattern), free((void *)s->o.move_to);
  free(s->spool);
  free(s->seen);
  free(s->now);
  if (s->spoolfd >= 0) close(s->spoolfd);
  if (s->statefd >= 0) close(s->statefd);
  if (s->lockfd >= 0) close(s->lockfd);
  free(s);
  if (cb) cb(arg);
}

static void bg_closed(void *arg) {
  ssrc_t *s = arg;
  s->bg_stopped = true;
  maybe_done(s);
}

static void dir_stopped(void *arg) {
  ssrc_t *s = arg;
  s->dir_stopped = true;
  maybe_done(s);
}

static void timer_closed(uv_handle_t *h) {
  ssrc_t *s = h->data;
  s->timer_closed = true;
  maybe_done(s);
}

static void poll_done(cad_bg_job_t *bj) {
  poll_job_t *j = (poll_job_t *)bj;
  ssrc_t *s = j->s;
  s->busy = false;
  if (j->close_only) {
    cad_bg_stop(s->bg, bg_closed, s);
    return;
  }
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = s->chan;
  if (j->rc < 0) {
    c.error = cad_err_name(j->rc);
    /* The same failure again is logged at debug: a server down for hours
     * writes one warning, not one per poll. */
    bool again = strcmp(s->last_err, j->err) == 0;
    snprintf(s->last_err, sizeof s->last_err, "%s", j->err);
    CAD_LOG(again ? CAD_LOG_DEBUG : CAD_LOG_WARN, "sftp.poll_failed", &c, "%s", j->err);
  } else {
    s->last_err[0] = 0;
    if (j->got)
      CAD_LOG(CAD_LOG_INFO, "sftp.copied", &c, "%u file%s copied into the spool from %s", j->got,
              j->got == 1 ? "" : "s", s->o.conn.host);
  }
  if (s->stopping) {
    s->job.close_only = true;
    s->busy = true;
    if (cad_bg_post(s->bg, &s->job.job) < 0) cad_bg_stop(s->bg, bg_closed, s);
    return;
  }
  schedule(s, j->more ? 10 : s->o.poll_ms);
}

static char *dup_or_null(const char *p, bool *fail) {
  if (!p) return NULL;
  char *d = strdup(p);
  if (!d) *fail = true;
  return d;
}

static int copy_opts(cad_sftp_source_opts_t *d, const cad_sftp_source_opts_t *o) {
  bool fail = false;
  *d = *o;
  d->conn.host = dup_or_null(o->conn.host, &fail);
  d->conn.user = dup_or_null(o->conn.user, &fail);
  d->conn.known_hosts = dup_or_null(o->conn.known_hosts, &fail);
  d->conn.key = dup_or_null(o->conn.key, &fail);
  d->conn.passphrase_env = dup_or_null(o->conn.passphrase_env, &fail);
  d->conn.password_env = dup_or_null(o->conn.password_env, &fail);
  d->dir = dup_or_null(o->dir, &fail);
  d->pattern = dup_or_null(o->pattern, &fail);
  d->move_to = dup_or_null(o->move_to, &fail);
  d->spool = NULL;
  return fail ? CAD_E_NOMEM : 0;
}

static bool wanted(const cad_conf_channel_t *cc) { return cc->listen_sftp.enabled; }

static void early_free(ssrc_t *s) {
  s->bg_stopped = s->dir_stopped = s->timer_closed = true;
  s->done_cb = NULL;
  maybe_done(s);
}

static int sftp_start(const cad_source_env_t *env, cad_pipe_chan_t *pc, void **out, char *err,
                      size_t cap) {
  const cad_sftp_source_opts_t *o = &pc->cc->listen_sftp;
  ssrc_t *s = calloc(1, sizeof *s);
  if (!s) return CAD_E_NOMEM;
  s->spoolfd = s->statefd = s->lockfd = -1;
  s->loop = env->loop;
  s->pc = pc;
  snprintf(s->chan, sizeof s->chan, "%s", pc->cc->name);
  int rc = copy_opts(&s->o, o);
  s->seen = calloc(SEEN_MAX, sizeof *s->seen);
  s->now = calloc(SEEN_MAX, sizeof *s->now);
  if (o->spool) {
    s->spool = strdup(o->spool);
  } else {
    size_t n = strlen(env->data_dir ? env->data_dir : ".") + strlen(s->chan) + 8;
    if ((s->spool = malloc(n)))
      snprintf(s->spool, n, "%s/sftp/%s", env->data_dir ? env->data_dir : ".", s->chan);
  }
  if (rc < 0 || !s->seen || !s->now || !s->spool) {
    early_free(s);
    return CAD_E_NOMEM;
  }
  /* The spool's directory source creates the folder and its state. */
  cad_dir_source_opts_t d = {true, s->spool, "*", NULL, NULL, 0, 5000, o->format};
  rc = cad__dir_source_start(env, pc, &d, &s->dir, err, cap);
  if (rc == 0) {
    s->spoolfd = open(s->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    s->statefd = s->spoolfd < 0 ? -1
                                : openat(s->spoolfd, ".caduceus",
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    s->lockfd = s->statefd < 0 ? -1
                               : openat(s->statefd, "sftp.lock",
                                        O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (s->lockfd < 0) {
      rc = -errno;
      snprintf(err, cap, "cannot open the spool %s: %s", s->spool, cad_strerror(rc));
    }
  }
  if (rc == 0) rc = cad_bg_start(s->loop, &s->bg);
  if (rc < 0) {
    if (s->dir) {
      /* Stopped at once: nothing was read yet. */
      s->bg_stopped = s->timer_closed = true;
      s->done_cb = NULL;
      cad__dir_source_stop(s->dir, dir_stopped, s);
    } else {
      early_free(s);
    }
    return rc;
  }
  s->job.s = s;
  s->job.job.run = poll_run;
  s->job.job.done = poll_done;
  uv_timer_init(s->loop, &s->timer);
  s->timer.data = s;
  schedule(s, 0);
  *out = s;
  return 0;
}

static bool same(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int sftp_adopt(void *impl, cad_pipe_chan_t *pc) {
  ssrc_t *s = impl;
  const cad_sftp_source_opts_t *o = &pc->cc->listen_sftp;
  const cad_sftp_opts_t *a = &s->o.conn, *b = &o->conn;
  bool eq = same(a->host, b->host) && a->port == b->port && same(a->user, b->user) &&
            same(a->known_hosts, b->known_hosts) && same(a->key, b->key) &&
            same(a->passphrase_env, b->passphrase_env) && same(a->password_env, b->password_env) &&
            a->timeout_ms == b->timeout_ms && same(s->o.dir, o->dir) &&
            same(s->o.pattern, o->pattern) && s->o.poll_ms == o->poll_ms &&
            s->o.after == o->after && same(s->o.move_to, o->move_to) &&
            (!o->spool || strcmp(o->spool, s->spool) == 0) && s->o.format == o->format;
  if (!eq) return 1;
  s->pc = pc;
  cad__dir_source_set_chan(s->dir, pc);
  return 0;
}

static void sftp_stop(void *impl, void (*done)(void *arg), void *arg) {
  ssrc_t *s = impl;
  s->stopping = true;
  s->done_cb = done;
  s->done_arg = arg;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, timer_closed);
  cad__dir_source_stop(s->dir, dir_stopped, s);
  if (!s->busy) {
    s->job.close_only = true;
    s->busy = true;
    if (cad_bg_post(s->bg, &s->job.job) < 0) cad_bg_stop(s->bg, bg_closed, s);
  }
}

const cad_source_kind_t cad_source_sftp = {"sftp", wanted, sftp_start, sftp_adopt, sftp_stop};
