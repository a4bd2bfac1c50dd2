/* stats.c - per-channel counters (stats.h). */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cad_chan_stats_t *registry;

cad_chan_stats_t *cad_stats_get(const char *name) {
  for (cad_chan_stats_t *s = registry; s; s = s->next)
    if (strncmp(s->name, name, sizeof s->name - 1) == 0) return s;
  cad_chan_stats_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  snprintf(s->name, sizeof s->name, "%s", name);
  cad_chan_stats_t **tail = &registry;
  while (*tail) tail = &(*tail)->next;
  *tail = s;
  return s;
}

cad_chan_stats_t *cad_stats_first(void) { return registry; }

void cad_stats_free_all(void) {
  while (registry) {
    cad_chan_stats_t *n = registry->next;
    free(registry);
    registry = n;
  }
}
