/* config_archive.c - the `archive:` keys: engine.archive.index / fts and a
 * channel's `archive: { index, fts, retain }` (config.h,
 * engine/store/archive.h). */
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

/* One index field: `name` (NULL: the path's canonical form) for `path`.
 * Reports a bad path at its node (file:line:column) and returns false. */
static bool add_field(loader_t *L, const conf_key_t *k, cad_conf_arch_index_t *ix,
                      const cad_yaml_node_t *name, const cad_yaml_node_t *path) {
  char *s = cad__conf_scalar(L, k, NULL, path, "an HL7 path like OBR-4.1");
  if (!s) return false;
  cad_hl7_path_t p;
  size_t at = 0;
  const char *why = NULL;
  char q[QBUF];
  bool ok = false;
  if (cad_hl7_path_parse(s, strlen(s), &p, &at, &why) != 0) {
    cad__conf_err_at(L, path, "%s: '%s': %s at character %zu (expected a path like OBR-4.1)",
                     k->name, cad__conf_quote(q, s, strlen(s)), why ? why : "not a path", at + 1);
  } else if (p.field == 0) {
    cad__conf_err_at(L, path, "%s: '%s': expected a field (like PV1-19), not a whole segment",
                     k->name, cad__conf_quote(q, s, strlen(s)));
  } else if (ix->n >= CAD_CONF_ARCH_MAX_FIELDS) {
    cad__conf_err_at(L, path, "%s: at most %d index fields", k->name, CAD_CONF_ARCH_MAX_FIELDS);
  } else {
    char canon[64];
    cad_hl7_path_format(&p, canon, sizeof canon);
    const char *nm = name ? name->str : canon;
    size_t nl = strlen(nm);
    bool dup = false;
    for (size_t i = 0; i < ix->n && !dup; i++) dup = strcmp(ix->f[i].name, nm) == 0;
    if (nl == 0 || nl >= 64 || strchr(nm, '=')) {
      cad__conf_err_at(L, name ? name : path,
                       "%s: expected a name of 1 to 63 characters without '='", k->name);
    } else if (dup) {
      cad__conf_err_at(L, name ? name : path, "%s: '%s' is declared twice", k->name,
                       cad__conf_quote(q, nm, nl));
    } else if (!(ix->f[ix->n].name = strdup(nm))) {
      L->nomem = true;
    } else {
      ix->f[ix->n++].path = p;
      ok = true;
    }
  }
  free(s);
  return ok;
}

/* `index:` a list of paths or a mapping of names to paths; stored at the
 * key's offset (a cad_conf_arch_index_t). */
void cad__conf_set_arch_index(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                              const cad_yaml_node_t *v, void *obj) {
  cad_conf_arch_index_t *ix = FIELD(obj, k, cad_conf_arch_index_t);
  char d[QBUF + 2];
  bool map = v->type == CAD_YAML_MAPPING;
  if (!map && v->type != CAD_YAML_SEQUENCE && v->type != CAD_YAML_SCALAR) {
    cad__conf_err_at(L, cad__conf_at(key, v),
                     "%s: expected a list of HL7 paths (like [OBR-4.1, PV1-19]) or a mapping of "
                     "names to paths, got %s",
                     k->name, cad__conf_describe(d, v));
    return;
  }
  size_t n = v->type == CAD_YAML_SCALAR ? 1 : v->n;
  cad__conf_arch_index_free(ix);
  if (n == 0) return;
  ix->f = calloc(n, sizeof *ix->f);
  if (!ix->f) {
    L->nomem = true;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (v->type == CAD_YAML_SCALAR) add_field(L, k, ix, NULL, v);
    else if (map) add_field(L, k, ix, v->pairs[i].key, v->pairs[i].value);
    else add_field(L, k, ix, NULL, v->items[i]);
  }
}

void cad__conf_arch_index_free(cad_conf_arch_index_t *ix) {
  for (size_t i = 0; i < ix->n; i++) free(ix->f[i].name);
  free(ix->f);
  ix->f = NULL;
  ix->n = 0;
}

static const char *const fts_names[] = {"false", "true", NULL};
static const enum_arg_t fts_arg = {fts_names, 1, "true or false"};

static const conf_key_t chan_archive_keys[] = {
    CUSTOM_KEY("index", cad__conf_set_arch_index, 0,
               "HL7 paths indexed for caduceus search --field, like [OBR-4.1, PV1-19]"),
    {"fts", CAD_CONF_ENUM, offsetof(cad_conf_chan_archive_t, fts), 0, NULL, 0, 0, &fts_arg,
     "full-text index of the bodies (caduceus search --text)"},
    {"retain", CAD_CONF_DURATION, offsetof(cad_conf_chan_archive_t, retain_ms), 0, NULL, MS_DAY,
     3650 * MS_DAY, NULL, "keep this channel's messages this long (whole days)"},
};
/* CUSTOM keys get the section's struct: index's offset must be its own. */
_Static_assert(offsetof(cad_conf_chan_archive_t, index) == 0, "index first");

const conf_section_t cad__conf_chan_archive = {"archive", chan_archive_keys,
                                               CAD_CONF_NKEYS(chan_archive_keys), NULL};
