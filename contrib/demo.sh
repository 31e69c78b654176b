#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The demo behind `./run.sh demo`: makes a small image from nothing and
# shows the main job on it.  Usage: demo.sh PATH/TO/ocitree
set -eu
O=${1:-ocitree}
W=$(mktemp -d /tmp/ocitree-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

cd "$W"
step "$O" init --layout demo
step "$O" new --image demo:base
step "$O" config --image demo:base --tag app --config.env GREETING=hello \
	--config.cmd /bin/sh --config.cmd -c --config.cmd 'echo $GREETING' --author "ocitree demo"
step "$O" tag --image demo:app v1
step "$O" ls --layout demo
step "$O" stat --image demo:v1
step "$O" rm --image demo:base
step "$O" gc --layout demo
printf '\nThe layout in %s is a plain OCI layout: skopeo, umoci and runc read it.\n' "$W/demo"
