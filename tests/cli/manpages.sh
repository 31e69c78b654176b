#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Every command in `ocitree --help` has a man page, and every option in a
# command's --help is described in it; ocitree(1) lists every command.
. "$top_srcdir/tests/lib.sh"
M=$top_srcdir/man

# "  name, alias     summary" lines of the grouped help
commands=$($OCITREE --help | awk '/^[A-Z][a-z]+ commands:$/ {on=1; next} /^$/ {on=0} on && /^  [a-z]/ {print $1}' | tr -d ,)
[ -n "$commands" ] || { echo "Bail out! no commands in ocitree --help"; exit 1; }
for c in $commands; do
	page=$M/ocitree-$c.1.md
	check "$c: has a man page" '[ -f "$page" ]'
	[ -f "$page" ] || continue
	check "$c: ocitree(1) lists it" 'grep -q "ocitree-$c\*\*(1)" "$M/ocitree.1.md"'
	check "$c: its page has NAME, SYNOPSIS, DESCRIPTION, OPTIONS" \
		'for s in NAME SYNOPSIS DESCRIPTION OPTIONS; do grep -q "^# $s" "$page" || exit 1; done'
	# the man page text with markdown emphasis removed
	text=$(sed 's/\*\*//g; s/\\//g' "$page")
	# (a --help that failed would list no option and check nothing)
	ok "$c --help" $OCITREE "$c" --help
	for opt in $(grep -oE -- '--[a-z][a-z0-9._-]*' "$T/out" | sort -u); do
		[ "$opt" = --help ] && continue
		check "$c: man page describes $opt" 'grep -qe "$opt" <<<"$text"'
	done
done
# raw's subcommands share ocitree-raw(1)
# (the loop above checks that the page exists; without it every check here fails)
text=$(sed 's/\*\*//g; s/\\//g' "$M/ocitree-raw.1.md" 2>/dev/null)
for sub in unpack runtime-config add-layer; do
	ok "raw $sub --help" $OCITREE raw "$sub" --help
	for opt in $(grep -oE -- '--[a-z][a-z0-9._-]*' "$T/out" | sort -u); do
		[ "$opt" = --help ] && continue
		check "raw $sub: ocitree-raw(1) describes $opt" 'grep -qe "$opt" <<<"$text"'
	done
done
# aliases named in --help appear in their page's NAME
aliases=$($OCITREE --help | awk '/^  [a-z]+, [a-z]+ / {sub(",", "", $1); print $1 ":" $2}')
check "ocitree --help names aliases (remove, rm at least)" 'grep -qx "remove:rm" <<<"$aliases"'
for pair in $aliases; do
	c=${pair%%:*} a=${pair#*:}
	check "$c: its page names the alias $a" 'grep -q "ocitree-$a" "$M/ocitree-$c.1.md"'
done
for opt in --log --verbose --help --version; do
	check "ocitree(1) describes $opt" 'sed "s/\*\*//g" "$M/ocitree.1.md" | grep -qe "$opt"'
done
done_testing
