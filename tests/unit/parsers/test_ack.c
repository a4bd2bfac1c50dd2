/* test_ack.c - the ACK builder: every field of the ACK, both modes, the ERR
 * layouts, the tolerant header reader. */
#include "ack.h"

#include <string.h>

#include "cad_error.h"
#include "harness.h"

/* 2026-01-02 03:04:05 UTC */
#define T0 ((time_t)1767323045)

static const char ADT[] =
    "MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20260101120000||ADT^A01^ADT_A01|MSG00042|P|2.5.1\r"
    "EVN|A01|20260101120000\r"
    "PID|1||12345^^^H^MR||DOE^JANE||19700101|F\r";

/* Field n (MSH numbering for MSH: MSH-1 is the separator) of segment `seg`
 * (0-based) of an ACK text, split by hand so the test does not trust the
 * parser. */
static cad_str_t ack_field(const char *ack, size_t len, int seg, int n) {
  const char *p = ack, *end = ack + len;
  for (int s = 0; s < seg; s++) {
    const char *cr = memchr(p, '\r', (size_t)(end - p));
    if (!cr) return (cad_str_t){"", 0};
    p = cr + 1;
  }
  const char *cr = memchr(p, '\r', (size_t)(end - p));
  const char *se = cr ? cr : end;
  char fs = (se - p > 3) ? p[3] : '|';
  bool msh = se - p >= 3 && memcmp(p, "MSH", 3) == 0;
  if (msh && n == 1) return (cad_str_t){p + 3, 1};
  int idx = msh ? n - 1 : n; /* index after splitting on fs */
  const char *q = p;
  for (int i = 0; i < idx; i++) {
    const char *nx = memchr(q, fs, (size_t)(se - q));
    if (!nx) return (cad_str_t){"", 0};
    q = nx + 1;
  }
  const char *fe = memchr(q, fs, (size_t)(se - q));
  if (!fe) fe = se;
  return (cad_str_t){q, (size_t)(fe - q)};
}

static int nsegs(const char *p, size_t n) {
  int k = 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\r') k++;
  return k;
}

#define CHECK_F(buf, seg, n, want)                           \
  do {                                                       \
    cad_str_t v_ = ack_field((buf).data, (buf).len, seg, n); \
    CHECK_STRN(v_.p, v_.len, want);                          \
  } while (0)

static int build(const char *msg, cad_ack_style_t style, cad_ack_status_t st,
                 const cad_hl7_diag_t *dg, int off, cad_buf_t *out) {
  cad_ack_msh_t h;
  int rc = cad_ack_msh_scan(msg, strlen(msg), 0, &h);
  if (rc < 0) return rc;
  cad_ack_opts_t o = {.style = style,
                      .status = st,
                      .control_id = "CAD0001",
                      .now = T0,
                      .utc_offset_min = off,
                      .diag = dg};
  return cad_ack_build(&h, &o, out);
}

TEST(original_accept_every_field) {
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(ADT, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b) == 1);
  CHECK_INT(nsegs(b.data, b.len), 2);
  CHECK_F(b, 0, 1, "|");
  CHECK_F(b, 0, 2, "^~\\&");
  CHECK_F(b, 0, 3, "EHR");
  CHECK_F(b, 0, 4, "SOUTH");
  CHECK_F(b, 0, 5, "LAB");
  CHECK_F(b, 0, 6, "NORTH");
  CHECK_F(b, 0, 7, "20260102030405+0000");
  CHECK_F(b, 0, 8, "");
  CHECK_F(b, 0, 9, "ACK^A01^ACK");
  CHECK_F(b, 0, 10, "CAD0001");
  CHECK_F(b, 0, 11, "P");
  CHECK_F(b, 0, 12, "2.5.1");
  CHECK_F(b, 1, 0, "MSA");
  CHECK_F(b, 1, 1, "AA");
  CHECK_F(b, 1, 2, "MSG00042");
  CHECK_STRN(b.data, b.len,
             "MSH|^~\\&|EHR|SOUTH|LAB|NORTH|20260102030405+0000||ACK^A01^ACK|CAD0001|P|2.5.1\r"
             "MSA|AA|MSG00042\r");
  cad_buf_free(&b);
}

