/* mllp_sender.c - outbound MLLP with ACK checking (mllp_sender.h). */
#include "mllp_sender.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/rand.h>

#include "ack.h"
#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"
#include "mllp.h"
#include "mllp_sender_int.h"

#define DEFAULT_CONNECT_MS 10000u
#define DEFAULT_ACK_MS 30000u
#define DEFAULT_MAX_ACK ((size_t)1 << 20)
#define MAX_ADDRS 16      /* addresses of one name tried per connect */
#define MIN_ADDR_MS 2000u /* the least time one address gets, unless less is left */

enum { TM_NONE = 0, TM_KICK, TM_CONNECT, TM_ACK, TM_IDLE };

/* One name lookup, allocated apart from the sender: once the thread pool
 * runs getaddrinfo nothing can stop it, so a sender that stops waiting
 * (connect timeout, close) sets s to NULL, asks uv_cancel to drop the work
 * if it has not started, and forgets the request.  The callback comes in
 * every case (UV_EAI_CANCELED when the cancel worked) and then only frees
 * the request and the answer: the sender may be gone by then. */
typedef struct gai_req {
  uv_getaddrinfo_t req;
  cad_mllp_sender_t *s; /* NULL: abandoned */
} gai_req_t;

struct cad_mllp_sender {
  uv_loop_t *loop;
  cad_mllp_sender_opts_t o; /* strings below are owned copies */
  char *host, *server_name;
  char hostport[300]; /* "host:port" for reasons */
  uv_timer_t timer;
  int timer_kind;
  cad_transport_t *tr; /* the current connection, or NULL */
  bool tr_ready;
  cad_mllp_framer_t fr;
  cad_arena_t arena; /* the ACK's parse tree */
  /* connecting */
  cad__getaddrinfo_fn resolve;              /* uv_getaddrinfo, or a test's */
  gai_req_t *gai;                           /* the lookup in flight (see gai_req_t), or NULL */
  struct sockaddr_storage addrs[MAX_ADDRS]; /* this connect's, ports set */
  int naddrs, next_addr;                    /* how many; the next one to try */
  bool fixed_addrs;                         /* an IP literal (or a test's list): never resolved */
  uint64_t deadline;                        /* uv_now() at which this connect times out */
  char conn_err[224];                       /* why the last address failed */
  /* the message in flight */
  bool busy, sent;
  bool bad_msg; /* no MSH header: finish with FAIL */
  bool reused;  /* the connection was there before the message */
  const char *msg;
  size_t len;
  cad_buf_t rewritten; /* the message with a new MSH-10 */
  uint64_t seq;
  cad_mllp_send_cb done;
  void *ctx;
  char ctl[64]; /* MSH-10 sent (raw) */
  size_t ctl_len;
  bool ctl_cut; /* longer than ctl: compare the whole span instead */
  cad_str_t ctl_span;
  uint64_t t_sent; /* uv_hrtime at the write */
  int pending_closes;
  bool closing, timer_closed;
  void (*close_done)(void *);
  void *close_arg;
  char detail[256];
  cad_mllp_result_t last;
  cad_mllp_sender_stats_t st;
};

static void connect_start(cad_mllp_sender_t *s);
static void send_now(cad_mllp_sender_t *s);
static void maybe_free(cad_mllp_sender_t *s);

static void set_err(char *err, size_t cap, const char *msg) {
  if (err && cap) snprintf(err, cap, "%s", msg);
}

static void timer_cb(uv_timer_t *t);

static void arm(cad_mllp_sender_t *s, int kind, uint64_t ms) {
  s->timer_kind = kind;
  uv_timer_start(&s->timer, timer_cb, ms, 0);
}

static void disarm(cad_mllp_sender_t *s) {
  uv_timer_stop(&s->timer);
  s->timer_kind = TM_NONE;
}

static void on_tr_closed(void *arg) {
  cad_mllp_sender_t *s = arg;
  s->pending_closes--;
  maybe_free(s);
}

/* Forget the connection (any late byte on it is never read). */
static void drop_conn(cad_mllp_sender_t *s, bool graceful) {
  if (!s->tr) return;
  cad_transport_t *tr = s->tr;
  s->tr = NULL;
  s->tr_ready = false;
  s->pending_closes++;
  s->st.closed++;
  cad_transport_close(tr, graceful, 0, on_tr_closed, s);
  cad_mllp_free(&s->fr);
  cad_mllp_init(&s->fr, s->o.max_ack);
}

