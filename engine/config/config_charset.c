/* config_charset.c - character set names in the configuration: a channel's
 * `charset:` (messages without MSH-18) and a destination's `encoding:`
 * (parsers/hl7/hl7_charset.h has the names; docs/charsets.md the table). */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hl7_charset.h"

/* The set named by scalar v, or CAD_CS_NONE after reporting why. */
static int read_set(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                    const cad_yaml_node_t *v, bool to_write) {
  char *s = cad__conf_scalar(L, k, key, v, "a character set name like 8859/1 or UNICODE UTF-8");
  if (!s) return CAD_CS_NONE;
  char q[QBUF];
  int id = cad_charset_find(s, strlen(s));
  if (id == CAD_CS_NONE)
    cad__conf_err_at(L, v,
                     "%s: unknown character set '%s' (expected ASCII, 8859/1 .. 8859/16 or "
                     "UNICODE UTF-8, or a common spelling of them such as ISO-8859-1 or UTF-8)",
                     k->name, cad__conf_quote(q, s, strlen(s)));
  else if (to_write && !cad_charset_writable(id))
    cad__conf_err_at(L, v, "%s: '%s' can be read but not written (HL7 has no MSH-18 name for it)",
                     k->name, cad__conf_quote(q, s, strlen(s)));
  else if (cad_charset_available(id) != 0)
    cad__conf_err_at(L, v, "%s: '%s' is not available in this system's iconv", k->name,
                     cad__conf_quote(q, s, strlen(s)));
  else {
    free(s);
    return id;
  }
  free(s);
  return CAD_CS_NONE;
}

void cad__conf_set_charset(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                           const cad_yaml_node_t *v, void *obj) {
  if (!key) return; /* no default: undeclared stays as it is */
  ((cad_conf_channel_t *)obj)->charset = read_set(L, k, key, v, false);
}

void cad__conf_set_encoding(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                            const cad_yaml_node_t *v, void *obj) {
  if (!key) return;
  ((cad_conf_dest_t *)obj)->encoding = read_set(L, k, key, v, true);
}
