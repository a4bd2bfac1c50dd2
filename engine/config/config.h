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
 *     archive: { enabled: true, retain: 7d, max_bytes: 0 }  # caduceus search / show
 *   destinations:
 *     <name>:
 *       type: file
 *       dir: var/out              # one file per message, named by `name`
 *       name: "${MSH-7}_${MSH-10}.hl7"
 *       # or  append: var/out/all.hl7   (one file, messages appended)
 *       # batch: { max_messages: 1000, max_bytes: 10MiB, max_age: 1m }  (HL7 batch files)
 *     <name>:
 *       type: sftp                # one file per message (or batch:) in a remote folder
 *       host, port, user, known_hosts, key | password_env, dir, name, mode
 *     <name>:
 *       type: mllp                # an MLLP receiver downstream
 *       host: ehr.example.org     # IP address or DNS name
 *       port: 2575
 *       persistent: true          # false: one connection per message
 *       connect_timeout: 10s
 *       ack_timeout: 30s
 *       idle_close: 0             # close an idle connection after this; 0 = never
 *       on_ae: retry              # AE/CE: retry | dead_letter
 *       on_ar: dead_letter        # AR/CR: retry | dead_letter
 *       new_control_id: false     # a new MSH-10 for every attempt
 *       encoding: 8859/1          # (every type) the character set it requires
 *       unrepresentable: reject   # reject | replace | escape (docs/charsets.md)
 *       tls: { ca: ca.crt, cert: c.crt, key: c.key, verify_hostname: true,
 *              server_name: ehr.example.org }   # all optional; `tls: {}` = TLS
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
 *       tls:                       # MLLP over TLS (TLS 1.2 minimum)
 *         cert: server.crt         # required
 *         key: server.key          # required
 *         ca: clients-ca.crt       # CAs for client certificates
 *         require_client_cert: false  # true: mutual TLS (needs ca)
 *         allowed_clients: [ lab-analyzer-1 ]  # subject CN or SAN names
 *         ciphers: "ECDHE+AESGCM"  # OpenSSL cipher list for TLS 1.2
 *         min_version: "1.2"       # 1.2 | 1.3
 *       allow: [ 10.0.0.0/8, 127.0.0.1 ]  # client addresses accepted (CIDR)
 *       charset: 8859/1            # the set of messages without MSH-18
 *       listen_dir: { dir: var/in, pattern: "*.hl7" }   # message files in a folder
 *       listen_sftp: { host: h, user: u, known_hosts: kh, key: k, dir: /out }
 *                                  # a remote SFTP folder (docs/files.md)
 *
 * A channel has either `to:` (every accepted message goes to those
 * destinations) or `routes:` (filters and transforms per destination, see
 * routes/README.md), compiled by routes/routes.h into cad_conf_channel_t.routes;
 * top-level `tables:` are the lookup tables the routes use.
 *
 * Memory: a cad_config_t and everything it points to belong to it and are
 * released by cad_config_free().  Strings are NUL-terminated and owned.
 */
#ifndef CAD_CONFIG_H
#define CAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dir_conf.h"   /* channels/dir: cad_dir_source_opts_t (listen_dir:) */
#include "fhir.h"       /* parsers/fhir: cad_fhir_opts_t, cad_format_t */
#include "file_dest.h"  /* channels/file: cad_file_dest_opts_t */
#include "http_conf.h"  /* channels/http: cad_http_dest_conf_t, cad_http_listen_conf_t */
#include "kafka_conf.h" /* channels/kafka: cad_kafka_dest_conf_t, cad_kafka_src_conf_t */
#include "mllp_conf.h"  /* channels/mllp: cad_mllp_dest_conf_t, listener options */
#include "pg_conf.h"    /* channels/postgres: cad_pg_dest_conf_t */
#include "routes.h"
#include "sftp_conf.h" /* channels/sftp: listen_sftp:, type: sftp */
#include "tls_conf.h"  /* channels/net: cad_tls_server_conf_t */
#include "transport.h" /* channels/net: TLS options, cad_cidr_t */

