/* journal_seeds.c - writes the seed corpus of fuzz_journal with the real
 * journal writer (engine/store/journal.c), so the seeds follow the format as the
 * engine writes it, then damages copies the way a crash or a bad disk does.
 *
 *   build/tests/fuzz/journal_seeds tests/fuzz/corpus/journal
 *
 * Each seed is the segment files of one journal, one after another (the
 * input format of fuzz_journal.c).  Run it again when the format changes;
 * other files named regress-* in that directory are findings and are kept. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "journal.h"
#include "journal_int.h"

#define SEG_HDR CAD_JSEG_HDR

static char work[256];

static void die(const char *what, int rc) {
  fprintf(stderr, "journal_seeds: %s: %s\n", what, cad_strerror(rc));
  exit(1);
}

static void empty_work(void) {
  DIR *d = opendir(work);
  if (!d) return;
  struct dirent *e;
  char path[600];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", work, e->d_name);
    if (unlink(path) != 0) rmdir(path);
  }
  closedir(d);
}

/* The segment files of the work journal, concatenated, into *out. */
static size_t slurp(unsigned char **out) {
  size_t n = 0;
  unsigned char *b = NULL;
  for (uint64_t no = 1;; no++) {
    char path[600];
    snprintf(path, sizeof path, "%s/%016llu.seg", work, (unsigned long long)no);
    FILE *f = fopen(path, "rb");
    if (!f) break;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = realloc(b, n + (size_t)len + 1);
    if (!b || fread(b + n, 1, (size_t)len, f) != (size_t)len) die("read", CAD_E_IO);
    fclose(f);
    n += (size_t)len;
  }
  *out = b;
  return n;
}

/* The first occurrence of s in b[0..n). */
static unsigned char *at(unsigned char *b, size_t n, const char *s) {
  unsigned char *q = memmem(b, n, s, strlen(s));
  if (!q) die(s, CAD_E_NOTFOUND);
  return q;
}

static void put(const char *outdir, const char *name, const unsigned char *b, size_t n) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", outdir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) die(path, CAD_E_IO);
  printf("%s: %zu bytes\n", path, n);
}

static void msg(cad_journal_t *j, int d, int i, size_t pad) {
  char p[2048];
  int l = snprintf(p, sizeof p, "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240305||ORU^R01|C%d|P|2.5\r", i);
  while (pad-- && (size_t)l + 1 < sizeof p) p[l++] = 'x';
  cad_jrec_t r = {CAD_JREC_MSG, (uint16_t)d, 0, p, (size_t)l};
  int rc = cad_journal_write(j, &r, 1, 1700000000000u + (uint64_t)i);
  if (rc) die("write", rc);
}

static void mark(cad_journal_t *j, uint8_t type, int d, uint64_t seq, const char *reason) {
  cad_jrec_t r = {type, (uint16_t)d, seq, reason, reason ? strlen(reason) : 0};
  int rc = cad_journal_write_lazy(j, &r, 1, 1700000001000u + seq);
  if (rc) die("write", rc);
}

static int dest(cad_journal_t *j, const char *name) {
  int d = cad_journal_dest(j, name, true);
  if (d < 0) die("dest", d);
  return d;
}

