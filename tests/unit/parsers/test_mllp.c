/* test_mllp.c - the MLLP framer.
 *
 * Fixtures are run whole, one byte at a time and in random chunks; every run
 * must give the same events.  Events are compared through a signature:
 *
 *   F[content]          a frame
 *   E<code>[content]    CAD_E_FRAME (dropped partial frame) or CAD_E_TOOBIG
 *                       (first max_frame bytes)
 *   S[content]          CAD_MLLP_STRAY_EB (a frame holding a stray 0x1C)
 *   |s=<skipped>        the skipped counter at the end
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "harness.h"
#include "mllp.h"

#define VT "\x0b"
#define FS "\x1c"

enum { CHUNK_WHOLE = 0, CHUNK_ONE = 1, CHUNK_RANDOM = 2 };

static uint32_t rng_state = 777;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

static void sig_bytes(cad_buf_t *b, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\r') cad_buf_puts(b, "\\r");
    else if (c == '\n') cad_buf_puts(b, "\\n");
    else if (c < 0x20 || c >= 0x7f) cad_buf_printf(b, "\\x%02X", c);
    else cad_buf_putc(b, (char)c);
  }
}

typedef struct run {
  cad_buf_t sig;
  int frames, errors, bad;
  size_t max_cap;
} run_t;

static void drain(cad_mllp_framer_t *f, run_t *r) {
  cad_str_t fr;
  int rc;
  while ((rc = cad_mllp_next(f, &fr)) != 0) {
    if (rc == 1) {
      r->frames++;
      cad_buf_puts(&r->sig, "F[");
    } else if (rc == CAD_MLLP_STRAY_EB) {
      r->errors++;
      cad_buf_puts(&r->sig, "S[");
    } else if (rc == CAD_E_FRAME || rc == CAD_E_TOOBIG) {
      r->errors++;
      cad_buf_puts(&r->sig, rc == CAD_E_FRAME ? "EFRAME[" : "ETOOBIG[");
    } else {
      r->bad++;
      return;
    }
    if (fr.len > f->max_frame) r->bad++;
    if (memchr(fr.p, CAD_MLLP_SB, fr.len)) r->bad++;
    /* only a frame returned as complete and clean is free of 0x1C */
    if (rc == 1 && memchr(fr.p, CAD_MLLP_EB, fr.len)) r->bad++;
    sig_bytes(&r->sig, fr.p, fr.len);
    cad_buf_puts(&r->sig, "]");
  }
  if (f->buf.cap > r->max_cap) r->max_cap = f->buf.cap;
}

static void run_framer(const char *in, size_t n, size_t max, int chunking, run_t *r) {
  memset(r, 0, sizeof *r);
  cad_mllp_framer_t f;
  cad_mllp_init(&f, max);
  size_t pos = 0;
  while (pos < n) {
    size_t k = n - pos;
    if (chunking == CHUNK_ONE) k = 1;
    if (chunking == CHUNK_RANDOM) {
      size_t want = 1 + rng() % (rng() % 4 == 0 ? 100 : 7);
      if (want < k) k = want;
    }
    if (cad_mllp_feed(&f, in + pos, k) != 0) r->bad++;
    pos += k;
    drain(&f, r);
  }
  if ((uint64_t)r->frames != f.frames || (uint64_t)r->errors != f.errors) r->bad++;
  cad_buf_printf(&r->sig, "|s=%llu%s", (unsigned long long)f.skipped,
                 cad_mllp_in_frame(&f) ? "|open" : "");
  cad_buf_cstr(&r->sig);
  cad_mllp_free(&f);
}

