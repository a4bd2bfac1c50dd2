/* mllp_sink.c - a bare MLLP acking sink, the yardstick for the engine.
 *
 *   mllp_sink [-h HOST] -p PORT [-e] [-d FILE]
 *
 * -e: echo mode.  The ACK's MSA-2 is the frame's own MSH-10 (read while the
 * bytes pass, without buffering the message), so senders that check the
 * control id (the engine's MLLP destination) accept it.  Without -e every
 * ACK is the same fixed bytes (MSA-2 = 0).
 *
 * libuv, one loop thread.  Every end block (0x1C) received answers one frame
 * with the same fixed, minimal ACK; nothing is parsed, stored or logged.  It
 * is the upper bound of what any MLLP server can do on this machine with the
 * same event loop, so the engine's rate is reported as a fraction of it.
 * Stops on SIGINT/SIGTERM.
 *
 * -d FILE: the bare durable sink, the yardstick for a durable engine.  The
 * bytes received are written to FILE (64 MiB of zeros written first and then
 * overwritten in a circle, so a sync has data to write and no size or extent
 * to change) and the ACKs wait for one fdatasync per loop iteration: the
 * reads of every connection in one iteration share it (a group commit with
 * nothing else: no parsing, no index, no thread).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static const char ACK[] =
    "\x0bMSH|^~\\&|SINK|BENCH|LOADGEN|BENCH|20260101120000||ACK^A01^ACK|"
    "S1|P|2.5.1\rMSA|AA|0\r\x1c\x0d";

typedef struct {
  uv_tcp_t tcp;
  int in_frame;
  /* echo mode: where we are in the frame's first segment */
  size_t pos; /* bytes of the frame seen */
  char fs;    /* field separator (MSH-1) */
  int seps;   /* field separators seen in the first segment */
  int done;   /* the first segment has ended */
  char ctl[64];
  size_t ctl_len;
  size_t unacked; /* -d: frames waiting for the next fdatasync */
} client_t;

static int echo;

typedef struct {
  uv_write_t w;
  char data[];
} wreq_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_int, sig_term;
static char rbuf[65536];

/* -d: the file, where the next bytes go, and the connections with frames
 * waiting for the sync (a bench tool: at most MAX_WAITING connections). */
#define RING (64u << 20)
#define MAX_WAITING 1024
static int dfd = -1;
static size_t doff;
static client_t *waiting[MAX_WAITING];
static size_t nwaiting;
static uv_check_t sync_check;

static void forget(client_t *c) {
  for (size_t i = 0; i < nwaiting; i++)
    if (waiting[i] == c) waiting[i] = waiting[--nwaiting];
}

static void on_closed(uv_handle_t *h) {
  forget((client_t *)h);
  free(h);
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  (void)h;
  (void)s;
  *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_write(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static const char ACK_HEAD[] =
    "\x0bMSH|^~\\&|SINK|BENCH|LOADGEN|BENCH|20260101120000||ACK^A01^ACK|S1|P|2.5.1\rMSA|AA|";

static void on_read_echo(client_t *c, uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  char out[65536];
  size_t o = 0;
  for (ssize_t i = 0; i < n; i++) {
    char ch = b->base[i];
    if (ch == 0x0b) {
      c->in_frame = 1;
      c->pos = 0;
      c->seps = 0;
      c->done = 0;
      c->ctl_len = 0;
      continue;
    }
    if (!c->in_frame) continue;
    if (ch == 0x1c) {
      c->in_frame = 0;
      size_t need = sizeof ACK_HEAD - 1 + c->ctl_len + 3;
      if (o + need > sizeof out) {
        uv_buf_t part = uv_buf_init(out, (unsigned)o);
        uv_try_write(s, &part, 1); /* bench tool: a full kernel buffer drops ACKs */
        o = 0;
      }
      memcpy(out + o, ACK_HEAD, sizeof ACK_HEAD - 1);
      o += sizeof ACK_HEAD - 1;
      memcpy(out + o, c->ctl, c->ctl_len);
      o += c->ctl_len;
      memcpy(out + o, "\r\x1c\r", 3);
      o += 3;
      continue;
    }
    size_t p = c->pos++;
    if (c->done) continue;
    if (p == 3) {
      c->fs = ch;
      c->seps = 1;
      continue;
    }
    if (p < 3) continue;
    if (ch == '\r' || ch == '\n') {
      c->done = 1;
    } else if (ch == c->fs) {
      if (++c->seps > 9) c->done = 1;
    } else if (c->seps == 9 && c->ctl_len < sizeof c->ctl) {
      c->ctl[c->ctl_len++] = ch;
    }
  }
  if (!o) return;
  wreq_t *w = malloc(sizeof *w + o);
  if (!w) return;
  memcpy(w->data, out, o);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)o);
  if (uv_write(&w->w, s, &buf, 1, on_write) < 0) free(w);
}

