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
#include "hl7.h"

/* ---- destinations ---------------------------------------------------- */

static const char *const dest_types[] = {"file", "mllp", NULL};
static const enum_arg_t dest_type_arg = {dest_types, CAD_DEST_FILE, "file or mllp"};

static void check_file_dest(loader_t *L, const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                            void *obj, const bool *seen) {
  cad_conf_dest_t *d = obj;
  /* indexes in file_dest_keys: 1 dir, 2 append, 3 name */
  if (!seen[1] && !seen[2]) {
    cad__conf_err_at(L, key,
                     "missing 'dir' or 'append' %s (dir: one file per message in a directory; "
                     "append: every message appended to one file)",
                     L->where);
  } else if (seen[1] && seen[2]) {
    const cad_yaml_node_t *dir = NULL, *app = NULL;
    for (size_t i = 0; i < map->n; i++) {
      if (strcmp(map->pairs[i].key->str, "dir") == 0) dir = map->pairs[i].key;
      if (strcmp(map->pairs[i].key->str, "append") == 0) app = map->pairs[i].key;
    }
    const cad_yaml_node_t *second =
        (dir->line > app->line || (dir->line == app->line && dir->col > app->col)) ? dir : app;
    cad__conf_err_at(L, second,
                     "'dir' and 'append' cannot both be set %s: choose one file per message "
                     "(dir) or one file for all (append)",
                     L->where);
  } else if (seen[2] && seen[3]) {
    const cad_yaml_node_t *nm = NULL;
    for (size_t i = 0; i < map->n; i++)
      if (strcmp(map->pairs[i].key->str, "name") == 0) nm = map->pairs[i].key;
    cad__conf_err_at(L, nm,
                     "'name' applies only with 'dir' (one file per message), not with 'append' %s",
                     L->where);
  }
  if (d->file.dir && !d->file.name_tmpl && !seen[3]) {
    d->file.name_tmpl = strdup("${MSH-10}.hl7");
    if (!d->file.name_tmpl) L->nomem = true;
  }
}

/* Delivery keys every destination type has (appended to each type's table). */
static const char *const on_failures[] = {"block", "dead_letter", NULL};
static const enum_arg_t on_failure_arg = {on_failures, CAD_ON_FAILURE_BLOCK,
                                          "block or dead_letter"};

static const conf_key_t retry_keys[] = {
    {"initial", cad__conf_set_duration, offsetof(cad_conf_dest_t, retry_initial_ms), 0, "1s", 10,
     MS_DAY, NULL, "the first wait before a retry"},
    {"max", cad__conf_set_duration, offsetof(cad_conf_dest_t, retry_max_ms), 0, "60s", 10, MS_DAY,
     NULL, "the longest wait between retries"},
    {"attempts", cad__conf_set_u32, offsetof(cad_conf_dest_t, retry_attempts), 0, "10", 1, 1000000,
     NULL, "attempts before on_failure applies"},
};
static const conf_section_t retry_section = {"retry", retry_keys,
                                             sizeof retry_keys / sizeof retry_keys[0], NULL};

#define DELIVERY_KEYS                                                                            \
  {"retry",                                                                                      \
   cad__conf_set_section,                                                                        \
   0,                                                                                            \
   0,                                                                                            \
   NULL,                                                                                         \
   0,                                                                                            \
   0,                                                                                            \
   &retry_section,                                                                               \
   "retries with exponential backoff"},                                                          \
      {"on_failure",                                                                             \
       cad__conf_set_enum,                                                                       \
       offsetof(cad_conf_dest_t, on_failure),                                                    \
       0,                                                                                        \
       "block",                                                                                  \
       0,                                                                                        \
       0,                                                                                        \
       &on_failure_arg,                                                                          \
       "block or dead_letter"},                                                                  \
  {                                                                                              \
    "max_backlog", cad__conf_set_u32_64, offsetof(cad_conf_dest_t, max_backlog), K_ZERO_OK, "0", \
        1, (uint64_t)1 << 40, NULL, "messages allowed to wait (0 = no limit)"                    \
  }

