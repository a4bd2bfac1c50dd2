/* queue.c - group commit thread and per-destination reading over the journal. */
#include "queue.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cad_error.h"
#include "cad_io.h"

enum { REQ_APPEND = 1, REQ_MARK = 2, REQ_EXEC = 3 };

typedef struct req {
  struct req *next;
  int kind;
  int status;
  size_t n;
  cad_jrec_t *recs; /* n records; payloads point into mem */
  char *mem;        /* owned copy of the payloads */
  size_t bytes;     /* for the pending-bytes bound */
  /* MARK DEAD: what goes to the dead-letter journal first */
  char *dlq_payload;
  size_t dlq_len;
  uint64_t dlq_no; /* its number in the dead-letter journal, once written */
  cad_queue_append_cb cb;
  void *ud;
  cad_queue_exec_fn exec; /* REQ_EXEC: run on the commit thread (cad_queue_exec) */
  void *exec_ud;
  int notify;      /* REQ_EXEC: a destination to report to the commit hook, -1 = none */
  uint64_t seqs[]; /* n entries */
} req_t;

typedef struct snap {
  uint64_t last_seq, done_seq, delivered, dead;
  uint64_t pending;     /* MSG records appended but not yet committed (loop view) */
  uint64_t max_backlog; /* 0 = the queue's default */
} snap_t;

struct cad_queue {
  uv_loop_t *loop;
  cad_queue_opts_t o;
  char *data_dir;
  char *jdir, *dlqdir;
  cad_journal_t j;   /* guarded by jmu */
  cad_journal_t dlq; /* commit thread only (and jmu) */
  uv_mutex_t jmu;
  uv_mutex_t mu; /* guards everything below */
  uv_cond_t cond;
  req_t *pending, *pending_tail;
  req_t *done, *done_tail;
  bool stopping;
  uint64_t pending_bytes;
  snap_t snap[CAD_JOURNAL_MAX_DESTS];
  cad_jdest_t info[CAD_JOURNAL_MAX_DESTS]; /* loop-thread copies (name borrowed) */
  cad_jpos_t end;                          /* committed end */
  cad_queue_stats_t stats;
  uint64_t journal_bytes;
  bool lazy_unsynced; /* commit thread only: a DONE-only batch awaits a sync */
  uint64_t last_retain_ms;
  uv_thread_t thread;
  bool thread_started;
  uv_async_t async;
  void (*hook)(void *ud, uint16_t dest);
  void *hook_ud;
  void (*close_done)(void *);
  void *close_arg;
  int read_execs;    /* cad_queue_read_exec works not finished (loop thread) */
  bool async_closed; /* cad_queue_close is done but for those */
};

static void snapshot_locked(cad_queue_t *q) {
  for (uint16_t d = 0; d < q->j.ndests; d++) {
    q->snap[d].last_seq = q->j.dests[d].last_seq;
    q->snap[d].done_seq = q->j.dests[d].done_seq;
    q->snap[d].delivered = q->j.dests[d].delivered;
    q->snap[d].dead = q->j.dests[d].dead;
  }
  q->end = cad_journal_end(&q->j);
  q->journal_bytes = cad_journal_bytes(&q->j);
}

static void free_req(req_t *r) {
  free(r->recs);
  free(r->mem);
  free(r->dlq_payload);
  free(r);
}

/* ---- the commit thread -------------------------------------------------- */

static void write_dead_letters(cad_queue_t *q, req_t *batch) {
  for (req_t *r = batch; r; r = r->next) {
    if (r->kind != REQ_MARK || r->recs[0].type != CAD_JREC_DEAD) continue;
    const char *name = q->j.dests[r->recs[0].dest].name;
    int id = cad_journal_dest(&q->dlq, name ? name : "unknown", true);
    if (id < 0) {
      r->status = id;
      continue;
    }
    /* A dead letter's number is its message's queue sequence (the `seq` of
     * the log lines); one without (a route's dead letter) gets a number
     * above every one used on either side for that name. */
    uint64_t no = r->recs[0].seq, top = q->j.dests[r->recs[0].dest].last_seq;
    if (!no) no = (q->dlq.dests[id].last_seq > top ? q->dlq.dests[id].last_seq : top) + 1;
    cad_jrec_t rec = {CAD_JREC_MSG, (uint16_t)id, no, r->dlq_payload, r->dlq_len};
    int rc = cad_journal_write(&q->dlq, &rec, 1, cad_now_ms());
    if (rc) r->status = rc;
    else r->dlq_no = rec.seq;
  }
}

