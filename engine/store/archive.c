/* archive.c - the archive's writer: the bounded queue and the writer thread
 * (archive.h).  Reading is in archive_query.c, the schema and the day files
 * in archive_db.c. */
#include "archive.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "archive_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "log.h"

#define DAY_MS 86400000LL
#define NCACHE 2 /* open day files: today and the one before */

#define LINGER_MS 50         /* how long the first waiting record waits for more */
#define NBLK 8               /* channels with an open body block at once */
#define BLK_MAX (64u << 10)  /* uncompressed bytes of a block */
#define BLK_SOLO (16u << 10) /* a bigger message is compressed alone */

typedef enum { REC_IN, REC_ATT } rec_kind_t;

typedef struct blk {
  char channel[128];
  cad__arch_db_t *db; /* the file it goes to (NULL: unused) */
  int64_t id;         /* the id of its first message */
  char *buf;          /* owned: the bodies, one after the other */
  size_t len, cap, n;
} blk_t;

typedef struct rec {
  struct rec *next;
  rec_kind_t kind;
  size_t cost; /* bytes counted against the bound */
  int64_t t_ms;
  /* REC_IN */
  uint64_t id, conn, size, dl_seq;
  char *channel, *peer, *status, *reason, *ack;
  char *bytes;
  size_t len;
  uint16_t *qids;
  uint64_t *seqs;
  size_t nq;
  /* REC_ATT */
  uint16_t qid;
  uint64_t seq;
  cad_archive_att_t what;
  char *detail;
  /* writer thread */
  uint32_t pos;  /* in its batch */
  bool consumed; /* REC_ATT written with its message's delivery row */
} rec_t;

struct cad_archive {
  cad_archive_opts_t o;
  char dir[4096];
  char *data_dir; /* owned copy of o.data_dir */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;      /* records queued, or stop */
  pthread_cond_t done_cv; /* a batch was written */
  rec_t *head, *tail;
  uint64_t pending, pending_bytes;
  uint64_t submitted, completed; /* records handed over / finished */
  bool stop;
  bool hurry;             /* a flush waits: no lingering */
  uint64_t first_ms;      /* monotonic time of the oldest waiting record */
  _Atomic bool closing;   /* close was asked: the start-up rebuild gives up */
  uint64_t stop_by_ms;    /* close: monotonic time after which what waits is dropped */
  uint64_t close_dropped; /* records dropped that way */
  cad_archive_stats_t st;
  char *names[CAD_ARCHIVE_MAX_DESTS];
  cad__arch_db_t *cache[NCACHE]; /* writer thread only */
  int64_t last_prune_ms;
  int64_t opened_ms;
  uint64_t failed_batches; /* writer thread */
  int64_t last_stats_ms;   /* writer thread */
  cad__arch_db_t *tx_db;   /* writer thread: the file with an open transaction */
  size_t tx_records, tx_failed;
  z_stream zs; /* writer thread: the body compressor, reset per message */
  bool z_ready;
  unsigned char *zbuf;
  size_t zcap;
  cad__arch_chan_t *chans; /* opts.chans, copied */
  size_t nchans;
  cad_arena_t arena; /* writer thread: parsing a message for its fields */
  blk_t blk[NBLK];   /* writer thread: body blocks being filled */
  rec_t **att_slots; /* writer thread: the batch's first attempt per (qid, seq) */
  size_t att_cap;    /* a power of two, or 0 */
};

static void blk_flush(cad_archive_t *a, blk_t *b);
static void blk_flush_all(cad_archive_t *a);

uint64_t cad_archive_next_id(uint64_t *last) {
  uint64_t id = cad_now_ms() << 20;
  if (id <= *last) id = *last + 1;
  *last = id;
  return id;
}

/* A record and everything it holds are one allocation (the loop thread
 * makes one malloc and one copy per message; the writer one free). */
static void rec_free(rec_t *r) { free(r); }

/* Bytes of s with its NUL (0 for NULL). */
static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

/* Copy s (of size n from str_size) to *at, advancing it; NULL for NULL. */
static char *put_str(char **at, const char *s, size_t n) {
  if (!s) return NULL;
  char *d = *at;
  memcpy(d, s, n);
  *at += n;
  return d;
}