/* Permission bits in octal ("0640", "640"): 0 to 0777. */
static void set_mode(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                     const cad_yaml_node_t *v, void *obj) {
  char *s = cad__conf_scalar(L, k, key, v, "permission bits in octal, like 0640");
  if (!s) return;
  uint32_t x = 0;
  bool ok = *s != 0 && strlen(s) <= 4;
  for (const char *p = s; *p && ok; p++) {
    if (*p < '0' || *p > '7') ok = false;
    else x = x * 8 + (uint32_t)(*p - '0');
  }
  char q[QBUF];
  if (!ok || x > 0777)
    cad__conf_err_at(L, v,
                     "%s: expected permission bits in octal from 0000 to 0777, like 0640, got '%s'",
                     k->name, cad__conf_quote(q, s, strlen(s)));
  else *FIELD(obj, k, uint32_t) = x;
  free(s);
}

static const conf_key_t file_dest_keys[] = {
    {"type", cad__conf_set_enum, offsetof(cad_conf_dest_t, type), K_REQUIRED, NULL, 0, 0,
     &dest_type_arg, "one of: file or mllp"},
    {"dir", cad__conf_set_path, offsetof(cad_conf_dest_t, file.dir), 0, NULL, 0, 0, NULL,
     "the directory for one file per message"},
    {"append", cad__conf_set_path, offsetof(cad_conf_dest_t, file.append_path), 0, NULL, 0, 0, NULL,
     "the one file every message is appended to"},
    {"name", cad__conf_set_template, offsetof(cad_conf_dest_t, file.name_tmpl), 0, NULL, 0, 0, NULL,
     "the file name template, default \"${MSH-10}.hl7\""},
    {"mode", set_mode, offsetof(cad_conf_dest_t, file.mode), 0, "0600", 0, 0, NULL,
     "permissions of the files it creates"},
    {"dir_mode", set_mode, offsetof(cad_conf_dest_t, file.dir_mode), 0, "0700", 0, 0, NULL,
     "permissions of the directories it creates"},
    DELIVERY_KEYS,
};
static const conf_section_t file_dest_section = {"destination", file_dest_keys,
                                                 sizeof file_dest_keys / sizeof file_dest_keys[0],
                                                 check_file_dest};

/* ---- MLLP destinations (type: mllp) and TLS settings ------------------ */

static void check_tls_client(loader_t *L, const cad_yaml_node_t *key, const cad_yaml_node_t *map,
                             void *obj, const bool *seen) {
  (void)key;
  (void)obj;
  /* indexes in tls_client_keys: 1 cert, 2 key */
  if (seen[1] != seen[2])
    cad__conf_err_at(L, cad__conf_key_node(map, seen[1] ? "cert" : "key"),
                     "'cert' and 'key' go together %s: a client certificate needs its key",
                     L->where);
}

static const conf_key_t tls_client_keys[] = {
    {"ca", cad__conf_set_file, offsetof(cad_conf_dest_t, tls.opts.ca_file), 0, NULL, 0, 0, NULL,
     "the CAs the receiver's certificate must chain to (default: the system's)"},
    {"cert", cad__conf_set_file, offsetof(cad_conf_dest_t, tls.opts.cert_file), 0, NULL, 0, 0, NULL,
     "our client certificate, for receivers that ask for one"},
    {"key", cad__conf_set_file, offsetof(cad_conf_dest_t, tls.opts.key_file), 0, NULL, 0, 0, NULL,
     "the key of the client certificate"},
    {"verify_hostname", cad__conf_set_flag, offsetof(cad_conf_dest_t, mllp.verify_hostname), 0,
     "true", 0, 0, NULL, "check that the receiver's certificate names the host"},
    {"server_name", cad__conf_set_host, offsetof(cad_conf_dest_t, mllp.server_name), 0, NULL, 0, 0,
     NULL, "the name to verify and send (SNI), default the host"},
};
static const conf_section_t tls_client_section = {
    "tls", tls_client_keys, sizeof tls_client_keys / sizeof tls_client_keys[0], check_tls_client};

/* `tls:` of a destination: present means TLS (`tls: {}` takes every default). */
static void set_tls_client(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                           const cad_yaml_node_t *v, void *obj) {
  ((cad_conf_dest_t *)obj)->tls.enabled = true;
  cad__conf_set_section(L, k, key, v, obj);
}

