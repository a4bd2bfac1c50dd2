/* cad_conf.h - key tables: how a module declares the YAML keys of its settings.
 *
 * nginx's command tables are the model: a module (a channel kind in
 * channels/, a section of the engine) describes each key of its block as
 * {name, type, offsetof, flags, default, range, arg, doc} over its own
 * options struct, and engine/config applies the table to the YAML mapping:
 * it reads and checks each value by its type (durations, sizes, paths,
 * enums, ...), stores it at the offset, fills the defaults of keys not
 * written, reports unknown keys, then calls the section's `check` for rules
 * between keys.  The module never sees YAML parsing or ${ENV}; it only
 * declares.  Data only: this header has no code to link but cad_conf_errf
 * and cad_conf_seen (cad_conf.c).
 *
 * Memory: tables are static.  Strings the loader stores into a module's
 * struct (paths, hosts, names) are malloc'd and owned by the configuration
 * that holds the struct (engine/config frees them), even where the field is
 * declared `const char *`.
 */
#ifndef CAD_CONF_H
#define CAD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "yaml_doc.h"

typedef enum {
  CAD_CONF_PATH = 1, /* char *: a path, relative to the file it is written in */
  CAD_CONF_FILE,     /* char *: a path to a readable regular file (checked at load) */
  CAD_CONF_TEMPLATE, /* char *: a file name template with ${HL7-path} references */
  CAD_CONF_ENUM,     /* int (base + index), or bool with CAD_CONF_AS_BOOL; arg: cad_conf_enum_t */
  CAD_CONF_DURATION, /* uint64_t milliseconds; lo..hi */
  CAD_CONF_SIZE,     /* size_t bytes; lo..hi */
  CAD_CONF_U32,      /* uint32_t; lo..hi */
  CAD_CONF_U64,      /* uint64_t; lo..hi */
  CAD_CONF_INT,      /* int; lo..hi */
  CAD_CONF_FLAG,     /* bool: true / false (YAML 1.2, cad_yaml_bool) */
  CAD_CONF_HOST,     /* char *: a DNS name or an IP address ([v6] brackets dropped) */
  CAD_CONF_MODE,     /* uint32_t: permission bits in octal ("0640", "640"), 0 to 0777 */
  CAD_CONF_TEXT,     /* char *: a non-empty string */
  CAD_CONF_NAMES,    /* one or a list of non-empty strings: `const char *const *` at
                        off, their count (size_t) at arg's count_off; arg:
                        cad_conf_names_t */
  CAD_CONF_SECTION,  /* a nested mapping; arg: cad_conf_section_t, applied to the same
                        struct (its keys' offsets are the struct's), or with
                        CAD_CONF_NESTED to the struct at `off`; with
                        CAD_CONF_PRESENCE, the bool at `off` is set when written
                        (a nested struct then begins with that bool) */
  CAD_CONF_CUSTOM,   /* the owner's own setter (engine/config only); arg: its data */
  CAD_CONF_URL,      /* char *: a URL template: a non-empty string that may hold
                        ${HL7-path} references ( ${ENV} is replaced as everywhere) */
} cad_conf_type_t;

enum {
  CAD_CONF_REQUIRED = 1u << 0,  /* no default: the key must be written */
  CAD_CONF_MAIN_ONLY = 1u << 1, /* only in the main file (not in an included one) */
  CAD_CONF_ZERO_OK = 1u << 2,   /* 0 is allowed (means "off") even below `lo` */
  CAD_CONF_INVERT = 1u << 3,    /* FLAG: store the opposite (persistent -> per_message) */
  CAD_CONF_AS_BOOL = 1u << 4,   /* ENUM: a bool, true for any name but the first */
  CAD_CONF_PRESENCE = 1u << 5,  /* SECTION: `off` is a bool set when the key is written */
  CAD_CONF_NESTED = 1u << 6,    /* SECTION: its keys are relative to the struct at `off` */
  CAD_CONF_ZERO_AUTO = 1u << 7, /* with ZERO_OK: 0 means "chosen at load", not "off" */
};

typedef struct cad_conf_enum {
  const char *const *names; /* NULL-terminated; value = base + index */
  int base;
  const char *doc; /* "debug, info, warn or error" */
} cad_conf_enum_t;

typedef struct cad_conf_names {
  size_t count_off; /* offsetof the size_t count */
  const char *item; /* "a certificate name (subject CN or SAN)" */
} cad_conf_names_t;

typedef struct cad_conf_key {
  const char *name;
  cad_conf_type_t type;
  size_t off; /* offsetof the field in the section's struct */
  unsigned flags;
  const char *def; /* default, as YAML would write it; NULL = none */
  uint64_t lo, hi; /* range: ms for durations, bytes for sizes */
  const void *arg; /* per type: cad_conf_enum_t, cad_conf_section_t, ... */
  const char *doc; /* what it is, for "missing 'x'" messages */
} cad_conf_key_t;

/* How a section's check reports a problem: one "file:line:column: message"
 * line at node `at`.  `where` is the section's place ("in destination
 * 'ehr'"); set *nomem when an allocation fails. */
typedef struct cad_conf_report {
  void (*err_at)(void *ctx, const cad_yaml_node_t *at, const char *msg);
  void *ctx;
  const char *where;
  bool *nomem;
} cad_conf_report_t;

typedef struct cad_conf_section cad_conf_section_t;
struct cad_conf_section {
  const char *what; /* "destination", ... for "expected a mapping of ... settings" */
  const cad_conf_key_t *keys;
  size_t nkeys;
  /* Rules between keys, after every key is applied (seen[i]: keys[i] was
   * written; `map` the mapping, `key` the node that named it).  May be NULL. */
  void (*check)(const cad_conf_report_t *r, const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                void *obj, const bool *seen);
};

#define CAD_CONF_NKEYS(a) (sizeof(a) / sizeof((a)[0]))

/* Report one problem through r (printf-style). */
void cad_conf_errf(const cad_conf_report_t *r, const cad_yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether the key `name` of `sec` was written (seen as given to check). */
bool cad_conf_seen(const cad_conf_section_t *sec, const bool *seen, const char *name);

/* The key node `name` of mapping `map` (for an error's position), or map. */
const cad_yaml_node_t *cad_conf_key_node(const cad_yaml_node_t *map, const char *name);

#endif
