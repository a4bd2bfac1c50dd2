/* journal_read.c - reading the journal back: a sequential reader with its
 * own read-ahead buffer, through the I/O seam. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cad_error.h"
#include "journal.h"
#include "journal_int.h"

int cad_jreader_init_io(cad_jreader_t *r, const char *dir, const cad_io_t *io) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  r->io = cad_io_or_default(io);
  r->dir = strdup(dir);
  r->chunk_cap = 256 * 1024;
  r->chunk = malloc(r->chunk_cap);
  if (!r->dir || !r->chunk) {
    cad_jreader_free(r);
    return CAD_E_NOMEM;
  }
  return 0;
}

int cad_jreader_init(cad_jreader_t *r, const char *dir) {
  return cad_jreader_init_io(r, dir, NULL);
}

void cad_jreader_free(cad_jreader_t *r) {
  if (r->fd >= 0) r->io->close(r->io->ctx, r->fd);
  free(r->dir);
  free(r->chunk);
  memset(r, 0, sizeof *r);
  r->fd = -1;
}

/* Open segment `seg` and learn its framing from its header (read as
 * recovery reads it: an unprovable header still gives its salt field, which
 * the records then prove right or wrong). */
static int reader_open(cad_jreader_t *r, uint64_t seg) {
  if (r->fd >= 0 && r->fd_seg == seg) return 0;
  const cad_io_t *io = r->io;
  if (r->fd >= 0) io->close(io->ctx, r->fd);
  r->fd = -1;
  r->chunk_len = 0;
  char path[PATH_MAX];
  cad__jseg_name(path, sizeof path, r->dir, seg);
  int fd = io->openat(io->ctx, AT_FDCWD, path, O_RDONLY, 0);
  if (fd < 0) return fd;
  unsigned char h[CAD_JSEG_HDR];
  size_t got = 0;
  while (got < sizeof h) {
    ssize_t n = io->pread(io->ctx, fd, h + got, sizeof h - got, (off_t)got);
    if (n == -EINTR) continue;
    if (n < 0) {
      io->close(io->ctx, fd);
      return (int)n;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  uint64_t created;
  cad__jseg_decode(h, got, seg, &r->fd_key, &created);
  r->fd = fd;
  r->fd_seg = seg;
  return 0;
}

/* Make bytes [off, off+need) of segment seg available in the chunk, reading
 * no further than limit. Returns a pointer or NULL (with *err). */
static const unsigned char *reader_bytes(cad_jreader_t *r, uint64_t seg, uint64_t off, size_t need,
                                         uint64_t limit, int *err) {
  if (r->chunk_len && r->chunk_seg == seg && off >= r->chunk_off &&
      off + need <= r->chunk_off + r->chunk_len)
    return (const unsigned char *)r->chunk + (off - r->chunk_off);
  if ((*err = reader_open(r, seg))) return NULL;
  if (need > r->chunk_cap) {
    char *nc = realloc(r->chunk, need);
    if (!nc) {
      *err = CAD_E_NOMEM;
      return NULL;
    }
    r->chunk = nc;
    r->chunk_cap = need;
  }
  size_t want = r->chunk_cap;
  if (off + want > limit) want = (size_t)(limit - off);
  if (want < need) {
    *err = CAD_E_IO;
    return NULL;
  }
  size_t got = 0;
  while (got < want) {
    ssize_t n = r->io->pread(r->io->ctx, r->fd, r->chunk + got, want - got, (off_t)(off + got));
    if (n == -EINTR) continue;
    if (n < 0) {
      *err = (int)n;
      return NULL;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  r->chunk_seg = seg;
  r->chunk_off = off;
  r->chunk_len = got;
  if (got < need) {
    *err = CAD_E_IO;
    return NULL;
  }
  return (const unsigned char *)r->chunk;
}

/* Where reading segment pos->seg stops: `end` in the last one, the file's
 * size in an older one.  1 with *limit, 0 when the segment is gone (pos moved
 * to the next one), or a negative error. */
static int segment_limit(cad_jreader_t *r, cad_jpos_t *pos, cad_jpos_t end, uint64_t *limit) {
  int e = reader_open(r, pos->seg);
  if (e == -ENOENT && pos->seg != end.seg) {
    /* Deleted by retention or a gap in numbering: go on. */
    pos->seg++;
    pos->off = 0;
    return 0;
  }
  if (e) return e;
  if (pos->seg == end.seg) {
    *limit = end.off;
  } else {
    struct stat st;
    if ((e = r->io->fstat(r->io->ctx, r->fd, &st)) != 0) return e;
    *limit = (uint64_t)st.st_size;
  }
  if (pos->off < r->fd_key.hdr) pos->off = r->fd_key.hdr;
  return 1;
}

/* After an invalid record at pos: the next record in this segment that
 * proves itself with the segment's salt, or the next segment. */
static int skip_damage(cad_jreader_t *r, cad_jpos_t *pos, uint64_t limit) {
  r->corrupt_records++;
  uint64_t from = pos->off + 1;
  int err = 0;
  while (from + CAD_JREC_HDR <= limit) {
    size_t span = (size_t)(limit - from);
    if (span > r->chunk_cap) span = r->chunk_cap;
    const unsigned char *cb = reader_bytes(r, pos->seg, from, span, limit, &err);
    if (!cb) return err;
    size_t k = cad__jresync(cb, span, 0, &r->fd_key);
    if (k < span) {
      pos->off = from + k;
      return 0;
    }
    from += span > CAD_JREC_HDR ? span - CAD_JREC_HDR : span;
  }
  pos->seg++;
  pos->off = 0;
  return 0;
}

int cad_jreader_next(cad_jreader_t *r, cad_jpos_t *pos, cad_jpos_t end, int want_dest,
                     uint8_t want_type, cad_jread_t *out) {
  for (;;) {
    if (pos->seg > end.seg || (pos->seg == end.seg && pos->off >= end.off)) {
      *pos = end;
      return 0;
    }
    uint64_t limit = 0;
    int e = segment_limit(r, pos, end, &limit);
    if (e < 0) return e;
    if (e == 0) continue;
    if (pos->off + CAD_JREC_HDR > limit) {
      if (pos->seg == end.seg) {
        *pos = end;
        return 0;
      }
      pos->seg++;
      pos->off = 0;
      continue;
    }
    int err = 0;
    const unsigned char *b = reader_bytes(r, pos->seg, pos->off, CAD_JREC_HDR, limit, &err);
    if (!b) return err;
    cad__jhdr_t h;
    /* The same rules as recovery, so both agree on which records exist. */
    if (cad__jrec_parse(b, &r->fd_key, &h) && pos->off + CAD_JREC_HDR + h.len <= limit) {
      size_t total = CAD_JREC_HDR + h.len;
      /* Every record's CRC is checked, also one skipped for another
       * destination: a corrupt length must not make us jump over valid
       * records. */
      const unsigned char *rb = reader_bytes(r, pos->seg, pos->off, total, limit, &err);
      if (!rb) return err;
      if (cad__jrec_valid(rb, &r->fd_key, &h)) {
        cad_jpos_t here = *pos;
        pos->off += total;
        if ((want_dest >= 0 && h.dest != want_dest) || (want_type != 0 && h.type != want_type))
          continue;
        out->type = h.type;
        out->dest = h.dest;
        out->seq = h.seq;
        out->time_ms = h.time_ms;
        out->pos = here;
        out->next = *pos;
        cad_buf_clear(&out->payload);
        if (h.len && cad_buf_append(&out->payload, rb + CAD_JREC_HDR, h.len)) return CAD_E_NOMEM;
        return 1;
      }
    }
    if ((e = skip_damage(r, pos, limit)) < 0) return e;
  }
}
