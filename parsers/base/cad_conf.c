/* cad_conf.c - the few helpers of key tables (cad_conf.h). */
#include "cad_conf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cad_conf_errf(const cad_conf_report_t *r, const cad_yaml_node_t *at, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->err_at(r->ctx, at, msg);
}

bool cad_conf_seen(const cad_conf_section_t *sec, const bool *seen, const char *name) {
  for (size_t i = 0; i < sec->nkeys; i++)
    if (strcmp(sec->keys[i].name, name) == 0) return seen[i];
  return false;
}

const cad_yaml_node_t *cad_conf_key_node(const cad_yaml_node_t *map, const char *name) {
  for (size_t i = 0; map && map->type == CAD_YAML_MAPPING && i < map->n; i++)
    if (strcmp(map->pairs[i].key->str, name) == 0) return map->pairs[i].key;
  return map;
}