/* Queue r, or drop it when over a bound.  Takes r. */
static int enqueue(cad_archive_t *a, rec_t *r) {
  pthread_mutex_lock(&a->mu);
  bool full = a->stop || a->pending + 1 > a->o.max_queue ||
              a->pending_bytes + r->cost > a->o.max_queue_bytes;
  if (full) {
    uint64_t n = ++a->st.dropped;
    pthread_mutex_unlock(&a->mu);
    rec_free(r);
    /* The first drop and then one line per 1000, so a stuck disk does not
     * flood the log. */
    if (n == 1 || n % 1000 == 0) {
      cad_log_ctx_t c = CAD_LOG_CTX_INIT;
      cad_log_num_t num = {"dropped", n};
      c.nums = &num;
      c.nnums = 1;
      CAD_LOG(CAD_LOG_WARN, "archive.dropped", &c,
              "archive queue full: record not archived (the message itself is unaffected)");
    }
    return CAD_E_FULL;
  }
  if (a->tail) a->tail->next = r;
  else a->head = r;
  a->tail = r;
  a->pending++;
  a->pending_bytes += r->cost;
  a->submitted++;
  a->st.queued++;
  /* The writer takes records in batches: it wakes by itself LINGER_MS after
   * the first record (or is woken for a full batch, or half the bytes), so
   * the loop thread makes no system call per record and the writer one
   * transaction per batch rather than per record. */
  if (a->pending == 1) a->first_ms = cad_mono_ms();
  if (a->pending == a->o.batch || (a->pending_bytes >= a->o.max_queue_bytes / 2 &&
                                   a->pending_bytes - r->cost < a->o.max_queue_bytes / 2))
    pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
  return 0;
}

int cad_archive_inbound(cad_archive_t *a, const cad_archive_in_t *in) {
  size_t keep = in->len;
  if (strcmp(in->status, "unparseable") == 0 || strcmp(in->status, "too_big") == 0)
    keep = keep > a->o.max_raw ? a->o.max_raw : keep;
  size_t nc = str_size(in->channel), np = str_size(in->peer), ns = str_size(in->status),
         nr = str_size(in->reason), na = str_size(in->ack);
  /* The arrays first (aligned after the struct), then the strings, then the bytes. */
  size_t total = sizeof(rec_t) + in->nq * (sizeof(uint64_t) + sizeof(uint16_t)) + nc + np + ns +
                 nr + na + keep;
  rec_t *r = malloc(total);
  if (!r) return CAD_E_NOMEM;
  memset(r, 0, sizeof *r);
  char *at = (char *)(r + 1);
  r->nq = in->nq;
  if (in->nq) {
    r->seqs = (uint64_t *)(void *)at;
    memcpy(r->seqs, in->seqs, in->nq * sizeof *r->seqs);
    at += in->nq * sizeof *r->seqs;
    r->qids = (uint16_t *)(void *)at;
    memcpy(r->qids, in->qids, in->nq * sizeof *r->qids);
    at += in->nq * sizeof *r->qids;
  }
  r->channel = put_str(&at, in->channel, nc);
  r->peer = put_str(&at, in->peer, np);
  r->status = put_str(&at, in->status, ns);
  r->reason = put_str(&at, in->reason, nr);
  r->ack = put_str(&at, in->ack, na);
  r->bytes = at;
  if (keep) memcpy(at, in->bytes, keep);
  r->len = keep;
  r->kind = REC_IN;
  r->t_ms = (int64_t)(in->id >> 20);
  r->id = in->id;
  r->conn = in->conn;
  r->size = in->size;
  r->dl_seq = in->dl_seq;
  r->cost = total + 64;
  return enqueue(a, r);
}

int cad_archive_attempt(cad_archive_t *a, uint16_t qid, uint64_t seq, cad_archive_att_t what,
                        const char *detail) {
  return cad__archive_attempt_at(a, qid, seq, what, detail, (int64_t)cad_now_ms());
}

