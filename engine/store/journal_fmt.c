/* journal_fmt.c - encoding and checking segment headers and records. */
#include "journal_int.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

void cad__jput32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
void cad__jput64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
uint32_t cad__jget32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
uint64_t cad__jget64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

void cad__jseg_name(char *buf, size_t cap, const char *dir, uint64_t no) {
  snprintf(buf, cap, "%s/%016llu.seg", dir, (unsigned long long)no);
}

void cad__jseg_encode(unsigned char *b, uint64_t no, uint64_t created_ms, uint64_t salt) {
  memset(b, 0, CAD_JSEG_HDR);
  cad__jput32(b, CAD__JSEG_MAGIC);
  b[4] = CAD_JOURNAL_VERSION;
  cad__jput64(b + 8, no);
  cad__jput64(b + 16, created_ms);
  cad__jput64(b + 24, salt);
  cad__jput32(b + CAD_JSEG_HDR - 4, (uint32_t)crc32(0L, b, CAD_JSEG_HDR - 4));
}

int cad__jseg_decode(const unsigned char *b, size_t n, uint64_t no, cad__jkey_t *key,
                     uint64_t *created) {
  memset(key, 0, sizeof *key);
  *created = 0;
  /* Unknown or unreadable: framed as version 2 with whatever salt is there
   * (records prove the salt right or wrong). */
  key->version = CAD_JOURNAL_VERSION;
  key->hdr = CAD_JSEG_HDR;
  bool v1 = n >= 5 && cad__jget32(b) == CAD__JSEG_MAGIC && b[4] == 1;
  if (v1) {
    key->version = 1;
    key->hdr = CAD__JSEG_HDR_V1;
    key->tag = CAD__JREC_MAGIC1;
    if (n < CAD__JSEG_HDR_V1) return 0;
    *created = cad__jget64(b + 16);
    return cad__jget64(b + 8) == no && cad__jget32(b + 28) == (uint32_t)crc32(0L, b, 28);
  }
  if (n >= 32) key->salt = cad__jget64(b + 24);
  key->tag = (uint32_t)key->salt;
  if (n < CAD_JSEG_HDR) return 0;
  *created = cad__jget64(b + 16);
  return cad__jget32(b) == CAD__JSEG_MAGIC && b[4] == CAD_JOURNAL_VERSION &&
         cad__jget64(b + 8) == no && key->tag != 0 &&
         cad__jget32(b + CAD_JSEG_HDR - 4) == (uint32_t)crc32(0L, b, CAD_JSEG_HDR - 4);
}

static uint32_t rec_crc(const unsigned char *hdr, const cad__jkey_t *k, const void *payload,
                        size_t len) {
  unsigned char tmp[CAD_JREC_HDR];
  memcpy(tmp, hdr, CAD_JREC_HDR);
  cad__jput32(tmp + 12, 0);
  uLong c = crc32(0L, Z_NULL, 0);
  if (k->version >= 2) {
    unsigned char s[8];
    cad__jput64(s, k->salt);
    c = crc32(c, s, 8);
  }
  c = crc32(c, tmp, CAD_JREC_HDR);
  /* zlib's length is uInt; payloads are bounded by CAD__JMAX_PAYLOAD. */
  if (len) c = crc32(c, payload, (uInt)len);
  return (uint32_t)c;
}

void cad__jrec_encode(unsigned char *b, const cad__jkey_t *k, const cad__jhdr_t *h,
                      const void *payload) {
  cad__jput32(b, k->tag);
  b[4] = k->version;
  b[5] = h->type;
  b[6] = (unsigned char)h->dest;
  b[7] = (unsigned char)(h->dest >> 8);
  cad__jput32(b + 8, h->len);
  cad__jput32(b + 12, 0);
  cad__jput64(b + 16, h->seq);
  cad__jput64(b + 24, h->time_ms);
  cad__jput32(b + 12, rec_crc(b, k, payload, h->len));
}

bool cad__jrec_parse(const unsigned char *b, const cad__jkey_t *k, cad__jhdr_t *h) {
  if (cad__jget32(b) != k->tag || b[4] != k->version) return false;
  h->type = b[5];
  h->dest = (uint16_t)(b[6] | (b[7] << 8));
  h->len = cad__jget32(b + 8);
  h->crc = cad__jget32(b + 12);
  h->seq = cad__jget64(b + 16);
  h->time_ms = cad__jget64(b + 24);
  return h->type >= CAD_JREC_MSG && h->type <= CAD_JREC_PURGE && h->len <= CAD__JMAX_PAYLOAD &&
         h->dest < CAD_JOURNAL_MAX_DESTS;
}

bool cad__jrec_valid(const unsigned char *b, const cad__jkey_t *k, const cad__jhdr_t *h) {
  const unsigned char *payload = b + CAD_JREC_HDR;
  if (rec_crc(b, k, payload, h->len) != h->crc || h->seq >= CAD__JMAX_SEQ) return false;
  return !(h->type == CAD_JREC_DEST && h->len >= 8 && cad__jget64(payload) >= CAD__JMAX_SEQ);
}

long long cad__jrec_check(const unsigned char *b, size_t avail, const cad__jkey_t *k,
                          cad__jhdr_t *h) {
  if (avail < CAD_JREC_HDR) return -1;
  if (!cad__jrec_parse(b, k, h)) return 0;
  if (avail < CAD_JREC_HDR + (size_t)h->len) return -1;
  if (!cad__jrec_valid(b, k, h)) return 0;
  return (long long)(CAD_JREC_HDR + h->len);
}

size_t cad__jresync(const unsigned char *b, size_t n, size_t from, const cad__jkey_t *k) {
  unsigned char m[4];
  cad__jput32(m, k->tag);
  while (from + CAD_JREC_HDR <= n) {
    const unsigned char *q = memmem(b + from, n - from, m, 4);
    if (!q) return n;
    size_t off = (size_t)(q - b);
    cad__jhdr_t h;
    if (cad__jrec_check(b + off, n - off, k, &h) > 0) return off;
    from = off + 1;
  }
  return n;
}
