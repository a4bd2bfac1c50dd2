/* queue_dlq.c - dead letters of a destination on the journal pair (queue_dlq.h). */
#include "queue_dlq.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_io.h"
#include "hl7.h"

/* Dead-letter numbers a DONE record of the dead-letter journal finished. */
typedef struct seqset {
  uint64_t *v;
  size_t n, cap;
} seqset_t;

static bool seq_in(const seqset_t *s, uint64_t x) {
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i] == x) return true;
  return false;
}

static int finished_set(const cad_queue_journals_t *js, const cad_dlq_view_t *v, seqset_t *out) {
  memset(out, 0, sizeof *out);
  int lid = v->lid;
  cad_jreader_t r;
  if (cad_jreader_init(&r, js->dlqdir)) return CAD_E_NOMEM;
  cad_jpos_t pos = v->dbegin, end = v->dend;
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  int rc;
  while ((rc = cad_jreader_next(&r, &pos, end, lid, CAD_JREC_DONE, &rec)) == 1) {
    if (out->n == out->cap) {
      size_t cap = out->cap ? out->cap * 2 : 64;
      uint64_t *nv = realloc(out->v, cap * sizeof *nv);
      if (!nv) {
        rc = CAD_E_NOMEM;
        break;
      }
      out->v = nv;
      out->cap = cap;
    }
    out->v[out->n++] = rec.seq;
  }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  if (rc < 0) {
    free(out->v);
    out->v = NULL;
  }
  return rc < 0 ? rc : 0;
}

/* [u16 reason length][reason][u64 original seq][message] */
static bool split(const cad_buf_t *pl, cad_str_t *reason, uint64_t *orig, cad_str_t *msg) {
  const unsigned char *p = (const unsigned char *)pl->data;
  if (pl->len < 10) return false;
  size_t rl = (size_t)(p[0] | (p[1] << 8));
  if (2 + rl + 8 > pl->len) return false;
  *reason = (cad_str_t){(const char *)p + 2, rl};
  uint64_t s = 0;
  for (int i = 7; i >= 0; i--) s = (s << 8) | p[2 + rl + i];
  *orig = s;
  *msg = (cad_str_t){(const char *)p + 2 + rl + 8, pl->len - 2 - rl - 8};
  return true;
}

static void ids_of(const char *p, size_t len, cad_dlq_item_t *it) {
  snprintf(it->type, sizeof it->type, "?");
  snprintf(it->control_id, sizeof it->control_id, "?");
  cad_arena_t a;
  cad_arena_init(&a, 16384, 0);
  cad_hl7_msg_t m;
  if (cad_hl7_parse(&m, p, len, &a, NULL, NULL) == 0) {
    cad_hl7_path_t pt;
    cad_hl7_match_t mt;
    if (cad_hl7_path_parse("MSH-9", 5, &pt, NULL, NULL) == 0 && cad_hl7_get(&m, &pt, &mt))
      snprintf(it->type, sizeof it->type, "%.*s", (int)(mt.raw.len < 40 ? mt.raw.len : 40),
               mt.raw.p);
    if (cad_hl7_path_parse("MSH-10", 6, &pt, NULL, NULL) == 0 && cad_hl7_get(&m, &pt, &mt))
      snprintf(it->control_id, sizeof it->control_id, "%.*s",
               (int)(mt.raw.len < 64 ? mt.raw.len : 64), mt.raw.p);
  }
  cad_arena_free(&a);
}

/* Each live dead letter of `lid` above `after`, in order, to fn (nonzero
 * stops; negative is returned). */
typedef int (*each_fn)(void *ud, const cad_jread_t *rec, cad_str_t reason, uint64_t orig,
                       cad_str_t msg);

static int each_live(const cad_queue_journals_t *js, const cad_dlq_view_t *v, uint64_t after,
                     each_fn fn, void *ud) {
  int lid = v->lid;
  seqset_t gone;
  int rc = finished_set(js, v, &gone);
  if (rc < 0) return rc;
  cad_jreader_t r;
  if (cad_jreader_init(&r, js->dlqdir)) {
    free(gone.v);
    return CAD_E_NOMEM;
  }
  cad_jpos_t pos = v->dbegin, end = v->dend;
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  while ((rc = cad_jreader_next(&r, &pos, end, lid, CAD_JREC_MSG, &rec)) == 1) {
    if (rec.seq <= after || seq_in(&gone, rec.seq)) continue;
    cad_str_t reason, msg;
    uint64_t orig;
    if (!split(&rec.payload, &reason, &orig, &msg)) continue;
    int x = fn(ud, &rec, reason, orig, msg);
    if (x) {
      rc = x < 0 ? x : 0;
      break;
    }
  }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  free(gone.v);
  return rc < 0 ? rc : 0;
}

typedef struct list_ctx {
  cad_dlq_item_t *out;
  size_t max, n;
  uint64_t total;
} list_ctx_t;

static int list_one(void *ud, const cad_jread_t *rec, cad_str_t reason, uint64_t orig,
                    cad_str_t msg) {
  list_ctx_t *c = ud;
  c->total++;
  if (c->n >= c->max) return 0;
  cad_dlq_item_t *it = &c->out[c->n++];
  memset(it, 0, sizeof *it);
  it->no = rec->seq;
  it->time_ms = rec->time_ms;
  it->orig_seq = orig;
  it->bytes = msg.len;
  size_t rl = reason.len < CAD_DLQ_REASON_MAX ? reason.len : CAD_DLQ_REASON_MAX;
  memcpy(it->reason, reason.p, rl);
  ids_of(msg.p, msg.len, it);
  return 0;
}