static void open_work(cad_journal_t *j, uint64_t segment_bytes) {
  empty_work();
  int rc = cad_journal_open(j, work, segment_bytes, false);
  if (rc) die("open", rc);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: journal_seeds OUTDIR\n");
    return 2;
  }
  const char *out = argv[1];
  snprintf(work, sizeof work, "/tmp/cad-journal-seeds.XXXXXX");
  if (!mkdtemp(work)) die("mkdtemp", CAD_E_IO);
  cad_journal_t j;
  unsigned char *b;
  size_t n;

  /* Two destinations, delivered, dead-lettered and purged messages. */
  open_work(&j, 0);
  int ehr = dest(&j, "ehr"), arch = dest(&j, "archive");
  for (int i = 1; i <= 4; i++) msg(&j, ehr, i, 0);
  msg(&j, arch, 5, 0);
  mark(&j, CAD_JREC_DONE, ehr, 1, NULL);
  mark(&j, CAD_JREC_DEAD, ehr, 2, "AR from receiver: unknown patient");
  mark(&j, CAD_JREC_PURGE, arch, 1, NULL);
  cad_journal_close(&j);
  n = slurp(&b);
  put(out, "one-segment", b, n);

  /* Torn: the last record only half written. */
  put(out, "torn-tail", b, n - 20);
  /* Bit rot in the middle: one payload byte of the second message. */
  unsigned char *rot = at(b, n, "|C2|");
  *rot ^= 0x20;
  put(out, "corrupt-middle", b, n);
  *rot ^= 0x20;
  /* The segment header itself damaged. */
  b[9] ^= 1;
  put(out, "bad-header", b, n);
  b[9] ^= 1;
  /* After a crash: the zero-filled space written ahead of the records. */
  unsigned char *z = calloc(n + 4096, 1);
  if (!z) die("calloc", CAD_E_NOMEM);
  memcpy(z, b, n);
  put(out, "zero-padded", z, n + 4096);
  free(z);
  free(b);

  /* Small segments: several files, each restating the destinations. */
  open_work(&j, 6000);
  ehr = dest(&j, "ehr");
  arch = dest(&j, "archive");
  for (int i = 1; i <= 12; i++) msg(&j, i % 3 ? ehr : arch, i, 900);
  mark(&j, CAD_JREC_DONE, ehr, 3, NULL);
  cad_journal_close(&j);
  n = slurp(&b);
  put(out, "three-segments", b, n);
  /* Corruption in an older segment, not the last. */
  *at(b, n, "|C1|") ^= 0x01;
  put(out, "corrupt-older-segment", b, n);
  free(b);

  /* A crash while a segment was being created: the new file has its header
   * (the one of segment 1, renumbered) but not yet the destinations restated.
   * Once segment 1 is deleted, "ehr" has no name (a finding). */
  open_work(&j, 0);
  dest(&j, "ehr");
  cad_journal_close(&j);
  n = slurp(&b);
  b = realloc(b, n + SEG_HDR);
  if (!b) die("realloc", CAD_E_NOMEM);
  memcpy(b + n, b, SEG_HDR);
  cad__jseg_encode(b + n, 2, cad__jget64(b + 16), cad__jget64(b + 24));
  put(out, "regress-new-segment-without-dests", b, n + SEG_HDR);
  free(b);

  /* Bit rot in the last message of a destination whose DONE mark survived:
   * the journal knows a finished sequence it has no message for (a
   * finding: the next message appended gets that sequence). */
  open_work(&j, 0);
  ehr = dest(&j, "ehr");
  msg(&j, ehr, 1, 0);
  mark(&j, CAD_JREC_DONE, ehr, 1, NULL);
  cad_journal_close(&j);
  n = slurp(&b);
  *at(b, n, "|C1|") ^= 0x01;
  put(out, "regress-done-beyond-last-seq", b, n);
  free(b);

  /* A message whose body carries records shaped like the journal's own (a
   * DONE for every message, in version 1's framing and in version 2's with a
   * guessed salt); then the same with that message's header damaged:
   * recovery must not resynchronise onto them. */
  open_work(&j, 0);
  ehr = dest(&j, "ehr");
  for (int i = 1; i <= 3; i++) msg(&j, ehr, i, 0);
  {
    unsigned char body[160];
    size_t bl = (size_t)snprintf((char *)body, sizeof body,
                                 "MSH|^~\\&|X|Y|Z|W|1||ORU^R01|F4|P|2.5\rOBX|1|ED|||");
    cad__jhdr_t h = {CAD_JREC_DONE, 0, 0, 0, 5, 1};
    cad__jkey_t v1 = {1, CAD__JREC_MAGIC1, 0, 32}, v2 = {2, 0x55667788u, 0x1122334455667788ull, 48};
    cad__jrec_encode(body + bl, &v1, &h, NULL);
    cad__jrec_encode(body + bl + CAD_JREC_HDR, &v2, &h, NULL);
    bl += 2 * CAD_JREC_HDR;
    cad_jrec_t r = {CAD_JREC_MSG, (uint16_t)ehr, 0, body, bl};
    int rc = cad_journal_write(&j, &r, 1, 1700000000004u);
    if (rc) die("write", rc);
  }
  msg(&j, ehr, 5, 0);
  cad_journal_close(&j);
  n = slurp(&b);
  put(out, "forged-in-body", b, n);
  at(b, n, "MSH|^~\\&|X|Y|")[-32] ^= 0xff; /* the forged message's own tag */
  put(out, "forged-in-body-damaged", b, n);
  free(b);

  /* No file at all, and a header alone. */
  put(out, "empty", (const unsigned char *)"", 0);
  open_work(&j, 0);
  cad_journal_close(&j);
  n = slurp(&b);
  put(out, "header-only", b, n);
  free(b);

  empty_work();
  rmdir(work);
  return 0;
}
