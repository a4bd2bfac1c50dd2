/* mllp_slow_sink.c - an MLLP receiver that takes DELAY to answer each
 * message, like an EHR that commits before it ACKs.
 *
 *   mllp_slow_sink [-h HOST] -p PORT -d DELAY_US [-n COUNT]
 *
 * One thread per connection with blocking sockets: read a frame, sleep
 * DELAY_US microseconds (clock_nanosleep, so 1 ms is 1 ms, not a loop tick),
 * answer AA with MSA-2 = the frame's MSH-10 (what the engine's MLLP
 * destination checks).  A connection answers one message at a time, so one
 * connection can never pass 1/DELAY messages per second: the yardstick for
 * lanes.  With -n, once COUNT messages are answered it prints
 *   answered=COUNT seconds=S rate=R
 * (S from the first message received to the COUNT-th answer) and exits 0.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long delay_us;
static long want;
static atomic_long answered;
static atomic_llong first_ns;

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000ll + t.tv_nsec;
}

static void sleep_us(long us) {
  struct timespec t = {us / 1000000, (us % 1000000) * 1000};
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &t) != 0) {
  }
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* MSH-10 of the frame f/n into ctl (cut at cap - 1). */
static size_t control_id(const char *f, size_t n, char *ctl, size_t cap) {
  if (n < 4) return 0;
  char fs = f[3];
  int seps = 1;
  size_t o = 0;
  for (size_t i = 4; i < n && f[i] != '\r' && f[i] != '\n'; i++) {
    if (f[i] == fs) {
      if (++seps > 9) break;
    } else if (seps == 9 && o + 1 < cap) {
      ctl[o++] = f[i];
    }
  }
  return o;
}

static void *serve(void *arg) {
  int fd = (int)(intptr_t)arg;
  static const char head[] =
      "\x0bMSH|^~\\&|SLOW|BENCH|ENGINE|BENCH|20260101120000||ACK^A01^ACK|S1|P|2.5.1\rMSA|AA|";
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap);
  while (buf) {
    char *sb = memchr(buf, 0x0b, len);
    char *eb = sb ? memchr(sb, 0x1c, len - (size_t)(sb - buf)) : NULL;
    if (!eb) {
      if (len == cap) len = 0; /* a frame over 1 MiB: not a bench message */
      ssize_t r = read(fd, buf + len, cap - len);
      if (r <= 0) break;
      long long zero = 0;
      atomic_compare_exchange_strong(&first_ns, &zero, now_ns());
      len += (size_t)r;
      continue;
    }
    char ctl[64];
    size_t cl = control_id(sb + 1, (size_t)(eb - sb - 1), ctl, sizeof ctl);
    size_t used = (size_t)(eb - buf) + 1;
    if (used < len && buf[used] == '\r') used++;
    memmove(buf, buf + used, len - used);
    len -= used;
    if (delay_us) sleep_us(delay_us);
    char out[sizeof head + 80];
    size_t o = sizeof head - 1;
    memcpy(out, head, o);
    memcpy(out + o, ctl, cl);
    o += cl;
    memcpy(out + o, "\r\x1c\r", 3);
    o += 3;
    if (write_all(fd, out, o) < 0) break;
    long a = atomic_fetch_add(&answered, 1) + 1;
    if (want && a == want) {
      double s = (double)(now_ns() - atomic_load(&first_ns)) / 1e9;
      printf("answered=%ld seconds=%.3f rate=%.0f\n", a, s, (double)a / s);
      fflush(stdout);
      _exit(0);
    }
  }
  free(buf);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, opt;
  while ((opt = getopt(argc, argv, "h:p:d:n:")) != -1) {
    if (opt == 'h') host = optarg;
    else if (opt == 'p') port = atoi(optarg);
    else if (opt == 'd') delay_us = atol(optarg);
    else if (opt == 'n') want = atol(optarg);
    else {
      fprintf(stderr, "usage: mllp_slow_sink [-h HOST] -p PORT -d DELAY_US [-n COUNT]\n");
      return 2;
    }
  }
  if (port <= 0 || delay_us < 0) {
    fprintf(stderr, "usage: mllp_slow_sink [-h HOST] -p PORT -d DELAY_US [-n COUNT]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || bind(s, (struct sockaddr *)&a, sizeof a) ||
      listen(s, 128)) {
    perror("mllp_slow_sink");
    return 1;
  }
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t th;
    if (pthread_create(&th, NULL, serve, (void *)(intptr_t)c) != 0) close(c);
    else pthread_detach(th);
  }
}
