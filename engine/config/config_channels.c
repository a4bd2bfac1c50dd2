/* config_channels.c - channels: listen addresses, `to:`, ack, TLS server
 * settings, allow-lists, the listen-address clash check, and the files named
 * by route tests.  The listeners' own keys are channels/mllp's
 * (cad_mllp_listen_conf), applied beside these to the same mapping.
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
#include <sys/stat.h>

#include "cad_error.h"
#include "cad_io.h"
#include "cad_mem.h"
#include "dir_conf.h"
#include "sftp_conf.h"
#include "hl7.h"
#include "mllp_conf.h"
#include "net_addr.h"
#include "tls_conf.h"

/* ---- channels -------------------------------------------------------- */

static const char *const ack_modes[] = {"auto", "original", "enhanced", NULL};
static const enum_arg_t ack_mode_arg = {ack_modes, CAD_ACK_STYLE_AUTO,
                                        "auto, original or enhanced"};

static const char *const ack_policies[] = {"persisted", "received", "delivered", NULL};
static const enum_arg_t ack_policy_arg = {ack_policies, CAD_ACK_PERSISTED,
                                          "persisted, received or delivered"};

static const conf_key_t ack_keys[] = {
    {"mode", CAD_CONF_ENUM, offsetof(cad_conf_channel_t, listener.ack_style), 0, "auto", 0, 0,
     &ack_mode_arg, "auto, original or enhanced"},
    {"policy", CAD_CONF_ENUM, offsetof(cad_conf_channel_t, ack_policy), 0, "persisted", 0, 0,
     &ack_policy_arg, "persisted, received or delivered"},
};
static const conf_section_t ack_section = {"ack", ack_keys, sizeof ack_keys / sizeof ack_keys[0],
                                           NULL};

static void set_listen(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  cad_conf_channel_t *ch = obj;
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items =
      cad__conf_list(L, k, key, v, "an address like 127.0.0.1:2575 or a list of them", &n, &one);
  if (!items) return;
  if (n == 0) {
    cad__conf_err_at(L, v, "%s: needs at least one address, like 127.0.0.1:2575", k->name);
    return;
  }
  if (n > MAX_LISTEN) {
    cad__conf_err_at(L, v, "%s: at most %d addresses per channel", k->name, MAX_LISTEN);
    return;
  }
  cad_conf_listen_t *ls = calloc(n, sizeof *ls);
  if (!ls) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = cad__conf_scalar(L, k, NULL, items[i], "an address like 127.0.0.1:2575");
    if (!s) continue;
    char host[64], q[QBUF]; /* 64: a longer host is "too long", a shorter bad one says why */
    int family, port;
    const char *why = cad_hostport_parse(s, true, host, sizeof host, &family, &port);
    if (why) {
      cad__conf_err_at(L, items[i], "%s: '%s': %s", k->name, cad__conf_quote(q, s, strlen(s)), why);
    } else if (!(ls[m].host = strdup(host))) {
      L->nomem = true;
    } else {
      ls[m].port = port;
      ls[m].pos = cad__conf_pos_of(items[i]);
      m++;
    }
    free(s);
  }
  for (size_t i = 0; i < ch->nlisten; i++) free(ch->listen[i].host);
  free(ch->listen);
  ch->listen = ls;
  ch->nlisten = m;
}

static void set_dest_refs(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj) {
  cad_conf_channel_t *ch = obj;
  const cad_config_t *c = L->c;
  char q[QBUF];
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items =
      cad__conf_list(L, k, key, v, "a destination name or a list of them", &n, &one);
  if (!items) return;
  if (n == 0) {
    cad__conf_err_at(L, v, "%s: needs at least one destination", k->name);
    return;
  }
  if (n > MAX_TO) {
    cad__conf_err_at(L, v, "%s: at most %d destinations", k->name, MAX_TO);
    return;
  }
  size_t *to = calloc(n, sizeof *to);
  if (!to) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = cad__conf_scalar(L, k, NULL, items[i], "a destination name");
    if (!s) continue;
    dest_ref_t want = {s, 0};
    const dest_ref_t *found =
        L->by_name ? bsearch(&want, L->by_name, c->ndests, sizeof want, cad__conf_dest_ref_cmp)
                   : NULL;
    size_t j = found ? found->idx : c->ndests;
    if (j == c->ndests) {
      char list[400];
      size_t o = 0;
      list[0] = 0;
      for (size_t x = 0; x < c->ndests && o < sizeof list; x++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", x ? ", " : "", c->dests[x].name);
      if (c->ndests)
        cad__conf_err_at(L, items[i], "unknown destination '%s' %s (defined: %s)",
                         cad__conf_quote(q, s, strlen(s)), L->where, list);
      else
        cad__conf_err_at(L, items[i], "unknown destination '%s' %s (no destinations are defined)",
                         cad__conf_quote(q, s, strlen(s)), L->where);
    } else {
      bool dup = false;
      for (size_t x = 0; x < m; x++) dup |= to[x] == j;
      if (dup)
        cad__conf_err_at(L, items[i], "destination '%s' is listed twice %s", c->dests[j].name,
                         L->where);
      else to[m++] = j;
    }
    free(s);
  }
  free(ch->to);
  ch->to = to;
  ch->nto = m;
}

