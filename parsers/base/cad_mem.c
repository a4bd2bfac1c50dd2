#include "cad_mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"

struct cad_arena_chunk {
  cad_arena_chunk_t *next;
  size_t size; /* usable bytes after the header */
  /* followed by data, 16-byte aligned */
};

#define CHUNK_HDR ((sizeof(cad_arena_chunk_t) + 15u) & ~(size_t)15u)

void cad_arena_init(cad_arena_t *a, size_t chunk_size, size_t limit) {
  memset(a, 0, sizeof *a);
  a->chunk_size = chunk_size ? chunk_size : 8192;
  a->limit = limit;
}

void *cad_arena_alloc(cad_arena_t *a, size_t n) {
  n = (n + 15u) & ~(size_t)15u;
  if (n == 0) n = 16;
  if ((size_t)(a->end - a->cur) >= n && a->cur) {
    void *p = a->cur;
    a->cur += n;
    return p;
  }
  size_t sz = n > a->chunk_size ? n : a->chunk_size;
  if (a->limit && a->used + sz > a->limit) {
    if (a->used + n > a->limit) return NULL;
    sz = n;
  }
  cad_arena_chunk_t *c = malloc(CHUNK_HDR + sz);
  if (!c) return NULL;
  c->size = sz;
  c->next = a->head;
  a->head = c;
  a->used += sz;
  a->cur = (char *)c + CHUNK_HDR + n;
  a->end = (char *)c + CHUNK_HDR + sz;
  return (char *)c + CHUNK_HDR;
}

char *cad_arena_dup(cad_arena_t *a, const void *p, size_t n) {
  char *d = cad_arena_alloc(a, n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, p, n);
  d[n] = 0;
  return d;
}

void cad_arena_rewind(cad_arena_t *a, cad_arena_mark_t m) {
  while (a->head && a->head != m.head) {
    cad_arena_chunk_t *c = a->head;
    a->head = c->next;
    free(c);
  }
  a->cur = m.cur;
  a->end = m.end;
  a->used = m.used;
}

void cad_arena_reset(cad_arena_t *a) {
  /* Keep the oldest chunk (the list tail) so steady-state use mallocs nothing. */
  cad_arena_chunk_t *keep = NULL;
  cad_arena_chunk_t *c = a->head;
  while (c) {
    cad_arena_chunk_t *next = c->next;
    if (next == NULL && c->size <= a->chunk_size) {
      keep = c;
    } else {
      free(c);
    }
    c = next;
  }
  a->head = keep;
  a->used = keep ? keep->size : 0;
  a->cur = keep ? (char *)keep + CHUNK_HDR : NULL;
  a->end = keep ? a->cur + keep->size : NULL;
}

void cad_arena_free(cad_arena_t *a) {
  cad_arena_chunk_t *c = a->head;
  while (c) {
    cad_arena_chunk_t *next = c->next;
    free(c);
    c = next;
  }
  a->head = NULL;
  a->cur = a->end = NULL;
  a->used = 0;
}

int cad_buf_reserve(cad_buf_t *b, size_t n) {
  if (b->cap - b->len >= n + 1) return 0; /* +1 keeps room for cad_buf_cstr */
  size_t need = b->len + n + 1;
  if (need < b->len) return CAD_E_NOMEM;
  if (b->limit && need > b->limit + 1) return CAD_E_TOOBIG;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  if (b->limit && cap > b->limit + 1) cap = b->limit + 1;
  char *d = realloc(b->data, cap);
  if (!d) return CAD_E_NOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

int cad_buf_append(cad_buf_t *b, const void *p, size_t n) {
  int rc = cad_buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int cad_buf_putc(cad_buf_t *b, char c) {
  int rc = cad_buf_reserve(b, 1);
  if (rc) return rc;
  b->data[b->len++] = c;
  return 0;
}

int cad_buf_puts(cad_buf_t *b, const char *s) { return cad_buf_append(b, s, strlen(s)); }

int cad_buf_vprintf(cad_buf_t *b, const char *fmt, va_list ap) {
  va_list again;
  va_copy(again, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  int rc = 0;
  if (n < 0) rc = CAD_E_INVAL;
  else if ((size_t)n < sizeof small) rc = cad_buf_append(b, small, (size_t)n);
  else if ((rc = cad_buf_reserve(b, (size_t)n)) == 0) {
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
    b->len += (size_t)n;
  }
  va_end(again);
  return rc;
}

int cad_buf_printf(cad_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = cad_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

const char *cad_buf_cstr(cad_buf_t *b) {
  if (cad_buf_reserve(b, 0)) return NULL;
  b->data[b->len] = 0;
  return b->data;
}

void cad_buf_consume(cad_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void cad_buf_free(cad_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