typedef enum { CAD_LOG_DEBUG = 0, CAD_LOG_INFO, CAD_LOG_WARN, CAD_LOG_ERROR } cad_log_level_t;
typedef enum { CAD_LOG_KV = 0, CAD_LOG_JSON } cad_log_format_t;
typedef enum {
  CAD_DEST_FILE = 1,
  CAD_DEST_MLLP,
  CAD_DEST_SFTP,
  CAD_DEST_KAFKA,
  CAD_DEST_POSTGRES,
  CAD_DEST_HTTP
} cad_dest_type_t;

/* The options of a channel kind are the channel's own types (channels/):
 * the configuration fills them, and the engine hands them over as they are.
 * Every string in them is owned by the config (freed by cad_config_free),
 * even where the channel's type says `const char *`. */

/* `tls:` of a channel (a TLS listener): channels/net/tls_conf.h. */
typedef cad_tls_server_conf_t cad_conf_tls_server_t;
/* When to send the ACK: after the message is on disk (default), on receipt
 * (faster, can lose messages on a crash), or after the destination took it. */
typedef enum { CAD_ACK_PERSISTED = 0, CAD_ACK_RECEIVED, CAD_ACK_DELIVERED } cad_ack_policy_t;
/* After the last delivery attempt: keep retrying and hold the queue, or move
 * the message to the dead-letter queue and go on. */
typedef enum { CAD_ON_FAILURE_BLOCK = 0, CAD_ON_FAILURE_DEAD_LETTER } cad_on_failure_t;

/* The longest channel or destination name, in bytes (letters, digits, '_',
 * '-', '.').  Everything that keeps a name (the stats registry) uses it. */
/* max_connections when the configuration leaves it 0 and the open-files
 * limit allows it; descriptors counted for the process itself beside the
 * listeners' reserve (open files at start: logs, journal, tables). */
#define CAD_CONF_AUTO_CONNECTIONS 4096u
#define CAD_CONF_FD_OVERHEAD 64u
#define CAD_CONF_NAME_MAX 64

/* Where a configuration item was written, for error messages at run time. */
typedef struct cad_conf_pos {
  const char *file; /* owned by the config (shared string) */
  int line, col;    /* 1-based */
} cad_conf_pos_t;

typedef struct cad_conf_listen {
  char *host; /* "127.0.0.1", "::1", "0.0.0.0" (brackets removed) */
  int port;   /* 1..65535 */
  cad_conf_pos_t pos;
} cad_conf_listen_t;

typedef struct cad_conf_dest {
  char *name;
  cad_dest_type_t type;
  /* Each kind's own struct, filled by the kind's key table (channels/):
   * type file: file.dir (one file per message, named by file.name_tmpl,
   * default "${MSH-10}.hl7") or file.append_path (one file for all),
   * file.mode / file.dir_mode (`mode:`, `dir_mode:`, default 0600 / 0700);
   * type mllp: mllp.sender (`persistent: false` is per_message, on_ae /
   * on_ar `dead_letter` are ae_dead_letter / ar_dead_letter), mllp.tls and
   * mllp.tls_enabled (channels/mllp/mllp_conf.h). */
  cad_file_dest_opts_t file;
  cad_mllp_dest_conf_t mllp;
  cad_sftp_dest_opts_t sftp;   /* type sftp (channels/sftp/sftp_conf.h) */
  cad_kafka_dest_conf_t kafka; /* type kafka (channels/kafka/kafka_conf.h) */
  cad_pg_dest_conf_t postgres; /* type postgres (channels/postgres/pg_conf.h) */
  cad_http_dest_conf_t http;   /* type http (channels/http/http_conf.h) */
  /* delivery (every type): retries, then dead letter or block */
  uint64_t retry_initial_ms;   /* default 1000 */
  uint64_t retry_max_ms;       /* default 60000 */
  uint32_t retry_attempts;     /* default 10 */
  cad_on_failure_t on_failure; /* default CAD_ON_FAILURE_BLOCK */
  cad_format_t format;         /* `format:` er7 (default) | fhir | json | xml */
  const cad_fhir_opts_t *fhir; /* the config's `fhir:` settings (borrowed) */
  uint64_t max_backlog;        /* messages waiting; 0 = no limit (default) */
  /* `encoding:` (every type): the character set this destination requires
   * (parsers/hl7/hl7_charset.h id; CAD_CS_NONE = the message's own), and
   * `unrepresentable:` what becomes of a character it cannot hold
   * (cad_cs_policy_t: reject (default), replace, escape). */
  int encoding;
  int unrepresentable;
  cad_conf_pos_t pos;
  /* lanes (every type, docs/lanes.md): N FIFOs delivered in parallel, a
   * message's lane chosen by order_by (engine/runtime/lanes.h) */
  uint32_t lanes; /* 1..64, default 1 */
  char *order_by; /* owned; NULL = none (required when lanes > 1) */
} cad_conf_dest_t;

