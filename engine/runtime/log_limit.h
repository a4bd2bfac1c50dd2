/* log_limit.h - rate limit of repeated warnings, per connection and per peer.
 *
 * A sender can make the engine log one warning per frame it sends (empty
 * frames, garbage frames, refused connections): 60 KB of empty frames were
 * 3.7 MB of log.  Every line goes through cad__log_limit_allow() first;
 * lines at level warn or error are limited.  Lines are counted per (event, connection)
 * and per (event, peer address without its port; "" for lines without a
 * peer) in windows of CAD_LOG_LIMIT_WINDOW_MS:
 *   - at most CAD_LOG_LIMIT_CONN lines of one event per connection, and
 *   - at most CAD_LOG_LIMIT_PEER lines of one event per peer,
 * per window; further ones are counted, not written.  Once the window of a
 * key that suppressed lines is over, one line says how many:
 *   level=warn event=log.suppressed peer=10.0.0.7 conn=12 suppressed=1733
 *     msg="msg.rejected: 1733 lines suppressed in 10 s (rate limit)"
 * (written with the next line of any key once the window is over, by
 * cad__log_limit_flush(), or at process exit).  The table is fixed (128 keys); when full, the
 * oldest key is summarised and reused.  Memory: static, nothing allocated.
 * One thread (the loop's), like the logger.
 */
#ifndef CAD_LOG_LIMIT_H
#define CAD_LOG_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

#define CAD_LOG_LIMIT_WINDOW_MS 10000u
#define CAD_LOG_LIMIT_CONN 10u
#define CAD_LOG_LIMIT_PEER 50u

/* True when a line of `event` with `ctx` at `level` may be written now
 * (counted).  Lines below warn are always written. */
bool cad__log_limit_allow(cad_log_level_t level, const char *event, const cad_log_ctx_t *ctx);
/* Write the summary of every key that suppressed lines (window over or
 * not), and forget every key. */
void cad__log_limit_flush(void);

#endif
