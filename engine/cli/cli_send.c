/* cli_send.c - `caduceus send`: send the messages of files to an MLLP
 * listener, one at a time, and report each ACK.
 *
 * It is the engine's own MLLP sender (channels/mllp/mllp_sender.h) on a libuv
 * loop, so it checks ACKs exactly as a destination does (MSA-2 must match
 * the MSH-10 sent) and speaks TLS through the same transport code. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cad_error.h"
#include "cli.h"
#include "cli_mllp.h"
#include "cli_archive.h"
#include "hl7_stream.h"
#include "mllp_sender.h"
#include "transport.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus send --to HOST:PORT [options] FILE|- ...\n"
          "\n"
          "Send every HL7 v2 message of the files (plain ER7, batches or MLLP captures;\n"
          "'-' reads stdin) to an MLLP listener, one at a time over one connection,\n"
          "and wait for each ACK.  Prints one line per message: its control id\n"
          "(MSH-10), the ACK code (MSA-1) and the time the ACK took; for AE/AR also\n"
          "the receiver's MSA-3=\"text\" and ERR=\"code text: reason\" when present.\n"
          "\n"
          "%s"
          "  -q, --quiet             print only a summary\n"
          "  -h, --help              show this help\n"
          "\n"
          "Exit status: 0 every message was accepted (AA or CA), 1 otherwise, 2 usage error.\n",
          cad_cli_mllp_help);
}

typedef struct send_state {
  uv_loop_t loop;
  cad_mllp_sender_t *s;
  bool quiet;
  int done, outcome;
  char detail[256];
  uint64_t sent, accepted, refused, failed;
} send_state_t;

static void on_done(void *ctx, int outcome, const char *detail) {
  send_state_t *st = ctx;
  st->done = 1;
  st->outcome = outcome;
  snprintf(st->detail, sizeof st->detail, "%s", detail);
  uv_stop(&st->loop); /* do not wait in the poll for I/O that may never come */
}

typedef struct close_wait {
  uv_loop_t *loop;
  int closed;
} close_wait_t;

static void on_closed(void *arg) {
  close_wait_t *w = arg;
  w->closed = 1;
  uv_stop(w->loop);
}

/* Run the loop until *flag is set (the callback that sets it stops the loop). */
static void run_until(uv_loop_t *loop, const int *flag) {
  while (!*flag) uv_run(loop, UV_RUN_ONCE);
}

/* ` KEY="text"` (quotes and backslashes escaped), nothing when text is "". */
static void put_reason(const char *key, const char *text) {
  if (!text[0]) return;
  printf(" %s=\"", key);
  for (const char *q = text; *q; q++) {
    if (*q == '"' || *q == '\\') putchar('\\');
    putchar(*q);
  }
  putchar('"');
}

/* Send one message and print its line. */
static void send_one(send_state_t *st, const char *p, size_t len) {
  st->done = 0;
  st->sent++;
  int rc = cad_mllp_sender_deliver(st->s, p, len, st->sent, on_done, st);
  if (rc != 0) {
    st->failed++;
    if (!st->quiet) printf("- error: %s\n", cad_strerror(rc));
    return;
  }
  run_until(&st->loop, &st->done);
  const cad_mllp_result_t *r = cad_mllp_sender_last(st->s);
  const char *ctl = r->control_id[0] ? r->control_id : "-";
  if (st->outcome == CAD_MLLP_SEND_OK) {
    st->accepted++;
    if (!st->quiet) printf("%s %s %.1fms\n", ctl, r->ack_code, (double)r->latency_us / 1000.0);
  } else if (r->ack_code[0]) {
    st->refused++;
    if (!st->quiet) {
      printf("%s %s %.1fms", ctl, r->ack_code, (double)r->latency_us / 1000.0);
      put_reason("MSA-3", r->msa3);
      put_reason("ERR", r->err);
      putchar('\n');
    }
  } else {
    st->failed++;
    if (!st->quiet) printf("%s - error: %s\n", ctl, st->detail);
  }
  fflush(stdout);
}

