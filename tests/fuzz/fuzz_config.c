/* fuzz_config.c - arbitrary bytes through the YAML reader and the
 * configuration checker (engine/config/config.c), in memory, without includes.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks the contract
 * of cad_config_load_mem: success gives a config and no error text, every
 * `to` index names a destination, every port is in range; failure gives no
 * config and at least one error line.  Short inputs also go through the
 * duration and size parsers, whose formatted values must parse back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_config(const cad_config_t *c) {
  if (!c->data_dir || c->nchannels == 0 || c->nfiles != 1) abort();
  for (size_t i = 0; i < c->ndests; i++) {
    const cad_conf_dest_t *d = &c->dests[i];
    if (!d->name) abort();
    if (d->type == CAD_DEST_FILE) {
      if (!d->file.dir == !d->file.append_path || (d->file.dir && !d->file.name_tmpl)) abort();
    } else if (d->type != CAD_DEST_MLLP || !d->mllp.sender.host || d->mllp.sender.port < 1 ||
               d->mllp.sender.port > 65535) {
      abort();
    }
  }
  for (size_t i = 0; i < c->nchannels; i++) {
    const cad_conf_channel_t *ch = &c->channels[i];
    if (ch->nlisten == 0 || (ch->nto == 0 && !ch->routes)) abort();
    for (size_t j = 0; j < ch->nlisten; j++)
      if (ch->listen[j].port < 1 || ch->listen[j].port > 65535 || !ch->listen[j].host) abort();
    for (size_t j = 0; j < ch->nto; j++)
      if (ch->to[j] >= c->ndests) abort();
    if (ch->listener.max_frame < 1024 || ch->listener.max_connections < 1) abort();
  }
}

static void check_units(const uint8_t *data, size_t size) {
  char s[64], buf[64];
  memcpy(s, data, size);
  s[size] = 0;
  uint64_t ms, ms2;
  if (cad_config_parse_duration(s, &ms) == 0) {
    if (cad_config_parse_duration(cad_config_format_duration(ms, buf, sizeof buf), &ms2) != 0 ||
        ms != ms2)
      abort();
  }
  size_t b, b2;
  if (cad_config_parse_size(s, &b) == 0) {
    if (cad_config_parse_size(cad_config_format_size(b, buf, sizeof buf), &b2) != 0 || b != b2)
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cad_config_t *c = NULL;
  char *err = NULL;
  int rc =
      cad_config_load_mem("fuzz.yaml", (const char *)data, size, CAD_CONFIG_NO_INCLUDE, &c, &err);
  if (rc == 0) {
    if (!c || err) abort();
    check_config(c);
  } else {
    if (c) abort();
    if (rc != CAD_E_NOMEM && (!err || !strchr(err, '\n'))) abort();
  }
  cad_config_free(c);
  free(err);
  if (size < 64) check_units(data, size);
  return 0;
}
