/* test_mllp_sender.c - the MLLP sender against a scripted fake downstream
 * server (a thread with blocking sockets on 127.0.0.1): AA, AE, AR (each
 * mapping), a wrong control id, garbage, no answer (ACK timeout), the
 * connection closed mid-ACK, a refused connection, connection reuse and
 * per-message connections, a new control id per attempt, idle close, and
 * the transport's CIDR allow-lists.  Connecting: a name resolved for real,
 * several addresses tried in order (through the test seam of
 * mllp_sender_int.h), an address that never answers, a lookup that times
 * out (queued behind a blocked thread pool, and one that cannot be
 * cancelled and answers after the sender is gone).  A kept connection the
 * peer closed while idle: replaced at once, never a message sent twice,
 * never a tight reconnect loop.  Then TLS, with certificates made by
 * the openssl command line before the tests fork: the sender against a
 * server built on the transport (good handshake, unknown CA, hostname
 * mismatch, mutual TLS with and without an allowed client certificate,
 * expired and foreign client certificates, handshake timeout, plain MLLP
 * to a TLS port, context errors) and against the MLLP listener (mutual TLS,
 * reload of its context, address allow-list).  Every test ends with the
 * loop closed and no handle left. */
#include "mllp_sender.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cad_error.h"
#include "mllp_sender_int.h"
#include "harness.h"
#include "mllp.h"
#include "mllp_listener.h"
#include "mllp_sender_int.h"

/* ---- the fake downstream server --------------------------------------- */

typedef enum {
  A_AA = 1,    /* MSA|AA|<ctl> */
  A_AE,        /* MSA|AE|<ctl> */
  A_AR,        /* MSA|AR|<ctl> */
  A_CA,        /* enhanced mode accept */
  A_WRONG,     /* MSA|AA|<another id> */
  A_GARBAGE,   /* a frame that is not HL7 */
  A_NONE,      /* read, answer nothing, keep the connection */
  A_CLOSE_MID, /* half an ACK frame, then close */
  A_CLOSE,     /* close without answering */
  A_SPACE_A,   /* MSA| A|<ctl>: not an acknowledgment code */
  A_AA_CLOSE,  /* MSA|AA|<ctl>, then close */
} action_t;

#define MAXACT 16

typedef struct {
  int lfd, port;
  action_t script[MAXACT];
  int nscript, next;
  int accepts;
  int slam_after;       /* > 0: connections after this many are closed at once, unread */
  char ids[MAXACT][64]; /* MSH-10 of each message received */
  int nids;
  pthread_t th;
  volatile int stop;
} server_t;

static server_t S;

/* Read one MLLP frame from fd into buf; returns its length or -1. */
static int read_frame(int fd, char *buf, int cap) {
  int n = 0;
  while (n < cap) {
    ssize_t r = recv(fd, buf + n, (size_t)(cap - n), 0);
    if (r <= 0) return -1;
    n += (int)r;
    char *eb = memchr(buf, 0x1c, (size_t)n);
    if (eb && eb + 1 < buf + n) {
      int start = buf[0] == 0x0b ? 1 : 0;
      int len = (int)(eb - buf) - start;
      memmove(buf, buf + start, (size_t)len);
      buf[len] = 0;
      return len;
    }
  }
  return -1;
}

static void msh10(const char *msg, char *out, size_t cap) {
  const char *p = msg;
  for (int f = 0; f < 9 && p; f++) p = strchr(p + 1, '|');
  out[0] = 0;
  if (!p) return;
  p++;
  size_t n = strcspn(p, "|\r");
  if (n >= cap) n = cap - 1;
  memcpy(out, p, n);
  out[n] = 0;
}

static void send_ack(int fd, const char *code, const char *ctl) {
  char b[512];
  int n = snprintf(b, sizeof b,
                   "\x0bMSH|^~\\&|EHR|SOUTH|LAB|NORTH|20260101120000||ACK^A01^ACK|ACK%s|P|2.5.1\r"
                   "MSA|%s|%s\r\x1c\r",
                   ctl, code, ctl);
  send(fd, b, (size_t)n, MSG_NOSIGNAL);
}

static void *server_main(void *arg) {
  (void)arg;
  while (!S.stop) {
    int fd = accept(S.lfd, NULL, NULL);
    if (fd < 0) break;
    S.accepts++;
    if (S.slam_after && S.accepts > S.slam_after) {
      close(fd);
      continue;
    }
    char buf[65536];
    int keep = 1;
    while (keep) {
      int n = read_frame(fd, buf, (int)sizeof buf - 1);
      if (n < 0) break;
      char ctl[64];
      msh10(buf, ctl, sizeof ctl);
      if (S.nids < MAXACT) snprintf(S.ids[S.nids++], sizeof S.ids[0], "%s", ctl);
      action_t a = S.next < S.nscript ? S.script[S.next++] : A_AA;
      switch (a) {
        case A_AA: send_ack(fd, "AA", ctl); break;
        case A_AE: send_ack(fd, "AE", ctl); break;
        case A_SPACE_A: send_ack(fd, " A", ctl); break;
        case A_AR: send_ack(fd, "AR", ctl); break;
        case A_CA: send_ack(fd, "CA", ctl); break;
        case A_WRONG: send_ack(fd, "AA", "SOMEOTHERID"); break;
        case A_GARBAGE: send(fd, "\x0bhello, this is not HL7\x1c\r", 25, MSG_NOSIGNAL); break;
        case A_NONE: break;
        case A_CLOSE_MID:
          send(fd, "\x0bMSH|^~\\&|EHR|SOUTH|LAB|NO", 27, MSG_NOSIGNAL);
          keep = 0;
          break;
        case A_CLOSE: keep = 0; break;
        case A_AA_CLOSE:
          send_ack(fd, "AA", ctl);
          keep = 0;
          break;
      }
    }
    close(fd);
  }
  return NULL;
}

static int server_start(const action_t *script, int n) {
  memset(&S, 0, sizeof S);
  memcpy(S.script, script, sizeof *script * (size_t)n);
  S.nscript = n;
  S.lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(S.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(S.lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(S.lfd, 8) != 0) return -1;
  socklen_t al = sizeof a;
  getsockname(S.lfd, (struct sockaddr *)&a, &al);
  S.port = ntohs(a.sin_port);
  return pthread_create(&S.th, NULL, server_main, NULL);
}

static void server_stop(void) {
  S.stop = 1;
  shutdown(S.lfd, SHUT_RDWR);
  close(S.lfd);
  pthread_join(S.th, NULL);
}

/* ---- the loop side -------------------------------------------------------- */

typedef struct {
  int calls, outcome;
  char detail[256];
} result_t;

static void on_done(void *ctx, int outcome, const char *detail) {
  result_t *r = ctx;
  r->calls++;
  r->outcome = outcome;
  snprintf(r->detail, sizeof r->detail, "%s", detail);
}

static int closed;
static void on_closed(void *arg) {
  (void)arg;
  closed = 1;
}

#define MSG(ctl)                                                       \
  "MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20260101120000||ADT^A01^ADT_A01|" ctl \
  "|P|2.5.1\r"                                                         \
  "PID|1||12345^^^HOSP^MR||DOE^JANE\r"

/* Run the loop until *flag is set.  (UV_RUN_ONCE would block in the poll
 * after a timer callback set it, while a connection stays open.) */
static void run_until(uv_loop_t *loop, const int *flag) {
  while (!*flag)
    if (uv_run(loop, UV_RUN_NOWAIT) == 0 || !*flag) usleep(500);
}

/* Deliver one message and run the loop until its outcome. */
static result_t deliver(uv_loop_t *loop, cad_mllp_sender_t *s, const char *msg) {
  result_t r = {0, -1, ""};
  int rc = cad_mllp_sender_deliver(s, msg, strlen(msg), 1, on_done, &r);
  if (rc != 0) {
    r.outcome = rc;
    return r;
  }
  run_until(loop, &r.calls);
  return r;
}

static void finish_loop(uv_loop_t *loop, cad_mllp_sender_t *s) {
  closed = 0;
  cad_mllp_sender_close(s, on_closed, NULL);
  run_until(loop, &closed);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(loop), 0);
}

