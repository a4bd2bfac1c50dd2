/* config_kafkapg.c - the key tables of a Kafka destination (`type: kafka`),
 * a channel's Kafka source (`listen_kafka:`) and a PostgreSQL destination
 * (`type: postgres`); their options structs are the channels' own
 * (channels/kafka/kafka_conf.h, channels/postgres/pg_conf.h).  They live
 * here rather than in channels/ because three of their keys are mappings
 * (`librdkafka:`, `params:`) or templates (`topic:`) that need the engine's
 * own setters. */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "hl7.h"

#define MAX_PROPS 128

/* ---- shared setters -------------------------------------------------- */

/* `librdkafka: {name: value, ...}` into *props / *nprops. */
static void set_props(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *v,
                      cad_kafka_prop_t **props, size_t *nprops, bool consumer) {
  char d[QBUF + 2];
  if (v->type != CAD_YAML_MAPPING) {
    cad__conf_err_at(L, v, "%s: expected a mapping of librdkafka properties, got %s", k->name,
                     cad__conf_describe(d, v));
    return;
  }
  if (v->n > MAX_PROPS) {
    cad__conf_err_at(L, v, "%s: at most %d properties", k->name, MAX_PROPS);
    return;
  }
  cad_kafka_prop_t *ps = calloc(v->n ? v->n : 1, sizeof *ps);
  if (!ps) {
    L->nomem = true;
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < v->n; i++) {
    const cad_yaml_node_t *kn = v->pairs[i].key, *vn = v->pairs[i].value;
    char q[QBUF];
    if (cad_kafka_prop_is_reserved(kn->str, consumer)) {
      cad__conf_err_at(L, kn, "%s: '%s' is set by the engine (%s) and cannot be changed here",
                       k->name, cad__conf_quote(q, kn->str, kn->len),
                       consumer ? "offsets are committed once a message is durable"
                                : "an idempotent producer acknowledged by all replicas");
      continue;
    }
    if (vn->type == CAD_YAML_SCALAR && cad_kafka_prop_is_secret(kn->str) &&
        !memmem(vn->str, vn->len, "${", 2)) {
      cad__conf_err_at(L, vn,
                       "%s: '%s' holds a secret: write it as ${ENV_VAR} (secrets come from the "
                       "environment, never the configuration file)",
                       k->name, cad__conf_quote(q, kn->str, kn->len));
      continue;
    }
    char *val = cad__conf_scalar(L, k, kn, vn, "a property value (text, number or true/false)");
    if (!val) continue;
    if (L->kept_refs) {
      cad__conf_err_at(L, vn, "%s: a librdkafka property cannot use message fields", k->name);
      free(val);
      continue;
    }
    char *name = strdup(kn->str);
    if (!name) {
      free(val);
      L->nomem = true;
      continue;
    }
    ps[m].name = name;
    ps[m].value = val;
    m++;
  }
  for (size_t i = 0; i < *nprops; i++) {
    free((*props)[i].name);
    free((*props)[i].value);
  }
  free(*props);
  *props = ps;
  *nprops = m;
}

static void set_dest_props(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                           const cad_yaml_node_t *v, void *obj) {
  (void)key;
  cad_kafka_dest_conf_t *o = obj;
  set_props(L, k, v, &o->props, &o->nprops, false);
}

static void set_src_props(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj) {
  (void)key;
  cad_kafka_src_conf_t *o = obj;
  set_props(L, k, v, &o->props, &o->nprops, true);
}

static bool topic_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

/* A topic name, or (templates allowed) literal topic characters and
 * ${HL7-path} references.  Returns the malloc'd text or NULL (reported). */
static char *topic_text(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, bool templ) {
  char *s = cad__conf_scalar(L, k, key, v, "a topic name like hl7.adt");
  if (!s) return NULL;
  if (L->kept_refs && !templ) {
    cad__conf_err_at(L, v, "%s: a source reads one topic: message fields cannot be used here",
                     k->name);
    free(s);
    return NULL;
  }
  size_t n = strlen(s);
  bool ok = n > 0 && n <= 249;
  for (size_t i = 0; i < n && ok; i++) {
    if (s[i] == '$' && s[i + 1] == '{') {
      const char *e = strchr(s + i, '}');
      i = (size_t)(e - s); /* expand() checked the reference and its '}' */
      continue;
    }
    ok = topic_char(s[i]);
  }
  if (!ok) {
    cad__conf_err_at(L, v,
                     "%s: expected a topic name (1 to 249 of letters, digits, '.', '_', '-'%s), "
                     "got '%s'",
                     k->name, templ ? ", and ${HL7-path} references" : "", s);
    free(s);
    return NULL;
  }
  return s;
}

static void set_dest_topic(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                           const cad_yaml_node_t *v, void *obj) {
  cad_kafka_dest_conf_t *o = obj;
  char *s = topic_text(L, k, key, v, true);
  if (!s) return;
  free((void *)(uintptr_t)o->topic);
  o->topic = s;
}