int cad__archive_attempt_at(cad_archive_t *a, uint16_t qid, uint64_t seq, cad_archive_att_t what,
                            const char *detail, int64_t t_ms) {
  size_t nd = str_size(detail);
  rec_t *r = malloc(sizeof *r + nd);
  if (!r) return CAD_E_NOMEM;
  memset(r, 0, sizeof *r);
  char *at = (char *)(r + 1);
  r->kind = REC_ATT;
  r->t_ms = t_ms;
  r->qid = qid;
  r->seq = seq;
  r->what = what;
  r->detail = put_str(&at, detail, nd);
  r->cost = sizeof *r + nd + 64;
  return enqueue(a, r);
}

void cad_archive_dest_name(cad_archive_t *a, uint16_t qid, const char *name) {
  if (qid >= CAD_ARCHIVE_MAX_DESTS) return;
  char *d = strdup(name);
  if (!d) return;
  pthread_mutex_lock(&a->mu);
  free(a->names[qid]);
  a->names[qid] = d;
  pthread_mutex_unlock(&a->mu);
}

/* ---- the writer thread ------------------------------------------------------ */

static void end_tx(cad_archive_t *a);

/* The open file of `day` (opened or created, and cached). */
static cad__arch_db_t *db_for_day(cad_archive_t *a, int64_t day, bool create) {
  for (int i = 0; i < NCACHE; i++)
    if (a->cache[i] && a->cache[i]->day == day) return a->cache[i];
  cad__arch_db_t *db = NULL;
  if (cad__arch_db_open(a->dir, day, create, false, &db) < 0) return NULL;
  /* Replace the oldest. */
  int slot = 0;
  for (int i = 0; i < NCACHE; i++) {
    if (!a->cache[i]) {
      slot = i;
      break;
    }
    if (a->cache[i]->day < a->cache[slot]->day) slot = i;
  }
  if (a->cache[slot] && a->cache[slot] == a->tx_db) end_tx(a);
  if (a->cache[slot]) cad__arch_db_close(a->cache[slot]);
  a->cache[slot] = db;
  return db;
}

static void close_cache(cad_archive_t *a, bool all, int64_t today) {
  for (int i = 0; i < NCACHE; i++) {
    if (a->cache[i] && (all || a->cache[i]->day != today)) {
      cad__arch_db_close(a->cache[i]);
      a->cache[i] = NULL;
    }
  }
}

/* p/len compressed (zlib format) into the writer's buffer: one deflate
 * stream reset per message rather than a new one (deflateInit allocates and
 * clears a quarter of a megabyte).  Level 1: in blocks it compresses as well
 * as level 6 within 1 %, for about a tenth less of the writer's CPU.  NULL (and
 * *out_len 0) on failure: the record is then kept without its body. */
static const unsigned char *zip(cad_archive_t *a, const char *p, size_t len, size_t *out_len) {
  *out_len = 0;
  if (!a->z_ready) {
    memset(&a->zs, 0, sizeof a->zs);
    if (deflateInit2(&a->zs, 1, Z_DEFLATED, 13, 6, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    a->z_ready = true;
  } else if (deflateReset(&a->zs) != Z_OK) {
    return NULL;
  }
  size_t need = deflateBound(&a->zs, (uLong)len);
  if (need > a->zcap) {
    unsigned char *g = realloc(a->zbuf, need);
    if (!g) return NULL;
    a->zbuf = g;
    a->zcap = need;
  }
  a->zs.next_in = (Bytef *)(uintptr_t)p;
  a->zs.avail_in = (uInt)len;
  a->zs.next_out = a->zbuf;
  a->zs.avail_out = (uInt)a->zcap;
  if (deflate(&a->zs, Z_FINISH) != Z_STREAM_END) return NULL;
  *out_len = a->zs.total_out;
  return a->zbuf;
}

/* The name of queue id qid copied into buf[96], or NULL when unknown. */
static const char *dest_name(cad_archive_t *a, uint16_t qid, char *buf) {
  const char *out = NULL;
  pthread_mutex_lock(&a->mu);
  if (qid < CAD_ARCHIVE_MAX_DESTS && a->names[qid]) {
    snprintf(buf, 96, "%s", a->names[qid]);
    out = buf;
  }
  pthread_mutex_unlock(&a->mu);
  return out;
}

/* The settings of channel `name` (NULL: none declared). */
static const cad__arch_chan_t *chan_of(cad_archive_t *a, const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < a->nchans; i++)
    if (strcmp(a->chans[i].name, name) == 0) return &a->chans[i];
  return NULL;
}

/* ---- attempts known with their message ----------------------------------
 * A delivery often ends (first attempt, delivered) before the writer takes
 * its message: both are then in one batch, and the delivery row is written
 * delivered at once instead of inserted and then updated. */

static size_t slot_of(const cad_archive_t *a, uint16_t qid, uint64_t seq) {
  uint64_t h = (seq * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)qid << 32);
  size_t i = (size_t)(h >> 20) & (a->att_cap - 1);
  while (a->att_slots[i] && (a->att_slots[i]->qid != qid || a->att_slots[i]->seq != seq))
    i = (i + 1) & (a->att_cap - 1);
  return i;
}