TEST(timestamp_offsets) {
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(ADT, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 60, &b) == 1);
  CHECK_F(b, 0, 7, "20260102040405+0100");
  cad_buf_clear(&b);
  REQUIRE(build(ADT, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, -330, &b) == 1);
  CHECK_F(b, 0, 7, "20260101213405-0530");
  cad_buf_free(&b);
}

TEST(own_delimiters_are_kept) {
  const char *m = "MSH#*@!%#APP#FAC#RAPP#RFAC#2026##ORU*R01#X1#T#2.3\rPID#1\r";
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(m, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b) == 1);
  CHECK_STRN(b.data, b.len,
             "MSH#*@!%#RAPP#RFAC#APP#FAC#20260102030405+0000##ACK*R01*ACK#CAD0001#T#2.3\r"
             "MSA#AA#X1\r");
  cad_buf_free(&b);
}

TEST(v27_truncation_character_copied) {
  const char *m = "MSH|^~\\&#|A|B|C|D|2026||ORM^O01|Q7|P|2.7\r";
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(m, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b) == 1);
  CHECK_F(b, 0, 2, "^~\\&#");
  CHECK_F(b, 0, 9, "ACK^O01^ACK");
  CHECK_F(b, 0, 12, "2.7");
  cad_buf_free(&b);
}

TEST(reject_v25_err_layout) {
  cad_hl7_diag_t dg = {.code = CAD_E_INVAL,
                       .hl7_code = 101,
                       .segment = 3,
                       .seg_id = "PID",
                       .field = 3,
                       .reason = "PID-3 is required"};
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(ADT, CAD_ACK_STYLE_AUTO, CAD_ACK_REJECT, &dg, 0, &b) == 1);
  CHECK_INT(nsegs(b.data, b.len), 3);
  CHECK_F(b, 1, 1, "AR");
  CHECK_F(b, 1, 2, "MSG00042");
  CHECK_F(b, 1, 3, ""); /* MSA-3 is not used from v2.5 */
  CHECK_F(b, 2, 0, "ERR");
  CHECK_F(b, 2, 1, "");
  CHECK_F(b, 2, 2, "PID^3^3");
  cad_str_t e3 = ack_field(b.data, b.len, 2, 3);
  CHECK(e3.len > 12 && memcmp(e3.p, "101^", 4) == 0);
  CHECK(e3.len > 8 && memcmp(e3.p + e3.len - 8, "^HL70357", 8) == 0);
  CHECK_F(b, 2, 4, "E");
  CHECK_F(b, 2, 8, "PID-3 is required");
  cad_buf_free(&b);
}

TEST(error_status_ae_and_default_code) {
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(ADT, CAD_ACK_STYLE_AUTO, CAD_ACK_ERROR, NULL, 0, &b) == 1);
  CHECK_F(b, 1, 1, "AE");
  CHECK_F(b, 2, 2, "");
  cad_str_t e3 = ack_field(b.data, b.len, 2, 3);
  CHECK(e3.len > 4 && memcmp(e3.p, "207^", 4) == 0);
  CHECK_F(b, 2, 4, "E");
  cad_buf_free(&b);
}

TEST(reject_v23_err1_layout) {
  const char *m = "MSH|^~\\&|A|B|C|D|2026||ADT^A08|C9|P|2.3\rPID|1\r";
  cad_hl7_diag_t dg = {.hl7_code = 100, .segment = 2, .seg_id = "PID", .field = 0};
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(m, CAD_ACK_STYLE_AUTO, CAD_ACK_REJECT, &dg, 0, &b) == 1);
  CHECK_F(b, 1, 1, "AR");
  CHECK_F(b, 1, 2, "C9");
  cad_str_t msa3 = ack_field(b.data, b.len, 1, 3);
  CHECK(msa3.len > 0);
  cad_str_t e1 = ack_field(b.data, b.len, 2, 1);
  CHECK(e1.len > 15 && memcmp(e1.p, "PID^2^^100&", 11) == 0);
  CHECK(e1.len > 8 && memcmp(e1.p + e1.len - 8, "&HL70357", 8) == 0);
  CHECK_F(b, 2, 2, ""); /* nothing after ERR-1 in the old layout */
  cad_buf_free(&b);
}

