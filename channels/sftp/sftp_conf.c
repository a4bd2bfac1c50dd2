/* sftp_conf.c - the key tables of SFTP (sftp_conf.h). */
#include "sftp_conf.h"

#include "file_conf.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CONN_KEYS(T)                                                                           \
  {"host",                                                                                     \
   CAD_CONF_HOST,                                                                              \
   offsetof(T, conn.host),                                                                     \
   CAD_CONF_REQUIRED,                                                                          \
   NULL,                                                                                       \
   0,                                                                                          \
   0,                                                                                          \
   NULL,                                                                                       \
   "the SFTP server, a DNS name or an address"},                                               \
      {"port", CAD_CONF_INT, offsetof(T, conn.port), 0, "22", 1, 65535, NULL, "the SSH port"}, \
      {"user", CAD_CONF_TEXT, offsetof(T, conn.user), CAD_CONF_REQUIRED, NULL, 0,              \
       0,      NULL,          "the SSH user"},                                                 \
      {"known_hosts",                                                                          \
       CAD_CONF_FILE,                                                                          \
       offsetof(T, conn.known_hosts),                                                          \
       CAD_CONF_REQUIRED,                                                                      \
       NULL,                                                                                   \
       0,                                                                                      \
       0,                                                                                      \
       NULL,                                                                                   \
       "the known_hosts file that holds the server's key (host keys are always checked)"},     \
      {"key", CAD_CONF_FILE, offsetof(T, conn.key),                                            \
       0,     NULL,          0,                                                                \
       0,     NULL,          "a private key file to log in with"},                             \
      {"passphrase_env",                                                                       \
       CAD_CONF_TEXT,                                                                          \
       offsetof(T, conn.passphrase_env),                                                       \
       0,                                                                                      \
       NULL,                                                                                   \
       0,                                                                                      \
       0,                                                                                      \
       NULL,                                                                                   \
       "the environment variable holding the key's passphrase"},                               \
      {"password_env",                                                                         \
       CAD_CONF_TEXT,                                                                          \
       offsetof(T, conn.password_env),                                                         \
       0,                                                                                      \
       NULL,                                                                                   \
       0,                                                                                      \
       0,                                                                                      \
       NULL,                                                                                   \
       "the environment variable holding the password"},                                       \
  {                                                                                            \
    "timeout", CAD_CONF_DURATION, offsetof(T, conn.timeout_ms), 0, "30s", 1000, 600000, NULL,  \
        "how long to wait for the server"                                                      \
  }

static void check_conn(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *map, const cad_conf_section_t *sec,
                       const bool *seen) {
  bool k = cad_conf_seen(sec, seen, "key"), p = cad_conf_seen(sec, seen, "password_env");
  if (!k && !p)
    cad_conf_errf(r, key,
                  "missing 'key' or 'password_env' %s (a private key file, or the environment "
                  "variable that holds the password)",
                  r->where);
  else if (k && p)
    cad_conf_errf(r, cad_conf_key_node(map, "password_env"),
                  "'key' and 'password_env' cannot both be set %s: choose one way to log in",
                  r->where);
}

static void check_dest(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *map, void *obj, const bool *seen) {
  cad_sftp_dest_opts_t *o = obj;
  check_conn(r, key, map, &cad_sftp_dest_conf, seen);
  bool batch = cad_conf_seen(&cad_sftp_dest_conf, seen, "batch"),
       stage = cad_conf_seen(&cad_sftp_dest_conf, seen, "stage_dir");
  if (batch && !stage)
    cad_conf_errf(r, cad_conf_key_node(map, "batch"),
                  "'batch' needs 'stage_dir' %s (the local folder where batch files are made "
                  "before they are uploaded)",
                  r->where);
  else if (stage && !batch)
    cad_conf_errf(r, cad_conf_key_node(map, "stage_dir"),
                  "'stage_dir' applies only with 'batch' %s", r->where);
  if (!o->name_tmpl && !cad_conf_seen(&cad_sftp_dest_conf, seen, "name")) {
    char *def = strdup("${MSH-10}.hl7"); /* owned by the configuration */
    if (!def) *r->nomem = true;
    o->name_tmpl = def;
  }
}

