/* pipeline.c - one inbound message: parse, route, queue, answer (pipeline.h). */
#include "pipeline.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cad_error.h"
#include "cad_io.h"
#include "chan_route.h"
#include "routes.h"

#define MSG_ARENA_CHUNK 8192

/* ---- outcomes: one table, one function ------------------------------------ */

/* What the free text of the log line says. */
typedef enum {
  TEXT_NONE,
  TEXT_FILTERED, /* fixed: no route took it */
  TEXT_LOCATED,  /* reason (HL7 code, segment n field m) */
  TEXT_CODED,    /* reason (HL7 code) */
  TEXT_REASON,   /* reason */
  TEXT_SIZE,     /* the size received and the limit */
} text_kind_t;

#define NO_COUNT 0 /* offsetof(cad_chan_stats_t, next): never a counter */
#define COUNT(f) offsetof(cad_chan_stats_t, f)

typedef struct outcome_row {
  const char *event;
  cad_log_level_t level;
  cad_ack_status_t ack;
  size_t count[2]; /* counters raised (offsets in cad_chan_stats_t) */
  unsigned reply_flags;
  text_kind_t text;
} outcome_row_t;

static const outcome_row_t outcomes[CAD_PIPE_NOUTCOMES] = {
    [CAD_PIPE_ACCEPTED] =
        {"msg.accepted", CAD_LOG_INFO, CAD_ACK_ACCEPT, {COUNT(accepted), NO_COUNT}, 0, TEXT_NONE},
    [CAD_PIPE_FILTERED] = {"msg.filtered",
                           CAD_LOG_INFO,
                           CAD_ACK_ACCEPT,
                           {COUNT(filtered), COUNT(accepted)},
                           0,
                           TEXT_FILTERED},
    [CAD_PIPE_DEAD_LETTER] = {"msg.dead_letter",
                              CAD_LOG_WARN,
                              CAD_ACK_ACCEPT,
                              {COUNT(dead_lettered), COUNT(accepted)},
                              0,
                              TEXT_REASON},
    [CAD_PIPE_REJECTED] = {"msg.rejected",
                           CAD_LOG_WARN,
                           CAD_ACK_REJECT,
                           {COUNT(rejected), NO_COUNT},
                           0,
                           TEXT_LOCATED},
    [CAD_PIPE_UNROUTED] =
        {"msg.unrouted", CAD_LOG_WARN, CAD_ACK_REJECT, {COUNT(rejected), NO_COUNT}, 0, TEXT_CODED},
    [CAD_PIPE_ROUTE_ERROR] =
        {"msg.route_error", CAD_LOG_WARN, CAD_ACK_ERROR, {COUNT(errors), NO_COUNT}, 0, TEXT_CODED},
    [CAD_PIPE_TOO_BIG] = {"msg.too_big",
                          CAD_LOG_WARN,
                          CAD_ACK_REJECT,
                          {COUNT(rejected), NO_COUNT},
                          CAD_PIPE_REPLY_CLOSE,
                          TEXT_SIZE},
    [CAD_PIPE_NOT_ACCEPTED] = {"msg.not_accepted",
                               CAD_LOG_ERROR,
                               CAD_ACK_ERROR,
                               {COUNT(errors), NO_COUNT},
                               0,
                               TEXT_REASON},
    [CAD_PIPE_NOMEM] =
        {"msg.nomem", CAD_LOG_ERROR, CAD_ACK_ERROR, {COUNT(errors), NO_COUNT}, 0, TEXT_REASON},
};

/* Each outcome's status in the archive (archive.h). */
static const char *const statuses[CAD_PIPE_NOUTCOMES] = {
    [CAD_PIPE_ACCEPTED] = "accepted", [CAD_PIPE_FILTERED] = "filtered",
    [CAD_PIPE_DEAD_LETTER] = "dead",  [CAD_PIPE_REJECTED] = "unparseable",
    [CAD_PIPE_UNROUTED] = "rejected", [CAD_PIPE_ROUTE_ERROR] = "error",
    [CAD_PIPE_TOO_BIG] = "too_big",   [CAD_PIPE_NOT_ACCEPTED] = "error",
    [CAD_PIPE_NOMEM] = "error",
};

