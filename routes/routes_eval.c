/* routes_eval.c - evaluating compiled routes against one message: the
 * filters (routes_cond.c), then each matching route's steps on its own copy
 * (routes_steps.c).  Depends on both; neither depends on this file.
 *
 * Everything allocated here comes from the caller's arena.  Filters read the
 * message as received; every matching route with transforms works on its own
 * copy of the tree (cad_hl7_clone: fields are copied on first write), or, when
 * it only rewrites fields, on its own edits kept beside the message
 * (routes_overlay.c), so routes never see each other's changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"
#include "cad_error.h"
#include "routes_int.h"

/* ---- messages in the arena ---------------------------------------------- */

/* An unchanged message whose terminators are all \r is its own output.  A
 * segment never holds a line break (the parser ends it there), so only the
 * bytes between segments need looking at, not the whole input as
 * cad_hl7_serialize_span() does. */
static bool cr_only(const cad_hl7_msg_t *m) {
  const char *at = m->input.p, *end = m->input.p + m->input.len;
  /* The usual layout first: segments one after the other from the first
   * byte, each ended by a single \r. */
  const cad_hl7_seg_t *s = m->segs;
  uint32_t n = m->nsegs, k = 0;
  if (n && s[0].raw.p == at)
    for (; k + 1 < n; k++) {
      const char *t = s[k].raw.p + s[k].raw.len;
      if (t + 1 != s[k + 1].raw.p || *t != '\r') break;
    }
  if (n && s[0].raw.p == at && k + 1 == n) {
    const char *t = s[k].raw.p + s[k].raw.len;
    for (; t < end; t++)
      if (*t == '\n') return false;
    return true;
  }
  for (uint32_t i = 0; i <= m->nsegs; i++) {
    const char *to = i < m->nsegs ? m->segs[i].raw.p : end;
    for (; at < to; at++)
      if (*at == '\n') return false;
    if (i < m->nsegs) at = m->segs[i].raw.p + m->segs[i].raw.len;
  }
  return true;
}

int cad_routes_serialize(const cad_hl7_msg_t *m, cad_arena_t *a, cad_str_t *out) {
  if (!m->dirty && cr_only(m)) {
    *out = m->input;
    return 0;
  }
  return cad_hl7_serialize_span(m, a, out);
}

/* ---- evaluation --------------------------------------------------------- */

const char *cad_route_disposition_name(cad_route_disposition_t d) {
  switch (d) {
    case CAD_ROUTE_DELIVER: return "deliver";
    case CAD_ROUTE_FILTERED: return "filtered";
    case CAD_ROUTE_REJECTED: return "rejected";
    case CAD_ROUTE_ERROR: return "error";
    case CAD_ROUTE_DEAD_LETTER: return "dead_letter";
  }
  return "?";
}

static void set_error(const cad_routes_t *r, cad_route_result_t *res, int route, int step) {
  res->disposition = cad_routes_dead_letters(r) ? CAD_ROUTE_DEAD_LETTER : CAD_ROUTE_ERROR;
  res->nouts = 0;
  res->unrouted = false;
  res->route = route;
  res->step = step;
  /* Say which route and step, ahead of the step's own reason. */
  char tmp[256];
  int n = snprintf(tmp, sizeof tmp, "route %.24s step %d: ", r->routes[route].name, step);
  size_t room = sizeof res->diag.reason - 1, have = n > 0 ? (size_t)n : 0;
  size_t add = strnlen(res->diag.reason, sizeof res->diag.reason);
  if (have + add >= sizeof tmp) add = sizeof tmp - have - 1;
  memcpy(tmp + have, res->diag.reason, add);
  have += add;
  if (have > room) have = room;
  memcpy(res->diag.reason, tmp, have);
  res->diag.reason[have] = 0;
}

/* A route whose steps only rewrite fields (rt->overlay): its edits are kept
 * beside the message as received (routes_overlay.c) and the output written
 * from both.  0 and *out; anything else (a step that fails, a segment to add,
 * out of memory) gives back what the attempt took and returns CAD__REDO: the
 * caller then applies the route to a copy of the tree, which reports errors
 * and allocates exactly as without the overlay. */
static int apply_overlay(cad__ev_t *e, const cad__route_t *rt, cad_str_t *out) {
  cad_arena_mark_t mark = cad_arena_mark(e->a);
  cad__overlay_t ov;
  size_t failed = 0;
  const cad_hl7_msg_t *m = e->m;
  int rc = cad__overlay_init(&ov, m, e->a);
  if (!rc) {
    e->ov = &ov;
    rc = cad__steps_apply(e, rt, true, &failed);
    e->ov = NULL;
  }
  if (!rc) rc = cad__overlay_serialize(&ov, e, out);
  if (!rc) return 0;
  cad_arena_rewind(e->a, mark);
  memset(&e->res->diag, 0, sizeof e->res->diag);
  e->rc = e->hl7_code = 0;
  return CAD__REDO;
}

