/* config_load.c - load, check and model the YAML configuration (see config.h).
 *
 * How it works:
 *   1. Each file is read into a tree (parsers/base/yaml_doc.h).  The top level is
 *      checked against `top_keys`; `include:` loads other files on the spot,
 *      and the entries of `destinations:` and `channels:` of every file are
 *      collected by name (a name defined twice is an error).
 *   2. Then every destination, then every channel (whose `to:` may name a
 *      destination of any file) is checked against its table of keys.
 *   3. Rules that span channels (a listen address used twice) come last.
 *
 * A section of the configuration is a table of conf_key_t, in the spirit of
 * nginx's command tables: a key's name, its setter, where the setter stores
 * the value (offsetof), whether it is required, its default written as YAML
 * would write it, and its range.  A new key is one line in a table; a new
 * section is a table and a setter that applies it (routes will be one).
 *
 * Every problem becomes one line "file:line:column: message" in an error
 * buffer; loading goes on after an error so that one run shows them all (up
 * to MAX_ERRORS).  The pieces live in the files config_int.h lists.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "cad_error.h"
#include "cad_io.h"
#include "cad_mem.h"
#include "hl7.h"
#include "mllp_listener.h"

/* ---- engine ---------------------------------------------------------- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const enum_arg_t log_level_arg = {log_levels, CAD_LOG_DEBUG, "debug, info, warn or error"};
static const char *const log_formats[] = {"kv", "json", NULL};
static const enum_arg_t log_format_arg = {log_formats, CAD_LOG_KV, "kv or json"};

static const conf_key_t queue_keys[] = {
    {"segment_size", CAD_CONF_SIZE, offsetof(cad_config_t, queue_segment_bytes), 0, "64MiB",
     (uint64_t)1 << 16, (uint64_t)1 << 32, NULL, "the size of one journal segment file"},
    {"retain", CAD_CONF_DURATION, offsetof(cad_config_t, queue_retain_ms), 0, "7d", MS_SECOND,
     3650 * MS_DAY, NULL, "how long delivered messages are kept as an archive"},
    {"retain_size", CAD_CONF_SIZE, offsetof(cad_config_t, queue_retain_bytes), K_ZERO_OK, "0",
     (uint64_t)1 << 20, (uint64_t)1 << 50, NULL,
     "the most bytes of delivered messages kept (0 = no limit)"},
    {"max_pending", CAD_CONF_SIZE, offsetof(cad_config_t, queue_max_pending), 0, "64MiB",
     (uint64_t)1 << 20, (uint64_t)1 << 34, NULL, "bytes waiting to be written to disk"},
};
static const conf_section_t queue_section = {"queue", queue_keys,
                                             sizeof queue_keys / sizeof queue_keys[0], NULL};

static const conf_key_t archive_keys[] = {
    {"enabled", CAD_CONF_FLAG, offsetof(cad_config_t, archive_enabled), 0, "true", 0, 0, NULL,
     "record every message and delivery in data_dir/archive (caduceus search/show)"},
    {"retain", CAD_CONF_DURATION, offsetof(cad_config_t, archive_retain_ms), 0, "7d", MS_DAY,
     3650 * MS_DAY, NULL, "keep whole days of the archive this long"},
    {"max_bytes", CAD_CONF_SIZE, offsetof(cad_config_t, archive_max_bytes), K_ZERO_OK, "0",
     (uint64_t)1 << 20, (uint64_t)1 << 50, NULL,
     "delete the oldest days while the archive is larger (0 = no limit)"},
    {"index", CAD_CONF_CUSTOM, offsetof(cad_config_t, archive_index), 0, NULL, 0, 0,
     &(const conf_custom_t){cad__conf_set_arch_index},
     "HL7 paths every channel indexes for caduceus search --field, like [OBR-4.1, PV1-19]"},
    {"fts", CAD_CONF_FLAG, offsetof(cad_config_t, archive_fts), 0, "false", 0, 0, NULL,
     "full-text index of the bodies (caduceus search --text)"},
};
static const conf_section_t archive_section = {"archive", archive_keys,
                                               sizeof archive_keys / sizeof archive_keys[0], NULL};

static const conf_key_t engine_keys[] = {
    {"data_dir", CAD_CONF_PATH, offsetof(cad_config_t, data_dir), 0, "var/data", 0, 0, NULL,
     "the directory for the engine's state"},
    {"log_level", CAD_CONF_ENUM, offsetof(cad_config_t, log_level), 0, "info", 0, 0, &log_level_arg,
     "debug, info, warn or error"},
    {"log_format", CAD_CONF_ENUM, offsetof(cad_config_t, log_format), 0, "kv", 0, 0,
     &log_format_arg, "kv or json"},
    {"stats_interval", CAD_CONF_DURATION, offsetof(cad_config_t, stats_interval_ms), K_ZERO_OK,
     "60s", MS_SECOND, 7 * MS_DAY, NULL, "how often counters are logged"},
    {"max_inbound_buffer", CAD_CONF_SIZE, offsetof(cad_config_t, max_inbound_buffer), 0, "256MiB",
     (uint64_t)1 << 16, (uint64_t)1 << 40, NULL,
     "bytes all inbound connections together may hold in unfinished frames"},
    {"queue", CAD_CONF_SECTION, 0, 0, NULL, 0, 0, &queue_section, "the durable queue"},
    {"archive", CAD_CONF_SECTION, 0, 0, NULL, 0, 0, &archive_section, "the message archive"},
};
static const conf_section_t engine_section = {"engine", engine_keys,
                                              sizeof engine_keys / sizeof engine_keys[0], NULL};

/* ---- the top level and files ----------------------------------------- */

