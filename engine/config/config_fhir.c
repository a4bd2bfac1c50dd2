/* config_fhir.c - the top-level `fhir:` section: how HL7 v2 is converted to
 * FHIR R4 (parsers/fhir/fhir.h) for destinations with `format: fhir` and
 * for `caduceus test`:
 *
 *   fhir:
 *     systems:                       # assigning authority -> identifier system
 *       GH: "urn:oid:2.16.840.1.113883.3.72.5.9.1"
 *       SSA: "http://hl7.org/fhir/sid/us-ssn"
 *     timezone: "-05:00"             # for times that carry no zone (nor MSH-7)
 */
#include "config_int.h"

#include <stdlib.h>
#include <string.h>

/* A URI: a scheme ([A-Za-z][A-Za-z0-9+.-]*) then ':' and no blank. */
static bool is_uri(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
  const char *p = s;
  while (*p && *p != ':') {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '+' || *p == '.' || *p == '-'))
      return false;
    p++;
  }
  if (*p != ':' || !p[1]) return false;
  for (; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f) return false;
  return true;
}

/* "Z", "+hh:mm" or "-hh:mm" within FHIR's -14:00..+14:00. */
static bool is_zone(const char *s) {
  if (strcmp(s, "Z") == 0) return true;
  if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':') return false;
  for (int i = 1; i < 6; i++)
    if (i != 3 && (s[i] < '0' || s[i] > '9')) return false;
  int h = (s[1] - '0') * 10 + (s[2] - '0'), m = (s[4] - '0') * 10 + (s[5] - '0');
  return m < 60 && (h < 14 || (h == 14 && m == 0));
}

static void set_systems(loader_t *L, cad_conf_fhir_t *f, const cad_yaml_node_t *v) {
  if (v->type != CAD_YAML_MAPPING) {
    char d[QBUF];
    cad__conf_err_at(L, v, "fhir.systems: expected a mapping of authority: URI, got %s",
                     cad__conf_describe(d, v));
    return;
  }
  f->systems = calloc(v->n ? v->n : 1, sizeof *f->systems);
  if (!f->systems) {
    L->nomem = true;
    return;
  }
  for (size_t i = 0; i < v->n; i++) {
    const cad_yaml_node_t *k = v->pairs[i].key, *u = v->pairs[i].value;
    if (u->type != CAD_YAML_SCALAR || !is_uri(u->str)) {
      char d[QBUF];
      cad__conf_err_at(L, u, "fhir.systems.%s: expected a URI (urn:oid:..., http://...), got %s",
                       k->str, cad__conf_describe(d, u));
      continue;
    }
    char *a = strdup(k->str), *s = strdup(u->str);
    if (!a || !s) {
      free(a);
      free(s);
      L->nomem = true;
      return;
    }
    f->systems[f->nsystems].authority = a;
    f->systems[f->nsystems++].uri = s;
  }
  f->opts.systems = f->systems;
  f->opts.nsystems = f->nsystems;
}

void cad__conf_set_fhir(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *v, void *obj) {
  (void)k, (void)key, (void)obj;
  cad_conf_fhir_t *f = &L->c->fhir;
  if (v->type != CAD_YAML_MAPPING) {
    char d[QBUF];
    cad__conf_err_at(L, v, "fhir: expected a mapping (systems, timezone), got %s",
                     cad__conf_describe(d, v));
    return;
  }
  for (size_t i = 0; i < v->n; i++) {
    const cad_yaml_node_t *kk = v->pairs[i].key, *val = v->pairs[i].value;
    if (strcmp(kk->str, "systems") == 0) {
      if (!f->systems) set_systems(L, f, val);
    } else if (strcmp(kk->str, "timezone") == 0) {
      if (val->type != CAD_YAML_SCALAR || !is_zone(val->str)) {
        char d[QBUF];
        cad__conf_err_at(L, val, "fhir.timezone: expected Z, +hh:mm or -hh:mm, got %s",
                         cad__conf_describe(d, val));
        continue;
      }
      free(f->tz);
      f->tz = strdup(val->str);
      if (!f->tz) L->nomem = true;
      f->opts.tz = f->tz;
    } else {
      cad__conf_err_at(L, kk, "unknown key '%s' in fhir (expected one of: systems, timezone)",
                       kk->str);
    }
  }
}

void cad__conf_fhir_free(cad_conf_fhir_t *f) {
  for (size_t i = 0; i < f->nsystems; i++) {
    free((void *)(uintptr_t)f->systems[i].authority);
    free((void *)(uintptr_t)f->systems[i].uri);
  }
  free(f->systems);
  free(f->tz);
  memset(f, 0, sizeof *f);
}
