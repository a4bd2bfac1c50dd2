/* mllp_load.c - an MLLP load generator: N connections, each keeping up to W
 * messages in flight, until a total count is sent and ACKed.  Prints the
 * rate (messages/s) and the ACK latency percentiles.
 *
 *   mllp_load [-h HOST] -p PORT [-c CONNS] [-n TOTAL] [-w WINDOW] [-f FILE] [-r RATE]
 *
 * -r RATE offers a fixed load of RATE messages/s in total, spread evenly over
 * the connections (each sends on its own schedule, staggered): a message is
 * not sent before its slot.  When the window was still full at its slot (the
 * server is behind), its latency counts from the slot, not from when it could
 * be sent, so a slow server shows in the percentiles (no coordinated
 * omission); when the window had room, from the actual send (a late wake-up
 * of this client's own thread is not the server's latency).  Without -r, as
 * fast as the ACKs come back.
 *
 * cpu_us_per_msg: this process's own CPU time (user + system, all threads)
 * per ACKed message: what the load itself takes from the cores it shares
 * with the server measured.
 *
 * Without -f, each message is a built-in ~1 KB ADT^A01 whose MSH-10 is
 * unique (L<conn>_<seq>), so a file destination keeps every one.  With -f,
 * the file's bytes (one message, \r or \n segment ends) are sent as they are.
 * One thread per connection with blocking sockets: ACKs come back in order
 * on a connection, so the send time of the oldest message in flight is the
 * one an ACK answers.  Exit status 1 if any ACK was not AA/CA or a
 * connection failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static const char *host = "127.0.0.1";
static int port, conns = 1, window = 1;
static long total = 10000;
static double rate;     /* -r: messages/s offered in total, 0 = as fast as possible */
static double start_at; /* common start of every connection's schedule */
static char *file_msg;
static size_t file_len;

typedef struct worker {
  pthread_t th;
  int id;
  long count;  /* messages this connection sends */
  double *lat; /* latency of each, seconds */
  long nlat;
  long nacks, nbad;
  int failed;
} worker_t;

static size_t build_msg(char *out, size_t cap, int conn, long seq) {
  if (file_msg) {
    if (file_len + 3 > cap) return 0;
    out[0] = 0x0b;
    memcpy(out + 1, file_msg, file_len);
    out[file_len + 1] = 0x1c;
    out[file_len + 2] = 0x0d;
    return file_len + 3;
  }
  int n = snprintf(
      out, cap,
      "\x0bMSH|^~\\&|LOADGEN|BENCH|CADUCEUS|BENCH|20260101120000||ADT^A01^ADT_A01|L%d_%ld|P|2.5.1\r"
      "EVN|A01|20260101120000|||OPERATOR^BENCH\r"
      "PID|1||%ld^^^HOSP^MR~99%ld^^^SSA^SS||BENCHMARK^PATIENT^Q^^^^L||19700101|F|||"
      "1 LOAD STREET^^SPRINGFIELD^ST^12345^USA^H||555-0100^PRN^PH|||S||%ld|123-45-6789\r"
      "NK1|1|BENCHMARK^RELATIVE|SPO^SPOUSE|1 LOAD STREET^^SPRINGFIELD^ST^12345^USA|555-0101\r"
      "PV1|1|I|WARD^101^1^HOSP||||1234^ATTENDING^DOC^A^^^MD|5678^REFERRING^DOC^B^^^MD||MED|||"
      "|||||%ld|||||||||||||||||||||||||20260101120000\r"
      "PV2|||CHEST PAIN^CHEST PAIN\r"
      "OBX|1|NM|8867-4^HEART RATE^LN||72|/min|60-100|N|||F\r"
      "OBX|2|NM|8480-6^SYSTOLIC BP^LN||120|mm[Hg]|90-140|N|||F\r"
      "OBX|3|NM|8462-4^DIASTOLIC BP^LN||80|mm[Hg]|60-90|N|||F\r"
      "AL1|1|DA|70618^PENICILLIN^RXNORM|MO|RASH\r"
      "DG1|1||I20.9^ANGINA PECTORIS, UNSPECIFIED^I10|||A\r"
      "IN1|1|PLAN01^BENCH PLAN|INS01|BENCH INSURANCE CO|1 INSURER WAY^^SPRINGFIELD^ST^12345|||"
      "GRP01\r\x1c\x0d",
      conn, seq, seq, seq, seq, seq);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void *run_worker(void *arg) {
  worker_t *w = arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &a.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    perror("mllp_load: connect");
    w->failed = 1;
    if (fd >= 0) close(fd);
    return NULL;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  size_t cap = file_msg ? file_len + 16 : 4096;
  char *msg = malloc(cap);
  double *sent_at = calloc((size_t)window, sizeof *sent_at); /* ring of send times */
  char *rbuf = malloc(1 << 16);
  if (!msg || !sent_at || !rbuf) {
    w->failed = 1;
    goto out;
  }
  long sent = 0, head = 0;
  /* The first bytes of the ACK being read, to check its MSA-1. */
  char ack[512];
  size_t ack_len = 0;
  int in_frame = 0;
  while (w->nacks < w->count) {
    while (sent < w->count && sent - w->nacks < window) {
      double slot = 0;
      if (rate > 0) {
        /* Connection id sends messages id, id + conns, id + 2 conns, ... of
         * one schedule of `rate` per second. */
        slot = start_at + ((double)sent * conns + w->id) / rate;
        double wait = slot - now_s();
        if (wait > 0) {
          slot = 0; /* on time: measured from the send itself */
          struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
          while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
          }
        }
      }
      size_t n = build_msg(msg, cap, w->id, sent);
      if (!n || write_all(fd, msg, n) < 0) {
        w->failed = 1;
        goto out;
      }
      sent_at[sent % window] = slot > 0 ? slot : now_s();
      sent++;
    }
    ssize_t r = recv(fd, rbuf, 1 << 16, 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      fprintf(stderr, "mllp_load: connection %d closed after %ld ACKs\n", w->id, w->nacks);
      w->failed = 1;
      goto out;
    }
    for (ssize_t i = 0; i < r; i++) {
      char c = rbuf[i];
      if (c == 0x0b) {
        in_frame = 1;
        ack_len = 0;
      } else if (c == 0x1c && in_frame) {
        in_frame = 0;
        w->lat[w->nlat++] = now_s() - sent_at[head % window];
        head++;
        w->nacks++;
        ack[ack_len] = 0;
        const char *msa = strstr(ack, "\rMSA");
        if (!msa || msa[4] == 0 ||
            (strncmp(msa + 5, "AA", 2) != 0 && strncmp(msa + 5, "CA", 2) != 0))
          w->nbad++;
      } else if (in_frame && ack_len + 1 < sizeof ack) {
        ack[ack_len++] = c == 0 ? ' ' : c;
      }
    }
  }
out:
  free(msg);
  free(sent_at);
  free(rbuf);
  close(fd);
  return NULL;
}

