/* fhir_util.c - reading decoded values and building the Bundle's JSON. */
#include "fhir_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cad_error.h"

cad_str_t cad__fhir_field(const cad_hl7_seg_t *s, int n) {
  cad_str_t f;
  cad_hl7_field(s, n, &f);
  return f;
}

/* \.br\ (a line break in FT/TX) becomes \X0A\ so that decoding gives "\n". */
static cad_str_t breaks(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw) {
  char e = d->esc;
  if (!e) return raw;
  const char pat[5] = {e, '.', 'b', 'r', e};
  size_t hits = 0;
  for (size_t i = 0; i + 5 <= raw.len; i++)
    if (raw.p[i] == e && memcmp(raw.p + i, pat, 5) == 0) hits++;
  if (!hits) return raw;
  char *o = cad_arena_alloc(c->a, raw.len + hits + 1);
  if (!o) {
    c->err = CAD_E_NOMEM;
    return raw;
  }
  size_t n = 0;
  for (size_t i = 0; i < raw.len;) {
    if (i + 5 <= raw.len && memcmp(raw.p + i, pat, 5) == 0) {
      o[n++] = e, o[n++] = 'X', o[n++] = '0', o[n++] = 'A', o[n++] = e;
      i += 5;
    } else {
      o[n++] = raw.p[i++];
    }
  }
  return (cad_str_t){o, n};
}

cad_str_t cad__fhir_text(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw) {
  cad_str_t none = {NULL, 0};
  if (raw.len == 0 || (raw.len == 2 && raw.p[0] == '"' && raw.p[1] == '"')) return none;
  cad_str_t v = breaks(c, d, raw), u;
  if (!cad_hl7_decode(d, v, c->a, &v) || !cad_hl7_text(v, c->a, &u)) {
    c->err = CAD_E_NOMEM;
    return none;
  }
  /* FHIR strings hold no control character but tab, CR and LF: any other
   * (a NUL from \X00\, an ESC) becomes U+FFFD */
  size_t bad = 0;
  for (size_t i = 0; i < u.len; i++) {
    unsigned char ch = (unsigned char)u.p[i];
    bad += (ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f;
  }
  if (bad) {
    char *o = cad_arena_alloc(c->a, u.len + 2 * bad + 1);
    if (!o) {
      c->err = CAD_E_NOMEM;
      return none;
    }
    size_t n = 0;
    for (size_t i = 0; i < u.len; i++) {
      unsigned char ch = (unsigned char)u.p[i];
      if ((ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f)
        o[n++] = (char)0xef, o[n++] = (char)0xbf, o[n++] = (char)0xbd;
      else o[n++] = (char)ch;
    }
    u.p = o;
    u.len = n;
  }
  while (u.len && (u.p[0] == ' ' || u.p[0] == '\t')) u.p++, u.len--;
  while (u.len && (u.p[u.len - 1] == ' ' || u.p[u.len - 1] == '\t')) u.len--;
  return u.len ? u : none;
}

/* Strings from cad__fhir_text are valid UTF-8 (cad_hl7_text guarantees it),
 * so jansson's own check is skipped (_nocheck); a string put together in a
 * fixed buffer that may cut a character keeps the checked call. */
json_t *cad__fhir_str(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw) {
  cad_str_t t = cad__fhir_text(c, d, raw);
  if (!t.len) return NULL;
  json_t *j = json_stringn_nocheck(t.p, t.len);
  if (!j) c->err = CAD_E_NOMEM;
  return j;
}

json_t *cad__fhir_ref(fctx_t *c, const fres_t *r) {
  if (!r->res) return NULL;
  json_t *j = json_object();
  cad__fhir_set(c, j, "reference", cad__fhir_cstr(c, r->url));
  return j;
}

/* Two FNV-1a 64 hashes with different offsets: 128 bits, shaped as an
 * RFC 9562 version 8 (custom) UUID. */
void cad__fhir_uuid(const char *const *parts, const size_t *lens, size_t n, char out[37]) {
  uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
  for (size_t k = 0; k < n; k++) {
    for (size_t i = 0; i < lens[k]; i++) {
      unsigned char b = (unsigned char)parts[k][i];
      h1 = (h1 ^ b) * 0x100000001b3ull;
      h2 = (h2 ^ b) * 0x100000001b3ull;
      h2 ^= h2 >> 29;
    }
    h1 = (h1 ^ 0x1f) * 0x100000001b3ull; /* separator: ("ab","c") != ("a","bc") */
    h2 = (h2 ^ 0x1f) * 0x100000001b3ull;
  }
  unsigned char b[16];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h1 >> (56 - 8 * i));
  for (int i = 0; i < 8; i++) b[8 + i] = (unsigned char)(h2 >> (56 - 8 * i));
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x80); /* version 8 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = 0;
}

/* The ids given so far (fctx_t.ids): a keyed id is looked for among them
 * (it was a scan of every entry's JSON: quadratic in the PIDs).  Up to
 * FHIR_IDS_INLINE they are compared one by one; past that a hash set
 * (open addressing in the arena, doubled at half full) finds them. */
static uint32_t id_hash(const char *id) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < 36; i++) h = (h ^ (unsigned char)id[i]) * 16777619u;
  return h;
}

