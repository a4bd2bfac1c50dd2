/* dest_sftp.c - the `sftp` destination kind: one file per message written
 * to a remote folder (channels/sftp/sftp_conn.h, on a thread of its own).
 *
 * Each message is written under a temporary name (".<name>.<random>.part"),
 * synced on the server when it offers fsync@openssh.com, then renamed to
 * its name (the file destination's template; a taken name gets "~2"...).
 * The delivery succeeds only after the rename; a failure (connection,
 * permissions, host key) is a retry with the reason, and the connection is
 * opened again for the next attempt.  The connection is kept between
 * messages.  Delivery is at-least-once: a crash after the rename and before
 * the engine records it writes the message again (as "name~2").  One
 * message at a time; memory: the message (borrowed from the worker) and
 * libssh's buffers.
 *
 * With `batch:`, messages go into HL7 batch files made in the local
 * `stage_dir` (channels/file/file_batch.h: a message is delivered once it is
 * staged and synced there); every batch file published there is uploaded
 * the same way (temporary name, sync, rename) and then removed locally,
 * checked after each message and every second.  A crash after the remote
 * rename and before the local removal uploads that batch again (as
 * "name~2"): at-least-once, never lost. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "dest_kinds_int.h"
#include "file_dest.h"
#include "hl7.h"
#include "log.h"
#include "sftp_bg.h"
#include "sftp_conn.h"

typedef struct sftp_kind sftp_kind_t;

typedef struct put_job {
  cad_bg_job_t job;
  sftp_kind_t *k;
  const char *p;
  size_t len, off;
  char name[256];
  char final[512];
  char err[512];
  int rc;
  bool close_only; /* the last job: close the connection on the thread */
  cad_deliver_done_cb done;
  void *ctx;
} put_job_t;

typedef struct up_job {
  cad_bg_job_t job;
  sftp_kind_t *k;
  int rc, fd;
  unsigned sent;
  char err[512];
} up_job_t;

struct sftp_kind {
  const cad_conf_dest_t *cd;
  cad_file_batch_t *batch; /* with `batch:` */
  uv_timer_t tick;         /* with `batch:`: look for batch files to upload */
  up_job_t up;
  bool uploading, again;
  int parts; /* timer and thread still to close before the state is freed */
  cad_file_dest_t *namer;
  cad_arena_t arena;
  cad_bg_t *bg;
  cad_sftp_t *conn; /* the thread's */
  put_job_t job;
  bool busy, closing;
};

static long read_msg(void *ud, char *buf, size_t cap) {
  put_job_t *j = ud;
  size_t n = j->len - j->off < cap ? j->len - j->off : cap;
  memcpy(buf, j->p + j->off, n);
  j->off += n;
  return (long)n;
}

static void put_run(cad_bg_job_t *bj) {
  put_job_t *j = (put_job_t *)bj;
  sftp_kind_t *k = j->k;
  if (j->close_only) {
    cad_sftp_close(k->conn);
    k->conn = NULL;
    return;
  }
  j->rc = 0;
  if (!k->conn) j->rc = cad_sftp_connect(&k->cd->sftp.conn, &k->conn, j->err, sizeof j->err);
  if (j->rc == 0) {
    j->off = 0;
    j->rc = cad_sftp_put(k->conn, k->cd->sftp.dir, j->name, k->cd->sftp.mode, read_msg, j, j->final,
                         sizeof j->final, j->err, sizeof j->err);
    if (j->rc < 0) { /* start again from a fresh connection */
      cad_sftp_close(k->conn);
      k->conn = NULL;
    }
  }
}

static long read_fd(void *ud, char *buf, size_t cap) {
  up_job_t *u = ud;
  ssize_t n;
  do n = read(u->fd, buf, cap);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : (long)n;
}

/* Upload every batch file published in the stage folder, oldest name
 * first, removing each once it is renamed in on the server. */
static void up_run(cad_bg_job_t *bj) {
  up_job_t *u = (up_job_t *)bj;
  sftp_kind_t *k = u->k;
  const cad_sftp_dest_opts_t *o = &k->cd->sftp;
  u->rc = 0;
  u->sent = 0;
  u->err[0] = 0;
  DIR *d = opendir(o->stage_dir);
  if (!d) return;
  struct dirent *e;
  while (u->rc == 0 && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int dfd = dirfd(d);
    u->fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (u->fd < 0) continue;
    if (fstat(u->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(u->fd);
      continue;
    }
    if (!k->conn) u->rc = cad_sftp_connect(&o->conn, &k->conn, u->err, sizeof u->err);
    char final[512];
    if (u->rc == 0)
      u->rc = cad_sftp_put(k->conn, o->dir, e->d_name, o->mode, read_fd, u, final, sizeof final,
                           u->err, sizeof u->err);
    close(u->fd);
    if (u->rc == 0) {
      unlinkat(dfd, e->d_name, 0);
      u->sent++;
    } else {
      cad_sftp_close(k->conn);
      k->conn = NULL;
    }
  }
  closedir(d);
}

static void free_kind(sftp_kind_t *k) {
  if (--k->parts > 0) return;
  cad_file_dest_close(k->namer);
  cad_arena_free(&k->arena);
  free(k);
}

static void bg_closed(void *arg) { free_kind(arg); }

static void tick_closed(uv_handle_t *h) { free_kind(h->data); }

static void up_done(cad_bg_job_t *bj) {
  up_job_t *u = (up_job_t *)bj;
  sftp_kind_t *k = u->k;
  k->uploading = false;
  if (u->rc < 0) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.error = cad_err_name(u->rc);
    CAD_LOG(CAD_LOG_WARN, "sftp.put_failed", &c, "destination %s: batch upload: %s", k->cd->name,
            u->err);
  } else if (u->sent) {
    CAD_LOG(CAD_LOG_INFO, "sftp.batch_sent", NULL, "destination %s: %u batch file%s uploaded",
            k->cd->name, u->sent, u->sent == 1 ? "" : "s");
  }
}