TEST(enhanced_auto_from_msh15) {
  const char *al = "MSH|^~\\&|A|B|C|D|2026||ADT^A01|E1|P|2.5|||AL|NE\r";
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(al, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b) == 1);
  CHECK_F(b, 1, 1, "CA");
  CHECK_F(b, 1, 2, "E1");
  cad_buf_clear(&b);
  REQUIRE(build(al, CAD_ACK_STYLE_AUTO, CAD_ACK_REJECT, NULL, 0, &b) == 1);
  CHECK_F(b, 1, 1, "CR");
  cad_buf_clear(&b);
  REQUIRE(build(al, CAD_ACK_STYLE_AUTO, CAD_ACK_ERROR, NULL, 0, &b) == 1);
  CHECK_F(b, 1, 1, "CE");
  cad_buf_clear(&b);
  /* MSH-16 alone also means enhanced mode; empty MSH-15 reads as AL. */
  const char *app = "MSH|^~\\&|A|B|C|D|2026||ADT^A01|E2|P|2.5||||AL\r";
  REQUIRE(build(app, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b) == 1);
  CHECK_F(b, 1, 1, "CA");
  cad_buf_free(&b);
}

TEST(enhanced_msh15_ne_er_su) {
  cad_buf_t b = CAD_BUF_INIT;
  const char *ne = "MSH|^~\\&|A|B|C|D|2026||ADT^A01|E1|P|2.5|||NE|NE\r";
  CHECK_INT(build(ne, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b), 0);
  CHECK_INT(build(ne, CAD_ACK_STYLE_AUTO, CAD_ACK_REJECT, NULL, 0, &b), 0);
  const char *er = "MSH|^~\\&|A|B|C|D|2026||ADT^A01|E1|P|2.5|||ER\r";
  CHECK_INT(build(er, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b), 0);
  CHECK_INT(build(er, CAD_ACK_STYLE_AUTO, CAD_ACK_REJECT, NULL, 0, &b), 1);
  const char *su = "MSH|^~\\&|A|B|C|D|2026||ADT^A01|E1|P|2.5|||SU\r";
  cad_buf_clear(&b);
  CHECK_INT(build(su, CAD_ACK_STYLE_AUTO, CAD_ACK_REJECT, NULL, 0, &b), 0);
  CHECK_INT(b.len, 0);
  CHECK_INT(build(su, CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, NULL, 0, &b), 1);
  CHECK_F(b, 1, 1, "CA");
  cad_buf_free(&b);
}

TEST(forced_modes) {
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(ADT, CAD_ACK_STYLE_ENHANCED, CAD_ACK_ACCEPT, NULL, 0, &b) == 1);
  CHECK_F(b, 1, 1, "CA");
  cad_buf_clear(&b);
  const char *al = "MSH|^~\\&|A|B|C|D|2026||ADT^A01|E1|P|2.5|||NE\r";
  REQUIRE(build(al, CAD_ACK_STYLE_ORIGINAL, CAD_ACK_ACCEPT, NULL, 0, &b) == 1);
  CHECK_F(b, 1, 1, "AA");
  cad_buf_free(&b);
}