/* Operator actions (cad_queue_exec), before the batch's own records. */
static void run_execs(cad_queue_t *q, req_t *batch) {
  for (req_t *r = batch; r; r = r->next) {
    if (r->kind != REQ_EXEC) continue;
    cad_queue_journals_t js = {&q->j, &q->dlq, q->jdir, q->dlqdir, -1};
    int rc = r->exec(r->exec_ud, &js);
    r->status = rc < 0 ? rc : 0;
    r->notify = js.notify;
  }
}

static void commit_batch(cad_queue_t *q, req_t *batch) {
  size_t total = 0;
  for (req_t *r = batch; r; r = r->next) total += r->n;
  uv_mutex_lock(&q->jmu);
  run_execs(q, batch);
  write_dead_letters(q, batch);
  cad_jrec_t *all = malloc((total ? total : 1) * sizeof *all);
  int rc = all ? 0 : CAD_E_NOMEM;
  size_t k = 0;
  if (all) {
    for (req_t *r = batch; r; r = r->next) {
      if (r->status) continue;
      for (size_t i = 0; i < r->n; i++) all[k++] = r->recs[i];
    }
    /* DONE marks alone are written without a sync of their own: losing one
     * in a crash only means its messages are delivered again.  The next
     * batch with appends (or the idle timer below) makes them durable. */
    bool lazy = true;
    for (req_t *r = batch; r && lazy; r = r->next)
      lazy = r->status == 0 && r->kind == REQ_MARK && r->recs[0].type == CAD_JREC_DONE;
    if (k)
      rc = lazy ? cad_journal_write_lazy(&q->j, all, k, cad_now_ms())
                : cad_journal_write(&q->j, all, k, cad_now_ms());
    if (k && rc == 0) q->lazy_unsynced = lazy;
  }
  size_t idx = 0;
  size_t appends = 0;
  for (req_t *r = batch; r; r = r->next) {
    if (r->status || r->kind == REQ_EXEC) continue;
    if (rc) {
      r->status = rc;
      continue;
    }
    for (size_t i = 0; i < r->n; i++) r->seqs[i] = all[idx++].seq;
    if (r->kind == REQ_MARK && r->recs[0].type == CAD_JREC_DEAD) r->seqs[0] = r->dlq_no;
    if (r->kind == REQ_APPEND) appends++;
  }
  free(all);
  uint64_t t = cad_now_ms();
  bool retain = rc == 0 && t - q->last_retain_ms >= q->o.retain_every_ms;
  if (retain) {
    q->last_retain_ms = t;
    cad_journal_retain(&q->j, q->o.retain_age_ms, q->o.retain_bytes, t, cad_journal_end(&q->j));
  }
  uv_mutex_lock(&q->mu);
  snapshot_locked(q);
  if (rc) {
    q->stats.failed_batches++;
  } else if (k) {
    q->stats.batches++;
    q->stats.records += k;
    q->stats.appends += appends;
    if (appends > q->stats.max_batch_appends) q->stats.max_batch_appends = appends;
  }
  uv_mutex_unlock(&q->mu);
  uv_mutex_unlock(&q->jmu);
}

static void commit_thread(void *arg) {
  cad_queue_t *q = arg;
  for (;;) {
    uv_mutex_lock(&q->mu);
    while (!q->pending && !q->stopping) {
      if (!q->lazy_unsynced) {
        uv_cond_wait(&q->cond, &q->mu);
        continue;
      }
      /* Lazy DONE marks wait at most 20 ms for a batch to sync with. */
      if (uv_cond_timedwait(&q->cond, &q->mu, 20 * 1000000ull) != 0 && !q->pending) {
        uv_mutex_unlock(&q->mu);
        uv_mutex_lock(&q->jmu);
        if (cad_journal_sync(&q->j) == 0) q->lazy_unsynced = false;
        uv_mutex_unlock(&q->jmu);
        uv_mutex_lock(&q->mu);
      }
    }
    req_t *batch = q->pending;
    q->pending = q->pending_tail = NULL;
    bool stop = q->stopping && !batch;
    uv_mutex_unlock(&q->mu);
    if (stop) break;
    commit_batch(q, batch);
    uv_mutex_lock(&q->mu);
    for (req_t *r = batch; r;) {
      req_t *next = r->next;
      q->pending_bytes -= r->bytes;
      r->next = NULL;
      if (q->done_tail) q->done_tail->next = r;
      else q->done = r;
      q->done_tail = r;
      r = next;
    }
    uv_mutex_unlock(&q->mu);
    uv_async_send(&q->async);
  }
}

