/* test_file_dest.c - the file destination: safe names from templates,
 * atomic per-message files, append mode, template errors. */
#include "file_dest.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cad_error.h"
#include "harness.h"

static char tmpdir[256];

static void make_tmp(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cad-fd-XXXXXX");
  if (!mkdtemp(tmpdir)) abort();
}

static void rm_rf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

typedef struct {
  cad_arena_t a;
  cad_hl7_msg_t m;
  char text[1024];
} msg_t;

static int parse(msg_t *x, const char *ctl, const char *pid3) {
  snprintf(x->text, sizeof x->text,
           "MSH|^~\\&|A|B|C|D|20260101120000||ADT^A01|%s|P|2.5\rPID|1||%s||DOE^JANE\r", ctl, pid3);
  cad_arena_init(&x->a, 0, 0);
  return cad_hl7_parse(&x->m, x->text, strlen(x->text), &x->a, NULL, NULL);
}

static cad_file_dest_t *open_dir(uv_loop_t *loop, const char *tmpl) {
  char dir[300];
  snprintf(dir, sizeof dir, "%s/out/sub", tmpdir);
  cad_file_dest_opts_t o = {.dir = dir, .name_tmpl = tmpl};
  cad_file_dest_t *d = NULL;
  char err[128];
  if (cad_file_dest_open(loop, &o, &d, err, sizeof err) < 0) return NULL;
  return d;
}

static const char *name_for(cad_file_dest_t *d, const char *ctl, const char *pid3) {
  static char out[256];
  msg_t x;
  if (parse(&x, ctl, pid3) < 0) return "(parse failed)";
  cad_file_dest_name(d, &x.m, out, sizeof out);
  cad_arena_free(&x.a);
  return out;
}

TEST(names_are_sanitised) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_file_dest_t *d = open_dir(&loop, "${MSH-7}_${MSH-10}.hl7");
  REQUIRE(d);
  CHECK_STR(name_for(d, "MSG1", "1"), "20260101120000_MSG1.hl7");
  CHECK_STR(name_for(d, "../../etc/passwd", "1"), "20260101120000_.._.._etc_passwd.hl7");
  cad_file_dest_close(d);
  d = open_dir(&loop, "${MSH-10}.hl7");
  REQUIRE(d);
  CHECK_STR(name_for(d, "../x", "1"), "_._x.hl7");
  CHECK_STR(name_for(d, ".hidden", "1"), "_hidden.hl7");
  CHECK_STR(name_for(d, "a b\\F\\c", "1"), "a_b_F_c.hl7");
  CHECK_STR(name_for(d, "", "1"), "_hl7"); /* ".hl7" would be hidden */
  cad_file_dest_close(d);
  /* A path with components; an absent field substitutes nothing. */
  d = open_dir(&loop, "${PID-3.1}-${PID-99}-x");
  REQUIRE(d);
  CHECK_STR(name_for(d, "M", "123^^^H^MR"), "123--x");
  CHECK_STR(name_for(d, "M", "/^^^H"), "_--x");
  cad_file_dest_close(d);
  /* Long values are cut to 64 bytes each. */
  d = open_dir(&loop, "${MSH-10}");
  REQUIRE(d);
  char longid[200];
  memset(longid, 'A', 150);
  longid[150] = 0;
  CHECK_INT(strlen(name_for(d, longid, "1")), 64);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

TEST(name_needs_only_the_header_when_the_template_reads_only_msh) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  static const char msg[] = "MSH|^~\\&|A|B|C|D|2026||ADT^A01|M1|P|2.5\rPID|1||7\r";
  const size_t len = sizeof msg - 1, msh = (size_t)(strchr(msg, '\r') - msg);
  const char *tmpls[] = {NULL, "${MSH-7}_${MSH-10}.hl7", "${PID-3.1}.hl7", "${MSH[2]-10}", "x.hl7"};
  const size_t want[] = {msh, msh, len, len, msh};
  for (size_t i = 0; i < sizeof tmpls / sizeof tmpls[0]; i++) {
    cad_file_dest_t *d = open_dir(&loop, tmpls[i]);
    REQUIRE(d);
    CHECK_INT(cad_file_dest_name_input(d, msg, len), want[i]);
    cad_file_dest_close(d);
  }
  /* The name from that much is the name from the whole message. */
  cad_file_dest_t *d = open_dir(&loop, NULL);
  REQUIRE(d);
  char a[64], b[64];
  cad_arena_t ar;
  cad_arena_init(&ar, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, msg, len, &ar, NULL, NULL) == 0);
  cad_file_dest_name(d, &m, a, sizeof a);
  REQUIRE(cad_hl7_parse(&m, msg, cad_file_dest_name_input(d, msg, len), &ar, NULL, NULL) == 0);
  cad_file_dest_name(d, &m, b, sizeof b);
  CHECK_STR(b, a);
  CHECK_STR(a, "M1.hl7");
  cad_arena_free(&ar);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