/* ---- channel TLS and address allow-lists ------------------------------- */

static void set_allow(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                      const cad_yaml_node_t *v, void *obj) {
  cad_conf_channel_t *ch = obj;
  char q[QBUF];
  const cad_yaml_node_t *one;
  size_t n;
  const cad_yaml_node_t *const *items =
      cad__conf_list(L, k, key, v, "an address range like 10.0.0.0/8 or a list of them", &n, &one);
  if (!items) return;
  if (n == 0 || n > MAX_LIST) {
    cad__conf_err_at(L, v, "%s: expected 1 to %d address ranges", k->name, MAX_LIST);
    return;
  }
  cad_cidr_t *list = calloc(n, sizeof *list);
  if (!list) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char *s = cad__conf_scalar(L, k, NULL, items[i], "an address range like 10.0.0.0/8");
    if (!s) continue;
    const char *why = cad_cidr_parse_why(s, &list[m]);
    if (why)
      cad__conf_err_at(L, items[i], "%s: '%s': %s", k->name, cad__conf_quote(q, s, strlen(s)), why);
    else m++;
    free(s);
  }
  free((void *)(uintptr_t)ch->listener.allow);
  ch->listener.allow = list;
  ch->listener.nallow = m;
}

/* Keys read by routes/ (cad_routes_compile checks them, with positions). */
static void set_by_routes(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj) {
  (void)L, (void)k, (void)key, (void)v, (void)obj;
}

static const conf_section_t channel_tail;

/* A channel takes messages from at least one source: `listen:` (MLLP) or
 * another source kind's key (engine/runtime/source.h; a new kind adds its
 * test here). */
static bool has_source(const cad_conf_channel_t *ch) {
  return ch->nlisten > 0 || ch->listen_dir.enabled || ch->listen_sftp.enabled ||
         ch->kafka.enabled || ch->http.enabled;
}

static void check_channel(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *map, void *obj, const bool *seen) {
  const cad_conf_channel_t *ch = obj;
  /* (a `listen:` written but not valid has its own error already) */
  if (!has_source(ch) && !cad_yaml_get(map, "listen") && !cad_yaml_get(map, "listen_kafka") &&
      !cad_yaml_get(map, "listen_dir") && !cad_yaml_get(map, "listen_sftp"))
    cad_conf_errf(r, key,
                  "missing 'listen' %s (the addresses to accept MLLP connections on, like "
                  "127.0.0.1:2575)",
                  r->where);
  if (!cad_conf_seen(&channel_tail, seen, "to") && !cad_conf_seen(&channel_tail, seen, "routes"))
    cad_conf_errf(r, key, "missing 'to' or 'routes' %s (where accepted messages go)", r->where);
}

/* A channel's keys are the engine's (listen, ack, to, routes, ...) and its
 * listeners' (channels/mllp/mllp_conf.h); the engine's come in two tables
 * around the listeners' so that "expected one of" lists them in the order
 * the documentation does. */
static const conf_key_t channel_head_keys[] = {
    CUSTOM_KEY("listen", set_listen, 0,
               "the addresses to accept MLLP connections on, like 127.0.0.1:2575"),
    {"listen_kafka", CAD_CONF_SECTION, offsetof(cad_conf_channel_t, kafka),
     CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0, &cad__conf_kafka_src,
     "a Kafka topic read by a consumer group"},
    {"ack", CAD_CONF_SECTION, 0, 0, NULL, 0, 0, &ack_section, "how messages are acknowledged"},
};
static const conf_section_t channel_head = {"channel", channel_head_keys,
                                            CAD_CONF_NKEYS(channel_head_keys), NULL};

