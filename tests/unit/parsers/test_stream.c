/* test_stream.c - cad_hl7_stream: splitting files and captures into items.
 *
 * Every fixture is run whole, one byte at a time and in random chunk sizes;
 * all runs must give the same items, every item's bytes must be the input
 * bytes at its offset, and skipped_bytes must account for every byte that is
 * in no MESSAGE or ENVELOPE item.  Items are compared through a signature:
 *
 *   M<index>@<offset>[bytes]   a message
 *   V@<offset>[bytes]          an envelope segment
 *   E<code>@<offset>[bytes]    an error: NOMSH, TOOBIG or FRAME
 *
 * with \r, \n, \t and other control bytes written as escapes.
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
#include "hl7_stream.h"

/* ---- running the stream -------------------------------------------------- */

enum { CHUNK_WHOLE = 0, CHUNK_ONE = 1, CHUNK_RANDOM = 2 };

typedef struct run {
  cad_buf_t sig; /* signature of the items */
  int nmsg, nenv, nerr;
  uint64_t skipped;
  size_t max_cap; /* largest internal buffer capacity seen */
  int format;     /* format after the run */
  int bad;        /* invariant violations */
} run_t;

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

static void sig_bytes(cad_buf_t *b, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\r') cad_buf_puts(b, "\\r");
    else if (c == '\n') cad_buf_puts(b, "\\n");
    else if (c == '\t') cad_buf_puts(b, "\\t");
    else if (c < 0x20 || c >= 0x7f) cad_buf_printf(b, "\\x%02X", c);
    else cad_buf_putc(b, (char)c);
  }
}

static const char *err_tag(int err) {
  switch (err) {
    case CAD_E_NOMSH: return "NOMSH";
    case CAD_E_TOOBIG: return "TOOBIG";
    case CAD_E_FRAME: return "FRAME";
    default: return "?";
  }
}

/* Take every item out; check each against the input. */
static void drain(cad_hl7_stream_t *s, run_t *r, const char *in, size_t total_fed, uint64_t *kept) {
  cad_hl7_item_t it;
  int rc;
  while ((rc = cad_hl7_stream_next(s, &it)) == 1) {
    if (it.offset + it.bytes.len > total_fed ||
        (it.bytes.len && memcmp(in + it.offset, it.bytes.p, it.bytes.len) != 0)) {
      fprintf(stderr, "  item bytes differ from the input at offset %llu\n",
              (unsigned long long)it.offset);
      r->bad++;
    }
    if (it.bytes.len > s->max_message) r->bad++;
    switch (it.kind) {
      case CAD_HL7_ITEM_MESSAGE:
        r->nmsg++;
        if (it.bytes.len < 4 || memcmp(it.bytes.p, "MSH", 3) != 0) r->bad++;
        if (it.bytes.p[it.bytes.len - 1] == '\r' || it.bytes.p[it.bytes.len - 1] == '\n') r->bad++;
        if (it.index != (uint64_t)r->nmsg) r->bad++;
        *kept += it.bytes.len;
        cad_buf_printf(&r->sig, "M%llu@%llu[", (unsigned long long)it.index,
                       (unsigned long long)it.offset);
        break;
      case CAD_HL7_ITEM_ENVELOPE:
        r->nenv++;
        *kept += it.bytes.len;
        cad_buf_printf(&r->sig, "V@%llu[", (unsigned long long)it.offset);
        break;
      default:
        r->nerr++;
        cad_buf_printf(&r->sig, "E%s@%llu[", err_tag(it.err), (unsigned long long)it.offset);
        break;
    }
    sig_bytes(&r->sig, it.bytes.p, it.bytes.len);
    cad_buf_puts(&r->sig, "]");
  }
  if (rc != 0) r->bad++;
  if (s->buf.cap > r->max_cap) r->max_cap = s->buf.cap;
}

