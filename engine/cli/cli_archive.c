/* cli_archive.c - reading files of HL7 messages (cli_archive.h). */
#include "cli_archive.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cad_error.h"

#define IN_CHUNK ((size_t)64 << 10)
#define OUT_CHUNK ((size_t)256 << 10)
#define MAX_SOURCES 1000000

/* ---- HL7 time ------------------------------------------------------------ */

/* An HL7 DTM into seconds since the epoch, by the one DTM parser
 * (cad_hl7_dtm_parse).  For the options, the separators - : T and blanks
 * are dropped first (a '-' after the date is a zone), so 2024-03-01T12:00
 * works.  False when it is not a time. */
bool cad__dtm_seconds(const char *p, size_t len, double *out) {
  char d[40];
  size_t n = 0, digits = 0;
  for (size_t i = 0; i < len; i++) {
    char c = p[i];
    bool zone = c == '+' || (c == '-' && digits >= 8);
    if (!zone && (c == '-' || c == ':' || c == 'T' || c == ' ')) continue;
    if (n == sizeof d) return false;
    d[n++] = c;
    if (zone) { /* the rest is the zone, as it is */
      if (len - i - 1 > sizeof d - n) return false;
      memcpy(d + n, p + i + 1, len - i - 1);
      n += len - i - 1;
      break;
    }
    if (c >= '0' && c <= '9') digits++;
  }
  cad_hl7_dtm_t t;
  if (!cad_hl7_dtm_parse(d, n, &t)) return false;
  *out = cad_hl7_dtm_seconds(&t);
  return true;
}

/* ---- the header, read without a full parse ------------------------------- */

/* Field n (>= 3) of the first segment (MSH), raw. */
bool cad__msh_field(const char *p, size_t len, int n, cad_str_t *out) {
  out->p = "";
  out->len = 0;
  if (len < 4 || memcmp(p, "MSH", 3) != 0) return false;
  char fs = p[3];
  size_t end = 0;
  while (end < len && p[end] != '\r' && p[end] != '\n') end++;
  int f = 1; /* p[3] is MSH-1; the text after it is MSH-2 */
  size_t start = 4;
  for (size_t i = 4; i <= end; i++) {
    if (i == end || p[i] == fs) {
      f++;
      if (f == n) {
        out->p = p + start;
        out->len = i - start;
        return true;
      }
      start = i + 1;
    }
  }
  return false;
}

/* ---- sources ------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_src(cad__archive_t *r, size_t *cap, const char *path) {
  if (r->nsrc >= MAX_SOURCES) return CAD_E_TOOBIG;
  if (r->nsrc == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    char **n = realloc(r->src, nc * sizeof *n);
    if (!n) return CAD_E_NOMEM;
    r->src = n;
    *cap = nc;
  }
  if (strchr(path, '\n')) return CAD_E_INVAL;
  if (!(r->src[r->nsrc] = strdup(path))) return CAD_E_NOMEM;
  r->nsrc++;
  return 0;
}

int cad__archive_add_file(cad__archive_t *r, const char *path) {
  size_t cap = r->nsrc; /* add_src grows from a full array */
  return add_src(r, &cap, path);
}

/* Expand the SOURCE arguments: files as they are, directories into their
 * regular files in name order.  Sums the sizes for the progress line. */
