/* hl7_path.c - the path syntax: SEG[occ]-field[rep].component.subcomponent */
#include <stdio.h>
#include <string.h>

#include "cad_error.h"
#include "hl7.h"

#define MAX_INDEX 99999

typedef struct {
  const char *s;
  size_t len, i;
  size_t errpos;
  const char *errmsg;
} pp_t;

static int fail(pp_t *pp, const char *msg) {
  pp->errpos = pp->i;
  pp->errmsg = msg;
  return CAD_E_PATH;
}

/* A positive decimal number (or '*' when star is allowed). */
static int number(pp_t *pp, int *out, bool star, const char *what) {
  if (pp->i < pp->len && pp->s[pp->i] == '*') {
    if (!star) return fail(pp, "'*' is allowed only for segment occurrences and repetitions");
    pp->i++;
    *out = CAD_HL7_ALL;
    return 0;
  }
  if (pp->i >= pp->len || pp->s[pp->i] < '0' || pp->s[pp->i] > '9') return fail(pp, what);
  long v = 0;
  size_t start = pp->i;
  while (pp->i < pp->len && pp->s[pp->i] >= '0' && pp->s[pp->i] <= '9') {
    v = v * 10 + (pp->s[pp->i] - '0');
    if (v > MAX_INDEX) {
      pp->i = start;
      return fail(pp, "index too large (at most 99999)");
    }
    pp->i++;
  }
  if (v == 0) {
    pp->i = start;
    return fail(pp, "indexes start at 1");
  }
  *out = (int)v;
  return 0;
}

static int bracket(pp_t *pp, int *out) {
  pp->i++; /* '[' */
  int rc = number(pp, out, true, "expected a number or '*' inside [ ]");
  if (rc) return rc;
  if (pp->i >= pp->len || pp->s[pp->i] != ']') return fail(pp, "expected ']'");
  pp->i++;
  return 0;
}

int cad_hl7_path_parse(const char *s, size_t len, cad_hl7_path_t *out, size_t *errpos,
                       const char **errmsg) {
  pp_t pp = {s, len, 0, 0, NULL};
  memset(out, 0, sizeof *out);
  out->occ = 1;
  int rc = 0;
  for (int k = 0; k < 3; k++) {
    if (pp.i >= len) {
      rc = fail(&pp, "expected a 3-character segment id");
      goto done;
    }
    char c = s[pp.i];
    if (c >= 'a' && c <= 'z') c = (char)(c - 32);
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
      rc = fail(&pp, "expected a 3-character segment id (letters and digits)");
      goto done;
    }
    out->seg[k] = c;
    pp.i++;
  }
  out->segid = cad_hl7_segid(out->seg);
  if (pp.i < len && s[pp.i] == '[') {
    if ((rc = bracket(&pp, &out->occ))) goto done;
  }
  if (pp.i == len) goto done; /* the whole segment */
  if (s[pp.i] != '-') {
    rc = fail(&pp, "expected '-' and a field number after the segment id");
    goto done;
  }
  pp.i++;
  if ((rc = number(&pp, &out->field, false, "expected a field number after '-'"))) goto done;
  if (pp.i < len && s[pp.i] == '[') {
    if ((rc = bracket(&pp, &out->rep))) goto done;
  }
  if (pp.i < len && s[pp.i] == '.') {
    pp.i++;
    if ((rc = number(&pp, &out->comp, false, "expected a component number after '.'"))) goto done;
    if (pp.i < len && s[pp.i] == '.') {
      pp.i++;
      if ((rc = number(&pp, &out->sub, false, "expected a subcomponent number after '.'")))
        goto done;
    }
  }
  if (pp.i != len) rc = fail(&pp, "unexpected characters after the path");
  /* A component without a repetition index means the first repetition. */
  if (!rc && out->comp > 0 && out->rep == 0) out->rep = 1;
done:
  if (rc) {
    if (errpos) *errpos = pp.errpos;
    if (errmsg) *errmsg = pp.errmsg;
  }
  return rc;
}

static size_t put_index(char *buf, size_t cap, size_t n, int v, bool brackets) {
  char tmp[16];
  if (v == CAD_HL7_ALL) snprintf(tmp, sizeof tmp, brackets ? "[*]" : "*");
  else snprintf(tmp, sizeof tmp, brackets ? "[%d]" : "%d", v);
  size_t l = strlen(tmp);
  if (n < cap) {
    size_t room = cap - n - 1;
    memcpy(buf + n, tmp, l < room ? l : room);
  }
  return n + l;
}

size_t cad_hl7_path_format(const cad_hl7_path_t *p, char *buf, size_t cap) {
  size_t n = 0;
  for (int k = 0; k < 3; k++) {
    if (n + 1 < cap) buf[n] = p->seg[k];
    n++;
  }
  if (p->occ != 1) n = put_index(buf, cap, n, p->occ, true);
  if (p->field > 0) {
    if (n + 1 < cap) buf[n] = '-';
    n++;
    n = put_index(buf, cap, n, p->field, false);
    if (p->rep != 0 && !(p->rep == 1 && p->comp > 0)) n = put_index(buf, cap, n, p->rep, true);
    if (p->comp > 0) {
      if (n + 1 < cap) buf[n] = '.';
      n++;
      n = put_index(buf, cap, n, p->comp, false);
      if (p->sub > 0) {
        if (n + 1 < cap) buf[n] = '.';
        n++;
        n = put_index(buf, cap, n, p->sub, false);
      }
    }
  }
  if (cap) buf[n < cap ? n : cap - 1] = 0;
  return n;
}
