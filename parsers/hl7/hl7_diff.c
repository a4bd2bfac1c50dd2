/* hl7_diff.c - two messages compared by path (hl7.h). */
#include <stdio.h>
#include <string.h>

#include "hl7.h"

#define PATH_CAP 160

typedef struct differ {
  cad_hl7_diff_t d;
  cad_hl7_diff_fn fn;
  void *ctx;
  size_t n;
} differ_t;

static bool has_sep(cad_str_t s, char sep) { return sep && s.len && memchr(s.p, sep, s.len); }

static void report(differ_t *df, const char *path, cad_str_t a, cad_str_t b) {
  df->d.path = path;
  df->d.a = a;
  df->d.b = b;
  df->fn(df->ctx, &df->d);
  df->n++;
}

/* Go down through the separators in `seps` (repetition, component,
 * subcomponent; level 0, 1, 2) to the smallest parts that differ.  A level
 * where neither side has its separator is one piece: it is named (.1) only
 * where a path needs it, between a component and its subcomponents. */
static void diff_elem(differ_t *df, const char *path, cad_str_t a, cad_str_t b, const char *seps,
                      int level) {
  if (cad_str_eq(a, b)) return;
  bool deeper = false;
  for (const char *s = seps; *s; s++)
    if (has_sep(a, *s) || has_sep(b, *s)) deeper = true;
  if (!deeper) {
    report(df, path, a, b);
    return;
  }
  char sep = seps[0];
  char sub[PATH_CAP];
  if (!has_sep(a, sep) && !has_sep(b, sep)) {
    snprintf(sub, sizeof sub, "%s%s", path, level == 1 ? ".1" : "");
    diff_elem(df, sub, a, b, seps + 1, level + 1);
    return;
  }
  int na = cad_hl7_npieces(a, sep), nb = cad_hl7_npieces(b, sep);
  int n = na > nb ? na : nb;
  for (int k = 1; k <= n; k++) {
    cad_str_t pa = {"", 0}, pb = {"", 0};
    if (!cad_hl7_piece(a, sep, k, &pa)) pa = (cad_str_t){"", 0};
    if (!cad_hl7_piece(b, sep, k, &pb)) pb = (cad_str_t){"", 0};
    if (cad_str_eq(pa, pb)) continue;
    if (level == 0) snprintf(sub, sizeof sub, "%s[%d]", path, k);
    else snprintf(sub, sizeof sub, "%s.%d", path, k);
    diff_elem(df, sub, pa, pb, seps + 1, level + 1);
  }
}

/* Segment i of `a` as a path: with [occurrence] when its id repeats. */
static void seg_name(const cad_hl7_msg_t *m, uint32_t i, char *out, size_t cap) {
  const cad_hl7_seg_t *s = &m->segs[i];
  int occ = 0, total = 0;
  for (uint32_t k = 0; k < m->nsegs; k++)
    if (m->segs[k].id == s->id) {
      total++;
      if (k <= i) occ++;
    }
  if (total > 1) snprintf(out, cap, "%s[%d]", s->name, occ);
  else snprintf(out, cap, "%s", s->name);
}

static void diff_seg(differ_t *df, const cad_hl7_msg_t *a, uint32_t i) {
  const cad_hl7_seg_t *sa = df->d.a_seg, *sb = df->d.b_seg;
  char segname[32];
  seg_name(a, i, segname, sizeof segname);
  int na = cad_hl7_nfields(sa), nb = cad_hl7_nfields(sb);
  int maxf = na > nb ? na : nb;
  for (int f = 1; f <= maxf; f++) {
    cad_str_t fa = {"", 0}, fb = {"", 0};
    cad_hl7_field(sa, f, &fa);
    cad_hl7_field(sb, f, &fb);
    if (!fa.p) fa = (cad_str_t){"", 0};
    if (!fb.p) fb = (cad_str_t){"", 0};
    char path[64];
    snprintf(path, sizeof path, "%s-%d", segname, f);
    if (sa->header && f <= 2) { /* the delimiters themselves: never split */
      if (!cad_str_eq(fa, fb)) report(df, path, fa, fb);
      continue;
    }
    char seps[4] = {sa->d.rep, sa->d.comp, sa->d.sub, 0};
    diff_elem(df, path, fa, fb, seps, 0);
  }
}

size_t cad_hl7_diff(const cad_hl7_msg_t *a, const cad_hl7_msg_t *b, cad_hl7_diff_fn fn, void *ctx) {
  differ_t df = {.fn = fn, .ctx = ctx};
  uint32_t n = a->nsegs > b->nsegs ? a->nsegs : b->nsegs;
  for (uint32_t i = 0; i < n; i++) {
    df.d.seg = i + 1;
    df.d.a_seg = i < a->nsegs ? &a->segs[i] : NULL;
    df.d.b_seg = i < b->nsegs ? &b->segs[i] : NULL;
    if (!df.d.a_seg || !df.d.b_seg || df.d.a_seg->id != df.d.b_seg->id) {
      report(&df, NULL, (cad_str_t){"", 0}, (cad_str_t){"", 0});
      continue;
    }
    diff_seg(&df, a, i);
  }
  return df.n;
}
