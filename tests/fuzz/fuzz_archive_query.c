/* fuzz_archive_query.c - the archive's search input (engine/store/
 * archive.h): --text words and --field NAME=VALUE as a user (or the admin
 * API) hands them over, run against a small real archive with a full-text
 * index and declared fields.  Whatever the bytes, the query is refused
 * (CAD_E_INVAL: no word, no '=', too long) or runs: an SQL or FTS5 error
 * (CAD_E_IO) means the input reached the query language, and aborts.
 *
 * Input: '\n'-separated parts: the text, two fields, then the header
 * filters (channel, type, MSH-4 sender, MSH-6 receiver: searched through
 * the table of header combinations, archive_query.c), then a status; an
 * empty part is no filter, a part "=" the empty value (messages without
 * one).  Both the count and the search (newest five) run.  The archive
 * is built once, in a new directory under /tmp, removed at exit: messages
 * of several header combinations, so one, a few merged and none match.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "archive_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "log.h"

static char data[64] = "/tmp/cad-fuzz-archive-XXXXXX", dir[128];

static void cleanup(void) {
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", data);
  if (system(cmd) != 0) return;
}

static void build(void) {
  if (!mkdtemp(data)) abort();
  atexit(cleanup);
  snprintf(dir, sizeof dir, "%s/archive", data);
  cad_log_setup(CAD_LOG_ERROR, CAD_LOG_KV, 2);
  static cad_archive_field_t f[2];
  f[0].name = "OBR-4.1";
  f[1].name = "visit";
  if (cad_hl7_path_parse("OBR-4.1", 7, &f[0].path, NULL, NULL) ||
      cad_hl7_path_parse("PV1-19", 6, &f[1].path, NULL, NULL))
    abort();
  cad_archive_chan_t ch = {"lab", f, 2, true, 0};
  cad_archive_opts_t o = {.data_dir = data, .chans = &ch, .nchans = 1};
  cad_archive_t *a;
  if (cad_archive_open(&o, &a) != 0) abort();
  static const char *const notes[] = {"fasting \"sample\" OR NOT", "NEAR(a b) * col:x ^ (",
                                      "repeat'; DROP TABLE msg; --"};
  uint64_t last = 0;
  static const char *const types[] = {"ORU^R01", "ORU^R30", "ADT^A08"};
  static const char *const facs[] = {"LAB", "LAB", "LAB2"};
  for (int i = 0; i < 3; i++) {
    char msg[512];
    int len = snprintf(msg, sizeof msg,
                       "MSH|^~\\&|LIS|%s|EHR|EHR|20260101120000||%s|C%d|P|2.5.1\r"
                       "PID|1||M%d^^^HOSP^MR\rPV1|1|O|||||||||||||||||V%d\r"
                       "OBR|1||R1|GLU^Glucose^L\rNTE|1||%s\r",
                       facs[i], types[i], i, i, i, notes[i]);
    cad_archive_in_t in = {cad_archive_next_id(&last), "lab", NULL, 1, "accepted", NULL, "AA",
                           msg, (size_t)len, (uint64_t)len, NULL, NULL, 0, 0};
    if (cad_archive_inbound(a, &in) != 0) abort();
  }
  cad_archive_close(a);
}

/* The next '\n'-ended part of [*p, end) as a NUL-terminated copy. */
static char *part(const uint8_t **p, const uint8_t *end) {
  const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
  const uint8_t *stop = nl ? nl : end;
  size_t len = (size_t)(stop - *p);
  char *s = malloc(len + 1);
  if (!s) abort();
  memcpy(s, *p, len);
  s[len] = 0;
  *p = nl ? nl + 1 : end;
  return s;
}

static int count_row(void *ud, const cad_archive_row_t *r) {
  (void)r;
  (*(int *)ud)++;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  if (!dir[0]) build();
  const uint8_t *p = d, *end = d + n;
  char *text = part(&p, end), *f1 = part(&p, end), *f2 = part(&p, end);
  char *hdr[5];
  for (int i = 0; i < 5; i++) hdr[i] = part(&p, end);
  cad_archive_query_t q = {.limit = 5};
  if (text[0]) q.text = text;
  if (f1[0]) q.fields[q.nfields++] = f1;
  if (f2[0]) q.fields[q.nfields++] = f2;
  const char **hf[5] = {&q.channel, &q.type, &q.sender, &q.receiver, &q.status};
  for (int i = 0; i < 5; i++)
    if (hdr[i][0]) *hf[i] = strcmp(hdr[i], "=") ? hdr[i] : "";
  uint64_t count = 0;
  char err[256] = "";
  int rc = cad_archive_count(dir, &q, &count, err, sizeof err);
  if (rc != 0 && rc != CAD_E_INVAL) {
    fprintf(stderr, "query failed (%s): %s\n", cad_err_name(rc), err);
    abort();
  }
  if (rc == 0 && count > 3) abort();
  /* The search agrees with the count (at most five rows asked). */
  int rows = 0;
  int rs = cad_archive_search(dir, &q, count_row, &rows, err, sizeof err);
  if (rs != rc && !(rc == 0 && rs >= 0)) {
    fprintf(stderr, "search and count disagree (%d, %d): %s\n", rs, rc, err);
    abort();
  }
  if (rc == 0 && (uint64_t)rows != (count < 5 ? count : 5)) abort();
  free(text);
  free(f1);
  free(f2);
  for (int i = 0; i < 5; i++) free(hdr[i]);
  return 0;
}
