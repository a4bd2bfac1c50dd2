/* pg_conf.h - the configuration of a PostgreSQL destination
 * (`type: postgres`).
 *
 *   destinations:
 *     results-db:
 *       type: postgres
 *       conninfo_env: RESULTS_DB    # the environment variable holding the
 *                                   # connection string; without it, libpq's
 *                                   # own environment (PGHOST, PGPORT, ...)
 *       sql: >
 *         INSERT INTO observation (msg_id, set_id, code, value)
 *         VALUES ($1, $2, $3, $4)
 *         ON CONFLICT (msg_id, set_id) DO UPDATE SET value = EXCLUDED.value
 *       rows: OBX                   # one row per OBX segment
 *       params:
 *         $1: MSH-10
 *         $2: OBX[*]-1              # [*]: from the row's own OBX
 *         $3: OBX[*]-3.1
 *         $4: OBX[*]-5
 *       batch: 64                   # messages per transaction
 *       timeout: 60s                # connect or batch longer than this: retry
 *
 * Without `rows:` the statement runs once per message and a `[*]` takes the
 * first match.  A parameter whose element is absent or empty is NULL.
 *
 * The key table lives in engine/config/config_kafkapg.c.  Strings are owned
 * by the configuration that holds the struct.
 */
#ifndef CAD_PG_CONF_H
#define CAD_PG_CONF_H

#include <stddef.h>
#include <stdint.h>

#define CAD_PG_MAX_PARAMS 64

typedef struct cad_pg_dest_conf {
  const char *conninfo_env; /* the variable's name, or NULL: libpq's environment */
  const char *sql;          /* the statement, required */
  char **params;            /* params[i] is $(i+1)'s HL7 path text; owned, nparams */
  size_t nparams;
  const char *rows;    /* a segment id: one row per occurrence; NULL = one per message */
  uint32_t batch;      /* messages per transaction, default 64 */
  uint64_t timeout_ms; /* a connection or a batch not through by then is retried, default 60 s */
} cad_pg_dest_conf_t;

#endif