/* ---- the loop side ------------------------------------------------------- */

static void deliver_done(cad_queue_t *q) {
  uv_mutex_lock(&q->mu);
  req_t *list = q->done;
  q->done = q->done_tail = NULL;
  snap_t view[CAD_JOURNAL_MAX_DESTS];
  uint16_t nd = q->j.ndests;
  memcpy(view, q->snap, nd * sizeof view[0]);
  uv_mutex_unlock(&q->mu);
  for (uint16_t d = 0; d < nd; d++) {
    q->info[d].last_seq = view[d].last_seq;
    q->info[d].done_seq = view[d].done_seq;
    q->info[d].delivered = view[d].delivered;
    q->info[d].dead = view[d].dead;
  }
  bool touched[CAD_JOURNAL_MAX_DESTS];
  memset(touched, 0, sizeof touched);
  while (list) {
    req_t *r = list;
    list = r->next;
    for (size_t i = 0; i < r->n; i++) {
      if (r->recs[i].type == CAD_JREC_MSG) {
        if (q->snap[r->recs[i].dest].pending) q->snap[r->recs[i].dest].pending--;
        if (r->status == 0) touched[r->recs[i].dest] = true;
      }
    }
    if (r->kind == REQ_EXEC && r->notify >= 0 && r->notify < CAD_JOURNAL_MAX_DESTS)
      touched[r->notify] = true;
    if (r->cb) r->cb(r->ud, r->status, r->status || !r->n ? NULL : r->seqs, r->n);
    free_req(r);
  }
  if (q->hook)
    for (uint16_t d = 0; d < nd; d++)
      if (touched[d]) q->hook(q->hook_ud, d);
}

static void on_async(uv_async_t *h) { deliver_done(h->data); }

static char *path_join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *p = malloc(la + lb + 2);
  if (!p) return NULL;
  memcpy(p, a, la);
  p[la] = '/';
  memcpy(p + la + 1, b, lb + 1);
  return p;
}

int cad_queue_open(uv_loop_t *loop, const cad_queue_opts_t *o, cad_queue_t **out, char *report,
                   size_t report_cap) {
  *out = NULL;
  if (report_cap) report[0] = 0;
  cad_queue_t *q = calloc(1, sizeof *q);
  if (!q) return CAD_E_NOMEM;
  q->loop = loop;
  q->o = *o;
  if (!q->o.retain_age_ms) q->o.retain_age_ms = 7ull * 24 * 3600 * 1000;
  if (!q->o.max_pending_bytes) q->o.max_pending_bytes = 64u << 20;
  if (!q->o.retain_every_ms) q->o.retain_every_ms = 5000;
  q->o.io = cad_io_or_default(o->io);
  q->data_dir = strdup(o->data_dir);
  q->jdir = path_join(o->data_dir, "journal");
  q->dlqdir = path_join(o->data_dir, "deadletter");
  int rc = (q->data_dir && q->jdir && q->dlqdir) ? 0 : CAD_E_NOMEM;
  if (!rc) rc = cad_io_mkdir_p(q->o.io, o->data_dir, 0750);
  /* data_dir's own name must be durable before anything in it counts. */
  if (!rc) rc = cad_io_fsync_dir(q->o.io, -1, o->data_dir);
  cad_journal_opts_t jo = {o->segment_bytes, false, q->o.io};
  if (!rc) rc = cad_journal_open_opts(&q->j, q->jdir, &jo);
  if (rc) goto fail_nojournal;
  jo.segment_bytes = 0;
  rc = cad_journal_open_opts(&q->dlq, q->dlqdir, &jo);
  if (rc) {
    cad_journal_close(&q->j);
    goto fail_nojournal;
  }
  if (report_cap)
    snprintf(report, report_cap, "%s%s", q->j.report, q->dlq.report[0] ? q->dlq.report : "");
  uv_mutex_init(&q->mu);
  uv_mutex_init(&q->jmu);
  uv_cond_init(&q->cond);
  snapshot_locked(q);
  for (uint16_t d = 0; d < q->j.ndests; d++) {
    q->info[d] = q->j.dests[d];
  }
  q->last_retain_ms = cad_now_ms();
  rc = uv_async_init(loop, &q->async, on_async);
  if (rc) goto fail;
  q->async.data = q;
  rc = uv_thread_create(&q->thread, commit_thread, q);
  if (rc) {
    uv_close((uv_handle_t *)&q->async, NULL);
    goto fail;
  }
  q->thread_started = true;
  *out = q;
  return 0;
fail:
  uv_mutex_destroy(&q->mu);
  uv_mutex_destroy(&q->jmu);
  uv_cond_destroy(&q->cond);
  cad_journal_close(&q->j);
  cad_journal_close(&q->dlq);
fail_nojournal:
  free(q->data_dir);
  free(q->jdir);
  free(q->dlqdir);
  free(q);
  return rc;
}

