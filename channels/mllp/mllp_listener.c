/* mllp_listener.c - libuv MLLP server (mllp_listener.h). */
#include "mllp_listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "mllp.h"
#include "mllp_listener_int.h"

#define DEFAULT_MAX_FRAME (4u << 20)
#define DEFAULT_MAX_CONNS 4096u
#define DEFAULT_INFLIGHT 64u
#define DEFAULT_UNSENT (1u << 20)
/* How long a 0x1C that is the last byte received waits for the byte after
 * it before it is taken as the end of its frame (a sender without the CR). */
#define EB_GRACE_MS 200u
/* A connection allowed past the buffer bound keeps that favour while it
 * sends; after this long without a read another one may take it. */
#define FAVOR_IDLE_MS 200u

typedef struct {
  conn_t *c;
  size_t len;
  char data[];
} wreq_t;

static uint64_t next_conn_id = 1;

/* Process-wide: framer bytes held by every connection of every listener,
 * and the bound (cad_mllp_set_buffer_limit). */
static size_t buffered_total;
static size_t buffer_limit = CAD_MLLP_BUFFER_LIMIT;
static conn_t *mem_paused_head; /* connections stopped by the bound */
static conn_t *mem_favored;     /* may read past the bound to finish its frame */

static void conn_close(conn_t *c, const char *reason, int err);
static void conn_flush(conn_t *c);
static void listener_maybe_done(cad_mllp_listener_t *l);

static void emit(cad_mllp_listener_t *l, cad_mllp_event_kind_t kind, conn_t *c, const char *reason,
                 int err, uint64_t count) {
  if (!l->on_event) return;
  cad_mllp_event_t ev = {kind, c ? &c->info : NULL, reason, err, count, NULL};
  l->on_event(&ev, l->data);
}

static void emit_detail(cad_mllp_listener_t *l, cad_mllp_event_kind_t kind, conn_t *c, int err,
                        const char *detail) {
  if (!l->on_event) return;
  cad_mllp_event_t ev = {kind, c ? &c->info : NULL, NULL, err, 0, detail};
  l->on_event(&ev, l->data);
}

#define DEFAULT_HANDSHAKE_MS 10000u

static void apply_defaults(cad_mllp_listener_opts_t *o) {
  if (!o->max_frame) o->max_frame = DEFAULT_MAX_FRAME;
  if (!o->max_connections) o->max_connections = DEFAULT_MAX_CONNS;
  if (!o->max_inflight) o->max_inflight = DEFAULT_INFLIGHT;
  if (!o->max_unsent) o->max_unsent = DEFAULT_UNSENT;
  if (!o->fd_reserve) o->fd_reserve = CAD_MLLP_FD_RESERVE;
}

/* ---- timers ----------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);
static void check_pressure(conn_t *c);
static void mem_pass_favor(void);

static void update_timer(conn_t *c) {
  if (c->closing || c->lingering) return;
  cad_mllp_listener_t *l = c->l;
  uint64_t now = uv_now(l->loop), deadline = UINT64_MAX;
  if (c->eb_wait && c->eb_since + EB_GRACE_MS < deadline) deadline = c->eb_since + EB_GRACE_MS;
  if (c == mem_favored && c->last_read + FAVOR_IDLE_MS < deadline)
    deadline = c->last_read + FAVOR_IDLE_MS;
  /* The mid-frame clock does not run while we stopped reading ourselves
   * (backpressure): the stall is ours, not the peer's. */
  if (l->o.frame_timeout_ms && c->in_frame && !c->draining && !c->paused && c->nreq == 0 &&
      c->frame_start + l->o.frame_timeout_ms < deadline)
    deadline = c->frame_start + l->o.frame_timeout_ms;
  /* Idle: nothing read or written for a while, and we are not the ones
   * keeping the peer waiting (requests being processed, nothing to write). */
  if (l->o.idle_timeout_ms && (c->nreq == 0 || c->unsent > 0)) {
    uint64_t d = c->last_activity + l->o.idle_timeout_ms;
    if (d < deadline) deadline = d;
  }
  if (deadline == UINT64_MAX) {
    uv_timer_stop(&c->timer);
    return;
  }
  uv_timer_start(&c->timer, timer_cb, deadline > now ? deadline - now : 0, 0);
}