static cad_mllp_sender_t *sender(uv_loop_t *loop, cad_mllp_sender_opts_t *o) {
  cad_mllp_sender_t *s = NULL;
  char err[200] = "";
  if (!o->host) o->host = "127.0.0.1";
  if (!o->port) o->port = S.port;
  if (!o->ack_timeout_ms) o->ack_timeout_ms = 300;
  if (!o->connect_timeout_ms) o->connect_timeout_ms = 2000;
  int rc = cad_mllp_sender_new(loop, o, &s, err, sizeof err);
  if (rc) fprintf(stderr, "  sender: %s\n", err);
  return s;
}

/* ---- tests ------------------------------------------------------------------ */

TEST(aa_is_ok_and_connection_is_reused) {
  action_t sc[] = {A_AA, A_AA, A_CA};
  REQUIRE(server_start(sc, 3) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("M1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  CHECK_STR(r.detail, "AA");
  CHECK_STR(cad_mllp_sender_last(s)->ack_code, "AA");
  CHECK_STR(cad_mllp_sender_last(s)->control_id, "M1");
  r = deliver(&loop, s, MSG("M2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  r = deliver(&loop, s, MSG("M3"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  CHECK_STR(r.detail, "CA");
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connects, 1);
  CHECK_INT(st.acks_ok, 3);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 1);
  CHECK_INT(S.nids, 3);
  CHECK_STR(S.ids[2], "M3");
}

TEST(per_message_connections) {
  action_t sc[] = {A_AA, A_AA};
  REQUIRE(server_start(sc, 2) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.per_message = true;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("P1")).outcome, CAD_MLLP_SEND_OK);
  CHECK_INT(deliver(&loop, s, MSG("P2")).outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 2);
}

TEST(ae_and_ar_follow_configuration) {
  action_t sc[] = {A_AE, A_AR, A_AE, A_AR, A_AA};
  REQUIRE(server_start(sc, 5) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o); /* both retry */
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("E1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK_STR(r.detail, "AE from receiver");
  r = deliver(&loop, s, MSG("E1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK_STR(r.detail, "AR from receiver");
  finish_loop(&loop, s);

  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o2 = {0};
  o2.ae_dead_letter = true;
  o2.ar_dead_letter = true;
  s = sender(&loop, &o2);
  REQUIRE(s);
  r = deliver(&loop, s, MSG("E2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_FAIL);
  CHECK_STR(cad_mllp_sender_last(s)->ack_code, "AE");
  r = deliver(&loop, s, MSG("E3"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_FAIL);
  CHECK_STR(r.detail, "AR from receiver");
  r = deliver(&loop, s, MSG("E4"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
}

/* The receiver's reasons in a negative ACK: MSA-3 and the ERR segment's
 * ERR-3 (code and text) and ERR-8, or the v2.3 ERR-1.4 when those are absent. */
static const char *ack_full_of(const char *frame) {
  static cad__mllp_ack_t v;
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_str_t f = {frame, strlen(frame)}, ctl = {"C1", 2};
  cad__mllp_ack_read(f, ctl, &a, &v);
  cad_arena_free(&a);
  return v.full;
}

TEST(negative_ack_keeps_msa3_and_err_text) {
  const char *h = "MSH|^~\\&|EHR|S|LAB|N|20260101||ACK|A1|P|2.5.1\r";
  char b[512];
  snprintf(b, sizeof b,
           "%sMSA|AE|C1|Patient not found\rERR|||204^Unknown key identifier^HL70357|E||||"
           "PID-3 \\T\\ MRN 7 not on file\r",
           h);
  CHECK_STR(ack_full_of(b),
            "MSA-3: Patient not found; ERR-3: 204 Unknown key identifier; "
            "ERR-8: PID-3 & MRN 7 not on file");
  snprintf(b, sizeof b, "%sMSA|AR|C1\rERR|PID^1^3^204&Unknown key\r", h);
  CHECK_STR(ack_full_of(b), "ERR-1: 204 Unknown key");
  snprintf(b, sizeof b, "%sMSA|AE|C1|Busy\x01 now\r", h);
  CHECK_STR(ack_full_of(b), "MSA-3: Busy  now");
  snprintf(b, sizeof b, "%sMSA|AE|C1\r", h);
  CHECK_STR(ack_full_of(b), "");
}

TEST(wrong_control_id_is_no_ack) {
  action_t sc[] = {A_WRONG, A_AA};
  REQUIRE(server_start(sc, 2) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("W1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "another message") != NULL);
  CHECK_STR(cad_mllp_sender_last(s)->ack_code, "");
  /* the retry goes out on a new connection and succeeds */
  r = deliver(&loop, s, MSG("W1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 2);
  CHECK_INT(S.nids, 2);
}

TEST(malformed_msa1_is_no_ack) {
  action_t sc[] = {A_SPACE_A};
  REQUIRE(server_start(sc, 1) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("SA1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY); /* " A" is not AA */
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.bad_acks, 1);
  CHECK_INT(st.acks_ok, 0);
  finish_loop(&loop, s);
  server_stop();
}

TEST(garbage_is_no_ack) {
  action_t sc[] = {A_GARBAGE};
  REQUIRE(server_start(sc, 1) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("G1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "unparseable ACK") != NULL);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.bad_acks, 1);
  finish_loop(&loop, s);
  server_stop();
}

TEST(no_answer_times_out_and_is_not_resent_on_the_same_connection) {
  action_t sc[] = {A_NONE, A_AA};
  REQUIRE(server_start(sc, 2) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.ack_timeout_ms = 200;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  uint64_t t0 = uv_hrtime();
  result_t r = deliver(&loop, s, MSG("T1"));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK_STR(r.detail, "no ACK within 200ms");
  CHECK(ms >= 190 && ms < 2000);
  r = deliver(&loop, s, MSG("T1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 2); /* the first connection was closed at the timeout */
  CHECK_INT(S.nids, 2);
}

TEST(connection_closed_mid_ack) {
  action_t sc[] = {A_CLOSE_MID};
  REQUIRE(server_start(sc, 1) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.ack_timeout_ms = 5000; /* the close must end it, not the timeout */
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  uint64_t t0 = uv_hrtime();
  result_t r = deliver(&loop, s, MSG("C1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "lost before the ACK") != NULL);
  CHECK((uv_hrtime() - t0) / 1000000 < 3000);
  finish_loop(&loop, s);
  server_stop();
}

TEST(refused_connection) {
  /* a port that was just free: nothing listens there */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  socklen_t al = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &al);
  close(fd);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.port = ntohs(a.sin_port);
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("R1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "ECONNREFUSED") != NULL);
  CHECK(strstr(r.detail, "connect to 127.0.0.1:") != NULL);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connect_failures, 1);
  finish_loop(&loop, s);
}

TEST(peer_close_between_messages_reconnects) {
  action_t sc[] = {A_AA, A_CLOSE, A_AA};
  REQUIRE(server_start(sc, 3) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("K1")).outcome, CAD_MLLP_SEND_OK);
  result_t r = deliver(&loop, s, MSG("K2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY); /* closed without an answer */
  CHECK_INT(deliver(&loop, s, MSG("K2")).outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 2);
}

TEST(new_control_id_per_attempt) {
  action_t sc[] = {A_NONE, A_AA};
  REQUIRE(server_start(sc, 2) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.new_control_id = true;
  o.ack_timeout_ms = 150;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  const char *m = MSG("ORIG1");
  CHECK_INT(deliver(&loop, s, m).outcome, CAD_MLLP_SEND_RETRY);
  char first[64];
  snprintf(first, sizeof first, "%s", cad_mllp_sender_last(s)->control_id);
  result_t r = deliver(&loop, s, m);
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
  REQUIRE(S.nids == 2);
  CHECK_INT(strlen(S.ids[0]), 17);
  CHECK(S.ids[0][0] == 'C');
  CHECK(strcmp(S.ids[0], S.ids[1]) != 0);
  CHECK_STR(first, S.ids[0]);
  CHECK(strcmp(S.ids[0], "ORIG1") != 0);
  CHECK(strstr(m, "|ORIG1|") != NULL); /* the caller's bytes are not changed */
}

TEST(idle_close) {
  action_t sc[] = {A_AA, A_AA};
  REQUIRE(server_start(sc, 2) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.idle_close_ms = 50;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("I1")).outcome, CAD_MLLP_SEND_OK);
  uint64_t t0 = uv_hrtime();
  while ((uv_hrtime() - t0) / 1000000 < 200) uv_run(&loop, UV_RUN_NOWAIT), usleep(5000);
  CHECK_INT(deliver(&loop, s, MSG("I2")).outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 2);
}

TEST(one_message_at_a_time_and_bad_input) {
  action_t sc[] = {A_AA};
  REQUIRE(server_start(sc, 1) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r1 = {0, -1, ""}, r2 = {0, -1, ""};
  const char *m = MSG("B1");
  CHECK_INT(cad_mllp_sender_deliver(s, m, strlen(m), 1, on_done, &r1), 0);
  CHECK_INT(cad_mllp_sender_deliver(s, m, strlen(m), 2, on_done, &r2), CAD_E_STATE);
  run_until(&loop, &r1.calls);
  CHECK_INT(r1.outcome, CAD_MLLP_SEND_OK);
  CHECK_INT(r2.calls, 0);
  result_t r = deliver(&loop, s, "this is not HL7");
  CHECK_INT(r.outcome, CAD_MLLP_SEND_FAIL);
  CHECK_INT(r.calls, 1);
  finish_loop(&loop, s);
  server_stop();

  char err[200];
  cad_mllp_sender_t *bad = NULL;
  cad_mllp_sender_opts_t ob = {0};
  ob.host = "127.0.0.1";
  ob.port = 0;
  uv_loop_init(&loop);
  CHECK_INT(cad_mllp_sender_new(&loop, &ob, &bad, err, sizeof err), CAD_E_INVAL);
  CHECK(bad == NULL);
  CHECK_INT(uv_loop_close(&loop), 0);
}

TEST(close_with_message_in_flight) {
  action_t sc[] = {A_NONE};
  REQUIRE(server_start(sc, 1) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.ack_timeout_ms = 5000;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r = {0, -1, ""};
  const char *m = MSG("X1");
  CHECK_INT(cad_mllp_sender_deliver(s, m, strlen(m), 1, on_done, &r), 0);
  while (S.nids == 0) uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  finish_loop(&loop, s);
  CHECK_INT(r.calls, 1);
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK_STR(r.detail, "shutting down");
  server_stop();
}

TEST(cidr_allow_lists) {
  cad_cidr_t c[3];
  CHECK_INT(cad_cidr_parse("10.1.0.0/16", &c[0]), 0);
  CHECK_INT(cad_cidr_parse("127.0.0.1", &c[1]), 0);
  CHECK_INT(cad_cidr_parse("fd00::/8", &c[2]), 0);
  CHECK_INT(c[1].prefix, 32);
  const char *bad[] = {"", "10.0.0.0/33", "10.0.0.0/", "x", "::1/129", "10.0.0.0/8x", NULL};
  for (int i = 0; bad[i]; i++) {
    cad_cidr_t b;
    if (cad_cidr_parse(bad[i], &b) != CAD_E_INVAL)
      fprintf(stderr, "  accepted '%s'\n", bad[i]), cad_test_failures++;
  }
  struct sockaddr_in a4 = {0};
  a4.sin_family = AF_INET;
  inet_pton(AF_INET, "10.1.200.3", &a4.sin_addr);
  CHECK(cad_cidr_match(c, 3, (struct sockaddr *)&a4));
  inet_pton(AF_INET, "10.2.0.1", &a4.sin_addr);
  CHECK(!cad_cidr_match(c, 3, (struct sockaddr *)&a4));
  CHECK(cad_cidr_match(c, 0, (struct sockaddr *)&a4)); /* no list: everyone */
  struct sockaddr_in6 a6 = {0};
  a6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
  CHECK(cad_cidr_match(c, 3, (struct sockaddr *)&a6)); /* v4-mapped */
  inet_pton(AF_INET6, "fd12::1", &a6.sin6_addr);
  CHECK(cad_cidr_match(c, 3, (struct sockaddr *)&a6));
  inet_pton(AF_INET6, "fe80::1", &a6.sin6_addr);
  CHECK(!cad_cidr_match(c, 3, (struct sockaddr *)&a6));
}

/* ---- connecting: names, several addresses, lookups that hang ------------ */

static struct sockaddr_storage addr_of(const char *ip, int port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (strchr(ip, ':')) uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss);
  else uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss);
  return ss;
}

/* A port on 127.0.0.1 where nothing listens (it was free a moment ago). */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &al) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

/* A listener on 127.0.0.1 that never answers a connect: backlog 0, and its
 * one queue place taken by a connection never accepted, so the kernel drops
 * every further SYN.  fds[0] is the listener, fds[1] the held connection. */
static int silent_port(int fds[2]) {
  fds[0] = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(fds[0], (struct sockaddr *)&a, sizeof a) != 0 || listen(fds[0], 0) != 0 ||
      getsockname(fds[0], (struct sockaddr *)&a, &al) != 0)
    return -1;
  fds[1] = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fds[1], (struct sockaddr *)&a, sizeof a) != 0) return -1;
  return ntohs(a.sin_port);
}

TEST(name_is_resolved) {
  action_t sc[] = {A_AA};
  REQUIRE(server_start(sc, 1) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.host = "localhost"; /* 127.0.0.1 (and ::1 first, where it has both) */
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("N1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.nids, 1);
}

TEST(addresses_are_tried_in_order) {
  action_t sc[] = {A_AA, A_AA};
  REQUIRE(server_start(sc, 2) == 0);
  int refused = closed_port();
  REQUIRE(refused > 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.host = "db.example"; /* never resolved: the seam gives the addresses */
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  /* refused; refused or unreachable (no IPv6); the server */
  struct sockaddr_storage a[3] = {addr_of("127.0.0.1", refused), addr_of("::1", S.port),
                                  addr_of("127.0.0.1", S.port)};
  REQUIRE(cad__mllp_sender_set_addrs(s, a, 3) == 0);
  uint64_t t0 = uv_hrtime();
  result_t r = deliver(&loop, s, MSG("A1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  CHECK((uv_hrtime() - t0) / 1000000 < 1000); /* a refusal moves on at once */
  CHECK_INT(deliver(&loop, s, MSG("A2")).outcome, CAD_MLLP_SEND_OK); /* kept */
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connects, 1);
  CHECK_INT(st.connect_failures, 0);
  CHECK_INT(st.closed, 2); /* the two that failed */
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 1);
  CHECK_INT(S.nids, 2);

  /* every address refused: one failed connect, with the last reason */
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o2 = {0};
  o2.host = "db.example";
  o2.port = 1;
  s = sender(&loop, &o2);
  REQUIRE(s);
  struct sockaddr_storage b[2] = {addr_of("127.0.0.1", refused), addr_of("127.0.0.2", refused)};
  REQUIRE(cad__mllp_sender_set_addrs(s, b, 2) == 0);
  r = deliver(&loop, s, MSG("A3"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "connect to db.example:1 failed (2 addresses, the last: ") != NULL);
  CHECK(strstr(r.detail, "ECONNREFUSED") != NULL);
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connect_failures, 1);
  CHECK_INT(st.connects, 0);
  CHECK_INT(cad__mllp_sender_set_addrs(s, b, 0), CAD_E_INVAL);
  finish_loop(&loop, s);
}

TEST(an_address_that_never_answers_gets_its_share) {
  action_t sc[] = {A_AA};
  REQUIRE(server_start(sc, 1) == 0);
  int fds[2];
  int silent = silent_port(fds);
  REQUIRE(silent > 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* alone: the whole connect timeout, then a timeout */
  cad_mllp_sender_opts_t o = {0};
  o.connect_timeout_ms = 300;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  struct sockaddr_storage a[2] = {addr_of("127.0.0.1", silent), addr_of("127.0.0.1", S.port)};
  REQUIRE(cad__mllp_sender_set_addrs(s, a, 1) == 0);
  uint64_t t0 = uv_hrtime();
  result_t r = deliver(&loop, s, MSG("Q1"));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "timed out after 300ms") != NULL);
  CHECK(ms >= 290 && ms < 1500);
  finish_loop(&loop, s);
  /* first of two, 3 s in all: it gets 2 s (the least share), the server
   * the rest */
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o2 = {0};
  o2.connect_timeout_ms = 3000;
  s = sender(&loop, &o2);
  REQUIRE(s);
  REQUIRE(cad__mllp_sender_set_addrs(s, a, 2) == 0);
  t0 = uv_hrtime();
  r = deliver(&loop, s, MSG("Q2"));
  ms = (uv_hrtime() - t0) / 1000000;
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  CHECK(ms >= 1990 && ms < 2900);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connect_failures, 0);
  finish_loop(&loop, s);
  close(fds[1]);
  close(fds[0]);
  server_stop();
  CHECK_INT(S.nids, 1);
}

/* The thread pool, blocked: work queued behind these does not start until
 * pool_release(). */
#define MAX_BLOCKERS 128
static uv_work_t blockers[MAX_BLOCKERS];
static uv_sem_t pool_gate;

static void block_work(uv_work_t *w) {
  (void)w;
  uv_sem_wait(&pool_gate);
}

static void block_done(uv_work_t *w, int status) {
  (void)w;
  (void)status;
}

static int pool_block(uv_loop_t *loop) {
  const char *env = getenv("UV_THREADPOOL_SIZE"); /* as libuv sizes it */
  int n = env && atoi(env) > 0 ? atoi(env) : 4;
  if (n > MAX_BLOCKERS) return -1;
  uv_sem_init(&pool_gate, 0);
  for (int i = 0; i < n; i++) uv_queue_work(loop, &blockers[i], block_work, block_done);
  return n;
}

static void pool_release(int n) {
  for (int i = 0; i < n; i++) uv_sem_post(&pool_gate);
}

/* uv_getaddrinfo, watched: how each lookup ended. */
typedef struct {
  uv_getaddrinfo_cb cb[4];
  uv_getaddrinfo_t *req[4];
  int status[4];
  int n, done;
} spy_t;

static spy_t SPY;

static void spy_done(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  for (int i = 0; i < SPY.n; i++)
    if (SPY.req[i] == req) {
      SPY.status[i] = status;
      SPY.done++;
      SPY.cb[i](req, status, res);
      return;
    }
}

static int spy_resolve(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                       const char *node, const char *service, const struct addrinfo *hints) {
  if (SPY.n == 4) return UV_ENOMEM;
  SPY.req[SPY.n] = req;
  SPY.cb[SPY.n] = cb;
  int rc = uv_getaddrinfo(loop, req, spy_done, node, service, hints);
  if (rc == 0) SPY.n++;
  return rc;
}

TEST(lookup_timeout_cancels_a_queued_lookup) {
  memset(&SPY, 0, sizeof SPY);
  uv_loop_t loop;
  uv_loop_init(&loop);
  int n = pool_block(&loop);
  REQUIRE(n > 0);
  cad_mllp_sender_opts_t o = {0};
  o.host = "localhost";
  o.port = 1;
  o.connect_timeout_ms = 150;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  cad__mllp_sender_set_resolver(s, spy_resolve);
  uint64_t t0 = uv_hrtime();
  result_t r = deliver(&loop, s, MSG("D1"));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK_STR(r.detail, "cannot resolve localhost: no answer within 150ms");
  CHECK(ms >= 140 && ms < 1500);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connect_failures, 1);
  /* another lookup, and the sender closed while it waits: closing does not
   * wait for it */
  result_t r2 = {0, -1, ""};
  const char *m = MSG("D2");
  CHECK_INT(cad_mllp_sender_deliver(s, m, strlen(m), 2, on_done, &r2), 0);
  uv_run(&loop, UV_RUN_NOWAIT); /* the kick: the lookup is queued */
  closed = 0;
  cad_mllp_sender_close(s, on_closed, NULL);
  CHECK_INT(r2.calls, 1);
  CHECK_STR(r2.detail, "shutting down");
  run_until(&loop, &closed);
  /* the pool free again: both lookups were cancelled before they started,
   * and their callbacks (UV_EAI_CANCELED) only free them */
  pool_release(n);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
  uv_sem_destroy(&pool_gate);
  CHECK_INT(SPY.n, 2);
  CHECK_INT(SPY.done, 2);
  CHECK_INT(SPY.status[0], UV_EAI_CANCELED);
  CHECK_INT(SPY.status[1], UV_EAI_CANCELED);
}

/* A resolver whose lookups hang, as if the thread pool were stuck inside
 * getaddrinfo: uv_cancel cannot stop them (the request was never given to
 * libuv, so it returns an error, as it does for running work).  answer()
 * lets one finish, late, through the real uv_getaddrinfo. */
typedef struct {
  uv_getaddrinfo_t *req[4];
  uv_getaddrinfo_cb cb[4];
  int n;
} hung_t;

static hung_t H;

static int hung_resolve(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                        const char *node, const char *service, const struct addrinfo *hints) {
  (void)loop;
  (void)node;
  (void)service;
  (void)hints;
  if (H.n == 4) return UV_ENOMEM;
  H.req[H.n] = req;
  H.cb[H.n++] = cb;
  return 0;
}

static void answer(uv_loop_t *loop, int i) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  CHECK_INT(uv_getaddrinfo(loop, H.req[i], H.cb[i], "127.0.0.1", NULL, &hints), 0);
}

TEST(late_lookup_answers_are_harmless) {
  action_t sc[] = {A_AA};
  REQUIRE(server_start(sc, 1) == 0);
  memset(&H, 0, sizeof H);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.host = "hangs.example";
  o.connect_timeout_ms = 100;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  cad__mllp_sender_set_resolver(s, hung_resolve);
  result_t r = deliver(&loop, s, MSG("H1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK_STR(r.detail, "cannot resolve hangs.example: no answer within 100ms");
  REQUIRE(H.n == 1);
  /* the next attempt: a new lookup; the old one answers meanwhile and is
   * ignored (it names 127.0.0.1, where the server is: it must not connect) */
  const char *m = MSG("H2");
  result_t r2 = {0, -1, ""};
  CHECK_INT(cad_mllp_sender_deliver(s, m, strlen(m), 2, on_done, &r2), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  REQUIRE(H.n == 2);
  answer(&loop, 0);
  uint64_t t0 = uv_hrtime();
  while (uv_hrtime() - t0 < 50000000ull) uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  CHECK_INT(r2.calls, 0);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connects, 0);
  /* closed while the second one hangs: at once */
  closed = 0;
  cad_mllp_sender_close(s, on_closed, NULL);
  CHECK_INT(r2.calls, 1);
  CHECK_STR(r2.detail, "shutting down");
  run_until(&loop, &closed);
  /* the sender is freed; its lookup answers now (ASan: nothing touched) */
  answer(&loop, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
  server_stop();
  CHECK_INT(S.accepts, 0);
}

/* ---- a kept connection the peer closed while idle ------------------------ */

TEST(idle_connection_closed_by_peer_is_replaced_at_once) {
  action_t sc[] = {A_AA_CLOSE, A_AA_CLOSE, A_AA};
  REQUIRE(server_start(sc, 3) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.ack_timeout_ms = 2000;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("Z1")).outcome, CAD_MLLP_SEND_OK);
  /* the FIN arrives while the loop does not run: it is found only when the
   * next message is due, and must be found before that message is written */
  usleep(50000);
  uint64_t t0 = uv_hrtime();
  result_t r = deliver(&loop, s, MSG("Z2"));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK); /* one attempt, no RETRY */
  CHECK(ms < 500);                        /* the delivery's first backoff is 1 s */
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.reopened, 1);
  CHECK_INT(st.connect_failures, 0);
  CHECK_INT(st.no_ack, 0);
  CHECK_INT(st.sent, 2);
  /* the same FIN, seen by the loop while idle: the next message connects */
  t0 = uv_hrtime();
  while (uv_hrtime() - t0 < 100000000ull) uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  CHECK_INT(deliver(&loop, s, MSG("Z3")).outcome, CAD_MLLP_SEND_OK);
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connects, 3);
  CHECK_INT(st.reopened, 1);
  CHECK_INT(st.connect_failures, 0);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 3);
  REQUIRE(S.nids == 3); /* each message once */
  CHECK_STR(S.ids[0], "Z1");
  CHECK_STR(S.ids[1], "Z2");
  CHECK_STR(S.ids[2], "Z3");
}

/* A delivery worker hands over the next message from the callback of the
 * one before; here the close arrives with the ACK, and is read either by
 * the loop after the ACK or when the next message is due (with TLS, where
 * close_notify comes in the same read as the ACK, always the former: see
 * tls_close_notify_with_the_ack). */
typedef struct {
  cad_mllp_sender_t *s;
  const char *next;
  result_t first, second;
} chain_t;

static void on_done_then_next(void *ctx, int outcome, const char *detail) {
  chain_t *c = ctx;
  on_done(&c->first, outcome, detail);
  CHECK_INT(cad_mllp_sender_deliver(c->s, c->next, strlen(c->next), 2, on_done, &c->second), 0);
}

TEST(close_read_with_the_ack_is_no_failure_for_the_next_message) {
  action_t sc[] = {A_AA, A_AA_CLOSE, A_AA};
  REQUIRE(server_start(sc, 3) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("F0")).outcome, CAD_MLLP_SEND_OK); /* connected */
  chain_t c = {s, MSG("F2"), {0, -1, ""}, {0, -1, ""}};
  const char *m = MSG("F1");
  CHECK_INT(cad_mllp_sender_deliver(s, m, strlen(m), 1, on_done_then_next, &c), 0);
  uint64_t t0 = uv_hrtime();
  while (S.nids < 2 && uv_hrtime() - t0 < 2000000000ull) uv_run(&loop, UV_RUN_NOWAIT), usleep(500);
  usleep(50000); /* the ACK and the FIN are both waiting now */
  run_until(&loop, &c.second.calls);
  CHECK_INT(c.first.outcome, CAD_MLLP_SEND_OK);
  CHECK_INT(c.second.outcome, CAD_MLLP_SEND_OK);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.connect_failures, 0);
  CHECK_INT(st.no_ack, 0);
  CHECK_INT(st.reopened, 1);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 2);
  REQUIRE(S.nids == 3);
  CHECK_STR(S.ids[1], "F1");
  CHECK_STR(S.ids[2], "F2");
}

TEST(peer_closing_every_connection_is_no_tight_loop) {
  action_t sc[] = {A_AA_CLOSE};
  REQUIRE(server_start(sc, 1) == 0);
  S.slam_after = 1; /* every later connection: closed at once, unread */
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_mllp_sender_opts_t o = {0};
  o.ack_timeout_ms = 2000;
  cad_mllp_sender_t *s = sender(&loop, &o);
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("Y1")).outcome, CAD_MLLP_SEND_OK);
  usleep(50000);
  /* the kept connection is found closed: one immediate reconnect, which the
   * peer closes too: a real failure, RETRY (the backoff is the caller's) */
  result_t r = deliver(&loop, s, MSG("Y2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "lost before the ACK") != NULL);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.reopened, 1);
  CHECK_INT(st.connects, 2);
  /* the retry: a new connection, no reconnect of its own */
  r = deliver(&loop, s, MSG("Y2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.reopened, 1);
  CHECK_INT(st.connects, 3);
  finish_loop(&loop, s);
  server_stop();
  CHECK_INT(S.accepts, 3);
  CHECK_INT(S.nids, 1);
}

/* ---- TLS: the sender against a server built on the transport ------------ */

static char pki[64]; /* certificates made once, before the tests fork */

static int sh(const char *cmd) {
  char full[2048];
  snprintf(full, sizeof full, "cd %s && ( %s ) >/dev/null 2>&1", pki, cmd);
  return system(full);
}

static void make_cert(const char *name, const char *cn, const char *ca, const char *usage,
                      const char *san, const char *days) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s.key "
           "-out %s.csr -subj /CN=%s && printf 'basicConstraints=CA:FALSE\\n"
           "extendedKeyUsage=%s\\n%s%s\\n' > %s.ext && openssl x509 -req -in %s.csr -CA %s.crt "
           "-CAkey %s.key -CAcreateserial -out %s.crt -days %s -extfile %s.ext",
           name, name, cn, usage, san ? "subjectAltName=" : "", san ? san : "", name, name, ca, ca,
           name, days, name);
  if (sh(cmd) != 0) fprintf(stderr, "  cannot make %s\n", name);
}

__attribute__((constructor)) static void make_pki(void) {
  snprintf(pki, sizeof pki, "/tmp/cad-ut-tls-XXXXXX");
  if (!mkdtemp(pki)) return;
#define MAKE_CA(n, cn)                                                                   \
  "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " n \
  ".key -out " n ".crt -days 30 -subj /CN=" cn                                           \
  " -addext basicConstraints=critical,CA:TRUE "                                          \
  "-addext keyUsage=critical,keyCertSign,cRLSign"
  sh(MAKE_CA("ca", "TestCA"));
  sh(MAKE_CA("ca2", "OtherCA"));
  make_cert("server", "localhost", "ca", "serverAuth", "DNS:localhost,IP:127.0.0.1", "30");
  make_cert("client", "lab-analyzer-1", "ca", "clientAuth", NULL, "30");
  make_cert("client2", "lab-analyzer-2", "ca", "clientAuth", NULL, "30");
  make_cert("client_old", "lab-analyzer-1", "ca", "clientAuth", NULL, "-1");
  make_cert("client_ca2", "lab-analyzer-1", "ca2", "clientAuth", NULL, "30");
}

__attribute__((destructor)) static void remove_pki(void) {
  if (pki[0] && getpid() != 0 && strncmp(pki, "/tmp/cad-ut-tls-", 16) == 0) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", pki);
    if (system(cmd) != 0) { /* best effort */
    }
  }
}

static const char *pf(const char *name) { /* a path in pki (rotating buffers) */
  static char bufs[8][128];
  static int i;
  char *b = bufs[i++ % 8];
  snprintf(b, 128, "%s/%s", pki, name);
  return b;
}

typedef struct {
  uv_tcp_t server;
  cad_tls_ctx_t *ctx;
  uint64_t hs_timeout;
  cad_transport_t *conn;
  cad_mllp_framer_t fr;
  int errors, last_err, messages, accepted;
  int close_after; /* > 0: close (gracefully) after the ACK of this message */
  cad_tls_reason_t reason;
  char reason_text[200];
  char peer[128];
  int port;
} tls_server_t;

static tls_server_t T;

static void ts_on_ready(cad_transport_t *t) {
  snprintf(T.peer, sizeof T.peer, "%s", cad_transport_peer_name(t));
}

static void ts_on_data(cad_transport_t *t, const char *p, size_t n) {
  cad_mllp_feed(&T.fr, p, n);
  cad_str_t f;
  while (cad_mllp_next(&T.fr, &f) == 1) {
    char msg[512], ctl[64];
    snprintf(msg, sizeof msg, "%.*s", (int)f.len, f.p);
    msh10(msg, ctl, sizeof ctl);
    T.messages++;
    static char ack[256];
    int k = snprintf(ack, sizeof ack,
                     "\x0bMSH|^~\\&|B|B|A|A|20260101||ACK|X%s|P|2.5\rMSA|AA|%s\r\x1c\r", ctl, ctl);
    uv_buf_t b = uv_buf_init(ack, (unsigned)k);
    cad_transport_write(t, &b, 1, NULL, NULL);
    if (T.messages == T.close_after) { /* ACK and close_notify leave together */
      cad_transport_close(t, true, 0, NULL, NULL);
      if (T.conn == t) T.conn = NULL;
      return;
    }
  }
}

static void ts_conn_closed(void *arg) { (void)arg; }

static void ts_on_error(cad_transport_t *t, int err) {
  T.errors++;
  T.last_err = err;
  T.reason = cad_transport_tls_reason(t);
  snprintf(T.reason_text, sizeof T.reason_text, "%s", cad_transport_reason(t));
  cad_transport_close(t, false, 0, ts_conn_closed, NULL);
  if (T.conn == t) T.conn = NULL;
}

static const cad_transport_cbs_t ts_cbs = {ts_on_ready, ts_on_data, ts_on_error};

static void ts_on_connection(uv_stream_t *srv, int status) {
  if (status < 0) return;
  cad_transport_t *t = NULL;
  if (cad_transport_new(srv->loop, &ts_cbs, NULL, &t) != 0) return;
  if (uv_accept(srv, cad_transport_stream(t)) != 0 ||
      cad_transport_accept(t, T.ctx, T.hs_timeout) != 0) {
    cad_transport_close(t, false, 0, NULL, NULL);
    return;
  }
  T.accepted++;
  if (T.conn) cad_transport_close(T.conn, false, 0, NULL, NULL); /* one at a time */
  T.conn = t;
}

static int ts_start(uv_loop_t *loop, const cad_tls_server_opts_t *o) {
  memset(&T, 0, sizeof T);
  char err[300] = "";
  if (cad_tls_server_ctx_new(o, &T.ctx, err, sizeof err) != 0) {
    fprintf(stderr, "  server ctx: %s\n", err);
    return -1;
  }
  T.hs_timeout = 2000;
  cad_mllp_init(&T.fr, 0);
  uv_tcp_init(loop, &T.server);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  if (uv_tcp_bind(&T.server, (struct sockaddr *)&a, 0) ||
      uv_listen((uv_stream_t *)&T.server, 8, ts_on_connection))
    return -1;
  int len = sizeof a;
  uv_tcp_getsockname(&T.server, (struct sockaddr *)&a, &len);
  T.port = ntohs(a.sin_port);
  return 0;
}

static void ts_stop(uv_loop_t *loop) {
  if (T.conn) cad_transport_close(T.conn, false, 0, NULL, NULL);
  uv_close((uv_handle_t *)&T.server, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  cad_tls_ctx_unref(T.ctx);
  cad_mllp_free(&T.fr);
}

/* A sender with a client context; NULL cert = no client certificate. */
/* A TLS sender to the test server at `host`, checking the certificate names
 * server_name (NULL: host). */
static cad_mllp_sender_t *tls_sender_named(uv_loop_t *loop, const char *ca, const char *cert,
                                           const char *key, const char *host,
                                           const char *server_name) {
  cad_tls_client_opts_t co = {
      ca ? pf(ca) : NULL, cert ? pf(cert) : NULL, key ? pf(key) : NULL, false, NULL, CAD_TLS_V1_2};
  cad_tls_ctx_t *ctx = NULL;
  char err[300];
  if (cad_tls_client_ctx_new(&co, &ctx, err, sizeof err) != 0) {
    fprintf(stderr, "  client ctx: %s\n", err);
    return NULL;
  }
  cad_mllp_sender_opts_t o = {0};
  o.host = host;
  o.port = T.port;
  o.tls = ctx;
  o.verify_hostname = true;
  o.server_name = server_name;
  o.ack_timeout_ms = 2000;
  o.connect_timeout_ms = 2000;
  cad_mllp_sender_t *s = NULL;
  cad_mllp_sender_new(loop, &o, &s, err, sizeof err);
  cad_tls_ctx_unref(ctx); /* the sender holds its own reference */
  return s;
}

static cad_mllp_sender_t *tls_sender(uv_loop_t *loop, const char *ca, const char *cert,
                                     const char *key, const char *host) {
  return tls_sender_named(loop, ca, cert, key, host, NULL);
}

static void tls_close(uv_loop_t *loop, cad_mllp_sender_t *s) {
  closed = 0;
  cad_mllp_sender_close(s, on_closed, NULL);
  run_until(loop, &closed);
  ts_stop(loop);
  CHECK_INT(uv_loop_close(loop), 0);
}

TEST(tls_good_handshake_and_reuse) {
  REQUIRE(pki[0]);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_tls_server_opts_t so = {pf("server.crt"), pf("server.key"), NULL, false, NULL, 0, NULL,
                              CAD_TLS_V1_2};
  REQUIRE(ts_start(&loop, &so) == 0);
  cad_mllp_sender_t *s = tls_sender(&loop, "ca.crt", NULL, NULL, "127.0.0.1");
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("S1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  r = deliver(&loop, s, MSG("S2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  CHECK_INT(T.messages, 2);
  CHECK_INT(T.accepted, 1);
  CHECK_STR(T.peer, ""); /* no client certificate asked for */
  tls_close(&loop, s);
}

TEST(tls_idle_connection_closed_by_peer_is_replaced_at_once) {
  REQUIRE(pki[0]);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_tls_server_opts_t so = {pf("server.crt"), pf("server.key"), NULL, false, NULL, 0, NULL,
                              CAD_TLS_V1_2};
  REQUIRE(ts_start(&loop, &so) == 0);
  cad_mllp_sender_t *s = tls_sender(&loop, "ca.crt", NULL, NULL, "127.0.0.1");
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("V1")).outcome, CAD_MLLP_SEND_OK);
  REQUIRE(T.conn);
  /* the server closes the idle connection: its close_notify is written at
   * once, and read by the sender only when the next message is due */
  cad_transport_close(T.conn, true, 0, ts_conn_closed, NULL);
  T.conn = NULL;
  usleep(50000);
  uint64_t t0 = uv_hrtime();
  result_t r = deliver(&loop, s, MSG("V2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_OK);
  CHECK((uv_hrtime() - t0) / 1000000 < 500);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.reopened, 1);
  CHECK_INT(st.connects, 2);
  CHECK_INT(st.connect_failures, 0);
  CHECK_INT(T.messages, 2);
  CHECK_INT(T.accepted, 2);
  tls_close(&loop, s);
}

TEST(tls_close_notify_with_the_ack) {
  REQUIRE(pki[0]);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_tls_server_opts_t so = {pf("server.crt"), pf("server.key"), NULL, false, NULL, 0, NULL,
                              CAD_TLS_V1_2};
  REQUIRE(ts_start(&loop, &so) == 0);
  T.close_after = 2;
  cad_mllp_sender_t *s = tls_sender(&loop, "ca.crt", NULL, NULL, "127.0.0.1");
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("W0")).outcome, CAD_MLLP_SEND_OK);
  /* W1's ACK and the close come in one read: the next message, handed
   * over from W1's callback, finds its connection closed before it is
   * written, and goes on a new one */
  chain_t c = {s, MSG("W2"), {0, -1, ""}, {0, -1, ""}};
  const char *m = MSG("W1");
  CHECK_INT(cad_mllp_sender_deliver(s, m, strlen(m), 1, on_done_then_next, &c), 0);
  run_until(&loop, &c.second.calls);
  CHECK_INT(c.first.outcome, CAD_MLLP_SEND_OK);
  CHECK_INT(c.second.outcome, CAD_MLLP_SEND_OK);
  cad_mllp_sender_stats_t st;
  cad_mllp_sender_get_stats(s, &st);
  CHECK_INT(st.reopened, 1);
  CHECK_INT(st.connect_failures, 0);
  CHECK_INT(st.no_ack, 0);
  CHECK_INT(T.messages, 3);
  CHECK_INT(T.accepted, 2);
  tls_close(&loop, s);
}

TEST(tls_client_checks_the_server) {
  REQUIRE(pki[0]);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_tls_server_opts_t so = {pf("server.crt"), pf("server.key"), NULL, false, NULL, 0, NULL,
                              CAD_TLS_V1_2};
  REQUIRE(ts_start(&loop, &so) == 0);
  cad_mllp_sender_t *s = tls_sender(&loop, "ca2.crt", NULL, NULL, "127.0.0.1");
  REQUIRE(s);
  result_t r = deliver(&loop, s, MSG("U1"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "TLS: unknown CA") != NULL);
  cad_mllp_sender_close(s, NULL, NULL);
  /* the server saw our alert */
  uint64_t t0 = uv_hrtime();
  while (T.errors == 0 && uv_hrtime() - t0 < 2000000000ull) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_INT(T.reason, CAD_TLS_PEER_REJECTED);
  /* a name the certificate does not carry (the server it reaches is the
   * right one: only the name differs) */
  s = tls_sender_named(&loop, "ca.crt", NULL, NULL, "127.0.0.1", "other.example");
  REQUIRE(s);
  r = deliver(&loop, s, MSG("U2"));
  CHECK_INT(r.outcome, CAD_MLLP_SEND_RETRY);
  CHECK(strstr(r.detail, "TLS: hostname mismatch") != NULL);
  CHECK_INT(T.messages, 0);
  tls_close(&loop, s);
}

static void mutual(const char *cert, const char *key, const char *const *allowed, size_t nallowed,
                   int want_outcome, cad_tls_reason_t want_reason) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_tls_server_opts_t so = {pf("server.crt"), pf("server.key"), pf("ca.crt"), true,
                              allowed,          nallowed,         NULL,         CAD_TLS_V1_2};
  if (ts_start(&loop, &so) != 0) {
    cad_test_failures++;
    return;
  }
  cad_mllp_sender_t *s = tls_sender(&loop, "ca.crt", cert, key, "localhost");
  if (!s) {
    cad_test_failures++;
    return;
  }
  result_t r = deliver(&loop, s, MSG("M1"));
  CHECK_INT(r.outcome, want_outcome);
  uint64_t t0 = uv_hrtime();
  while (want_reason != CAD_TLS_OK && T.errors == 0 && uv_hrtime() - t0 < 2000000000ull)
    uv_run(&loop, UV_RUN_NOWAIT);
  if (want_reason != CAD_TLS_OK) {
    CHECK_INT(T.last_err, UV_EPROTO);
    CHECK_INT(T.reason, want_reason);
    CHECK(strncmp(T.reason_text, cad_tls_reason_name(want_reason),
                  strlen(cad_tls_reason_name(want_reason))) == 0);
    CHECK_INT(T.messages, 0);
  } else {
    CHECK_INT(T.messages, 1);
    CHECK_STR(T.peer, "lab-analyzer-1");
  }
  tls_close(&loop, s);
}

TEST(tls_mutual_good) {
  const char *allowed[] = {"someone-else", "lab-analyzer-1"};
  mutual("client.crt", "client.key", allowed, 2, CAD_MLLP_SEND_OK, CAD_TLS_OK);
  mutual("client.crt", "client.key", NULL, 0, CAD_MLLP_SEND_OK, CAD_TLS_OK);
}

TEST(tls_mutual_refusals) {
  const char *allowed[] = {"lab-analyzer-1"};
  mutual(NULL, NULL, NULL, 0, CAD_MLLP_SEND_RETRY, CAD_TLS_NO_CLIENT_CERT);
  mutual("client2.crt", "client2.key", allowed, 1, CAD_MLLP_SEND_RETRY, CAD_TLS_CLIENT_NOT_ALLOWED);
  mutual("client_old.crt", "client_old.key", NULL, 0, CAD_MLLP_SEND_RETRY, CAD_TLS_EXPIRED);
  mutual("client_ca2.crt", "client_ca2.key", NULL, 0, CAD_MLLP_SEND_RETRY, CAD_TLS_UNKNOWN_CA);
}

TEST(tls_server_handshake_timeout_and_plain_client) {
  REQUIRE(pki[0]);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_tls_server_opts_t so = {pf("server.crt"), pf("server.key"), NULL, false, NULL, 0, NULL,
                              CAD_TLS_V1_2};
  REQUIRE(ts_start(&loop, &so) == 0);
  T.hs_timeout = 150;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)T.port);
  REQUIRE(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
  uint64_t t0 = uv_hrtime();
  while (T.errors == 0 && uv_hrtime() - t0 < 3000000000ull)
    uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  CHECK_INT(T.last_err, UV_ETIMEDOUT);
  CHECK(strstr(T.reason_text, "handshake timed out") != NULL);
  /* plain MLLP to the TLS port */
  int fd2 = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(connect(fd2, (struct sockaddr *)&a, sizeof a) == 0);
  const char *m = "\x0bMSH|^~\\&|A|B|C|D|2026||ADT^A01|P1|P|2.5\r\x1c\r";
  CHECK(send(fd2, m, strlen(m), 0) > 0);
  while (T.errors < 2 && uv_hrtime() - t0 < 3000000000ull)
    uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  CHECK_INT(T.errors, 2);
  CHECK_INT(T.reason, CAD_TLS_NOT_TLS);
  close(fd);
  close(fd2);
  ts_stop(&loop);
  CHECK_INT(uv_loop_close(&loop), 0);
}

TEST(tls_context_errors) {
  REQUIRE(pki[0]);
  char err[300];
  cad_tls_ctx_t *c = NULL;
  cad_tls_server_opts_t so = {pf("nope.crt"), pf("server.key"), NULL, false, NULL, 0,
                              NULL,           CAD_TLS_V1_2};
  CHECK_INT(cad_tls_server_ctx_new(&so, &c, err, sizeof err), CAD_E_IO);
  CHECK(strstr(err, "cannot read certificate") != NULL);
  so.cert_file = pf("server.crt");
  so.key_file = pf("client.key");
  CHECK_INT(cad_tls_server_ctx_new(&so, &c, err, sizeof err), CAD_E_INVAL);
  CHECK(strstr(err, "does not belong to certificate") != NULL);
  so.key_file = pf("server.key");
  so.require_client_cert = true;
  CHECK_INT(cad_tls_server_ctx_new(&so, &c, err, sizeof err), CAD_E_INVAL);
  so.require_client_cert = false;
  so.ciphers = "NO-SUCH-CIPHER";
  CHECK_INT(cad_tls_server_ctx_new(&so, &c, err, sizeof err), CAD_E_INVAL);
  CHECK(strstr(err, "ciphers") != NULL);
  so.ciphers = "ECDHE+AESGCM";
  so.min_version = CAD_TLS_V1_3;
  CHECK_INT(cad_tls_server_ctx_new(&so, &c, err, sizeof err), 0);
  CHECK(c != NULL);
  cad_tls_ctx_t *c2 = cad_tls_ctx_ref(c);
  cad_tls_ctx_unref(c);
  cad_tls_ctx_unref(c2);
  cad_tls_client_opts_t co = {pf("ca.crt"), pf("client.crt"), NULL, false, NULL, CAD_TLS_V1_2};
  CHECK_INT(cad_tls_client_ctx_new(&co, &c, err, sizeof err), CAD_E_INVAL);
}

/* ---- the MLLP listener over TLS (the sender as its client) ---------------- */

typedef struct {
  int frames, tls_failed, tls_ready, denied, opens;
  char detail[200], peer_cn[128];
} lt_t;

static lt_t LT;

static void lt_frame(cad_mllp_req_t *req, int status, cad_str_t frame, void *data) {
  (void)data;
  (void)status;
  char msg[512], ctl[64], ack[300];
  snprintf(msg, sizeof msg, "%.*s", (int)frame.len, frame.p);
  msh10(msg, ctl, sizeof ctl);
  LT.frames++;
  int n =
      snprintf(ack, sizeof ack, "MSH|^~\\&|B|B|A|A|20260101||ACK|Y%s|P|2.5\rMSA|AA|%s\r", ctl, ctl);
  cad_mllp_reply(req, ack, (size_t)n, 0);
}

static void lt_event(const cad_mllp_event_t *ev, void *data) {
  (void)data;
  if (ev->kind == CAD_MLLP_EV_OPEN) LT.opens++;
  if (ev->kind == CAD_MLLP_EV_DENIED) LT.denied++;
  if (ev->kind == CAD_MLLP_EV_TLS_FAILED) {
    LT.tls_failed++;
    snprintf(LT.detail, sizeof LT.detail, "%s", ev->detail ? ev->detail : "");
  }
  if (ev->kind == CAD_MLLP_EV_TLS_READY) {
    LT.tls_ready++;
    snprintf(LT.peer_cn, sizeof LT.peer_cn, "%s", ev->detail ? ev->detail : "");
  }
}

static void lt_closed(void *arg) { *(int *)arg = 1; }

TEST(listener_tls_allow_and_reload) {
  REQUIRE(pki[0]);
  memset(&LT, 0, sizeof LT);
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[300];
  cad_tls_ctx_t *mtls = NULL, *open_tls = NULL;
  cad_tls_server_opts_t so = {pf("server.crt"), pf("server.key"), pf("ca.crt"), true, NULL, 0, NULL,
                              CAD_TLS_V1_2};
  REQUIRE(cad_tls_server_ctx_new(&so, &mtls, err, sizeof err) == 0);
  so.ca_file = NULL;
  so.require_client_cert = false;
  REQUIRE(cad_tls_server_ctx_new(&so, &open_tls, err, sizeof err) == 0);
  cad_cidr_t local;
  cad_cidr_parse("127.0.0.0/8", &local);
  cad_mllp_listener_opts_t lo = {0};
  lo.host = "127.0.0.1";
  lo.tls = mtls;
  lo.allow = &local;
  lo.nallow = 1;
  cad_mllp_listener_t *l = NULL;
  REQUIRE(cad_mllp_listener_start(&loop, &lo, lt_frame, lt_event, NULL, &l) == 0);
  memset(&T, 0, sizeof T);
  T.port = cad_mllp_listener_port(l);
  /* with a client certificate: accepted, the client's name reported */
  cad_mllp_sender_t *s = tls_sender(&loop, "ca.crt", "client.crt", "client.key", "127.0.0.1");
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("L1")).outcome, CAD_MLLP_SEND_OK);
  CHECK_STR(LT.peer_cn, "lab-analyzer-1");
  closed = 0;
  cad_mllp_sender_close(s, on_closed, NULL);
  run_until(&loop, &closed);
  /* without: refused in the handshake, with the reason */
  s = tls_sender(&loop, "ca.crt", NULL, NULL, "127.0.0.1");
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("L2")).outcome, CAD_MLLP_SEND_RETRY);
  uint64_t t0 = uv_hrtime();
  while (LT.tls_failed == 0 && uv_hrtime() - t0 < 2000000000ull) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(strncmp(LT.detail, "no client certificate", 21) == 0);
  /* reload: a context without client certificates, for new connections */
  lo.tls = open_tls;
  CHECK_INT(cad_mllp_listener_update(l, &lo), 0);
  CHECK_INT(deliver(&loop, s, MSG("L2")).outcome, CAD_MLLP_SEND_OK);
  closed = 0;
  cad_mllp_sender_close(s, on_closed, NULL);
  run_until(&loop, &closed);
  CHECK_INT(LT.frames, 2);
  /* allow: 10.0.0.0/8 only: 127.0.0.1 is closed at once */
  cad_cidr_parse("10.0.0.0/8", &local);
  CHECK_INT(cad_mllp_listener_update(l, &lo), 0);
  s = tls_sender(&loop, "ca.crt", NULL, NULL, "127.0.0.1");
  REQUIRE(s);
  CHECK_INT(deliver(&loop, s, MSG("L3")).outcome, CAD_MLLP_SEND_RETRY);
  CHECK_INT(LT.denied, 1);
  CHECK_INT(LT.frames, 2);
  closed = 0;
  cad_mllp_sender_close(s, on_closed, NULL);
  run_until(&loop, &closed);
  cad_tls_ctx_unref(mtls); /* the listener holds its own references */
  cad_tls_ctx_unref(open_tls);
  int lclosed = 0;
  cad_mllp_listener_close(l, 1000, lt_closed, &lclosed);
  run_until(&loop, &lclosed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
}

TEST_MAIN()