static void load_file(loader_t *L, const char *path, const cad_yaml_node_t *from);

static bool valid_name(const char *s, size_t n) {
  if (n == 0 || n > MAX_NAME_LEN) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-' || ch == '.'))
      return false;
  }
  return true;
}

static void collect(loader_t *L, const char *what, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, named_t **list, size_t *n, size_t *cap) {
  char d[QBUF + 2], q[QBUF];
  if (v->type != CAD_YAML_MAPPING) {
    if (cad_yaml_is_null(v)) return; /* "channels:" with nothing under it yet */
    cad__conf_err_at(L, v, "%s: expected a mapping of %s names to their settings, got %s", key->str,
                     what, cad__conf_describe(d, v));
    return;
  }
  for (size_t i = 0; i < v->n; i++) {
    const cad_yaml_node_t *kn = v->pairs[i].key;
    if (!valid_name(kn->str, kn->len)) {
      cad__conf_err_at(L, kn, "%s name '%s' must be 1 to %d letters, digits, '_', '-' or '.'", what,
                       cad__conf_quote(q, kn->str, kn->len), MAX_NAME_LEN);
      continue;
    }
    size_t j = 0;
    while (j < *n && strcmp((*list)[j].key->str, kn->str) != 0) j++;
    if (j < *n) {
      const cad_yaml_node_t *first = (*list)[j].key;
      cad__conf_err_at(L, kn, "%s '%s' is already defined (%s:%d:%d)", what, kn->str, first->file,
                       first->line, first->col);
      continue;
    }
    if (*n >= MAX_NAMED) {
      cad__conf_err_at(L, kn, "too many %ss (at most %d)", what, MAX_NAMED);
      return;
    }
    if (!cad__conf_grow((void **)list, cap, *n + 1, sizeof **list)) {
      L->nomem = true;
      return;
    }
    (*list)[(*n)++] = (named_t){kn, v->pairs[i].value};
  }
}

static void set_dests(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                      const cad_yaml_node_t *v, void *obj) {
  (void)k;
  (void)obj;
  collect(L, "destination", key, v, &L->dests, &L->ndests, &L->dests_cap);
}

static void set_channels(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj) {
  (void)k;
  (void)obj;
  collect(L, "channel", key, v, &L->chans, &L->nchans, &L->chans_cap);
}

