/* test_transport.c - the server side of cad_transport_t (transport.h) as
 * the MLLP listener uses it: writes after the peer's EOF, the lingering
 * close, the read gate, the peer address and byte counters.  Plain TCP on
 * loopback; the client is a blocking socket in the same thread, the loop
 * runs between its steps. */
#include "transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"

typedef struct {
  uv_loop_t loop;
  uv_tcp_t server;
  int port;
  cad_transport_t *t;
  char got[256];
  size_t ngot;
  int ndata;         /* on_data calls */
  int err;           /* on_error's argument, 0 before */
  int write_rc;      /* what cad_transport_write returned after EOF */
  int written;       /* write callbacks with status 0 */
  int closed;        /* done callback ran */
  int refused;       /* read gate refusals */
  bool gate_open;    /* the read gate's answer */
  bool use_gate;     /* install the gate */
  bool reply_on_eof; /* on UV_EOF: write "pong", then close gracefully */
  bool linger_on_data;
} srv_t;

static srv_t S;

static void on_closed(void *arg) {
  (void)arg;
  S.closed++;
}

static void on_written(cad_transport_t *t, int status, void *arg) {
  (void)arg;
  if (status == 0) S.written++;
  cad_transport_close(t, true, 0, on_closed, NULL);
}

static void on_ready(cad_transport_t *t) { (void)t; }

static void on_data(cad_transport_t *t, const char *p, size_t n) {
  if (S.ngot + n > sizeof S.got) n = sizeof S.got - S.ngot;
  S.ndata++;
  memcpy(S.got + S.ngot, p, n);
  S.ngot += n;
  if (S.linger_on_data) {
    static char bye[] = "bye";
    uv_buf_t b = uv_buf_init(bye, 3);
    cad_transport_write(t, &b, 1, NULL, NULL);
    cad_transport_close_linger(t, 3000, 0, on_closed, NULL);
  }
}

static void on_error(cad_transport_t *t, int err) {
  S.err = err;
  if (err == UV_EOF && S.reply_on_eof) {
    static char pong[] = "pong";
    uv_buf_t b = uv_buf_init(pong, 4);
    S.write_rc = cad_transport_write(t, &b, 1, on_written, NULL);
    if (S.write_rc == CAD_TRANSPORT_WRITTEN) on_written(t, 0, NULL); /* done at once: no cb */
    if (S.write_rc >= 0) return;
  }
  cad_transport_close(t, false, 0, on_closed, NULL);
}

static const cad_transport_cbs_t cbs = {on_ready, on_data, on_error};

static bool gate(cad_transport_t *t) {
  (void)t;
  return S.gate_open;
}

static void gate_refused(cad_transport_t *t) {
  S.refused++;
  cad_transport_read_stop(t);
}

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0 || S.t) return;
  if (cad_transport_new(srv->loop, &cbs, NULL, &S.t) != 0) return;
  if (S.use_gate) cad_transport_set_read_gate(S.t, gate, gate_refused);
  if (uv_accept(srv, cad_transport_stream(S.t)) != 0 || cad_transport_accept(S.t, NULL, 0) != 0)
    cad_transport_close(S.t, false, 0, NULL, NULL);
}

static int srv_start(void) {
  uv_loop_init(&S.loop);
  uv_tcp_init(&S.loop, &S.server);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  if (uv_tcp_bind(&S.server, (struct sockaddr *)&a, 0) ||
      uv_listen((uv_stream_t *)&S.server, 8, on_connection))
    return -1;
  int len = sizeof a;
  uv_tcp_getsockname(&S.server, (struct sockaddr *)&a, &len);
  S.port = ntohs(a.sin_port);
  return 0;
}

static void srv_stop(void) {
  if (S.t && !S.closed) cad_transport_close(S.t, false, 0, on_closed, NULL);
  uv_close((uv_handle_t *)&S.server, NULL);
  uv_run(&S.loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&S.loop), 0);
}