static void run_stream(const char *in, size_t n, int fmt, size_t max, int chunking, run_t *r) {
  memset(r, 0, sizeof *r);
  cad_hl7_stream_t s;
  cad_hl7_stream_init(&s, (cad_hl7_stream_format_t)fmt, max);
  uint64_t kept = 0;
  size_t pos = 0;
  while (pos < n) {
    size_t k = n - pos;
    if (chunking == CHUNK_ONE) k = 1;
    if (chunking == CHUNK_RANDOM) {
      size_t want = 1 + rng() % (rng() % 4 == 0 ? 200 : 9);
      if (want < k) k = want;
    }
    if (cad_hl7_stream_feed(&s, in + pos, k) != 0) r->bad++;
    pos += k;
    drain(&s, r, in, pos, &kept);
  }
  cad_hl7_stream_finish(&s);
  drain(&s, r, in, n, &kept);
  if (s.skipped_bytes + kept != n) {
    fprintf(stderr, "  skipped %llu + kept %llu != %zu\n", (unsigned long long)s.skipped_bytes,
            (unsigned long long)kept, n);
    r->bad++;
  }
  if (s.messages != (uint64_t)r->nmsg) r->bad++;
  r->skipped = s.skipped_bytes;
  r->format = s.format;
  cad_hl7_stream_free(&s);
}

static void run_free(run_t *r) { cad_buf_free(&r->sig); }

/* Run whole, byte by byte and in random chunks; all must agree.  Returns the
 * whole run (caller frees) for further checks. */
static int run_all(const char *in, size_t n, int fmt, size_t max, run_t *whole) {
  run_stream(in, n, fmt, max, CHUNK_WHOLE, whole);
  cad_buf_cstr(&whole->sig);
  int ok = whole->bad == 0;
  for (int c = 1; c <= 4; c++) {
    run_t o;
    run_stream(in, n, fmt, max, c >= CHUNK_RANDOM ? CHUNK_RANDOM : c, &o);
    cad_buf_cstr(&o.sig);
    if (o.bad || o.sig.len != whole->sig.len ||
        memcmp(o.sig.data, whole->sig.data, o.sig.len) != 0 || o.skipped != whole->skipped) {
      fprintf(stderr, "  chunking %d differs:\n    whole: %s\n    other: %s\n", c,
              whole->sig.data ? whole->sig.data : "", o.sig.data ? o.sig.data : "");
      ok = 0;
    }
    run_free(&o);
  }
  return ok;
}

/* Check a fixture's signature under every chunking. */
#define EXPECT_ITEMS(input, fmt, max, want)                    \
  do {                                                         \
    run_t r_;                                                  \
    CHECK(run_all((input), strlen(input), (fmt), (max), &r_)); \
    CHECK_STRN(r_.sig.data, r_.sig.len, (want));               \
    run_free(&r_);                                             \
  } while (0)

#define ER7 CAD_HL7_STREAM_ER7
#define MLLP CAD_HL7_STREAM_MLLP
#define AUTO CAD_HL7_STREAM_AUTO

/* ---- ER7 text ------------------------------------------------------------ */

TEST(er7_cr_messages_back_to_back) {
  EXPECT_ITEMS("MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rPID|2\r", ER7, 0,
               "M1@0[MSH|^~\\&|A\\rPID|1]M2@17[MSH|^~\\&|B\\rPID|2]");
}

TEST(er7_lf_and_crlf_blank_lines_between) {
  EXPECT_ITEMS("MSH|^~\\&|A\nPID|1\n\nMSH|^~\\&|B\nPID|2\n", ER7, 0,
               "M1@0[MSH|^~\\&|A\\nPID|1]M2@18[MSH|^~\\&|B\\nPID|2]");
  EXPECT_ITEMS("MSH|^~\\&|A\r\nPID|1\r\n\r\n\r\nMSH|^~\\&|B\r\nPID|2\r\n", ER7, 0,
               "M1@0[MSH|^~\\&|A\\r\\nPID|1]M2@23[MSH|^~\\&|B\\r\\nPID|2]");
}

TEST(er7_last_message_without_terminator) {
  EXPECT_ITEMS("MSH|^~\\&|A\rPID|1", ER7, 0, "M1@0[MSH|^~\\&|A\\rPID|1]");
  EXPECT_ITEMS("MSH|^", ER7, 0, "M1@0[MSH|^]");
}

TEST(er7_needs_finish_for_the_last_message) {
  cad_hl7_stream_t s;
  cad_hl7_item_t it;
  cad_hl7_stream_init(&s, ER7, 0);
  const char *in = "MSH|^~\\&|A\rPID|1\r";
  CHECK_INT(cad_hl7_stream_feed(&s, in, strlen(in)), 0);
  CHECK_INT(cad_hl7_stream_next(&s, &it), 0); /* another PID line may follow */
  cad_hl7_stream_finish(&s);
  CHECK_INT(cad_hl7_stream_next(&s, &it), 1);
  CHECK_INT(it.kind, CAD_HL7_ITEM_MESSAGE);
  CHECK_STRN(it.bytes.p, it.bytes.len, "MSH|^~\\&|A\rPID|1");
  CHECK_INT(cad_hl7_stream_next(&s, &it), 0);
  CHECK_INT(cad_hl7_stream_next(&s, &it), 0);
  CHECK_INT(cad_hl7_stream_feed(&s, "x", 1), CAD_E_STATE);
  cad_hl7_stream_free(&s);
}

