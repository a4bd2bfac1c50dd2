/* file_dest.h - the file destination: every message written to disk.
 *
 * Two modes:
 *   dir + name template   one file per message in `dir`, named from message
 *                         fields: "${MSH-7}_${MSH-10}.hl7" (any cad_hl7 path
 *                         inside ${...}; literal text around it).  Each file
 *                         is written atomically: a temp file in the same
 *                         directory, made durable, published under its name
 *                         without ever replacing an existing file, and one
 *                         fsync of the directory per batch.  A batch of one
 *                         uses fdatasync; a larger batch one syncfs() (Linux:
 *                         one journal commit for all its files instead of one
 *                         each; it also flushes whatever else is dirty on that
 *                         filesystem, so keep heavy writers off it).
 *   append                every message appended to one file, followed by
 *                         "\r" when it does not end with a segment
 *                         terminator and by "\n", so the file is a plain ER7
 *                         stream; one fdatasync per batch.
 * The message bytes are written as received, byte for byte.
 *
 * Names that are taken: a destination never replaces a file.  When the name
 * exists it tries "name~2.ext", "name~3.ext", ... (before the last '.', or
 * at the end when there is none) up to ~9999, then fails the delivery (it is
 * retried, then dead-lettered as configured).  An existing file whose bytes
 * are exactly the message's is taken as this message already written (a
 * redelivery after a crash, or an identical resend): the delivery succeeds
 * and nothing is written, so at-least-once redelivery makes no duplicates.
 * Two messages that differ in any byte always get two files.
 *
 * Hostile directories: everything is opened relative to the directory's
 * descriptor (openat) with O_NOFOLLOW; temp files are ".tmp." followed by 24
 * random hex digits (getrandom), created O_CREAT|O_EXCL, so a planted file or
 * symlink is never followed or overwritten.  Leftover temp files of a crash
 * (that exact shape, unchanged for a minute) are removed at open.  The append target must be a
 * regular file: a symlink, FIFO, socket or device is refused at open with a
 * clear error (it is opened O_NONBLOCK|O_NOFOLLOW and checked with fstat, so
 * a FIFO never blocks the engine).
 *
 * Permissions: files are created with `mode` (default 0600) and missing
 * directories with `dir_mode` (default 0700), both less the process umask.
 * Existing files and directories keep theirs.
 *
 * Safe names: the template's literal text may not contain '/' (checked at
 * open).  Each substituted value is reduced to [A-Za-z0-9._+-] (anything
 * else becomes '_') and to 64 bytes; a name that would start with '.' gets
 * '_' instead, so a message can neither leave the directory ("../x",
 * "/etc/x") nor produce a hidden or temp file name.  An absent or empty
 * field substitutes nothing; an empty name becomes "_".
 *
 * I/O: every file operation goes through the cad_io_t seam (cad_io.h), so a
 * test can make the Nth write, sync or rename fail.  A delivery is reported
 * successful only once its bytes and its name are synced; on any failure the
 * temp file is removed and the delivery reported failed (and retried).
 *
 * Threads: writes run on the libuv thread pool (uv_queue_work), one batch at
 * a time per destination, so messages reach the file in the order they were
 * submitted.  The callback runs on the loop thread once the bytes are on
 * disk (or the write failed).
 *
 * Memory: the destination owns its file descriptors and queue.  The message
 * bytes given to cad_file_dest_write() are borrowed until its callback; the
 * name is computed (and copied) during the call.  The queue is bounded:
 * max_queue pending messages, then CAD_E_FULL.
 */
#ifndef CAD_FILE_DEST_H
#define CAD_FILE_DEST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cad_io.h"
#include "file_batch.h"
#include "hl7.h"

typedef struct cad_file_dest cad_file_dest_t;

typedef struct cad_file_dest_opts {
  const char *dir;         /* per-message files in this directory, or NULL */
  const char *name_tmpl;   /* NULL = "${MSH-10}.hl7" */
  const char *append_path; /* or: append everything to this file */
  uint32_t max_batch;      /* messages per disk sync, 0 = 256 */
  uint32_t max_queue;      /* pending messages, 0 = 65536 */
  uint32_t mode;           /* permissions of created files, 0 = 0600 */
  uint32_t dir_mode;       /* of created directories, 0 = 0700 */
  const cad_io_t *io;      /* borrowed, outlives the destination; NULL = system */
  /* `batch:` with dir: messages collected into HL7 batch files instead of
   * one file each (file_batch.h; engine/runtime/dest_file.c picks it). */
  cad_file_batch_opts_t batch;
} cad_file_dest_opts_t;

/* status: 0 written and synced, or a negative errno / CAD_E_* code. */
typedef void (*cad_file_dest_cb)(int status, void *arg);

/* Check the options, create the directory (and parents) if missing, open the
 * directory or the append file.  Returns 0, CAD_E_INVAL (bad template, or an
 * append target that is not a regular file: the reason goes to err, a
 * NUL-terminated text of at most errcap bytes) or a negative errno. */
int cad_file_dest_open(uv_loop_t *loop, const cad_file_dest_opts_t *o, cad_file_dest_t **out,
                       char *err, size_t errcap);

/* A destination that only names files (no folder, nothing written): for
 * another kind that names its files the same way (the SFTP destination).
 * Use cad_file_dest_name / _name_input; free with cad_file_dest_close.
 * 0, or CAD_E_INVAL with the template's problem in err. */
int cad_file_dest_namer(const char *name_tmpl, cad_file_dest_t **out, char *err, size_t errcap);

/* The file name the template gives for message m (dir mode), NUL-terminated
 * in out (cap >= 2).  Returns its length. */
size_t cad_file_dest_name(const cad_file_dest_t *d, const cad_hl7_msg_t *m, char *out, size_t cap);

/* The bytes of a message that its file name depends on: its first segment
 * when the template reads only the first MSH (the default ${MSH-10}.hl7),
 * otherwise all of it.  So the caller parses no more than the name needs. */
size_t cad_file_dest_name_input(const cad_file_dest_t *d, const char *bytes, size_t len);

/* Queue one message.  `m` is used only during the call (for the name).
 * Returns 0 (cb will be called exactly once, later), CAD_E_FULL,
 * CAD_E_NOMEM or CAD_E_STATE (closing); cb is not called on error. */
int cad_file_dest_write(cad_file_dest_t *d, const cad_hl7_msg_t *m, const char *bytes, size_t len,
                        cad_file_dest_cb cb, void *arg);

/* Messages queued or being written. */
size_t cad_file_dest_pending(const cad_file_dest_t *d);

/* Close: pending writes complete (their callbacks run), then the descriptors
 * are closed and the destination freed. */
void cad_file_dest_close(cad_file_dest_t *d);

/* Candidate k (1-based) of a file name that must not replace another:
 * k 1 is name itself, then "a~2.hl7", "a~3.hl7"... (the suffix before the
 * last '.', or at the end: "x~2").  Used by every writer that never
 * replaces a file (this destination, its batches, SFTP, the folder
 * source's done/ and error/). */
void cad_file_name_suffixed(const char *name, unsigned k, char *out, size_t cap);

#endif
