/* lanes.c - order_by keys and lane names (lanes.h). */
#include "lanes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"

typedef struct part {
  const char *lit; /* literal text before the path (into k->text) */
  size_t litlen;
  bool has_path;
  cad_hl7_path_t path;
} part_t;

struct cad_lanekey {
  char *text; /* owned copy of order_by */
  part_t parts[CAD_LANEKEY_MAX_PARTS + 1];
  size_t nparts;
};

static int fail(char *err, size_t cap, size_t *errpos, size_t at, const char *why) {
  snprintf(err, cap, "%s", why);
  if (errpos) *errpos = at;
  return CAD_E_INVAL;
}

static int add_path(cad_lanekey_t *k, const char *s, size_t len, size_t at, char *err, size_t cap,
                    size_t *errpos) {
  part_t *pt = &k->parts[k->nparts];
  size_t epos = 0;
  const char *emsg = NULL;
  if (cad_hl7_path_parse(s, len, &pt->path, &epos, &emsg) < 0) {
    snprintf(err, cap, "not an HL7 path like PID-3.1: %s", emsg ? emsg : "invalid");
    if (errpos) *errpos = at + epos;
    return CAD_E_INVAL;
  }
  if (pt->path.occ == CAD_HL7_ALL || pt->path.rep == CAD_HL7_ALL)
    return fail(err, cap, errpos, at, "a key path cannot use the [*] wildcard");
  pt->has_path = true;
  return 0;
}

int cad_lanekey_compile(const char *order_by, cad_lanekey_t **out, char *err, size_t errcap,
                        size_t *errpos) {
  *out = NULL;
  if (!order_by || !*order_by) return fail(err, errcap, errpos, 0, "an empty key");
  cad_lanekey_t *k = calloc(1, sizeof *k);
  if (!k || !(k->text = strdup(order_by))) {
    free(k);
    return CAD_E_NOMEM;
  }
  const char *s = k->text;
  size_t n = strlen(s);
  int rc = 0;
  if (!strstr(s, "${")) {
    /* One bare path. */
    k->parts[0].lit = s;
    k->parts[0].litlen = 0;
    rc = add_path(k, s, n, 0, err, errcap, errpos);
    if (rc == 0) k->nparts = 1;
  } else {
    size_t i = 0, lit = 0;
    while (rc == 0 && i <= n) {
      if (i == n || (s[i] == '$' && s[i + 1] == '{')) {
        if (k->nparts >= CAD_LANEKEY_MAX_PARTS) {
          rc = fail(err, errcap, errpos, i, "more than 16 paths in one key");
          break;
        }
        part_t *pt = &k->parts[k->nparts];
        pt->lit = s + lit;
        pt->litlen = i - lit;
        if (i == n) {
          if (pt->litlen) k->nparts++;
          break;
        }
        const char *close = strchr(s + i, '}');
        if (!close) {
          rc = fail(err, errcap, errpos, i, "'${' without a closing '}'");
          break;
        }
        rc = add_path(k, s + i + 2, (size_t)(close - s - i - 2), i + 2, err, errcap, errpos);
        if (rc == 0) k->nparts++;
        i = (size_t)(close - s) + 1;
        lit = i;
        continue;
      }
      i++;
    }
  }
  if (rc) {
    cad_lanekey_free(k);
    return rc;
  }
  *out = k;
  return 0;
}

void cad_lanekey_free(cad_lanekey_t *k) {
  if (!k) return;
  free(k->text);
  free(k);
}

static size_t put(char *buf, size_t cap, size_t at, const char *p, size_t len) {
  if (at >= cap) return at;
  if (len > cap - at) len = cap - at;
  memcpy(buf + at, p, len);
  return at + len;
}

size_t cad_lanekey_key(const cad_lanekey_t *k, const cad_hl7_msg_t *m, char *buf, size_t cap) {
  size_t at = 0;
  for (size_t i = 0; i < k->nparts; i++) {
    const part_t *pt = &k->parts[i];
    at = put(buf, cap, at, pt->lit, pt->litlen);
    cad_hl7_match_t mt;
    if (pt->has_path && m && cad_hl7_get(m, &pt->path, &mt) && mt.raw.len)
      at = put(buf, cap, at, mt.raw.p, mt.raw.len);
  }
  return at;
}

unsigned cad_lanekey_hash_lane(const char *key, size_t len, unsigned n) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64: fixed, part of the queue's contract */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 0x100000001b3ull;
  }
  return n > 1 ? (unsigned)(h % n) : 0;
}

unsigned cad_lanekey_lane(const cad_lanekey_t *k, const char *p, size_t len, unsigned n,
                          cad_arena_t *a) {
  if (n <= 1) return 0;
  cad_hl7_msg_t m;
  char key[CAD_LANEKEY_MAX_BYTES];
  size_t klen = 0;
  if (cad_hl7_parse(&m, p, len, a, NULL, NULL) == 0) klen = cad_lanekey_key(k, &m, key, sizeof key);
  return cad_lanekey_hash_lane(key, klen, n);
}

void cad_lanes_qname(char *buf, size_t cap, const char *dest, unsigned lane) {
  if (lane == 0) snprintf(buf, cap, "%s", dest);
  else snprintf(buf, cap, "%s#%u", dest, lane);
}

int cad_lanes_of(const char *qname, const char *dest) {
  size_t n = strlen(dest);
  if (strncmp(qname, dest, n) != 0) return -1;
  if (qname[n] == 0) return 0;
  if (qname[n] != '#' || qname[n + 1] < '1' || qname[n + 1] > '9') return -1;
  char *end;
  unsigned long k = strtoul(qname + n + 1, &end, 10);
  if (*end || k >= CAD_LANES_MAX) return -1;
  return (int)k;
}