/* Stop waiting for the lookup in flight (see gai_req_t). */
static void abandon_lookup(cad_mllp_sender_t *s) {
  gai_req_t *g = s->gai;
  if (!g) return;
  s->gai = NULL;
  g->s = NULL;
  uv_cancel((uv_req_t *)&g->req); /* UV_EBUSY: running; its callback frees g */
}

/* End the attempt: state first, the callback last (it may deliver again). */
static void finish(cad_mllp_sender_t *s, int outcome, const char *detail) {
  if (!s->busy) return;
  s->busy = false;
  s->sent = false;
  abandon_lookup(s);
  if (s->timer_kind != TM_IDLE) disarm(s);
  cad_mllp_send_cb done = s->done;
  void *ctx = s->ctx;
  s->done = NULL;
  s->msg = NULL;
  if (detail != s->detail) snprintf(s->detail, sizeof s->detail, "%s", detail);
  if (s->tr && s->tr_ready && !s->closing) {
    if (s->o.per_message) drop_conn(s, true);
    else if (s->o.idle_close_ms) arm(s, TM_IDLE, s->o.idle_close_ms);
  }
  cad_buf_clear(&s->rewritten);
  done(ctx, outcome, s->detail);
}

static void fail_attempt(cad_mllp_sender_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Close the connection and report RETRY with a reason. */
static void fail_attempt(cad_mllp_sender_t *s, const char *fmt, ...) {
  drop_conn(s, false);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->detail, sizeof s->detail, fmt, ap);
  va_end(ap);
  finish(s, CAD_MLLP_SEND_RETRY, s->detail);
}

static void fmt_ms(char *buf, size_t cap, uint64_t ms) {
  if (ms % 1000 == 0) snprintf(buf, cap, "%llus", (unsigned long long)(ms / 1000));
  else snprintf(buf, cap, "%llums", (unsigned long long)ms);
}

static void connect_timer(cad_mllp_sender_t *s);

static void timer_cb(uv_timer_t *t) {
  cad_mllp_sender_t *s = t->data;
  int kind = s->timer_kind;
  s->timer_kind = TM_NONE;
  char d[32];
  switch (kind) {
    case TM_KICK:
      if (!s->busy) return;
      if (s->bad_msg) {
        finish(s, CAD_MLLP_SEND_FAIL, "not an HL7 message (no MSH header)");
        return;
      }
      if (s->tr && s->tr_ready) {
        /* Kept from an earlier message: a close (or anything else) that came
       * while it was idle and the loop has not read yet shows now, before
       * the message is written; on_error / on_data then reconnect. */
        cad_transport_t *tr = s->tr;
        cad_transport_read_pending(tr);
        if (s->busy && !s->sent && s->tr == tr && s->tr_ready) send_now(s);
      } else {
        connect_start(s);
      }
      break;
    case TM_CONNECT: connect_timer(s); break;
    case TM_ACK:
      s->st.no_ack++;
      fmt_ms(d, sizeof d, s->o.ack_timeout_ms);
      fail_attempt(s, "no ACK within %s", d);
      break;
    case TM_IDLE:
      if (!s->busy) drop_conn(s, true);
      break;
    default: break;
  }
}

/* ---- the ACK ------------------------------------------------------------ */

/* The receiver's reason in a negative ACK, decoded, into out (see
 * cad_mllp_result_t.err_text). */