static void queue_free(cad_queue_t *q);

static void on_async_closed(uv_handle_t *h) {
  cad_queue_t *q = h->data;
  q->async_closed = true;
  if (q->read_execs == 0) queue_free(q); /* else the last read_exec_after does */
}

static void queue_free(cad_queue_t *q) {
  void (*done)(void *) = q->close_done;
  void *arg = q->close_arg;
  cad_journal_close(&q->j);
  cad_journal_close(&q->dlq);
  uv_mutex_destroy(&q->mu);
  uv_mutex_destroy(&q->jmu);
  uv_cond_destroy(&q->cond);
  free(q->data_dir);
  free(q->jdir);
  free(q->dlqdir);
  free(q);
  if (done) done(arg);
}

void cad_queue_close(cad_queue_t *q, void (*done)(void *arg), void *arg) {
  uv_mutex_lock(&q->mu);
  q->stopping = true;
  uv_cond_signal(&q->cond);
  uv_mutex_unlock(&q->mu);
  if (q->thread_started) uv_thread_join(&q->thread);
  q->thread_started = false;
  deliver_done(q); /* callbacks of the last batches */
  q->close_done = done;
  q->close_arg = arg;
  uv_close((uv_handle_t *)&q->async, on_async_closed);
}

int cad_queue_dest(cad_queue_t *q, const char *name) {
  uv_mutex_lock(&q->jmu);
  int id = cad_journal_dest(&q->j, name, true);
  if (id >= 0) {
    int did = cad_journal_dest(&q->dlq, name, true);
    if (did < 0) id = did;
  }
  if (id >= 0) {
    uv_mutex_lock(&q->mu);
    snapshot_locked(q);
    q->info[id] = q->j.dests[id];
    uv_mutex_unlock(&q->mu);
  }
  uv_mutex_unlock(&q->jmu);
  return id;
}

void cad_queue_set_backlog(cad_queue_t *q, uint16_t dest, uint64_t max) {
  if (dest >= CAD_JOURNAL_MAX_DESTS) return;
  uv_mutex_lock(&q->mu);
  q->snap[dest].max_backlog = max;
  uv_mutex_unlock(&q->mu);
}

static void enqueue(cad_queue_t *q, req_t *r) {
  uv_mutex_lock(&q->mu);
  q->pending_bytes += r->bytes;
  if (q->pending_tail) q->pending_tail->next = r;
  else q->pending = r;
  q->pending_tail = r;
  uv_cond_signal(&q->cond);
  uv_mutex_unlock(&q->mu);
}

int cad_queue_append(cad_queue_t *q, const cad_queue_item_t *items, size_t n,
                     cad_queue_append_cb cb, void *ud) {
  if (q->stopping) return CAD_E_STATE;
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if (items[i].dest >= q->j.ndests) return CAD_E_INVAL;
    bytes += items[i].len;
  }
  uv_mutex_lock(&q->mu);
  bool full = q->pending_bytes + bytes > q->o.max_pending_bytes;
  for (size_t i = 0; i < n && !full; i++) {
    const snap_t *s = &q->snap[items[i].dest];
    uint64_t max = s->max_backlog ? s->max_backlog : q->o.max_backlog;
    full = max && s->last_seq + s->pending - s->done_seq >= max;
  }
  if (full) q->stats.refused_full++;
  uv_mutex_unlock(&q->mu);
  if (full) return CAD_E_FULL;
  req_t *r = calloc(1, sizeof *r + n * sizeof(uint64_t));
  if (!r) return CAD_E_NOMEM;
  r->recs = calloc(n ? n : 1, sizeof *r->recs);
  r->mem = malloc(bytes ? bytes : 1);
  if (!r->recs || !r->mem) {
    free_req(r);
    return CAD_E_NOMEM;
  }
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(r->mem + off, items[i].p, items[i].len);
    r->recs[i] = (cad_jrec_t){CAD_JREC_MSG, items[i].dest, 0, r->mem + off, items[i].len};
    off += items[i].len;
    q->snap[items[i].dest].pending++;
  }
  r->kind = REQ_APPEND;
  r->n = n;
  r->bytes = bytes;
  r->cb = cb;
  r->ud = ud;
  enqueue(q, r);
  return 0;
}

