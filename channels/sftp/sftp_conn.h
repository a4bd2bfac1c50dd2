/* sftp_conn.h - one SFTP connection (libssh), in blocking calls meant for a
 * thread of their own (sftp_bg.h): never call these on the event loop.
 *
 * Host keys are always checked: the server's key must be in `known_hosts`
 * (OpenSSH's format; "[host]:port" entries for a port other than 22).  A
 * key that differs from the one recorded is refused with an error that says
 * so and gives the server's fingerprint; a host that is not in the file is
 * refused the same way (add it after checking its fingerprint, e.g. with
 * `ssh-keyscan -p PORT HOST >> known_hosts`).  The system-wide known_hosts
 * is not read.  Authentication: a private key file (`key`, its passphrase
 * from the environment variable named by `passphrase_env` when it has one)
 * or a password from the environment variable named by `password_env`.
 * Secrets never come from the configuration file.
 *
 * Timeouts: `timeout_ms` bounds the connection and every wait for the
 * server (libssh's SSH_OPTIONS_TIMEOUT).  Memory: a connection holds
 * libssh's session and a 64 KiB copy buffer; transfers stream.
 *
 * Errors: functions return 0 or a negative CAD_E_* / -errno code and write
 * a PHI-free reason to err (NUL-terminated, at most cap bytes).
 */
#ifndef CAD_SFTP_CONN_H
#define CAD_SFTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cad_sftp_opts {
  const char *host;
  int port; /* default 22 */
  const char *user;
  const char *known_hosts;    /* required */
  const char *key;            /* a private key file, or NULL */
  const char *passphrase_env; /* the key's passphrase: this environment variable */
  const char *password_env;   /* or a password: this environment variable */
  uint64_t timeout_ms;        /* default 30000 */
} cad_sftp_opts_t;

typedef struct cad_sftp cad_sftp_t;

/* Connect, check the host key, authenticate, start SFTP. */
int cad_sftp_connect(const cad_sftp_opts_t *o, cad_sftp_t **out, char *err, size_t cap);
void cad_sftp_close(cad_sftp_t *c);

typedef struct cad_sftp_entry {
  const char *name; /* borrowed for the callback */
  uint64_t size;
  uint64_t mtime; /* seconds */
  bool regular;
} cad_sftp_entry_t;

/* Call cb for every entry of remote folder `dir` (not "." and "..");
 * cb returns 0 to go on, nonzero to stop. */
int cad_sftp_list(cad_sftp_t *c, const char *dir, int (*cb)(void *ud, const cad_sftp_entry_t *e),
                  void *ud, char *err, size_t cap);

/* Copy remote file `path` into fd (from its start); *bytes copied. */
int cad_sftp_download(cad_sftp_t *c, const char *path, int fd, uint64_t *bytes, char *err,
                      size_t cap);

/* Write `len` bytes as a new file in remote folder `dir`: a temporary name
 * (".<name>.<random>.part"), fsync on the server when it offers
 * fsync@openssh.com, then renamed to `name` without replacing anything
 * (a taken name gets "~2", "~3"... before its last '.'; the name used goes
 * to `final`).  The bytes come from `read(ud, buf, cap)` calls (0 = end,
 * negative = error), so a large batch streams. */
int cad_sftp_put(cad_sftp_t *c, const char *dir, const char *name, uint32_t mode,
                 long (*read)(void *ud, char *buf, size_t cap), void *ud, char *final, size_t fcap,
                 char *err, size_t cap);

/* Remove or rename a remote file. */
int cad_sftp_remove(cad_sftp_t *c, const char *path, char *err, size_t cap);
int cad_sftp_rename(cad_sftp_t *c, const char *from, const char *to, char *err, size_t cap);

#endif