static void timer_cb(uv_timer_t *t) {
  conn_t *c = t->data;
  cad_mllp_listener_t *l = c->l;
  if (c->lingering) return; /* the transport's lingering close ends it */
  uint64_t now = uv_now(l->loop);
  if (c == mem_favored && now >= c->last_read + FAVOR_IDLE_MS) {
    mem_pass_favor(); /* it stalled: another frame in progress may go on */
    update_timer(c);
    return;
  }
  if (c->eb_wait && now >= c->eb_since + EB_GRACE_MS && !c->draining) {
    /* The sender ended its frame with 0x1C alone and waits: take it. */
    c->eb_wait = false;
    cad_mllp_accept_eb(&c->fr);
    c->more_frames = true;
    check_pressure(c);
    if (!c->closing) update_timer(c);
    return;
  }
  if (l->o.frame_timeout_ms && c->in_frame && !c->draining && !c->paused && c->nreq == 0 &&
      now >= c->frame_start + l->o.frame_timeout_ms) {
    conn_close(c, "frame_timeout", 0);
    return;
  }
  if (l->o.idle_timeout_ms && (c->nreq == 0 || c->unsent > 0) &&
      now >= c->last_activity + l->o.idle_timeout_ms) {
    conn_close(c, "idle_timeout", 0);
    return;
  }
  update_timer(c);
}

/* ---- backpressure ------------------------------------------------------ */

static void linger(conn_t *c);

static void start_reading(conn_t *c) {
  if (c->reading || c->closing || c->draining || c->paused || c->mem_paused || !c->t) return;
  if (cad_transport_read_start(c->t) == 0) c->reading = true;
}

static void stop_reading(conn_t *c) {
  if (!c->reading) return;
  if (c->t) cad_transport_read_stop(c->t);
  c->reading = false;
}

static void pull_frames(conn_t *c);

/* ---- the process-wide bound on buffered bytes -------------------------- */

static void mem_unlink(conn_t *c) {
  if (!c->mem_paused) return;
  if (c->mp_prev) c->mp_prev->mp_next = c->mp_next;
  else mem_paused_head = c->mp_next;
  if (c->mp_next) c->mp_next->mp_prev = c->mp_prev;
  c->mp_prev = c->mp_next = NULL;
  c->mem_paused = false;
}

/* Below half the bound again: every connection stopped by it reads again
 * (and stops again at once if the bound is reached anew). */
static void mem_resume_all(void) {
  while (mem_paused_head && buffered_total <= buffer_limit / 2) {
    conn_t *c = mem_paused_head;
    mem_unlink(c);
    start_reading(c);
  }
}

/* The favoured connection stalled or finished: let every stopped one with
 * a frame in progress read again; the first with bytes takes the favour,
 * the others stop again at their next read. */
static void mem_pass_favor(void) {
  mem_favored = NULL;
  for (conn_t *c = mem_paused_head, *n; c; c = n) {
    n = c->mp_next;
    if (!c->in_frame) continue;
    mem_unlink(c);
    start_reading(c);
  }
}

/* Over the bound, one connection with a frame in progress (the first met)
 * goes on until that frame ends, so a message of max_frame bytes always
 * gets through even when the bound is smaller than a few of them. */
static bool mem_exempt(conn_t *c) {
  if (mem_favored && !mem_favored->in_frame) mem_pass_favor(); /* its frame ended */
  if (!mem_favored && c->in_frame && !c->closing) {
    mem_favored = c;
    update_timer(c); /* watches that it keeps sending */
  }
  return mem_favored == c;
}

static void mem_pause(conn_t *c) {
  if (c->closing || c->mem_paused || mem_exempt(c)) return;
  c->mem_paused = true;
  c->mp_next = mem_paused_head;
  if (mem_paused_head) mem_paused_head->mp_prev = c;
  mem_paused_head = c;
  stop_reading(c);
}

/* Compact the framer and count its capacity in the process-wide total;
 * over the bound, this connection stops reading (no new frame starts). */
static void account(conn_t *c) {
  if (!c->closing) cad_mllp_feed(&c->fr, NULL, 0); /* compacts, never fails */
  size_t cap = c->closing ? 0 : c->fr.buf.cap;
  bool freed = cap < c->accounted;
  buffered_total = buffered_total - c->accounted + cap;
  c->accounted = cap;
  if (buffered_total > buffer_limit) mem_pause(c);
  if (freed) mem_resume_all();
}

