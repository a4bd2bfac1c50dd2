/* xml_types.c - the data type tables of xml_types.h (HL7 v2.5.1). */
#include "xml_types.h"

#include <string.h>

/* Field types, comma separated, field 1 first; "" = varies or unknown. */
static const struct {
  const char *seg, *types;
} fields[] = {
    {"MSH", "ST,ST,HD,HD,HD,HD,TS,ST,MSG,ST,PT,VID,NM,ST,ID,ID,ID,ID,CE,ID,EI"},
    {"EVN", "ID,TS,TS,IS,XCN,TS,HD"},
    {"PID",
     "SI,CX,CX,CX,XPN,XPN,TS,IS,XPN,CE,XAD,IS,XTN,XTN,CE,CE,CE,CX,ST,DLN,CX,CE,ST,ID,NM,"
     "CE,CE,CE,TS,ID,ID,IS,TS,HD,CE,CE,ST,CE,CE"},
    {"PD1", "IS,IS,XON,XCN,IS,IS,IS,ID,ID,CX,CE,ID,TS"},
    {"NK1",
     "SI,XPN,CE,XAD,XTN,XTN,CE,DT,DT,ST,JCC,CX,XON,CE,IS,TS,IS,IS,CE,CE,IS,CE,ID,IS,CE,"
     "CE,XPN,CE,CE,CE,XPN,XTN,XAD,CX,IS,IS,IS,IS,CE"},
    {"PV1",
     "SI,IS,PL,IS,CX,PL,XCN,XCN,XCN,IS,PL,IS,IS,IS,IS,IS,XCN,IS,CX,FC,IS,IS,IS,IS,DT,NM,"
     "NM,IS,IS,DT,IS,NM,NM,IS,DT,IS,DLD,IS,IS,IS,IS,PL,PL,TS,TS,NM,NM,NM,NM,CX,IS,XCN"},
    {"PV2",
     "PL,CE,CE,CE,ST,ST,IS,TS,TS,NM,NM,ST,XCN,IS,ID,IS,DT,IS,ID,NM,IS,ID,XON,IS,IS,DT,"
     "IS,DT,DT,CE,IS,IS,TS,ID,ID,ID,ID,ID,CE,CE,CE,CE,ID,IS,CE,DT,TS,TS,CE"},
    {"ORC",
     "ID,EI,EI,EI,ID,ID,TQ,EIP,TS,XCN,XCN,XCN,PL,XTN,TS,CE,CE,CE,XCN,CE,XON,XAD,XTN,XAD,"
     "CWE,CWE,TS,CWE,CWE,CNE"},
    {"OBR",
     "SI,EI,EI,CE,ID,TS,TS,TS,CQ,XCN,ID,CE,ST,TS,SPS,XCN,XTN,ST,ST,ST,ST,TS,MOC,ID,ID,"
     "PRL,TQ,XCN,EIP,ID,CE,NDL,NDL,NDL,NDL,TS,NM,CE,CE,CE,ID,CE,CE,CE,CE,CE,CE,CWE,IS,CWE"},
    {"OBX", "SI,ID,CE,ST,,CE,ST,IS,NM,ID,ID,TS,ST,TS,CE,XCN,CE,EI,TS,,,,XON,XAD,XCN"},
    {"NTE", "SI,ID,FT,CE"},
    {"SPM",
     "SI,EIP,EIP,CWE,CWE,CWE,CWE,CWE,CWE,CWE,CWE,CWE,CQ,ST,CWE,CWE,DR,TS,TS,NM,CWE,CWE,"
     "CWE,CWE,CQ,NM,CWE,CWE,CWE"},
    {"AL1", "SI,CE,CE,CE,ST,DT"},
    {"DG1", "SI,ID,CE,ST,TS,IS,CE,CE,ID,IS,CE,NM,CP,ST,ID,XCN,IS,ID,TS,EI,ID"},
    {"IN1",
     "SI,CE,CX,XON,XAD,XPN,XTN,ST,XON,CX,XON,DT,DT,AUI,IS,XPN,CE,TS,XAD,IS,IS,ST,ID,DT,"
     "ID,DT,IS,ST,TS,XCN,IS,IS,NM,NM,IS,ST,CP,CP,NM,CP,CP,NM,IS,IS,ST,ST,IS,IS,CX,IS,DT,"
     "ST,IS,ID"},
    {"RXA", "NM,NM,TS,TS,CE,NM,CE,CE,CE,XCN,LA2,ST,NM,CE,ST,TS,CE,CE,CE,ID,ID,TS"},
    {"RXR", "CE,CWE,CE,CWE,CWE,CWE"},
    {"TXA", "SI,IS,ID,TS,XCN,TS,TS,TS,XCN,XCN,XCN,EI,EI,EI,EI,ST,ID,ID,ID,ID,ST,PPN,XCN"},
    {"MSA", "ID,ST,ST,NM,ID,CE"},
    {"ERR", "ELD,ERL,CWE,ID,CWE,ST,TX,TX,IS,CWE,CWE,XTN"},
};

