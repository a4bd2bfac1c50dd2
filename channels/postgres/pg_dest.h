/* pg_dest.h - a PostgreSQL destination: each message becomes one or more
 * rows through a prepared statement, a batch of messages per transaction,
 * with libpq's asynchronous API on the loop (pipeline mode, PQsocket under
 * a uv_poll_t; nothing blocks).
 *
 *   connect      PQconnectStart with the connection string from the
 *                variable conf->conninfo_env, else "" (libpq's environment:
 *                PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, ...).  A
 *                host name is resolved by libpq itself (use an address or
 *                a unix socket where a DNS stall would matter).
 *   prepare      client_encoding UTF8, then the statement, once per
 *                connection.
 *   batch        the messages handed over while no transaction runs (up to
 *                conf->batch) go into one pipeline: every row's
 *                PQsendQueryPrepared, then one sync.  Up to the sync the
 *                server runs them as one implicit transaction: all committed
 *                or none.
 *   outcomes     committed: OK for every message of the batch, in order.
 *                SQLSTATE class 23 (integrity: unique, not null, foreign
 *                key, check) or 22 (a value the column refuses) in message
 *                k: the batch is rolled back by the server; messages before
 *                k are run again as their own batch (then OK), k is FAIL
 *                (dead letter) with "SQLSTATE nnnnn constraint c: <primary
 *                message>" (the server's primary message names the
 *                constraint, never a value; class 22's names the value, so
 *                only its SQLSTATE is kept), the ones after k RETRY.
 *                Anything else (connection lost, server shutting down,
 *                serialization failure, a statement the server refuses to
 *                prepare): RETRY for the whole batch, and the connection is
 *                dropped and made again at the next delivery.  A batch whose
 *                sync was not seen may have been committed: at-least-once,
 *                which an upsert in the statement makes harmless.
 *
 * Memory: the destination owns its connection, poll and timer handles and a
 * copy of nothing: message bytes are borrowed until their done callback.
 * The batch's parameter values live in one arena reset per batch.  Loop
 * thread only.
 */
#ifndef CAD_PG_DEST_H
#define CAD_PG_DEST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cad_mem.h"
#include "pg_conf.h"

enum { CAD_PG_OK = 0, CAD_PG_RETRY = 1, CAD_PG_FAIL = 2 };

/* Called once per delivery, in the order they were handed over; detail is
 * PHI-free (NULL when OK). */
typedef void (*cad_pg_done_cb)(void *ud, int outcome, const char *detail);

typedef struct cad_pg_dest cad_pg_dest_t;

/* conf is borrowed and must outlive the destination.  No connection is
 * made until the first delivery. */
int cad_pg_dest_open(uv_loop_t *loop, const cad_pg_dest_conf_t *conf, cad_pg_dest_t **out,
                     char *err, size_t cap);
/* Deliver p/len (borrowed until cb).  0 (cb runs later, exactly once) or a
 * negative error (cb never runs). */
int cad_pg_dest_deliver(cad_pg_dest_t *d, const char *p, size_t len, cad_pg_done_cb cb, void *ud);
/* Answer every delivery not finished with RETRY, close the connection and
 * free the destination once its handles are closed. */
void cad_pg_dest_close(cad_pg_dest_t *d);

/* The values of the statement's parameters for message p/len, one row per
 * occurrence of conf->rows (or one row): calls row(ud, values, n) per row,
 * values[i] NUL-terminated or NULL (SQL NULL), in arena a.  Returns the row
 * count, or a negative error (the message does not parse, or no memory).
 * Exposed for tests and the fuzzer. */
int cad_pg_rows(const cad_pg_dest_conf_t *conf, const char *p, size_t len, cad_arena_t *a,
                void (*row)(void *ud, const char *const *values, size_t n), void *ud);

#endif
