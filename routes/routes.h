/* routes.h - the rule model: filters, transforms, lookup tables, fan-out.
 *
 * A channel's routes are compiled once (at start and at reload) from the YAML
 * nodes of the configuration, so that every mistake is reported as
 * "file:line:column: what was expected", and evaluated for every message.
 *
 *   tables:                                   # top level, shared by channels
 *     loinc: { file: tables/loinc.csv, header: true }  # CSV key,value
 *     facilities: { values: { NORTH: "1001", SOUTH: "1002" } }
 *   channels:
 *     lab:
 *       routes:
 *         - name: results-to-ehr
 *           when: { path: MSH-9.1, equals: ORU }   # a condition, or a list (all)
 *           transform: [ { set: MSH-5, value: EHR } ]
 *           to: [ehr, archive]
 *           continue: false                  # stop at the first matching route
 *       unrouted: drop                       # drop | reject | <destination>
 *       on_error: reject                     # reject | dead_letter
 *
 * README.md ("Routes") documents every condition and transform; in short:
 *
 *   condition:  { path: P, <op>: ARG, ... }        ops on every match, any match
 *               { path: P, all: { <op>: ARG } }    every match must satisfy
 *               { path: P, any: { <op>: ARG } }
 *               { all: [cond, ...] } { any: [cond, ...] } { not: cond }
 *   ops:        equals not_equals in in_table matches exists empty prefix
 *               lt le gt ge (decimal numbers) before after (HL7 DTM)
 *   transforms: set (value | template) copy move clear map replace upper lower
 *               trim format_date delete add rename version select
 *
 * Filters read the message as received; each matching route transforms its
 * own copy, so one message fanned out to two destinations may be shaped
 * differently for each.
 *
 * Memory: a cad_routes_t owns everything it compiled (one arena, compiled
 * regular expressions) and holds a reference on the tables it uses; release
 * it with cad_routes_free().  The YAML nodes are read during compilation
 * only.  cad_routes_eval() allocates only from the caller's arena (glibc's
 * regexec() may allocate internally for routes that use `matches`/`replace`).
 * A compiled cad_routes_t is read-only during evaluation: several threads may
 * evaluate with the same routes at once, each with its own arena.
 */
#ifndef CAD_ROUTES_H
#define CAD_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "cad_mem.h"
#include "hl7.h"
#include "yaml_doc.h"

/* ---- lookup tables ------------------------------------------------------ */

typedef struct cad_tables cad_tables_t;

/* Load the top-level `tables:` mapping (NULL: no tables).  Each table is
 * either `{ values: { KEY: VALUE, ... } }` or `{ file: PATH }` with optional
 * `header: true` (skip the first line) and `delimiter: ","`; PATH is relative
 * to base_dir (NULL = the current directory).  CSV: one `key,value` per line;
 * fields may be double-quoted ("" is a quote inside); blank lines and lines
 * starting with '#' are skipped; a duplicate key, a missing file or a line
 * without two fields is an error.  Returns 0 and *out (free with
 * cad_tables_free), or CAD_E_CONFIG / CAD_E_NOMEM with one line per problem
 * appended to `errors` (may be NULL). */
int cad_tables_load(const cad_yaml_node_t *tables_node, const char *base_dir, cad_tables_t **out,
                    cad_buf_t *errors);
/* Drop the caller's reference (routes compiled with it keep their own). */
void cad_tables_free(cad_tables_t *t);
/* Look a key up in a table; *value (borrowed from the tables) is set when
 * found.  Returns false when the table or the key does not exist. */
bool cad_tables_get(const cad_tables_t *t, const char *table, const char *key, size_t klen,
                    cad_str_t *value);

/* ---- compiled routes ---------------------------------------------------- */

typedef struct cad_routes cad_routes_t;

/* Compile one channel's routes.  `channel` is the channel's mapping (its keys
 * `routes`, `unrouted`, `on_error` and, when there is no `routes`, `to` are
 * read; the others belong to the engine and are ignored) or directly the
 * `routes:` sequence.  `tables` may be NULL (then `in_table`/`map` are
 * errors).  dest_names[0..ndests) are the destinations the configuration
 * defines (copied); outputs name them by index.  Returns 0 and *out, or
 * CAD_E_CONFIG / CAD_E_NOMEM with "file:line:column: problem" lines appended
 * to `errors` (may be NULL). */
int cad_routes_compile(const cad_yaml_node_t *channel, const cad_tables_t *tables,
                       const char *const *dest_names, size_t ndests, cad_routes_t **out,
                       cad_buf_t *errors);
void cad_routes_free(cad_routes_t *r);

/* Introspection (for `check` and the logs). */
size_t cad_routes_count(const cad_routes_t *r);
const char *cad_routes_name(const cad_routes_t *r, size_t i);
const char *cad_routes_dest_name(const cad_routes_t *r, size_t dest);
/* True when `on_error: dead_letter` (a failure goes to the channel's dead
 * letters), false for `reject`. */
bool cad_routes_dead_letters(const cad_routes_t *r);