const char *cad_pipe_outcome_event(cad_pipe_outcome_t o) {
  return o < CAD_PIPE_NOUTCOMES ? outcomes[o].event : "msg.unknown";
}

/* Where a message came from and what its header says (for the answer). */
typedef struct origin {
  void *req;
  const cad_pipe_src_t *src; /* NULL: io->reply */
  uint64_t conn;
  const char *peer;
  const cad_ack_msh_t *h; /* never NULL: a stand-in when none could be read */
  size_t bytes;
  bool cut;             /* TOO_BIG: at least `bytes` */
  uint64_t seq;         /* DEAD_LETTER: the dead letter's number (0 = none) */
  cad_str_t raw;        /* the frame (TOO_BIG: its first bytes), for the archive */
  const uint16_t *qids; /* records queued: queue id and sequence */
  const uint64_t *seqs;
  size_t nq;
  uint64_t t0_ns; /* when the frame was received (uv_hrtime), for the ACK latency */
} origin_t;

void cad_pipe_next_ctl(cad_pipe_t *p, char out[24]) {
  /* When the counter wraps the prefix moves to the current time (always
   * later than the previous prefix), so ids stay unique. */
  if (p->ctl_prefix == 0 || p->ctl_counter > 0xFFFFFFFFu) {
    uint64_t t = cad_now_ms();
    p->ctl_prefix = t > p->ctl_prefix ? t : p->ctl_prefix + 1;
    p->ctl_counter = 0;
  }
  /* 11 + 8 upper-case hex digits (the prefix's low 44 bits, the counter). */
  static const char hex[] = "0123456789ABCDEF";
  uint64_t a = p->ctl_prefix & 0xFFFFFFFFFFFull, b = p->ctl_counter++;
  for (int i = 10; i >= 0; i--, a >>= 4) out[i] = hex[a & 15];
  for (int i = 18; i >= 11; i--, b >>= 4) out[i] = hex[b & 15];
  out[19] = '\0';
}

static int local_offset_min(time_t t) {
  struct tm tm;
  if (!localtime_r(&t, &tm)) return 0;
  return (int)(tm.tm_gmtoff / 60);
}

static void reply(cad_pipe_t *p, const origin_t *o, const char *ack, size_t len, unsigned flags) {
  if (o->src) o->src->reply(o->req, ack, len, flags);
  else p->io.reply(p->io.ud, o->req, ack, len, flags);
}

/* Build and send the ACK; returns the log's outcome ("AA", "no_ack_msh15"). */
static const char *send_ack(cad_pipe_t *p, cad_pipe_chan_t *ch, const origin_t *o,
                            cad_ack_status_t st, const cad_hl7_diag_t *dg, unsigned flags) {
  static const char *const names[2][3] = {{"AA", "AE", "AR"}, {"CA", "CE", "CR"}};
  char ctl[24];
  cad_pipe_next_ctl(p, ctl);
  time_t now = time(NULL);
  if ((int64_t)now != p->off_at) {
    p->off_at = (int64_t)now;
    p->off_min = local_offset_min(now);
  }
  cad_ack_opts_t ao = {ch->ack_style, st, ctl, now, p->off_min, dg};
  cad_buf_t b = CAD_BUF_INIT;
  int rc = cad_ack_build(o->h, &ao, &b);
  const char *outcome;
  if (o->t0_ns) cad_hist_observe_us(&ch->st->ack_latency, (uv_hrtime() - o->t0_ns) / 1000);
  if (rc == 1) {
    reply(p, o, b.data, b.len, flags);
    outcome = names[cad_ack_is_enhanced(o->h, ch->ack_style) ? 1 : 0][st];
  } else {
    reply(p, o, NULL, 0, flags);
    outcome = rc == 0 ? "no_ack_msh15" : "ack_failed";
    if (rc < 0) ch->st->unanswered++;
  }
  cad_buf_free(&b);
  return outcome;
}

static void log_line(cad_pipe_t *p, cad_log_level_t lvl, const char *event, const cad_log_ctx_t *c,
                     const char *text) {
  if (p->io.log) p->io.log(p->io.ud, lvl, event, c, text);
  else if (text) CAD_LOG(lvl, event, c, "%s", text);
  else CAD_LOG(lvl, event, c, NULL);
}