/* Index the batch's attempts (the first of each delivery record). */
static void index_attempts(cad_archive_t *a, rec_t *batch, size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  if (cap > a->att_cap) {
    rec_t **g = realloc(a->att_slots, cap * sizeof *g);
    if (!g) {
      a->att_cap = 0; /* nothing merged: every attempt the usual way */
      free(a->att_slots);
      a->att_slots = NULL;
      return;
    }
    a->att_slots = g;
    a->att_cap = cap;
  }
  memset(a->att_slots, 0, a->att_cap * sizeof *a->att_slots);
  uint32_t pos = 0;
  for (rec_t *r = batch; r; r = r->next) {
    r->pos = pos++;
    r->consumed = false;
    if (r->kind != REC_ATT) continue;
    size_t i = slot_of(a, r->qid, r->seq);
    if (!a->att_slots[i]) a->att_slots[i] = r;
  }
}

/* The attempt that delivered (qid, seq) at its first try, later in r's
 * batch, taken; NULL when there is none. */
static rec_t *take_first_delivery(cad_archive_t *a, const rec_t *r, uint16_t qid, uint64_t seq) {
  if (!a->att_cap) return NULL;
  rec_t *x = a->att_slots[slot_of(a, qid, seq)];
  if (!x || x->pos < r->pos || x->consumed || x->what != CAD_ARCH_DELIVERED) return NULL;
  x->consumed = true;
  return x;
}

/* ---- body blocks: the bodies of one channel's messages in one batch,
 * compressed together (one deflate stream for many messages: its fixed cost
 * is paid once, and similar messages compress against each other).  A
 * block lives in one day file and holds one channel's bodies only, so
 * retention per channel deletes whole blocks.  Every block is written
 * before its transaction commits (end_tx). */

/* The open block of `channel` in `db`, or a new one (flushing the oldest
 * when all are taken); NULL when none can be had. */
static blk_t *blk_for(cad_archive_t *a, cad__arch_db_t *db, const char *channel) {
  blk_t *free_one = NULL;
  for (int i = 0; i < NBLK; i++) {
    blk_t *b = &a->blk[i];
    if (b->len && b->db == db && strcmp(b->channel, channel) == 0) return b;
    if (!b->len && !free_one) free_one = b;
  }
  if (!free_one) {
    blk_flush(a, &a->blk[0]);
    free_one = &a->blk[0];
  }
  if (strlen(channel) >= sizeof free_one->channel) return NULL;
  strcpy(free_one->channel, channel);
  free_one->db = db;
  return free_one;
}

static int blk_add(cad_archive_t *a, blk_t *b, const rec_t *r, uint64_t *off) {
  if (b->len + r->len > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + r->len) cap *= 2;
    char *g = realloc(b->buf, cap);
    if (!g) return CAD_E_NOMEM;
    b->buf = g;
    b->cap = cap;
  }
  if (!b->len) b->id = (int64_t)r->id;
  *off = b->len;
  memcpy(b->buf + b->len, r->bytes, r->len);
  b->len += r->len;
  b->n++;
  (void)a;
  return 0;
}