static void set_src_topic(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *v, void *obj) {
  cad_kafka_src_conf_t *o = obj;
  char *s = topic_text(L, k, key, v, false);
  if (!s) return;
  free((void *)(uintptr_t)o->topic);
  o->topic = s;
}

/* ---- type: kafka ----------------------------------------------------- */

static void check_kafka_dest(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                             const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)seen;
  (void)key;
  cad_kafka_dest_conf_t *o = obj;
  if (o->key_path) {
    cad_hl7_path_t p;
    const char *why = NULL;
    if (cad_hl7_path_parse(o->key_path, strlen(o->key_path), &p, NULL, &why) != 0)
      cad_conf_errf(r, cad_conf_key_node(map, "key"),
                    "key: expected an HL7 path like PID-3.1 %s (%s)", r->where,
                    why ? why : "not a path");
  }
}

static const conf_key_t kafka_dest_keys[] = {
    {"brokers", CAD_CONF_TEXT, offsetof(cad_kafka_dest_conf_t, brokers), K_REQUIRED, NULL, 0, 0,
     NULL, "the bootstrap brokers, like kafka1:9092,kafka2:9092"},
    CUSTOM_KEY("topic", set_dest_topic, K_REQUIRED, "the topic, a template like hl7.${MSH-9.1}"),
    {"key", CAD_CONF_TEXT, offsetof(cad_kafka_dest_conf_t, key_path), 0, "PID-3.1", 0, 0, NULL,
     "the HL7 path of the message key, like PID-3.1"},
    CUSTOM_KEY("librdkafka", set_dest_props, 0, "librdkafka properties passed through"),
};
const conf_section_t cad__conf_kafka_dest = {"destination", kafka_dest_keys,
                                             CAD_CONF_NKEYS(kafka_dest_keys), check_kafka_dest};

/* ---- listen_kafka: ---------------------------------------------------- */

static const conf_key_t kafka_src_keys[] = {
    {"brokers", CAD_CONF_TEXT, offsetof(cad_kafka_src_conf_t, brokers), K_REQUIRED, NULL, 0, 0,
     NULL, "the bootstrap brokers, like kafka1:9092,kafka2:9092"},
    CUSTOM_KEY("topic", set_src_topic, K_REQUIRED, "the topic read, like hl7.adt"),
    {"group", CAD_CONF_TEXT, offsetof(cad_kafka_src_conf_t, group), 0, "caduceus", 0, 0, NULL,
     "the consumer group (group.id)"},
    {"max_in_flight", CAD_CONF_U32, offsetof(cad_kafka_src_conf_t, max_in_flight), 0, "256", 1,
     65536, NULL, "messages read and not yet durable before the partitions are paused"},
    CUSTOM_KEY("librdkafka", set_src_props, 0, "librdkafka properties passed through"),
};
const conf_section_t cad__conf_kafka_src = {"listen_kafka", kafka_src_keys,
                                            CAD_CONF_NKEYS(kafka_src_keys), NULL};

/* ---- type: postgres --------------------------------------------------- */

/* `params: {$1: PID-3.1, $2: OBX[*]-5}`: $1..$n, each once, each a path. */
static void set_params(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  (void)key;
  cad_pg_dest_conf_t *o = obj;
  char d[QBUF + 2], q[QBUF];
  if (v->type != CAD_YAML_MAPPING) {
    cad__conf_err_at(L, v, "%s: expected a mapping like {$1: PID-3.1, $2: OBX[*]-5}, got %s",
                     k->name, cad__conf_describe(d, v));
    return;
  }
  if (v->n > CAD_PG_MAX_PARAMS) {
    cad__conf_err_at(L, v, "%s: at most %d parameters", k->name, CAD_PG_MAX_PARAMS);
    return;
  }
  char **ps = calloc(v->n ? v->n : 1, sizeof *ps);
  if (!ps) {
    L->nomem = true;
    return;
  }
  bool ok = true;
  for (size_t i = 0; i < v->n; i++) {
    const cad_yaml_node_t *kn = v->pairs[i].key, *vn = v->pairs[i].value;
    char *end = NULL;
    long idx = (kn->len >= 2 && kn->str[0] == '$' && kn->str[1] >= '1' && kn->str[1] <= '9')
                   ? strtol(kn->str + 1, &end, 10)
                   : 0;
    if (idx < 1 || idx > (long)v->n || !end || *end) {
      cad__conf_err_at(L, kn,
                       "%s: expected $1 to $%zu (one per parameter of the statement), got '%s'",
                       k->name, v->n, cad__conf_quote(q, kn->str, kn->len));
      ok = false;
      continue;
    }
    if (ps[idx - 1]) {
      cad__conf_err_at(L, kn, "%s: '%s' is written twice", k->name, kn->str);
      ok = false;
      continue;
    }
    char *s = cad__conf_scalar(L, k, kn, vn, "an HL7 path like PID-3.1 or OBX[*]-5");
    if (!s) {
      ok = false;
      continue;
    }
    cad_hl7_path_t p;
    const char *why = NULL;
    size_t errpos = 0;
    if (L->kept_refs || cad_hl7_path_parse(s, strlen(s), &p, &errpos, &why) != 0) {
      cad__conf_err_at(L, vn, "%s: %s: expected an HL7 path like PID-3.1 or OBX[*]-5, got '%s'%s%s",
                       k->name, kn->str, cad__conf_quote(q, s, strlen(s)), why ? ": " : "",
                       why ? why : "");
      free(s);
      ok = false;
      continue;
    }
    ps[idx - 1] = s;
  }
  if (!ok) {
    for (size_t i = 0; i < v->n; i++) free(ps[i]);
    free(ps);
    return;
  }
  for (size_t i = 0; i < o->nparams; i++) free(o->params[i]);
  free(o->params);
  o->params = ps;
  o->nparams = v->n;
}

