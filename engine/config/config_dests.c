/* config_dests.c - destinations: one key table per kind (file, mllp), the
 * TLS client settings of an MLLP destination, and the registry that picks a
 * kind's table from `type:` (dest_kinds: a new kind is one line there).
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cad_error.h"
#include "cad_io.h"
#include "cad_mem.h"
#include "file_conf.h"
#include "hl7.h"
#include "http_conf.h"
#include "lanes.h"
#include "mllp_conf.h"
#include "sftp_conf.h"

/* ---- destinations ---------------------------------------------------- */

/* The kinds of destination: one line each, its `type:` value, its key table
 * (declared by the channel kind in channels/<kind>/<kind>_conf.h) and where
 * its struct lives in cad_conf_dest_t.  A new kind: its folder in
 * channels/, a line here, a field and a CAD_DEST_ value in config.h, and
 * its driver in the runtime. */
typedef struct dest_kind {
  const char *name;
  cad_dest_type_t type;
  const conf_section_t *sec;
  size_t off;
} dest_kind_t;

static const dest_kind_t dest_kinds[] = {
    {"file", CAD_DEST_FILE, &cad_file_dest_conf, offsetof(cad_conf_dest_t, file)},
    {"mllp", CAD_DEST_MLLP, &cad_mllp_dest_conf, offsetof(cad_conf_dest_t, mllp)},
    {"sftp", CAD_DEST_SFTP, &cad_sftp_dest_conf, offsetof(cad_conf_dest_t, sftp)},
    {"kafka", CAD_DEST_KAFKA, &cad__conf_kafka_dest, offsetof(cad_conf_dest_t, kafka)},
    {"postgres", CAD_DEST_POSTGRES, &cad__conf_pg_dest, offsetof(cad_conf_dest_t, postgres)},
    {"http", CAD_DEST_HTTP, &cad_http_dest_conf, offsetof(cad_conf_dest_t, http)},
};
#define NKINDS (sizeof dest_kinds / sizeof dest_kinds[0])

static const char *const dest_types[] = {"file", "mllp", "sftp", "kafka", "postgres", "http", NULL};
static const enum_arg_t dest_type_arg = {dest_types, CAD_DEST_FILE,
                                         "file, mllp, sftp, kafka, postgres or http"};
_Static_assert(sizeof dest_types / sizeof dest_types[0] == NKINDS + 1, "one name per kind");

static const conf_key_t type_keys[] = {
    {"type", CAD_CONF_ENUM, offsetof(cad_conf_dest_t, type), K_REQUIRED, NULL, 0, 0, &dest_type_arg,
     "one of: file, mllp, sftp, kafka, postgres or http"},
};
static const conf_section_t type_section = {"destination", type_keys, 1, NULL};

/* Delivery keys every destination type has (appended to each type's table). */
static const char *const on_failures[] = {"block", "dead_letter", NULL};
static const enum_arg_t on_failure_arg = {on_failures, CAD_ON_FAILURE_BLOCK,
                                          "block or dead_letter"};

static const conf_key_t retry_keys[] = {
    {"initial", CAD_CONF_DURATION, offsetof(cad_conf_dest_t, retry_initial_ms), 0, "1s", 10, MS_DAY,
     NULL, "the first wait before a retry"},
    {"max", CAD_CONF_DURATION, offsetof(cad_conf_dest_t, retry_max_ms), 0, "60s", 10, MS_DAY, NULL,
     "the longest wait between retries"},
    {"attempts", CAD_CONF_U32, offsetof(cad_conf_dest_t, retry_attempts), 0, "10", 1, 1000000, NULL,
     "attempts before on_failure applies"},
};
static const conf_section_t retry_section = {"retry", retry_keys,
                                             sizeof retry_keys / sizeof retry_keys[0], NULL};

/* order_by: one HL7 path or a template of several, checked here
 * (engine/runtime/lanes.h compiles it again when the destination opens). */
static void set_order_by(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj) {
  char *s = cad__conf_scalar(
      L, k, key, v, "an HL7 path like PID-3.1 or a template like \"${PID-3.1}^${PID-3.4}\"");
  if (!s) return;
  cad_lanekey_t *lk = NULL;
  char err[160] = "";
  size_t at = 0;
  int rc = cad_lanekey_compile(s, &lk, err, sizeof err, &at);
  cad_lanekey_free(lk);
  if (rc == CAD_E_NOMEM) L->nomem = true;
  if (rc) {
    if (rc != CAD_E_NOMEM)
      cad__conf_err_at(L, v,
                       "order_by: %s (at byte %zu); expected an HL7 path like PID-3.1 or a "
                       "template like \"${PID-3.1}^${PID-3.4}\"",
                       err, at);
    free(s);
    return;
  }
  cad_conf_dest_t *d = obj;
  free(d->order_by);
  d->order_by = s;
}
/* What `encoding:` does with a character the set cannot hold (hl7_charset.h). */
static const char *const unrep_names[] = {"reject", "replace", "escape", NULL};
static const enum_arg_t unrepresentable_arg = {unrep_names, 0, "reject, replace or escape"};

