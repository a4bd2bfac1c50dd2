/* journal_int.h - the journal's on-disk format, shared by the writer and
 * recovery (journal.c) and the reader (journal_read.c).  journal.h has the
 * layout; this is the code that encodes and checks it. */
#ifndef CAD_JOURNAL_INT_H
#define CAD_JOURNAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"

#define CAD__JSEG_MAGIC 0x4a444143u  /* "CADJ" */
#define CAD__JREC_MAGIC1 0x51444143u /* "CADQ": the record tag of version 1 */
#define CAD__JSEG_HDR_V1 32
#define CAD__JMAX_PAYLOAD (256u << 20)
/* Sequences (and a DEST record's finished position) stay below 2^62: at a
 * million messages a second that is 146,000 years, so a larger one is damage
 * that happens to have a valid CRC, and taking it would make the next
 * sequence wrap. */
#define CAD__JMAX_SEQ ((uint64_t)1 << 62)

typedef cad_jkey_t cad__jkey_t;

typedef struct cad__jhdr {
  uint8_t type;
  uint16_t dest;
  uint32_t len;
  uint32_t crc;
  uint64_t seq;
  uint64_t time_ms;
} cad__jhdr_t;

void cad__jput32(unsigned char *p, uint32_t v);
void cad__jput64(unsigned char *p, uint64_t v);
uint32_t cad__jget32(const unsigned char *p);
uint64_t cad__jget64(const unsigned char *p);

/* Encode a version-2 segment header (CAD_JSEG_HDR bytes) and the key it
 * gives. */
void cad__jseg_encode(unsigned char *b, uint64_t no, uint64_t created_ms, uint64_t salt);
/* Read a segment header from b[0..n): fills *key (whatever the header says,
 * also when its CRC is wrong) and *created; returns 1 when the header is
 * whole and proves itself (magic, known version, number `no`, CRC), 0 when
 * not (then *key is the best guess: the salt field as it stands). */
int cad__jseg_decode(const unsigned char *b, size_t n, uint64_t no, cad__jkey_t *key,
                     uint64_t *created);

/* Encode a record header with its CRC over the header and payload. */
void cad__jrec_encode(unsigned char *b, const cad__jkey_t *k, const cad__jhdr_t *h,
                      const void *payload);
/* Parse the fixed part of a record header at b (CAD_JREC_HDR bytes): false
 * when the tag, version, type, destination or length cannot be a record. */
bool cad__jrec_parse(const unsigned char *b, const cad__jkey_t *k, cad__jhdr_t *h);
/* Does the record at b (header parsed into h, CAD_JREC_HDR + h->len bytes
 * available) prove itself: CRC with the segment's salt and sane values? */
bool cad__jrec_valid(const unsigned char *b, const cad__jkey_t *k, const cad__jhdr_t *h);
/* Is there a valid record at b[0..avail)?  Its total size, 0 when invalid,
 * -1 when the header says more bytes than avail. */
long long cad__jrec_check(const unsigned char *b, size_t avail, const cad__jkey_t *k,
                          cad__jhdr_t *h);
/* The first offset at or after `from` in b[0..n) where a valid record
 * starts, or n.  Only a record that proves itself with the segment's key
 * counts: bytes inside a message body cannot (their sender does not know
 * the salt). */
size_t cad__jresync(const unsigned char *b, size_t n, size_t from, const cad__jkey_t *k);

void cad__jseg_name(char *buf, size_t cap, const char *dir, uint64_t no);

#endif