/* `archive:` settings (engine/store/archive.h).  An index field is
 * searched with `caduceus search --field NAME=VALUE`; written as a list
 * (`index: [OBR-4.1, PV1-3]`) its name is the path in canonical form, as a
 * mapping (`index: {visit: PV1-19}`) the key.  Names owned. */
typedef struct cad_conf_arch_field {
  char *name;
  cad_hl7_path_t path;
} cad_conf_arch_field_t;
#define CAD_CONF_ARCH_MAX_FIELDS 16
typedef struct cad_conf_arch_index {
  cad_conf_arch_field_t *f; /* owned */
  size_t n;
} cad_conf_arch_index_t;
/* A channel's `archive: { index: [...], fts: true, retain: 30d }`: its
 * fields add to engine.archive.index; fts and retain override the engine's. */
typedef struct cad_conf_chan_archive {
  cad_conf_arch_index_t index;
  int fts;            /* 0 = engine.archive.fts, 1 = off, 2 = on */
  uint64_t retain_ms; /* 0 = engine.archive.retain */
} cad_conf_chan_archive_t;

typedef struct cad_conf_channel {
  char *name;
  cad_conf_listen_t *listen;
  size_t nlisten;
  /* The listeners' own options (channels/mllp/mllp_conf.h), as each listen
   * address gets them (the runtime sets host, port and tls):
   * listener.max_frame (`max_message_size`, default 4 MiB),
   * idle_timeout_ms (default 300000; 0 = none), frame_timeout_ms (default
   * 30000), max_connections (`0` in the file is resolved at load: never 0
   * here), ack_style (`ack.mode`, default CAD_ACK_STYLE_AUTO), allow /
   * nallow (`allow:` client ranges, owned; NULL = everyone). */
  cad_mllp_listener_opts_t listener;
  cad_ack_policy_t ack_policy; /* ack.policy, default persisted */
  cad_conf_tls_server_t tls;   /* `tls:`; tls.enabled false = plain TCP */
  cad_kafka_src_conf_t kafka;  /* `listen_kafka:`; kafka.enabled false = none */
  cad_http_listen_conf_t http; /* `listen_http:`; http.enabled false = none */
  size_t *to;                  /* indexes into cad_config_t.dests */
  size_t nto;
  cad_routes_t *routes; /* compiled routes (from `routes:` or `to:`), owned */
  /* `tests:` (route test cases, run by `caduceus test`), a sequence, or NULL.
   * Borrowed from the config's documents: valid until cad_config_free.  Every
   * `file:` in it was checked to be a readable regular file; a relative one
   * is relative to the directory of the file it is written in (node->file). */
  const cad_yaml_node_t *tests;
  /* `charset:` the character set of messages without MSH-18 (hl7_charset.h
   * id; CAD_CS_NONE = undeclared: bytes left as they are). */
  int charset;
  /* The configuration's destinations (borrowed from cad_config_t.dests,
   * the indexes of the routes' outputs), for their `encoding:`. */
  const struct cad_conf_dest *dests;
  size_t ndests;
  /* `listen_dir:` (channels/dir/dir_conf.h); listen_dir.enabled false = none.
   * A channel has `listen:`, `listen_dir:` or both. */
  cad_dir_source_opts_t listen_dir;
  /* `listen_sftp:` (channels/sftp/sftp_conf.h); listen_sftp.enabled false = none. */
  cad_sftp_source_opts_t listen_sftp;
  cad_conf_pos_t pos;
  cad_conf_chan_archive_t archive; /* `archive:` (index fields, fts, retain) */
} cad_conf_channel_t;