static void kick_upload(sftp_kind_t *k) {
  if (k->uploading || k->closing || !k->batch) return;
  if (cad_bg_post(k->bg, &k->up.job) == 0) k->uploading = true;
}

static void on_tick(uv_timer_t *t) { kick_upload(t->data); }

static void shut(sftp_kind_t *k) {
  k->job.close_only = true;
  k->busy = true;
  if (cad_bg_post(k->bg, &k->job.job) < 0) cad_bg_stop(k->bg, bg_closed, k);
}

static void staged(int status, void *arg) {
  sftp_kind_t *k = arg;
  put_job_t *j = &k->job;
  k->busy = false;
  j->done(j->ctx, status == 0 ? CAD_DELIVER_OK : CAD_DELIVER_RETRY,
          status == 0 ? NULL : cad_err_name(status));
  if (k->closing) shut(k);
  else kick_upload(k);
}

static void put_done(cad_bg_job_t *bj) {
  put_job_t *j = (put_job_t *)bj;
  sftp_kind_t *k = j->k;
  k->busy = false;
  if (j->close_only) {
    cad_bg_stop(k->bg, bg_closed, k);
    return;
  }
  if (j->rc < 0) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.error = cad_err_name(j->rc);
    CAD_LOG(CAD_LOG_WARN, "sftp.put_failed", &c, "destination %s: %s", k->cd->name, j->err);
  }
  j->done(j->ctx, j->rc == 0 ? CAD_DELIVER_OK : CAD_DELIVER_RETRY, j->rc == 0 ? NULL : j->err);
  if (k->closing) shut(k);
}

static int sftp_open(uv_loop_t *loop, const cad_conf_dest_t *cd, void **impl, char *err,
                     size_t cap) {
  sftp_kind_t *k = calloc(1, sizeof *k);
  if (!k) return CAD_E_NOMEM;
  k->cd = cd;
  cad_arena_init(&k->arena, 16384, 0);
  int rc = cad_file_dest_namer(cd->sftp.name_tmpl, &k->namer, err, cap);
  if (rc == 0 && cd->sftp.batch.enabled)
    rc = cad_file_batch_open(loop, cd->sftp.stage_dir, &cd->sftp.batch, 0600, 0700, &k->batch, err,
                             cap);
  if (rc == 0) rc = cad_bg_start(loop, &k->bg);
  if (rc < 0) {
    if (!err[0]) snprintf(err, cap, "cannot start its thread: %s", cad_strerror(rc));
    if (k->batch) cad_file_batch_close(k->batch);
    cad_file_dest_close(k->namer);
    cad_arena_free(&k->arena);
    free(k);
    return rc;
  }
  k->job.k = k;
  k->job.job.run = put_run;
  k->job.job.done = put_done;
  k->parts = 1;
  if (k->batch) {
    k->up = (up_job_t){{NULL, up_run, up_done}, k, 0, -1, 0, ""};
    uv_timer_init(loop, &k->tick);
    k->tick.data = k;
    uv_timer_start(&k->tick, on_tick, 0, 1000);
    k->parts = 2;
  }
  *impl = k;
  return 0;
}

static int sftp_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  sftp_kind_t *k = impl;
  if (k->busy || k->closing) return CAD_E_STATE;
  if (k->batch) {
    k->job.done = done;
    k->job.ctx = ctx;
    int rc = cad_file_batch_write(k->batch, p, len, staged, k);
    if (rc == 0) k->busy = true;
    return rc;
  }
  cad_hl7_msg_t m;
  memset(&m, 0, sizeof m);
  cad_arena_reset(&k->arena);
  size_t n = cad_file_dest_name_input(k->namer, p, len);
  if (cad_hl7_parse(&m, p, n, &k->arena, NULL, NULL) != 0) memset(&m, 0, sizeof m);
  put_job_t *j = &k->job;
  cad_file_dest_name(k->namer, &m, j->name, sizeof j->name);
  j->p = p;
  j->len = len;
  j->done = done;
  j->ctx = ctx;
  j->err[0] = 0;
  j->close_only = false;
  int rc = cad_bg_post(k->bg, &j->job);
  if (rc == 0) k->busy = true;
  return rc;
}

static void sftp_close(void *impl) {
  sftp_kind_t *k = impl;
  if (!k) return;
  k->closing = true;
  if (k->batch) {
    uv_timer_stop(&k->tick);
    uv_close((uv_handle_t *)&k->tick, tick_closed);
    cad_file_batch_close(k->batch); /* staged messages stay for the next start */
  }
  if (!k->busy) shut(k);
}

const cad_dest_kind_t cad_dest_kind_sftp = {CAD_DEST_SFTP, "sftp", sftp_open,
                                            sftp_deliver,  1,      sftp_close};