void cad_mllp_set_buffer_limit(size_t bytes) {
  buffer_limit = bytes ? bytes : CAD_MLLP_BUFFER_LIMIT;
  mem_resume_all();
}

size_t cad_mllp_buffered(void) { return buffered_total; }

static void check_pressure(conn_t *c) {
  if (c->closing || c->draining) return;
  const cad_mllp_listener_opts_t *o = &c->l->o;
  /* Buffered frames go first whenever there is room for them. */
  if (c->more_frames && c->nreq < o->max_inflight) {
    pull_frames(c);
    if (c->closing || c->draining) return;
  }
  if (!c->paused && (c->nreq >= o->max_inflight || c->unsent >= o->max_unsent)) {
    c->paused = true;
    stop_reading(c);
    emit(c->l, CAD_MLLP_EV_PAUSE, c, NULL, 0, c->nreq);
  } else if (c->paused && c->nreq <= o->max_inflight / 2 && c->unsent <= o->max_unsent / 2) {
    c->paused = false;
    /* The peer gets a whole frame_timeout again from when we read again. */
    if (c->in_frame) c->frame_start = uv_now(c->l->loop);
    start_reading(c);
    emit(c->l, CAD_MLLP_EV_RESUME, c, NULL, 0, c->nreq);
  }
}

/* ---- connection lifetime ----------------------------------------------- */

static void conn_free_if_done(conn_t *c) {
  if (c->open_handles > 0 || c->nreq > 0) return;
  cad_mllp_listener_t *l = c->l;
  if (c->prev) c->prev->next = c->next;
  else l->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  cad_mllp_free(&c->fr);
  account(c); /* closing: counts 0 */
  free(c);
  listener_maybe_done(l);
}

static void conn_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->open_handles--;
  conn_free_if_done(c);
}

/* The transport is closed and freed (its write callbacks have run). */
static void conn_transport_closed(void *arg) {
  conn_t *c = arg;
  c->t = NULL;
  c->open_handles--;
  conn_free_if_done(c);
}

