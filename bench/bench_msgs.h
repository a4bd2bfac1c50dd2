/* bench_msgs.h - the benchmark messages the benchmarks share. */
#ifndef CAD_BENCH_MSGS_H
#define CAD_BENCH_MSGS_H

#include <stdbool.h>
#include <stdio.h>

/* A typical 1.4 KB ORU^R01 (MSH PID PV1 ORC OBR + 10 OBX) into buf; returns
 * its length. */
static inline size_t bench_oru_r01(char *buf, size_t cap) {
  size_t n = 0;
  n += (size_t)snprintf(buf + n, cap - n,
                        "MSH|^~\\&|LABSYS|MAIN LAB^2.16.840.1.113883.3.1^ISO|EHR|GENERAL HOSPITAL|"
                        "20261125101500+0000||ORU^R01^ORU_R01|LAB000123456|P|2.5.1|||AL|NE\r"
                        "PID|1||MRN0012345^^^GH^MR~998877^^^SSA^SS||DOE^JANE^Q^^^^L||19800101|F|||"
                        "100 MAIN ST^APT 2^SPRINGFIELD^IL^62701^USA||^PRN^PH^^1^217^5551234\r"
                        "PV1|1|O|LAB^^^GH||||1234^WELBY^MARCUS^^^DR|||||||||||V0001234\r"
                        "ORC|RE|ORD448811|LAB998877||CM||||20261125093000\r"
                        "OBR|1|ORD448811|LAB998877|24323-8^Comprehensive metabolic panel^LN|||"
                        "20261125090000|||||||20261125091500||1234^WELBY^MARCUS|||||"
                        "20261125101000|||F\r");
  static const char *tests[10][4] = {
      {"2345-7", "Glucose", "95", "mg/dL"},         {"3094-0", "Urea nitrogen", "14", "mg/dL"},
      {"2160-0", "Creatinine", "0.9", "mg/dL"},     {"2951-2", "Sodium", "140", "mmol/L"},
      {"2823-3", "Potassium", "4.1", "mmol/L"},     {"2075-0", "Chloride", "103", "mmol/L"},
      {"2028-9", "Carbon dioxide", "25", "mmol/L"}, {"17861-6", "Calcium", "9.4", "mg/dL"},
      {"2885-2", "Protein", "7.1", "g/dL"},         {"1751-7", "Albumin", "4.3", "g/dL"}};
  for (int i = 0; i < 10; i++)
    n += (size_t)snprintf(buf + n, cap - n,
                          "OBX|%d|NM|%s^%s^LN||%s|%s^^UCUM|70-99|N|||F|||20261125100000|"
                          "LAB^MAIN LAB\r",
                          i + 1, tests[i][0], tests[i][1], tests[i][2], tests[i][3]);
  return n;
}

/* The lab-to-ehr example's ORU^R01 (MSH PID PV1 OBR + 10 OBX with local
 * codes, an NTE after the fifth when `nte`), ~1.1 KB, into buf; MSH-7 and
 * MSH-10 given.  Returns its length (at most cap - 1). */
static inline size_t bench_lab_oru(char *buf, size_t cap, const char *msh7, const char *msh10,
                                   bool nte) {
  static const char *const codes[][3] = {
      {"GLU", "Glucose", "mg/dL"},     {"K", "Potassium", "mmol/L"},
      {"NA", "Sodium", "mmol/L"},      {"CL", "Chloride", "mmol/L"},
      {"CREA", "Creatinine", "mg/dL"}, {"BUN", "Urea nitrogen", "mg/dL"},
      {"HGB", "Hemoglobin", "g/dL"}};
  size_t o = (size_t)snprintf(
      buf, cap,
      "MSH|^~\\&|LIS|CITY_LAB|LAB_IN|CITY_HOSP|%s||ORU^R01^ORU_R01|%s|P|2.5.1\r"
      "PID|1||556677^^^CITYHOSP^MR||Rivera^Ana^M||19800412|F|||12 Harbour Rd^^Cork^^T12X^IE\r"
      "PV1|1|O|CLINIC2^^^CITY_HOSP||||DRS123^Okafor^Chidi\r"
      "OBR|1|ORD4411|LAB4411|BMP^Basic metabolic panel^L|||20240305121045|||||||||"
      "DRS123^Okafor^Chidi||||||202403051425||CH|F\r",
      msh7, msh10);
  for (int i = 0; i < 10 && o < cap; i++) {
    const char *const *c = codes[i % 7];
    o += (size_t)snprintf(buf + o, cap - o,
                          "OBX|%d|NM|%s^%s^L||%d.%d|%s|1-100|N|||F|||20240305130000||TECH%02d\r",
                          i + 1, c[0], c[1], 40 + i * 7, i, c[2], i);
    if (nte && i == 4 && o < cap)
      o += (size_t)snprintf(buf + o, cap - o, "NTE|1|L|Sample slightly hemolyzed \\T\\ re-spun\r");
  }
  return o < cap ? o : cap - 1;
}

#endif
