/* cli_archive.h - reading files of HL7 messages: the one reader of the
 * command line (`replay`, `preview`, `send`, `parse`, `get`; internal to
 * the command line: cad__ names).
 *
 * Sources are files, directories (their regular files, one level, sorted by
 * name) and "-" (stdin).  Each is read in 64 KiB chunks; a source that
 * starts with the gzip magic (1f 8b) is inflated in 256 KiB chunks, member
 * after member (concatenated gzip; zero padding between members is
 * skipped).  The bytes go through parsers/hl7/hl7_stream.h (ER7 text, FHS/BHS
 * batches, MLLP captures), so memory is bounded by the largest message, not
 * by the archive.
 *
 * A truncated or corrupt gzip source is reported on stderr (counted in
 * read_errors); the messages that were complete before the damage are
 * still returned, the message the data ended in is not (it may be cut).
 *
 * Memory: the archive owns its buffers and the copies of the source paths;
 * an item's bytes are valid until the next cad__archive_next() call.
 */
#ifndef CAD_CLI_ARCHIVE_H
#define CAD_CLI_ARCHIVE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <zlib.h>

#include "hl7.h"
#include "hl7_stream.h"

typedef struct cad__archive {
  const char *cmd; /* "replay": for messages */
  char **src;      /* expanded paths (owned); "-" = stdin */
  size_t nsrc, cur;
  uint64_t bytes_read;   /* file bytes read, all sources (progress) */
  uint64_t bytes_total;  /* sum of the regular files' sizes; 0 = unknown */
  uint64_t decompressed; /* bytes given to the splitter, all sources */
  uint64_t read_errors, skipped_items, messages;
  /* settings, after init */
  bool all_items;     /* return envelopes and unreadable stretches as items
                         (the caller reports them) instead of skipping them
                         and reporting on stderr */
  size_t max_message; /* the splitter's bound; 0 = its default (16 MiB) */
  /* internal */
  bool open;
  FILE *f;
  bool gz, zinit, member, file_eof, truncated;
  z_stream z;
  unsigned char *in;
  size_t in_len;
  char *out;
  cad_hl7_stream_t hs;
  uint64_t fed;
  char errbuf[256];
} cad__archive_t;

typedef struct cad__archive_item {
  const char *p; /* the message (borrowed, see above) */
  size_t len;
  uint32_t src;             /* index into src[] */
  uint64_t off;             /* byte offset in the (decompressed) source */
  cad_hl7_item_kind_t kind; /* MESSAGE; ENVELOPE or ERROR with all_items */
  uint64_t index;           /* MESSAGE: 1-based number in its source */
  int err;                  /* ERROR: a CAD_E_* code */
} cad__archive_item_t;

/* 0 or CAD_E_NOMEM.  `cmd` is borrowed. */
int cad__archive_init(cad__archive_t *r, const char *cmd);
/* Expand SOURCE arguments (errors printed).  0 or negative. */
int cad__archive_add_sources(cad__archive_t *r, const char *const *args, size_t nargs);
/* Add one path as it is (no directory expansion): 0 or negative. */
int cad__archive_add_file(cad__archive_t *r, const char *path);
/* 1 = *it is the next message; 0 = the end of the last source; negative =
 * a fatal error (out of memory).  Unreadable sources and skipped text are
 * reported on stderr and counted, not returned. */
int cad__archive_next(cad__archive_t *r, cad__archive_item_t *it);
void cad__archive_free(cad__archive_t *r);

/* HL7 DTM (cad_hl7_dtm_parse; for the options - : T and blanks are ignored)
 * into seconds since the epoch; without a zone, read as UTC. */
bool cad__dtm_seconds(const char *p, size_t len, double *out);
/* Field n (>= 3) of the first segment, which must be MSH; raw text. */
bool cad__msh_field(const char *p, size_t len, int n, cad_str_t *out);

#endif