static int run_all(const char *in, size_t n, size_t max, run_t *whole) {
  run_framer(in, n, max, CHUNK_WHOLE, whole);
  int ok = whole->bad == 0;
  for (int c = 1; c <= 4; c++) {
    run_t o;
    run_framer(in, n, max, c >= CHUNK_RANDOM ? CHUNK_RANDOM : c, &o);
    if (o.bad || strcmp(o.sig.data, whole->sig.data) != 0) {
      cad_buf_t in_sig = CAD_BUF_INIT;
      sig_bytes(&in_sig, in, n);
      cad_buf_cstr(&in_sig);
      fprintf(stderr, "  chunking %d differs (bad %d/%d) on %s:\n    whole: %s\n    other: %s\n", c,
              whole->bad, o.bad, in_sig.data, whole->sig.data, o.sig.data);
      cad_buf_free(&in_sig);
      ok = 0;
    }
    cad_buf_free(&o.sig);
  }
  return ok;
}

#define EXPECT_EVENTS(input, max, want)                     \
  do {                                                      \
    run_t r_;                                               \
    CHECK(run_all((input), sizeof(input) - 1, (max), &r_)); \
    CHECK_STRN(r_.sig.data, r_.sig.len, (want));            \
    cad_buf_free(&r_.sig);                                  \
  } while (0)

TEST(one_frame) {
  EXPECT_EVENTS(VT "MSH|^~\\&|A\rPID|1\r" FS "\r", 0, "F[MSH|^~\\&|A\\rPID|1\\r]|s=0");
}

TEST(many_frames_in_one_feed) {
  EXPECT_EVENTS(VT "MSH|1" FS "\r" VT "MSH|2" FS "\r" VT "MSH|3" FS "\r", 0,
                "F[MSH|1]F[MSH|2]F[MSH|3]|s=0");
}

