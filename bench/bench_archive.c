/* bench_archive.c - the message archive through its own API (no network):
 * how fast the writer takes 1.5 KB ORU^R01 messages, how many bytes one
 * costs on disk (body and index together), and how long searches take on
 * the archive it built: by patient id, by control id, by type within a
 * one-hour time range and by sender (MSH-4, newest first: header
 * combinations merged), p50/p99/max over Q random queries each.
 *
 *   bench_archive [-n MESSAGES] [-q QUERIES] [-d DATA_DIR] [-D DAYS] [-k] [-F] [-I] [-U]
 *
 * Messages are spread evenly over the last DAYS days (default 2: that many
 * day files, so queries span files), with N/4 distinct patients (two PID-3
 * repetitions each), unique control ids and four message types; each
 * message is followed by its delivery attempt, as in the engine.  -k keeps
 * DATA_DIR (default: a new /tmp directory, deleted at the end).  -F turns
 * the full-text index (FTS5) on for the channel, -I declares two index
 * fields (OBR-4.1, PV1-19): their cost shows in cpu and disk.  -U: a
 * sender that puts a value of its own in MSH-4 of every message (a header
 * combination per message, the archive's worst case for its hdr table):
 * the sender queries then ask for one message's MSH-4. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "archive_int.h"
#include "bench_util.h"
#include "cad_error.h"
#include "cad_io.h"
#include "log.h"

#define DAY_MS 86400000LL

static const char *const TYPES[] = {"ORU^R01^ORU_R01", "ORU^R01^ORU_R01", "ADT^A08^ADT_A01",
                                    "ORM^O01^ORM_O01"};

/* A ~1.5 KB result for patient p, control id i. */
static bool unique_sender;

static int make_msg(char *out, size_t cap, uint64_t i, uint64_t p, const char *type) {
  char fac[32] = "LABFAC";
  if (unique_sender) snprintf(fac, sizeof fac, "LAB%llu", (unsigned long long)i);
  int n = snprintf(out, cap,
                   "MSH|^~\\&|LIS|%s|EHR|EHRFAC|20260101120000||%s|C%llu|P|2.5.1\r"
                   "PID|1||M%llu^^^HOSP^MR~S%llu^^^SSA^SS||PATIENT%llu^TEST^Q||19700101|F|||"
                   "%llu MAIN ST^^SPRINGFIELD^IL^62701||555-%04llu\r"
                   "PV1|1|O|LAB^^^MAIN||||1234^ORDERING^DOCTOR|||||||||||V%llu\r"
                   "ORC|RE|O%llu|F%llu||CM\r"
                   "OBR|1|O%llu|F%llu|CBC^COMPLETE BLOOD COUNT^L|||20260101110000|||||||"
                   "20260101111500||1234^ORDERING^DOCTOR||||||20260101120000|||F\r",
                   fac, type, (unsigned long long)i, (unsigned long long)p, (unsigned long long)p,
                   (unsigned long long)p, (unsigned long long)(p % 9000),
                   (unsigned long long)(p % 10000), (unsigned long long)i, (unsigned long long)i,
                   (unsigned long long)i, (unsigned long long)i, (unsigned long long)i);
  static const char *const obx[] = {"WBC^Leukocytes", "RBC^Erythrocytes", "HGB^Hemoglobin",
                                    "HCT^Hematocrit", "MCV^MCV",          "MCH^MCH",
                                    "PLT^Platelets",  "NEUT^Neutrophils", "LYMPH^Lymphocytes"};
  for (int k = 0; k < 9 && n > 0 && (size_t)n < cap; k++)
    n += snprintf(out + n, cap - (size_t)n,
                  "OBX|%d|NM|%s^LN||%llu.%llu|10*9/L|4.0-11.0|N|||F|||20260101111500\r", k + 1,
                  obx[k], (unsigned long long)((i * 7 + (uint64_t)k) % 50),
                  (unsigned long long)((i + (uint64_t)k) % 10));
  if (n > 0 && (size_t)n < cap)
    n += snprintf(out + n, cap - (size_t)n,
                  "NTE|1|L|Specimen received in good condition. Results reviewed and verified by "
                  "the laboratory. Reference ranges are for adults; see the laboratory handbook "
                  "for pediatric ranges. Call the laboratory at extension %llu with questions "
                  "about this report or to request additional testing on the same specimen "
                  "within seven days of collection. Automated differential; manual review not "
                  "required by the laboratory's criteria.\r",
                  (unsigned long long)(4000 + i % 1000));
  return n;
}

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return rnd_state;
}

