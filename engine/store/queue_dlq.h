/* queue_dlq.h - dead letters and waiting messages of one destination, read
 * and changed on the journal pair (journal/ and deadletter/ of a data_dir).
 *
 * A running engine calls these on its queue's commit thread through
 * cad_queue_exec (queue.h), so that the engine's one writer does the change
 * and no second process opens the journal for writing.  A dead letter is a
 * MSG record of the dead-letter journal (payload: [u16 reason length]
 * [reason][u64 original queue sequence][message]) that no DONE record of
 * the same journal has finished: a requeue writes the message at the tail
 * of the destination's FIFO, then that DONE; a purge writes only the DONE.
 *
 * Memory: nothing is kept; the caller owns every output array.  Not thread
 * safe: one caller at a time per journal pair (the commit thread).
 */
#ifndef CAD_QUEUE_DLQ_H
#define CAD_QUEUE_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"

#define CAD_DLQ_REASON_MAX 200

/* One dead letter, without its message bytes (identifiers only: MSH-9 and
 * MSH-10, which carry no patient data). */
typedef struct cad_dlq_item {
  uint64_t no;       /* its number (the original queue sequence, usually) */
  uint64_t time_ms;  /* when it was dead-lettered */
  uint64_t orig_seq; /* its queue sequence, 0 = a route's (never queued) */
  uint64_t bytes;
  char reason[CAD_DLQ_REASON_MAX + 1];
  char type[48], control_id[72];
} cad_dlq_item_t;

/* What the reading functions need of the journals, taken while they are
 * held (cad_dlq_view), so that the reading itself runs without them. */
typedef struct cad_dlq_view {
  int did, lid;            /* ids in the journal and the dead-letter journal, -1 = none */
  uint64_t done_seq;       /* the destination's finished position */
  uint64_t last_seq;       /* and its last message */
  cad_jpos_t jfrom, jend;  /* the journal, from the first segment holding a waiting message */
  cad_jpos_t dbegin, dend; /* the dead-letter journal */
} cad_dlq_view_t;

/* Fill v for destination `name` (journals held: the commit thread, or
 * cad_queue_read_exec's snap).  0, or CAD_E_NOTFOUND (no such destination). */
int cad_dlq_view(cad_queue_journals_t *js, const char *name, cad_dlq_view_t *v);

/* The live dead letters of v with a number above `after`, oldest first: up
 * to `max` into out[], *n of them; *total counts all live ones (above
 * `after`).  Reads through readers on js's directories only.  0 or a
 * negative error. */
int cad_dlq_list(const cad_queue_journals_t *js, const cad_dlq_view_t *v, uint64_t after,
                 size_t max, cad_dlq_item_t *out, size_t *n, uint64_t *total);

/* The time of the oldest waiting (not finished) message of v, 0 when none.
 * Readers only.  0 or a negative error. */
int cad_dlq_oldest_waiting(const cad_queue_journals_t *js, const cad_dlq_view_t *v,
                           uint64_t *time_ms);

/* Move dead letter `no` (0 = every live one) of `name` back to the tail of
 * the destination's FIFO; *moved says how many, *first_seq the queue
 * sequence of the first.  Sets js->notify.  Journals held, writable (the
 * commit thread).  0, CAD_E_NOTFOUND (no such destination or dead letter)
 * or an I/O error (the ones moved before it stay moved). */
int cad_dlq_requeue(cad_queue_journals_t *js, const char *name, uint64_t no, uint64_t *moved,
                    uint64_t *first_seq);

/* Drop dead letter `no` (0 = every live one) of `name`.  As requeue. */
int cad_dlq_purge(cad_queue_journals_t *js, const char *name, uint64_t no, uint64_t *purged);

/* Both, with each(ud, number, queue sequence) after every dead letter moved
 * (sequence 0 for a purge); each may be NULL.  For `caduceus queue`, which
 * runs the same code on a stopped engine's journals. */
int cad_dlq_move(cad_queue_journals_t *js, const char *name, uint64_t no, bool purge,
                 void (*each)(void *ud, uint64_t no, uint64_t seq), void *each_ud, uint64_t *moved,
                 uint64_t *first_seq);

#endif