/* The one place where a message ends: counters, ACK and log line, as the
 * outcome's row says.  `dg` may be NULL for the accepting outcomes. */
static void conclude(cad_pipe_t *p, cad_pipe_chan_t *ch, const origin_t *o,
                     cad_pipe_outcome_t which, const cad_hl7_diag_t *dg) {
  const outcome_row_t *row = &outcomes[which];
  for (int i = 0; i < 2; i++)
    if (row->count[i] != NO_COUNT) (*(uint64_t *)((char *)ch->st + row->count[i]))++;
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = ch->cc->name;
  c.peer = o->peer;
  c.conn = o->conn;
  c.ctl = o->h->control_id;
  c.type = o->h->msg_type;
  c.bytes = (int64_t)o->bytes;
  cad_log_num_t nums[2];
  uint64_t id = p->archive || p->io.archive ? cad_archive_next_id(&p->last_id) : 0;
  if (id) nums[c.nnums++] = (cad_log_num_t){"id", id};
  if (o->seq) nums[c.nnums++] = (cad_log_num_t){"seq", o->seq};
  c.nums = c.nnums ? nums : NULL;
  if (row->ack != CAD_ACK_ACCEPT && dg && dg->code) c.error = cad_err_name(dg->code);
  c.outcome = send_ack(p, ch, o, row->ack, row->ack == CAD_ACK_ACCEPT ? NULL : dg,
                       row->reply_flags | CAD_PIPE_REPLY_OUTCOME_BITS(which));
  if (!CAD_LOG_ON(row->level) && !p->io.log && !id) return;
  char text[256];
  const char *reason = dg && dg->reason[0] ? dg->reason : "";
  switch (row->text) {
    case TEXT_NONE: text[0] = 0; break;
    case TEXT_FILTERED: snprintf(text, sizeof text, "no route took it (unrouted: drop)"); break;
    case TEXT_LOCATED:
      snprintf(text, sizeof text, "%s (HL7 %d, segment %u field %u)", reason, dg ? dg->hl7_code : 0,
               dg ? dg->segment : 0, dg ? dg->field : 0);
      break;
    case TEXT_CODED:
      snprintf(text, sizeof text, "%s (HL7 %d)", reason, dg ? dg->hl7_code : 0);
      break;
    case TEXT_REASON: snprintf(text, sizeof text, "%s", reason); break;
    case TEXT_SIZE:
      snprintf(text, sizeof text,
               "message of %s%zu bytes, larger than max_message_size (%zu bytes)",
               o->cut ? "at least " : "", o->bytes, ch->cc->listener.max_frame);
      break;
  }
  if (id) {
    cad_archive_in_t rec = {
        id,        ch->cc->name, o->peer,    o->conn,  statuses[which], text[0] ? text : NULL,
        c.outcome, o->raw.p,     o->raw.len, o->bytes, o->qids,         o->seqs,
        o->nq,     o->seq};
    if (p->archive) cad_archive_inbound(p->archive, &rec);
    if (p->io.archive) p->io.archive(p->io.ud, &rec);
  }
  if (CAD_LOG_ON(row->level) || p->io.log)
    log_line(p, row->level, row->event, &c, text[0] ? text : NULL);
}

/* ---- one message in flight -------------------------------------------------- */

typedef struct job {
  cad_pipe_t *p;
  cad_pipe_chan_t *ch;
  void *req;
  const cad_pipe_src_t *src;
  cad_arena_t arena;
  cad_hl7_msg_t msg;
  char *bytes;
  size_t len;
  int waiting;            /* `delivered` policy: destinations that have not taken it yet */
  bool dead_letter;       /* the message went to the channel's dead letters */
  uint64_t dl_seq;        /* its number there (`queue show/requeue channel:NAME N`) */
  cad_hl7_diag_t failure; /* code 0 = none; else the first failure */
  char dl_reason[96];     /* why it was dead-lettered */
  uint64_t conn;
  char peer[64];
  uint16_t *items_qid; /* the queue ids appended (arena), for `delivered` */
  uint64_t *seqs;      /* and their sequences once durable (arena), for the archive */
  size_t nseqs;
  cad_ack_msh_t h; /* what the ACK needs from MSH (spans in bytes) */
  uint64_t t0_ns;  /* received (uv_hrtime) */
} job_t;

