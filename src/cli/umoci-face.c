/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face ocitree shows when it is run as `umoci` (a link, see
 * `make install-umoci-link`): umoci 0.6's --version lines and the layout
 * and words of its --help (urfave/cli's templates), so that scripts which
 * check them (stacker, KIWI, OBS) accept ocitree.  Under its own name
 * nothing here is used.
 */
#include "config.h"

#include "cli.h"

bool cli_as_umoci;

/* the umoci version whose behaviour ocitree follows */
#define UMOCI_COMPAT_VERSION "0.6.0"

/* umoci's own words for its commands (the Usage and ArgsUsage of
 * cmd/umoci); the commands umoci does not have keep ours */
static const struct {
	const char *name, *category, *usage, *args;
} umoci_words[] = {
	{"config", "image", "modifies the image configuration of an OCI image",
	 "--image <image-path>[:<tag>] [--tag <new-tag>]"},
	{"unpack", "image", "unpacks a reference into an OCI runtime bundle", "--image <image-path>[:<tag>] <bundle>"},
	{"repack", "image", "repacks an OCI runtime bundle into a reference", "--image <image-path>[:<new-tag>] <bundle>"},
	{"new", "image", "creates a blank tagged OCI image", "--image <image-path>:<new-tag>"},
	{"tag", "image", "creates a new tag in an OCI image", "--image <image-path>[:<tag>] <new-tag>"},
	{"remove", "image", "removes a tag from an OCI image", "--image <image-path>[:<tag>]"},
	{"stat", "image", "displays status information of an image manifest", "--image <image-path>[:<tag>]"},
	{"insert", "image", "insert content into an OCI image",
	 "--image <image-path>[:<tag>] [--opaque] <source> <target>"},
	{"gc", "layout", "garbage-collects an OCI image's blobs", "--layout <image-path>"},
	{"init", "layout", "create a new OCI layout", "--layout <image-path>"},
	{"list", "layout", "lists the set of tags in an OCI layout", "--layout <image-path>"},
	{"raw", "", "advanced internal image tooling", "<command> [<args>...]"},
	{"raw unpack", "", "unpacks a reference into a rootfs", "--image <image-path>[:<tag>] <rootfs>"},
	{"raw runtime-config", "", "generates an OCI runtime configuration for an image",
	 "--image <image-path>[:<tag>] [--rootfs <rootfs>] <config.json>"},
	{"raw add-layer", "", "add a layer archive verbatim to an image",
	 "--image <image-path>[:<tag>] <new-layer.tar>"},
};

static size_t find_words(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(umoci_words); i++)
		if (strcmp(umoci_words[i].name, name) == 0)
			return i;
	return SIZE_MAX;
}

void umoci_print_version(FILE *f)
{
	/* umoci prints its version, then the specs it was built against */
	fprintf(f, "umoci version %s+ocitree.%s\n", UMOCI_COMPAT_VERSION, PACKAGE_VERSION);
	fprintf(f, "image spec: %s\n", "1.1.0");
	fprintf(f, "runtime spec: %s\n", "1.0.0");
}

static char *command_name(const struct command *c)
{
	return c->alias ? xasprintf("%s, %s", c->name, c->alias) : xstrdup(c->name);
}

void umoci_print_main_help(FILE *f, const struct command *commands)
{
	fprintf(f, "NAME:\n   umoci - umoci modifies Open Container images\n\n"
		   "USAGE:\n   umoci [global options] command [command options] [arguments...]\n\n"
		   "VERSION:\n   %s+ocitree.%s\n\nCOMMANDS:\n",
		UMOCI_COMPAT_VERSION, PACKAGE_VERSION);
	/* urfave/cli: the commands without a category first, then one block
	 * per category in name order, each column as wide as its widest name */
	static const char *const cats[] = {"", "image", "layout", "ocitree"};
	for (size_t k = 0; k < ARRAY_SIZE(cats); k++) {
		size_t width = k == 0 ? strlen("help, h") : 0;
		for (const struct command *c = commands; c->name; c++) {
			size_t w = find_words(c->name);
			const char *cat = w == SIZE_MAX ? "ocitree" : umoci_words[w].category;
			_cleanup_free_ char *n = command_name(c);
			if (strcmp(cat, cats[k]) == 0 && strlen(n) > width)
				width = strlen(n);
		}
		if (k > 0)
			fprintf(f, "\n   %s:\n", cats[k]);
		const char *indent = k > 0 ? "     " : "   ";
		for (const struct command *c = commands; c->name; c++) {
			size_t w = find_words(c->name);
			const char *cat = w == SIZE_MAX ? "ocitree" : umoci_words[w].category;
			if (strcmp(cat, cats[k]) != 0)
				continue;
			_cleanup_free_ char *n = command_name(c);
			fprintf(f, "%s%-*s  %s\n", indent, (int)width, n, w == SIZE_MAX ? c->summary : umoci_words[w].usage);
		}
		if (k == 0)
			fprintf(f, "%s%-*s  %s\n", indent, (int)width, "help, h",
				"Shows a list of commands or help for one command");
	}
	fputs("\nGLOBAL OPTIONS:\n"
	      "   --verbose      alias for --log=info\n"
	      "   --log value    set the log level (debug, info, [warn], error, fatal) (default: \"warn\")\n"
	      "   --help, -h     show help\n"
	      "   --version, -v  print the version\n",
	      f);
}

void umoci_print_command_help(FILE *f, const struct command *cmd)
{
	size_t w = find_words(cmd->name);
	_cleanup_free_ char *n = command_name(cmd);
	fprintf(f, "NAME:\n   umoci %s - %s\n\nUSAGE:\n   umoci %s [command options] %s\n", n,
		w == SIZE_MAX ? cmd->summary : umoci_words[w].usage, cmd->name,
		w == SIZE_MAX ? cmd->usage : umoci_words[w].args);
	const char *cat = w == SIZE_MAX ? "ocitree" : umoci_words[w].category;
	if (*cat)
		fprintf(f, "\nCATEGORY:\n   %s\n", cat);
	fprintf(f, "\nOPTIONS:\n%s   --help, -h                       show help\n", cmd->help ? cmd->help : "");
}
