/* source.h - the kinds of message source a channel can have besides its
 * MLLP listeners (`listen:`, wired in run.c): an HTTP endpoint, a watched
 * directory, an SFTP folder, a Kafka topic...
 *
 * A source kind is one entry of a table (source.c, `kinds`): whether a
 * channel asks for it, how to start it for that channel, how to follow the
 * channel into a reloaded configuration, how to stop it.  A running source
 * hands every message to the pipeline with cad_pipe_frame() on the loop
 * thread, with a cad_pipe_src_t of its own (pipeline.h) so that the answer
 * (the ACK, after the message is durable per the channel's ack.policy)
 * comes back to it: an HTTP response, a file moved to done/, an offset
 * committed.  A new kind: its code in channels/<kind>/ (or
 * engine/runtime/src_<kind>.c where it needs the engine), its keys in the
 * channel's configuration, one line in `kinds`.
 *
 * Lifecycle (cad_sources_apply): at start and at every reload, each channel
 * that wants a kind gets one running source of it.  A source already
 * running for a channel of that name is offered the new channel first
 * (adopt): it keeps running and feeds the new channel, or asks to be
 * restarted (its own settings changed).  Sources whose channel is gone are
 * stopped.  While a source feeds a channel it holds the channel's owner
 * (the runtime, through the pipeline's io->hold).
 *
 * Memory: the set owns its entries; each kind owns its state until its stop
 * callback has run.  Loop thread only.
 */
#ifndef CAD_SOURCE_H
#define CAD_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "pipeline.h"

typedef struct cad_source_env {
  uv_loop_t *loop;
  cad_pipe_t *pipe; /* where messages go (cad_pipe_frame) */
  /* The engine's state folder (a source's own state may live under it);
   * borrowed, for the life of the process. */
  const char *data_dir;
} cad_source_env_t;

typedef struct cad_source_kind {
  const char *name; /* "http", "dir", ... (logs) */
  /* Does channel cc ask for this kind? */
  bool (*wanted)(const cad_conf_channel_t *cc);
  /* Start for channel pc (pc->cc its configuration; pc valid until adopt
   * gives another or stop).  0, or a negative error with a PHI-free reason
   * in err. */
  int (*start)(const cad_source_env_t *env, cad_pipe_chan_t *pc, void **out, char *err, size_t cap);
  /* A reload: feed pc from now on (0), or 1 when the source must be
   * stopped and started again (its settings changed). */
  int (*adopt)(void *s, cad_pipe_chan_t *pc);
  /* Stop taking messages; answer or give back what is in flight as the
   * kind documents; then done(arg) and free the state. */
  void (*stop)(void *s, void (*done)(void *arg), void *arg);
} cad_source_kind_t;

typedef struct cad_sources cad_sources_t;

/* Make the running sources match channels pcs[0..n) (see Lifecycle).
 * *set may be NULL (created).  `closing` is incremented for every source
 * that starts stopping and decremented when it has stopped, then
 * `stopped(arg)` runs (the engine waits for them before it closes the
 * queue).  Returns 0, or the first error of a source that could not start
 * (logged; the others are applied all the same). */
int cad_sources_apply(cad_sources_t **set, const cad_source_env_t *env, cad_pipe_chan_t *const *pcs,
                      size_t n, int *closing, void (*stopped)(void *arg), void *arg);
/* Stop every source (shutdown); the set is freed. */
void cad_sources_stop_all(cad_sources_t *set, const cad_source_env_t *env, int *closing,
                          void (*stopped)(void *arg), void *arg);

#endif