TEST(scan_tolerates_broken_bodies) {
  /* The body is garbage (bad segment ids, binary), the header is fine. */
  const char m[] = "MSH|^~\\&|S|F|R|G|2026||ORU^R01|Z9|D|2.4\nbad segment\x01\x02\rxx";
  cad_ack_msh_t h;
  REQUIRE(cad_ack_msh_scan(m, sizeof m - 1, 0, &h) == 0);
  CHECK_STRN(h.send_app.p, h.send_app.len, "S");
  CHECK_STRN(h.recv_fac.p, h.recv_fac.len, "G");
  CHECK_STRN(h.trigger.p, h.trigger.len, "R01");
  CHECK_STRN(h.control_id.p, h.control_id.len, "Z9");
  CHECK_STRN(h.version.p, h.version.len, "2.4");
  CHECK_INT(h.accept_ack.len, 0);
  /* A short header: fields past its end are empty. */
  REQUIRE(cad_ack_msh_scan("MSH|^~\\&|A", 10, 0, &h) == 0);
  CHECK_STRN(h.send_app.p, h.send_app.len, "A");
  CHECK_INT(h.control_id.len, 0);
  CHECK_INT(h.trigger.len, 0);
}

TEST(scan_refuses_unreadable_headers) {
  cad_ack_msh_t h;
  CHECK_INT(cad_ack_msh_scan("", 0, 0, &h), CAD_E_NOMSH);
  CHECK_INT(cad_ack_msh_scan("PID|1|", 6, 0, &h), CAD_E_NOMSH);
  CHECK_INT(cad_ack_msh_scan("MSHA^~\\&|", 9, 0, &h), CAD_E_DELIM);
  CHECK_INT(cad_ack_msh_scan("MSH||", 5, 0, &h), CAD_E_DELIM);
  CHECK_INT(cad_ack_msh_scan("MSH +", 5, 0, &h), CAD_E_DELIM); /* as the parser: no ACK */
  CHECK_INT(cad_ack_msh_scan("MSH# +", 6, 0, &h), CAD_E_DELIM);
  CHECK_INT(cad_ack_msh_scan("MSH|^^|", 7, 0, &h), CAD_E_DELIM);
  CHECK_INT(cad_ack_msh_scan("MSH|\r", 5, 0, &h), CAD_E_DELIM);
  CHECK_INT(cad_ack_msh_scan("MSH|^~\\&x|", 10, 0, &h), CAD_E_DELIM);
  /* max_scan bounds the read: "MSH" past it is not seen. */
  CHECK_INT(cad_ack_msh_scan("MSH|^~\\&|A", 10, 3, &h), CAD_E_NOMSH);
}

TEST(from_parsed_message_matches_scan) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t dg;
  REQUIRE(cad_hl7_parse(&m, ADT, strlen(ADT), &a, NULL, &dg) == 0);
  cad_ack_msh_t h1, h2;
  REQUIRE(cad_ack_msh_from_msg(&m, &h1) == 0);
  REQUIRE(cad_ack_msh_scan(ADT, strlen(ADT), 0, &h2) == 0);
  cad_ack_opts_t o = {.control_id = "X", .now = T0};
  cad_buf_t b1 = CAD_BUF_INIT, b2 = CAD_BUF_INIT;
  REQUIRE(cad_ack_build(&h1, &o, &b1) == 1);
  REQUIRE(cad_ack_build(&h2, &o, &b2) == 1);
  CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
  cad_buf_free(&b1);
  cad_buf_free(&b2);
  cad_arena_free(&a);
}

TEST(reason_is_escaped) {
  cad_hl7_diag_t dg = {
      .hl7_code = 102, .segment = 1, .seg_id = "MSH", .field = 7, .reason = "bad|value^here"};
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(build(ADT, CAD_ACK_STYLE_AUTO, CAD_ACK_REJECT, &dg, 0, &b) == 1);
  CHECK_INT(nsegs(b.data, b.len), 3);
  CHECK_F(b, 2, 2, "MSH^1^7");
  CHECK_F(b, 2, 8, "bad\\F\\value\\S\\here");
  cad_buf_free(&b);
}

TEST(version_parse) {
  CHECK_INT(cad_ack_version((cad_str_t){"2.3.1", 5}), 203);
  CHECK_INT(cad_ack_version((cad_str_t){"2.5", 3}), 205);
  CHECK_INT(cad_ack_version((cad_str_t){"2.8.2", 5}), 208);
  CHECK_INT(cad_ack_version((cad_str_t){"", 0}), 0);
  CHECK_INT(cad_ack_version((cad_str_t){"x", 1}), 0);
}

TEST_MAIN()