static uint64_t dir_bytes(const char *dir) {
  char cmd[4300];
  snprintf(cmd, sizeof cmd, "du -sb '%s' | cut -f1", dir);
  FILE *f = popen(cmd, "r");
  unsigned long long b = 0;
  if (f) {
    if (fscanf(f, "%llu", &b) != 1) b = 0;
    pclose(f);
  }
  return b;
}

static int count_cb(void *ud, const cad_archive_row_t *r) {
  (void)r;
  (*(int *)ud)++;
  return 0;
}

typedef enum { Q_PATIENT, Q_CONTROL, Q_TYPE_TIME, Q_SENDER } qkind_t;

static void run_queries(const char *dir, qkind_t kind, int nq, uint64_t n, uint64_t npat,
                        int64_t t0, int64_t span) {
  static const char *const names[] = {"patient id", "control id", "type + 1 h range",
                                      "sender, newest"};
  double *lat = malloc((size_t)nq * sizeof *lat);
  if (!lat) return;
  long rows = 0;
  for (int i = 0; i < nq; i++) {
    char buf[64];
    cad_archive_query_t q = {.limit = 50};
    if (kind == Q_PATIENT) {
      snprintf(buf, sizeof buf, "M%llu^HOSP", (unsigned long long)(rnd() % npat));
      q.patient = buf;
    } else if (kind == Q_CONTROL) {
      snprintf(buf, sizeof buf, "C%llu", (unsigned long long)(rnd() % n));
      q.control_id = buf;
    } else if (kind == Q_SENDER) {
      /* MSH-4 of every message: three header combinations (one per type)
       * merged, newest first, no time range. */
      q.sender = "LABFAC";
      if (unique_sender) {
        snprintf(buf, sizeof buf, "LAB%llu", (unsigned long long)(rnd() % n));
        q.sender = buf;
      }
    } else {
      q.type = rnd() % 2 ? "ORU^R01" : "ADT";
      q.since_ms = t0 + (int64_t)(rnd() % (uint64_t)(span - 3600000));
      q.until_ms = q.since_ms + 3600000;
    }
    int got = 0;
    char err[256];
    double t = now_s();
    int rc = cad_archive_search(dir, &q, count_cb, &got, err, sizeof err);
    lat[i] = (now_s() - t) * 1e3;
    if (rc < 0) fprintf(stderr, "query failed: %s\n", err);
    rows += got;
  }
  qsort(lat, (size_t)nq, sizeof *lat, cmp_d);
  printf("search by %-17s %d queries: p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%.1f rows each)\n",
         names[kind], nq, lat[nq / 2], lat[(int)(nq * 0.99)], lat[nq - 1], (double)rows / nq);
  free(lat);
}

