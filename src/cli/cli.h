/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ocitree command line: one cmd-<verb>.c per command, each exporting
 * `int cmd_<verb>(int argc, char **argv, struct ocitree_error **err)`.
 * A command returns 0 or <0 with *err set; only main() prints errors and
 * picks the exit status (2 for OCITREE_ERROR_USAGE, 1 otherwise).
 */
#ifndef OCITREE_CLI_H
#define OCITREE_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "common.h"
#include "ocitree/ocitree.h"

struct command {
	const char *name;
	const char *alias;    /* NULL when none */
	const char *group;    /* "image", "layout", "mount" or "raw" */
	const char *summary;  /* one line for `ocitree --help` */
	const char *usage;    /* the argument synopsis */
	const char *help;     /* option descriptions, one per line */
	int (*fn)(int argc, char **argv, struct ocitree_error **err);
};

/* Run as `umoci`: --version, --help and COMMAND --help in umoci 0.6's
 * layout and words (umoci-face.c). */
extern bool cli_as_umoci;
void umoci_print_version(FILE *f);
void umoci_print_main_help(FILE *f, const struct command *commands);
void umoci_print_command_help(FILE *f, const struct command *cmd);

/* Find a command by name or alias in table (NULL-terminated by name). */
const struct command *cli_find_command(const struct command *table, const char *name);
/* Print "Usage: ocitree <name> <usage>\n\n<summary>\n\nOptions:\n<help>". */
void cli_print_help(FILE *f, const char *prefix, const struct command *cmd);
/* The command being run, for usage errors and --help. */
extern const struct command *cli_current;
/* The exit status of a command that succeeds (0 unless it sets another:
 * `run` exits with its container's). */
extern int cli_exit_status;

/* Every command's option table has CLI_HELP_OPTION; its getopt loop has
 * CLI_HANDLE_HELP, which prints the help and makes the command return
 * CLI_EXIT_HELP (main exits 0 without running it). */
#define CLI_EXIT_HELP 1
#define CLI_HELP_OPTION {"help", no_argument, NULL, 'h'}
#define CLI_HANDLE_HELP                                                                                            \
	case 'h':                                                                                                  \
		cli_print_help(stdout, "ocitree", cli_current);                                                    \
		return CLI_EXIT_HELP

/* The same for a command that cleans up at label: sets r and jumps there. */
#define CLI_HANDLE_HELP_GOTO(r, label)                                                                             \
	case 'h':                                                                                                  \
		cli_print_help(stdout, "ocitree", cli_current);                                                    \
		(r) = CLI_EXIT_HELP;                                                                               \
		goto label

/* A getopt_long loop helper: returns the option or -1 at the end; turns
 * unknown options and missing arguments into a usage error (returning '?'). */
/* The word of a long option that getopt_long just matched by a prefix
 * (--config.wo for --config.workingdir), or NULL when it was spelled out.
 * umoci takes no abbreviations: a script written for it must not have one
 * silently mean another flag. */
const char *cli_abbreviated(int argc, char **argv, const struct option *opts, int longidx);
int cli_getopt(int argc, char **argv, const struct option *opts, struct ocitree_error **err);