static void check_pg_dest(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                          const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)key;
  cad_pg_dest_conf_t *o = obj;
  if (o->rows) {
    size_t n = strlen(o->rows);
    bool ok = n == 3;
    for (size_t i = 0; i < n && ok; i++)
      ok = (o->rows[i] >= 'A' && o->rows[i] <= 'Z') || (o->rows[i] >= '0' && o->rows[i] <= '9');
    if (!ok)
      cad_conf_errf(r, cad_conf_key_node(map, "rows"),
                    "rows: expected a segment id like OBX (one row per occurrence) %s", r->where);
  }
  if (o->conninfo_env) {
    const char *s = o->conninfo_env;
    bool ok = *s != 0;
    for (; *s && ok; s++)
      ok = (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
           *s == '_';
    if (!ok)
      cad_conf_errf(r, cad_conf_key_node(map, "conninfo_env"),
                    "conninfo_env: expected the NAME of an environment variable (letters, digits, "
                    "'_') that holds the connection string %s",
                    r->where);
  }
  /* Every $n the statement uses must have a path (not said again when
   * `params:` itself was refused). */
  bool params_refused = cad_conf_seen(&cad__conf_pg_dest, seen, "params") && o->nparams == 0;
  if (o->sql && !params_refused) {
    for (const char *s = o->sql; (s = strchr(s, '$')) != NULL; s++) {
      if (s[1] < '1' || s[1] > '9') continue;
      long n = strtol(s + 1, NULL, 10);
      if (n > (long)o->nparams) {
        cad_conf_errf(r, cad_conf_key_node(map, "sql"),
                      "sql: uses $%ld but 'params' gives %zu %s (write params: {$1: PID-3.1, ...})",
                      n, o->nparams, r->where);
        break;
      }
    }
  }
}

static const conf_key_t pg_dest_keys[] = {
    {"conninfo_env", CAD_CONF_TEXT, offsetof(cad_pg_dest_conf_t, conninfo_env), 0, NULL, 0, 0, NULL,
     "the environment variable holding the connection string"},
    {"sql", CAD_CONF_TEXT, offsetof(cad_pg_dest_conf_t, sql), K_REQUIRED, NULL, 0, 0, NULL,
     "the SQL statement run for every row, with $1, $2, ... parameters"},
    CUSTOM_KEY("params", set_params, 0, "the statement's parameters, like {$1: PID-3.1}"),
    {"rows", CAD_CONF_TEXT, offsetof(cad_pg_dest_conf_t, rows), 0, NULL, 0, 0, NULL,
     "a segment id: one row per occurrence, like OBX"},
    {"batch", CAD_CONF_U32, offsetof(cad_pg_dest_conf_t, batch), 0, "64", 1, 1024, NULL,
     "messages per transaction"},
    {"timeout", CAD_CONF_DURATION, offsetof(cad_pg_dest_conf_t, timeout_ms), 0, "60s", 1000,
     3600000, NULL, "how long a connection or a batch may take before it is retried"},
};
const conf_section_t cad__conf_pg_dest = {"destination", pg_dest_keys, CAD_CONF_NKEYS(pg_dest_keys),
                                          check_pg_dest};

/* ---- ownership -------------------------------------------------------- */

#define FREE_OWNED(p) free((void *)(uintptr_t)(p))

static void free_props(cad_kafka_prop_t *ps, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(ps[i].name);
    free(ps[i].value);
  }
  free(ps);
}

void cad__conf_kafkapg_free_dest(cad_conf_dest_t *d) {
  FREE_OWNED(d->kafka.brokers);
  FREE_OWNED(d->kafka.topic);
  FREE_OWNED(d->kafka.key_path);
  free_props(d->kafka.props, d->kafka.nprops);
  FREE_OWNED(d->postgres.conninfo_env);
  FREE_OWNED(d->postgres.sql);
  FREE_OWNED(d->postgres.rows);
  for (size_t i = 0; i < d->postgres.nparams; i++) free(d->postgres.params[i]);
  free(d->postgres.params);
}

void cad__conf_kafkapg_free_channel(cad_conf_channel_t *ch) {
  FREE_OWNED(ch->kafka.brokers);
  FREE_OWNED(ch->kafka.topic);
  FREE_OWNED(ch->kafka.group);
  free_props(ch->kafka.props, ch->kafka.nprops);
}