/* `frames` fixed ACKs to s. */
static void send_acks(uv_stream_t *s, size_t frames) {
  size_t one = sizeof ACK - 1;
  wreq_t *w = malloc(sizeof *w + frames * one);
  if (!w) return;
  for (size_t i = 0; i < frames; i++) memcpy(w->data + i * one, ACK, one);
  uv_buf_t out = uv_buf_init(w->data, (unsigned)(frames * one));
  if (uv_write(&w->w, s, &out, 1, on_write) < 0) free(w);
}

/* -d: the bytes to the file, in the circle. */
static void keep(const char *p, size_t n) {
  while (n) {
    size_t k = RING - doff < n ? RING - doff : n;
    ssize_t w = pwrite(dfd, p, k, (off_t)doff);
    if (w <= 0) {
      perror("mllp_sink: write");
      exit(1);
    }
    doff = (doff + (size_t)w) % RING;
    p += w;
    n -= (size_t)w;
  }
}

/* -d: after the loop's reads, one sync for all, then their ACKs. */
static void on_check(uv_check_t *h) {
  (void)h;
  if (!nwaiting) return;
  if (fdatasync(dfd) != 0) {
    perror("mllp_sink: fdatasync");
    exit(1);
  }
  for (size_t i = 0; i < nwaiting; i++) {
    client_t *c = waiting[i];
    send_acks((uv_stream_t *)&c->tcp, c->unacked);
    c->unacked = 0;
  }
  nwaiting = 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client_t *c = (client_t *)s;
  if (n < 0) {
    forget(c); /* no ACKs to a closing stream */
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  if (echo) {
    on_read_echo(c, s, n, b);
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
  if (dfd >= 0) {
    keep(b->base, (size_t)n);
    if (frames && !c->unacked) {
      if (nwaiting == MAX_WAITING) {
        fprintf(stderr, "mllp_sink: more than %d connections waiting\n", MAX_WAITING);
        exit(1);
      }
      waiting[nwaiting++] = c;
    }
    c->unacked += frames;
    return;
  }
  if (frames) send_acks(s, frames);
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
  if (h->type == UV_TCP && h != (uv_handle_t *)&server) uv_close(h, on_closed);
  else uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  uv_walk(loop, close_any, NULL);
}

/* -d: FILE created 0600 and filled with zeros, synced (a symbolic link
 * planted at FILE is refused, not followed and truncated). */
static int open_ring(const char *path) {
  dfd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (dfd < 0) {
    perror(path);
    return -1;
  }
  static char zero[1 << 20];
  for (size_t o = 0; o < RING; o += sizeof zero)
    if (pwrite(dfd, zero, sizeof zero, (off_t)o) != (ssize_t)sizeof zero) {
      perror(path);
      return -1;
    }
  if (fsync(dfd) != 0) {
    perror(path);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *dpath = NULL;
  int port = 0, opt;
  while ((opt = getopt(argc, argv, "h:p:ed:")) != -1) {
    if (opt == 'e') echo = 1;
    else if (opt == 'd') dpath = optarg;
    else if (opt == 'h') host = optarg;
    else if (opt == 'p') port = atoi(optarg);
    else {
      fprintf(stderr, "usage: mllp_sink [-h HOST] -p PORT [-e] [-d FILE]\n");
      return 2;
    }
  }
  if (port <= 0 || (echo && dpath)) {
    fprintf(stderr, "usage: mllp_sink [-h HOST] -p PORT [-e] [-d FILE] (-e and -d: one of them)\n");
    return 2;
  }
  if (dpath && open_ring(dpath) != 0) return 1;
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
  if (dfd >= 0) {
    uv_check_init(loop, &sync_check);
    uv_check_start(&sync_check, on_check);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  if (dfd >= 0) close(dfd);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