static const cad_conf_key_t dest_keys[] = {
    CONN_KEYS(cad_sftp_dest_opts_t),
    {"dir", CAD_CONF_TEXT, offsetof(cad_sftp_dest_opts_t, dir), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the remote folder files are written to"},
    {"name", CAD_CONF_TEMPLATE, offsetof(cad_sftp_dest_opts_t, name_tmpl), 0, NULL, 0, 0, NULL,
     "the file name template, default \"${MSH-10}.hl7\""},
    {"mode", CAD_CONF_MODE, offsetof(cad_sftp_dest_opts_t, mode), 0, "0600", 0, 0, NULL,
     "permissions of the files it creates"},
    {"batch", CAD_CONF_SECTION, offsetof(cad_sftp_dest_opts_t, batch),
     CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0, &cad_file_batch_conf,
     "collect messages into HL7 batch files (FHS/BHS ... BTS/FTS) before upload"},
    {"stage_dir", CAD_CONF_PATH, offsetof(cad_sftp_dest_opts_t, stage_dir), 0, NULL, 0, 0, NULL,
     "with batch: the local folder where batch files are made"},
};

const cad_conf_section_t cad_sftp_dest_conf = {"destination", dest_keys, CAD_CONF_NKEYS(dest_keys),
                                               check_dest};

static const char *const afters[] = {"delete", "move", NULL};
static const cad_conf_enum_t after_arg = {afters, 0, "delete or move"};
static const char *const formats[] = {"auto", "er7", "mllp", NULL};
static const cad_conf_enum_t format_arg = {formats, 0, "auto, er7 or mllp"};

static void check_source(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *map, void *obj, const bool *seen) {
  cad_sftp_source_opts_t *o = obj;
  check_conn(r, key, map, &cad_sftp_source_conf, seen);
  if (o->after == CAD_SFTP_AFTER_MOVE && !o->move_to)
    cad_conf_errf(r, cad_conf_key_node(map, "after"),
                  "'after: move' needs 'move_to' %s (the remote folder files are moved to)",
                  r->where);
  else if (o->after != CAD_SFTP_AFTER_MOVE && o->move_to)
    cad_conf_errf(r, cad_conf_key_node(map, "move_to"),
                  "'move_to' applies only with 'after: move' %s", r->where);
}

#define SRC(f) offsetof(cad_sftp_source_opts_t, f)
static const cad_conf_key_t source_keys[] = {
    CONN_KEYS(cad_sftp_source_opts_t),
    {"dir", CAD_CONF_TEXT, SRC(dir), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the remote folder to poll"},
    {"pattern", CAD_CONF_TEXT, SRC(pattern), 0, "*", 0, 0, NULL,
     "a glob the file names must match, like \"*.hl7\""},
    {"poll", CAD_CONF_DURATION, SRC(poll_ms), 0, "30s", 100, 86400000, NULL,
     "how often the remote folder is listed"},
    {"after", CAD_CONF_ENUM, SRC(after), 0, "delete", 0, 0, &after_arg,
     "what happens to a remote file once it is safe here: delete or move"},
    {"move_to", CAD_CONF_TEXT, SRC(move_to), 0, NULL, 0, 0, NULL,
     "with after: move, the remote folder files go to"},
    {"spool", CAD_CONF_PATH, SRC(spool), 0, NULL, 0, 0, NULL,
     "the local folder for the copies (default <data_dir>/sftp/<channel>)"},
    {"format", CAD_CONF_ENUM, SRC(format), 0, "auto", 0, 0, &format_arg, "auto, er7 or mllp"},
};

const cad_conf_section_t cad_sftp_source_conf = {"listen_sftp", source_keys,
                                                 CAD_CONF_NKEYS(source_keys), check_source};