static const conf_key_t channel_tail_keys[] = {
    CUSTOM_KEY("to", set_dest_refs, 0, "the destinations every accepted message goes to"),
    {"tls", CAD_CONF_SECTION, offsetof(cad_conf_channel_t, tls),
     CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0, &cad_tls_server_conf, "MLLP over TLS"},
    CUSTOM_KEY("allow", set_allow, 0, "the client addresses accepted (CIDR)"),
    {"listen_dir", CAD_CONF_SECTION, offsetof(cad_conf_channel_t, listen_dir),
     CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0, &cad_dir_source_conf,
     "a directory to read message files from"},
    {"listen_sftp", CAD_CONF_SECTION, offsetof(cad_conf_channel_t, listen_sftp),
     CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0, &cad_sftp_source_conf,
     "a remote SFTP folder to read message files from"},
    {"listen_http", CAD_CONF_SECTION, offsetof(cad_conf_channel_t, http),
     CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0, &cad_http_listen_conf,
     "an HTTP endpoint messages are POSTed to (docs/http.md)"},
    CUSTOM_KEY("routes", set_by_routes, 0, "filters, transforms and destinations"),
    CUSTOM_KEY("unrouted", set_by_routes, 0, "what happens to a message no route takes"),
    CUSTOM_KEY("on_error", set_by_routes, 0, "what happens when a transform fails"),
    CUSTOM_KEY("tests", set_by_routes, 0, "route test cases (caduceus test)"),
    CUSTOM_KEY("charset", cad__conf_set_charset, 0,
               "the character set of messages without MSH-18, like 8859/1"),
    {"archive", CAD_CONF_SECTION, offsetof(cad_conf_channel_t, archive), CAD_CONF_NESTED, NULL, 0,
     0, &cad__conf_chan_archive, "the channel's archive settings (index, fts, retain)"},
};
static const conf_section_t channel_tail = {"channel", channel_tail_keys,
                                            CAD_CONF_NKEYS(channel_tail_keys), check_channel};

void cad__conf_apply_channel(loader_t *L, cad_conf_channel_t *ch, const named_t *e,
                             const char *where) {
  conf_part_t parts[] = {
      {&channel_head, ch}, {&cad_mllp_listen_conf, &ch->listener}, {&channel_tail, ch}};
  cad__conf_apply_parts(L, parts, CAD_CONF_NKEYS(parts), e->key, e->val, where);
}

/* Two channels (or one, twice) listening on the same address, or on one
 * address and the wildcard of its family with the same port. */
typedef struct listen_ref {
  const cad_conf_listen_t *l;
  const cad_conf_channel_t *ch;
  int family;
  bool wildcard;
  size_t order;
} listen_ref_t;

static int listen_cmp(const void *pa, const void *pb) {
  const listen_ref_t *a = pa, *b = pb;
  if (a->family != b->family) return a->family < b->family ? -1 : 1;
  if (a->l->port != b->l->port) return a->l->port < b->l->port ? -1 : 1;
  if (a->wildcard != b->wildcard) return a->wildcard ? -1 : 1;
  int c = strcmp(a->l->host, b->l->host);
  if (c) return c;
  return a->order < b->order ? -1 : a->order > b->order;
}

typedef struct clash {
  const listen_ref_t *a, *b; /* a written before b */
} clash_t;

static int clash_cmp(const void *pa, const void *pb) {
  const clash_t *a = pa, *b = pb;
  if (a->b->order != b->b->order) return a->b->order < b->b->order ? -1 : 1;
  return a->a->order < b->a->order ? -1 : a->a->order > b->a->order;
}

static void format_listen(char *buf, size_t cap, const cad_conf_listen_t *l) {
  if (strchr(l->host, ':')) snprintf(buf, cap, "[%s]:%d", l->host, l->port);
  else snprintf(buf, cap, "%s:%d", l->host, l->port);
}