TEST(partial_frame_waits) {
  cad_mllp_framer_t f;
  cad_str_t fr;
  cad_mllp_init(&f, 0);
  CHECK(!cad_mllp_in_frame(&f));
  CHECK_INT(cad_mllp_feed(&f, VT "MSH|^~\\&|A\rPI", 14), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  CHECK(cad_mllp_in_frame(&f));
  CHECK(!cad_mllp_eb_pending(&f));
  CHECK_INT(cad_mllp_feed(&f, "D|1\r" FS, 5), 0);
  /* the byte after the end block decides: not there yet */
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  CHECK(cad_mllp_eb_pending(&f));
  CHECK(cad_mllp_in_frame(&f));
  CHECK_INT(cad_mllp_feed(&f, "\r", 1), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 1);
  CHECK_STRN(fr.p, fr.len, "MSH|^~\\&|A\rPID|1\r");
  CHECK(!cad_mllp_in_frame(&f));
  CHECK(!cad_mllp_eb_pending(&f));
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  CHECK_INT(f.skipped, 0); /* the CR is the trailer, not skipped */
  CHECK_INT(f.frames, 1);
  cad_mllp_free(&f);
}

TEST(pending_end_block_accepted) {
  /* a sender without the trailing CR that waits for its ACK */
  cad_mllp_framer_t f;
  cad_str_t fr;
  cad_mllp_init(&f, 0);
  cad_mllp_accept_eb(&f); /* nothing pending: no effect */
  CHECK_INT(cad_mllp_feed(&f, VT "MSH|1" FS, 7), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  CHECK(cad_mllp_eb_pending(&f));
  cad_mllp_accept_eb(&f);
  CHECK_INT(cad_mllp_next(&f, &fr), 1);
  CHECK_STRN(fr.p, fr.len, "MSH|1");
  /* its CR arriving late is the trailer; the next frame works */
  CHECK_INT(cad_mllp_feed(&f, "\r" VT "MSH|2" FS "\r", 9), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 1);
  CHECK_STRN(fr.p, fr.len, "MSH|2");
  CHECK_INT(f.skipped, 0);
  /* accepted, then more bytes came before next(): the byte decides */
  CHECK_INT(cad_mllp_feed(&f, VT "MSH|3" FS, 7), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  cad_mllp_accept_eb(&f);
  CHECK_INT(cad_mllp_feed(&f, "x" FS "\r", 3), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), CAD_MLLP_STRAY_EB);
  CHECK_STRN(fr.p, fr.len, "MSH|3" FS "x");
  CHECK_INT(f.frames, 2);
  CHECK_INT(f.errors, 1);
  cad_mllp_free(&f);
}

TEST(bytes_before_a_start_block_are_skipped) {
  EXPECT_EVENTS("hello\r\n" VT "MSH|1" FS "\r  " VT "MSH|2" FS "\r", 0, "F[MSH|1]F[MSH|2]|s=9");
}

TEST(end_block_without_start_is_skipped) {
  EXPECT_EVENTS(FS "\r" FS VT "MSH|1" FS "\r", 0, "F[MSH|1]|s=3");
}

TEST(start_block_inside_a_frame) {
  EXPECT_EVENTS(VT "MSH|1\rPID" VT "MSH|2" FS "\r", 0, "EFRAME[MSH|1\\rPID]F[MSH|2]|s=0");
  EXPECT_EVENTS(VT VT "MSH|2" FS "\r", 0, "EFRAME[]F[MSH|2]|s=0");
}

TEST(end_block_then_start_block_is_lenient) {
  /* a sender without the trailing CR: 0x1C then 0x0B ends the frame */
  EXPECT_EVENTS(VT "MSH|1" FS VT "MSH|2" FS VT "MSH|3" FS "\r", 0, "F[MSH|1]F[MSH|2]F[MSH|3]|s=0");
}

TEST(stray_end_block_inside_a_message) {
  /* 0x1C not followed by CR (nor 0x0B) is content: the whole frame comes as
   * one STRAY report, and the next frame is a frame */
  EXPECT_EVENTS(VT "MSH|1\rPID|12" FS "34|x\r" FS "\r" VT "MSH|2" FS "\r", 0,
                "S[MSH|1\\rPID|12\\x1C34|x\\r]F[MSH|2]|s=0");
  EXPECT_EVENTS(VT "MS" FS "H|1" FS "\r" VT "MSH|2" FS "\r", 0, "S[MS\\x1CH|1]F[MSH|2]|s=0");
  /* two in a row, and one right before the real end */
  EXPECT_EVENTS(VT "A" FS FS "\r" VT "B" FS "\n" FS "\r", 0, "S[A\\x1C]S[B\\x1C\\n]|s=0");
  /* a stray one, then a start block: the frame is dropped as usual */
  EXPECT_EVENTS(VT "MSH|1" FS "x" VT "MSH|2" FS "\r", 0, "EFRAME[MSH|1\\x1Cx]F[MSH|2]|s=0");
  /* a stray one counts toward max_frame */
  EXPECT_EVENTS(VT "ABCD" FS "EFG" FS "\r" VT "OK" FS "\r", 6, "ETOOBIG[ABCD\\x1CE]F[OK]|s=0");
  EXPECT_EVENTS(VT "ABCDE" FS "\r", 5, "F[ABCDE]|s=0");
}

TEST(empty_frame) { EXPECT_EVENTS(VT FS "\r" VT FS "\r", 0, "F[]F[]|s=0"); }

TEST(unfinished_frame_at_the_end) {
  EXPECT_EVENTS(VT "MSH|1" FS "\r" VT "MSH|2", 0, "F[MSH|1]|s=0|open");
}

TEST(frame_too_big) {
  /* max 8: reported once with the first 8 bytes, skipped up to 0x1C */
  EXPECT_EVENTS(VT "MSH|^~\\&|A\rPID|1" FS "\r" VT "MSH|2" FS "\r", 8,
                "ETOOBIG[MSH|^~\\&]F[MSH|2]|s=0");
  /* exactly max is a frame */
  EXPECT_EVENTS(VT "MSH|^~\\&" FS "\r" VT "MSH|^~\\&|" FS "\r", 8,
                "F[MSH|^~\\&]ETOOBIG[MSH|^~\\&]|s=0");
  /* a start block while skipping starts the next frame, no second error */
  EXPECT_EVENTS(VT "MSH|^~\\&|A\rPID|1" VT "MSH|2" FS "\r", 8, "ETOOBIG[MSH|^~\\&]F[MSH|2]|s=0");
  /* oversized and unfinished */
  EXPECT_EVENTS("ab" VT "MSH|^~\\&|A\rPID|1", 8, "ETOOBIG[MSH|^~\\&]|s=2|open");
}

TEST(oversize_is_measured) {
  cad_mllp_framer_t f;
  cad_str_t fr;
  cad_mllp_init(&f, 8);
  /* Whole in one feed: its exact size, not cut. */
  CHECK_INT(cad_mllp_feed(&f, VT "MSH|^~\\&|ABCDEFGH" FS "\r", 21), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), CAD_E_TOOBIG);
  CHECK_INT(fr.len, 8);
  CHECK_INT((int)f.oversize, 17);
  CHECK(!f.oversize_cut);
  /* Reported before its end: what was received, cut. */
  CHECK_INT(cad_mllp_feed(&f, VT "MSH|^~\\&|ABCDEFGHIJ", 20), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), CAD_E_TOOBIG);
  CHECK_INT((int)f.oversize, 19);
  CHECK(f.oversize_cut);
  cad_mllp_free(&f);
}