/* ---- evaluation --------------------------------------------------------- */

typedef enum {
  CAD_ROUTE_DELIVER = 0, /* outputs[0..nouts) to enqueue; ACK AA */
  CAD_ROUTE_FILTERED,    /* no route took it, `unrouted: drop`: ACK AA, count it */
  CAD_ROUTE_REJECTED,    /* no route took it, `unrouted: reject`: ACK AR + ERR (diag) */
  CAD_ROUTE_ERROR,       /* a transform failed, `on_error: reject`: ACK AE + ERR (diag) */
  CAD_ROUTE_DEAD_LETTER, /* a transform failed, `on_error: dead_letter`: store the
                            original bytes with diag.reason in the dead-letter queue,
                            then ACK AA */
} cad_route_disposition_t;

typedef struct cad_route_out {
  size_t dest;     /* index into the dest_names given to cad_routes_compile */
  size_t route;    /* index of the route that produced it */
  cad_str_t bytes; /* the message to enqueue, segments ending in \r; in the
                        arena, or borrowed from the input bytes when the route
                        changed nothing and the input already ends its
                        segments with \r */
} cad_route_out_t;

typedef struct cad_route_result {
  cad_route_disposition_t disposition;
  cad_route_out_t *outs; /* arena */
  size_t nouts;
  bool unrouted;       /* DELIVER to the `unrouted:` destination */
  int route;           /* the failing route (ERROR/DEAD_LETTER), else -1 */
  int step;            /* its failing transform step, 1-based, else 0 */
  cad_hl7_diag_t diag; /* REJECTED/ERROR/DEAD_LETTER: HL7 0357 code, location,
                            PHI-free reason; ready for cad_ack_build() */
} cad_route_result_t;

/* Evaluate the routes for one message.  `bytes` is the message as received;
 * `parsed` its tree (from cad_hl7_parse over the same bytes; NULL: parsed
 * here).  Every allocation comes from `arena`; the result and its outputs
 * stay valid until the arena is reset and while `bytes` lives.  Returns 0
 * (see res->disposition), or a negative CAD_E_* when evaluation itself failed
 * (out of arena budget: then res is an ERROR with HL7 code 207). */
int cad_routes_eval(const cad_routes_t *r, const char *bytes, size_t len,
                    const cad_hl7_msg_t *parsed, cad_arena_t *arena, cad_route_result_t *res);

/* "deliver", "filtered", "rejected", "error", "dead_letter". */
const char *cad_route_disposition_name(cad_route_disposition_t d);

/* Serialize a message into the arena (same bytes as cad_hl7_serialize). */
int cad_routes_serialize(const cad_hl7_msg_t *m, cad_arena_t *a, cad_str_t *out);

/* Transforms are applied in order, as written; runs of steps that edit one
 * segment's fields are applied one segment occurrence at a time, and a route
 * that only rewrites fields keeps its edits beside the message instead of in a
 * copy of its tree (routes_overlay.c), which give the same bytes faster.  `on`
 * switches both off so every step is applied on its own: the reference the
 * tests and the fuzzer compare with.  Not for use while another thread
 * evaluates with r. */
void cad_routes_set_stepwise(cad_routes_t *r, bool on);

/* ---- standalone conditions ----------------------------------------------
 *
 * One `when:` condition outside any route (`caduceus replay --where`): the
 * same language and the same errors as a route's `when`.
 *
 * cad_route_cond_compile: from a YAML node (a mapping, or a list = all).
 * cad_route_cond_parse: from a one-line text (routes_where.c):
 *     MSH-9.1 = ORU and PID-3[*].4 != TEST
 *     MSH-4 in (NORTH, SOUTH)   OBR-25 in F,C    MSH-9 ^= ORU   PID-8 exists
 *     PID-8 empty   OBX-5 > 4.1   MSH-7 after 20240301   MSH-3 ~ '^LAB[0-9]+$'
 *     not ( A or B )     (and binds tighter than or)
 *   values are bare words or quoted with ' or "; text that starts with { or
 *   [ is read as a YAML condition.  Errors name the column ("--where:1:9").
 * Both return 0 and *out (free with cad_route_cond_free), or CAD_E_CONFIG /
 * CAD_E_NOMEM with problem lines appended to `errors` (may be NULL).
 * The condition holds a reference on `tables` (may be NULL).
 * cad_route_cond_eval: 1 holds, 0 does not, negative CAD_E_* (out of arena);
 * allocates only from `arena`. */
typedef struct cad_route_cond cad_route_cond_t;
int cad_route_cond_compile(const cad_yaml_node_t *node, const cad_tables_t *tables,
                           cad_route_cond_t **out, cad_buf_t *errors);
int cad_route_cond_parse(const char *text, const cad_tables_t *tables, cad_route_cond_t **out,
                         cad_buf_t *errors);
int cad_route_cond_eval(const cad_route_cond_t *c, const cad_hl7_msg_t *m, cad_arena_t *arena);
void cad_route_cond_free(cad_route_cond_t *c);

#endif