static void set_include(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj) {
  (void)obj;
  if (L->flags & CAD_CONFIG_NO_INCLUDE) {
    cad__conf_err_at(L, key, "'include' is not allowed here");
    return;
  }
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items =
      cad__conf_list(L, k, key, v, "a file name or a list of them", &n, &one);
  if (!items) return;
  const char *cur = L->c->files[L->stack[L->depth - 1]];
  const char *slash = strrchr(cur, '/');
  size_t dirlen = slash ? (size_t)(slash - cur) + 1 : 0;
  for (size_t i = 0; i < n; i++) {
    char *s = cad__conf_scalar(L, k, NULL, items[i], "a file name");
    if (!s) continue;
    if (*s == 0) {
      cad__conf_err_at(L, items[i], "include: expected a file name, got an empty string");
      free(s);
      continue;
    }
    cad_buf_t path = CAD_BUF_INIT;
    int rc = 0;
    if (s[0] != '/') rc = cad_buf_append(&path, cur, dirlen);
    if (rc == 0) rc = cad_buf_puts(&path, s);
    const char *p = rc == 0 ? cad_buf_cstr(&path) : NULL;
    if (p) load_file(L, p, items[i]);
    else L->nomem = true;
    cad_buf_free(&path);
    free(s);
  }
}

static void set_tables(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  (void)k, (void)key, (void)obj;
  L->tables = v; /* loaded in build(), relative to the main file */
}

static const conf_key_t top_keys[] = {
    CUSTOM_KEY("include", set_include, 0, "other files to read"),
    {"engine", CAD_CONF_SECTION, 0, K_MAIN_ONLY, NULL, 0, 0, &engine_section, "engine settings"},
    CUSTOM_KEY("destinations", set_dests, 0, "where messages are written"),
    CUSTOM_KEY("channels", set_channels, 0, "where messages come in"),
    CUSTOM_KEY("tables", set_tables, K_MAIN_ONLY, "lookup tables for routes"),
    CUSTOM_KEY("admin", cad__conf_set_admin, K_MAIN_ONLY, "the admin HTTP API and metrics"),
    CUSTOM_KEY("fhir", cad__conf_set_fhir, K_MAIN_ONLY, "HL7 v2 to FHIR conversion settings"),
};
static const conf_section_t top_section = {"top-level", top_keys,
                                           sizeof top_keys / sizeof top_keys[0], NULL};

/* Record a file; returns its index in c->files, or -1 (out of memory). */
static long add_file(loader_t *L, const char *name, char *real) {
  cad_config_t *c = L->c;
  size_t cap = L->files_cap;
  if (!cad__conf_grow((void **)&c->files, &L->files_cap, c->nfiles + 1, sizeof *c->files) ||
      !cad__conf_grow((void **)&L->real, &cap, c->nfiles + 1, sizeof *L->real)) {
    free(real);
    L->nomem = true;
    return -1;
  }
  char *dup = strdup(name);
  if (!dup) {
    free(real);
    L->nomem = true;
    return -1;
  }
  c->files[c->nfiles] = dup;
  L->real[c->nfiles] = real;
  return (long)c->nfiles++;
}

static void apply_file(loader_t *L, size_t idx, const char *data, size_t len) {
  cad_yaml_doc_t *doc = NULL;
  char ebuf[600];
  const char *name = L->c->files[idx];
  int rc = cad_yaml_parse(name, data, len, NULL, &doc, ebuf, sizeof ebuf);
  if (rc == CAD_E_NOMEM) {
    L->nomem = true;
    return;
  }
  if (rc) {
    cad__conf_add_raw(L, ebuf); /* already "file:line:column: problem" */
    return;
  }
  if (!cad__conf_grow((void **)&L->docs, &L->docs_cap, L->ndocs + 1, sizeof *L->docs)) {
    cad_yaml_free(doc);
    L->nomem = true;
    return;
  }
  L->docs[L->ndocs++] = doc;
  const cad_yaml_node_t *root = doc->root;
  if (!root || cad_yaml_is_null(root)) return; /* an empty file */
  if (root->type != CAD_YAML_MAPPING) {
    char d[QBUF + 2];
    cad__conf_err_at(L, root,
                     "expected a mapping at the top level (with include, engine, destinations, "
                     "channels, tables, admin), got %s",
                     cad__conf_describe(d, root));
    return;
  }
  bool was_main = L->in_main;
  L->in_main = idx == 0;
  L->stack[L->depth++] = idx;
  cad__conf_apply_section(L, &top_section, NULL, root, L->c, "at the top level");
  L->depth--;
  L->in_main = was_main;
}