int cad_dlq_view(cad_queue_journals_t *js, const char *name, cad_dlq_view_t *v) {
  memset(v, 0, sizeof *v);
  v->did = cad_journal_dest(js->j, name, false);
  v->lid = cad_journal_dest(js->dlq, name, false);
  if (v->did < 0) return CAD_E_NOTFOUND;
  const cad_jdest_t *d = &js->j->dests[v->did];
  v->done_seq = d->done_seq;
  v->last_seq = d->last_seq;
  v->jend = cad_journal_end(js->j);
  v->jfrom = v->jend;
  /* Skip the segments whose messages of this destination are all finished. */
  for (size_t i = 0; i < js->j->nsegs; i++) {
    const cad_jseg_t *sg = &js->j->segs[i];
    if ((uint32_t)v->did < js->j->ndest_cap && sg->max_seq && sg->max_seq[v->did] <= v->done_seq)
      continue;
    v->jfrom = (cad_jpos_t){sg->no, sg->key.hdr};
    break;
  }
  if (v->lid >= 0) {
    v->dbegin = cad_journal_begin(js->dlq);
    v->dend = cad_journal_end(js->dlq);
  }
  return 0;
}

int cad_dlq_list(const cad_queue_journals_t *js, const cad_dlq_view_t *v, uint64_t after,
                 size_t max, cad_dlq_item_t *out, size_t *n, uint64_t *total) {
  *n = 0;
  *total = 0;
  if (v->lid < 0) return 0;
  list_ctx_t c = {out, max, 0, 0};
  int rc = each_live(js, v, after, list_one, &c);
  *n = c.n;
  *total = c.total;
  return rc;
}

typedef struct move_ctx {
  cad_queue_journals_t *js;
  int did, lid;
  uint64_t no, moved, first;
  bool purge;
  void (*each)(void *ud, uint64_t no, uint64_t seq);
  void *each_ud;
} move_ctx_t;

static int move_one(void *ud, const cad_jread_t *rec, cad_str_t reason, uint64_t orig,
                    cad_str_t msg) {
  (void)reason, (void)orig;
  move_ctx_t *c = ud;
  if (c->no && rec->seq != c->no) return 0;
  int rc = 0;
  if (!c->purge) {
    /* At the tail of the FIFO, above every number the name used on either
     * side, so that it gets a new number if it dies again. */
    uint64_t top = c->js->j->dests[c->did].last_seq;
    if (c->js->dlq->dests[c->lid].last_seq > top) top = c->js->dlq->dests[c->lid].last_seq;
    cad_jrec_t m = {CAD_JREC_MSG, (uint16_t)c->did, top + 1, msg.p, msg.len};
    rc = cad_journal_write(c->js->j, &m, 1, cad_now_ms());
    if (rc == 0 && !c->moved) c->first = m.seq;
    if (rc == 0) c->js->notify = c->did;
  }
  if (rc == 0) {
    cad_jrec_t done = {CAD_JREC_DONE, (uint16_t)c->lid, rec->seq, NULL, 0};
    rc = cad_journal_write(c->js->dlq, &done, 1, cad_now_ms());
  }
  if (rc) return rc < 0 ? rc : CAD_E_IO;
  c->moved++;
  if (c->each) c->each(c->each_ud, rec->seq, c->purge ? 0 : c->js->j->dests[c->did].last_seq);
  return c->no ? 1 : 0;
}

int cad_dlq_move(cad_queue_journals_t *js, const char *name, uint64_t no, bool purge,
                 void (*each)(void *ud, uint64_t no, uint64_t seq), void *each_ud, uint64_t *moved,
                 uint64_t *first) {
  *moved = 0;
  if (first) *first = 0;
  cad_dlq_view_t v;
  if (cad_dlq_view(js, name, &v) < 0 || v.lid < 0) return CAD_E_NOTFOUND;
  move_ctx_t c = {js, v.did, v.lid, no, 0, 0, purge, each, each_ud};
  int rc = each_live(js, &v, 0, move_one, &c);
  *moved = c.moved;
  if (first) *first = c.first;
  if (rc == 0 && no && !c.moved) rc = CAD_E_NOTFOUND;
  return rc;
}

int cad_dlq_requeue(cad_queue_journals_t *js, const char *name, uint64_t no, uint64_t *moved,
                    uint64_t *first_seq) {
  return cad_dlq_move(js, name, no, false, NULL, NULL, moved, first_seq);
}

int cad_dlq_purge(cad_queue_journals_t *js, const char *name, uint64_t no, uint64_t *purged) {
  return cad_dlq_move(js, name, no, true, NULL, NULL, purged, NULL);
}

int cad_dlq_oldest_waiting(const cad_queue_journals_t *js, const cad_dlq_view_t *v,
                           uint64_t *time_ms) {
  *time_ms = 0;
  if (v->last_seq <= v->done_seq) return 0;
  cad_jreader_t r;
  if (cad_jreader_init(&r, js->jdir)) return CAD_E_NOMEM;
  cad_jpos_t pos = v->jfrom;
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  int rc;
  while ((rc = cad_jreader_next(&r, &pos, v->jend, v->did, CAD_JREC_MSG, &rec)) == 1)
    if (rec.seq > v->done_seq) {
      *time_ms = rec.time_ms;
      break;
    }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  return rc < 0 ? rc : 0;
}