static bool id_known(const fctx_t *c, const char *id) {
  const char(*ids)[36] = c->ids ? (const char(*)[36])c->ids : c->ids0;
  if (!c->slots) {
    for (uint32_t i = 0; i < c->nids; i++)
      if (memcmp(ids[i], id, 36) == 0) return true;
    return false;
  }
  for (uint32_t i = id_hash(id) & (c->slots_cap - 1);; i = (i + 1) & (c->slots_cap - 1)) {
    if (!c->slots[i]) return false;
    if (memcmp(ids[c->slots[i] - 1], id, 36) == 0) return true;
  }
}

static void slot_put(uint32_t *slots, uint32_t cap, const char *id, uint32_t idx) {
  uint32_t i = id_hash(id) & (cap - 1);
  while (slots[i]) i = (i + 1) & (cap - 1);
  slots[i] = idx + 1;
}

static int id_add(fctx_t *c, const char *id) {
  if (!c->ids) {
    c->ids = c->ids0;
    c->ids_cap = FHIR_IDS_INLINE;
  }
  if (c->nids == c->ids_cap) {
    uint32_t cap = 2 * c->ids_cap;
    char(*t)[36] = cad_arena_alloc(c->a, (size_t)cap * 36);
    if (!t) return CAD_E_NOMEM;
    memcpy(t, c->ids, (size_t)c->nids * 36);
    c->ids = t;
    c->ids_cap = cap;
  }
  memcpy(c->ids[c->nids], id, 36);
  uint32_t idx = c->nids++;
  if (c->nids <= FHIR_IDS_INLINE) return 0;
  if (2 * c->nids > c->slots_cap) {
    uint32_t cap = c->slots_cap ? 2 * c->slots_cap : 4 * FHIR_IDS_INLINE;
    uint32_t *t = cad_arena_alloc(c->a, (size_t)cap * sizeof *t);
    if (!t) return CAD_E_NOMEM;
    memset(t, 0, (size_t)cap * sizeof *t);
    for (uint32_t k = 0; k < c->nids; k++) slot_put(t, cap, c->ids[k], k);
    c->slots = t;
    c->slots_cap = cap;
  } else {
    slot_put(c->slots, c->slots_cap, id, idx);
  }
  return 0;
}

/* The decimal digits of v into out (no NUL); their number. */
static size_t put_u32(char *out, uint32_t v) {
  char t[10];
  size_t n = 0;
  do t[n++] = (char)('0' + v % 10);
  while (v /= 10);
  for (size_t i = 0; i < n; i++) out[i] = t[n - 1 - i];
  return n;
}

int cad__fhir_new(fctx_t *c, const char *type, const char *key1, cad_str_t key2, fres_t *r) {
  r->res = NULL;
  if (json_array_size(c->entries) >= CAD_FHIR_MAX_ENTRIES) {
    c->err = CAD_E_TOOBIG;
    return c->err;
  }
  char pos[16];
  pos[put_u32(pos, c->seg)] = 0;
  const char *parts[4] = {type, key1 ? key1 : pos, key2.p ? key2.p : "", NULL};
  size_t lens[4] = {strlen(type), strlen(parts[1]), key2.len, 0};
  size_t np = 3;
  if (!key1) parts[np] = c->msh10.p ? c->msh10.p : "", lens[np++] = c->msh10.len;
  char id[37];
  cad__fhir_uuid(parts, lens, np, id);
  /* the same key twice in one message (two PID of one patient): the second
   * gets an id of its own, by position */
  if (key1 && id_known(c, id)) return cad__fhir_new(c, type, NULL, key2, r);
  memcpy(r->url, "urn:uuid:", 9);
  memcpy(r->url + 9, id, 37);
  size_t tl = lens[0];
  char url[80]; /* type "/" id: the types are short literals */
  memcpy(url, type, tl);
  url[tl] = '/';
  memcpy(url + tl + 1, id, 36);
  json_t *res = json_object(), *e = json_object(), *req = json_object();
  cad__fhir_set(c, res, "resourceType", cad__fhir_strn(c, type, tl));
  cad__fhir_set(c, res, "id", cad__fhir_strn(c, id, 36));
  cad__fhir_set(c, req, "method", cad__fhir_cstr(c, "PUT"));
  cad__fhir_set(c, req, "url", cad__fhir_strn(c, url, tl + 37));
  cad__fhir_set(c, e, "fullUrl", cad__fhir_strn(c, r->url, 45));
  cad__fhir_set(c, e, "resource", res);
  cad__fhir_set(c, e, "request", req);
  if (c->err || !e || json_array_append_new(c->entries, e) != 0 || id_add(c, id) != 0) {
    if (c->err) json_decref(e); /* not appended */
    c->err = CAD_E_NOMEM;
    return c->err;
  }
  r->res = res;
  return 0;
}
