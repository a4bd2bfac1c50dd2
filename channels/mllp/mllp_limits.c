/* mllp_limits.c - the listener's descriptor budget and the NAK of a frame
 * holding a stray 0x1C (mllp_listener.h, mllp_listener_int.h). */
#include "mllp_listener_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cad_error.h"
#include "mllp.h"
#include "mllp_listener.h"

uint64_t cad__mllp_soft_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
  return (uint64_t)rl.rlim_cur;
}

int cad_mllp_raise_fd_limit(uint64_t conns, uint64_t *limit, uint64_t *need) {
  struct rlimit rl;
  *limit = *need = 0;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return 0;
  uint64_t open_now = 0; /* the lowest free descriptor: a lower bound, enough here */
  int probe = dup(0);
  if (probe >= 0) {
    open_now = (uint64_t)probe;
    close(probe);
  }
  *limit = (uint64_t)rl.rlim_cur;
  *need = conns + open_now + CAD_MLLP_FD_SLACK + CAD_MLLP_FD_RESERVE;
  return *limit >= *need ? 0 : CAD_E_FULL;
}

void cad__mllp_format_peer(const struct sockaddr_storage *ss, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss) {
    if (ss->ss_family == AF_INET6) {
      const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
      uv_ip6_name(a, ip, sizeof ip);
      port = ntohs(a->sin6_port);
      snprintf(out, cap, "[%s]:%d", ip, port);
      return;
    }
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  snprintf(out, cap, "%s:%d", ip, port);
}

/* Descriptors are handed out lowest first, so an accepted socket numbered
 * v means at least v + 1 are open. */
bool cad__mllp_fd_reserve_touched(uv_stream_t *s, uint64_t limit, uint64_t reserve) {
  uv_os_fd_t fd;
  if (!limit || uv_fileno((uv_handle_t *)s, &fd) != 0 || fd < 0) return false;
  return (uint64_t)fd + 1 + reserve > limit;
}

int cad__mllp_stray_nak(cad_str_t frame, cad_ack_style_t style, uint64_t conn, uint64_t seq,
                        cad_buf_t *out) {
  cad_ack_msh_t h;
  if (cad_ack_msh_scan(frame.p, frame.len, 0, &h) != 0) {
    memset(&h, 0, sizeof h); /* no header to answer: a NAK all the same */
    h.d = cad_hl7_default_delims;
    h.enc = (cad_str_t){"^~\\&", 4};
  }
  cad_hl7_diag_t dg = {.code = CAD_E_FRAME, .hl7_code = 102};
  snprintf(dg.reason, sizeof dg.reason,
           "0x1C (MLLP end block) inside the message, not followed by 0x0D");
  char ctl[48];
  snprintf(ctl, sizeof ctl, "MLLPNAK%lluN%llu", (unsigned long long)conn, (unsigned long long)seq);
  time_t now = time(NULL);
  struct tm tm;
  int off = localtime_r(&now, &tm) ? (int)(tm.tm_gmtoff / 60) : 0;
  cad_ack_opts_t o = {style, CAD_ACK_REJECT, ctl, now, off, &dg};
  size_t mark = out->len;
  int rc = cad_ack_build(&h, &o, out);
  if (rc == 1) /* echoed header bytes must not frame anything */
    for (size_t i = mark; i < out->len; i++)
      if (out->data[i] == (char)CAD_MLLP_SB || out->data[i] == (char)CAD_MLLP_EB)
        out->data[i] = ' ';
  return rc;
}