/* Run the loop until *flag (or ms pass). */
static void run_until(const int *flag, int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
  while ((!flag || !*flag) && uv_hrtime() < end) {
    uv_run(&S.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
}

static int client(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)S.port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Everything the client receives until EOF; -1 on a reset or timeout. */
static ssize_t recv_all(int fd, char *buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    ssize_t k = recv(fd, buf + n, cap - n, 0);
    if (k == 0) return (ssize_t)n;
    if (k < 0) return -1;
    n += (size_t)k;
    if (n == cap) return (ssize_t)n;
  }
}

TEST(write_after_peer_eof_is_delivered) {
  memset(&S, 0, sizeof S);
  REQUIRE(srv_start() == 0);
  S.reply_on_eof = true;
  int fd = client();
  REQUIRE(fd >= 0);
  REQUIRE(send(fd, "ping", 4, 0) == 4);
  shutdown(fd, SHUT_WR); /* the peer is done sending, not reading */
  run_until(&S.closed, 3000);
  CHECK_INT(S.err, UV_EOF);
  CHECK_STRN(S.got, S.ngot, "ping");
  CHECK(S.write_rc == 0 || S.write_rc == CAD_TRANSPORT_WRITTEN);
  CHECK_INT(S.written, 1);
  char buf[64];
  ssize_t n = recv_all(fd, buf, sizeof buf);
  CHECK_STRN(buf, n < 0 ? 0 : (size_t)n, "pong");
  close(fd);
  srv_stop();
}

TEST(lingering_close_waits_for_the_peers_fin) {
  memset(&S, 0, sizeof S);
  REQUIRE(srv_start() == 0);
  S.linger_on_data = true;
  int fd = client();
  REQUIRE(fd >= 0);
  REQUIRE(send(fd, "hello", 5, 0) == 5);
  run_until(&S.ndata, 3000);
  REQUIRE(S.ngot == 5);
  /* the server has written "bye" and sent its FIN; the client goes on
   * sending, which the server must read and discard, not answer with RST */
  static char junk[256 * 1024];
  memset(junk, 'x', sizeof junk);
  size_t sent = 0;
  while (sent < sizeof junk) {
    run_until(NULL, 5);
    ssize_t k = send(fd, junk + sent, sizeof junk - sent, MSG_DONTWAIT);
    if (k > 0) sent += (size_t)k;
  }
  run_until(NULL, 100);
  CHECK_INT(S.closed, 0); /* still lingering: the client has not closed */
  CHECK(cad_transport_bytes_in(S.t) >= 5 + sizeof junk);
  shutdown(fd, SHUT_WR);
  run_until(&S.closed, 3000);
  CHECK_INT(S.closed, 1);
  char buf[64];
  ssize_t n = recv_all(fd, buf, sizeof buf);
  CHECK_STRN(buf, n < 0 ? 0 : (size_t)n, "bye"); /* then EOF, not a reset */
  close(fd);
  S.t = NULL;
  srv_stop();
}

TEST(read_gate_refuses_then_reading_resumes) {
  memset(&S, 0, sizeof S);
  REQUIRE(srv_start() == 0);
  S.use_gate = true;
  int fd = client();
  REQUIRE(fd >= 0);
  REQUIRE(send(fd, "abc", 3, 0) == 3);
  run_until(&S.refused, 3000);
  CHECK_INT(S.refused, 1);
  run_until(NULL, 50);
  CHECK_INT(S.refused, 1); /* stopped: not asked again */
  CHECK_INT(S.ngot, 0);
  S.gate_open = true;
  REQUIRE(S.t);
  CHECK_INT(cad_transport_read_start(S.t), 0);
  run_until(&S.ndata, 3000);
  CHECK_STRN(S.got, S.ngot, "abc");
  CHECK_INT(cad_transport_bytes_in(S.t), 3);
  CHECK_INT(cad_transport_bytes_out(S.t), 0);
  struct sockaddr_storage peer;
  struct sockaddr_in mine;
  socklen_t ml = sizeof mine;
  getsockname(fd, (struct sockaddr *)&mine, &ml);
  CHECK_INT(cad_transport_peer_addr(S.t, &peer), 0);
  CHECK_INT(peer.ss_family, AF_INET);
  CHECK_INT(((struct sockaddr_in *)&peer)->sin_port, mine.sin_port);
  close(fd);
  srv_stop();
}

/* A write the socket takes whole is done at once, with no callback; behind
 * a write still queued nothing jumps ahead, so order holds. */
static int try_done;
static void try_written(cad_transport_t *t, int status, void *arg) {
  (void)t;
  (void)arg;
  if (status == 0) try_done++;
}

TEST(write_at_once_and_never_jumps_the_queue) {
  memset(&S, 0, sizeof S);
  try_done = 0;
  REQUIRE(srv_start() == 0);
  int fd = client();
  REQUIRE(fd >= 0);
  REQUIRE(send(fd, "hi", 2, 0) == 2);
  run_until(&S.ndata, 3000);
  REQUIRE(S.t);
  static char a[] = "first,";
  uv_buf_t b = uv_buf_init(a, 6);
  CHECK_INT(cad_transport_write(S.t, &b, 1, try_written, NULL), CAD_TRANSPORT_WRITTEN);
  CHECK_INT(cad_transport_bytes_out(S.t), 6);
  /* Small buffers on both sides, so that 256 KiB cannot go at once: part is
   * written now, the rest queued, and its callback runs. */
  int small = 8192;
  uv_send_buffer_size((uv_handle_t *)cad_transport_stream(S.t), &small);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  static char big[1 << 18];
  memset(big, 'x', sizeof big);
  uv_buf_t bb = uv_buf_init(big, sizeof big);
  CHECK_INT(cad_transport_write(S.t, &bb, 1, try_written, NULL), 0);
  CHECK(cad_transport_write_queue_size(S.t) > 0);
  static char z[] = "last";
  uv_buf_t zb = uv_buf_init(z, 4);
  CHECK_INT(cad_transport_write(S.t, &zb, 1, try_written, NULL), 0); /* behind the queued one */
  /* The client reads everything, in order. */
  size_t want = 6 + sizeof big + 4, got = 0;
  char *all = malloc(want);
  REQUIRE(all);
  while (got < want) {
    run_until(NULL, 1);
    ssize_t k = recv(fd, all + got, want - got, MSG_DONTWAIT);
    if (k > 0) got += (size_t)k;
    else if (k == 0) break;
  }
  run_until(&try_done, 3000);
  CHECK_INT(got, want);
  CHECK(memcmp(all, "first,", 6) == 0);
  CHECK(all[6] == 'x' && all[6 + sizeof big - 1] == 'x');
  CHECK(memcmp(all + 6 + sizeof big, "last", 4) == 0);
  CHECK_INT(try_done, 2); /* the big one and the last one, not the first */
  CHECK_INT(cad_transport_bytes_out(S.t), want);
  free(all);
  close(fd);
  srv_stop();
}

TEST_MAIN()