/* Read one file and apply it. `from` is the include: entry naming it (NULL
 * for the main file). */
static void load_file(loader_t *L, const char *path, const cad_yaml_node_t *from) {
  cad_config_t *c = L->c;
  char q[QBUF];
  if (from && L->depth >= MAX_INCLUDE_DEPTH) {
    cad__conf_err_at(L, from, "includes nested too deeply (more than %d levels)",
                     MAX_INCLUDE_DEPTH);
    return;
  }
  char *real = realpath(path, NULL);
  if (!real) {
    int e = errno;
    if (e == ENOMEM) {
      L->nomem = true;
    } else if (from) {
      cad__conf_err_at(L, from, "cannot read included file '%s': %s",
                       cad__conf_quote(q, path, strlen(path)), strerror(e));
    } else {
      cad__conf_err_pos(L, path, 0, 0, "cannot read: %s", strerror(e));
      L->io = true;
    }
    return;
  }
  for (size_t i = 0; i < L->depth; i++) {
    const char *r = L->real[L->stack[i]];
    if (r && strcmp(r, real) == 0) {
      cad_buf_t chain = CAD_BUF_INIT;
      for (size_t j = i; j < L->depth; j++) cad_buf_printf(&chain, "%s -> ", c->files[L->stack[j]]);
      cad_buf_puts(&chain, path);
      const char *txt = cad_buf_cstr(&chain);
      cad__conf_err_at(L, from, "include cycle: %s", txt ? txt : path);
      cad_buf_free(&chain);
      free(real);
      return;
    }
  }
  for (size_t i = 0; i < c->nfiles; i++) {
    if (L->real[i] && strcmp(L->real[i], real) == 0) { /* read already: once is enough */
      free(real);
      return;
    }
  }
  if (c->nfiles >= MAX_FILES) {
    cad__conf_err_at(L, from, "too many included files (at most %d)", MAX_FILES);
    free(real);
    return;
  }
  char *data = NULL;
  size_t len = 0;
  const char *why = NULL;
  int rrc = cad_io_read_regular(path, CAD_YAML_MAX_BYTES, &data, &len, &why);
  if (rrc == CAD_E_TOOBIG) why = "file is larger than 16 MiB";
  else if (rrc == 0 && L->total_bytes + len > MAX_TOTAL_BYTES)
    why = "the configuration files together are larger than 64 MiB", rrc = CAD_E_TOOBIG;
  if (rrc == CAD_E_NOMEM) {
    L->nomem = true;
    free(real);
    return;
  }
  if (rrc) {
    if (from)
      cad__conf_err_at(L, from, "cannot read included file '%s': %s",
                       cad__conf_quote(q, path, strlen(path)), why);
    else cad__conf_err_pos(L, path, 0, 0, "cannot read: %s", why);
    if (!from) L->io = true;
    free(real);
    free(data);
    return;
  }
  L->total_bytes += len;
  long idx = add_file(L, path, real);
  if (idx >= 0) apply_file(L, (size_t)idx, data, len);
  free(data);
}

/* ---- load ------------------------------------------------------------ */

