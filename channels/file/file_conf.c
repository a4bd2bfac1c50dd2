/* file_conf.c - the key table of a file destination (file_conf.h). */
#include "file_conf.h"

#include <stdlib.h>
#include <string.h>

static void check_file_dest(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                            const cad_yaml_node_t *map, void *obj, const bool *seen) {
  cad_file_dest_opts_t *o = obj;
  bool dir = cad_conf_seen(&cad_file_dest_conf, seen, "dir"),
       app = cad_conf_seen(&cad_file_dest_conf, seen, "append"),
       name = cad_conf_seen(&cad_file_dest_conf, seen, "name");
  if (!dir && !app) {
    cad_conf_errf(r, key,
                  "missing 'dir' or 'append' %s (dir: one file per message in a directory; "
                  "append: every message appended to one file)",
                  r->where);
  } else if (dir && app) {
    const cad_yaml_node_t *d = cad_conf_key_node(map, "dir"), *a = cad_conf_key_node(map, "append");
    const cad_yaml_node_t *second =
        (d->line > a->line || (d->line == a->line && d->col > a->col)) ? d : a;
    cad_conf_errf(r, second,
                  "'dir' and 'append' cannot both be set %s: choose one file per message "
                  "(dir) or one file for all (append)",
                  r->where);
  } else if (app && name) {
    cad_conf_errf(r, cad_conf_key_node(map, "name"),
                  "'name' applies only with 'dir' (one file per message), not with 'append' %s",
                  r->where);
  }
  if (app && cad_conf_seen(&cad_file_dest_conf, seen, "batch"))
    cad_conf_errf(r, cad_conf_key_node(map, "batch"),
                  "'batch' applies only with 'dir' (batch files in a folder), not with 'append' %s",
                  r->where);
  if (o->dir && !o->name_tmpl && !name) {
    char *def = strdup("${MSH-10}.hl7"); /* owned by the configuration */
    if (!def) *r->nomem = true;
    o->name_tmpl = def;
  }
}

#define B(f) offsetof(cad_file_batch_opts_t, f)
static const cad_conf_key_t batch_keys[] = {
    {"max_messages", CAD_CONF_U32, B(max_messages), 0, "1000", 1, 10000000, NULL,
     "messages in one batch file at most"},
    {"max_bytes", CAD_CONF_SIZE, B(max_bytes), 0, "10MiB", 1024, (uint64_t)1 << 40, NULL,
     "bytes of messages in one batch file at most"},
    {"max_age", CAD_CONF_DURATION, B(max_age_ms), 0, "1m", 10, 86400000, NULL,
     "how long the first message of a batch may wait"},
    {"name", CAD_CONF_TEXT, B(name), 0, "batch_%Y%m%d_%H%M%S.hl7", 0, 0, NULL,
     "the batch file name, strftime in UTC (a taken name gets ~2, ~3...)"},
};
const cad_conf_section_t cad_file_batch_conf = {"batch", batch_keys, CAD_CONF_NKEYS(batch_keys),
                                                NULL};

static const cad_conf_key_t file_keys[] = {
    {"dir", CAD_CONF_PATH, offsetof(cad_file_dest_opts_t, dir), 0, NULL, 0, 0, NULL,
     "the directory for one file per message"},
    {"append", CAD_CONF_PATH, offsetof(cad_file_dest_opts_t, append_path), 0, NULL, 0, 0, NULL,
     "the one file every message is appended to"},
    {"name", CAD_CONF_TEMPLATE, offsetof(cad_file_dest_opts_t, name_tmpl), 0, NULL, 0, 0, NULL,
     "the file name template, default \"${MSH-10}.hl7\""},
    {"mode", CAD_CONF_MODE, offsetof(cad_file_dest_opts_t, mode), 0, "0600", 0, 0, NULL,
     "permissions of the files it creates"},
    {"dir_mode", CAD_CONF_MODE, offsetof(cad_file_dest_opts_t, dir_mode), 0, "0700", 0, 0, NULL,
     "permissions of the directories it creates"},
    {"batch", CAD_CONF_SECTION, offsetof(cad_file_dest_opts_t, batch),
     CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0, &cad_file_batch_conf,
     "collect messages into HL7 batch files (FHS/BHS ... BTS/FTS)"},
};

const cad_conf_section_t cad_file_dest_conf = {"destination", file_keys, CAD_CONF_NKEYS(file_keys),
                                               check_file_dest};