int cad__archive_add_sources(cad__archive_t *r, const char *const *args, size_t nargs) {
  size_t cap = 0;
  bool sized = true;
  for (size_t i = 0; i < nargs; i++) {
    struct stat st;
    if (strcmp(args[i], "-") == 0) {
      sized = false;
      int rc = add_src(r, &cap, "-");
      if (rc) return rc;
      continue;
    }
    if (stat(args[i], &st) != 0) {
      int e = errno;
      fprintf(stderr, "caduceus %s: %s: %s\n", r->cmd, args[i], strerror(e));
      return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (S_ISREG(st.st_mode)) r->bytes_total += (uint64_t)st.st_size;
      else sized = false;
      int rc = add_src(r, &cap, args[i]);
      if (rc) return rc;
      continue;
    }
    DIR *d = opendir(args[i]);
    if (!d) {
      int e = errno;
      fprintf(stderr, "caduceus %s: %s: %s\n", r->cmd, args[i], strerror(e));
      return -e;
    }
    size_t first = r->nsrc;
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d)) != NULL) {
      if (de->d_name[0] == '.') continue;
      size_t need = strlen(args[i]) + strlen(de->d_name) + 2;
      char *p = malloc(need);
      if (!p) {
        rc = CAD_E_NOMEM;
        break;
      }
      size_t al = strlen(args[i]);
      bool slash = al > 0 && args[i][al - 1] == '/'; /* "dir/" names "dir/x", not "dir//x" */
      snprintf(p, need, "%s%s%s", args[i], slash ? "" : "/", de->d_name);
      if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
        r->bytes_total += (uint64_t)st.st_size;
        rc = add_src(r, &cap, p);
      }
      free(p);
    }
    closedir(d);
    if (rc) return rc;
    qsort(r->src + first, r->nsrc - first, sizeof *r->src, cmp_str);
  }
  if (!sized) r->bytes_total = 0;
  return 0;
}

static void close_src(cad__archive_t *r) {
  if (!r->open) return;
  if (r->f && r->f != stdin) fclose(r->f);
  r->f = NULL;
  if (r->zinit) inflateEnd(&r->z);
  r->zinit = false;
  cad_hl7_stream_free(&r->hs);
  r->open = false;
}

static int reader_open_src(cad__archive_t *r) {
  const char *path = r->src[r->cur];
  r->f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!r->f) return -errno;
  r->open = true;
  r->gz = r->member = r->file_eof = r->truncated = false;
  r->fed = 0;
  cad_hl7_stream_init(&r->hs, CAD_HL7_STREAM_AUTO, r->max_message);
  r->in_len = fread(r->in, 1, IN_CHUNK, r->f);
  r->bytes_read += r->in_len;
  if (r->in_len < IN_CHUNK) {
    if (ferror(r->f)) return errno ? -errno : CAD_E_IO;
    r->file_eof = true;
  }
  if (r->in_len >= 2 && r->in[0] == 0x1f && r->in[1] == 0x8b) {
    r->gz = true;
    memset(&r->z, 0, sizeof r->z);
    if (inflateInit2(&r->z, 15 + 16) != Z_OK) return CAD_E_NOMEM;
    r->zinit = true;
    r->z.next_in = r->in;
    r->z.avail_in = (uInt)r->in_len;
    r->in_len = 0;
  }
  return 0;
}

/* The next chunk of the file into r->in: 0 (*got bytes; r->file_eof set
 * at its end) or CAD_E_IO (r->errbuf says what). */
static int read_chunk(cad__archive_t *r, size_t *got) {
  *got = fread(r->in, 1, IN_CHUNK, r->f);
  r->bytes_read += *got;
  if (*got < IN_CHUNK) {
    if (ferror(r->f)) {
      snprintf(r->errbuf, sizeof r->errbuf, "read error: %s", strerror(errno));
      return CAD_E_IO;
    }
    r->file_eof = true;
  }
  return 0;
}

/* The next bytes of the current source: 1 (*p, *n set), 0 at its end, or
 * negative (r->errbuf says what; the bytes before were delivered). */
