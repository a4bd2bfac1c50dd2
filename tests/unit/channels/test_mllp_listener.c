/* test_mllp_listener.c - the MLLP listener on a real loopback socket: replies
 * given out of order are written in order, an oversized frame is answered
 * then the connection closed, a frame holding a stray 0x1C gets a NAK in
 * its place, a stalled half frame is closed after
 * frame_timeout, backpressure stops reading at max_inflight, and closing the
 * listener drains and leaves no handle open. */
#include "mllp_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cad_error.h"
#include "harness.h"

#define MAXREQ 64

typedef struct {
  uv_loop_t loop;
  cad_mllp_listener_t *l;
  cad_mllp_req_t *reqs[MAXREQ];
  char ids[MAXREQ][16];
  int nreq;
  int status[MAXREQ];
  int opens, closes, pauses;
  char close_reason[32];
  uv_timer_t timer;
  int reply_order[MAXREQ]; /* replies are sent in this order once all arrive */
  int expect;
  int closed_listener;
} fixture_t;

static fixture_t F;

static void reply_all(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < F.expect; i++) {
    int k = F.reply_order[i];
    char ack[64];
    int n = snprintf(ack, sizeof ack, "ACK-%s", F.ids[k]);
    cad_mllp_reply(F.reqs[k], ack, (size_t)n, 0);
  }
}

static void on_frame(cad_mllp_req_t *req, int status, cad_str_t frame, void *data) {
  (void)data;
  int i = F.nreq++;
  F.reqs[i] = req;
  F.status[i] = status;
  snprintf(F.ids[i], sizeof F.ids[i], "%.*s", (int)(frame.len < 10 ? frame.len : 10), frame.p);
  if (status == CAD_E_TOOBIG) {
    cad_mllp_reply(req, "NAK", 3, CAD_MLLP_REPLY_CLOSE);
    return;
  }
  if (F.nreq == F.expect) uv_timer_start(&F.timer, reply_all, 10, 0);
}

static void on_event(const cad_mllp_event_t *ev, void *data) {
  (void)data;
  if (ev->kind == CAD_MLLP_EV_OPEN) F.opens++;
  if (ev->kind == CAD_MLLP_EV_PAUSE) F.pauses++;
  if (ev->kind == CAD_MLLP_EV_CLOSE) {
    F.closes++;
    snprintf(F.close_reason, sizeof F.close_reason, "%s", ev->reason);
  }
}

static void done_cb(void *arg) {
  (void)arg;
  F.closed_listener = 1;
}

static int start(const cad_mllp_listener_opts_t *o, int expect) {
  memset(&F, 0, sizeof F);
  uv_loop_init(&F.loop);
  uv_timer_init(&F.loop, &F.timer);
  F.expect = expect;
  return cad_mllp_listener_start(&F.loop, o, on_frame, on_event, NULL, &F.l);
}

/* A client thread: send `out`, read until `want` bytes or EOF, keep them. */
typedef struct {
  int port;
  const char *out;
  size_t outlen;
  size_t want;
  char in[8192];
  size_t inlen;
  int eof;
  int hold_ms;       /* keep the connection open this long after sending */
  const char *until; /* or stop reading once the input ends with this */
} client_t;

static void *client_main(void *arg) {
  client_t *c = arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)c->port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return NULL;
  if (c->outlen && write(fd, c->out, c->outlen) < 0) return NULL;
  if (c->hold_ms) usleep((useconds_t)c->hold_ms * 1000);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (c->inlen < c->want) {
    ssize_t r = read(fd, c->in + c->inlen, sizeof c->in - c->inlen);
    if (r <= 0) {
      c->eof = r == 0;
      break;
    }
    c->inlen += (size_t)r;
    size_t k = c->until ? strlen(c->until) : 0;
    if (k && c->inlen >= k && memcmp(c->in + c->inlen - k, c->until, k) == 0) break;
  }
  close(fd);
  return NULL;
}