static void blk_flush(cad_archive_t *a, blk_t *b) {
  if (!b->len) return;
  size_t clen = 0;
  const unsigned char *z = zip(a, b->buf, b->len, &clen);
  if (!z || cad__arch_db_block(b->db, b->id, z, clen, b->len) < 0) a->tx_failed += b->n;
  b->len = 0;
  b->n = 0;
  b->db = NULL;
  /* A block that grew for one big batch does not keep its memory. */
  if (b->cap > BLK_MAX * 2) {
    free(b->buf);
    b->buf = NULL;
    b->cap = 0;
  }
}

static void blk_flush_all(cad_archive_t *a) {
  for (int i = 0; i < NBLK; i++) blk_flush(a, &a->blk[i]);
}

static int write_in(cad_archive_t *a, const rec_t *r) {
  cad__arch_db_t *db = db_for_day(a, r->t_ms / DAY_MS, true);
  if (!db) return CAD_E_IO;
  cad__arch_fields_t f;
  cad__arch_fields(r->bytes, r->len, &f);
  size_t clen = 0;
  const unsigned char *z = NULL;
  int64_t blk = 0;
  uint64_t off = 0;
  /* In a block: a channel's message that is not too big, in a transaction
   * (the block is written at its end).  Otherwise compressed alone. */
  blk_t *b = NULL;
  if (r->channel && r->len && r->len <= BLK_SOLO && a->tx_db == db) b = blk_for(a, db, r->channel);
  if (b && b->len + r->len > BLK_MAX) blk_flush(a, b), b = blk_for(a, db, r->channel);
  if (b && blk_add(a, b, r, &off) == 0) blk = b->id;
  else z = zip(a, r->bytes, r->len, &clen); /* NULL: no body */
  /* The names are copied under the lock, never held across the insert:
   * the loop thread takes the same lock to queue records. */
  size_t nq = r->nq;
  char stack_names[4][96];
  const char *stack_ptrs[4], *stack_det[4];
  int64_t stack_t[4];
  char(*names_buf)[96] = nq <= 4 ? stack_names : malloc(nq * sizeof *names_buf);
  const char **names = nq <= 4 ? stack_ptrs : malloc(nq * sizeof *names);
  const char **att_detail = nq <= 4 ? stack_det : malloc(nq * sizeof *att_detail);
  int64_t *att_t = nq <= 4 ? stack_t : malloc(nq * sizeof *att_t);
  int rc = 0;
  if (!names_buf || !names || !att_detail || !att_t) {
    rc = CAD_E_NOMEM;
  } else {
    for (size_t i = 0; i < nq; i++) {
      names[i] = dest_name(a, r->qids[i], names_buf[i]);
      rec_t *x = take_first_delivery(a, r, r->qids[i], r->seqs[i]);
      att_t[i] = x ? x->t_ms : 0;
      att_detail[i] = x ? x->detail : NULL;
    }
    cad__arch_msg_t m = {r->id,     r->t_ms,   r->channel, r->peer,   r->conn, r->size,
                         r->status, r->reason, r->ack,     r->dl_seq, &f,      z,
                         clen,      r->len,    r->qids,    r->seqs,   names,   nq,
                         blk,       off,       att_t,      att_detail};
    rc = cad__arch_db_insert(db, &m);
  }
  if (nq > 4) {
    free(names_buf);
    free(names);
    free(att_detail);
    free(att_t);
  }
  const cad__arch_chan_t *ch = chan_of(a, r->channel);
  if (rc == 0 && ch && (ch->fts || ch->nfields))
    rc = cad__arch_db_index(db, ch, r->id, r->bytes, r->len, &a->arena);
  return rc;
}

static int write_att(cad_archive_t *a, const rec_t *r) {
  int64_t today = r->t_ms / DAY_MS;
  /* The delivery row lives in its message's file: today's or the day
   * before's as a rule; otherwise a row of its own in today's file. */
  for (int64_t d = today; d >= today - 1; d--) {
    cad__arch_db_t *db = db_for_day(a, d, d == today);
    if (!db) continue;
    int rc = cad__arch_db_attempt(db, r->qid, r->seq, r->what, r->detail, r->t_ms, NULL, false);
    if (rc != CAD_E_NOTFOUND) return rc;
  }
  cad__arch_db_t *db = db_for_day(a, today, true);
  if (!db) return CAD_E_IO;
  char buf[96];
  const char *name = dest_name(a, r->qid, buf);
  return cad__arch_db_attempt(db, r->qid, r->seq, r->what, r->detail, r->t_ms, name, true);
}

