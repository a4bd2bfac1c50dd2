/* mllp_listener_int.h - the MLLP listener's private types (a connection, a
 * request, the listener) and the pieces kept apart from the connection
 * machinery (mllp_limits.c).  Internal to channels/mllp. */
#ifndef CAD_MLLP_LISTENER_INT_H
#define CAD_MLLP_LISTENER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ack.h"
#include "cad_mem.h"
#include "hl7.h"
#include "mllp.h"
#include "mllp_listener.h"
#include "transport.h"

typedef struct conn conn_t;

struct cad_mllp_req {
  conn_t *c;
  cad_mllp_req_t *next;
  char *ack; /* framed reply, owned */
  size_t len;
  unsigned flags;
  bool done;
  bool cut;      /* CAD_E_TOOBIG: cut off before its end */
  uint64_t size; /* CAD_E_TOOBIG: bytes of the frame seen */
};

struct conn {
  cad_transport_t *t; /* the socket (TLS or not); NULL once it is closed */
  uv_timer_t timer;
  cad_mllp_listener_t *l;
  conn_t *prev, *next;
  cad_mllp_framer_t fr;
  cad_mllp_conn_info_t info;
  cad_mllp_req_t *head, *tail;
  uint32_t nreq;    /* requests in the FIFO (unanswered or waiting for the head) */
  size_t unsent;    /* bytes handed to uv_write and not yet completed */
  uint32_t nwrites; /* uv_write calls not yet completed */
  uint64_t last_activity, frame_start;
  uint64_t last_read; /* when bytes last came */
  bool eb_wait;       /* a 0x1C is the last byte received, since eb_since */
  uint64_t eb_since;
  uint64_t nak_seq;        /* NAKs built here (stray end blocks) */
  uint64_t content_frames; /* non-empty frames handed over or refused */
  uint64_t skipped_mark;   /* fr.skipped at the last good frame */
  bool skip_reported;
  int open_handles;         /* the timer and the transport */
  const char *close_reason; /* set when closing after the last write */
  bool reading, paused, in_frame;
  bool mem_paused;           /* stopped by the process-wide buffer bound */
  conn_t *mp_prev, *mp_next; /* in mem_paused_head's list while mem_paused */
  size_t accounted;          /* framer capacity counted in buffered_total */
  bool pulling;              /* inside pull_frames (no re-entry) */
  bool more_frames;          /* complete frames may wait in the framer (max_inflight reached) */
  bool stop_frames;          /* hand no more frames over (oversized frame, shutdown) */
  bool draining;             /* no more reading: close once everything is written */
  bool lingering;            /* the transport's lingering close runs (our FIN is sent) */
  bool replies_closed;       /* a closing reply was written: later replies are dropped */
  bool closing;              /* handles are being closed */
};

struct cad_mllp_listener {
  uv_loop_t *loop;
  uv_tcp_t server;
  uv_timer_t drain_timer;
  cad_mllp_listener_opts_t o; /* o.tls and o.allow unused: see below */
  uint64_t fd_limit;          /* soft RLIMIT_NOFILE when started / updated */
  cad_tls_ctx_t *tls;         /* referenced; NULL = plain MLLP */
  cad_cidr_t *allow;          /* owned copy */
  size_t nallow;
  char host[64];
  int port;
  cad_mllp_frame_cb on_frame;
  cad_mllp_event_cb on_event;
  void *data;
  conn_t *conns;
  size_t nconns;
  int open_handles;
  bool closing;
  void (*done)(void *);
  void *done_arg;
};

/* The soft RLIMIT_NOFILE, 0 when unlimited or unknown. */
uint64_t cad__mllp_soft_fd_limit(void);

/* "127.0.0.1:40122" or "[::1]:40122" ("?:0" when ss is NULL). */
void cad__mllp_format_peer(const struct sockaddr_storage *ss, char *out, size_t cap);
/* True when the accepted socket `s` leaves fewer than `reserve` descriptors
 * free below `limit` (0 = no limit): it must be refused. */
bool cad__mllp_fd_reserve_touched(uv_stream_t *s, uint64_t limit, uint64_t reserve);

/* Append to `out` the NAK (AR, ERR 102) of a frame holding a stray 0x1C:
 * built from its MSH when that can be read, else with standard delimiters
 * and an empty MSA-2; its own MSH-10 is "MLLPNAK<conn>N<seq>"; no 0x0B or
 * 0x1C in it.  Returns what cad_ack_build() returns (1 = written). */
int cad__mllp_stray_nak(cad_str_t frame, cad_ack_style_t style, uint64_t conn, uint64_t seq,
                        cad_buf_t *out);

#endif
