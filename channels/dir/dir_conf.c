/* dir_conf.c - the key table of a directory source (dir_conf.h). */
#include "dir_conf.h"

#include <stddef.h>

#define OPT(f) offsetof(cad_dir_source_opts_t, f)

static const char *const formats[] = {"auto", "er7", "mllp", NULL};
static const cad_conf_enum_t format_arg = {formats, 0, "auto, er7 or mllp"};

static const cad_conf_key_t dir_keys[] = {
    {"dir", CAD_CONF_PATH, OPT(dir), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the directory to watch for message files"},
    {"pattern", CAD_CONF_TEXT, OPT(pattern), 0, "*", 0, 0, NULL,
     "a glob the file names must match, like \"*.hl7\""},
    {"done_dir", CAD_CONF_PATH, OPT(done_dir), 0, NULL, 0, 0, NULL,
     "where a file goes once its messages are durable (default <dir>/done)"},
    {"error_dir", CAD_CONF_PATH, OPT(error_dir), 0, NULL, 0, 0, NULL,
     "where a file with refused messages goes, with a .reason file (default <dir>/error)"},
    {"stable", CAD_CONF_DURATION, OPT(stable_ms), CAD_CONF_ZERO_OK, "1s", 10, 3600000, NULL,
     "how long a file must be unchanged before it is read (0 = at once)"},
    {"rescan", CAD_CONF_DURATION, OPT(rescan_ms), 0, "5s", 100, 3600000, NULL,
     "the periodic rescan beside inotify"},
    {"format", CAD_CONF_ENUM, OPT(format), 0, "auto", 0, 0, &format_arg, "auto, er7 or mllp"},
};

const cad_conf_section_t cad_dir_source_conf = {"listen_dir", dir_keys, CAD_CONF_NKEYS(dir_keys),
                                                NULL};