/* Commit the open transaction; its records count as failed if it fails. */
static void end_tx(cad_archive_t *a) {
  blk_flush_all(a);
  if (!a->tx_db) return;
  if (cad__arch_db_commit(a->tx_db) < 0) a->tx_failed += a->tx_records;
  a->tx_db = NULL;
  a->tx_records = 0;
}

static void write_batch(cad_archive_t *a, rec_t *batch, size_t n) {
  /* One transaction per day file touched (as a rule one).  A day file
   * evicted from the cache meanwhile commits first (db_for_day). */
  size_t failed = 0;
  a->tx_failed = 0;
  index_attempts(a, batch, n);
  for (rec_t *r = batch; r; r = r->next) {
    if (r->consumed) { /* written with its message */
      a->tx_records++;
      continue;
    }
    int64_t d = r->t_ms / DAY_MS;
    if (!a->tx_db || a->tx_db->day != d) {
      end_tx(a);
      cad__arch_db_t *db = db_for_day(a, d, true);
      if (db && cad__arch_db_begin(db) == 0) a->tx_db = db;
    }
    int rc = r->kind == REC_IN ? write_in(a, r) : write_att(a, r);
    if (rc < 0) failed++;
    else a->tx_records++;
  }
  end_tx(a);
  failed += a->tx_failed;
  if (failed > n) failed = n;
  pthread_mutex_lock(&a->mu);
  a->st.written += n - failed;
  a->st.failed += failed;
  a->st.batches++;
  pthread_mutex_unlock(&a->mu);
  /* One line for the first failed batch and one per 100 after it, so a
   * full or read-only disk does not flood the log. */
  if (failed && (a->failed_batches++ % 100) == 0) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    cad_log_num_t num = {"failed", failed};
    c.nums = &num;
    c.nnums = 1;
    CAD_LOG(CAD_LOG_ERROR, "archive.write_failed", &c, "archive records not written in %s", a->dir);
  }
}

static void maybe_prune(cad_archive_t *a, int64_t now) {
  if (now - a->last_prune_ms < 3600000 && a->last_prune_ms / DAY_MS == now / DAY_MS) return;
  a->last_prune_ms = now;
  close_cache(a, false, now / DAY_MS);
  uint64_t freed = 0, rows = 0;
  /* Whole files past the longest retention, then the rows of channels
   * whose own retention is shorter (or of the others, when a channel's
   * is longer than the engine's). */
  cad_archive_chan_t ch[64];
  size_t nch = 0;
  for (size_t i = 0; i < a->nchans && nch < 64; i++)
    if (a->chans[i].retain_ms)
      ch[nch++] = (cad_archive_chan_t){a->chans[i].name, NULL, 0, false, a->chans[i].retain_ms};
  int n = cad_archive_prune(a->dir, now, cad_archive_longest_retain(a->o.retain_ms, ch, nch),
                            a->o.max_bytes, &freed);
  if (nch && cad_archive_prune_channels(a->dir, now, a->o.retain_ms, ch, nch, &rows) == 0 && rows) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    cad_log_num_t num = {"messages", rows};
    c.nums = &num;
    c.nnums = 1;
    CAD_LOG(CAD_LOG_INFO, "archive.pruned_channels", &c,
            "messages past their channel's retention deleted");
  }
  if (n > 0) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    cad_log_num_t nums[2] = {{"files", (uint64_t)n}, {"bytes", freed}};
    c.nums = nums;
    c.nnums = 2;
    CAD_LOG(CAD_LOG_INFO, "archive.pruned", &c, "expired day files deleted");
  }
}

