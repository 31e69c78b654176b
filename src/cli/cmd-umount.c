/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree umount: unmount an ocitree mount (fusermount3 for a user,
 * umount2 for root), lazily on request.
 */
#include "config.h"

#include <sys/mount.h>
#include <sys/wait.h>

#include "cli.h"

/* fusermount3 -u is what an unprivileged user has; root unmounts itself. */
static int run_fusermount(const char *mp, bool lazy, struct ocitree_error **err)
{
	pid_t pid = fork();
	if (pid < 0)
		return ocitree_error_set(err, errno, "fork");
	if (pid == 0) {
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", "--", mp, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", "--", mp, (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return ocitree_error_set(err, errno, "wait for fusermount3");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "unmount '%s': cannot run fusermount3", mp);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return ocitree_error_setk(err, OCITREE_ERROR_FAILED, "unmount '%s': fusermount3 failed", mp);
	return 0;
}

int cmd_umount(int argc, char **argv, struct ocitree_error **err)
{
	enum { OPT_LAZY = OPT_COMMAND_BASE };
	static const struct option opts[] = {
		{"lazy", no_argument, NULL, 'z'},
		CLI_HELP_OPTION,
		{NULL, 0, NULL, 0},
	};
	bool lazy = false;
	int c;
	while ((c = cli_getopt(argc, argv, opts, err)) != -1) {
		switch (c) {
		case 'z':
			lazy = true;
			break;
		CLI_HANDLE_HELP;
		default:
			return -1;
		}
	}
	if (cli_expect_args(argc, argv, 1, 1, err) < 0)
		return -1;
	const char *mp = argv[optind];
	if (geteuid() == 0) {
		if (umount2(mp, lazy ? MNT_DETACH : 0) == 0)
			return 0;
		if (errno == ENOENT || errno == EBUSY)
			return ocitree_error_set(err, errno, "unmount '%s'", mp);
		/* anything else: let fusermount3, which knows FUSE mounts, try */
	}
	return run_fusermount(mp, lazy, err);
}
