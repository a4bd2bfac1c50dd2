/* config.h - the engine's configuration model, loaded from YAML.
 *
 * cad_config_load() reads one YAML file (which may `include:` others),
 * substitutes ${ENV_VAR} references in scalar values, checks every key
 * (unknown keys, wrong types, missing required keys, dangling destination
 * references are errors reported as "file:line:column: message"), and fills a
 * cad_config_t.  The schema is documented in README.md and taught by the
 * comments in examples/quickstart.yaml:
 *
 *   engine:
 *     data_dir: var/data          # state (the durable queue, later)
 *     log_level: info             # debug | info | warn | error
 *     log_format: kv              # kv | json
 *     stats_interval: 60s         # counters in the log; 0 = never
 *   destinations:
 *     <name>:
 *       type: file
 *       dir: var/out              # one file per message, named by `name`
 *       name: "${MSH-7}_${MSH-10}.hl7"
 *       # or  append: var/out/all.hl7   (one file, messages appended)
 *   channels:
 *     <name>:
 *       listen: [ "127.0.0.1:2575", "[::1]:2575" ]
 *       ack:
 *         mode: auto               # auto (MSH-15/16) | original | enhanced
 *       max_message_size: 4MiB
 *       idle_timeout: 300s         # close a connection idle this long
 *       frame_timeout: 30s         # close one that stalls mid-frame this long
 *       max_connections: 4096
 *       to: [ <destination>, ... ] # every accepted message goes to these
 *
 * Routes (a later issue) will add `routes:` to a channel beside `to:`.
 *
 * Memory: a cad_config_t and everything it points to belong to it and are
 * released by cad_config_free().  Strings are NUL-terminated and owned.
 */
#ifndef CAD_CONFIG_H
#define CAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { CAD_LOG_DEBUG = 0, CAD_LOG_INFO, CAD_LOG_WARN, CAD_LOG_ERROR } cad_log_level_t;
typedef enum { CAD_LOG_KV = 0, CAD_LOG_JSON } cad_log_format_t;
typedef enum { CAD_ACK_AUTO = 0, CAD_ACK_ORIGINAL, CAD_ACK_ENHANCED } cad_ack_mode_t;
typedef enum { CAD_DEST_FILE = 1 } cad_dest_type_t;

/* Where a configuration item was written, for error messages at run time. */
typedef struct cad_conf_pos {
  const char *file; /* owned by the config (shared string) */
  int line, col;    /* 1-based */
} cad_conf_pos_t;

typedef struct cad_conf_listen {
  char *host;        /* "127.0.0.1", "::1", "0.0.0.0" (brackets removed) */
  int port;          /* 1..65535 */
  cad_conf_pos_t pos;
} cad_conf_listen_t;

typedef struct cad_conf_dest {
  char *name;
  cad_dest_type_t type;
  /* type: file */
  char *dir;          /* one file per message in this directory, or NULL */
  char *name_tmpl;    /* file name template (default "${MSH-10}.hl7") */
  char *append_path;  /* append every message to this one file, or NULL */
  cad_conf_pos_t pos;
} cad_conf_dest_t;

typedef struct cad_conf_channel {
  char *name;
  cad_conf_listen_t *listen;
  size_t nlisten;
  cad_ack_mode_t ack_mode;
  size_t max_message_size; /* bytes, default 4 MiB */
  uint64_t idle_timeout_ms;   /* default 300000; 0 = none */
  uint64_t frame_timeout_ms;  /* default 30000 */
  uint32_t max_connections;   /* default 4096 */
  size_t *to;                 /* indexes into cad_config_t.dests */
  size_t nto;
  cad_conf_pos_t pos;
} cad_conf_channel_t;

typedef struct cad_config {
  char *path;              /* the main file as given */
  char *data_dir;          /* default "var/data" */
  cad_log_level_t log_level;
  cad_log_format_t log_format;
  uint64_t stats_interval_ms; /* default 60000; 0 = off */
  cad_conf_dest_t *dests;
  size_t ndests;
  cad_conf_channel_t *channels;
  size_t nchannels;
  char **files;            /* every file read (main + includes), owned */
  size_t nfiles;
} cad_config_t;

/* Load and check `path`.  On success returns 0 and *out is a new config (free
 * with cad_config_free).  On failure returns CAD_E_CONFIG (or CAD_E_IO /
 * CAD_E_NOMEM) and writes one line per problem, each
 * "file:line:column: what was expected", to `errors` (a NUL-terminated
 * string in a buffer the caller frees with free(); may be NULL). */
int cad_config_load(const char *path, cad_config_t **out, char **errors);
void cad_config_free(cad_config_t *c);

/* Parse "30s", "250ms", "5m", "1h", or a bare number of seconds. */
int cad_config_parse_duration(const char *s, uint64_t *ms);
/* Parse "4MiB", "64KiB", "1GiB", "4MB", "1000", ... */
int cad_config_parse_size(const char *s, size_t *bytes);

#endif