static origin_t job_origin(const job_t *j) {
  return (origin_t){j->req,       j->src,  j->conn,  j->peer,
                    &j->h,        j->len,  false,    j->dl_seq,
                    {j->bytes, j->len}, j->items_qid, j->seqs, j->nseqs,
                    j->t0_ns};
}

static void job_free(job_t *j) {
  cad_pipe_t *p = j->p;
  void *owner = j->ch->owner;
  cad_arena_free(&j->arena);
  free(j->bytes);
  free(j);
  if (p->io.hold) p->io.hold(p->io.ud, owner, -1);
}

static void job_finish(job_t *j) {
  origin_t o = job_origin(j);
  if (j->failure.code) {
    conclude(j->p, j->ch, &o, CAD_PIPE_NOT_ACCEPTED, &j->failure);
  } else if (j->dead_letter) {
    cad_hl7_diag_t dg = {0};
    snprintf(dg.reason, sizeof dg.reason, "%s", j->dl_reason);
    conclude(j->p, j->ch, &o, CAD_PIPE_DEAD_LETTER, &dg);
  } else {
    conclude(j->p, j->ch, &o, CAD_PIPE_ACCEPTED, NULL);
  }
  job_free(j);
}

static void job_fail(job_t *j, int err, const char *why) {
  if (j->failure.code) return;
  j->failure.code = err;
  j->failure.hl7_code = 207;
  snprintf(j->failure.reason, sizeof j->failure.reason, "%s: %s", why, cad_err_name(err));
}

/* `delivered` policy: one destination finished the message. */
static void job_delivered(void *ud, int status) {
  job_t *j = ud;
  if (status) job_fail(j, status, "not delivered (dead-lettered or engine stopping)");
  if (--j->waiting == 0) job_finish(j);
}

/* The message's records are durable (status 0) or could not be written. */
static void job_appended(void *ud, int status, const uint64_t *seqs, size_t n) {
  job_t *j = ud;
  if (status) {
    job_fail(j, status, j->dead_letter ? "dead-letter write failed" : "queue write failed");
    job_finish(j);
    return;
  }
  if (j->dead_letter && n) j->dl_seq = seqs[0];
  if (!j->dead_letter && n && j->items_qid && (j->seqs = cad_arena_alloc(&j->arena, n * 8))) {
    memcpy(j->seqs, seqs, n * sizeof *seqs);
    j->nseqs = n;
  }
  j->ch->st->queued++;
  if (j->ch->cc->ack_policy != CAD_ACK_DELIVERED || !seqs || !j->p->io.wait) {
    job_finish(j);
    return;
  }
  /* Hold the ACK until every destination has taken the message.  The
   * count is raised before each wait, because a message delivered already
   * calls job_delivered inside the wait; the 1 held here keeps j alive. */
  j->waiting = 1;
  for (size_t i = 0; i < n; i++) {
    if (!j->items_qid) break;
    j->waiting++;
    if (j->p->io.wait(j->p->io.ud, j->items_qid[i], seqs[i], job_delivered, j) != 0) j->waiting--;
  }
  if (--j->waiting == 0) job_finish(j);
}

/* `received` policy: the ACK went out already; a failure here is a loss. */
typedef struct received_ctx {
  cad_pipe_t *p;
  cad_chan_stats_t *st;
} received_ctx_t;

static void received_appended(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs;
  (void)n;
  received_ctx_t *r = ud;
  cad_chan_stats_t *st = r->st;
  cad_pipe_t *p = r->p;
  free(r);
  if (status == 0) {
    st->queued++;
    return;
  }
  st->errors++;
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = st->name;
  c.error = cad_err_name(status);
  log_line(p, CAD_LOG_ERROR, "msg.lost", &c,
           "ack.policy received: a message already ACKed could not be queued");
}

/* ---- parse, route, queue ---------------------------------------------------- */