/* `admin:` - the admin HTTP listener (engine/runtime/admin.h):
 *   admin:
 *     listen: "127.0.0.1:8765"   # required to turn it on
 *     open_metrics: false        # /metrics, /healthz, /readyz without a token
 *     tls: { cert: a.crt, key: a.key }   # HTTPS; the keys of a channel's tls:
 *     tokens:
 *       - { name: ops, role: operator, hash: "sha256:<64 hex>" }
 *       - { name: ci, role: viewer, env: CAD_CI_TOKEN }   # hashed at load
 *     ready_max_age: 10m         # /readyz 503 when a message waits longer
 * Roles, each allowed what the one before is: viewer < analyst < operator
 * < admin. */
typedef enum {
  CAD_ROLE_VIEWER = 1,
  CAD_ROLE_ANALYST,
  CAD_ROLE_OPERATOR,
  CAD_ROLE_ADMIN
} cad_role_t;
typedef struct cad_conf_token {
  char *name; /* owned */
  cad_role_t role;
  unsigned char sha256[32]; /* of the token (from `hash:`, or of `env:`'s value) */
  char *hash_text, *env;    /* owned: as written (one of them), for the loader */
} cad_conf_token_t;
typedef struct cad_conf_admin {
  bool enabled; /* first: `admin:` was written */
  char *host;   /* owned, numeric */
  int port;
  bool open_metrics;
  cad_tls_server_conf_t tls; /* `tls:` as a channel's; tls.enabled false = plain HTTP */
  cad_conf_token_t *tokens;  /* owned, ntokens */
  size_t ntokens;
  cad_conf_pos_t pos;
  uint64_t ready_max_age_ms; /* /readyz: 503 when a destination's oldest waiting message is
                                older; 0 = no limit */
} cad_conf_admin_t;

/* `fhir:` (engine/config/config_fhir.c): the v2-to-FHIR settings.  opts
 * points into the arrays here (owned). */
typedef struct cad_conf_fhir {
  cad_fhir_opts_t opts;
  cad_fhir_system_t *systems; /* owned, and each string */
  size_t nsystems;
  char *tz; /* owned */
} cad_conf_fhir_t;

typedef struct cad_config {
  char *path;     /* the main file as given */
  char *data_dir; /* default "var/data" */
  cad_log_level_t log_level;
  cad_log_format_t log_format;
  uint64_t stats_interval_ms; /* default 60000; 0 = off */
  /* engine.queue */
  uint64_t queue_segment_bytes; /* default 64 MiB */
  uint64_t queue_retain_ms;     /* keep delivered messages this long, default 7 days */
  uint64_t queue_retain_bytes;  /* and at most this much of them, 0 = no limit */
  uint64_t queue_max_pending;   /* bytes waiting for the disk, default 64 MiB */
  uint64_t max_inbound_buffer;  /* engine.max_inbound_buffer: bytes all inbound
                                   connections may hold in unfinished frames,
                                   default 256 MiB (mllp_listener.h) */
  /* engine.archive (engine/store/archive.h) */
  bool archive_enabled;                /* default true */
  uint64_t archive_retain_ms;          /* whole days, default 7 days */
  uint64_t archive_max_bytes;          /* 0 = no limit */
  cad_conf_arch_index_t archive_index; /* engine.archive.index: every channel's */
  bool archive_fts;                    /* engine.archive.fts: full-text index of bodies */
  cad_conf_dest_t *dests;
  size_t ndests;
  cad_conf_channel_t *channels;
  size_t nchannels;
  cad_tables_t *tables; /* lookup tables (`tables:`), owned; NULL = none */
  char **files;         /* every file read (main + includes), owned */
  size_t nfiles;
  cad_yaml_doc_t **docs; /* their parsed trees, owned (channels' `tests` point in) */
  size_t ndocs;

  cad_conf_admin_t admin; /* `admin:`; admin.enabled false = no admin listener */
  cad_conf_fhir_t fhir;   /* `fhir:` */
} cad_config_t;

