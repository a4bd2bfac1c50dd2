/* config_int.h - what the files of engine/config share (private).
 *
 * The loader (loader_t) collects error lines and state while one
 * configuration loads; a section of the configuration is a key table
 * (parsers/base/cad_conf.h, nginx's command tables: name, type, offsetof,
 * default, range); apply_section() / apply_parts() run tables over a YAML
 * mapping, each key through the setter of its type.  The channel kinds
 * declare their own tables (channels/file/file_conf.c,
 * channels/mllp/mllp_conf.c, channels/net/tls_conf.c).  Files:
 *   config_load.c      files, include:, the top level, engine:, build, free
 *   config_util.c      errors, ${ENV}, the setters by type, apply_parts
 *   config_dests.c     the destination kinds (one line each), delivery keys
 *   config_channels.c  channel keys (beside the listeners' from channels/mllp),
 *                      allow, listen clashes, route tests
 *   config_async.c     loading on the thread pool (reload)
 */
#ifndef CAD_CONFIG_INT_H
#define CAD_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cad_conf.h"
#include "cad_mem.h"
#include "config.h"
#include "yaml_doc.h"

#define MAX_ERRORS 50
#define MAX_FILES 64 /* main file + includes */
#define MAX_INCLUDE_DEPTH 16
#define MAX_TOTAL_BYTES ((size_t)64 << 20)
#define MAX_NAMED 4096 /* channels, and destinations */
#define MAX_NAME_LEN CAD_CONF_NAME_MAX
#define MAX_LISTEN 16 /* per channel */
#define MAX_TO 256    /* per channel */
#define QBUF 200      /* a quoted value in a message */

#define MS_SECOND UINT64_C(1000)
#define MS_DAY (UINT64_C(86400) * MS_SECOND)

/* Enums are stored through an int: that needs them to be int-sized. */
_Static_assert(sizeof(cad_log_level_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_log_format_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_ack_style_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_dest_type_t) == sizeof(int), "enum size");
_Static_assert(sizeof(cad_format_t) == sizeof(int), "enum size");
#define MS_HOUR (UINT64_C(3600) * MS_SECOND)
#define MAX_LIST 256 /* allowed_clients, allow */

/* ---- the loader ------------------------------------------------------ */

typedef struct named {
  const cad_yaml_node_t *key, *val; /* "lab:" and its settings */
} named_t;

typedef struct loader {
  cad_config_t *c;
  unsigned flags;
  cad_buf_t err;         /* the error lines */
  int nerr, dropped;     /* lines written, lines beyond MAX_ERRORS */
  bool nomem, io;        /* out of memory; the main file cannot be read */
  cad_yaml_doc_t **docs; /* every parsed file, alive until the end */
  size_t ndocs, docs_cap;
  char **real; /* realpath() of c->files[i], or NULL (in memory) */
  size_t files_cap;
  size_t stack[MAX_INCLUDE_DEPTH + 1]; /* c->files indexes being read */
  size_t depth;
  size_t total_bytes;
  bool in_main; /* applying the main file's top level */
  named_t *dests, *chans;
  size_t ndests, nchans, dests_cap, chans_cap;
  const char *where;             /* "in channel 'lab'": the section being applied */
  size_t kept_refs;              /* ${HL7-path} references the last cad__conf_expand() left */
  struct dest_ref *by_name;      /* c->dests sorted by name, for `to:` */
  const cad_yaml_node_t *tables; /* top-level `tables:` (main file), or NULL */
} loader_t;

typedef struct dest_ref {
  const char *name;
  size_t idx;
} dest_ref_t;

/* ---- the key tables -------------------------------------------------- */

/* A section is a key table (parsers/base/cad_conf.h): the engine's own
 * sections here, the channel kinds' in channels/.  Each key's type picks
 * its setter (setter_of in config_util.c); CAD_CONF_CUSTOM keys carry the
 * engine's own setter in a conf_custom_t. */
typedef cad_conf_key_t conf_key_t;
typedef cad_conf_section_t conf_section_t;
typedef cad_conf_enum_t enum_arg_t;

#define K_REQUIRED CAD_CONF_REQUIRED
#define K_MAIN_ONLY CAD_CONF_MAIN_ONLY
#define K_ZERO_OK CAD_CONF_ZERO_OK
#define K_INVERT CAD_CONF_INVERT
#define K_BOOL CAD_CONF_AS_BOOL

/* Apply value `v` (written after `key`; for a default, key is NULL) to the
 * field of `obj` that `k` names.  Problems are reported, never returned. */