int cad_queue_mark(cad_queue_t *q, uint16_t dest, uint8_t type, uint64_t seq, const char *reason,
                   const char *p, size_t len, cad_queue_append_cb cb, void *ud) {
  if (q->stopping) return CAD_E_STATE;
  if (dest >= q->j.ndests) return CAD_E_INVAL;
  req_t *r = calloc(1, sizeof *r + sizeof(uint64_t));
  if (!r) return CAD_E_NOMEM;
  r->recs = calloc(1, sizeof *r->recs);
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > 1000) rl = 1000;
  r->mem = malloc(rl + 1);
  if (!r->recs || !r->mem) {
    free_req(r);
    return CAD_E_NOMEM;
  }
  if (rl) memcpy(r->mem, reason, rl);
  /* DEAD: the reason; DONE: what the destination answered for `seq` (the
   * receiver's ACK), "" when nothing is known. */
  r->recs[0] = (cad_jrec_t){type, dest, seq, r->mem,
                            type == CAD_JREC_DEAD || type == CAD_JREC_DONE ? rl : 0};
  if (type == CAD_JREC_DEAD) {
    /* Dead-letter record: [u16 reason length][reason][u64 original seq][message]. */
    r->dlq_len = 2 + rl + 8 + len;
    r->dlq_payload = malloc(r->dlq_len);
    if (!r->dlq_payload) {
      free_req(r);
      return CAD_E_NOMEM;
    }
    unsigned char *d = (unsigned char *)r->dlq_payload;
    d[0] = (unsigned char)rl;
    d[1] = (unsigned char)(rl >> 8);
    memcpy(d + 2, reason, rl);
    for (int i = 0; i < 8; i++) d[2 + rl + i] = (unsigned char)(seq >> (8 * i));
    if (len) memcpy(d + 2 + rl + 8, p, len);
  }
  r->kind = REQ_MARK;
  r->n = 1;
  r->bytes = rl + len;
  r->cb = cb;
  r->ud = ud;
  enqueue(q, r);
  return 0;
}

int cad_queue_exec(cad_queue_t *q, cad_queue_exec_fn fn, void *fn_ud, cad_queue_append_cb cb,
                   void *ud) {
  if (q->stopping) return CAD_E_STATE;
  req_t *r = calloc(1, sizeof *r);
  if (!r) return CAD_E_NOMEM;
  r->kind = REQ_EXEC;
  r->exec = fn;
  r->exec_ud = fn_ud;
  r->notify = -1;
  r->cb = cb;
  r->ud = ud;
  enqueue(q, r);
  return 0;
}

typedef struct read_exec {
  uv_work_t work;
  cad_queue_t *q;
  cad_queue_exec_fn snap, scan;
  void *ud;
  cad_queue_append_cb cb;
  int status;
} read_exec_t;

static void read_exec_work(uv_work_t *w) {
  read_exec_t *r = w->data;
  cad_queue_t *q = r->q;
  cad_queue_journals_t js = {&q->j, &q->dlq, q->jdir, q->dlqdir, -1};
  uv_mutex_lock(&q->jmu);
  r->status = r->snap(r->ud, &js);
  uv_mutex_unlock(&q->jmu);
  if (r->status >= 0) {
    cad_queue_journals_t free_js = {NULL, NULL, q->jdir, q->dlqdir, -1};
    r->status = r->scan(r->ud, &free_js);
  }
}

static void read_exec_after(uv_work_t *w, int status) {
  read_exec_t *r = w->data;
  cad_queue_t *q = r->q;
  int st = status < 0 ? status : r->status;
  cad_queue_append_cb cb = r->cb;
  void *ud = r->ud;
  free(r);
  cb(ud, st < 0 ? st : 0, NULL, 0);
  if (--q->read_execs == 0 && q->async_closed) queue_free(q);
}