TEST(er7_leading_blanks_before_msh_are_not_in_the_message) {
  EXPECT_ITEMS("   \t MSH|^~\\&|A\rPID|1\r  \n\t MSH|^~\\&|B\r", ER7, 0,
               "M1@5[MSH|^~\\&|A\\rPID|1]M2@27[MSH|^~\\&|B]");
}

TEST(er7_blank_lines_inside_a_message_stay_trailing_ones_go) {
  EXPECT_ITEMS("MSH|^~\\&|A\r\r  \rPID|1\r \t \r\r\n", ER7, 0, "M1@0[MSH|^~\\&|A\\r\\r  \\rPID|1]");
}

TEST(er7_continuation_line_keeps_its_leading_blanks) {
  EXPECT_ITEMS("MSH|^~\\&|A\r  PID|1\r", ER7, 0, "M1@0[MSH|^~\\&|A\\r  PID|1]");
}

TEST(er7_comments_end_messages_and_are_skipped) {
  EXPECT_ITEMS("# header\rMSH|^~\\&|A\rPID|1\r# note\r  # indented\rMSH|^~\\&|B\r#end", ER7, 0,
               "M1@9[MSH|^~\\&|A\\rPID|1]M2@46[MSH|^~\\&|B]");
}

TEST(er7_junk_outside_messages_is_an_error_item) {
  EXPECT_ITEMS("hello\r world\r\rMSH|^~\\&|A\r", ER7, 0,
               "ENOMSH@0[hello\\r world]M1@14[MSH|^~\\&|A]");
  /* junk after a comment, an envelope and at the end */
  EXPECT_ITEMS("MSH|^~\\&|A\r#c\rjunk\rBHS|^~\\&\rzz\r", ER7, 0,
               "M1@0[MSH|^~\\&|A]ENOMSH@14[junk]V@19[BHS|^~\\&]ENOMSH@28[zz]");
}

TEST(er7_textual_markers_are_not_mllp) {
  /* Printable "[SOM]"/"[EOM]" markers are text: the message line does not
   * start with MSH, so the whole group is reported, nothing is guessed. */
  EXPECT_ITEMS("[SOM]MSH|^~\\&|A\r\nPID|1[EOM][CR]\r\n", AUTO, 0,
               "ENOMSH@0[[SOM]MSH|^~\\&|A\\r\\nPID|1[EOM][CR]]");
}

TEST(er7_msh_needs_a_field_separator) {
  /* MSHX and a bare MSH are ordinary lines: they continue the message. */
  EXPECT_ITEMS("MSH|^~\\&|A\rMSHX|1\rMSH\rMSH^~|\\&^B\r", ER7, 0,
               "M1@0[MSH|^~\\&|A\\rMSHX|1\\rMSH]M2@22[MSH^~|\\&^B]");
  /* lower case is not an id */
  EXPECT_ITEMS("MSH|^~\\&|A\rmsh|^~\\&|B\r", ER7, 0, "M1@0[MSH|^~\\&|A\\rmsh|^~\\&|B]");
}

TEST(er7_batch_envelopes) {
  EXPECT_ITEMS("FHS|^~\\&|F\rBHS|^~\\&|B\rMSH|^~\\&|1\rPID|1\rMSH|^~\\&|2\rBTS|2\rFTS|1", ER7, 0,
               "V@0[FHS|^~\\&|F]V@11[BHS|^~\\&|B]M1@22[MSH|^~\\&|1\\rPID|1]"
               "M2@39[MSH|^~\\&|2]V@50[BTS|2]V@56[FTS|1]");
  /* BTS/FTS without fields; FHS/BHS need a separator */
  EXPECT_ITEMS("MSH|^~\\&|1\rBTS\r  FTS\rBHS\r", ER7, 0,
               "M1@0[MSH|^~\\&|1]V@11[BTS]V@17[FTS]ENOMSH@21[BHS]");
}