TEST(memory_stays_bounded) {
  cad_mllp_framer_t f;
  cad_str_t fr;
  cad_mllp_init(&f, 1000);
  char chunk[100];
  memset(chunk, 'A', sizeof chunk);
  int toobig = 0, frames = 0;
  /* a 10 MB frame, then a normal one */
  CHECK_INT(cad_mllp_feed(&f, VT "MSH|^~\\&|BIG\r", 14), 0);
  for (int i = 0; i < 100000; i++) {
    CHECK_INT(cad_mllp_feed(&f, chunk, sizeof chunk), 0);
    int rc;
    while ((rc = cad_mllp_next(&f, &fr)) != 0) {
      if (rc == CAD_E_TOOBIG) {
        toobig++;
        CHECK_INT(fr.len, 1000);
        CHECK_STRN(fr.p, 13, "MSH|^~\\&|BIG\r");
      }
    }
  }
  CHECK_INT(cad_mllp_feed(&f, FS "\r" VT "MSH|ok" FS "\r", 11), 0);
  int rc;
  while ((rc = cad_mllp_next(&f, &fr)) != 0) {
    if (rc == 1) {
      frames++;
      CHECK_STRN(fr.p, fr.len, "MSH|ok");
    }
  }
  CHECK_INT(toobig, 1);
  CHECK_INT(frames, 1);
  CHECK(f.buf.cap <= 2048);
  /* 100000 small frames fed one at a time: the buffer does not grow */
  for (int i = 0; i < 100000; i++) {
    CHECK_INT(cad_mllp_feed(&f, VT "MSH|^~\\&|x\rPID|1" FS "\r", 19), 0);
    while (cad_mllp_next(&f, &fr) == 1) frames++;
  }
  CHECK_INT(frames, 100001);
  CHECK(f.buf.cap <= 2048);
  cad_mllp_free(&f);
}