/* Every message of a file, through the one reader of message files
 * (cli_archive.h); an unreadable stretch counts as failed. */
static int send_file(send_state_t *st, const char *path) {
  cad__archive_t ar;
  int rc = cad__archive_init(&ar, "send");
  if (!rc) rc = cad__archive_add_file(&ar, path);
  cad__archive_item_t it;
  while (!rc && (rc = cad__archive_next(&ar, &it)) == 1) {
    rc = 0;
    send_one(st, it.p, it.len); /* the item stays valid until the next call */
  }
  if (rc < 0) fprintf(stderr, "caduceus send: %s: %s\n", path, cad_strerror(rc));
  st->failed += ar.skipped_items;
  int status = rc < 0 || ar.read_errors ? 1 : 0;
  cad__archive_free(&ar);
  return status;
}

int cad_cli_send(int argc, char **argv) {
  cad_cli_mllp_t mo;
  cad_cli_mllp_init(&mo);
  bool quiet = false, opts = true;
  const char **files = calloc((size_t)argc + 1, sizeof *files);
  size_t nfiles = 0;
  if (!files) return 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int m = opts ? cad_cli_mllp_arg(&mo, "send", argc, argv, &i) : 0;
    if (m < 0) {
      free(files);
      return 2;
    } else if (m > 0) {
      continue;
    } else if (opts && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
      usage(stdout);
      free(files);
      return 0;
    } else if (opts && (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)) {
      quiet = true;
    } else if (opts && strcmp(a, "--") == 0) {
      opts = false;
    } else if (opts && a[0] == '-' && a[1]) {
      fprintf(stderr, "caduceus send: unknown option '%s'\n", a);
      usage(stderr);
      free(files);
      return 2;
    } else {
      files[nfiles++] = a;
    }
  }
  const char *why = cad_cli_mllp_check(&mo);
  if (!why && nfiles == 0) why = "no input: give one or more files, or - for stdin";
  if (why) {
    fprintf(stderr, "caduceus send: %s\n", why);
    usage(stderr);
    free(files);
    return 2;
  }

  send_state_t st;
  memset(&st, 0, sizeof st);
  st.quiet = quiet;
  cad_tls_ctx_t *ctx = NULL;
  char err[300];
  if (cad_cli_mllp_tls(&mo, &ctx, err, sizeof err) != 0) {
    fprintf(stderr, "caduceus send: TLS: %s\n", err);
    free(files);
    return 1;
  }
  uv_loop_init(&st.loop);
  cad_mllp_sender_opts_t so;
  cad_cli_mllp_sender_opts(&mo, ctx, &so);
  int status = 0;
  if (cad_mllp_sender_new(&st.loop, &so, &st.s, err, sizeof err) != 0) {
    fprintf(stderr, "caduceus send: %s\n", err);
    status = 1;
  } else {
    for (size_t i = 0; i < nfiles; i++) status |= send_file(&st, files[i]);
    close_wait_t w = {&st.loop, 0};
    cad_mllp_sender_close(st.s, on_closed, &w);
    run_until(&st.loop, &w.closed);
  }
  uv_run(&st.loop, UV_RUN_DEFAULT);
  uv_loop_close(&st.loop);
  cad_tls_ctx_unref(ctx);
  free(files);
  if (quiet || st.sent == 0)
    printf("%llu sent, %llu accepted, %llu not accepted (AE/AR), %llu failed\n",
           (unsigned long long)st.sent, (unsigned long long)st.accepted,
           (unsigned long long)st.refused, (unsigned long long)st.failed);
  if (st.sent == 0 && status == 0) status = 1; /* nothing was sent: the input was not HL7 */
  return status || st.accepted != st.sent || st.failed ? 1 : 0;
}