static const char *const nak_actions[] = {"retry", "dead_letter", NULL};
/* Stored as the sender's bool: dead_letter = true (K_BOOL). */
static const enum_arg_t nak_action_arg = {nak_actions, 0, "retry or dead_letter"};

static const conf_key_t mllp_dest_keys[] = {
    {"type", cad__conf_set_enum, offsetof(cad_conf_dest_t, type), K_REQUIRED, NULL, 0, 0,
     &dest_type_arg, "one of: file or mllp"},
    {"host", cad__conf_set_host, offsetof(cad_conf_dest_t, mllp.host), K_REQUIRED, NULL, 0, 0, NULL,
     "the receiver's host name or IP address"},
    {"port", cad__conf_set_int, offsetof(cad_conf_dest_t, mllp.port), K_REQUIRED, NULL, 1, 65535,
     NULL, "the receiver's port"},
    {"persistent", cad__conf_set_flag, offsetof(cad_conf_dest_t, mllp.per_message), K_INVERT,
     "true", 0, 0, NULL, "keep the connection open between messages"},
    {"connect_timeout", cad__conf_set_duration, offsetof(cad_conf_dest_t, mllp.connect_timeout_ms),
     0, "10s", 100, MS_HOUR, NULL,
     "the longest wait for a connection: DNS lookup, every address, TLS handshake"},
    {"ack_timeout", cad__conf_set_duration, offsetof(cad_conf_dest_t, mllp.ack_timeout_ms), 0,
     "30s", 100, MS_HOUR, NULL, "the longest wait for an ACK"},
    {"idle_close", cad__conf_set_duration, offsetof(cad_conf_dest_t, mllp.idle_close_ms), K_ZERO_OK,
     "0", MS_SECOND, 7 * MS_DAY, NULL, "close a connection unused this long"},
    {"on_ae", cad__conf_set_enum, offsetof(cad_conf_dest_t, mllp.ae_dead_letter), K_BOOL, "retry",
     0, 0, &nak_action_arg, "retry or dead_letter"},
    {"on_ar", cad__conf_set_enum, offsetof(cad_conf_dest_t, mllp.ar_dead_letter), K_BOOL,
     "dead_letter", 0, 0, &nak_action_arg, "retry or dead_letter"},
    {"new_control_id", cad__conf_set_flag, offsetof(cad_conf_dest_t, mllp.new_control_id), 0,
     "false", 0, 0, NULL, "a new MSH-10 for every attempt"},
    {"tls", set_tls_client, 0, 0, NULL, 0, 0, &tls_client_section, "MLLP over TLS"},
    DELIVERY_KEYS,
};
static const conf_section_t mllp_dest_section = {
    "destination", mllp_dest_keys, sizeof mllp_dest_keys / sizeof mllp_dest_keys[0], NULL};

/* One line per destination type: its `type:` value and its table. */
static const struct {
  cad_dest_type_t type;
  const conf_section_t *sec;
} dest_kinds[] = {
    {CAD_DEST_FILE, &file_dest_section},
    {CAD_DEST_MLLP, &mllp_dest_section},
};

void cad__conf_apply_dest(loader_t *L, cad_conf_dest_t *d, const named_t *e) {
  char where[160];
  snprintf(where, sizeof where, "in destination '%s'", d->name);
  const cad_yaml_node_t *map = e->val;
  if (map->type != CAD_YAML_MAPPING) {
    cad__conf_apply_section(L, &file_dest_section, e->key, map, d, where); /* reports the type */
    return;
  }
  const cad_yaml_node_t *tv = cad_yaml_get(map, "type");
  if (!tv) {
    cad__conf_err_at(L, e->key, "missing 'type' %s (one of: %s)", where, dest_type_arg.doc);
    return;
  }
  /* Apply `type` alone first: it chooses the table for the other keys. */
  const char *saved = L->where;
  L->where = where;
  cad__conf_set_enum(L, &file_dest_keys[0], NULL, tv, d);
  L->where = saved;
  for (size_t i = 0; i < sizeof dest_kinds / sizeof dest_kinds[0]; i++)
    if (dest_kinds[i].type == d->type)
      cad__conf_apply_section(L, dest_kinds[i].sec, e->key, map, d, where);
}