/* Components with subcomponents: "TYPE.n=SUBTYPE". */
static const struct {
  const char *type;
  int n;
  const char *sub;
} comps[] = {
    {"CX", 4, "HD"},   {"CX", 6, "HD"},   {"CX", 9, "CWE"}, {"CX", 10, "CWE"}, {"XPN", 1, "FN"},
    {"XAD", 1, "SAD"}, {"XAD", 12, "DR"}, {"XCN", 2, "FN"}, {"XCN", 9, "HD"},  {"XCN", 13, "HD"},
    {"XCN", 14, "HD"}, {"PL", 4, "HD"},   {"PL", 10, "EI"}, {"EIP", 1, "EI"},  {"EIP", 2, "EI"},
    {"DR", 1, "TS"},   {"DR", 2, "TS"},   {"XON", 6, "HD"}, {"CQ", 2, "CE"},   {"PPN", 2, "FN"},
    {"PPN", 9, "HD"},  {"CP", 1, "MO"},   {"MSG", 0, NULL}, {"SPS", 1, "CWE"}, {"SPS", 4, "CWE"},
    {"NDL", 1, "CNN"}, {"MOC", 1, "MO"},  {"PRL", 1, "CE"}, {"LA2", 1, "PL"},  {"ELD", 4, "CE"},
    {"JCC", 1, "IS"},
};

static const char *const known[] = {"AD",  "CE",  "CF",  "CK",  "CN",  "CNE", "CP", "CWE", "CX",
                                    "DR",  "DT",  "DTM", "ED",  "EI",  "FT",  "ID", "IS",  "MO",
                                    "NM",  "PN",  "RP",  "SN",  "ST",  "TM",  "TN", "TS",  "TX",
                                    "XAD", "XCN", "XON", "XPN", "XTN", NULL};

const char *cad__xml_seg_types(const char *seg) {
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (strcmp(fields[i].seg, seg) == 0) return fields[i].types;
  return NULL;
}

void cad__xml_comp_types(const char *type, const char **out, int n) {
  for (int k = 0; k < n; k++) out[k] = NULL;
  /* the first entry of a (type, n) wins */
  for (size_t i = sizeof comps / sizeof comps[0]; i-- > 0;)
    if (comps[i].n >= 0 && comps[i].n < n && strcmp(comps[i].type, type) == 0)
      out[comps[i].n] = comps[i].sub;
}

bool cad__xml_is_type(const char *name) { return cad__xml_canon_type(name) != NULL; }

const char *cad__xml_canon_type(const char *name) {
  for (size_t i = 0; known[i]; i++)
    if (strcmp(known[i], name) == 0) return known[i];
  return NULL;
}

bool cad__xml_is_primitive(const char *type) {
  static const char *const prim[] = {"ST", "ID", "IS", "NM",  "SI",  "DT",     "DTM",
                                     "TM", "FT", "TX", "GTS", "NUL", "varies", NULL};
  for (size_t i = 0; prim[i]; i++)
    if (strcmp(prim[i], type) == 0) return true;
  return false;
}
