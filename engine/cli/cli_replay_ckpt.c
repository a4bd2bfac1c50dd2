/* cli_replay_ckpt.c - the resumable checkpoint of `caduceus replay`
 * (cli_replay_int.h; the format is described at the top of cli_replay.c). */
#include "cli_replay_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "cad_io.h"

pos_t cad__replay_watermark(const replay_t *rp) {
  if (rp->ring_tail != rp->ring_head) return rp->ring[rp->ring_tail % rp->window].pos;
  if (rp->any_dispatched) {
    pos_t p = rp->last_dispatched;
    p.off++;
    return pos_cmp(p, rp->resume_next) > 0 ? p : rp->resume_next;
  }
  return rp->resume_next;
}

int cad__replay_write_snapshot(replay_t *rp) {
  if (!rp->resume_path) return 0;
  cad_buf_t b = CAD_BUF_INIT;
  pos_t wm = cad__replay_watermark(rp);
  uint64_t gen = rp->gen + 1;
  cad_buf_printf(&b, "caduceus-replay-checkpoint 1\ngen %llu\nsources %zu\n",
                 (unsigned long long)gen, rp->rd.nsrc);
  for (size_t i = 0; i < rp->rd.nsrc; i++) cad_buf_printf(&b, "source %zu %s\n", i, rp->rd.src[i]);
  cad_buf_printf(&b, "next %u %llu\n", wm.src, (unsigned long long)wm.off);
  for (size_t i = 0; i < rp->nresume_done; i++)
    if (pos_cmp(rp->resume_done[i], wm) >= 0)
      cad_buf_printf(&b, "done %u %llu\n", rp->resume_done[i].src,
                     (unsigned long long)rp->resume_done[i].off);
  for (uint64_t s = rp->ring_tail; s != rp->ring_head; s++) {
    const ring_ent_t *e = &rp->ring[s % rp->window];
    if (e->done) cad_buf_printf(&b, "done %u %llu\n", e->pos.src, (unsigned long long)e->pos.off);
  }
  cad_buf_printf(&b, "finished %llu accepted %llu refused %llu failed %llu\n",
                 (unsigned long long)rp->c.finished, (unsigned long long)rp->c.accepted,
                 (unsigned long long)rp->c.refused, (unsigned long long)rp->c.failed);
  uLong crc = crc32(0L, (const Bytef *)b.data, (uInt)b.len);
  cad_buf_printf(&b, "crc %08lx\n", (unsigned long)crc);
  if (!b.data) return CAD_E_NOMEM;
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", rp->resume_path);
  int rc = 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) rc = -errno;
  if (!rc) {
    size_t off = 0;
    while (off < b.len) {
      ssize_t w = write(fd, b.data + off, b.len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        rc = -errno;
        break;
      }
      off += (size_t)w;
    }
    if (!rc && fsync(fd) != 0) rc = -errno;
    close(fd);
  }
  if (!rc && rename(tmp, rp->resume_path) != 0) rc = -errno;
  if (!rc) rc = cad_io_fsync_dir(NULL, -1, rp->resume_path);
  cad_buf_free(&b);
  if (rc) {
    fprintf(stderr, "caduceus replay: cannot write the checkpoint %s: %s\n", rp->resume_path,
            cad_strerror(rc));
    return rc;
  }
  rp->gen = gen;
  /* A fresh log for this generation (records of the old one are in the
   * snapshot now). */
  if (rp->log_fd >= 0 && ftruncate(rp->log_fd, 0) == 0) {
    char hdr[64];
    int n = snprintf(hdr, sizeof hdr, "gen %llu\n", (unsigned long long)gen);
    if (pwrite(rp->log_fd, hdr, (size_t)n, 0) != n) rc = CAD_E_IO;
  }
  rp->since_snapshot = 0;
  return rc;
}

void cad__replay_log_finished(replay_t *rp, pos_t p, char kind) {
  if (rp->log_fd < 0) return;
  char line[96], body[64];
  int bn = snprintf(body, sizeof body, "%c %u %llu", kind, p.src, (unsigned long long)p.off);
  uLong crc = crc32(0L, (const Bytef *)body, (uInt)bn);
  int n = snprintf(line, sizeof line, "%s %08lx\n", body, (unsigned long)crc);
  if (write(rp->log_fd, line, (size_t)n) != n)
    fprintf(stderr, "caduceus replay: cannot append to the checkpoint log: %s\n", strerror(errno));
}