TEST(buffer_shrinks_after_a_large_frame) {
  cad_mllp_framer_t f;
  cad_str_t fr;
  cad_mllp_init(&f, 0);
  size_t n = (size_t)1 << 20;
  char *big = malloc(n);
  CHECK(big != NULL);
  memset(big, 'A', n);
  CHECK_INT(cad_mllp_feed(&f, VT, 1), 0);
  for (size_t i = 0; i < 16; i++) CHECK_INT(cad_mllp_feed(&f, big, n / 16), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  CHECK(f.buf.cap >= n); /* grows with the data ... */
  CHECK(f.buf.cap <= 2 * n + 512);
  CHECK_INT(cad_mllp_feed(&f, FS "\r" VT "MSH", 6), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 1);
  CHECK_INT(fr.len, n);
  /* ... and gives it back once the frame is consumed */
  CHECK_INT(cad_mllp_feed(&f, NULL, 0), 0);
  CHECK(f.buf.cap <= 4096);
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  CHECK(cad_mllp_in_frame(&f));
  CHECK_INT(cad_mllp_feed(&f, FS "\r", 2), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 1);
  CHECK_STRN(fr.p, fr.len, "MSH");
  CHECK_INT(cad_mllp_feed(&f, NULL, 0), 0);
  CHECK(f.buf.cap <= 4096); /* small again */
  free(big);
  cad_mllp_free(&f);
}

TEST(wrap_round_trip) {
  cad_buf_t out = CAD_BUF_INIT;
  CHECK_INT(cad_mllp_wrap("MSH|^~\\&|A\rPID|1\r", 17, &out), 0);
  CHECK_INT(cad_mllp_wrap("", 0, &out), 0);
  CHECK_INT(out.len, 17 + 3 + 3);
  CHECK_STRN(out.data, out.len, VT "MSH|^~\\&|A\rPID|1\r" FS "\r" VT FS "\r");
  cad_mllp_framer_t f;
  cad_str_t fr;
  cad_mllp_init(&f, 0);
  CHECK_INT(cad_mllp_feed(&f, out.data, out.len), 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 1);
  CHECK_STRN(fr.p, fr.len, "MSH|^~\\&|A\rPID|1\r");
  CHECK_INT(cad_mllp_next(&f, &fr), 1);
  CHECK_INT(fr.len, 0);
  CHECK_INT(cad_mllp_next(&f, &fr), 0);
  cad_mllp_free(&f);
  cad_buf_free(&out);
  /* a buffer with a budget: nothing is written when it does not fit */
  cad_buf_t small = {NULL, 0, 0, 8};
  CHECK_INT(cad_mllp_wrap("MSH|^~\\&|A", 10, &small), CAD_E_TOOBIG);
  CHECK_INT(small.len, 0);
  cad_buf_free(&small);
}

TEST(generated_inputs_are_chunking_independent) {
  static const char *tok[] = {VT,      FS,  "\r", FS "\r",     "MSH|^~\\&|",
                              "PID|1", "x", "\n", "0123456789"};
  int bad = 0;
  for (int round = 0; round < 2000; round++) {
    cad_buf_t in = CAD_BUF_INIT;
    int ntok = 1 + (int)(rng() % 30);
    for (int i = 0; i < ntok; i++) cad_buf_puts(&in, tok[rng() % (sizeof tok / sizeof *tok)]);
    static const size_t maxes[] = {0, 1, 4, 10, 25};
    run_t r;
    if (!run_all(in.data, in.len, maxes[rng() % 5], &r)) bad++;
    cad_buf_free(&r.sig);
    cad_buf_free(&in);
  }
  CHECK_INT(bad, 0);
}

/* Every capture in the shared corpus: same events however it is cut, and
 * every frame holds a message. */
TEST(corpus_captures) {
  const char *dir = getenv("CAD_CORPUS");
  char def[4096];
  if (!dir || !*dir) {
    const char *root = getenv("CAD_SOURCE_ROOT");
    snprintf(def, sizeof def, "%s/../shared/corpus", root && *root ? root : ".");
    dir = def;
  }
  char path[4096 + 16];
  snprintf(path, sizeof path, "%s/mllp", dir);
  DIR *d = opendir(path);
  if (!d) {
    printf("skip: corpus not found at %s\n", dir);
    return;
  }
  int files = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char fp[8192];
    snprintf(fp, sizeof fp, "%s/%s", path, e->d_name);
    size_t n = 0;
    char *in = cad_test_read_file(fp, &n);
    if (!in) continue;
    files++;
    run_t r;
    CHECK(run_all(in, n, 0, &r));
    CHECK_INT(r.errors, 0);
    for (const char *p = strstr(r.sig.data, "F["); p; p = strstr(p + 1, "F["))
      CHECK(!strncmp(p, "F[MSH", 5));
    printf("  mllp/%s: %d frames, %s\n", e->d_name, r.frames, strrchr(r.sig.data, '|'));
    cad_buf_free(&r.sig);
    free(in);
  }
  closedir(d);
  CHECK(files > 0);
}

TEST_MAIN()