static int reader_fill(cad__archive_t *r, const char **p, size_t *n) {
  if (!r->gz) {
    if (r->in_len) {
      *p = (const char *)r->in;
      *n = r->in_len;
      r->in_len = 0;
      return 1;
    }
    if (r->file_eof) return 0;
    size_t got;
    if (read_chunk(r, &got) != 0) return CAD_E_IO;
    *p = (const char *)r->in;
    *n = got;
    return got ? 1 : 0;
  }
  for (;;) {
    if (r->z.avail_in == 0 && !r->file_eof) {
      size_t got;
      if (read_chunk(r, &got) != 0) return CAD_E_IO;
      r->z.next_in = r->in;
      r->z.avail_in = (uInt)got;
    }
    if (!r->member) {
      /* Between members: zero padding is allowed, anything else must be
       * the next member's header (inflate checks it). */
      while (r->z.avail_in && *r->z.next_in == 0) r->z.next_in++, r->z.avail_in--;
      if (r->z.avail_in == 0) {
        if (r->file_eof) return 0;
        continue;
      }
      inflateReset(&r->z);
      r->member = true;
    }
    if (r->z.avail_in == 0 && r->file_eof) {
      r->truncated = true;
      snprintf(r->errbuf, sizeof r->errbuf,
               "truncated gzip data: the file ends inside a compressed member");
      return CAD_E_IO;
    }
    r->z.next_out = (unsigned char *)r->out;
    r->z.avail_out = (uInt)OUT_CHUNK;
    int zr = inflate(&r->z, Z_NO_FLUSH);
    size_t made = OUT_CHUNK - r->z.avail_out;
    if (zr == Z_STREAM_END) {
      r->member = false;
    } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
      snprintf(r->errbuf, sizeof r->errbuf, "corrupt gzip data: %s",
               r->z.msg ? r->z.msg : "inflate failed");
      r->truncated = true;
      return CAD_E_IO;
    }
    if (made) {
      *p = r->out;
      *n = made;
      return 1;
    }
  }
}

/* The next message of all sources: 1 (*it valid until the next call), 0 at
 * the end of the last source, negative on a fatal error (out of memory). */
int cad__archive_next(cad__archive_t *r, cad__archive_item_t *it) {
  for (;;) {
    if (!r->open) {
      if (r->cur >= r->nsrc) return 0;
      int rc = reader_open_src(r);
      if (rc) {
        fprintf(stderr, "caduceus %s: cannot open %s: %s\n", r->cmd, r->src[r->cur],
                cad_strerror(rc));
        r->read_errors++;
        close_src(r);
        r->cur++;
        continue;
      }
    }
    cad_hl7_item_t hi;
    int rc = cad_hl7_stream_next(&r->hs, &hi);
    if (rc < 0) return rc;
    if (rc == 1) {
      if (hi.kind == CAD_HL7_ITEM_MESSAGE) r->messages++;
      if (hi.kind == CAD_HL7_ITEM_ERROR) {
        r->skipped_items++;
        if (!r->all_items)
          fprintf(stderr, "caduceus %s: %s: byte %llu: skipped: %s\n", r->cmd, r->src[r->cur],
                  (unsigned long long)hi.offset, cad_strerror(hi.err));
      }
      if (hi.kind != CAD_HL7_ITEM_MESSAGE && !r->all_items) continue;
      it->p = hi.bytes.p;
      it->len = hi.bytes.len;
      it->src = (uint32_t)r->cur;
      it->off = hi.offset;
      it->kind = hi.kind;
      it->index = hi.index;
      it->err = hi.err;
      return 1;
    }
    if (r->hs.eof || r->truncated) {
      /* after a read error the stream was never finish()ed: the message it
       * was still assembling is dropped with it */
      close_src(r);
      r->cur++;
      continue;
    }
    const char *p;
    size_t n;
    int fr = reader_fill(r, &p, &n);
    if (fr == 1) {
      r->fed += n;
      r->decompressed += n;
      if (cad_hl7_stream_feed(&r->hs, p, n) != 0) return CAD_E_NOMEM;
    } else if (fr == 0) {
      cad_hl7_stream_finish(&r->hs);
    } else {
      r->read_errors++;
      fprintf(stderr,
              "caduceus %s: %s: %s (after %llu bytes of data; the messages complete "
              "before that point are read, a message the data ended in is not)\n",
              r->cmd, r->src[r->cur], r->errbuf, (unsigned long long)r->fed);
      r->truncated = true; /* drain what is complete, without finish() */
    }
  }
}

int cad__archive_init(cad__archive_t *r, const char *cmd) {
  memset(r, 0, sizeof *r);
  r->cmd = cmd;
  r->in = malloc(IN_CHUNK);
  r->out = malloc(OUT_CHUNK);
  return r->in && r->out ? 0 : CAD_E_NOMEM;
}

void cad__archive_free(cad__archive_t *r) {
  close_src(r);
  for (size_t i = 0; i < r->nsrc; i++) free(r->src[i]);
  free(r->src);
  free(r->in);
  free(r->out);
  r->src = NULL;
  r->in = NULL;
  r->out = NULL;
  r->nsrc = 0;
}