static int add_resume_done(replay_t *rp, size_t *cap, pos_t p) {
  if (rp->nresume_done == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    pos_t *n = realloc(rp->resume_done, nc * sizeof *n);
    if (!n) return CAD_E_NOMEM;
    rp->resume_done = n;
    *cap = nc;
  }
  rp->resume_done[rp->nresume_done++] = p;
  return 0;
}

int cad__replay_load_checkpoint(replay_t *rp) {
  FILE *f = fopen(rp->resume_path, "rb");
  if (!f) {
    if (errno == ENOENT) return 1;
    fprintf(stderr, "caduceus replay: %s: %s\n", rp->resume_path, strerror(errno));
    return -1;
  }
  char line[PATH_MAX + 64];
  uLong crc = crc32(0L, Z_NULL, 0);
  bool crc_ok = false, bad = false;
  size_t nsrc = 0, cap = 0, srcs_seen = 0;
  unsigned long long a, b2, c2, d2;
  unsigned u;
  while (fgets(line, sizeof line, f)) {
    size_t l = strlen(line);
    if (strncmp(line, "crc ", 4) == 0) {
      unsigned long want = strtoul(line + 4, NULL, 16);
      crc_ok = want == crc;
      break;
    }
    crc = crc32(crc, (const Bytef *)line, (uInt)l);
    if (l && line[l - 1] == '\n') line[--l] = 0;
    if (sscanf(line, "gen %llu", &a) == 1) {
      rp->gen = a;
    } else if (sscanf(line, "sources %zu", &nsrc) == 1) {
      if (nsrc != rp->rd.nsrc) bad = true;
    } else if (strncmp(line, "source ", 7) == 0) {
      char *sp = strchr(line + 7, ' ');
      size_t idx = strtoul(line + 7, NULL, 10);
      if (!sp || idx >= rp->rd.nsrc || strcmp(sp + 1, rp->rd.src[idx]) != 0) bad = true;
      srcs_seen++;
    } else if (sscanf(line, "next %u %llu", &u, &a) == 2) {
      rp->resume_next.src = u;
      rp->resume_next.off = a;
    } else if (sscanf(line, "done %u %llu", &u, &a) == 2) {
      if (add_resume_done(rp, &cap, (pos_t){u, a})) bad = true;
    } else if (sscanf(line, "finished %llu accepted %llu refused %llu failed %llu", &a, &b2, &c2,
                      &d2) == 4) {
      rp->c.finished = a;
      rp->c.accepted = b2;
      rp->c.refused = c2;
      rp->c.failed = d2;
    }
  }
  fclose(f);
  if (!crc_ok) {
    fprintf(stderr, "caduceus replay: %s: not a valid checkpoint (damaged or incomplete)\n",
            rp->resume_path);
    return -1;
  }
  if (bad || srcs_seen != rp->rd.nsrc) {
    fprintf(stderr,
            "caduceus replay: %s: the checkpoint is for other sources; give the same SOURCE "
            "arguments (and directory contents) as the replay it comes from\n",
            rp->resume_path);
    return -1;
  }
  /* The log of this generation: messages finished after the snapshot. */
  char logp[PATH_MAX];
  snprintf(logp, sizeof logp, "%s.log", rp->resume_path);
  f = fopen(logp, "rb");
  if (f) {
    bool gen_ok = false;
    if (fgets(line, sizeof line, f) && sscanf(line, "gen %llu", &a) == 1 && a == rp->gen)
      gen_ok = true;
    while (gen_ok && fgets(line, sizeof line, f)) {
      char kind;
      unsigned long want;
      size_t l = strlen(line);
      if (!l || line[l - 1] != '\n') break; /* torn last line */
      char *sp = strrchr(line, ' ');
      if (!sp) break;
      *sp = 0;
      want = strtoul(sp + 1, NULL, 16);
      if (crc32(0L, (const Bytef *)line, (uInt)strlen(line)) != want) break;
      if (sscanf(line, "%c %u %llu", &kind, &u, &a) != 3) break;
      pos_t p = {u, a};
      if (pos_cmp(p, rp->resume_next) < 0) continue;
      if (add_resume_done(rp, &cap, p)) break;
      rp->c.finished++;
      if (kind == 'A') rp->c.accepted++;
      else if (kind == 'R') rp->c.refused++;
      else rp->c.failed++;
    }
    fclose(f);
  }
  if (rp->nresume_done) qsort(rp->resume_done, rp->nresume_done, sizeof *rp->resume_done, pos_qcmp);
  rp->c_prev = rp->c;
  return 0;
}
