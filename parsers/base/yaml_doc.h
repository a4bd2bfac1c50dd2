/* yaml_doc.h - a YAML file as a small tree of mappings, sequences and scalars.
 *
 * cad_yaml_parse() runs libyaml over a buffer and builds a tree in which every
 * node knows where it was written (file, line, column, 1-based, columns in
 * characters as an editor counts them).  It knows nothing about Caduceus'
 * configuration schema: engine/config walks the tree.
 *
 * What is refused, each with one "file:line:column: problem" line:
 *   - YAML syntax errors (libyaml's own description of the problem);
 *   - a key written twice in one mapping ("duplicate key 'x' (first at line N)");
 *   - a key that is not a scalar;
 *   - anchors (&a) and aliases (*a): refused rather than expanded, so a small
 *     file cannot grow into a huge tree ("billion laughs");
 *   - tags other than !!str (which marks a scalar as a string);
 *   - more than one document in the stream;
 *   - input beyond the limits below (bytes, nesting depth, node count).
 *
 * Memory: a cad_yaml_doc_t owns all of its nodes and strings (one arena),
 * released together by cad_yaml_free().  The `file` name given to
 * cad_yaml_parse() is borrowed: every node points at it, so it must outlive
 * the document.  The input buffer is not referenced after the call returns.
 */
#ifndef CAD_YAML_DOC_H
#define CAD_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include "cad_mem.h"

typedef enum {
  CAD_YAML_SCALAR = 1,
  CAD_YAML_SEQUENCE,
  CAD_YAML_MAPPING,
} cad_yaml_type_t;

typedef enum {
  CAD_YAML_PLAIN = 0, /* foo */
  CAD_YAML_SINGLE,    /* 'foo' */
  CAD_YAML_DOUBLE,    /* "foo" */
  CAD_YAML_LITERAL,   /* |  block */
  CAD_YAML_FOLDED,    /* >  block */
} cad_yaml_style_t;

typedef struct cad_yaml_node cad_yaml_node_t;

typedef struct cad_yaml_pair {
  cad_yaml_node_t *key; /* always a scalar */
  cad_yaml_node_t *value;
} cad_yaml_pair_t;

struct cad_yaml_node {
  cad_yaml_type_t type;
  const char *file;      /* borrowed: the name passed to cad_yaml_parse */
  int line, col;         /* where the node starts, 1-based */
  int end_line, end_col; /* just past its end, 1-based */
  /* CAD_YAML_SCALAR: the value after YAML unquoting and escapes, NUL-
   * terminated (it may contain a NUL of its own from "\0": check len). */
  const char *str;
  size_t len;
  cad_yaml_style_t style;
  bool quoted; /* style is not CAD_YAML_PLAIN, or tagged !!str */
  /* CAD_YAML_SEQUENCE: items[0..n); CAD_YAML_MAPPING: pairs[0..n), in the
   * order written, keys distinct. */
  cad_yaml_node_t **items;
  cad_yaml_pair_t *pairs;
  size_t n;
};

typedef struct cad_yaml_limits {
  size_t max_bytes; /* input size; default 16 MiB */
  size_t max_depth; /* nesting of sequences and mappings; default 64 */
  size_t max_nodes; /* nodes in the tree; default 1,000,000 */
} cad_yaml_limits_t;

#define CAD_YAML_MAX_BYTES ((size_t)16 << 20)
#define CAD_YAML_MAX_DEPTH 64
#define CAD_YAML_MAX_NODES 1000000

typedef struct cad_yaml_doc {
  cad_arena_t arena;     /* owns every node and string */
  cad_yaml_node_t *root; /* NULL for an empty document (only comments) */
  size_t nnodes;
} cad_yaml_doc_t;

/* Parse `len` bytes of `data` (UTF-8, or UTF-16 with a BOM) named `file` in
 * messages.  `limits` may be NULL (the defaults above; a zero field also means
 * its default).  On success returns 0 and *out is a new document (free with
 * cad_yaml_free).  On failure *out is NULL, the return value is CAD_E_CONFIG
 * (the input is wrong), CAD_E_TOOBIG (a limit was passed) or CAD_E_NOMEM,
 * and `err` (errlen bytes, may be NULL) holds one line without a newline:
 * "file:line:column: problem" (or "file: problem" without a position). */
int cad_yaml_parse(const char *file, const char *data, size_t len, const cad_yaml_limits_t *limits,
                   cad_yaml_doc_t **out, char *err, size_t errlen);

/* Release a document and all its nodes. NULL is accepted. */
void cad_yaml_free(cad_yaml_doc_t *doc);

/* The value of `key` in a mapping, or NULL (also when `map` is not a mapping). */
const cad_yaml_node_t *cad_yaml_get(const cad_yaml_node_t *map, const char *key);

/* True for a scalar that YAML reads as null: an empty plain value, ~ or null. */
bool cad_yaml_is_null(const cad_yaml_node_t *n);

/* The one rule for a boolean in every configuration (engine, channels,
 * routes, tables), YAML 1.2's core schema: 1 for true, True or TRUE, 0 for
 * false, False or FALSE, -1 for anything else.  yes/no/on/off (YAML 1.1)
 * are not booleans: a key that wants one refuses them. */
int cad_yaml_bool_text(const char *s, size_t len);
/* The same for a node: -1 when it is not a scalar. */
int cad_yaml_bool(const cad_yaml_node_t *n);
#define CAD_YAML_BOOL_WORDS "true or false"

/* "a mapping", "a sequence", "a string" or "nothing" (null): for messages. */
const char *cad_yaml_type_name(const cad_yaml_node_t *n);

/* Up to 40 bytes of s for an error message, NUL-terminated in out (cap
 * bytes; CAD_YAML_QUOTE_CAP holds the longest): printable ASCII and bytes
 * >= 0x80 (UTF-8) as they are, control bytes and the backslash as \xNN,
 * "..." when cut, so that hostile input cannot garble a terminal.  The one
 * quoting of values in messages (YAML, configuration, routes).  Returns out. */
#define CAD_YAML_QUOTE_CAP 200
const char *cad_yaml_quote(char *out, size_t cap, const char *s, size_t len);

#endif
