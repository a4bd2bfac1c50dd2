/* sftp_bg.h - a thread of one's own for blocking work (an SFTP connection),
 * with the results handed back to the event loop through uv_async.
 *
 * Jobs run one at a time, in the order posted, on the thread; each job's
 * `done` then runs on the loop thread.  Blocking network calls (that may
 * wait for a timeout) therefore never hold the loop nor libuv's shared
 * thread pool.  The job struct is the caller's (embedded in its own state)
 * and must stay valid until its done callback has run.
 *
 * Stop: jobs already posted still run and their done callbacks still come;
 * then the thread is joined, the async handle closed, and `closed(arg)`
 * runs on the loop.  Loop thread only (except the job's `run`).
 */
#ifndef CAD_SFTP_BG_H
#define CAD_SFTP_BG_H

#include <uv.h>

typedef struct cad_bg_job {
  struct cad_bg_job *next;
  void (*run)(struct cad_bg_job *j);  /* on the thread */
  void (*done)(struct cad_bg_job *j); /* then on the loop */
} cad_bg_job_t;

typedef struct cad_bg cad_bg_t;

int cad_bg_start(uv_loop_t *loop, cad_bg_t **out);
/* Queue j (run and done set by the caller).  0, or CAD_E_STATE when
 * stopping (done is then not called). */
int cad_bg_post(cad_bg_t *b, cad_bg_job_t *j);
/* Jobs queued or running. */
int cad_bg_busy(const cad_bg_t *b);
void cad_bg_stop(cad_bg_t *b, void (*closed)(void *arg), void *arg);

#endif