TEST(er7_index_counts_messages_only) {
  run_t r;
  const char *in = "BHS|^\rMSH|^~\\&|1\rjunk\rx\r\rMSH|^~\\&|2\rMSH|^~\\&|3\rBTS|3";
  CHECK(run_all(in, strlen(in), AUTO, 0, &r));
  CHECK_INT(r.nmsg, 3);
  CHECK_INT(r.nenv, 2);
  CHECK_INT(r.nerr, 0);
  CHECK(strstr(r.sig.data, "M3@") != NULL);
  CHECK_INT(r.format, ER7);
  run_free(&r);
}

TEST(er7_message_too_big_is_reported_and_skipped) {
  /* max 16: the first message is 30 bytes */
  EXPECT_ITEMS("MSH|^~\\&|A\rPID|123456789012345\rOBX|1\rMSH|^~\\&|B\r", ER7, 16,
               "ETOOBIG@0[MSH|^~\\&|A\\rPID|1]M1@37[MSH|^~\\&|B]");
  /* exactly max is accepted */
  EXPECT_ITEMS("MSH|^~\\&|A\rPID|1\r", ER7, 16, "M1@0[MSH|^~\\&|A\\rPID|1]");
  EXPECT_ITEMS("MSH|^~\\&|A\rPID|12\r", ER7, 16, "ETOOBIG@0[MSH|^~\\&|A\\rPID|1]");
  /* the blank lines inside count, the trailing ones do not */
  EXPECT_ITEMS("MSH|^~\\&|A\r\r\r\r\r\rPID|1\r", ER7, 16,
               "ETOOBIG@0[MSH|^~\\&|A\\r\\r\\r\\r\\r\\r]");
  EXPECT_ITEMS("MSH|^~\\&|A\r\r\r\r\r\r\r\r\r\r\rMSH|^~\\&|B", ER7, 16,
               "M1@0[MSH|^~\\&|A]M2@21[MSH|^~\\&|B]");
}

TEST(er7_too_big_envelope_and_junk) {
  EXPECT_ITEMS("BHS|^~\\&|0123456789\rMSH|^~\\&|A\r", ER7, 12,
               "ETOOBIG@0[BHS|^~\\&|012]M1@20[MSH|^~\\&|A]");
  EXPECT_ITEMS("junk junk junk\rmore\rMSH|^~\\&|A\r", ER7, 10,
               "ENOMSH@0[junk junk ]M1@20[MSH|^~\\&|A]");
}

/* Feed `reps` copies of `piece` in chunks of `chunk` bytes. */
static void feed_repeated(cad_hl7_stream_t *s, const char *piece, size_t reps, size_t *maxcap,
                          int *items, int *errs) {
  cad_hl7_item_t it;
  for (size_t i = 0; i < reps; i++) {
    cad_hl7_stream_feed(s, piece, strlen(piece));
    while (cad_hl7_stream_next(s, &it) == 1) {
      (*items)++;
      if (it.kind == CAD_HL7_ITEM_ERROR) (*errs)++;
    }
    if (s->buf.cap > *maxcap) *maxcap = s->buf.cap;
  }
}

TEST(er7_constant_memory_for_huge_inputs) {
  cad_hl7_stream_t s;
  cad_hl7_item_t it;
  size_t cap = 0;
  int items = 0, errs = 0;
  cad_hl7_stream_init(&s, ER7, 1000);
  /* a 1 MB segment line */
  feed_repeated(&s, "MSH|^~\\&|A\r", 1, &cap, &items, &errs);
  feed_repeated(&s, "OBX|1|ED|", 1, &cap, &items, &errs);
  feed_repeated(&s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 20000, &cap,
                &items, &errs);
  CHECK_INT(items, 1);
  CHECK_INT(errs, 1);
  /* a 1 MB comment, 1 MB of blanks, 1 MB of junk */
  feed_repeated(&s, "\r#", 1, &cap, &items, &errs);
  feed_repeated(&s, "comment comment comment comment comment ", 25000, &cap, &items, &errs);
  feed_repeated(&s, "\r", 1, &cap, &items, &errs);
  feed_repeated(&s, "      \r\n\t\t  ", 100000, &cap, &items, &errs);
  feed_repeated(&s, "junk junk junk junk", 50000, &cap, &items, &errs);
  CHECK_INT(items, 2);
  /* a good message, followed by 1 MB of blank lines, then the next one */
  feed_repeated(&s, "\rMSH|^~\\&|B\rPID|1\r", 1, &cap, &items, &errs);
  feed_repeated(&s, "  \r\n \r\n", 200000, &cap, &items, &errs);
  feed_repeated(&s, "MSH|^~\\&|C", 1, &cap, &items, &errs);
  cad_hl7_stream_finish(&s);
  int msgs = 0;
  while (cad_hl7_stream_next(&s, &it) == 1) {
    items++;
    if (it.kind == CAD_HL7_ITEM_MESSAGE) msgs++;
  }
  CHECK_INT(items, 4);
  CHECK_INT(errs, 2);
  CHECK_INT(msgs, 1);
  CHECK_INT(s.messages, 2);
  CHECK(cap <= 4096);
  cad_hl7_stream_free(&s);
}