int cad_queue_read_exec(cad_queue_t *q, cad_queue_exec_fn snap, cad_queue_exec_fn scan, void *ud,
                        cad_queue_append_cb cb) {
  if (q->stopping) return CAD_E_STATE;
  read_exec_t *r = calloc(1, sizeof *r);
  if (!r) return CAD_E_NOMEM;
  *r = (read_exec_t){.q = q, .snap = snap, .scan = scan, .ud = ud, .cb = cb};
  r->work.data = r;
  int rc = uv_queue_work(q->loop, &r->work, read_exec_work, read_exec_after);
  if (rc) free(r);
  else q->read_execs++;
  return rc;
}

/* ---- reading ------------------------------------------------------------ */

static void read_work(uv_work_t *w) {
  cad_queue_reader_t *r = w->data;
  cad_queue_t *q = r->q;
  uv_mutex_lock(&q->mu);
  cad_jpos_t end = q->end;
  uv_mutex_unlock(&q->mu);
  /* Memory stays bounded: a slot that once held a large message gives its
   * buffer back. */
  for (size_t i = 0; i < CAD_QUEUE_READ_BATCH; i++)
    if (r->recs[i].payload.cap > 256 * 1024) cad_buf_free(&r->recs[i].payload);
  r->nrecs = 0;
  size_t bytes = 0;
  r->status = 0;
  while (r->nrecs < CAD_QUEUE_READ_BATCH && bytes < CAD_QUEUE_READ_BYTES) {
    cad_jread_t *rec = &r->recs[r->nrecs];
    int rc = cad_jreader_next(&r->jr, &r->pos, end, r->dest, CAD_JREC_MSG, rec);
    if (rc == 1 && rec->seq <= r->after) continue; /* finished before the start */
    if (rc != 1) {
      if (rc < 0 && r->nrecs == 0) r->status = rc;
      break;
    }
    bytes += rec->payload.len;
    r->nrecs++;
  }
  if (r->nrecs) r->status = 1;
}

static void read_after(uv_work_t *w, int status) {
  cad_queue_reader_t *r = w->data;
  r->busy = false;
  if (status) r->status = status; /* UV_ECANCELED */
  r->cb(r->ud, r->status);
}

int cad_queue_reader_init(cad_queue_t *q, cad_queue_reader_t *r, uint16_t dest) {
  memset(r, 0, sizeof *r);
  r->q = q;
  r->dest = dest;
  int rc = cad_jreader_init_io(&r->jr, q->jdir, q->o.io);
  if (rc) return rc;
  uv_mutex_lock(&q->jmu);
  r->pos = cad_journal_begin(&q->j);
  r->after = q->j.dests[dest].done_seq;
  uv_mutex_unlock(&q->jmu);
  return 0;
}

int cad_queue_read(cad_queue_reader_t *r, cad_queue_read_cb cb, void *ud) {
  if (r->busy) return CAD_E_STATE;
  r->busy = true;
  r->cb = cb;
  r->ud = ud;
  r->work.data = r;
  int rc = uv_queue_work(r->q->loop, &r->work, read_work, read_after);
  if (rc) r->busy = false;
  return rc;
}

void cad_queue_reader_free(cad_queue_reader_t *r) {
  cad_jreader_free(&r->jr);
  for (size_t i = 0; i < CAD_QUEUE_READ_BATCH; i++) cad_buf_free(&r->recs[i].payload);
}

void cad_queue_set_commit_hook(cad_queue_t *q, void (*fn)(void *ud, uint16_t dest), void *ud) {
  q->hook = fn;
  q->hook_ud = ud;
}

const cad_jdest_t *cad_queue_dest_info(const cad_queue_t *q, uint16_t dest) {
  if (dest >= CAD_JOURNAL_MAX_DESTS || !q->info[dest].name) return NULL;
  return &q->info[dest];
}

void cad_queue_get_stats(const cad_queue_t *q, cad_queue_stats_t *out) {
  uv_mutex_lock((uv_mutex_t *)&q->mu);
  *out = q->stats;
  out->pending_bytes = q->pending_bytes;
  uv_mutex_unlock((uv_mutex_t *)&q->mu);
}

uint64_t cad_queue_bytes(const cad_queue_t *q) {
  uv_mutex_lock((uv_mutex_t *)&q->mu);
  uint64_t b = q->journal_bytes;
  uv_mutex_unlock((uv_mutex_t *)&q->mu);
  return b;
}
