/* mllp_sink.c - a bare MLLP acking sink, the yardstick for the engine.
 *
 *   mllp_sink [-h HOST] -p PORT
 *
 * libuv, one loop thread.  Every end block (0x1C) received answers one frame
 * with the same fixed, minimal ACK; nothing is parsed, stored or logged.  It
 * is the upper bound of what any MLLP server can do on this machine with the
 * same event loop, so the engine's rate is reported as a fraction of it.
 * Stops on SIGINT/SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static const char ACK[] = "\x0bMSH|^~\\&|SINK|BENCH|LOADGEN|BENCH|20260101120000||ACK^A01^ACK|"
                          "S1|P|2.5.1\rMSA|AA|0\r\x1c\x0d";

typedef struct {
  uv_tcp_t tcp;
  int in_frame;
} client_t;

typedef struct {
  uv_write_t w;
  char data[];
} wreq_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_int, sig_term;
static char rbuf[65536];

static void on_closed(uv_handle_t *h) { free(h); }

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  (void)h;
  (void)s;
  *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_write(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client_t *c = (client_t *)s;
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  size_t frames = 0;
  for (ssize_t i = 0; i < n; i++) {
    if (b->base[i] == 0x0b) c->in_frame = 1;
    if (b->base[i] == 0x1c && c->in_frame) {
      c->in_frame = 0;
      frames++;
    }
  }
  if (!frames) return;
  size_t one = sizeof ACK - 1;
  wreq_t *w = malloc(sizeof *w + frames * one);
  if (!w) return;
  for (size_t i = 0; i < frames; i++) memcpy(w->data + i * one, ACK, one);
  uv_buf_t out = uv_buf_init(w->data, (unsigned)(frames * one));
  if (uv_write(&w->w, s, &out, 1, on_write) < 0) free(w);
}

static void on_conn(uv_stream_t *srv, int status) {
  if (status < 0) return;
  client_t *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP && h != (uv_handle_t *)&server)
    uv_close(h, on_closed);
  else
    uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  uv_walk(loop, close_any, NULL);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, opt;
  while ((opt = getopt(argc, argv, "h:p:")) != -1) {
    if (opt == 'h')
      host = optarg;
    else if (opt == 'p')
      port = atoi(optarg);
    else {
      fprintf(stderr, "usage: mllp_sink [-h HOST] -p PORT\n");
      return 2;
    }
  }
  if (port <= 0) {
    fprintf(stderr, "usage: mllp_sink [-h HOST] -p PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  struct sockaddr_in a;
  uv_ip4_addr(host, port, &a);
  uv_tcp_init(loop, &server);
  int rc = uv_tcp_bind(&server, (struct sockaddr *)&a, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 511, on_conn);
  if (rc < 0) {
    fprintf(stderr, "mllp_sink: %s:%d: %s\n", host, port, uv_strerror(rc));
    return 1;
  }
  uv_signal_init(loop, &sig_int);
  uv_signal_init(loop, &sig_term);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
