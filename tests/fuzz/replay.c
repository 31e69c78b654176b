/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replays a fuzz target's corpus without libFuzzer, for `make check`: each
 * argument is a file or a directory of files, each fed once to
 * LLVMFuzzerTestOneInput(); without arguments, the target's corpus
 * $top_srcdir/tests/fuzz/corpus/FUZZ_NAME.  Prints TAP, one line per input.  A crash is a
 * crash; a target signals a broken property by aborting.
 */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n;

static void run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		printf("not ok %d - %s: cannot open\n", ++n, path);
		return;
	}
	size_t cap = 1 << 16, len = 0;
	uint8_t *buf = malloc(cap);
	size_t got;
	while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
		len += got;
		if (len == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	if (!buf)
		abort();
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	printf("ok %d - %s\n", ++n, strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
	fflush(stdout);
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	/* without arguments: this target's corpus in the source tree */
	char *def[2] = {argv[0], NULL};
	if (argc < 2) {
		const char *top = getenv("top_srcdir");
		if (asprintf(&def[1], "%s/tests/fuzz/corpus/%s", top ? top : ".", FUZZ_NAME) < 0)
			abort();
		argv = def;
		argc = 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			printf("not ok %d - %s: missing\n", ++n, argv[i]);
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			run_file(argv[i]);
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		char **names = NULL;
		size_t k = 0;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			names = realloc(names, (k + 1) * sizeof(char *));
			if (!names || asprintf(&names[k], "%s/%s", argv[i], e->d_name) < 0)
				abort();
			k++;
		}
		if (d)
			closedir(d);
		qsort(names, k, sizeof(char *), cmp);
		for (size_t j = 0; j < k; j++) {
			run_file(names[j]);
			free(names[j]);
		}
		free(names);
	}
	printf("1..%d\n", n);
	free(def[1]);
	return 0;
}