/* Close a connection that never opened (no OPEN / CLOSE events). */
static void conn_abort(conn_t *c) {
  c->closing = true;
  c->l->nconns--;
  cad_transport_close(c->t, false, 0, conn_transport_closed, c);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void conn_close(conn_t *c, const char *reason, int err) {
  if (c->closing) return;
  c->closing = true;
  stop_reading(c);
  mem_unlink(c);
  if (mem_favored == c) mem_pass_favor();
  c->l->nconns--;
  emit(c->l, CAD_MLLP_EV_CLOSE, c, reason, err, c->fr.skipped);
  if (c->t) cad_transport_close(c->t, false, 0, conn_transport_closed, c);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
  /* Drop replies already answered but waiting behind nothing. */
  conn_flush(c);
}

/* After a closing reply (a NAK for an oversized frame) the peer may still be
 * sending: the transport's lingering close (our FIN, then input discarded
 * until the peer's, at most 64 MiB or LINGER_MS) keeps a reset from
 * destroying the NAK before the peer reads it.  The CLOSE event follows. */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES ((size_t)64 << 20)

static void linger_done(void *arg) {
  conn_t *c = arg;
  c->t = NULL;
  c->open_handles--;
  if (c->closing) conn_free_if_done(c); /* cut short by conn_close */
  else conn_close(c, c->close_reason, 0);
}

static void linger(conn_t *c) {
  if (c->lingering || c->closing) return;
  c->lingering = true;
  c->reading = false;
  uv_timer_stop(&c->timer);
  cad_transport_close_linger(c->t, LINGER_MS, LINGER_MAX_BYTES, linger_done, c);
}

/* Stop reading and close once every request is answered and written. */
static void conn_drain(conn_t *c, const char *reason) {
  if (c->closing) return;
  if (!c->draining) {
    c->draining = true;
    c->close_reason = reason;
    stop_reading(c);
  }
  if (c->pulling) return; /* pull_frames checks again when it is done */
  if (!c->stop_frames && cad_mllp_eb_pending(&c->fr)) {
    /* The peer is done: a 0x1C it sent last ends its frame. */
    c->eb_wait = false;
    cad_mllp_accept_eb(&c->fr);
    c->more_frames = true;
  }
  /* After the peer's EOF, frames it sent before are still answered. */
  if (!c->stop_frames && c->more_frames && c->nreq < c->l->o.max_inflight) pull_frames(c);
  if (c->closing) return;
  if (c->nreq == 0 && c->nwrites == 0 && (c->stop_frames || !c->more_frames)) {
    if (c->replies_closed) {
      linger(c);
      return;
    }
    conn_close(c, c->close_reason, 0);
  }
}

static void on_write(cad_transport_t *t, int status, void *arg) {
  (void)t;
  wreq_t *wr = arg;
  conn_t *c = wr->c;
  c->unsent -= wr->len;
  c->nwrites--;
  free(wr);
  if (c->closing) {
    conn_free_if_done(c);
    return;
  }
  if (status < 0) {
    conn_close(c, status == UV_ECONNRESET || status == UV_EPIPE ? "reset" : "write_error", status);
    return;
  }
  c->last_activity = uv_now(c->l->loop);
  if (c->draining) {
    conn_drain(c, c->close_reason);
    return;
  }
  check_pressure(c);
  update_timer(c);
}

/* Write every answered request at the head of the FIFO, in order. */
static void conn_flush(conn_t *c) {
  size_t total = 0;
  bool close_after = false;
  for (cad_mllp_req_t *r = c->head; r && r->done; r = r->next) total += r->len;
  wreq_t *wr = NULL;
  if (total && !c->closing && !c->replies_closed) {
    wr = malloc(sizeof *wr + total);
    if (!wr) {
      conn_close(c, "write_error", CAD_E_NOMEM);
      return;
    }
    wr->c = c;
    wr->len = 0;
  }
  while (c->head && c->head->done) {
    cad_mllp_req_t *r = c->head;
    c->head = r->next;
    if (!c->head) c->tail = NULL;
    c->nreq--;
    if (wr && r->len && !close_after) { /* nothing after a closing reply is sent */
      memcpy(wr->data + wr->len, r->ack, r->len);
      wr->len += r->len;
    }
    if (r->flags & CAD_MLLP_REPLY_CLOSE) close_after = true;
    free(r->ack);
    free(r);
  }
  if (c->closing) {
    free(wr);
    conn_free_if_done(c);
    return;
  }
  if (wr && wr->len == 0) {
    free(wr);
    wr = NULL;
  }
  if (wr) { /* written at once, or kept by the transport until on_write */
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    int rc = cad_transport_write(c->t, &b, 1, on_write, wr);
    if (rc < 0) {
      free(wr);
      conn_close(c, "write_error", rc);
      return;
    }
    if (rc == CAD_TRANSPORT_WRITTEN) {
      free(wr);
      c->last_activity = uv_now(c->l->loop);
    } else {
      c->unsent += wr->len;
      c->nwrites++;
    }
  }
  if (close_after) {
    c->stop_frames = true;
    c->replies_closed = true; /* replies behind it are dropped */
    conn_drain(c, c->close_reason ? c->close_reason : "closed_by_reply");
    /* Requests behind a closing reply are dropped when they are answered. */
    return;
  }
  if (c->draining) {
    conn_drain(c, c->close_reason);
    return;
  }
  check_pressure(c);
  update_timer(c);
}

int cad_mllp_reply(cad_mllp_req_t *r, const char *ack, size_t len, unsigned flags) {
  conn_t *c = r->c;
  int rc = 0;
  r->done = true;
  r->flags |= flags;
  if (len && !c->closing) {
    size_t need = len + 3;
    r->ack = malloc(need);
    if (!r->ack) {
      rc = CAD_E_NOMEM;
      conn_close(c, "write_error", CAD_E_NOMEM);
    } else {
      r->ack[0] = CAD_MLLP_SB;
      memcpy(r->ack + 1, ack, len);
      r->ack[len + 1] = CAD_MLLP_EB;
      r->ack[len + 2] = CAD_MLLP_CR;
      r->len = need;
    }
  } else if (c->closing) {
    rc = CAD_E_STATE;
  }
  conn_flush(c);
  return rc;
}

const cad_mllp_conn_info_t *cad_mllp_req_conn(const cad_mllp_req_t *r) { return &r->c->info; }

uint64_t cad_mllp_req_size(const cad_mllp_req_t *r, bool *cut) {
  if (cut) *cut = r->cut;
  return r->size;
}

static cad_mllp_req_t *new_req(conn_t *c) {
  cad_mllp_req_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->c = c;
  if (c->tail) c->tail->next = r;
  else c->head = r;
  c->tail = r;
  c->nreq++;
  return r;
}

/* ---- reading (transport callbacks) ----------------------------------- */

static void on_plain(conn_t *c, const char *p, size_t n);

/* Over the process-wide bound, read nothing (one connection with a frame in
 * progress excepted); then mem_pause stops reading until mem_resume_all. */
static bool conn_may_read(cad_transport_t *t) {
  conn_t *c = cad_transport_data(t);
  return buffered_total <= buffer_limit || mem_exempt(c);
}

static void conn_read_refused(cad_transport_t *t) {
  conn_t *c = cad_transport_data(t);
  if (buffered_total > buffer_limit) mem_pause(c);
}

static void conn_on_ready(cad_transport_t *t) {
  conn_t *c = cad_transport_data(t);
  if (!cad_transport_is_tls(t)) return; /* plain TCP: from inside accept */
  emit_detail(c->l, CAD_MLLP_EV_TLS_READY, c, 0, cad_transport_peer_name(t));
  update_timer(c);
}

static void conn_on_data(cad_transport_t *t, const char *p, size_t n) {
  conn_t *c = cad_transport_data(t);
  c->last_read = uv_now(c->l->loop);
  if (!c->closing && !c->lingering) on_plain(c, p, n);
}

static void tls_failed(conn_t *c, int err, const char *why) {
  emit_detail(c->l, CAD_MLLP_EV_TLS_FAILED, c, err, why);
  conn_close(c, "tls_error", err);
}

/* The stream ended for reading (the transport has stopped reading). */
static void conn_on_error(cad_transport_t *t, int err) {
  conn_t *c = cad_transport_data(t);
  c->reading = false;
  if (c->closing || c->lingering) return;
  if (err == UV_EOF) {
    /* The peer finished sending (FIN or close_notify; or a port probe that
     * connected and left): answer what it sent, then close. */
    conn_drain(c, "eof");
  } else if (err == UV_ETIMEDOUT) {
    tls_failed(c, UV_ETIMEDOUT, "handshake timed out");
  } else if (err == UV_EPROTO) {
    tls_failed(c, UV_EPROTO, cad_transport_reason(t));
  } else {
    conn_close(c, err == UV_ECONNRESET ? "reset" : "read_error", err);
  }
}

static const cad_transport_cbs_t conn_cbs = {conn_on_ready, conn_on_data, conn_on_error};

/* Plaintext from the peer (as read, or decrypted). */
static void on_plain(conn_t *c, const char *p, size_t n) {
  cad_mllp_listener_t *l = c->l;
  uint64_t skipped0 = c->fr.skipped, content0 = c->content_frames;
  if (cad_mllp_feed(&c->fr, p, n) < 0) {
    conn_close(c, "read_error", CAD_E_NOMEM);
    return;
  }
  pull_frames(c);
  if (c->closing) return;
  /* Activity is what a frame carries: bytes skipped outside any frame and
   * empty frames do not keep an idle connection open. */
  if (c->in_frame || c->content_frames != content0) c->last_activity = uv_now(l->loop);
  c->eb_wait = cad_mllp_eb_pending(&c->fr);
  if (c->eb_wait) c->eb_since = uv_now(l->loop);
  account(c);
  if (c->fr.skipped != skipped0 && !c->skip_reported) {
    c->skip_reported = true;
    emit(l, CAD_MLLP_EV_SKIPPED, c, NULL, 0, c->fr.skipped);
  }
  if (c->closing) return;
  if (c->fr.skipped - c->skipped_mark > l->o.max_frame) {
    conn_close(c, "garbage", CAD_E_FRAME);
    return;
  }
  if (c->draining) {
    conn_drain(c, c->close_reason);
    return;
  }
  check_pressure(c);
  update_timer(c);
}

/* A frame holding a 0x1C not followed by 0x0D: refused here with one NAK
 * (AR, ERR 102), in its place among the replies, so the sender's count of
 * answers stays right and nothing truncated is ever accepted. */
static void nak_stray(conn_t *c, cad_str_t frame) {
  cad_mllp_listener_t *l = c->l;
  cad_mllp_req_t *r = new_req(c);
  if (!r) {
    conn_close(c, "read_error", CAD_E_NOMEM);
    return;
  }
  if (l->on_event) {
    cad_mllp_event_t ev = {CAD_MLLP_EV_BADFRAME, &c->info,  "stray_end_block",
                           CAD_E_FRAME,          frame.len, NULL};
    l->on_event(&ev, l->data);
  }
  cad_buf_t b = CAD_BUF_INIT;
  if (cad__mllp_stray_nak(frame, l->o.ack_style, c->info.id, ++c->nak_seq, &b) == 1)
    cad_mllp_reply(r, b.data, b.len, 0);
  else cad_mllp_reply(r, NULL, 0, 0);
  cad_buf_free(&b);
}

/* Hand complete frames from the framer to the frame callback while fewer
 * than max_inflight requests are open; the rest wait in the framer (bounded
 * by max_frame + one read) until answers make room. */
static void pull_frames(conn_t *c) {
  if (c->pulling || c->closing) return;
  cad_mllp_listener_t *l = c->l;
  c->pulling = true;
  c->more_frames = false;
  bool completed = false;
  for (;;) {
    if (c->closing || c->stop_frames) break;
    if (c->nreq >= l->o.max_inflight) {
      c->more_frames = true;
      break;
    }
    cad_str_t frame = {NULL, 0};
    int rc = cad_mllp_next(&c->fr, &frame);
    if (rc == 0) break;
    if (rc == CAD_MLLP_STRAY_EB) {
      completed = true;
      c->content_frames++;
      c->skipped_mark = c->fr.skipped;
      nak_stray(c, frame);
      continue;
    }
    if (rc == 1 || rc == CAD_E_TOOBIG) {
      /* A frame ended: the next one gets a whole frame_timeout.  A frame
       * cut by a start block does not (a 0x0B every second would). */
      completed = true;
      if (frame.len) c->content_frames++;
      c->skipped_mark = c->fr.skipped;
      cad_mllp_req_t *r = new_req(c);
      if (!r) {
        c->pulling = false;
        conn_close(c, "read_error", CAD_E_NOMEM);
        return;
      }
      if (rc == CAD_E_TOOBIG) {
        /* Answer it (a NAK when its header can be read), then close. */
        r->flags |= CAD_MLLP_REPLY_CLOSE;
        r->size = c->fr.oversize;
        r->cut = c->fr.oversize_cut;
        c->stop_frames = true;
        if (!c->draining) {
          c->draining = true;
          c->close_reason = "too_big";
          stop_reading(c);
        }
      }
      l->on_frame(r, rc == 1 ? 0 : rc, frame, l->data);
      continue;
    }
    /* CAD_E_FRAME or another framing error: that frame is dropped. */
    emit(l, CAD_MLLP_EV_BADFRAME, c, NULL, rc, frame.len);
  }
  c->pulling = false;
  if (c->closing) return;
  bool in = cad_mllp_in_frame(&c->fr);
  if (in && (!c->in_frame || completed)) c->frame_start = uv_now(l->loop);
  c->in_frame = in;
  if (c->draining) conn_drain(c, c->close_reason);
}

/* ---- accepting --------------------------------------------------------- */

/* Over max_connections: accept (to say who it was) and close at once. */
static void refuse_over_limit(cad_mllp_listener_t *l, uv_stream_t *server) {
  cad_transport_t *t = NULL;
  if (cad_transport_new(l->loop, &conn_cbs, NULL, &t) != 0) return;
  if (uv_accept(server, cad_transport_stream(t)) == 0) {
    cad_mllp_conn_info_t info = {0, ""};
    struct sockaddr_storage ss;
    bool have = cad_transport_peer_addr(t, &ss) == 0;
    cad__mllp_format_peer(have ? &ss : NULL, info.peer, sizeof info.peer);
    if (l->on_event) {
      cad_mllp_event_t ev = {CAD_MLLP_EV_REFUSED, &info, "max_connections", 0, l->nconns, NULL};
      l->on_event(&ev, l->data);
    }
  }
  cad_transport_close(t, false, 0, NULL, NULL);
}

/* Accepted: refused by the descriptor reserve or the allow-list (events
 * emitted), else 0. */
static int screen(conn_t *c) {
  cad_mllp_listener_t *l = c->l;
  if (cad__mllp_fd_reserve_touched(cad_transport_stream(c->t), l->fd_limit, l->o.fd_reserve)) {
    /* Descriptors left for the store and destinations come first: refuse
     * this one (it is closed at once; others get in as descriptors free). */
    emit(l, CAD_MLLP_EV_ACCEPT_ERROR, NULL, "fd_reserve", UV_EMFILE, 0);
    return UV_EMFILE;
  }
  struct sockaddr_storage ss;
  bool have = cad_transport_peer_addr(c->t, &ss) == 0;
  cad__mllp_format_peer(have ? &ss : NULL, c->info.peer, sizeof c->info.peer);
  if (l->nallow && (!have || !cad_cidr_match(l->allow, l->nallow, (struct sockaddr *)&ss))) {
    emit(l, CAD_MLLP_EV_DENIED, c, "not_allowed", 0, 0);
    return UV_EACCES;
  }
  return 0;
}

static void on_connection(uv_stream_t *server, int status) {
  cad_mllp_listener_t *l = server->data;
  if (status < 0) {
    emit(l, CAD_MLLP_EV_ACCEPT_ERROR, NULL, NULL, status, 0);
    return;
  }
  if (l->closing) return;
  if (l->nconns >= l->o.max_connections) {
    refuse_over_limit(l, server);
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  int rc = c ? cad_transport_new(l->loop, &conn_cbs, c, &c->t) : CAD_E_NOMEM;
  if (rc < 0) {
    free(c);
    emit(l, CAD_MLLP_EV_ACCEPT_ERROR, NULL, NULL, rc, 0);
    return;
  }
  cad_transport_set_read_gate(c->t, conn_may_read, conn_read_refused);
  c->l = l;
  uv_timer_init(l->loop, &c->timer);
  c->timer.data = c;
  c->open_handles = 2;
  c->next = l->conns;
  if (l->conns) l->conns->prev = c;
  l->conns = c;
  l->nconns++;
  cad_mllp_init(&c->fr, l->o.max_frame);
  c->info.id = next_conn_id++;
  rc = uv_accept(server, cad_transport_stream(c->t));
  if (rc < 0) emit(l, CAD_MLLP_EV_ACCEPT_ERROR, NULL, NULL, rc, 0);
  if (rc < 0 || screen(c) < 0) {
    conn_abort(c); /* no OPEN / CLOSE events for it */
    return;
  }
  uint64_t hs = l->o.handshake_timeout_ms ? l->o.handshake_timeout_ms : DEFAULT_HANDSHAKE_MS;
  rc = cad_transport_accept(c->t, l->tls, hs); /* reading starts */
  if (rc < 0) {
    emit(l, CAD_MLLP_EV_ACCEPT_ERROR, NULL, NULL, rc, 0);
    conn_abort(c);
    return;
  }
  c->reading = true;
  c->last_activity = uv_now(l->loop);
  emit(l, CAD_MLLP_EV_OPEN, c, NULL, 0, l->nconns);
  update_timer(c);
}

int cad_mllp_listener_start(uv_loop_t *loop, const cad_mllp_listener_opts_t *opts,
                            cad_mllp_frame_cb on_frame, cad_mllp_event_cb on_event, void *data,
                            cad_mllp_listener_t **out) {
  if (!opts || !opts->host || !on_frame || opts->port < 0 || opts->port > 65535) return UV_EINVAL;
  struct sockaddr_storage ss;
  bool v6 = strchr(opts->host, ':') != NULL;
  int rc = v6 ? uv_ip6_addr(opts->host, opts->port, (struct sockaddr_in6 *)&ss)
              : uv_ip4_addr(opts->host, opts->port, (struct sockaddr_in *)&ss);
  if (rc < 0) return rc;
  cad_mllp_listener_t *l = calloc(1, sizeof *l);
  if (!l) return CAD_E_NOMEM;
  l->loop = loop;
  l->o = *opts;
  apply_defaults(&l->o);
  l->fd_limit = cad__mllp_soft_fd_limit();
  snprintf(l->host, sizeof l->host, "%s", opts->host);
  l->o.host = l->host;
  l->on_frame = on_frame;
  l->on_event = on_event;
  l->data = data;
  if (opts->nallow) {
    l->allow = malloc(opts->nallow * sizeof *l->allow);
    if (!l->allow) {
      free(l);
      return CAD_E_NOMEM;
    }
    memcpy(l->allow, opts->allow, opts->nallow * sizeof *l->allow);
    l->nallow = opts->nallow;
  }
  l->tls = cad_tls_ctx_ref(opts->tls);
  l->o.tls = NULL;
  l->o.allow = NULL;
  uv_tcp_init(loop, &l->server);
  uv_timer_init(loop, &l->drain_timer);
  l->server.data = l;
  l->drain_timer.data = l;
  l->open_handles = 2;
  rc = uv_tcp_bind(&l->server, (struct sockaddr *)&ss, v6 ? UV_TCP_IPV6ONLY : 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&l->server, 511, on_connection);
  if (rc < 0) {
    /* Close synchronously enough for the caller: the handles are freed in
     * their close callbacks through listener_maybe_done. */
    l->closing = true;
    cad_mllp_listener_close(l, 0, NULL, NULL);
    return rc;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  l->port = opts->port;
  if (uv_tcp_getsockname(&l->server, (struct sockaddr *)&bound, &blen) == 0)
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  *out = l;
  return 0;
}

int cad_mllp_listener_port(const cad_mllp_listener_t *l) { return l->port; }
size_t cad_mllp_listener_nconns(const cad_mllp_listener_t *l) { return l->nconns; }
void cad_mllp_listener_set_data(cad_mllp_listener_t *l, void *data) { l->data = data; }

int cad_mllp_listener_update(cad_mllp_listener_t *l, const cad_mllp_listener_opts_t *opts) {
  cad_cidr_t *allow = NULL;
  if (opts->nallow) {
    allow = malloc(opts->nallow * sizeof *allow);
    if (!allow) return CAD_E_NOMEM;
    memcpy(allow, opts->allow, opts->nallow * sizeof *allow);
  }
  free(l->allow);
  l->allow = allow;
  l->nallow = opts->nallow;
  cad_tls_ctx_t *old = l->tls; /* connections keep their own reference */
  l->tls = cad_tls_ctx_ref(opts->tls);
  cad_tls_ctx_unref(old);
  cad_mllp_listener_opts_t o = *opts;
  apply_defaults(&o);
  o.host = l->host;
  o.port = l->port;
  o.tls = NULL;
  o.allow = NULL;
  l->o = o;
  l->fd_limit = cad__mllp_soft_fd_limit();
  for (conn_t *c = l->conns; c; c = c->next) {
    check_pressure(c);
    update_timer(c);
  }
  return 0;
}

/* ---- closing the listener ---------------------------------------------- */

static void listener_handle_closed(uv_handle_t *h) {
  cad_mllp_listener_t *l = h->data;
  l->open_handles--;
  listener_maybe_done(l);
}

static void listener_maybe_done(cad_mllp_listener_t *l) {
  if (!l->closing || l->conns) return;
  if (!uv_is_closing((uv_handle_t *)&l->drain_timer)) {
    uv_close((uv_handle_t *)&l->drain_timer, listener_handle_closed);
    return;
  }
  if (l->open_handles > 0) return;
  void (*done)(void *) = l->done;
  void *arg = l->done_arg;
  cad_tls_ctx_unref(l->tls);
  free(l->allow);
  free(l);
  if (done) done(arg);
}

static void drain_timeout(uv_timer_t *t) {
  cad_mllp_listener_t *l = t->data;
  for (conn_t *c = l->conns, *n; c; c = n) {
    n = c->next;
    conn_close(c, "shutdown", 0);
  }
}

void cad_mllp_listener_close(cad_mllp_listener_t *l, uint64_t drain_ms, void (*done)(void *),
                             void *arg) {
  l->closing = true;
  l->done = done;
  l->done_arg = arg;
  if (!uv_is_closing((uv_handle_t *)&l->server))
    uv_close((uv_handle_t *)&l->server, listener_handle_closed);
  if (l->conns) {
    for (conn_t *c = l->conns, *n; c; c = n) {
      n = c->next;
      c->stop_frames = true; /* frames not yet handed over are not started */
      conn_drain(c, "shutdown");
    }
    if (l->conns) uv_timer_start(&l->drain_timer, drain_timeout, drain_ms, 0);
  }
  listener_maybe_done(l);
}