TEST(er7_long_blank_run_after_a_message_keeps_offsets) {
  /* Small limit, long blank runs fed in small pieces: the stream cuts the
   * blanks out of its buffer; offsets and accounting must stay exact. */
  cad_buf_t in = CAD_BUF_INIT;
  cad_buf_puts(&in, "MSH|^~\\&|A\rPID|1");
  for (int i = 0; i < 300; i++) cad_buf_puts(&in, "\r \n\t");
  cad_buf_puts(&in, "  BHS|^\r");
  cad_buf_puts(&in, "MSH|^~\\&|B");
  for (int i = 0; i < 300; i++) cad_buf_puts(&in, "\r \n");
  cad_buf_puts(&in, "PID|2\rMSH|^~\\&|C\r");
  for (int i = 0; i < 50; i++) cad_buf_puts(&in, "\n\n");
  run_t r;
  CHECK(run_all(in.data, in.len, ER7, 40, &r));
  cad_buf_cstr(&r.sig);
  CHECK_STRN(
      r.sig.data, r.sig.len,
      "M1@0[MSH|^~\\&|A\\rPID|1]V@1218[BHS|^]"
      "ETOOBIG@1224[MSH|^~\\&|B\\r \\n\\r \\n\\r \\n\\r \\n\\r \\n\\r \\n\\r \\n\\r \\n\\r \\n\\r \\n]"
      "M2@2140[MSH|^~\\&|C]");
  run_free(&r);
  cad_buf_free(&in);
}

/* ---- MLLP ---------------------------------------------------------------- */

TEST(mllp_frames_one_message_each) {
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\rPID|1\r\x1c\r\x0bMSH|^~\\&|B\r\x1c\r", AUTO, 0,
               "M1@1[MSH|^~\\&|A\\rPID|1]M2@21[MSH|^~\\&|B]");
}

TEST(mllp_detected_after_blank_lines) {
  run_t r;
  const char *in = "\r\n  \t\x0bMSH|^~\\&|A\r\x1c\r\n";
  CHECK(run_all(in, strlen(in), AUTO, 0, &r));
  CHECK_INT(r.format, MLLP);
  CHECK_STRN(r.sig.data, r.sig.len, "M1@6[MSH|^~\\&|A]");
  CHECK_INT(r.skipped, strlen(in) - 10);
  run_free(&r);
}

TEST(mllp_bytes_outside_frames_are_skipped) {
  run_t r;
  const char *in = "\x0bMSH|^~\\&|A\x1c\rnoise MSH|^~\\&|X\r\x1c\r\x0bMSH|^~\\&|B\x1cZ";
  CHECK(run_all(in, strlen(in), AUTO, 0, &r));
  CHECK_STRN(r.sig.data, r.sig.len, "M1@1[MSH|^~\\&|A]M2@33[MSH|^~\\&|B]");
  CHECK_INT(r.skipped, strlen(in) - 20);
  run_free(&r);
  /* forced MLLP on text without frames: nothing but skipped bytes */
  in = "MSH|^~\\&|A\rPID|1\r";
  CHECK(run_all(in, strlen(in), MLLP, 0, &r));
  CHECK_INT(r.sig.len, 0);
  CHECK_INT(r.skipped, strlen(in));
  run_free(&r);
}

