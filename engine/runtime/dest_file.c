/* dest_file.c - the `file` destination kind (channels/file/file_dest.h). */
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "dest_kinds_int.h"
#include "file_dest.h"
#include "hl7.h"

typedef struct file_kind {
  const cad_conf_dest_t *cd;
  cad_file_dest_t *file;
  cad_file_batch_t *batch; /* instead of file, with `batch:` */
  cad_arena_t arena;       /* parse of the message being written (its file name) */
  /* The worker's callback: the same for every message of a destination
   * (several may be in flight; completions come in order). */
  cad_deliver_done_cb done;
  void *done_ctx;
} file_kind_t;

static int file_open(uv_loop_t *loop, const cad_conf_dest_t *cd, void **impl, char *err,
                     size_t cap) {
  file_kind_t *f = calloc(1, sizeof *f);
  if (!f) return CAD_E_NOMEM;
  f->cd = cd;
  cad_arena_init(&f->arena, 16384, 0);
  int rc = cd->file.batch.enabled && cd->file.dir
               ? cad_file_batch_open(loop, cd->file.dir, &cd->file.batch, cd->file.mode,
                                     cd->file.dir_mode, &f->batch, err, cap)
               : cad_file_dest_open(loop, &cd->file, &f->file, err, cap);
  if (rc < 0) {
    cad_arena_free(&f->arena);
    free(f);
    return rc;
  }
  *impl = f;
  return 0;
}

static void file_written(int status, void *arg) {
  file_kind_t *f = arg;
  f->done(f->done_ctx, status == 0 ? CAD_DELIVER_OK : CAD_DELIVER_RETRY,
          status == 0 ? NULL : cad_err_name(status));
}

static int file_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  file_kind_t *f = impl;
  if (f->batch) {
    f->done = done;
    f->done_ctx = ctx;
    return cad_file_batch_write(f->batch, p, len, file_written, f);
  }
  cad_hl7_msg_t m;
  memset(&m, 0, sizeof m);
  /* The tree is only used for a per-message file name (dir mode), and only
   * as much of the message as the name reads (usually just MSH); an append
   * file needs none.  A message that does not parse (it was accepted once,
   * so this is rare) gets the template's fallbacks. */
  if (f->cd->file.dir) {
    cad_arena_reset(&f->arena);
    size_t n = cad_file_dest_name_input(f->file, p, len);
    if (cad_hl7_parse(&m, p, n, &f->arena, NULL, NULL) != 0) memset(&m, 0, sizeof m);
  }
  f->done = done;
  f->done_ctx = ctx;
  return cad_file_dest_write(f->file, &m, p, len, file_written, f);
}

static void file_close(void *impl) {
  file_kind_t *f = impl;
  if (!f) return;
  if (f->batch) cad_file_batch_close(f->batch);
  else cad_file_dest_close(f->file);
  cad_arena_free(&f->arena);
  free(f);
}

/* Up to 64 messages share one disk sync. */
const cad_dest_kind_t cad_dest_kind_file = {CAD_DEST_FILE, "file", file_open,
                                            file_deliver,  64,     file_close};