/* The HL7 table 0357 code for a parse failure. */
static int hl7_code_for(const cad_hl7_diag_t *dg) {
  if (dg->hl7_code) return dg->hl7_code;
  switch (dg->code) {
    case CAD_E_NOMSH:
    case CAD_E_SEGMENT: return 100;
    case CAD_E_DELIM: return 102;
    default: return 207;
  }
}

/* Parse the job's bytes and read its header into j->h (a stand-in when
 * none can be read).  Returns 0, or a negative error with dg filled. */
static int parse_message(job_t *j, cad_hl7_diag_t *dg) {
  memset(dg, 0, sizeof *dg);
  int rc = cad_hl7_parse(&j->msg, j->bytes, j->len, &j->arena, &j->ch->limits, dg);
  if (rc == 0 && cad_ack_msh_from_msg(&j->msg, &j->h) != 0) {
    /* A batch header (BHS/FHS) first: not a message the engine takes. */
    const cad_hl7_seg_t *s = cad_hl7_seg(&j->msg, 0);
    rc = CAD_E_NOMSH;
    *dg = (cad_hl7_diag_t){.code = rc, .hl7_code = 100, .segment = 1};
    if (s) memcpy(dg->seg_id, s->name, sizeof dg->seg_id);
    snprintf(dg->reason, sizeof dg->reason, "the message does not start with MSH");
  } else if (rc == 0) {
    /* What every message needs to be ACKed and routed. */
    int missing = j->h.msg_type.len == 0 ? 9 : j->h.control_id.len == 0 ? 10 : 0;
    if (missing) {
      rc = CAD_E_INVAL;
      *dg = (cad_hl7_diag_t){
          .code = rc, .hl7_code = 101, .segment = 1, .seg_id = "MSH", .field = (uint32_t)missing};
      snprintf(dg->reason, sizeof dg->reason, "MSH-%d is required", missing);
    }
    return rc;
  }
  dg->hl7_code = hl7_code_for(dg);
  /* No readable header: answer all the same, from a stand-in (default
   * delimiters, empty MSA-2), or the sender resends forever. */
  cad_ack_msh_salvage(j->bytes, j->len, 0, &j->h);
  return rc;
}

/* The channel's dead-letter queue id, registered on first use. */
static int dlq_of(cad_pipe_t *p, cad_pipe_chan_t *ch) {
  if (ch->dlq_qid >= 0) return ch->dlq_qid;
  if (!p->io.dest) return CAD_E_STATE;
  char name[96];
  snprintf(name, sizeof name, "channel:%s", ch->cc->name);
  int qid = p->io.dest(p->io.ud, name);
  if (qid >= 0) ch->dlq_qid = qid; /* a failure is tried again with the next one */
  return qid;
}

/* The original message goes to this channel's dead letters, then AA. */
static void dead_letter(job_t *j, const cad_hl7_diag_t *dg) {
  cad_pipe_t *p = j->p;
  j->dead_letter = true;
  snprintf(j->dl_reason, sizeof j->dl_reason, "%s", dg->reason);
  int qid = dlq_of(p, j->ch);
  int rc = qid < 0 ? qid
                   : p->io.dead_letter(p->io.ud, (uint16_t)qid, j->dl_reason, j->bytes, j->len,
                                       job_appended, j);
  if (rc < 0) {
    job_fail(j, rc, "dead-letter write failed");
    job_finish(j);
  }
}

