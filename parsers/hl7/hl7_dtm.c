/* hl7_dtm.c - HL7 DTM values (hl7.h): parsing, comparing, epoch seconds.
 * The one place the project reads an HL7 date/time: route conditions
 * (before/after), the format_date step and the archive time filters of
 * replay and preview all call it. */
#include <string.h>

#include "hl7.h"

static bool digits(const char *p, int n, int *v) {
  if (n == 2) {
    /* The usual width, without a loop (every part but the year). */
    unsigned a = (unsigned)(unsigned char)p[0] - '0', b = (unsigned)(unsigned char)p[1] - '0';
    *v = (int)(a * 10 + b);
    return a <= 9 && b <= 9;
  }
  int x = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return false;
    x = x * 10 + (p[i] - '0');
  }
  *v = x;
  return true;
}

bool cad_hl7_dtm_parse(const char *p, size_t len, cad_hl7_dtm_t *out) {
  memset(out, 0, sizeof *out);
  out->v[1] = out->v[2] = 1;
  static const int lo[6] = {0, 1, 1, 0, 0, 0}, hi[6] = {9999, 12, 31, 23, 59, 59};
  if (len >= 4 && len <= 14 && !(len & 1)) {
    /* The usual form, digits only, whole parts: read without a loop per part
     * (the same result as below). */
    unsigned d[14], bad = 0;
    for (size_t i = 0; i < len; i++) {
      d[i] = (unsigned)(unsigned char)p[i] - '0';
      bad |= d[i] > 9;
    }
    if (!bad) {
      int n = (int)(len - 2) / 2;
      out->v[0] = (int)(d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]);
      for (int k = 1; k < n; k++) {
        int v = (int)(d[2 * k + 2] * 10 + d[2 * k + 3]);
        if (v < lo[k] || v > hi[k]) return false;
        out->v[k] = v;
      }
      out->prec = n;
      return true;
    }
  }
  size_t i = 0;
  static const int width[6] = {4, 2, 2, 2, 2, 2};
  for (int k = 0; k < 6; k++) {
    if (i >= len || p[i] == '+' || p[i] == '-' || p[i] == '.') break;
    if (i + (size_t)width[k] > len) return false;
    int v;
    if (!digits(p + i, width[k], &v) || v < lo[k] || v > hi[k]) return false;
    out->v[k] = v;
    out->prec = k + 1;
    i += (size_t)width[k];
  }
  if (out->prec == 0) return false;
  if (i < len && p[i] == '.') {
    if (out->prec != 6) return false;
    i++;
    int nd = 0, f = 0;
    while (i < len && p[i] >= '0' && p[i] <= '9') {
      if (nd < 4) f = f * 10 + (p[i] - '0');
      nd++;
      i++;
    }
    if (nd == 0 || nd > 4) return false;
    for (int k = nd; k < 4; k++) f *= 10;
    out->v[6] = f;
    out->prec = 7;
  }
  if (i < len && (p[i] == '+' || p[i] == '-')) {
    int hh, mm;
    if (len - i != 5 || !digits(p + i + 1, 2, &hh) || !digits(p + i + 3, 2, &mm) || hh > 23 ||
        mm > 59)
      return false;
    out->has_tz = true;
    out->tz_min = (p[i] == '-' ? -1 : 1) * (hh * 60 + mm);
    i = len;
  }
  return i == len;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long days_from_civil(long y, int m, int d) {
  y -= m <= 2;
  long era = (y >= 0 ? y : y - 399) / 400;
  long yoe = y - era * 400;
  long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void civil_from_days(long z, int *y, int *m, int *d) {
  z += 719468;
  long era = (z >= 0 ? z : z - 146096) / 146097;
  long doe = z - era * 146097;
  long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long yy = yoe + era * 400;
  long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  long mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yy + (*m <= 2));
}

static void to_utc(cad_hl7_dtm_t *t) {
  long mins =
      days_from_civil(t->v[0], t->v[1], t->v[2]) * 1440L + t->v[3] * 60L + t->v[4] - t->tz_min;
  long days = mins >= 0 ? mins / 1440 : -((-mins + 1439) / 1440);
  long rem = mins - days * 1440;
  civil_from_days(days, &t->v[0], &t->v[1], &t->v[2]);
  t->v[3] = (int)(rem / 60);
  t->v[4] = (int)(rem % 60);
  t->tz_min = 0;
}

int cad_hl7_dtm_cmp(const cad_hl7_dtm_t *a, const cad_hl7_dtm_t *b) {
  cad_hl7_dtm_t x = *a, y = *b;
  int prec = x.prec < y.prec ? x.prec : y.prec;
  /* Zones matter only when both sides say to the hour at least. */
  if (x.has_tz && y.has_tz && prec >= 4 && x.tz_min != y.tz_min) {
    to_utc(&x);
    to_utc(&y);
  }
  for (int k = 0; k < prec; k++)
    if (x.v[k] != y.v[k]) return x.v[k] < y.v[k] ? -1 : 1;
  return 0;
}

double cad_hl7_dtm_seconds(const cad_hl7_dtm_t *t) {
  long days = days_from_civil(t->v[0], t->v[1], t->v[2]);
  return (double)days * 86400.0 + t->v[3] * 3600.0 + t->v[4] * 60.0 + t->v[5] + t->v[6] / 10000.0 -
         t->tz_min * 60.0;
}
