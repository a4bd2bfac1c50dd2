/* archive_index.c - what a channel declares beyond the fixed index: its
 * fields (table fld: name, value, message) and the full text of its bodies
 * (table fts: an FTS5 index without a copy of the text, content='';
 * rowid = the message id), and the query-side helpers (archive_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive_int.h"
#include "cad_error.h"

/* Values kept per field per message (OBX[*]-3 on a long result). */
#define MAX_VALUES 64
/* The full text of the bodies: FTS5 with its own tokenizer (unicode61:
 * letters and digits; | ^ & ~ separate), no stored copy (the body is in msg,
 * compressed), no per-row sizes (no ranking needed); positions kept so a
 * word the tokenizer splits (GLU^Glucose) is searched as a phrase. */
#define FTS_SCHEMA                                                                    \
  "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(body, content='', columnsize=0," \
  " detail=full); CREATE TABLE IF NOT EXISTS fts_rows(id INTEGER PRIMARY KEY)"

int cad__arch_chans_copy(const cad_archive_chan_t *in, size_t n, cad__arch_chan_t **out) {
  *out = NULL;
  if (!n) return 0;
  cad__arch_chan_t *c = calloc(n, sizeof *c);
  if (!c) return CAD_E_NOMEM;
  for (size_t i = 0; i < n; i++) {
    size_t nf = in[i].nfields > CAD_ARCHIVE_MAX_FIELDS ? CAD_ARCHIVE_MAX_FIELDS : in[i].nfields;
    c[i].name = strdup(in[i].name ? in[i].name : "");
    c[i].fields = calloc(nf ? nf : 1, sizeof *c[i].fields);
    if (!c[i].name || !c[i].fields) goto fail;
    for (size_t k = 0; k < nf; k++) {
      c[i].fields[k].path = in[i].fields[k].path;
      if (!(c[i].fields[k].name = strdup(in[i].fields[k].name))) goto fail;
      c[i].nfields++;
    }
    c[i].fts = in[i].fts;
    c[i].retain_ms = in[i].retain_ms;
  }
  *out = c;
  return 0;
fail:
  cad__arch_chans_free(c, n);
  return CAD_E_NOMEM;
}

void cad__arch_chans_free(cad__arch_chan_t *c, size_t n) {
  if (!c) return;
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; k < c[i].nfields; k++) free((char *)(uintptr_t)c[i].fields[k].name);
    free(c[i].fields);
    free(c[i].name);
  }
  free(c);
}

static int sql_rc(sqlite3 *db) {
  int e = sqlite3_errcode(db);
  return e == SQLITE_NOMEM ? CAD_E_NOMEM : CAD_E_IO;
}

static int step(sqlite3 *db, sqlite3_stmt *s) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return rc == SQLITE_DONE ? 0 : sql_rc(db);
}

static int index_fields(cad__arch_db_t *db, const cad__arch_chan_t *ch, uint64_t id,
                        const cad_hl7_msg_t *m, cad_arena_t *ar) {
  if (!db->ins_fld &&
      sqlite3_prepare_v3(db->db, "INSERT OR IGNORE INTO fld(name,value,msg) VALUES(?,?,?)", -1,
                         SQLITE_PREPARE_PERSISTENT, &db->ins_fld, NULL) != SQLITE_OK)
    return sql_rc(db->db);
  for (size_t k = 0; k < ch->nfields; k++) {
    const cad_archive_field_t *f = &ch->fields[k];
    cad_hl7_iter_t it;
    cad_hl7_match_t mt;
    cad_hl7_iter_init(&it, m, &f->path);
    for (int n = 0; n < MAX_VALUES && cad_hl7_iter_next(&it, &mt);) {
      cad_str_t v;
      if (!mt.present || !cad_hl7_value(&f->path, &mt, ar, &v) || v.len == 0) continue;
      n++;
      sqlite3_bind_text(db->ins_fld, 1, f->name, -1, SQLITE_STATIC);
      sqlite3_bind_text(db->ins_fld, 2, v.p, (int)v.len, SQLITE_STATIC);
      sqlite3_bind_int64(db->ins_fld, 3, (sqlite3_int64)id);
      int rc = step(db->db, db->ins_fld);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

static int index_text(cad__arch_db_t *db, uint64_t id, const char *p, size_t len) {
  /* fts_rows lists the messages in fts: retention per channel removes
   * their words (archive_retain.c). */
  if (!db->ins_fts) {
    if (sqlite3_exec(db->db, FTS_SCHEMA, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(db->db, "INSERT INTO fts(rowid, body) VALUES(?,?)", -1,
                           SQLITE_PREPARE_PERSISTENT, &db->ins_fts, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(db->db, "INSERT OR IGNORE INTO fts_rows(id) VALUES(?)", -1,
                           SQLITE_PREPARE_PERSISTENT, &db->ins_ftsrow, NULL) != SQLITE_OK)
      return sql_rc(db->db);
  }
  sqlite3_bind_int64(db->ins_fts, 1, (sqlite3_int64)id);
  sqlite3_bind_text(db->ins_fts, 2, p, (int)len, SQLITE_STATIC);
  int rc = step(db->db, db->ins_fts);
  if (rc < 0) return rc;
  sqlite3_bind_int64(db->ins_ftsrow, 1, (sqlite3_int64)id);
  return step(db->db, db->ins_ftsrow);
}

int cad__arch_db_index(cad__arch_db_t *db, const cad__arch_chan_t *ch, uint64_t id, const char *p,
                       size_t len, cad_arena_t *ar) {
  int rc = 0;
  if (ch->fts && len) rc = index_text(db, id, p, len);
  if (rc < 0 || !ch->nfields) return rc;
  cad_arena_reset(ar);
  cad_hl7_msg_t m;
  /* A frame that is not a message has no fields (it is still archived). */
  if (cad_hl7_parse(&m, p, len, ar, NULL, NULL) != 0) return 0;
  rc = index_fields(db, ch, id, &m, ar);
  cad_arena_reset(ar);
  return rc;
}

/* ---- the query side ----------------------------------------------------- */

bool cad__arch_field_name(const char *name, size_t len, char out[64]) {
  cad_hl7_path_t p;
  if (len && cad_hl7_path_parse(name, len, &p, NULL, NULL) == 0 && p.field > 0) {
    return cad_hl7_path_format(&p, out, 64) < 64;
  }
  if (len == 0 || len >= 64) return false;
  memcpy(out, name, len);
  out[len] = 0;
  return true;
}

bool cad__arch_fts_query(const char *text, char *out, size_t cap) {
  /* Each word becomes an FTS5 string ("..." with " doubled): whatever it
   * holds (AND, NEAR, *, :, ^, parentheses, quotes) is then text to look
   * for, never query syntax.  Words side by side: all of them. */
  size_t n = 0, words = 0;
  const char *s = text;
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    if (!*s) break;
    if (n + 3 > cap) return false;
    if (words++) out[n++] = ' ';
    out[n++] = '"';
    for (; *s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r'; s++) {
      if (n + 4 > cap) return false;
      if (*s == '"') out[n++] = '"';
      out[n++] = *s;
    }
    out[n++] = '"';
  }
  if (!words || n + 1 > cap) return false;
  out[n] = 0;
  return true;
}
