/* cad_mem.h - the two memory tools everything else uses.
 *
 * cad_arena_t: a bump allocator made of chunks.  One arena per message (or per
 * connection); everything taken from it is released together by
 * cad_arena_reset() or cad_arena_free().  An arena has a byte budget: an
 * allocation that would exceed it fails (NULL) instead of growing memory.
 *
 * cad_buf_t: a growable, length-carrying byte buffer (not NUL-terminated
 * unless cad_buf_cstr() is called), also with a byte budget.
 *
 * Ownership: the caller owns the cad_arena_t / cad_buf_t struct (usually on
 * the stack or inside a larger object); the functions here own the chunks and
 * bytes they allocate, until reset/free.
 */
#ifndef CAD_MEM_H
#define CAD_MEM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct cad_arena_chunk cad_arena_chunk_t;

typedef struct cad_arena {
  cad_arena_chunk_t *head; /* owned: list of malloc'd chunks, newest first */
  char *cur;               /* next free byte in head */
  char *end;               /* end of head's usable space */
  size_t used;             /* bytes allocated in all chunks (for the budget) */
  size_t limit;            /* budget in bytes; 0 = unlimited */
  size_t chunk_size;       /* default chunk size */
} cad_arena_t;

/* Initialise an empty arena (allocates nothing yet). limit 0 = no budget. */
void cad_arena_init(cad_arena_t *a, size_t chunk_size, size_t limit);
/* Allocate n bytes aligned to 16; NULL when out of memory or over budget. */
void *cad_arena_alloc(cad_arena_t *a, size_t n);
/* Copy n bytes into the arena, followed by a NUL (not counted); NULL on
 * failure. */
char *cad_arena_dup(cad_arena_t *a, const void *p, size_t n);
/* A point in an arena's life to go back to: cad_arena_rewind() gives back
 * everything allocated after cad_arena_mark() (chunks added since are
 * freed), so a computation that is abandoned and redone does not pay twice
 * against the budget.  Pointers into what was given back become invalid. */
typedef struct cad_arena_mark {
  cad_arena_chunk_t *head;
  char *cur, *end;
  size_t used;
} cad_arena_mark_t;

static inline cad_arena_mark_t cad_arena_mark(const cad_arena_t *a) {
  return (cad_arena_mark_t){a->head, a->cur, a->end, a->used};
}
void cad_arena_rewind(cad_arena_t *a, cad_arena_mark_t m);
/* Release everything but keep the first (largest-needed) chunk for reuse. */
void cad_arena_reset(cad_arena_t *a);
/* Release everything. The arena may be re-initialised afterwards. */
void cad_arena_free(cad_arena_t *a);

typedef struct cad_buf {
  char *data;   /* owned; NULL until the first append */
  size_t len;   /* bytes in use */
  size_t cap;   /* bytes allocated */
  size_t limit; /* budget in bytes; 0 = unlimited */
} cad_buf_t;

#define CAD_BUF_INIT \
  { NULL, 0, 0, 0 }

/* Make room for n more bytes. 0 or CAD_E_NOMEM / CAD_E_TOOBIG. */
int cad_buf_reserve(cad_buf_t *b, size_t n);
int cad_buf_append(cad_buf_t *b, const void *p, size_t n);
int cad_buf_putc(cad_buf_t *b, char c);
int cad_buf_puts(cad_buf_t *b, const char *s);
int cad_buf_printf(cad_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* cad_buf_printf() with the arguments as a va_list (ap is consumed). */
int cad_buf_vprintf(cad_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* A NUL-terminated view of the contents (the NUL is not counted in len).
 * Returns NULL on allocation failure. Valid until the next change. */
const char *cad_buf_cstr(cad_buf_t *b);
/* Drop the contents, keep the allocation. */
static inline void cad_buf_clear(cad_buf_t *b) { b->len = 0; }
/* Remove the first n bytes (n <= len), moving the rest down. */
void cad_buf_consume(cad_buf_t *b, size_t n);
void cad_buf_free(cad_buf_t *b);

/* src (NULL: "") into dst[cap], cut to cap - 1 bytes, always terminated
 * (cap > 0); returns the bytes copied.  snprintf(dst, cap, "%s", src)
 * without the format interpreter, for the per-message paths. */
static inline size_t cad_str_copy(char *dst, size_t cap, const char *src) {
  size_t n = src ? strnlen(src, cap - 1) : 0;
  if (n) memcpy(dst, src, n);
  dst[n] = '\0';
  return n;
}

/* Copy n bytes (n may be 0, src then may be NULL); returns n.  The pieces of
 * HL7 fields are a few bytes long, where a call to memcpy costs more than the
 * copy: up to 16 bytes are moved with fixed-size (inlined) copies that read
 * and write only within [src, src + n). */
static inline size_t cad_copy_small(char *dst, const char *src, size_t n) {
  if (n >= 8 && n <= 16) {
    memcpy(dst, src, 8);
    memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4 && n < 8) {
    memcpy(dst, src, 4);
    memcpy(dst + n - 4, src + n - 4, 4);
  } else if (n > 16) {
    memcpy(dst, src, n);
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
  }
  return n;
}
#endif