/* Queue what the routes give, for every destination; answer by policy. */
static void enqueue(job_t *j, const cad_route_result_t *res) {
  cad_pipe_t *p = j->p;
  size_t n = res->nouts;
  cad_queue_item_t *items = cad_arena_alloc(&j->arena, (n ? n : 1) * sizeof *items);
  j->items_qid = cad_arena_alloc(&j->arena, (n ? n : 1) * sizeof *j->items_qid);
  if (!items || !j->items_qid) {
    job_fail(j, CAD_E_NOMEM, "out of memory");
    job_finish(j);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    uint16_t qid = p->lane_qid ? p->lane_qid(p->io.ud, j->ch->owner, res->outs[i].dest,
                                             res->outs[i].bytes.p, res->outs[i].bytes.len)
                               : p->io.dest_qid(p->io.ud, j->ch->owner, res->outs[i].dest);
    items[i] = (cad_queue_item_t){qid, res->outs[i].bytes.p, res->outs[i].bytes.len};
    j->items_qid[i] = qid;
  }
  int rc;
  if (j->ch->cc->ack_policy == CAD_ACK_RECEIVED) {
    received_ctx_t *r = malloc(sizeof *r);
    if (!r) rc = CAD_E_NOMEM;
    else {
      *r = (received_ctx_t){p, j->ch->st};
      rc = p->io.append(p->io.ud, items, n, received_appended, r);
      if (rc < 0) free(r);
    }
    if (rc < 0) job_fail(j, rc, rc == CAD_E_FULL ? "queue full" : "queue refused the message");
    job_finish(j);
    return;
  }
  rc = p->io.append(p->io.ud, items, n, job_appended, j);
  if (rc < 0) {
    job_fail(j, rc, rc == CAD_E_FULL ? "queue full" : "queue refused the message");
    job_finish(j);
  }
}

/* Route a parsed message and queue what the routes give; answer it. */
static void route_and_queue(job_t *j) {
  const cad_conf_channel_t *cc = j->ch->cc;
  cad_route_result_t res;
  memset(&res, 0, sizeof res);
  /* The routes with the channel's character sets (chan_route.h). */
  int rc = cad_chan_route(cc, j->bytes, j->len, &j->msg, &j->arena, &res);
  if (rc == 1) { /* refused for its character set before any route: AR */
    origin_t o = job_origin(j);
    conclude(j->p, j->ch, &o, CAD_PIPE_REJECTED, &res.diag);
    job_free(j);
    return;
  }
  if (rc < 0 && res.disposition == CAD_ROUTE_DELIVER) {
    res.disposition = CAD_ROUTE_ERROR;
    res.diag.hl7_code = 207;
    snprintf(res.diag.reason, sizeof res.diag.reason, "routing failed: %s", cad_err_name(rc));
  }
  origin_t o = job_origin(j);
  switch (res.disposition) {
    case CAD_ROUTE_DELIVER: enqueue(j, &res); return;
    case CAD_ROUTE_DEAD_LETTER: dead_letter(j, &res.diag); return;
    case CAD_ROUTE_FILTERED: conclude(j->p, j->ch, &o, CAD_PIPE_FILTERED, NULL); break;
    case CAD_ROUTE_REJECTED: conclude(j->p, j->ch, &o, CAD_PIPE_UNROUTED, &res.diag); break;
    case CAD_ROUTE_ERROR: conclude(j->p, j->ch, &o, CAD_PIPE_ROUTE_ERROR, &res.diag); break;
  }
  job_free(j);
}

/* A frame answered before any job exists (too big, out of memory). */
static void conclude_frame(cad_pipe_t *p, cad_pipe_chan_t *ch, const cad_pipe_frame_t *f,
                           cad_pipe_outcome_t which, const cad_hl7_diag_t *dg) {
  cad_ack_msh_t h;
  cad_ack_msh_salvage(f->bytes.p, f->bytes.len, 0, &h);
  size_t size =
      f->status == CAD_E_TOOBIG && f->size > f->bytes.len ? (size_t)f->size : f->bytes.len;
  origin_t o = {f->req, f->src,   f->conn, f->peer, &h,   size, f->cut,
                0,      f->bytes, NULL,    NULL,    0,    uv_hrtime()};
  conclude(p, ch, &o, which, dg);
}