void cad__conf_check_listen_conflicts(loader_t *L) {
  const cad_config_t *c = L->c;
  size_t n = 0;
  for (size_t i = 0; i < c->nchannels; i++) n += c->channels[i].nlisten;
  if (n < 2) return;
  listen_ref_t *r = calloc(n, sizeof *r);
  if (!r) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < c->nchannels; i++)
    for (size_t j = 0; j < c->channels[i].nlisten; j++) {
      const cad_conf_listen_t *l = &c->channels[i].listen[j];
      bool v6 = strchr(l->host, ':') != NULL;
      r[m] = (listen_ref_t){l, &c->channels[i], v6 ? AF_INET6 : AF_INET,
                            strcmp(l->host, v6 ? "::" : "0.0.0.0") == 0, m};
      m++;
    }
  qsort(r, n, sizeof *r, listen_cmp);
  /* Within a run of one family and port, sorted wildcard first then by host:
   * an equal neighbour is a duplicate; with a wildcard, all others clash.
   * Each clash is reported at the later of the two, in document order. */
  clash_t *cl = calloc(n, sizeof *cl);
  size_t ncl = 0;
  if (!cl) {
    free(r);
    L->nomem = true;
    return;
  }
  for (size_t i = 1, s = 0; i < n; i++) {
    if (r[s].family != r[i].family || r[s].l->port != r[i].l->port) s = i;
    const listen_ref_t *other = NULL;
    if (r[s].wildcard && s != i) other = &r[s];
    if (i > s && strcmp(r[i - 1].l->host, r[i].l->host) == 0) other = &r[i - 1];
    if (!other) continue;
    bool first = other->order < r[i].order;
    cl[ncl++] = (clash_t){first ? other : &r[i], first ? &r[i] : other};
  }
  qsort(cl, ncl, sizeof *cl, clash_cmp);
  for (size_t i = 0; i < ncl && L->nerr < MAX_ERRORS; i++) {
    const listen_ref_t *a = cl[i].a, *b = cl[i].b;
    char aa[80], bb[80];
    format_listen(aa, sizeof aa, a->l);
    format_listen(bb, sizeof bb, b->l);
    if (strcmp(aa, bb) == 0)
      cad__conf_err_pos(L, b->l->pos.file, b->l->pos.line, b->l->pos.col,
                        "listen address %s is already used by channel '%s' (%s:%d:%d)", bb,
                        a->ch->name, a->l->pos.file, a->l->pos.line, a->l->pos.col);
    else
      cad__conf_err_pos(L, b->l->pos.file, b->l->pos.line, b->l->pos.col,
                        "listen address %s overlaps %s of channel '%s' (%s:%d:%d)", bb, aa,
                        a->ch->name, a->l->pos.file, a->l->pos.line, a->l->pos.col);
  }
  free(cl);
  free(r);
}

/* ---- route tests ----------------------------------------------------- */

/* A message written as { file: PATH } in a route test: the file must be a
 * readable regular file (relative to the file the test is written in). */
static void check_message_file(loader_t *L, const cad_yaml_node_t *n) {
  const cad_yaml_node_t *f = n->type == CAD_YAML_MAPPING ? cad_yaml_get(n, "file") : NULL;
  /* a route test may expect { fhir: FILE } (a FHIR Bundle) */
  if (!f && n->type == CAD_YAML_MAPPING) f = cad_yaml_get(n, "fhir");
  if (!f || f->type != CAD_YAML_SCALAR || f->len == 0) return; /* `caduceus test` says why */
  char *s = strdup(f->str);
  if (!s || !(s = cad__conf_resolve(L, f->file, s))) {
    L->nomem = true;
    return;
  }
  const char *why = NULL;
  char q[QBUF];
  if (cad_io_check_regular(s, &why) != 0)
    cad__conf_err_at(L, f, "file: cannot read test message '%s': %s",
                     cad__conf_quote(q, s, strlen(s)), why);
  free(s);
}

/* A channel's `tests:` (NULL = none): a list of cases whose input and
 * expected messages may name files.  Returns the list, or NULL. */
const cad_yaml_node_t *cad__conf_check_tests(loader_t *L, const cad_yaml_node_t *tests) {
  if (!tests || cad_yaml_is_null(tests)) return NULL;
  if (tests->type != CAD_YAML_SEQUENCE) {
    char d[QBUF + 2];
    cad__conf_err_at(L, tests, "tests: expected a list of test cases, got %s",
                     cad__conf_describe(d, tests));
    return NULL;
  }
  for (size_t i = 0; i < tests->n; i++) {
    const cad_yaml_node_t *t = tests->items[i];
    if (t->type != CAD_YAML_MAPPING) continue;
    const cad_yaml_node_t *in = cad_yaml_get(t, "input"), *ex = cad_yaml_get(t, "expect");
    if (in) check_message_file(L, in);
    for (size_t j = 0; ex && ex->type == CAD_YAML_MAPPING && j < ex->n; j++)
      check_message_file(L, ex->pairs[j].value);
  }
  return tests;
}
