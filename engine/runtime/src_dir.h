/* src_dir.h - the directory source (`listen_dir:` on a channel): message
 * files dropped in a folder, read and fed to the channel, then moved to
 * done/ or error/ once every message in them is durable.
 *
 * Finding files.  The folder is watched with inotify (uv_fs_event) and
 * rescanned every `rescan` as a safety net (events can be missed: a full
 * inotify queue, a network filesystem).  A scan runs on the thread pool and
 * keeps the 64 oldest candidates (mtime, then name), so a folder of any
 * size costs bounded memory.  A name is a candidate when it matches
 * `pattern` (fnmatch), does not start with '.', does not end in .tmp,
 * .part or .filepart (a writer's names before its rename), and is a
 * regular file (lstat: a symlink, FIFO, socket, device or directory is
 * skipped with one warning, never opened, so nothing blocks).  A file is
 * taken once it has not been modified for `stable` (its mtime is that old);
 * `stable: 0` takes it at once, for writers that rename complete files in.
 *
 * Reading.  One file at a time per source, oldest first.  The file is
 * opened O_NONBLOCK|O_NOFOLLOW and checked again with fstat (regular, the
 * inode the scan saw); chunks are read and split into messages on the
 * thread pool (parsers/hl7/hl7_stream.h: single messages, blank-line
 * separated, FHS/BHS batches, MLLP captures, as `caduceus parse`), in
 * constant memory: at most 1024 messages or about 1 MiB are read ahead,
 * and the next chunk waits while 2048 messages or 8 MiB are in flight in
 * the pipeline.  Each message goes through the channel (cad_pipe_frame);
 * its answer comes back once its records are durable (ack.policy).
 *
 * Outcomes, per message: taken (accepted, filtered, dead-lettered), refused
 * (unparseable, rejected by a route, a route error, larger than
 * max_message_size, broken MLLP framing, text that belongs to no message),
 * or not accepted for a reason that may pass (the queue could not write it:
 * disk full, queue full).  A refused message does not stop the file: the
 * others go on, and at the end the file goes to error/ with
 * `<name>.reason` naming each refused message (its number in the file, its
 * byte offset, its MSH-10 and the PHI-free reason).  A message not
 * accepted stops the file there: it stays where it is and is read again
 * from that message after a backoff (1 s doubling to 60 s).  A file whose
 * size or mtime changed while it was read goes to error/ (its messages read
 * so far are kept).  A file that cannot be opened (permissions) is left in
 * place, warned about once, and tried again at every rescan.  A name in
 * done/ or error/ that exists already gets "~2", "~3"... before its last
 * '.'.  done/ and error/ must be on the watched folder's filesystem.
 *
 * Crash safety.  A file is moved only after every one of its messages is
 * answered, so a crash never loses one.  While a file is read, a progress
 * file in <dir>/.caduceus/ (0600, in a 0700 folder; written to a temporary
 * name, fdatasync'd, renamed) records how many of its messages are
 * answered in file order, the byte offset after the last of them, the
 * refused ones' reasons, and the file's identity (device, inode, size,
 * mtime); it is saved at most every 200 ms and when the file ends.  After a
 * restart a file with a matching progress file is read on from there (plain
 * text: from the byte offset; an MLLP capture: read again from its start,
 * the messages before the offset skipped without being sent).  What may
 * repeat: the messages answered in the last 200 ms before the crash (their
 * progress was not saved yet), and after a not-accepted message, those
 * after it in flight that were taken.  Delivery is at-least-once, like the
 * engine's; a message is never lost.  One engine per folder (the
 * source holds <dir>/.caduceus/lock while it runs).
 *
 * Loop thread only; the thread pool reads and moves files. */
#ifndef CAD_SRC_DIR_H
#define CAD_SRC_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "source.h"

extern const cad_source_kind_t cad_source_dir;

/* For a kind that reads a local folder of its own (listen_sftp's spool):
 * start a directory source on options `o` (copied) for channel pc; feed
 * another channel; stop (as the kind's functions). */
int cad__dir_source_start(const cad_source_env_t *env, cad_pipe_chan_t *pc,
                          const cad_dir_source_opts_t *o, void **out, char *err, size_t cap);
void cad__dir_source_set_chan(void *impl, cad_pipe_chan_t *pc);
void cad__dir_source_stop(void *impl, void (*done)(void *arg), void *arg);

/* A progress file's content, as read back (src_dir.c writes it: text lines
 * "caduceus-dir-progress 1", "name <hex>", "file <dev> <ino> <size> <mtime
 * s> <ns>", "format <n>", "done <n>", "resume <offset> <n>", "count <taken>
 * <refused>", the reason lines, then "crc <crc32 of all before>"). */
typedef struct cad_dir_progress {
  char name[256];
  uint64_t dev, ino;
  int64_t size, msec;
  long mns;
  int fmt;
  uint64_t done, roff, rnum, taken, refused;
  const char *reasons; /* the reason lines, borrowed from the buffer */
  size_t reasons_len;
} cad_dir_progress_t;

/* Parse n bytes of a progress file: 0, or CAD_E_INVAL when it does not
 * prove itself (CRC, layout, ranges).  Never reads past buf[n). */
int cad__dir_progress_parse(const char *buf, size_t n, cad_dir_progress_t *p);

#endif