TEST(template_errors) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *bad[] = {"a/b${MSH-10}", "${MSH-10", "${PID-}", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/o", tmpdir);
    cad_file_dest_opts_t o = {.dir = dir, .name_tmpl = bad[i]};
    cad_file_dest_t *d = NULL;
    char err[128] = "";
    CHECK_INT(cad_file_dest_open(&loop, &o, &d, err, sizeof err), CAD_E_INVAL);
    CHECK(err[0] != 0);
  }
  cad_file_dest_opts_t both = {.dir = "x", .append_path = "y"};
  cad_file_dest_t *d = NULL;
  CHECK_INT(cad_file_dest_open(&loop, &both, &d, NULL, 0), CAD_E_INVAL);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

static int done_count, last_status;
static void on_done(int status, void *arg) {
  (void)arg;
  done_count++;
  if (status < 0) last_status = status;
}

static char *slurp(const char *path, size_t *n) { return cad_test_read_file(path, n); }

TEST(dir_mode_writes_whole_files) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_file_dest_t *d = open_dir(&loop, "${MSH-10}.hl7");
  REQUIRE(d);
  msg_t x[3];
  const char *ids[3] = {"ONE", "TWO", "THREE"};
  done_count = 0;
  last_status = 0;
  for (int i = 0; i < 3; i++) {
    REQUIRE(parse(&x[i], ids[i], "1") == 0);
    CHECK_INT(cad_file_dest_write(d, &x[i].m, x[i].text, strlen(x[i].text), on_done, NULL), 0);
  }
  CHECK(cad_file_dest_pending(d) == 3);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(done_count, 3);
  CHECK_INT(last_status, 0);
  for (int i = 0; i < 3; i++) {
    char p[400];
    snprintf(p, sizeof p, "%s/out/sub/%s.hl7", tmpdir, ids[i]);
    size_t n = 0;
    char *got = slurp(p, &n);
    REQUIRE(got);
    CHECK_STRN(got, n, x[i].text);
    free(got);
    cad_arena_free(&x[i].a);
  }
  /* Nothing else in the directory: no temp file left. */
  char dp[300];
  snprintf(dp, sizeof dp, "%s/out/sub", tmpdir);
  DIR *dir = opendir(dp);
  REQUIRE(dir);
  int files = 0;
  struct dirent *e;
  while ((e = readdir(dir)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) files++; /* temp files too */
  closedir(dir);
  CHECK_INT(files, 3);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

TEST(append_mode_keeps_order) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  char path[300];
  snprintf(path, sizeof path, "%s/new/dir/all.hl7", tmpdir);
  cad_file_dest_opts_t o = {.append_path = path, .max_batch = 2};
  cad_file_dest_t *d = NULL;
  REQUIRE(cad_file_dest_open(&loop, &o, &d, NULL, 0) == 0);
  const char *msgs[] = {"MSH|^~\\&|1\r", "MSH|^~\\&|2", "MSH|^~\\&|3\n", "MSH|^~\\&|4\r"};
  done_count = 0;
  for (int i = 0; i < 4; i++)
    CHECK_INT(cad_file_dest_write(d, NULL, msgs[i], strlen(msgs[i]), on_done, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(done_count, 4);
  size_t n = 0;
  char *got = slurp(path, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, "MSH|^~\\&|1\r\nMSH|^~\\&|2\r\nMSH|^~\\&|3\n\nMSH|^~\\&|4\r\n");
  free(got);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

TEST(queue_is_bounded) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  char path[300];
  snprintf(path, sizeof path, "%s/q.hl7", tmpdir);
  cad_file_dest_opts_t o = {.append_path = path, .max_batch = 1, .max_queue = 2};
  cad_file_dest_t *d = NULL;
  REQUIRE(cad_file_dest_open(&loop, &o, &d, NULL, 0) == 0);
  done_count = 0;
  /* The first goes to the worker at once; two more fill the queue. */
  CHECK_INT(cad_file_dest_write(d, NULL, "a\r", 2, on_done, NULL), 0);
  CHECK_INT(cad_file_dest_write(d, NULL, "b\r", 2, on_done, NULL), 0);
  CHECK_INT(cad_file_dest_write(d, NULL, "c\r", 2, on_done, NULL), 0);
  CHECK_INT(cad_file_dest_write(d, NULL, "d\r", 2, on_done, NULL), CAD_E_FULL);
  /* Closing with writes pending: they complete first. */
  cad_file_dest_close(d);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(done_count, 3);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

TEST_MAIN()