typedef void (*conf_set_fn)(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                            const cad_yaml_node_t *v, void *obj);
typedef struct conf_custom {
  conf_set_fn fn;
} conf_custom_t;
/* A key the engine applies with its own setter (listen:, to:, include:, ...). */
#define CUSTOM_KEY(name, fn, flags, doc) \
  { name, CAD_CONF_CUSTOM, 0, flags, NULL, 0, 0, &(const conf_custom_t){fn}, doc }

/* One table applied to one struct; a mapping may be checked against several
 * at once (a destination: its type, its kind's keys, the delivery keys). */
typedef struct conf_part {
  const conf_section_t *sec;
  void *obj;
} conf_part_t;

#define FIELD(obj, k, type) ((type *)(void *)((char *)(obj) + (k)->off))

/* ---- shared functions (config_util.c unless said) ---- */

void cad__conf_err_pos(loader_t *L, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void cad__conf_err_at(loader_t *L, const cad_yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cad__conf_apply_section(loader_t *L, const conf_section_t *sec, const cad_yaml_node_t *key,
                             const cad_yaml_node_t *map, void *obj, const char *where);
void cad__conf_apply_parts(loader_t *L, const conf_part_t *parts, size_t nparts,
                           const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                           const char *where);
int cad__conf_dest_ref_cmp(const void *pa, const void *pb);
void cad__conf_add_raw(loader_t *L, const char *line);
const char *cad__conf_quote(char *out, const char *s, size_t len);
const char *cad__conf_describe(char *out, const cad_yaml_node_t *v);
cad_conf_pos_t cad__conf_pos_of(const cad_yaml_node_t *n);
bool cad__conf_grow(void **arr, size_t *cap, size_t need, size_t elem);
const cad_yaml_node_t *cad__conf_at(const cad_yaml_node_t *key, const cad_yaml_node_t *v);
char *cad__conf_scalar(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, const char *what);
char *cad__conf_resolve(loader_t *L, const char *file, char *s);
/* config_charset.c: a channel's `charset:` and a destination's `encoding:`
 * (character set names, parsers/hl7/hl7_charset.h). */
void cad__conf_set_charset(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                           const cad_yaml_node_t *v, void *obj);
void cad__conf_set_encoding(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                            const cad_yaml_node_t *v, void *obj);
void cad__conf_set_enum(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj);
/* A key written as one scalar or a list of them (listen:, to:, allow:,
 * include:, names): its items (*n; a single value is *one), or NULL after
 * reporting a mapping or nothing as "<key>: expected <what>, got ...". */
const cad_yaml_node_t *const *cad__conf_list(loader_t *L, const conf_key_t *k,
                                             const cad_yaml_node_t *key, const cad_yaml_node_t *v,
                                             const char *what, size_t *n,
                                             const cad_yaml_node_t **one);
/* config_dests.c: check one destination with its kind's table. */
void cad__conf_apply_dest(loader_t *L, cad_conf_dest_t *d, const named_t *e);
/* config_channels.c */
void cad__conf_apply_channel(loader_t *L, cad_conf_channel_t *ch, const named_t *e,
                             const char *where);
void cad__conf_check_listen_conflicts(loader_t *L);
const cad_yaml_node_t *cad__conf_check_tests(loader_t *L, const cad_yaml_node_t *tests);

/* config_archive.c: `index:` of engine.archive and of a channel's
 * `archive:` (a cad_conf_arch_index_t at the key's offset), its free, and
 * the channel's `archive:` section (a cad_conf_chan_archive_t). */
void cad__conf_set_arch_index(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                              const cad_yaml_node_t *v, void *obj);
void cad__conf_arch_index_free(cad_conf_arch_index_t *ix);
extern const conf_section_t cad__conf_chan_archive;

/* config_admin.c: the top-level `admin:` */
void cad__conf_set_admin(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj);
void cad__conf_admin_free(cad_conf_admin_t *a);
/* config_fhir.c: the top-level `fhir:` */
void cad__conf_set_fhir(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj);
void cad__conf_fhir_free(cad_conf_fhir_t *f);

/* config_kafkapg.c: the key tables of `type: kafka`, `type: postgres` and a
 * channel's `listen_kafka:`, and what they own. */
extern const conf_section_t cad__conf_kafka_dest, cad__conf_pg_dest, cad__conf_kafka_src;
void cad__conf_kafkapg_free_dest(cad_conf_dest_t *d);
void cad__conf_kafkapg_free_channel(cad_conf_channel_t *ch);

#endif