TEST(mllp_frame_content_split_as_er7) {
  /* a batch in one frame, LF terminators, junk and a comment inside */
  EXPECT_ITEMS(
      "\x0b"
      "BHS|^~\\&\nMSH|^~\\&|1\nPID|1\n\nMSH|^~\\&|2\n#c\nzz\nBTS|2\n\x1c\r",
      MLLP, 0,
      "V@1[BHS|^~\\&]M1@10[MSH|^~\\&|1\\nPID|1]M2@28[MSH|^~\\&|2]ENOMSH@42[zz]"
      "V@45[BTS|2]");
  /* empty and blank frames give nothing */
  EXPECT_ITEMS("\x0b\x1c\r\x0b \r\n\x1c\r\x0bMSH|^\x1c\r", AUTO, 0, "M1@10[MSH|^]");
}

TEST(mllp_unfinished_frames) {
  /* a start block inside a frame: the partial message is a FRAME error */
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\rPID|\x0bMSH|^~\\&|B\x1c\r", AUTO, 0,
               "EFRAME@1[MSH|^~\\&|A\\rPID|]M1@17[MSH|^~\\&|B]");
  /* complete messages before it in the same frame are kept */
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\rMSH|^~\\&|B\x0bMSH|^~\\&|C\x1c", AUTO, 0,
               "M1@1[MSH|^~\\&|A]EFRAME@12[MSH|^~\\&|B]M2@23[MSH|^~\\&|C]");
  /* end of input inside a frame */
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\x1c\r\x0bMSH|^~\\&|B\rPID", AUTO, 0,
               "M1@1[MSH|^~\\&|A]EFRAME@14[MSH|^~\\&|B\\rPID]");
  /* a dangling start block at the end is nothing */
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\x1c\r\x0b", AUTO, 0, "M1@1[MSH|^~\\&|A]");
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\x1c\r\x0b \r\n", AUTO, 0, "M1@1[MSH|^~\\&|A]");
}

TEST(mllp_message_too_big_inside_a_frame) {
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\rPID|0123456789\rOBX|1\x1c\r\x0bMSH|^~\\&|B\x1c\r", AUTO, 14,
               "ETOOBIG@1[MSH|^~\\&|A\\rPID]M1@35[MSH|^~\\&|B]");
}

TEST(er7_forced_with_mllp_bytes) {
  /* forced ER7: 0x0B and 0x1C are ordinary bytes of a junk line */
  EXPECT_ITEMS("\x0bMSH|^~\\&|A\r\x1c\r", ER7, 0, "ENOMSH@0[\\x0BMSH|^~\\&|A\\r\\x1C]");
}

/* ---- properties over generated inputs ------------------------------------ */

TEST(generated_inputs_are_chunking_independent) {
  static const char *tok[] = {"MSH|^~\\&|",
                              "PID|1",
                              "\r",
                              "\n",
                              "\r\n",
                              " ",
                              "\t",
                              "#c",
                              "BHS|^",
                              "BTS",
                              "FTS|1",
                              "junk",
                              "\x0b",
                              "\x1c",
                              "\x1c\r",
                              "MSH",
                              "OBX|1|TX|abcdefghij",
                              "x"};
  int bad = 0;
  for (int round = 0; round < 400; round++) {
    cad_buf_t in = CAD_BUF_INIT;
    int ntok = 1 + (int)(rng() % 40);
    for (int i = 0; i < ntok; i++) cad_buf_puts(&in, tok[rng() % (sizeof tok / sizeof *tok)]);
    static const size_t maxes[] = {0, 1, 5, 12, 30};
    for (int fmt = 0; fmt < 3; fmt++) {
      run_t r;
      if (!run_all(in.data, in.len, fmt, maxes[rng() % 5], &r)) bad++;
      run_free(&r);
    }
    cad_buf_free(&in);
  }
  CHECK_INT(bad, 0);
}

/* ---- the shared corpus --------------------------------------------------- */

static const char *corpus_dir(char *buf, size_t cap) {
  const char *c = getenv("CAD_CORPUS");
  if (c && *c) return c;
  const char *root = getenv("CAD_SOURCE_ROOT");
  snprintf(buf, cap, "%s/../shared/corpus", root && *root ? root : ".");
  return buf;
}

/* Field n >= 2 of a header segment, split on its own separator (no parser). */
static int msh_field(const char *p, size_t len, int n, const char **out, size_t *olen) {
  if (len < 4) return 0;
  char sep = p[3];
  size_t i = 4, start = 4;
  int field = 2;
  for (;; i++) {
    if (i == len || p[i] == sep || p[i] == '\r' || p[i] == '\n') {
      if (field == n) {
        *out = p + start;
        *olen = i - start;
        return 1;
      }
      if (i == len || p[i] != sep) return 0;
      field++;
      start = i + 1;
    }
  }
}