static void finish(void) {
  cad_mllp_listener_close(F.l, 1000, done_cb, NULL);
  uv_close((uv_handle_t *)&F.timer, NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  CHECK(F.closed_listener);
  CHECK_INT(uv_loop_close(&F.loop), 0);
}

/* Run the loop until the client thread is done. */
static void run_with_client(client_t *c) {
  pthread_t th;
  pthread_create(&th, NULL, client_main, c);
  for (int i = 0; i < 500; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    if (pthread_tryjoin_np(th, NULL) == 0) return;
    usleep(10000);
  }
  pthread_join(th, NULL);
}

TEST(replies_written_in_arrival_order) {
  cad_mllp_listener_opts_t o = {.host = "127.0.0.1", .port = 0};
  REQUIRE(start(&o, 3) == 0);
  F.reply_order[0] = 2;
  F.reply_order[1] = 0;
  F.reply_order[2] = 1;
  const char out[] =
      "\x0b"
      "m1\x1c\x0d\x0b"
      "m2\x1c\x0d\x0b"
      "m3\x1c\x0d";
  const char want[] =
      "\x0b"
      "ACK-m1\x1c\x0d\x0b"
      "ACK-m2\x1c\x0d\x0b"
      "ACK-m3\x1c\x0d";
  client_t c = {.port = cad_mllp_listener_port(F.l),
                .out = out,
                .outlen = sizeof out - 1,
                .want = sizeof want - 1};
  run_with_client(&c);
  CHECK_INT(F.nreq, 3);
  CHECK_STRN(c.in, c.inlen, want);
  CHECK_INT(F.opens, 1);
  finish();
}

/* A 0x1C inside a message: that frame is not handed over but answered here
 * with one NAK, in its place between the replies of its neighbours. */
TEST(stray_end_block_answered_with_a_nak_in_order) {
  cad_mllp_listener_opts_t o = {.host = "127.0.0.1", .port = 0};
  REQUIRE(start(&o, 2) == 0);
  F.reply_order[0] = 1;
  F.reply_order[1] = 0;
  const char out[] =
      "\x0bm1\x1c\x0d"
      "\x0bMSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\rPID|1\x1cx\x1c\x0d"
      "\x0bm3\x1c\x0d";
  client_t c = {.port = cad_mllp_listener_port(F.l),
                .out = out,
                .outlen = sizeof out - 1,
                .want = sizeof c.in,
                .until = "ACK-m3\x1c\x0d"};
  run_with_client(&c);
  CHECK_INT(F.nreq, 2);
  CHECK_STRN(F.ids[0], strlen(F.ids[0]), "m1");
  CHECK_STRN(F.ids[1], strlen(F.ids[1]), "m3");
  const char head[] =
      "\x0b"
      "ACK-m1\x1c\x0d\x0bMSH|^~\\&|C|D|A|B|";
  CHECK(c.inlen > sizeof head);
  CHECK_STRN(c.in, sizeof head - 1, head);
  c.in[c.inlen < sizeof c.in ? c.inlen : sizeof c.in - 1] = 0;
  CHECK(strstr(c.in, "\rMSA|AR|X1\r") != NULL);
  CHECK(strstr(c.in, "0x1C (MLLP end block) inside the message") != NULL);
  CHECK(strstr(c.in,
               "\x1c\x0d\x0b"
               "ACK-m3\x1c\x0d") != NULL);
  finish();
}

TEST(oversized_frame_answered_then_closed) {
  cad_mllp_listener_opts_t o = {.host = "127.0.0.1", .port = 0, .max_frame = 100};
  REQUIRE(start(&o, 99) == 0);
  static char out[400];
  out[0] = 0x0b;
  memset(out + 1, 'x', 300);
  out[301] = 0x1c;
  out[302] = 0x0d;
  client_t c = {.port = cad_mllp_listener_port(F.l), .out = out, .outlen = 303, .want = 1000};
  run_with_client(&c);
  /* After the NAK the listener sends FIN and drains until the peer closes. */
  for (int i = 0; i < 800 && F.closes == 0; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  CHECK_INT(F.nreq, 1);
  CHECK_INT(F.status[0], CAD_E_TOOBIG);
  CHECK_STRN(c.in, c.inlen, "\x0bNAK\x1c\x0d");
  CHECK(c.eof);
  CHECK_STR(F.close_reason, "too_big");
  finish();
}

TEST(half_frame_closed_by_frame_timeout) {
  cad_mllp_listener_opts_t o = {.host = "127.0.0.1", .port = 0, .frame_timeout_ms = 200};
  REQUIRE(start(&o, 99) == 0);
  client_t c = {.port = cad_mllp_listener_port(F.l), .out = "\x0bhalf", .outlen = 5, .want = 1000};
  uint64_t t0 = uv_now(&F.loop);
  run_with_client(&c);
  uv_update_time(&F.loop);
  CHECK(c.eof);
  CHECK_STR(F.close_reason, "frame_timeout");
  CHECK(uv_now(&F.loop) - t0 >= 150);
  CHECK_INT(F.nreq, 0);
  finish();
}

TEST(backpressure_pauses_reading) {
  cad_mllp_listener_opts_t o = {.host = "127.0.0.1", .port = 0, .max_inflight = 4};
  REQUIRE(start(&o, 99) == 0); /* answered by hand below */
  for (int i = 0; i < 8; i++) F.reply_order[i] = i;
  char out[200];
  size_t n = 0;
  for (int i = 0; i < 8; i++) n += (size_t)snprintf(out + n, sizeof out - n, "\x0bq%d\x1c\x0d", i);
  client_t c = {.port = cad_mllp_listener_port(F.l), .out = out, .outlen = n, .want = 1000};
  /* Nothing is answered yet: with 4 in flight reading stops at 4. */
  pthread_t th;
  pthread_create(&th, NULL, client_main, &c);
  for (int i = 0; i < 400 && F.nreq < 4; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  for (int i = 0; i < 20; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  CHECK_INT(F.nreq, 4);
  CHECK_INT(F.pauses, 1);
  /* Answer the four: reading resumes and the rest arrives. */
  for (int i = 0; i < 4; i++) cad_mllp_reply(F.reqs[i], "A", 1, 0);
  for (int i = 0; i < 800 && F.nreq < 8; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  REQUIRE(F.nreq == 8);
  for (int i = 4; i < 8; i++) cad_mllp_reply(F.reqs[i], "A", 1, 0);
  for (int i = 0; i < 400 && c.inlen < 8 * 4; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  F.expect = 0;
  cad_mllp_listener_close(F.l, 1000, done_cb, NULL);
  uv_close((uv_handle_t *)&F.timer, NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  CHECK_INT(c.inlen, 8 * 4);
  CHECK(F.closed_listener);
  CHECK_INT(uv_loop_close(&F.loop), 0);
}

TEST(eof_waits_for_answers_and_shutdown_drops_late_ones) {
  cad_mllp_listener_opts_t o = {.host = "127.0.0.1", .port = 0};
  REQUIRE(start(&o, 99) == 0);
  client_t c = {
      .port = cad_mllp_listener_port(F.l), .out = "\x0bz\x1c\x0d", .outlen = 4, .want = 0};
  run_with_client(&c); /* sends one frame and closes its side */
  for (int i = 0; i < 400 && F.nreq == 0; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  REQUIRE(F.nreq == 1);
  for (int i = 0; i < 10; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(2000);
  }
  CHECK_INT(F.closes, 0); /* the peer's EOF waits for our answer */
  CHECK_INT(cad_mllp_reply(F.reqs[0], "ok", 2, 0), 0);
  for (int i = 0; i < 400 && F.closes == 0; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  CHECK_INT(F.closes, 1);
  /* A request still unanswered when the listener closes past its drain
   * time: the connection goes, the request stays valid, its reply is dropped. */
  client_t c2 = {
      .port = cad_mllp_listener_port(F.l), .out = "\x0by\x1c\x0d", .outlen = 4, .want = 100};
  pthread_t th;
  pthread_create(&th, NULL, client_main, &c2);
  for (int i = 0; i < 800 && F.nreq < 2; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  REQUIRE(F.nreq == 2);
  cad_mllp_listener_close(F.l, 1, done_cb, NULL);
  for (int i = 0; i < 400 && F.closes < 2; i++) {
    uv_run(&F.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  CHECK_INT(F.closes, 2);
  CHECK_STR(F.close_reason, "shutdown");
  CHECK(!F.closed_listener); /* held by the unanswered request */
  CHECK_INT(cad_mllp_reply(F.reqs[1], "late", 4, 0), CAD_E_STATE);
  uv_close((uv_handle_t *)&F.timer, NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  CHECK(c2.eof);
  CHECK(F.closed_listener);
  CHECK_INT(uv_loop_close(&F.loop), 0);
}

TEST(bad_address_is_refused) {
  memset(&F, 0, sizeof F);
  uv_loop_init(&F.loop);
  cad_mllp_listener_t *l = NULL;
  cad_mllp_listener_opts_t o = {.host = "not-an-ip", .port = 1};
  CHECK(cad_mllp_listener_start(&F.loop, &o, on_frame, on_event, NULL, &l) < 0);
  CHECK(l == NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&F.loop), 0);
}

TEST_MAIN()