/* Keys every destination has, whatever its kind (the engine's delivery). */
static const char *const formats[] = {"er7", "fhir", "json", "xml", NULL};
static const enum_arg_t format_arg = {formats, CAD_FORMAT_ER7, "er7, fhir, json or xml"};

static const conf_key_t delivery_keys[] = {
    {"format", CAD_CONF_ENUM, offsetof(cad_conf_dest_t, format), 0, "er7", 0, 0, &format_arg,
     "what is delivered: er7 (the message), fhir (a FHIR R4 Bundle), json or xml"},
    {"retry", CAD_CONF_SECTION, 0, 0, NULL, 0, 0, &retry_section,
     "retries with exponential backoff"},
    {"on_failure", CAD_CONF_ENUM, offsetof(cad_conf_dest_t, on_failure), 0, "block", 0, 0,
     &on_failure_arg, "block or dead_letter"},
    {"max_backlog", CAD_CONF_U64, offsetof(cad_conf_dest_t, max_backlog), K_ZERO_OK, "0", 1,
     (uint64_t)1 << 40, NULL, "messages allowed to wait (0 = no limit)"},
    {"lanes", CAD_CONF_U32, offsetof(cad_conf_dest_t, lanes), 0, "1", 1, CAD_LANES_MAX, NULL,
     "FIFOs delivered in parallel, a message's lane chosen by order_by"},
    CUSTOM_KEY("order_by", set_order_by, 0,
               "the key whose messages stay in order (an HL7 path or a template)"),
    CUSTOM_KEY("encoding", cad__conf_set_encoding, 0,
               "the character set this destination requires, like 8859/1 or UNICODE UTF-8"),
    {"unrepresentable", CAD_CONF_ENUM, offsetof(cad_conf_dest_t, unrepresentable), 0, "reject", 0,
     0, &unrepresentable_arg, "reject, replace or escape"},
};
static const conf_section_t delivery_section = {"destination", delivery_keys,
                                                CAD_CONF_NKEYS(delivery_keys), NULL};

/* lanes and order_by go together; one append file has no lanes. */
static void check_lanes(loader_t *L, const cad_conf_dest_t *d, const named_t *e) {
  if (d->lanes <= 1) return;
  const cad_yaml_node_t *at = cad_yaml_get(e->val, "lanes");
  if (!d->order_by)
    cad__conf_err_at(L, at ? at : e->key,
                     "in destination '%s': lanes: %u needs order_by (the key whose messages stay "
                     "in order, like PID-3.1); without it the destination is one FIFO",
                     d->name, d->lanes);
  else if (d->type == CAD_DEST_FILE && d->file.append_path)
    cad__conf_err_at(L, at ? at : e->key,
                     "in destination '%s': lanes need one file per message ('dir'); an 'append' "
                     "file is written by one writer",
                     d->name);
}

/* A destination's block: `type` first (it chooses the kind), then the
 * kind's keys and the delivery keys, checked as one mapping. */
void cad__conf_apply_dest(loader_t *L, cad_conf_dest_t *d, const named_t *e) {
  char where[160];
  snprintf(where, sizeof where, "in destination '%s'", d->name);
  const cad_yaml_node_t *map = e->val;
  if (map->type != CAD_YAML_MAPPING) {
    cad__conf_apply_section(L, &type_section, e->key, map, d, where); /* reports the type */
    return;
  }
  const cad_yaml_node_t *tv = cad_yaml_get(map, "type");
  if (!tv) {
    cad__conf_err_at(L, e->key, "missing 'type' %s (one of: %s)", where, dest_type_arg.doc);
    return;
  }
  const char *saved = L->where;
  L->where = where;
  d->type = 0;
  cad__conf_set_enum(L, &type_keys[0], NULL, tv, d);
  L->where = saved;
  for (size_t i = 0; i < NKINDS; i++) {
    if (dest_kinds[i].type != d->type) continue;
    conf_part_t parts[] = {{&type_section, d},
                           {dest_kinds[i].sec, (char *)d + dest_kinds[i].off},
                           {&delivery_section, d}};
    cad__conf_apply_parts(L, parts, 3, e->key, map, where);
  }
  check_lanes(L, d, e);
}