static void ack_reason(cad_arena_t *a, const cad_hl7_msg_t *m, const cad_hl7_seg_t *msa, char *out,
                       size_t cap) {
  cad_str_t v = {NULL, 0};
  int i = cad_hl7_find_seg(m, cad_hl7_segid("ERR"), 1, 0);
  const cad_hl7_seg_t *err = i >= 0 ? cad_hl7_seg(m, (uint32_t)i) : NULL;
  if (err) {
    cad_str_t f, c;
    if (cad_hl7_field(err, 8, &f) && f.len) v = f;
    else if (cad_hl7_field(err, 3, &f) && cad_hl7_piece(f, err->d.comp, 2, &c) && c.len) v = c;
    else if (cad_hl7_field(err, 1, &f) && cad_hl7_piece(f, err->d.comp, 4, &c) &&
             cad_hl7_piece(c, err->d.sub ? err->d.sub : '&', 2, &f) && f.len)
      v = f;
  }
  if (!v.len && msa) cad_hl7_field(msa, 3, &v);
  cad_str_t d = v;
  if (v.len && !cad_hl7_decode(err ? &err->d : &m->d, v, a, &d)) d = v;
  size_t n = 0;
  for (size_t k = 0; k < d.len && n + 1 < cap; k++) {
    unsigned char ch = (unsigned char)d.p[k];
    out[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
  }
  out[n] = 0;
}

/* Append v decoded in the delimiters d to out (control bytes as spaces). */
static void put_text(cad_arena_t *a, const cad_hl7_delims_t *d, cad_str_t v, char *out,
                     size_t cap) {
  cad_str_t t = v;
  if (v.len && !cad_hl7_decode(d, v, a, &t)) t = v;
  size_t n = strlen(out);
  for (size_t k = 0; k < t.len && n + 1 < cap; k++) {
    unsigned char ch = (unsigned char)t.p[k];
    out[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
  }
  out[n] = 0;
}

/* Append "; LABEL: x y" (y only when present) to out. */
static void put_part(cad_arena_t *a, const cad_hl7_delims_t *d, const char *label, cad_str_t x,
                     cad_str_t y, char *out, size_t cap) {
  if (!x.len && !y.len) return;
  size_t n = strlen(out);
  snprintf(out + n, cap - n, "%s%s: ", n ? "; " : "", label);
  put_text(a, d, x, out, cap);
  if (x.len && y.len) put_text(a, d, (cad_str_t){" ", 1}, out, cap);
  put_text(a, d, y, out, cap);
}

/* The receiver's reasons in a negative ACK, read once: MSA-3, and the ERR
 * segment's code and text (ERR-3, or the v2.1-2.4 ERR-1.4 when ERR-3 and
 * ERR-8 are absent) and ERR-8.  Fills msa3 and err (each alone, for
 * `caduceus send`) and full (labelled, for dead letters and logs). */
static void ack_texts(cad_arena_t *a, const cad_hl7_msg_t *m, const cad_hl7_seg_t *msa,
                      cad__mllp_ack_t *out) {
  cad_str_t none = {NULL, 0}, f, c, code = none, text = none, why = none;
  out->full[0] = 0;
  if (msa && cad_hl7_field(msa, 3, &f)) {
    put_text(a, &msa->d, f, out->msa3, sizeof out->msa3);
    put_part(a, &msa->d, "MSA-3", f, none, out->full, sizeof out->full);
  }
  int i = cad_hl7_find_seg(m, cad_hl7_segid("ERR"), 1, 0);
  const cad_hl7_seg_t *err = i >= 0 ? cad_hl7_seg(m, (uint32_t)i) : NULL;
  if (!err) return;
  char sub = err->d.sub ? err->d.sub : '&';
  const char *label = "ERR-3";
  if (cad_hl7_field(err, 3, &f) && f.len) { /* v2.5+: ERR-3 code^text */
    if (!cad_hl7_piece(f, err->d.comp, 1, &code)) code = none;
    if (!cad_hl7_piece(f, err->d.comp, 2, &text)) text = none;
  }
  if (!cad_hl7_field(err, 8, &why)) why = none;
  if (!code.len && !text.len && !why.len && cad_hl7_field(err, 1, &f) &&
      cad_hl7_piece(f, err->d.comp, 4, &c)) { /* v2.1-2.4: ERR-1.4 code&text */
    if (!cad_hl7_piece(c, sub, 1, &code)) code = none;
    if (!cad_hl7_piece(c, sub, 2, &text)) text = none;
    label = "ERR-1";
  }
  put_text(a, &err->d, code, out->err, sizeof out->err);
  if (code.len && text.len) put_text(a, &err->d, (cad_str_t){" ", 1}, out->err, sizeof out->err);
  put_text(a, &err->d, text, out->err, sizeof out->err);
  if (why.len) {
    if (out->err[0]) put_text(a, &err->d, (cad_str_t){": ", 2}, out->err, sizeof out->err);
    put_text(a, &err->d, why, out->err, sizeof out->err);
  }
  put_part(a, &err->d, label, code, text, out->full, sizeof out->full);
  put_part(a, &err->d, "ERR-8", why, none, out->full, sizeof out->full);
}

int cad__mllp_ack_read(cad_str_t frame, cad_str_t sent_ctl, cad_arena_t *a, cad__mllp_ack_t *out) {
  memset(out, 0, sizeof *out);
  cad_hl7_msg_t m;
  cad_hl7_diag_t diag;
  if (cad_hl7_parse(&m, frame.p, frame.len, a, NULL, &diag) != 0) {
    out->verdict = CAD__ACK_UNPARSEABLE;
    snprintf(out->why, sizeof out->why, "%s", diag.reason);
    return out->verdict;
  }
  int i = cad_hl7_find_seg(&m, cad_hl7_segid("MSA"), 1, 0);
  cad_str_t code = {NULL, 0}, ref = {NULL, 0};
  const cad_hl7_seg_t *msa = i >= 0 ? cad_hl7_seg(&m, (uint32_t)i) : NULL;
  if (msa) {
    cad_hl7_field(msa, 1, &code);
    cad_hl7_field(msa, 2, &ref);
  }
  bool code_ok = code.len == 2 && (code.p[0] == 'A' || code.p[0] == 'C') &&
                 (code.p[1] == 'A' || code.p[1] == 'E' || code.p[1] == 'R');
  if (!msa || !code_ok) {
    out->verdict = CAD__ACK_NOT_AN_ACK;
    snprintf(out->why, sizeof out->why, "%s",
             msa ? "MSA-1 is not AA/AE/AR/CA/CE/CR" : "no MSA segment");
    return out->verdict;
  }
  /* (an absent MSA-2 is a NULL span: no memcmp on it) */
  if (ref.len != sent_ctl.len || (ref.len && memcmp(ref.p, sent_ctl.p, ref.len) != 0)) {
    out->verdict = CAD__ACK_OTHER_MESSAGE;
    snprintf(out->why, sizeof out->why, "MSA-2 does not match MSH-10");
    return out->verdict;
  }
  memcpy(out->code, code.p, 2);
  out->verdict = code.p[1] == 'A'   ? CAD__ACK_ACCEPT
                 : code.p[1] == 'E' ? CAD__ACK_ERROR
                                    : CAD__ACK_REJECT;
  if (out->verdict != CAD__ACK_ACCEPT) {
    ack_reason(a, &m, msa, out->reason, sizeof out->reason);
    ack_texts(a, &m, msa, out);
  }
  return out->verdict;
}

static void check_ack(cad_mllp_sender_t *s, cad_str_t frame) {
  cad_arena_reset(&s->arena);
  cad_str_t sent = s->ctl_cut ? s->ctl_span : (cad_str_t){s->ctl, s->ctl_len};
  cad__mllp_ack_t v;
  switch (cad__mllp_ack_read(frame, sent, &s->arena, &v)) {
    case CAD__ACK_UNPARSEABLE:
      s->st.bad_acks++;
      fail_attempt(s, "unparseable ACK from %s: %s", s->hostport, v.why);
      return;
    case CAD__ACK_NOT_AN_ACK:
      s->st.bad_acks++;
      fail_attempt(s, "reply from %s is not an ACK (%s)", s->hostport, v.why);
      return;
    case CAD__ACK_OTHER_MESSAGE:
      s->st.bad_acks++;
      fail_attempt(s, "ACK from %s is for another message (MSA-2 does not match MSH-10)",
                   s->hostport);
      return;
    default: break;
  }
  memcpy(s->last.ack_code, v.code, 3);
  s->last.latency_us = (uv_hrtime() - s->t_sent) / 1000;
  cad_str_copy(s->last.err_text, sizeof s->last.err_text, v.reason);
  cad_str_copy(s->last.msa3, sizeof s->last.msa3, v.msa3);
  cad_str_copy(s->last.err, sizeof s->last.err, v.err);
  if (v.verdict == CAD__ACK_ACCEPT) {
    s->st.acks_ok++;
    finish(s, CAD_MLLP_SEND_OK, s->last.ack_code);
  } else {
    bool ae = v.verdict == CAD__ACK_ERROR;
    if (ae) s->st.acks_error++;
    else s->st.acks_reject++;
    snprintf(s->detail, sizeof s->detail, "%s from receiver%s%.*s", s->last.ack_code,
             v.full[0] ? ": " : "", (int)(sizeof s->detail - 20), v.full);
    bool dead = ae ? s->o.ae_dead_letter : s->o.ar_dead_letter;
    finish(s, dead ? CAD_MLLP_SEND_FAIL : CAD_MLLP_SEND_RETRY, s->detail);
  }
}

/* ---- the connection ----------------------------------------------------- */

static void try_next_addr(cad_mllp_sender_t *s);

/* The connection kept from an earlier message turned out closed (or the
 * peer spoke out of turn on it) before this message was written on it,
 * whether the loop saw it first (the message just handed over, say from
 * the callback of the one before) or the read in TM_KICK did: nothing of
 * the message reached the peer, so connect again at once and send, without
 * a failed attempt or a backoff.  The new connection is not `reused`, and
 * it sends in on_ready anyway, so this happens at most once per message: a
 * peer that closes every connection it accepts gets one immediate
 * reconnect per message, then failures that go through the backoff. */
static void reopen(cad_mllp_sender_t *s, const char *why) {
  drop_conn(s, false);
  if (!s->reused) { /* not expected (see above); never loop on it */
    s->st.no_ack++;
    fail_attempt(s, "connection to %s lost before the message was sent: %s", s->hostport, why);
    return;
  }
  s->reused = false;
  s->st.reopened++;
  connect_start(s);
}

static void on_ready(cad_transport_t *tr) {
  cad_mllp_sender_t *s = cad_transport_data(tr);
  if (tr != s->tr) return;
  s->tr_ready = true;
  s->st.connects++;
  if (s->busy && !s->sent) {
    disarm(s);
    send_now(s);
  }
}

static void on_data(cad_transport_t *tr, const char *p, size_t n) {
  cad_mllp_sender_t *s = cad_transport_data(tr);
  if (tr != s->tr) return;
  if (!s->busy) { /* nobody asked: the peer is confused */
    drop_conn(s, false);
    return;
  }
  if (!s->sent) { /* the same, seen just before a message goes out */
    reopen(s, "unexpected data on an idle connection");
    return;
  }
  if (cad_mllp_feed(&s->fr, p, n) != 0) {
    fail_attempt(s, "ACK from %s too large to buffer", s->hostport);
    return;
  }
  cad_str_t frame;
  int r = cad_mllp_next(&s->fr, &frame);
  if (r == 0 && cad_mllp_eb_pending(&s->fr)) {
    /* An ACK ended by 0x1C alone: nothing else comes before our next
     * message, so its end block ends it now. */
    cad_mllp_accept_eb(&s->fr);
    r = cad_mllp_next(&s->fr, &frame);
  }
  if (r == 1) {
    check_ack(s, frame);
  } else if (r < 0 || r == CAD_MLLP_STRAY_EB) {
    s->st.bad_acks++;
    fail_attempt(s, "broken ACK frame from %s (%s)", s->hostport,
                 r == CAD_E_TOOBIG ? "too large" : "framing error");
  } else if (s->fr.skipped > s->o.max_ack) {
    s->st.bad_acks++;
    fail_attempt(s, "garbage from %s instead of an MLLP ACK", s->hostport);
  }
}

static void on_error(cad_transport_t *tr, int err) {
  cad_mllp_sender_t *s = cad_transport_data(tr);
  if (tr != s->tr) return;
  char why[224];
  if (err == UV_EPROTO || (err == UV_ETIMEDOUT && cad_transport_reason(tr)[0]))
    snprintf(why, sizeof why, "TLS: %s", cad_transport_reason(tr));
  else snprintf(why, sizeof why, "%s (%s)", uv_strerror(err), uv_err_name(err));
  if (!s->busy) { /* idle connection went away: the next message reconnects */
    drop_conn(s, false);
    return;
  }
  if (!s->tr_ready) {
    if (!cad_transport_connected(tr)) { /* this address did not take it: the next one */
      snprintf(s->conn_err, sizeof s->conn_err, "%s", why);
      drop_conn(s, false);
      try_next_addr(s);
      return;
    }
    s->st.connect_failures++; /* TLS: the server answered, and that is its answer */
    fail_attempt(s, "connect to %s failed: %s", s->hostport, why);
  } else if (!s->sent) {
    reopen(s, why);
  } else {
    s->st.no_ack++;
    fail_attempt(s, "connection to %s lost before the ACK: %s", s->hostport, why);
  }
}

static const cad_transport_cbs_t tr_cbs = {on_ready, on_data, on_error};

/* Start a connection to one address.  Returns 0 (on_ready or on_error
 * follows), or an error with the reason in conn_err and no connection. */
static int open_conn(cad_mllp_sender_t *s, const struct sockaddr *sa) {
  cad_transport_t *tr = NULL;
  int rc = cad_transport_new(s->loop, &tr_cbs, s, &tr);
  if (rc < 0) {
    snprintf(s->conn_err, sizeof s->conn_err, "cannot create a connection: %s", cad_strerror(rc));
    return rc;
  }
  s->tr = tr;
  s->tr_ready = false;
  rc = cad_transport_connect(tr, sa, s->o.tls, s->server_name ? s->server_name : s->host,
                             s->o.verify_hostname);
  if (rc < 0) {
    snprintf(s->conn_err, sizeof s->conn_err, "%s (%s)", cad_strerror(rc), cad_err_name(rc));
    drop_conn(s, false);
  }
  return rc;
}

/* Connect to the next address of this connect; when none is left, every
 * one failed and so did the connect.  Each address gets an even share of
 * the time left before the deadline, but at least MIN_ADDR_MS (or all that
 * is left): one that never answers cannot use up the time of those after
 * it, and one slow SYN retransmission does not skip a good address (the
 * rule of Go's net.Dialer). */
static void try_next_addr(cad_mllp_sender_t *s) {
  while (s->next_addr < s->naddrs) {
    int i = s->next_addr++;
    uint64_t now = uv_now(s->loop);
    uint64_t left = s->deadline > now ? s->deadline - now : 0;
    uint64_t share = left / (uint64_t)(s->naddrs - i);
    if (share < MIN_ADDR_MS) share = left < MIN_ADDR_MS ? left : MIN_ADDR_MS;
    arm(s, TM_CONNECT, share);
    if (open_conn(s, (const struct sockaddr *)&s->addrs[i]) == 0) return;
  }
  s->st.connect_failures++;
  if (s->naddrs > 1)
    fail_attempt(s, "connect to %s failed (%d addresses, the last: %s)", s->hostport, s->naddrs,
                 s->conn_err);
  else fail_attempt(s, "connect to %s failed: %s", s->hostport, s->conn_err);
}

/* TM_CONNECT: the deadline of the whole connect, or the end of one
 * address's share. */
static void connect_timer(cad_mllp_sender_t *s) {
  if (!s->busy) return;
  uint64_t now = uv_now(s->loop);
  if (now < s->deadline) {
    if (s->tr && !cad_transport_connected(s->tr) && s->next_addr < s->naddrs) {
      snprintf(s->conn_err, sizeof s->conn_err, "no answer");
      drop_conn(s, false);
      try_next_addr(s);
    } else { /* the last address, or the TLS handshake: all the time left */
      arm(s, TM_CONNECT, s->deadline - now);
    }
    return;
  }
  char d[32];
  fmt_ms(d, sizeof d, s->o.connect_timeout_ms);
  s->st.connect_failures++;
  if (s->gai) fail_attempt(s, "cannot resolve %s: no answer within %s", s->host, d);
  else fail_attempt(s, "connect to %s timed out after %s", s->hostport, d);
}

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  gai_req_t *g = (gai_req_t *)req;
  cad_mllp_sender_t *s = g->s;
  free(g);
  if (!s) { /* abandoned: s may be freed; UV_EAI_CANCELED or a late answer */
    uv_freeaddrinfo(res);
    return;
  }
  s->gai = NULL;
  int n = 0;
  for (struct addrinfo *ai = status == 0 ? res : NULL; ai && n < MAX_ADDRS; ai = ai->ai_next) {
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
        ai->ai_addrlen > sizeof s->addrs[0])
      continue;
    memcpy(&s->addrs[n], ai->ai_addr, ai->ai_addrlen);
    set_port(&s->addrs[n], s->o.port);
    n++;
  }
  uv_freeaddrinfo(res);
  if (n == 0) {
    s->st.connect_failures++;
    fail_attempt(s, "cannot resolve %s: %s", s->host,
                 status < 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
    return;
  }
  s->naddrs = n;
  s->next_addr = 0;
  try_next_addr(s);
}

/* A new connection: resolve the host (unless its addresses are fixed),
 * then try its addresses in order, all within connect_timeout. */
static void connect_start(cad_mllp_sender_t *s) {
  s->deadline = uv_now(s->loop) + s->o.connect_timeout_ms;
  s->conn_err[0] = 0;
  if (s->fixed_addrs) {
    s->next_addr = 0;
    try_next_addr(s);
    return;
  }
  arm(s, TM_CONNECT, s->o.connect_timeout_ms);
  gai_req_t *g = calloc(1, sizeof *g);
  if (!g) {
    fail_attempt(s, "out of memory resolving %s", s->host);
    return;
  }
  g->s = s;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = s->resolve(s->loop, &g->req, on_resolved, s->host, NULL, &hints);
  if (rc < 0) {
    free(g);
    s->st.connect_failures++;
    fail_attempt(s, "cannot resolve %s: %s", s->host, uv_strerror(rc));
    return;
  }
  s->gai = g;
}

static void on_written(cad_transport_t *tr, int status, void *arg) {
  (void)tr;
  (void)status; /* a failed write surfaces as on_error or the ACK timeout */
  free(arg);
}

static void send_now(cad_mllp_sender_t *s) {
  const char *p = s->rewritten.len ? s->rewritten.data : s->msg;
  size_t n = s->rewritten.len ? s->rewritten.len : s->len;
  cad_buf_t out = CAD_BUF_INIT;
  if (cad_mllp_wrap(p, n, &out) != 0) {
    cad_buf_free(&out);
    fail_attempt(s, "out of memory framing a message for %s", s->hostport);
    return;
  }
  cad_mllp_free(&s->fr); /* nothing stale can answer this message */
  cad_mllp_init(&s->fr, s->o.max_ack);
  uv_buf_t b = uv_buf_init(out.data, (unsigned)out.len);
  s->t_sent = uv_hrtime();
  int rc = cad_transport_write(s->tr, &b, 1, on_written, out.data); /* on_written frees it */
  if (rc == CAD_TRANSPORT_WRITTEN) cad_buf_free(&out);
  if (rc < 0) {
    cad_buf_free(&out);
    fail_attempt(s, "write to %s failed: %s", s->hostport, cad_strerror(rc));
    return;
  }
  s->sent = true;
  s->st.sent++;
  arm(s, TM_ACK, s->o.ack_timeout_ms);
}

/* ---- public ------------------------------------------------------------- */

int cad_mllp_sender_new(uv_loop_t *loop, const cad_mllp_sender_opts_t *o, cad_mllp_sender_t **out,
                        char *err, size_t errcap) {
  *out = NULL;
  if (!o->host || !*o->host || strlen(o->host) > 253) {
    set_err(err, errcap, "the host must be an IP address or a name of at most 253 bytes");
    return CAD_E_INVAL;
  }
  if (o->port < 1 || o->port > 65535) {
    set_err(err, errcap, "the port must be from 1 to 65535");
    return CAD_E_INVAL;
  }
  cad_mllp_sender_t *s = calloc(1, sizeof *s);
  if (!s) return CAD_E_NOMEM;
  s->o = *o;
  s->host = strdup(o->host);
  s->server_name = o->server_name ? strdup(o->server_name) : NULL;
  if (!s->host || (o->server_name && !s->server_name)) {
    free(s->host);
    free(s->server_name);
    free(s);
    return CAD_E_NOMEM;
  }
  s->o.host = s->host;
  s->o.server_name = s->server_name;
  if (!s->o.connect_timeout_ms) s->o.connect_timeout_ms = DEFAULT_CONNECT_MS;
  if (!s->o.ack_timeout_ms) s->o.ack_timeout_ms = DEFAULT_ACK_MS;
  if (!s->o.max_ack) s->o.max_ack = DEFAULT_MAX_ACK;
  s->o.tls = cad_tls_ctx_ref(o->tls);
  if (strchr(s->host, ':')) snprintf(s->hostport, sizeof s->hostport, "[%s]:%d", s->host, o->port);
  else snprintf(s->hostport, sizeof s->hostport, "%s:%d", s->host, o->port);
  s->resolve = uv_getaddrinfo;
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  if (uv_ip4_addr(s->host, o->port, &a4) == 0) {
    memcpy(&s->addrs[0], &a4, sizeof a4);
    s->naddrs = 1;
    s->fixed_addrs = true;
  } else if (uv_ip6_addr(s->host, o->port, &a6) == 0) {
    memcpy(&s->addrs[0], &a6, sizeof a6);
    s->naddrs = 1;
    s->fixed_addrs = true;
  }
  s->loop = loop;
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  cad_mllp_init(&s->fr, s->o.max_ack);
  cad_arena_init(&s->arena, 16384, s->o.max_ack * 4 + 65536);
  *out = s;
  return 0;
}

/* Replace MSH-10 with a fresh random id ("C" + 16 hex digits: 17 bytes, so
 * it fits the 20 of HL7 v2.3-2.5's ST). */
static int rewrite_control_id(cad_mllp_sender_t *s, const cad_ack_msh_t *h) {
  unsigned char r[8];
  if (RAND_bytes(r, sizeof r) != 1) return CAD_E_IO;
  char id[24];
  int n = snprintf(id, sizeof id, "C%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4],
                   r[5], r[6], r[7]);
  size_t before = (size_t)(h->control_id.p - s->msg);
  size_t after = before + h->control_id.len;
  cad_buf_clear(&s->rewritten);
  int rc = cad_buf_append(&s->rewritten, s->msg, before);
  if (rc == 0) rc = cad_buf_append(&s->rewritten, id, (size_t)n);
  if (rc == 0) rc = cad_buf_append(&s->rewritten, s->msg + after, s->len - after);
  if (rc) return rc;
  memcpy(s->ctl, id, (size_t)n + 1);
  s->ctl_len = (size_t)n;
  s->ctl_cut = false;
  return 0;
}

int cad_mllp_sender_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                            cad_mllp_send_cb done, void *ctx) {
  cad_mllp_sender_t *s = impl;
  if (s->busy || s->closing || !done) return CAD_E_STATE;
  cad_ack_msh_t h;
  int rc = cad_ack_msh_scan(p, len, 0, &h);
  s->bad_msg = rc != 0 || !h.control_id.p; /* nothing to match an ACK with: FAIL, later */
  s->msg = p;
  s->len = len;
  s->seq = seq;
  memset(&s->last, 0, sizeof s->last);
  cad_buf_clear(&s->rewritten);
  if (s->bad_msg) {
    s->ctl_len = 0;
    s->ctl[0] = 0;
    s->ctl_cut = false;
  } else if (s->o.new_control_id) {
    rc = rewrite_control_id(s, &h);
    if (rc) {
      cad_buf_clear(&s->rewritten);
      return rc;
    }
  } else {
    s->ctl_span = h.control_id;
    s->ctl_cut = h.control_id.len >= sizeof s->ctl;
    s->ctl_len = s->ctl_cut ? sizeof s->ctl - 1 : h.control_id.len;
    memcpy(s->ctl, h.control_id.p, s->ctl_len);
    s->ctl[s->ctl_len] = 0;
  }
  snprintf(s->last.control_id, sizeof s->last.control_id, "%s", s->ctl);
  s->busy = true;
  s->sent = false;
  s->reused = s->tr != NULL; /* when idle, a connection is ready or absent */
  s->done = done;
  s->ctx = ctx;
  arm(s, TM_KICK, 0); /* everything else happens from the loop */
  return 0;
}