int cad_routes_eval(const cad_routes_t *r, const char *bytes, size_t len,
                    const cad_hl7_msg_t *parsed, cad_arena_t *arena, cad_route_result_t *res) {
  memset(res, 0, sizeof *res);
  res->route = -1;
  cad_hl7_msg_t local;
  if (!parsed) {
    int rc = cad_hl7_parse(&local, bytes, len, arena, NULL, &res->diag);
    if (rc == CAD_E_NOMEM) {
      res->disposition = CAD_ROUTE_ERROR;
      res->diag.hl7_code = 207;
      snprintf(res->diag.reason, sizeof res->diag.reason, "out of memory while routing");
      return rc;
    }
    if (rc) {
      res->disposition = CAD_ROUTE_REJECTED;
      return 0;
    }
    parsed = &local;
  }
  cad__ev_t e = {r, arena, (cad_hl7_msg_t *)parsed, res, 0, 0, NULL, NULL};
  res->outs = cad_arena_alloc(arena, r->max_outs * sizeof *res->outs);
  if (!res->outs) goto nomem;
  bool matched = false;
  cad_str_t original = {NULL, 0};
  for (size_t i = 0; i < r->nroutes; i++) {
    const cad__route_t *rt = &r->routes[i];
    e.m = (cad_hl7_msg_t *)parsed; /* filters only read */
    if (rt->when) {
      int h = cad__cond_eval(&e, rt->when, &CAD__NO_CTX);
      if (h < 0) goto internal_err;
      if (!h) continue;
    }
    matched = true;
    cad_str_t out;
    if (rt->nsteps && rt->overlay && !r->stepwise && !parsed->dirty &&
        apply_overlay(&e, rt, &out) == 0) {
      /* Edits beside the message, no copy of its tree. */
    } else if (rt->nsteps) {
      cad_hl7_msg_t copy;
      cad_arena_mark_t mark = cad_arena_mark(arena);
      if (cad_hl7_clone(parsed, arena, &copy)) goto nomem;
      e.m = &copy;
      size_t failed = 0;
      int rc = cad__steps_apply(&e, rt, !r->stepwise, &failed);
      if (rc == CAD__REDO) {
        /* A fused run gave up: step by step, from the message as it was,
         * with the memory the attempt took given back. */
        cad_arena_rewind(arena, mark);
        if (cad_hl7_clone(parsed, arena, &copy)) goto nomem;
        memset(&res->diag, 0, sizeof res->diag);
        e.rc = e.hl7_code = 0;
        rc = cad__steps_apply(&e, rt, false, &failed);
      }
      if (rc < 0) {
        set_error(r, res, (int)i, (int)failed + 1);
        return e.hl7_code == 207 && e.rc == CAD_E_NOMEM ? CAD_E_NOMEM : 0;
      }
      if (cad_routes_serialize(&copy, arena, &out)) goto nomem;
    } else {
      if (!original.p && cad_routes_serialize(parsed, arena, &original)) goto nomem;
      out = original;
    }
    for (size_t d = 0; d < rt->nto; d++) {
      cad_route_out_t *o = &res->outs[res->nouts++];
      o->dest = rt->to[d];
      o->route = i;
      o->bytes = out;
    }
    if (!rt->cont) break;
  }
  if (matched) {
    res->disposition = CAD_ROUTE_DELIVER;
    return 0;
  }
  switch (r->unrouted) {
    case UNROUTED_DEST:
      if (cad_routes_serialize(parsed, arena, &original)) goto nomem;
      res->disposition = CAD_ROUTE_DELIVER;
      res->unrouted = true;
      res->outs[0].dest = r->unrouted_dest;
      res->outs[0].route = (size_t)-1;
      res->outs[0].bytes = original;
      res->nouts = 1;
      return 0;
    case UNROUTED_REJECT:
      res->disposition = CAD_ROUTE_REJECTED;
      res->diag.code = CAD_E_NOTFOUND;
      res->diag.hl7_code = 200;
      snprintf(res->diag.reason, sizeof res->diag.reason, "no route accepts this message");
      return 0;
    default: res->disposition = CAD_ROUTE_FILTERED; return 0;
  }
nomem:
  e.rc = CAD_E_NOMEM;
internal_err:
  res->disposition = CAD_ROUTE_ERROR;
  res->nouts = 0;
  res->diag.code = e.rc ? e.rc : CAD_E_NOMEM;
  res->diag.hl7_code = 207;
  snprintf(res->diag.reason, sizeof res->diag.reason, "out of memory while routing");
  return res->diag.code;
}

void cad_routes_set_stepwise(cad_routes_t *r, bool on) { r->stepwise = on; }

/* ---- standalone conditions (routes.h: cad_route_cond_*) ---------------- */

int cad_route_cond_eval(const cad_route_cond_t *k, const cad_hl7_msg_t *m, cad_arena_t *arena) {
  cad_route_result_t res;
  memset(&res, 0, sizeof res);
  cad__ev_t e = {k->r, arena, (cad_hl7_msg_t *)m, &res, 0, 0, NULL, NULL};
  return cad__cond_eval(&e, k->when, &CAD__NO_CTX);
}

bool cad_routes_dead_letters(const cad_routes_t *r) {
  return r && r->on_error == ON_ERROR_DEAD_LETTER;
}