/* After a crash: what the journal holds and the writer lost. */
static void rebuild(cad_archive_t *a) {
  int64_t now = a->opened_ms, from = cad_archive_newest(a->dir) - 300000;
  if (from < now - (int64_t)a->o.retain_ms) from = now - (int64_t)a->o.retain_ms;
  uint64_t checked, missing, rebuilt;
  int rc = cad_archive_reindex_until(a->o.data_dir, from, now, true, &a->closing, &checked,
                                     &missing, &rebuilt);
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  cad_log_num_t nums[3] = {{"checked", checked}, {"missing", missing}, {"rebuilt", rebuilt}};
  c.nums = nums;
  c.nnums = 3;
  if (rc < 0) c.error = cad_err_name(rc);
  if (rc < 0 || missing)
    CAD_LOG(rc < 0 ? CAD_LOG_ERROR : CAD_LOG_WARN, "archive.rebuilt", &c,
            "queue records missing from the archive rebuilt from the journal");
}

static void *writer_main(void *arg) {
  cad_archive_t *a = arg;
  pthread_setname_np(pthread_self(), "cad-archive");
  /* The message path comes first: on a busy machine the writer runs when
   * the loop and the queue's commit thread leave a core free, and falls
   * behind (then drops, counted) rather than slowing ACKs.  Linux applies
   * nice per thread. */
  if (a->o.nice) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), a->o.nice);
  if (a->o.rebuild) rebuild(a);
  pthread_mutex_lock(&a->mu);
  for (;;) {
    /* Until a full batch, LINGER_MS after the first record, a flush or the
     * end; at least once a second (retention, counters). */
    for (;;) {
      if (a->stop || a->hurry || a->pending >= a->o.batch ||
          a->pending_bytes >= a->o.max_queue_bytes / 2)
        break;
      uint64_t wait_ms = 1000, now = cad_mono_ms();
      if (a->head) {
        if (now >= a->first_ms + LINGER_MS) break;
        wait_ms = a->first_ms + LINGER_MS - now;
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += (time_t)(wait_ms / 1000);
      ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
      if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) != 0 && !a->head) break;
    }
    if (!a->head && a->stop) break;
    if (a->stop && cad_mono_ms() > a->stop_by_ms) {
      /* Shutdown is bounded: what still waits is dropped and counted (the
       * next start rebuilds queued messages' records from the journal). */
      while (a->head) {
        rec_t *x = a->head;
        a->head = x->next;
        rec_free(x);
        a->close_dropped++;
      }
      a->tail = NULL;
      a->pending = 0;
      a->pending_bytes = 0;
      break;
    }
    rec_t *batch = a->head, *last = a->head;
    size_t n = 0, bytes = 0;
    if (batch) {
      n = 1;
      bytes = last->cost;
      while (last->next && n < a->o.batch) {
        last = last->next;
        bytes += last->cost;
        n++;
      }
      a->head = last->next;
      if (!a->head) a->tail = NULL, a->hurry = false;
      else a->first_ms = cad_mono_ms();
      last->next = NULL;
      a->pending -= n;
      a->pending_bytes -= bytes;
    }
    pthread_mutex_unlock(&a->mu);
    if (n) write_batch(a, batch, n);
    while (batch) {
      rec_t *x = batch->next;
      rec_free(batch);
      batch = x;
    }
    int64_t now = (int64_t)cad_now_ms();
    maybe_prune(a, now);
    if (a->o.stats_ms && now - a->last_stats_ms >= (int64_t)a->o.stats_ms) {
      a->last_stats_ms = now;
      cad_archive_log_stats(a);
    }
    pthread_mutex_lock(&a->mu);
    a->completed += n;
    pthread_cond_broadcast(&a->done_cv);
  }
  pthread_mutex_unlock(&a->mu);
  close_cache(a, true, 0);
  if (a->z_ready) deflateEnd(&a->zs);
  free(a->zbuf);
  cad_arena_free(&a->arena);
  for (int i = 0; i < NBLK; i++) free(a->blk[i].buf);
  free(a->att_slots);
  return NULL;
}