static void build(loader_t *L) {
  cad_config_t *c = L->c;
  if (L->ndests) {
    c->dests = calloc(L->ndests, sizeof *c->dests);
    if (!c->dests) {
      L->nomem = true;
      return;
    }
  }
  for (size_t i = 0; i < L->ndests; i++) {
    cad_conf_dest_t *d = &c->dests[c->ndests];
    if (!(d->name = strdup(L->dests[i].key->str))) {
      L->nomem = true;
      return;
    }
    d->pos = cad__conf_pos_of(L->dests[i].key);
    c->ndests++;
    cad__conf_apply_dest(L, d, &L->dests[i]);
    d->fhir = &c->fhir.opts;
  }
  if (c->ndests) {
    if (!(L->by_name = calloc(c->ndests, sizeof *L->by_name))) {
      L->nomem = true;
      return;
    }
    for (size_t i = 0; i < c->ndests; i++) L->by_name[i] = (dest_ref_t){c->dests[i].name, i};
    qsort(L->by_name, c->ndests, sizeof *L->by_name,
          cad__conf_dest_ref_cmp); /* names are distinct */
  }
  /* Lookup tables, relative to the main file's directory. */
  cad_buf_t rerr = CAD_BUF_INIT;
  if (L->tables && !cad_yaml_is_null(L->tables)) {
    const char *main = c->files[0];
    const char *slash = strrchr(main, '/');
    char *base = slash ? strndup(main, (size_t)(slash - main)) : NULL;
    if (slash && !base) {
      L->nomem = true;
      return;
    }
    if (cad_tables_load(L->tables, base, &c->tables, &rerr) == CAD_E_NOMEM) L->nomem = true;
    free(base);
  }
  const char **names = calloc(c->ndests ? c->ndests : 1, sizeof *names);
  if (!names) {
    L->nomem = true;
    cad_buf_free(&rerr);
    return;
  }
  for (size_t i = 0; i < c->ndests; i++) names[i] = c->dests[i].name;
  if (L->nchans && !(c->channels = calloc(L->nchans, sizeof *c->channels))) L->nomem = true;
  for (size_t i = 0; c->channels && i < L->nchans; i++) {
    cad_conf_channel_t *ch = &c->channels[c->nchannels];
    if (!(ch->name = strdup(L->chans[i].key->str))) {
      L->nomem = true;
      break;
    }
    ch->pos = cad__conf_pos_of(L->chans[i].key);
    ch->dests = c->dests;
    ch->ndests = c->ndests;
    c->nchannels++;
    char where[160];
    snprintf(where, sizeof where, "in channel '%s'", ch->name);
    int before = L->nerr + L->dropped;
    cad__conf_apply_channel(L, ch, &L->chans[i], where);
    if (cad_yaml_is_null(L->chans[i].val)) { /* "lab:" alone: the section check did not run */
      cad__conf_err_at(L, L->chans[i].key,
                       "missing 'listen' %s (the addresses to accept MLLP connections on, like "
                       "127.0.0.1:2575)",
                       where);
      cad__conf_err_at(L, L->chans[i].key,
                       "missing 'to' or 'routes' %s (where accepted messages go)", where);
    }
    /* A channel with only `to:` becomes one route; its `to:` problems were
     * reported above, so the routes' own report would repeat them. */
    const cad_yaml_node_t *cv = L->chans[i].val;
    bool has_routes = cv->type == CAD_YAML_MAPPING && cad_yaml_get(cv, "routes");
    if (cv->type == CAD_YAML_MAPPING)
      ch->tests = cad__conf_check_tests(L, cad_yaml_get(cv, "tests"));
    if (cv->type == CAD_YAML_MAPPING && (has_routes || L->nerr + L->dropped == before)) {
      if (cad_routes_compile(cv, c->tables, names, c->ndests, &ch->routes, &rerr) == CAD_E_NOMEM)
        L->nomem = true;
    }
  }
  free(names);
  /* The routes module's lines are already "file:line:column: problem". */
  if (rerr.len && cad_buf_cstr(&rerr)) {
    char *save = NULL;
    for (char *line = strtok_r(rerr.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
      cad__conf_add_raw(L, line);
  }
  cad_buf_free(&rerr);
  cad__conf_check_listen_conflicts(L);
  if (c->nchannels == 0 && L->nerr == 0)
    cad__conf_err_pos(L, c->files[0], 0, 0, "no channels: define at least one under 'channels:'");
}

/* max_connections 0 ("auto"): CAD_CONF_AUTO_CONNECTIONS per listener, or
 * as many as the hard open-files limit fits beside the explicit ones, the
 * descriptors the listeners keep for the store and destinations
 * (CAD_MLLP_FD_RESERVE, CAD_MLLP_FD_SLACK) and CAD_CONF_FD_OVERHEAD for the
 * process itself; at least 1 (`run` and `check` then say what does not
 * fit).  So the shipped default works on a host with a low limit. */
static void fit_connections(cad_config_t *c) {
  uint64_t fixed = cad_config_connections(c), autos = 0;
  for (size_t i = 0; i < c->nchannels; i++)
    if (!c->channels[i].listener.max_connections) autos += c->channels[i].nlisten;
  if (!autos) return;
  uint64_t per = CAD_CONF_AUTO_CONNECTIONS;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY) {
    uint64_t used = fixed + CAD_MLLP_FD_RESERVE + CAD_MLLP_FD_SLACK + CAD_CONF_FD_OVERHEAD;
    uint64_t fit = (uint64_t)rl.rlim_max > used ? ((uint64_t)rl.rlim_max - used) / autos : 0;
    if (fit < per) per = fit ? fit : 1;
  }
  for (size_t i = 0; i < c->nchannels; i++)
    if (!c->channels[i].listener.max_connections)
      c->channels[i].listener.max_connections = (uint32_t)per;
}

uint64_t cad_config_connections(const cad_config_t *c) {
  uint64_t n = 0;
  for (size_t i = 0; i < c->nchannels; i++)
    n += (uint64_t)c->channels[i].listener.max_connections * c->channels[i].nlisten;
  return n;
}

static int load(const char *path, const char *data, size_t len, unsigned flags, cad_config_t **out,
                char **errors) {
  loader_t L;
  memset(&L, 0, sizeof L);
  L.flags = flags;
  L.where = "at the top level";
  *out = NULL;
  if (errors) *errors = NULL;
  cad_config_t *c = calloc(1, sizeof *c);
  if (!c || !(c->path = strdup(path))) {
    free(c);
    return CAD_E_NOMEM;
  }
  L.c = c;
  if (data) {
    if (len > CAD_YAML_MAX_BYTES) {
      cad__conf_err_pos(&L, path, 0, 0, "cannot read: file is larger than 16 MiB");
    } else {
      char *real = realpath(path, NULL); /* may not exist: then includes cannot cycle back */
      long idx = add_file(&L, path, real);
      if (idx >= 0) apply_file(&L, (size_t)idx, data, len);
    }
  } else {
    load_file(&L, path, NULL);
  }
  if (!L.nomem && c->nfiles > 0) build(&L); /* after errors too: report them all */
  if (!L.nerr) fit_connections(c);

  int rc = 0;
  if (L.nomem) {
    rc = CAD_E_NOMEM;
    cad_buf_clear(&L.err);
    cad_buf_printf(&L.err, "%s: out of memory while loading the configuration\n", path);
  } else if (L.io) {
    rc = CAD_E_IO;
  } else if (L.nerr) {
    rc = CAD_E_CONFIG;
  }
  if (L.dropped)
    cad_buf_printf(&L.err, "%s: %d more error%s not shown\n", path, L.dropped,
                   L.dropped == 1 ? "" : "s");
  c->docs = L.docs; /* kept: channels' `tests` point into them */
  c->ndocs = L.ndocs;
  for (size_t i = 0; i < c->nfiles; i++) free(L.real[i]);
  free(L.real);
  free(L.dests);
  free(L.chans);
  free(L.by_name);
  /* The positions point at file names owned by c: from here on no node is
   * used, so the documents could go first. */
  if (rc) {
    cad_config_free(c);
    if (errors && L.err.len && cad_buf_cstr(&L.err)) {
      *errors = L.err.data;
      L.err.data = NULL;
    }
  } else {
    *out = c;
  }
  cad_buf_free(&L.err);
  return rc;
}

int cad_config_load(const char *path, cad_config_t **out, char **errors) {
  return load(path, NULL, 0, 0, out, errors);
}

int cad_config_load_mem(const char *name, const char *data, size_t len, unsigned flags,
                        cad_config_t **out, char **errors) {
  return load(name, data ? data : "", len, flags, out, errors);
}

/* The channels' option types hold `const char *`: the config owns them. */
#define FREE_OWNED(p) free((void *)(uintptr_t)(p))

static void free_dest(cad_conf_dest_t *d) {
  free(d->name);
  FREE_OWNED(d->file.dir);
  FREE_OWNED(d->file.name_tmpl);
  FREE_OWNED(d->file.append_path);
  FREE_OWNED(d->file.batch.name);
  FREE_OWNED(d->mllp.sender.host);
  FREE_OWNED(d->mllp.sender.server_name);
  FREE_OWNED(d->mllp.tls.ca_file);
  FREE_OWNED(d->mllp.tls.cert_file);
  FREE_OWNED(d->mllp.tls.key_file);
  free(d->order_by);
  cad_sftp_opts_t *so = &d->sftp.conn;
  FREE_OWNED(so->host);
  FREE_OWNED(so->user);
  FREE_OWNED(so->known_hosts);
  FREE_OWNED(so->key);
  FREE_OWNED(so->passphrase_env);
  FREE_OWNED(so->password_env);
  FREE_OWNED(d->sftp.dir);
  FREE_OWNED(d->sftp.name_tmpl);
  FREE_OWNED(d->sftp.batch.name);
  FREE_OWNED(d->sftp.stage_dir);
  cad__conf_kafkapg_free_dest(d);
  cad_http_dest_conf_free(&d->http);
}

static void free_channel(cad_conf_channel_t *ch) {
  free(ch->name);
  for (size_t j = 0; j < ch->nlisten; j++) free(ch->listen[j].host);
  free(ch->listen);
  free(ch->to);
  cad_routes_free(ch->routes);
  cad_tls_server_opts_t *t = &ch->tls.opts;
  FREE_OWNED(t->cert_file);
  FREE_OWNED(t->key_file);
  FREE_OWNED(t->ca_file);
  FREE_OWNED(t->ciphers);
  for (size_t j = 0; j < t->nallowed; j++) FREE_OWNED(t->allowed_clients[j]);
  FREE_OWNED(t->allowed_clients);
  FREE_OWNED(ch->listener.allow);
  cad__conf_arch_index_free(&ch->archive.index);
  FREE_OWNED(ch->listen_dir.dir);
  FREE_OWNED(ch->listen_dir.pattern);
  FREE_OWNED(ch->listen_dir.done_dir);
  FREE_OWNED(ch->listen_dir.error_dir);
  const cad_sftp_source_opts_t *ls = &ch->listen_sftp;
  FREE_OWNED(ls->conn.host);
  FREE_OWNED(ls->conn.user);
  FREE_OWNED(ls->conn.known_hosts);
  FREE_OWNED(ls->conn.key);
  FREE_OWNED(ls->conn.passphrase_env);
  FREE_OWNED(ls->conn.password_env);
  FREE_OWNED(ls->dir);
  FREE_OWNED(ls->pattern);
  FREE_OWNED(ls->move_to);
  FREE_OWNED(ls->spool);
  cad__conf_kafkapg_free_channel(ch);
  cad_http_listen_conf_free(&ch->http);
}

void cad_config_free(cad_config_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->ndests; i++) free_dest(&c->dests[i]);
  free(c->dests);
  for (size_t i = 0; i < c->nchannels; i++) free_channel(&c->channels[i]);
  free(c->channels);
  cad_tables_free(c->tables);
  cad__conf_admin_free(&c->admin);
  cad__conf_arch_index_free(&c->archive_index);
  cad__conf_fhir_free(&c->fhir);
  for (size_t i = 0; i < c->ndocs; i++) cad_yaml_free(c->docs[i]);
  free(c->docs);
  for (size_t i = 0; i < c->nfiles; i++) free(c->files[i]);
  free(c->files);
  free(c->data_dir);
  free(c->path);
  free(c);
}