/* The n-th message (1-based) of a file split whole. */
static int nth_message(const char *in, size_t n, int which, cad_buf_t *out) {
  cad_hl7_stream_t s;
  cad_hl7_item_t it;
  int found = 0;
  cad_hl7_stream_init(&s, AUTO, 0);
  cad_hl7_stream_feed(&s, in, n);
  cad_hl7_stream_finish(&s);
  while (cad_hl7_stream_next(&s, &it) == 1)
    if (it.kind == CAD_HL7_ITEM_MESSAGE && it.index == (uint64_t)which) {
      cad_buf_append(out, it.bytes.p, it.bytes.len);
      found = 1;
    }
  cad_hl7_stream_free(&s);
  return found;
}

static int check_expectations(const char *dir, const char *name, const char *in, size_t n,
                              const run_t *r, int *checked) {
  char path[4096];
  snprintf(path, sizeof path, "%s/expectations.tsv", dir);
  size_t tlen = 0;
  char *tsv = cad_test_read_file(path, &tlen);
  if (!tsv) return 1;
  int ok = 1;
  char key[512];
  snprintf(key, sizeof key, "streams/%s\t", name);
  size_t klen = strlen(key);
  for (char *line = tsv; line < tsv + tlen;) {
    char *nl = memchr(line, '\n', (size_t)(tsv + tlen - line));
    size_t ll = nl ? (size_t)(nl - line) : (size_t)(tsv + tlen - line);
    if (ll > klen && !memcmp(line, key, klen)) {
      char row[1024];
      snprintf(row, sizeof row, "%.*s", (int)(ll < 1000 ? ll : 1000), line);
      char *f2 = row + klen, *tab = strchr(f2, '\t');
      if (tab) {
        *tab = 0;
        char *want = tab + 1, *t2 = strchr(want, '\t');
        if (t2) *t2 = 0;
        int msg, field;
        char tail;
        if (!strcmp(f2, "#messages")) {
          (*checked)++;
          if (r->nmsg != atoi(want)) {
            fprintf(stderr, "  %s: %d messages, expected %s\n", name, r->nmsg, want);
            ok = 0;
          }
        } else if (sscanf(f2, "MSH[%d]-%d%c", &msg, &field, &tail) == 2 && field >= 2) {
          cad_buf_t m = CAD_BUF_INIT;
          const char *v = NULL;
          size_t vl = 0;
          (*checked)++;
          if (!nth_message(in, n, msg, &m) || !msh_field(m.data, m.len, field, &v, &vl) ||
              vl != strlen(want) || memcmp(v, want, vl) != 0) {
            fprintf(stderr, "  %s: %s is not %s\n", name, f2, want);
            ok = 0;
          }
          cad_buf_free(&m);
        }
      }
    }
    line += ll + 1;
  }
  free(tsv);
  return ok;
}

static int walk(const char *dir, const char *sub, int *files, int *checked) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, sub);
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "  cannot open %s\n", path);
    return 0;
  }
  int ok = 1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char fp[4096 + 256];
    snprintf(fp, sizeof fp, "%s/%s", path, e->d_name);
    size_t n = 0;
    char *in = cad_test_read_file(fp, &n);
    if (!in) continue;
    (*files)++;
    run_t r;
    if (!run_all(in, n, AUTO, 0, &r)) {
      fprintf(stderr, "  %s: chunkings differ or an invariant broke\n", fp);
      ok = 0;
    }
    printf("  %s/%s: %d messages, %d envelopes, %d errors, %llu bytes skipped\n", sub, e->d_name,
           r.nmsg, r.nenv, r.nerr, (unsigned long long)r.skipped);
    if (!strcmp(sub, "streams") && !check_expectations(dir, e->d_name, in, n, &r, checked)) ok = 0;
    run_free(&r);
    free(in);
  }
  closedir(d);
  return ok;
}

TEST(corpus_streams_and_captures) {
  char buf[4096];
  const char *dir = corpus_dir(buf, sizeof buf);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    printf("skip: corpus not found at %s\n", dir);
    return;
  }
  int files = 0, checked = 0;
  CHECK(walk(dir, "streams", &files, &checked));
  CHECK(walk(dir, "mllp", &files, &checked));
  printf("  %d corpus files, %d expectations checked\n", files, checked);
  CHECK(files > 0);
  CHECK(checked > 0);
}

TEST_MAIN()