const cad_mllp_result_t *cad_mllp_sender_last(const cad_mllp_sender_t *s) { return &s->last; }

void cad_mllp_sender_get_stats(const cad_mllp_sender_t *s, cad_mllp_sender_stats_t *out) {
  *out = s->st;
}

static void on_timer_closed(uv_handle_t *h) {
  cad_mllp_sender_t *s = h->data;
  s->timer_closed = true;
  maybe_free(s);
}

static void maybe_free(cad_mllp_sender_t *s) {
  if (!s->closing || !s->timer_closed || s->pending_closes) return;
  void (*done)(void *) = s->close_done;
  void *arg = s->close_arg;
  cad_mllp_free(&s->fr);
  cad_arena_free(&s->arena);
  cad_buf_free(&s->rewritten);
  cad_tls_ctx_unref(s->o.tls);
  free(s->host);
  free(s->server_name);
  free(s);
  if (done) done(arg);
}

void cad_mllp_sender_close(cad_mllp_sender_t *s, void (*done)(void *arg), void *arg) {
  if (s->closing) return;
  s->closing = true;
  if (s->busy) {
    drop_conn(s, false);
    finish(s, CAD_MLLP_SEND_RETRY, "shutting down"); /* abandons a lookup in flight */
  }
  s->close_done = done;
  s->close_arg = arg;
  disarm(s);
  drop_conn(s, true);
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

/* ---- test seams (mllp_sender_int.h) ------------------------------------- */

void cad__mllp_sender_set_resolver(cad_mllp_sender_t *s, cad__getaddrinfo_fn fn) {
  s->resolve = fn ? fn : uv_getaddrinfo;
}

int cad__mllp_sender_set_addrs(cad_mllp_sender_t *s, const struct sockaddr_storage *addrs, int n) {
  if (n < 1 || n > MAX_ADDRS) return CAD_E_INVAL;
  for (int i = 0; i < n; i++)
    if (addrs[i].ss_family != AF_INET && addrs[i].ss_family != AF_INET6) return CAD_E_INVAL;
  memcpy(s->addrs, addrs, sizeof *addrs * (size_t)n);
  s->naddrs = n;
  s->fixed_addrs = true;
  return 0;
}