void cad_pipe_frame(cad_pipe_t *p, cad_pipe_chan_t *ch, const cad_pipe_frame_t *f) {
  ch->st->received++;
  ch->st->bytes += f->bytes.len;
  if (f->status == CAD_E_TOOBIG) {
    cad_hl7_diag_t dg = {.code = CAD_E_TOOBIG, .hl7_code = 207};
    snprintf(dg.reason, sizeof dg.reason, "message larger than max_message_size (%zu bytes)",
             ch->cc->listener.max_frame);
    conclude_frame(p, ch, f, CAD_PIPE_TOO_BIG, &dg);
    return;
  }
  job_t *j = calloc(1, sizeof *j);
  char *bytes = j ? malloc(f->bytes.len ? f->bytes.len : 1) : NULL;
  if (!j || !bytes) {
    free(j);
    cad_hl7_diag_t dg = {.code = CAD_E_NOMEM, .hl7_code = 207, .reason = "out of memory"};
    conclude_frame(p, ch, f, CAD_PIPE_NOMEM, &dg);
    return;
  }
  if (f->bytes.len) memcpy(bytes, f->bytes.p, f->bytes.len);
  j->p = p;
  j->ch = ch;
  j->t0_ns = uv_hrtime();
  j->req = f->req;
  j->src = f->src;
  j->bytes = bytes;
  j->len = f->bytes.len;
  j->conn = f->conn;
  cad_str_copy(j->peer, sizeof j->peer, f->peer);
  if (p->io.hold) p->io.hold(p->io.ud, ch->owner, +1);
  /* The tree needs at most a few dozen bytes per input byte (spans of
   * segments and fields); the budget bounds it all the same. */
  cad_arena_init(&j->arena, MSG_ARENA_CHUNK, 64 * (j->len + 1024));
  cad_hl7_diag_t dg;
  if (parse_message(j, &dg) < 0) {
    origin_t o = job_origin(j);
    conclude(p, ch, &o, CAD_PIPE_REJECTED, &dg);
    job_free(j);
    return;
  }
  route_and_queue(j);
}

void cad_pipe_init(cad_pipe_t *p, const cad_pipe_io_t *io) {
  memset(p, 0, sizeof *p);
  p->io = *io;
}

int cad_pipe_archive_open(cad_pipe_t *p, const cad_config_t *cfg) {
  if (!cfg->archive_enabled) return 0;
  cad_archive_opts_t o = {.data_dir = cfg->data_dir,
                          .retain_ms = cfg->archive_retain_ms,
                          .max_bytes = cfg->archive_max_bytes,
                          .rebuild = true,
                          .nice = 10,
                          .stats_ms = cfg->stats_interval_ms};
  /* Each channel's index fields (the engine's and its own), fts, retain. */
  cad_archive_chan_t *ch = calloc(cfg->nchannels ? cfg->nchannels : 1, sizeof *ch);
  cad_archive_field_t *fl =
      calloc(cfg->nchannels ? cfg->nchannels : 1, CAD_ARCHIVE_MAX_FIELDS * sizeof *fl);
  if (!ch || !fl) {
    free(ch);
    free(fl);
    return CAD_E_NOMEM;
  }
  for (size_t i = 0; i < cfg->nchannels; i++) {
    const cad_conf_channel_t *cc = &cfg->channels[i];
    cad_archive_field_t *f = fl + i * CAD_ARCHIVE_MAX_FIELDS;
    size_t n = 0;
    for (size_t k = 0; k < cfg->archive_index.n && n < CAD_ARCHIVE_MAX_FIELDS; k++)
      f[n++] = (cad_archive_field_t){cfg->archive_index.f[k].name, cfg->archive_index.f[k].path};
    for (size_t k = 0; k < cc->archive.index.n && n < CAD_ARCHIVE_MAX_FIELDS; k++)
      f[n++] = (cad_archive_field_t){cc->archive.index.f[k].name, cc->archive.index.f[k].path};
    ch[i] = (cad_archive_chan_t){cc->name, f, n,
                                 cc->archive.fts ? cc->archive.fts == 2 : cfg->archive_fts,
                                 cc->archive.retain_ms};
  }
  o.chans = ch;
  o.nchans = cfg->nchannels;
  int rc = cad_archive_open(&o, &p->archive);
  free(ch);
  free(fl);
  return rc;
}

void cad_pipe_archive_close(cad_pipe_t *p) {
  cad_archive_close(p->archive);
  p->archive = NULL;
}

void cad_pipe_chan_init(cad_pipe_chan_t *ch, const cad_conf_channel_t *cc, cad_chan_stats_t *st,
                        void *owner) {
  memset(ch, 0, sizeof *ch);
  ch->cc = cc;
  ch->st = st;
  ch->owner = owner;
  ch->limits.max_bytes = cc->listener.max_frame;
  ch->dlq_qid = -1;
  ch->ack_style = cc->listener.ack_style;
}