static char *read_msg_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, r;
  char *b = malloc(cap);
  while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *nb = realloc(b, cap *= 2);
      if (!nb) {
        free(b);
        b = NULL;
      }
      b = nb;
    }
  }
  fclose(f);
  if (!b) return NULL;
  for (size_t i = 0; i < n; i++)
    if (b[i] == '\n') b[i] = '\r';
  *len = n;
  return b;
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "h:p:c:n:w:f:r:")) != -1) {
    switch (opt) {
      case 'h': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'c': conns = atoi(optarg); break;
      case 'n': total = atol(optarg); break;
      case 'w': window = atoi(optarg); break;
      case 'r': rate = atof(optarg); break;
      case 'f':
        file_msg = read_msg_file(optarg, &file_len);
        if (!file_msg) {
          perror(optarg);
          return 2;
        }
        break;
      default:
        fprintf(stderr,
                "usage: mllp_load [-h HOST] -p PORT [-c CONNS] [-n TOTAL] [-w WINDOW] [-f FILE] "
                "[-r RATE]\n");
        return 2;
    }
  }
  if (port <= 0 || conns <= 0 || total <= 0 || window <= 0 || conns > 4096 || rate < 0) {
    fprintf(stderr, "mllp_load: need -p PORT and positive -c/-n/-w/-r (conns <= 4096)\n");
    return 2;
  }
  worker_t *ws = calloc((size_t)conns, sizeof *ws);
  for (int i = 0; i < conns; i++) {
    ws[i].id = i;
    ws[i].count = total / conns + (i < total % conns ? 1 : 0);
    ws[i].lat = malloc(sizeof(double) * (size_t)(ws[i].count ? ws[i].count : 1));
  }
  double t0 = now_s(), c0 = cpu_s();
  start_at = t0 + 0.01;
  for (int i = 0; i < conns; i++) pthread_create(&ws[i].th, NULL, run_worker, &ws[i]);
  for (int i = 0; i < conns; i++) pthread_join(ws[i].th, NULL);
  double el = now_s() - t0, cpu = cpu_s() - c0;
  long acks = 0, bad = 0, nl = 0;
  int failed = 0;
  for (int i = 0; i < conns; i++) {
    acks += ws[i].nacks;
    bad += ws[i].nbad;
    failed |= ws[i].failed;
    nl += ws[i].nlat;
  }
  double *all = malloc(sizeof(double) * (size_t)(nl ? nl : 1));
  long k = 0;
  for (int i = 0; i < conns; i++) {
    memcpy(all + k, ws[i].lat, sizeof(double) * (size_t)ws[i].nlat);
    k += ws[i].nlat;
    free(ws[i].lat);
  }
  qsort(all, (size_t)nl, sizeof *all, cmp_d);
  double p50 = nl ? all[(size_t)(nl * 0.50)] : 0, p99 = nl ? all[(size_t)((nl - 1) * 0.99)] : 0;
  if (rate > 0) printf("offered_per_s=%.0f ", rate);
  printf(
      "conns=%d window=%d messages=%ld acked=%ld not_accepted=%ld seconds=%.3f "
      "msgs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f cpu_us_per_msg=%.1f\n",
      conns, window, total, acks, bad, el, el > 0 ? (double)acks / el : 0, p50 * 1e3, p99 * 1e3,
      acks ? cpu * 1e6 / (double)acks : 0.0);
  free(all);
  free(ws);
  free(file_msg);
  return failed || bad || acks != total ? 1 : 0;
}