int main(int argc, char **argv) {
  uint64_t n = 1000000;
  int nq = 1000, days = 2, opt;
  bool keep = false, fts = false, fields = false;
  char data[4096] = "";
  while ((opt = getopt(argc, argv, "n:q:d:D:kFIU")) != -1) {
    switch (opt) {
      case 'n': n = strtoull(optarg, NULL, 10); break;
      case 'q': nq = atoi(optarg); break;
      case 'd': snprintf(data, sizeof data, "%s", optarg); break;
      case 'D': days = atoi(optarg); break;
      case 'k': keep = true; break;
      case 'F': fts = true; break;
      case 'I': fields = true; break;
      case 'U': unique_sender = true; break;
      default:
        fprintf(
            stderr,
            "usage: bench_archive [-n MESSAGES] [-q QUERIES] [-d DATA_DIR] [-D DAYS] [-k] [-F] [-I]"
            " [-U]\n");
        return 2;
    }
  }
  if (!data[0]) {
    snprintf(data, sizeof data, "/tmp/cad-bench-archive-XXXXXX");
    if (!mkdtemp(data)) return 1;
  }
  if (n < 100 || nq < 1 || days < 1) return 2;
  /* The producer offers again what a full queue refused: no drop lines. */
  cad_log_setup(CAD_LOG_ERROR, CAD_LOG_KV, 2);
  uint64_t npat = n / 4;
  int64_t span = (int64_t)days * DAY_MS - 60000;
  int64_t t0 = (int64_t)cad_now_ms() - span;
  cad_archive_field_t fl[2];
  memset(fl, 0, sizeof fl);
  fl[0].name = "OBR-4.1";
  fl[1].name = "PV1-19";
  cad_hl7_path_parse("OBR-4.1", 7, &fl[0].path, NULL, NULL);
  cad_hl7_path_parse("PV1-19", 6, &fl[1].path, NULL, NULL);
  cad_archive_chan_t ch = {"lab", fl, fields ? 2 : 0, fts, 0};
  cad_archive_opts_t o = {
      .data_dir = data, .retain_ms = (uint64_t)(days + 1) * DAY_MS, .chans = &ch, .nchans = 1};
  cad_archive_t *a;
  if (cad_archive_open(&o, &a) < 0) return 1;
  char msg[4096];
  uint16_t qid = 1;
  uint64_t last = 0, bytes = 0, waits = 0;
  double t = now_s(), cpu0 = cpu_s();
  for (uint64_t i = 0; i < n; i++) {
    uint64_t p = rnd() % npat;
    int len = make_msg(msg, sizeof msg, i, p, TYPES[i % 4]);
    bytes += (uint64_t)len;
    uint64_t ms = (uint64_t)(t0 + (int64_t)((double)span * (double)i / (double)n));
    uint64_t id = (ms << 20) > last ? ms << 20 : last + 1;
    last = id;
    uint64_t seq = i + 1;
    cad_archive_in_t in = {id,  "lab",       "127.0.0.1:1", 1,    "accepted", NULL, "AA",
                           msg, (size_t)len, (uint64_t)len, &qid, &seq,       1,    0};
    int rc;
    while ((rc = cad_archive_inbound(a, &in)) == CAD_E_FULL) {
      /* The bench is its own backpressure: wait for the writer. */
      waits++;
      usleep(2000);
    }
    if (rc < 0) return 1;
    /* Its delivery, as a destination worker records it. */
    while ((rc = cad__archive_attempt_at(a, qid, seq, CAD_ARCH_DELIVERED, "AA", (int64_t)ms + 5)) ==
           CAD_E_FULL) {
      waits++;
      usleep(2000);
    }
    if (rc < 0) return 1;
  }
  cad_archive_flush(a);
  double wt = now_s() - t, cpu = cpu_s() - cpu0;
  cad_archive_stats_t st;
  cad_archive_get_stats(a, &st);
  cad_archive_close(a);
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/archive", data);
  uint64_t disk = dir_bytes(dir);
  printf(
      "bench_archive: %llu messages (avg %.0f bytes, %llu patients), %d day files, in %s;"
      " full text %s, index fields %s\n",
      (unsigned long long)n, (double)bytes / (double)n, (unsigned long long)npat, days + 1, data,
      fts ? "on" : "off", fields ? "OBR-4.1, PV1-19" : "none");
  /* The producer waits when the queue is full: a refused record is offered
   * again, not lost. */
  printf(
      "write: %.0f msgs/s through the writer thread (%llu batches; the producer waited %llu"
      " times for a full queue)\n",
      (double)n / wt, (unsigned long long)st.batches, (unsigned long long)waits);
  printf("cpu: %.1f us per message (writer thread and producer together)\n", cpu * 1e6 / (double)n);
  printf("disk: %llu bytes, %.0f bytes per message (body zlib + index)\n", (unsigned long long)disk,
         (double)disk / (double)n);
  run_queries(dir, Q_PATIENT, nq, n, npat, t0, span);
  run_queries(dir, Q_CONTROL, nq, n, npat, t0, span);
  run_queries(dir, Q_TYPE_TIME, nq, n, npat, t0, span);
  run_queries(dir, Q_SENDER, nq, n, npat, t0, span);
  if (!keep) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data);
    if (system(cmd) != 0) return 1;
  }
  return 0;
}
