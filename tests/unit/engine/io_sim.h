/* io_sim.h - cad_io_t tables for tests of the store: one that injects
 * faults, one that simulates a power cut.  Both pass every operation on to
 * the system (the files are real), so the code under test runs as it does
 * in production until the table decides otherwise.
 *
 * Fault table: the Nth operation of a chosen kind (writes: write, writev,
 * pwrite, pwritev; syncs: fsync, fdatasync; renames) fails with an error
 * (-EIO, -ENOSPC, -EDQUOT) without doing anything, or, with IOF_SHORT,
 * a write writes only its first half and returns that count (what a disk
 * close to full does).  Sticky: every later operation of that kind fails
 * too, until io_fault_clear().
 *
 * Power table: records, per file, the bytes as of its last fsync/fdatasync
 * (its durable image), and which names are durable: a creation, rename or
 * unlink counts only once its directory is fsync'd, and so does a new
 * directory.  io_power_cut() writes what a power cut at that moment would
 * leave (every durable name with its durable bytes, nothing unsynced) into
 * a fresh directory, optionally with the last unsynced write torn (its
 * first `tear` bytes applied).  Directories that existed before the table
 * saw them are durable.  A hook runs before every operation that changes
 * something, on the thread that calls it (the place to cut).
 *
 * Memory: each table owns its state; free it with its _free function after
 * the last user of its cad_io_t is gone.  Thread safe (one mutex each).
 */
#ifndef CAD_TEST_IO_SIM_H
#define CAD_TEST_IO_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "cad_io.h"

enum { IOF_WRITE = 1, IOF_SYNC = 2, IOF_RENAME = 4 };
#define IOF_SHORT 1 /* as `err`: a short write instead of an error */

typedef struct io_fault io_fault_t;
io_fault_t *io_fault_new(void);
const cad_io_t *io_fault_io(io_fault_t *f);
/* Fail the nth (1 = the next) operation among `ops` with err. */
void io_fault_arm(io_fault_t *f, int ops, long nth, int err, bool sticky);
void io_fault_clear(io_fault_t *f);
long io_fault_injected(io_fault_t *f);
void io_fault_free(io_fault_t *f);

typedef struct io_power io_power_t;
io_power_t *io_power_new(void);
const cad_io_t *io_power_io(io_power_t *p);
/* fn(ud, n) before the nth changing operation (n from 1), with no lock held. */
void io_power_set_hook(io_power_t *p, void (*fn)(void *ud, uint64_t n), void *ud);
/* What a power cut now leaves of everything under `root`, written under
 * `dst` (which must exist and be empty).  tear >= 0: the last unsynced
 * write, if any, survives in part: its first tear % (its length) bytes.
 * Returns 0 or -errno. */
int io_power_cut(io_power_t *p, const char *root, const char *dst, long tear);
void io_power_free(io_power_t *p);

#endif