/* Usage errors that mention `--help`. */
int cli_usage_error(struct ocitree_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Positional argument count check. */
int cli_expect_args(int argc, char **argv, int min, int max, struct ocitree_error **err);

/* --image and --layout */
struct image_ref {
	char *path;
	char *tag;
};
void image_ref_clear(struct image_ref *r);
int cli_image_ref(const char *arg, struct image_ref *out, struct ocitree_error **err);
/* A usage error when --image was not given. */
int cli_require_image(const struct image_ref *ref, struct ocitree_error **err);
/* --tag: check the name and point *tag at it. */
int cli_tag_opt(const char *arg, const char **tag, struct ocitree_error **err);
int cli_layout_path(const char *arg, char **out, struct ocitree_error **err);
/* Parse the options of a command that takes only --layout (and --json when
 * json is not NULL). Returns 0, CLI_EXIT_HELP or -1. */
int cli_parse_layout_opts(int argc, char **argv, char **layout, bool *json, struct ocitree_error **err);
/* The same for commands that take only --image (and --json); positional
 * arguments are left for the caller at argv[optind..]. */
struct platform_opt;
int cli_parse_image_opts(int argc, char **argv, struct image_ref *image, bool *json, struct platform_opt *platform,
			 struct ocitree_error **err);
struct ocitree_layout *cli_open_layout(const char *path, struct ocitree_error **err);

/* --history.* and --no-history, shared by every command that writes an
 * image. */
struct history_opts {
	bool no_history;
	const char *author, *comment, *created, *created_by;
};
#define HISTORY_OPTS_HELP                                                                                          \
	"      --no-history                 do not add a history entry\n"                                          \
	"      --history.author=AUTHOR      author of the history entry\n"                                         \
	"      --history.comment=COMMENT    comment of the history entry\n"                                        \
	"      --history.created=TIME       creation time of the history entry (RFC 3339)\n"                       \
	"      --history.created_by=TEXT    created_by of the history entry\n"
enum {
	OPT_HISTORY_BASE = 1000,
	OPT_NO_HISTORY = OPT_HISTORY_BASE,
	OPT_HISTORY_AUTHOR,
	OPT_HISTORY_COMMENT,
	OPT_HISTORY_CREATED,
	OPT_HISTORY_CREATED_BY,
	OPT_COMMAND_BASE = 1100, /* commands number their own options from here */
};
#define HISTORY_OPTIONS                                                                                            \
	{"no-history", no_argument, NULL, OPT_NO_HISTORY},                                                         \
		{"history.author", required_argument, NULL, OPT_HISTORY_AUTHOR},                                   \
		{"history.comment", required_argument, NULL, OPT_HISTORY_COMMENT},                                 \
		{"history.created", required_argument, NULL, OPT_HISTORY_CREATED},                                 \
		{"history.created_by", required_argument, NULL, OPT_HISTORY_CREATED_BY}
/* Returns true when opt was a history option (and records it). */
bool history_opt(struct history_opts *h, int opt, const char *arg);
/* Check --history.created; call once options are parsed. */
int history_opts_check(const struct history_opts *h, struct ocitree_error **err);
/* Fill *out with the entry to add: defaults (created now or from
 * SOURCE_DATE_EPOCH, author from the config, created_by default_created_by)
 * overridden by the options.  Caller clears *out. */
void history_opts_entry(const struct history_opts *h, const struct ocitree_config *c, const char *default_created_by,
			bool empty_layer, struct ocitree_history *out);

/* --rootless, --uid-map and --gid-map, shared by the commands that map
 * owners (cli-map.c). */
struct map_opts {
	bool rootless;
	struct ocitree_idmap *uid, *gid;
	size_t n_uid, n_gid;
};
#define MAP_OPTS_HELP                                                                                              \
	"      --rootless                   unprivileged mode: no chown or mknod; owners kept in the\n"             \
	"                                   user.rootlesscontainers xattr\n"                                       \
	"      --uid-map=C:H:S              map container uids C..C+S-1 to host uids H.. (repeatable)\n"          \
	"      --gid-map=C:H:S              map container gids C..C+S-1 to host gids H.. (repeatable)\n"
enum {
	OPT_MAP_BASE = 1050,
	OPT_ROOTLESS = OPT_MAP_BASE,
	OPT_UID_MAP,
	OPT_GID_MAP,
	OPT_COMPRESS,
	OPT_LAYER_IMAGE,
	OPT_LAYER_TAG,
	OPT_PLATFORM = 1090,
};
#define MAP_OPTIONS                                                                                                \
	{"rootless", no_argument, NULL, OPT_ROOTLESS}, {"uid-map", required_argument, NULL, OPT_UID_MAP},           \
		{"gid-map", required_argument, NULL, OPT_GID_MAP}
/* Returns 1 when opt was a mapping option (recorded), 0 when not, -1 for a
 * bad value. */
int map_opt(struct map_opts *m, int opt, const char *arg, struct ocitree_error **err);
/* The options for the library; rootless without maps maps root to the
 * caller, as umoci does.  The arrays stay owned by m. */
void map_opts_get(struct map_opts *m, struct ocitree_map_options *out);
void map_opts_clear(struct map_opts *m);

#define COMPRESS_OPTS_HELP                                                                                         \
	"      --compress=ALGO              compress the new layer with gzip, zstd, none or auto (default:\n"  \
	"                                   as the image's newest compressed layer, else gzip)\n"
#define COMPRESS_OPTION {"compress", required_argument, NULL, OPT_COMPRESS}
int compress_opt(const char *arg, enum ocitree_compression *c, struct ocitree_error **err);

/* --platform OS/ARCH[/VARIANT]: which manifest of an image index a command
 * reads, for every command that reads an image (cli.c). */
struct platform_opt {
	bool set;
	struct ocitree_platform p;
};
#define PLATFORM_OPTION {"platform", required_argument, NULL, OPT_PLATFORM}
#define PLATFORM_OPTS_HELP                                                                                         \
	"      --platform=OS/ARCH[/VARIANT] the platform to use of a tag that names an image index\n"             \
	"                                   (default: the host's)\n"
/* Parse a --platform value into *o (a usage error naming the option). */
int platform_opt(const char *arg, struct platform_opt *o, struct ocitree_error **err);
/* The selector for the library: NULL (the host's) when not given. */
const struct ocitree_platform *platform_opt_get(const struct platform_opt *o);
void platform_opt_clear(struct platform_opt *o);
/* Open tag of l for the platform of o (NULL: the host's). */
struct ocitree_image *cli_open_image(struct ocitree_layout *l, const char *tag, const struct platform_opt *o,
				     struct ocitree_error **err);

/* The options the commands that unpack or write layers have in common:
 * --image, --tag, --platform, the owner mapping, --compress and the history
 * options.
 * Each command's table names those it takes (LAYER_IMAGE_OPTION, ...). */
struct layer_opts {
	struct image_ref image;
	const char *tag;                     /* --tag, or NULL */
	struct map_opts maps;
	struct history_opts hist;
	enum ocitree_compression compression; /* auto unless --compress */
	struct platform_opt platform;        /* --platform, where the table has it */
};
#define LAYER_IMAGE_OPTION {"image", required_argument, NULL, OPT_LAYER_IMAGE}
#define LAYER_TAG_OPTION {"tag", required_argument, NULL, OPT_LAYER_TAG}
/* Parse argv against opts: the common options into *o (zeroed by the
 * caller), any other through own(opt, optarg, data, err), which returns 0 or
 * -1; own may be NULL when the table has none.  Then check that --image was
 * given.  Returns 0, CLI_EXIT_HELP or -1.  Clear *o with layer_opts_clear. */
int layer_opts_parse(int argc, char **argv, const struct option *opts, struct layer_opts *o,
		     int (*own)(int opt, const char *arg, void *data, struct ocitree_error **err), void *data,
		     struct ocitree_error **err);
void layer_opts_clear(struct layer_opts *o);

/* The text of `ocitree stat`: umoci 0.6's layout (stat-text.c). */
void stat_print_text(FILE *f, const struct ocitree_image *img);

/* Progress on stderr, only when it is a terminal (cli-map.c). */
void cli_progress(const struct ocitree_progress *p, void *userdata);
/* Clear the progress line, if one was shown. */
void cli_progress_end(void);

/* Output helpers */
char *human_size(int64_t bytes);

/* Run as mount.fuse.ocitree, the mount(8) helper (mount-helper.c). */
int mount_helper_main(int argc, char **argv);

/* A mount of an image (mount-image.c): what `ocitree mount` takes. */
struct cli_mount_request {
	const char *layout, *tag;
	const char *layer; /* --layer N|DIGEST, or NULL */
	long upto;         /* --upto N, 0 when not given */
	const char *cache_dir;
	bool rebuild;
	bool foreground;
	char **mount_opts; /* -o, NULL-terminated; may be NULL */
	const char *upper, *workdir;
	const struct platform_opt *platform; /* --platform, or NULL: the host's */
	/* called in the serving process once the mount is in place; may be NULL */
	void (*ready)(void *data);
	void *ready_data;
};
/* Set the mount up and serve it (see fs_run and fs_run_rw for the life
 * cycle: in the background unless foreground, until unmounted). */
int cli_mount_image(const struct cli_mount_request *r, const char *mountpoint, struct ocitree_error **err);
/* A layer number of --layer and --upto (1 is the lowest). */
int cli_layer_number(const char *opt, const char *s, long *out, struct ocitree_error **err);

/* Each command */
int cmd_init(int argc, char **argv, struct ocitree_error **err);
int cmd_new(int argc, char **argv, struct ocitree_error **err);
int cmd_tag(int argc, char **argv, struct ocitree_error **err);
int cmd_rm(int argc, char **argv, struct ocitree_error **err);
int cmd_ls(int argc, char **argv, struct ocitree_error **err);
int cmd_stat(int argc, char **argv, struct ocitree_error **err);
int cmd_config(int argc, char **argv, struct ocitree_error **err);
int cmd_fsck(int argc, char **argv, struct ocitree_error **err);
int cmd_gc(int argc, char **argv, struct ocitree_error **err);
int cmd_unpack(int argc, char **argv, struct ocitree_error **err);
int cmd_repack(int argc, char **argv, struct ocitree_error **err);
int cmd_insert(int argc, char **argv, struct ocitree_error **err);
int cmd_raw(int argc, char **argv, struct ocitree_error **err);
int cmd_raw_unpack(int argc, char **argv, struct ocitree_error **err);
int cmd_mount(int argc, char **argv, struct ocitree_error **err);
int cmd_umount(int argc, char **argv, struct ocitree_error **err);
int cmd_commit(int argc, char **argv, struct ocitree_error **err);
int cmd_store(int argc, char **argv, struct ocitree_error **err);
int cmd_build(int argc, char **argv, struct ocitree_error **err);
int cmd_run(int argc, char **argv, struct ocitree_error **err);

#endif
