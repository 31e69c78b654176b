/* SPDX-License-Identifier: Apache-2.0 */
/* The public accessors of the opaque struct ocitree_upper: the record of an
 * upper directory is read back as it was set, survives a reopen, and a
 * failed write keeps the previous one.  Public headers only, as a front
 * end would use them. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ocitree/upper.h"
#include "tap.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

int main(void)
{
	char tmpl[] = "/tmp/ocitree-unit-upper.XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (!dir)
		return 1;
	char upper[256], work[256];
	snprintf(upper, sizeof(upper), "%s/upper", dir);
	snprintf(work, sizeof(work), "%s/upper.work", dir);
	mkdir(upper, 0755);

	struct ocitree_error *err = NULL;
	struct ocitree_upper *u = ocitree_upper_open(upper, NULL, true, &err);
	ok(u != NULL, "a new upper directory opens");
	if (!u)
		return done_testing();
	is_str(ocitree_upper_path(u), upper, "its path");
	is_str(ocitree_upper_work_path(u), work, "its default work directory");
	ok(ocitree_upper_get_state(u) == NULL, "no record yet");

	struct ocitree_upper_state st = {.layout = (char *)"/images/l", .tag = (char *)"t1"};
	st.manifest.media_type = (char *)"application/vnd.oci.image.manifest.v1+json";
	snprintf(st.manifest.digest, sizeof(st.manifest.digest), "%s", D1);
	st.manifest.size = 42;
	st.format.whiteout = OCITREE_UPPER_WHITEOUT_FILE;
	ok(ocitree_upper_set_state(u, &st, &err) == 0, "a record is set");
	const struct ocitree_upper_state *got = ocitree_upper_get_state(u);
	ok(got && got != &st && strcmp(got->tag, "t1") == 0 && strcmp(got->manifest.digest, D1) == 0 &&
		   got->manifest.size == 42 && got->format.whiteout == OCITREE_UPPER_WHITEOUT_FILE,
	   "and read back, as a copy");

	/* a change built from the current record itself */
	struct ocitree_upper_state next = *got;
	next.tag = (char *)"t2";
	snprintf(next.manifest.digest, sizeof(next.manifest.digest), "%s", D2);
	next.clearing = true;
	ok(ocitree_upper_set_state(u, &next, &err) == 0, "a record is set from the current one");
	got = ocitree_upper_get_state(u);
	ok(got && strcmp(got->tag, "t2") == 0 && strcmp(got->layout, "/images/l") == 0 && got->clearing,
	   "with the fields changed and the others kept");

	/* the work directory is gone: the write fails, the record stays
	 * (next pointed into the record set before: build another) */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
	if (system(cmd) != 0)
		return 1;
	next = st;
	next.tag = (char *)"t3";
	snprintf(next.manifest.digest, sizeof(next.manifest.digest), "%s", D2);
	next.clearing = true;
	ok(ocitree_upper_set_state(u, &next, &err) < 0 && err, "a record that cannot be written is an error");
	ocitree_error_free(err);
	err = NULL;
	got = ocitree_upper_get_state(u);
	ok(got && strcmp(got->tag, "t2") == 0, "and the previous record stays");
	ocitree_upper_free(u);

	mkdir(work, 0700);
	u = ocitree_upper_open(upper, NULL, false, &err);
	ok(u && ocitree_upper_get_state(u) == NULL, "a reopened upper directory without record has none");
	if (u) {
		ok(ocitree_upper_set_state(u, &next, &err) == 0, "set again");
		ocitree_upper_free(u);
	}
	u = ocitree_upper_open(upper, NULL, false, &err);
	got = u ? ocitree_upper_get_state(u) : NULL;
	ok(got && strcmp(got->tag, "t3") == 0 && strcmp(got->manifest.digest, D2) == 0 && got->clearing,
	   "the record survives a reopen");
	ocitree_upper_free(u);
	ocitree_error_free(err);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	return done_testing();
}
