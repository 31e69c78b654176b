#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The bash completion completes commands, options and tags.
. "$top_srcdir/tests/lib.sh"
bc=/usr/share/bash-completion/bash_completion
[ -f "$bc" ] || skip_all "bash-completion is not installed"
. "$bc"
. "$top_srcdir/contrib/bash-completion/ocitree"
ocitree() { "$OCITREE" "$@"; }

complete_line() { # the completions bash offers at the end of LINE
	local line=$1
	COMP_LINE=$line
	COMP_POINT=${#line}
	read -ra COMP_WORDS <<<"$line"
	[[ $line == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_ocitree
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}

L=$T/lay
$OCITREE init --layout "$L" && $OCITREE new --image "$L:alpha" && $OCITREE new --image "$L:beta" || exit 1
cd "$T"
check "commands" '[[ "$(complete_line "ocitree ")" == *"config "*"stat "*"tag "* ]]'
check "an alias" '[[ "$(complete_line "ocitree l")" == *"list "*"ls "* ]]'
is "a command by prefix" "$(complete_line "ocitree sta")" "stat "
check "global options" '[[ "$(complete_line "ocitree --v")" == "--verbose --version " ]]'
check "log levels" '[[ "$(complete_line "ocitree --log ")" == "debug error info warn " ]]'
check "options of a command" '[[ "$(complete_line "ocitree config --config.e")" == "--config.entrypoint= --config.env= --config.exposedports= " ]]'
is "layout directories for --image" "$(complete_line "ocitree stat --image la")" "lay/ lay: "
is "tags after the ':'" "$(complete_line "ocitree stat --image lay:")" "alpha beta "
is "tags by prefix" "$(complete_line "ocitree stat --image lay:b")" "beta "
is "raw subcommands" "$(complete_line "ocitree raw ")" "add-layer runtime-config unpack "
check "options of a raw subcommand" '[[ "$(complete_line "ocitree raw add-layer --comp")" == "--compress= " ]]'
is "build's runtimes" "$(complete_line "ocitree build --runtime ")" "crun runc "
check "build's options" '[[ "$(complete_line "ocitree build --sub")" == *"--substitute= "* && "$(complete_line "ocitree build --sub")" == *"--substitute-file= "* ]]'
is "run: runtimes" "$(complete_line "ocitree run --runtime ")" "crun runc "
is "run: --commit takes tags as --image does" "$(complete_line "ocitree run --commit lay:a")" "alpha "
is "--clear keys" "$(complete_line "ocitree config --clear config.l")" "config.labels "
check "--platform is an option of stat" '[[ "$(complete_line "ocitree stat --pla")" == "--platform= " ]]'
is "--platform values (a tag that is no index: the usual ones)" \
	"$(complete_line "ocitree stat --image lay:alpha --platform linux/arm")" "linux/arm/v7 linux/arm64 "
done_testing