int cad_archive_open(const cad_archive_opts_t *o, cad_archive_t **out) {
  cad_archive_t *a = calloc(1, sizeof *a);
  if (!a) return CAD_E_NOMEM;
  a->o = *o;
  if (!a->o.retain_ms) a->o.retain_ms = 7 * DAY_MS;
  if (!a->o.max_queue) a->o.max_queue = 65536;
  if (!a->o.max_queue_bytes) a->o.max_queue_bytes = 32u << 20;
  if (!a->o.max_raw) a->o.max_raw = 64u << 10;
  if (!a->o.batch) a->o.batch = 512;
  snprintf(a->dir, sizeof a->dir, "%s/archive", o->data_dir);
  a->data_dir = strdup(o->data_dir);
  a->o.data_dir = a->data_dir;
  a->o.chans = NULL;
  cad_arena_init(&a->arena, 64u << 10, 64u << 20);
  if (!a->data_dir || cad__arch_chans_copy(o->chans, o->nchans, &a->chans) < 0) {
    free(a->data_dir);
    free(a);
    return CAD_E_NOMEM;
  }
  a->nchans = o->nchans;
  /* Open today's file now, so a directory that cannot be written is one
   * error at start rather than a stream of failed records. */
  int64_t now = a->opened_ms = (int64_t)cad_now_ms();
  cad__arch_db_t *db = NULL;
  int rc = cad_io_mkdir_p(NULL, a->dir, 0700);
  if (rc == 0) rc = cad__arch_db_open(a->dir, now / DAY_MS, true, false, &db);
  if (rc < 0) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.error = cad_err_name(rc);
    CAD_LOG(CAD_LOG_ERROR, "archive.open_failed", &c, "%s: %s (running without the archive)",
            a->dir, cad_strerror(rc));
    cad__arch_chans_free(a->chans, a->nchans);
    free(a->data_dir);
    free(a);
    return rc;
  }
  a->cache[0] = db;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  pthread_cond_init(&a->done_cv, NULL);
  if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
    cad__arch_db_close(db);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    pthread_cond_destroy(&a->done_cv);
    cad__arch_chans_free(a->chans, a->nchans);
    free(a->data_dir);
    free(a);
    return CAD_E_NOMEM;
  }
  *out = a;
  return 0;
}

int cad_archive_flush(cad_archive_t *a) {
  pthread_mutex_lock(&a->mu);
  uint64_t want = a->submitted;
  a->hurry = true;
  pthread_cond_signal(&a->cv);
  while (a->completed < want) pthread_cond_wait(&a->done_cv, &a->mu);
  pthread_mutex_unlock(&a->mu);
  return 0;
}

void cad_archive_get_stats(cad_archive_t *a, cad_archive_stats_t *out) {
  pthread_mutex_lock(&a->mu);
  *out = a->st;
  out->pending = a->pending;
  out->pending_bytes = a->pending_bytes;
  pthread_mutex_unlock(&a->mu);
}

void cad_archive_log_stats(cad_archive_t *a) {
  if (!CAD_LOG_ON(CAD_LOG_INFO)) return;
  cad_archive_stats_t st;
  cad_archive_get_stats(a, &st);
  cad_log_num_t nums[] = {{"written", st.written}, {"dropped", st.dropped},
                          {"failed", st.failed},   {"batches", st.batches},
                          {"pending", st.pending}, {"pending_bytes", st.pending_bytes}};
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.nums = nums;
  c.nnums = sizeof nums / sizeof nums[0];
  CAD_LOG(CAD_LOG_INFO, "stats.archive", &c, NULL);
}

void cad_archive_close(cad_archive_t *a) {
  if (!a) return;
  pthread_mutex_lock(&a->mu);
  a->stop = true;
  a->closing = true;
  a->stop_by_ms = cad_mono_ms() + CAD_ARCHIVE_CLOSE_MS;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
  pthread_join(a->thread, NULL);
  if (a->close_dropped) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    cad_log_num_t num = {"dropped", a->close_dropped};
    c.nums = &num;
    c.nnums = 1;
    CAD_LOG(CAD_LOG_WARN, "archive.close_dropped", &c,
            "records still waiting at shutdown were not written (queued messages are rebuilt "
            "from the journal at the next start)");
  }
  for (size_t i = 0; i < CAD_ARCHIVE_MAX_DESTS; i++) free(a->names[i]);
  cad__arch_chans_free(a->chans, a->nchans);
  free(a->data_dir);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
  pthread_cond_destroy(&a->done_cv);
  free(a);
}
