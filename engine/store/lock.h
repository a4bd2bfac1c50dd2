/* lock.h - one process per data directory.
 *
 * The engine (`run`) and the commands that change the queue (`queue requeue`,
 * `queue purge`) hold an exclusive flock on the data directory itself, opened
 * O_RDONLY|O_DIRECTORY, for as long as they run.  A lock on the directory
 * cannot be unlinked away: a tmp cleaner or a configuration tool deleting
 * files in data_dir does not release it (a lock on data_dir/lock did, and a
 * second engine then appended to the same journal).  The lock goes with the
 * process: it is released when the descriptor is closed or the process dies.
 *
 * DATA_DIR/lock still holds the holder's pid, for an operator to read; it is
 * information only, not the lock.  The holder's pid in the refusal comes
 * from /proc/locks when it can be read, else from that file.
 */
#ifndef CAD_STORE_LOCK_H
#define CAD_STORE_LOCK_H

#include <stddef.h>

/* Create data_dir if needed (mode 0750) and lock it.  Returns the held
 * descriptor (close it to release) or a negative error: -EWOULDBLOCK when
 * another process holds it; `err` (cap bytes) then says so and names the
 * holder's pid when known. */
int cad_store_lock(const char *data_dir, char *err, size_t cap);

#endif