/* Load and check `path`.  On success returns 0 and *out is a new config (free
 * with cad_config_free).  On failure returns CAD_E_CONFIG (or CAD_E_IO /
 * CAD_E_NOMEM) and writes one line per problem, each
 * "file:line:column: what was expected", to `errors` (a NUL-terminated
 * string in a buffer the caller frees with free(); may be NULL). */
int cad_config_load(const char *path, cad_config_t **out, char **errors);
void cad_config_free(cad_config_t *c);

/* What a loaded configuration guarantees (checked by cad_config_load):
 *  - at least one channel; each has nlisten >= 1 and nto >= 1 (no index
 *    twice); hosts are numeric, in inet_ntop's canonical form ("::1"); no
 *    address is used twice, nor beside the wildcard (0.0.0.0 / ::) of its
 *    family on the same port;
 *  - a file destination has exactly one of file.dir and file.append_path;
 *    with dir, file.name_tmpl is set (default "${MSH-10}.hl7"), with
 *    append_path it is NULL; every ${...} in name_tmpl is an HL7 path that cad_hl7_path_parse()
 *    accepts, and outside them there is no '/', '\', '..' or control byte;
 *  - ranges (listener.*): max_frame 1KiB..1GiB; idle_timeout_ms 0 or
 *    1s..7d; frame_timeout_ms 100ms..1d; max_connections 1..1000000;
 *    stats_interval 0 or 1s..7d;
 *  - ${ENV_VAR} references are already replaced; $${ became ${.
 * cad_config_parse_duration / _size return 0, or CAD_E_INVAL (*out unchanged). */

/* Like cad_config_load, from `len` bytes in memory named `name` (used in
 * messages, and as the base for relative includes).  `flags`: 0, or
 * CAD_CONFIG_NO_INCLUDE to refuse `include:` (text from an untrusted place,
 * the fuzzer).  Same return values and `errors` as cad_config_load. */
#define CAD_CONFIG_NO_INCLUDE 1u
int cad_config_load_mem(const char *name, const char *data, size_t len, unsigned flags,
                        cad_config_t **out, char **errors);

/* Load `path` as cad_config_load does, on libuv's thread pool, so that
 * reading and checking the files never stops the event loop (a reload).
 * `cb` runs on the loop exactly once, unless this returns an error: with
 * rc 0 and a new config (the callback owns it, and `errors`, both freed
 * with cad_config_free / free()), with cad_config_load's error and `errors`,
 * with UV_ECANCELED, or with UV_ETIMEDOUT when the load has not finished
 * after `timeout_ms` (its result, if it ever comes, is dropped).  Returns 0,
 * CAD_E_STATE while an earlier load is still running (even one that timed
 * out), CAD_E_NOMEM, or a libuv error. */
struct uv_loop_s;
typedef void (*cad_config_loaded_cb)(void *ctx, int rc, cad_config_t *cfg, char *errors);
int cad_config_load_async(struct uv_loop_s *loop, const char *path, uint64_t timeout_ms,
                          cad_config_loaded_cb cb, void *ctx);
/* Jobs of cad_config_load_async not freed yet (loop thread; for tests). */
int cad_config_async_jobs(void);

/* The connections every listener may hold together: each channel's
 * max_connections times its listen addresses (what the open-files limit
 * must fit, mllp_listener.h cad_mllp_raise_fd_limit). */
uint64_t cad_config_connections(const cad_config_t *c);

/* Parse "30s", "250ms", "5m", "1h", or a bare number of seconds. */
int cad_config_parse_duration(const char *s, uint64_t *ms);
/* Parse "4MiB", "64KiB", "1GiB", "4MB", "1000", ... */
int cad_config_parse_size(const char *s, size_t *bytes);

/* Write a value back the way a configuration would ("30s", "1h30m", "250ms";
 * "4MiB", "1500B") into buf (NUL-terminated, truncated to cap). Return buf. */
char *cad_config_format_duration(uint64_t ms, char *buf, size_t cap);
char *cad_config_format_size(size_t bytes, char *buf, size_t cap);

#endif
