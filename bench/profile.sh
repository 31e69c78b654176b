#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# bench/profile.sh [OCITREE] [CORPUS]: where the wall time of issue #15's
# four cases goes, against their floors.  Root (drops the page cache,
# reads tracefs, runs perf).  About 5 minutes with RUNS=3 on 2 cores
# (4 3/4 to 7 1/2 minutes at a load of 3 to 7).
#
#   sudo RUNS=3 bench/profile.sh _build/ocitree /var/tmp/ocitree-corpus
#   sudo CASES="warm" PERF=0 bench/profile.sh ...
#
# Cases (CASES, default "cold fullread warm unpack"), each run alternating
# with its floors, RUNS times, in the same cache state (as bench/mount.sh):
#   cold      no cached index, page cache dropped: mount slim + read
#             /etc/os-release; floor: igzip -dc of slim's layers, cold
#   fullread  index cached, page cache dropped, fresh mount (not timed):
#             find | xargs cat of every file; floor: igzip -dc, cold; and
#             (info) the same read a second time through the same mount
#   warm      index cached, page cache dropped: mount + read os-release;
#             floors: a cold `cat --version`, a cold `OCITREE --version`
#   unpack    ocitree unpack of slim onto a brand-new ext4 (a loop device,
#             as bench/unpack-repack.sh), warm (blobs cached) and cold;
#             floors: tar -xf of the layers decompressed beforehand (not
#             timed), and igzip -dc | tar -x
#
# For every run of every variant it records (medians are reported):
#   wall      $EPOCHREALTIME around the timed part
#   cpu       user and system seconds of three cgroup-v2 groups made for the
#             run: "case" (ocitree: mount daemon, or unpack), "reader"
#             (find/xargs/cat) and "floor" (igzip, tar, cat --version),
#             from their cpu.stat; daemons exit at unmount, so their time
#             is complete when read.  Kernel work done in kernel threads
#             (kworker, loop, jbd2, softirqs on idle CPUs) is not in them:
#             the perf profile shows it
#   machine   user, system, idle, iowait seconds of the machine, deltas of
#             /proc/stat (all CPUs: other processes included)
#   fuse      from a private tracefs instance with fuse:fuse_request_send
#             and fuse_request_end: requests on this mount's connection by
#             opcode, bytes of replies (out.h.len), summed round-trip time
#             by opcode (send to end), and "busy": the time at least one
#             request was in flight
#   block     block:block_rq_issue/complete: requests and bytes read and
#             written per disk, and the disk's busy time (a request in
#             flight); machine-wide, and the reads issued by our processes
#             (this script's descendants, from sched_process_fork) apart
#   timeline  (cold and warm cases) ms from the start of the timed part to
#             the first exec and last exit of our programs, the first
#             request and last reply of each FUSE opcode, the first block
#             read and the last completion
# Then, with PERF=1 (default), one more run of the case and of its first
# floor under `perf record -a -g --kernel-callchains --all-cgroups -e
# cpu-clock -F FREQ`, enabled only around the timed part; the samples'
# process role comes from the cgroup (ocitree, reader, floor), else the comm
# (kernel threads, idle, perf, other processes: the other users of the
# machine), their category from the self symbol (see categorise below):
# CPU seconds in inflate / crc / sha256 / tar scan / other user code, and in
# the kernel's FUSE / copies and pipes / page cache and mm / fs (ext4, vfs)
# / block / scheduler / other; the top symbols of each role; and ocitree's
# threads with their categories (the unpack's inflate, hashing and writer
# threads).  In this VM cpu-clock samples taken with interrupts off land
# on the irq enable (pvm_irq_enable): those go to the first caller in the
# kernel stack that has a category, shown as "pvm_irq_enable<caller".
#
# Output: `report` lines, then a markdown table (case | wall vs floor | CPU
# split | FUSE requests | I/O | where the time is).  Other processes on
# the machine change wall times and idle/iowait, not CPU seconds nor
# request counts: the load is printed with each case.
set -uo pipefail
OCITREE=$(realpath "${1:-_build/ocitree}")
CORPUS=${2:-/var/tmp/ocitree-corpus}
RUNS=${RUNS:-5}
PERF=${PERF:-1}
FREQ=${FREQ:-999}
CASES=${CASES:-"cold fullread warm unpack"}
W=${BENCH_DIR:-/var/tmp/ocitree-bench}/profile
[ "$(id -u)" = 0 ] || { echo "run as root (drops the page cache, tracefs, perf)" >&2; exit 1; }
for t in igzip jq tar mkfs.ext4; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ "$PERF" = 0 ] || command -v perf >/dev/null || { echo "missing perf (PERF=0 to go without)" >&2; exit 1; }
[ -x "$OCITREE" ] || { echo "no ocitree at $OCITREE" >&2; exit 1; }
[ -d "$CORPUS/oci" ] || { echo "no corpus at $CORPUS (../shared/bench/make-corpus.sh)" >&2; exit 1; }
TR=/sys/kernel/tracing
[ -d $TR/events ] || TR=/sys/kernel/debug/tracing
CGROOT=$(findmnt -no TARGET -t cgroup2 | head -1)
[ -n "$CGROOT" ] || { echo "no cgroup2 hierarchy mounted" >&2; exit 1; }

rm -rf "$W"
mkdir -p "$W/m" "$W/mnt" "$W/fs"
export OCITREE_CACHE_DIR=$W/cache
MP=$W/mnt
CG=$CGROOT/ocitree-profile-$$
INST=$TR/instances/ocitree-profile-$$
PERF_PID=

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
report() { printf '%-64s %s\n' "$1" "$2"; }
layers() { # LAYOUT TAG: blob paths of the image's layers
	local m
	m=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$1/index.json")
	jq -r '.layers[].digest' "$1/blobs/sha256/${m#sha256:}" | sed "s|sha256:|$1/blobs/sha256/|"
}
umnt() { "$OCITREE" umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null; for _ in $(seq 50); do findmnt -M "$1" >/dev/null || return 0; sleep 0.05; done; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

cleanup() {
	trap - EXIT INT TERM
	if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; fi
	umnt "$MP"
	umount "$W/fs" 2>/dev/null
	if [ -d "$INST" ]; then
		echo 0 >"$INST/tracing_on"
		echo >"$INST/set_event"
		rmdir "$INST"
	fi
	local g
	for g in case reader floor; do
		[ -d "$CG/$g" ] || continue
		for _ in $(seq 50); do [ -s "$CG/$g/cgroup.procs" ] || break; sleep 0.1; done
		rmdir "$CG/$g" 2>/dev/null || echo "# cgroup $CG/$g still has processes: $(tr '\n' ' ' <"$CG/$g/cgroup.procs")" >&2
	done
	rmdir "$CG" 2>/dev/null
	rm -rf "$W/fs.img" "$W"/*.tar "$W/perf."*.data "$W/ctl" "$W/ack"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- cgroups: one per role, CPU from cpu.stat ----
mkdir -p "$CG/case" "$CG/reader" "$CG/floor"
cg() { echo "$BASHPID" >"$CG/$1/cgroup.procs"; } # in a ( subshell ): put it and its children in group $1
cg_empty() { for _ in $(seq 100); do [ -s "$CG/$1/cgroup.procs" ] || return 0; sleep 0.05; done; echo "# $1 did not exit" >&2; }
cpu_snap() { # user and system usec of the three groups, then /proc/stat's cpu line
	local g
	for g in case reader floor; do awk '/^user_usec/ {u=$2} /^system_usec/ {s=$2} END {printf "%d %d ", u, s}' "$CG/$g/cpu.stat"; done
	head -1 /proc/stat | cut -d' ' -f3-10
}

# ---- tracefs: a private instance with the FUSE and block events ----
mkdir "$INST"
echo 0 >"$INST/tracing_on"
echo "${TRACE_KB:-32768}" >"$INST/buffer_size_kb"
echo mono >"$INST/trace_clock"
for e in fuse:fuse_request_send fuse:fuse_request_end block:block_rq_issue block:block_rq_complete \
	sched:sched_process_fork sched:sched_process_exec sched:sched_process_exit; do
	echo "$e" >>"$INST/set_event" || echo "# no tracepoint $e" >&2
done
echo 'group_dead == 1' >"$INST/events/sched/sched_process_exit/filter" 2>/dev/null
# our processes: this script and its descendants (fork events from the
# threads already in the groups, e.g. the daemon of a mount made before)
trace_start() {
	{ echo $$; cat "$CG"/*/cgroup.threads; } >"$W/seed"
	echo >"$INST/trace"
	echo 1 >"$INST/tracing_on"
	echo start >"$INST/trace_marker"
}
trace_stop() { echo end >"$INST/trace_marker"; echo 0 >"$INST/tracing_on"; }
# trace_parse CONN: key value lines of the FUSE requests of connection
# CONN (the kernel's dev_t of the mount, major << 20 | minor) and of block I/O;
# and a timeline (tl.*, ms from the start of the timed part): first exec and
# last exit of our programs, first request and last reply of each FUSE opcode, first
# and last block request
trace_parse() {
	awk -v conn="$1" '
	FILENAME ~ /partitions$/ { if ($1 ~ /^[0-9]+$/) dn[($1 * 1048576) + $2] = $4; next }
	FILENAME ~ /seed$/ { our[$1 + 0] = 1; next }
	/^#/ { next }
	{
		for (k = 1; k <= NF; k++) if ($k ~ /^(fuse_request_|block_rq_|sched_process_|tracing_mark_write)[a-z]*:$/) break
		if (k > NF) next
		ts = substr($(k - 1), 1, length($(k - 1)) - 1) + 0
		ev = $k
		for (j = 1; j < k; j++) if ($j ~ /^\[[0-9]+\]$/) break
		pid = $(j - 1); sub(/.*-/, "", pid); pid += 0
	}
	ev == "sched_process_fork:" {
		for (j = k + 1; j <= NF; j++) if ($j ~ /^child_pid=/) break
		c = $j; sub(/^child_pid=/, "", c)
		if (pid in our) our[c + 0] = 1
		next
	}
	ev == "tracing_mark_write:" { if ($(k + 1) == "start") t0 = ts; else tend = ts; next }
	ev == "sched_process_exec:" {
		f = $(k + 1); sub(/^filename=/, "", f); sub(/.*\//, "", f); p = $(k + 2); sub(/^pid=/, "", p)
		if (pid in our) { pname[p] = f; if (!(("exec." f) in tl)) tl["exec." f] = ts }
		next
	}
	ev == "sched_process_exit:" {
		p = $(k + 2); sub(/^pid=/, "", p)
		if (p in pname) tl["lastexit." pname[p]] = ts
		next
	}
	ev == "fuse_request_send:" && $(k + 2) == conn {
		u = $(k + 4); op = $(k + 7); gsub(/[()]|FUSE_/, "", op)
		sop[u] = op; sts[u] = ts; n[op]++
		if (!(("fuse." op ".first") in tl)) tl["fuse." op ".first"] = ts
		if (fl++ == 0) fstart = ts
		next
	}
	ev == "fuse_request_end:" && $(k + 2) == conn {
		u = $(k + 4)
		if (!(u in sop)) next
		op = sop[u]; bytes[op] += $(k + 6); lat[op] += ts - sts[u]; delete sop[u]
		tl["fuse." op ".lastreply"] = ts
		if (--fl == 0) fbusy += ts - fstart
		next
	}
	ev == "block_rq_issue:" {
		split($(k + 1), d, ","); dev = d[1] * 1048576 + d[2]
		name = (dev in dn) ? dn[dev] : d[1] ":" d[2]
		rw = $(k + 2) ~ /R/ ? "rd" : ($(k + 2) ~ /W/ ? "wr" : "")
		comm = $NF; gsub(/^\[|\]$/, "", comm)
		for (j = k; j <= NF; j++) if ($j == "+") break
		key = name SUBSEP $(j - 1)
		if (!(key in bts)) { bts[key] = ts; if (bin[name]++ == 0) bst[name] = ts }
		if (rw == "") next
		bn[name, rw]++; bb[name, rw] += $(k + 3); devs[name] = 1
		if (rw == "rd") {
			c = comm; sub(/^kworker.*/, "kworker", c); sub(/[0-9]+$/, "", c)
			if (!(pid in our)) c = "others:" c
			cn[c]++; cb[c] += $(k + 3)
			if (!("blk.first_read" in tl)) tl["blk.first_read"] = ts
		}
		if (pid in our) { on[name, rw]++; ob[name, rw] += $(k + 3) }
		next
	}
	ev == "block_rq_complete:" {
		split($(k + 1), d, ","); dev = d[1] * 1048576 + d[2]
		name = (dev in dn) ? dn[dev] : d[1] ":" d[2]
		for (j = k; j <= NF; j++) if ($j == "+") break
		key = name SUBSEP $(j - 1)
		if (!(key in bts)) next
		delete bts[key]
		if (--bin[name] == 0) bbusy[name] += ts - bst[name]
		tl["blk.last_done"] = ts
		next
	}
	END {
		for (op in n) { tot += n[op]; printf "fuse.n.%s %d\nfuse.kib.%s %.1f\nfuse.ms.%s %.2f\n", op, n[op], op, bytes[op] / 1024, op, lat[op] * 1000 }
		printf "fuse.n %d\nfuse.busy_ms %.2f\n", tot, fbusy * 1000
		for (c in cn) printf "blkc.%s.n %d\nblkc.%s.mib %.2f\n", c, cn[c], c, cb[c] / 1048576
		if (t0) { tl["end"] = tend; for (x in tl) if (tl[x] >= t0) printf "tl.%s %.2f\n", x, (tl[x] - t0) * 1000 }
		for (name in devs) {
			printf "blk.%s.busy_ms %.2f\n", name, bbusy[name] * 1000
			for (i = 1; i <= 2; i++) {
				rw = i == 1 ? "rd" : "wr"
				printf "blk.%s.%s.n %d\nblk.%s.%s.mib %.2f\n", name, rw, bn[name, rw], name, rw, bb[name, rw] / 1048576
				printf "blk.%s.%s.ours.n %d\nblk.%s.%s.ours.mib %.2f\n", name, rw, on[name, rw], name, rw, ob[name, rw] / 1048576
			}
		}
	}' /proc/partitions "$W/seed" "$INST/trace"
	awk '/overrun|dropped/ && $NF > 0 {print "# tracefs lost events: " FILENAME ": " $0 > "/dev/stderr"}' "$INST"/per_cpu/cpu*/stats
}

# ---- one measured run ----
# measure VARIANT SETUP TIMED POST: SETUP (not timed), then TIMED under the
# clock, the trace and the CPU counters, then POST (not timed; unmounts);
# appends "RUN key value" lines to $W/m/VARIANT
CONN=0
measure() {
	local v=$1 setup=$2 timed=$3 post=$4 s e c0 c1 ok=1
	touch "$W/m/$v"
	run=$(awk '$2 == "wall" {n++} END {print n + 1}' "$W/m/$v")
	"$setup"
	c0=$(cpu_snap)
	trace_start
	s=$EPOCHREALTIME
	"$timed" || ok=0
	e=$EPOCHREALTIME
	trace_stop
	CONN=0
	if findmnt -M "$MP" >/dev/null; then
		CONN=$(mountpoint -d "$MP" | awk -F: '{print $1 * 1048576 + $2}')
	fi
	"$post"
	cg_empty case
	c1=$(cpu_snap)
	[ $ok = 1 ] || echo "# $v: run $run failed" >&2
	{
		echo "wall $(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.4f", e - s}')"
		echo "$c0 $c1" | awk -v hz="$(getconf CLK_TCK)" '{
			split("case reader floor", g)
			for (i = 1; i <= 3; i++) {
				printf "cpu.%s.user %.4f\ncpu.%s.sys %.4f\n", g[i], ($(14 + 2 * i - 1) - $(2 * i - 1)) / 1e6, g[i], ($(14 + 2 * i) - $(2 * i)) / 1e6
			}
			# /proc/stat: user nice system idle iowait irq softirq steal
			printf "machine.user %.2f\n", ($21 + $22 - $7 - $8) / hz
			printf "machine.sys %.2f\n", ($23 + $26 + $27 - $9 - $12 - $13) / hz
			printf "machine.idle %.2f\n", ($24 - $10) / hz
			printf "machine.iowait %.2f\n", ($25 - $11) / hz
			printf "machine.steal %.2f\n", ($28 - $14) / hz
		}'
		trace_parse "$CONN"
	} | sed "s/^/$run /" >>"$W/m/$v"
}
# med VARIANT KEY: the median of KEY over the runs of VARIANT (0 in a run without it)
med() {
	awk -v k="$2" '$2 == "wall" {r[$1] = 0} $2 == k {r[$1] = $3} END {for (i in r) print r[i]}' "$W/m/$1" |
		median | awk '{print} END {if (!NR) print 0}'
}
is0() { awk -v x="$1" 'BEGIN {exit !(x + 0 == 0)}'; }
keys() { awk -v p="$2" 'index($2, p) == 1 {print $2}' "$W/m/$1" | sort -u; }
fsum() { awk '{for (i = 1; i <= NF; i++) s += $i} END {printf "%.3f", s}'; }
cpu_of() { # VARIANT: "user sys" of all three groups
	local u=0 s=0 g
	for g in case reader floor; do
		u=$(echo "$u $(med "$1" cpu.$g.user)" | fsum)
		s=$(echo "$s $(med "$1" cpu.$g.sys)" | fsum)
	done
	echo "$u $s"
}

# ---- perf: one more run of a variant, the samples in categories ----
# categorise: by comm, the role (ocitree, reader, floor, kthreads, idle,
# perf, other); by self symbol and DSO, the category.  User code: inflate
# (isal/zlib/zstd decoders), crc (crc32*, isal crc), sha256 (nettle, sha_ni),
# tar scan (functions of src/lib/tar-scan.c, from nm -l, and tar_*), other;
# sha256 also takes the functions of src/lib/sha256-pair.c.
# Kernel: fuse (fuse_*, the /dev/fuse device), copies+pipes (copy_user,
# memcpy/memmove, *_iter copies, splice, pipe), pagecache+mm (filemap,
# folios, readahead, faults, page allocation, lru, memcg, xarray), fs (ext4,
# jbd2, dcache, lookups, inodes, vfs, slab), block (blk, bio, virtio,
# loop), sched (schedule, wakeups, futex, context switch), idle (the idle
# loop and the hypervisor halt), other (syscall entry, exec, irq, ...).
TARSYMS=$(nm -l "$OCITREE" 2>/dev/null | awk '/tar-scan\.c/ && $2 ~ /^[tT]$/ {printf "%s ", $3}')
SHASYMS=$(nm -l "$OCITREE" 2>/dev/null | awk '/sha256-pair\.c/ && $2 ~ /^[tT]$/ {printf "%s ", $3}')
categorise() { # FILE: "role category samples" and "thread NAME category samples" lines
	# the role of each thread, from the cgroup perf recorded with the sample
	perf report -i "$1" --stdio --no-children -g none -t '|' --sort cgroup,pid 2>/dev/null |
		awk -F'|' -v cg="${CG#"$CGROOT"}/" '!/^#/ && NF >= 3 {
			split($3, t, ":"); tid = t[1] + 0; c = $2; gsub(/ /, "", c)
			if (index(c, cg) == 1) print tid, substr(c, length(cg) + 1)
		}' >"$W/roles"
	# self symbols (-G), then the kernel call chains of the same samples
	perf script -i "$1" -G -F comm,tid,ip,sym,dso 2>/dev/null >"$W/self"
	perf script -i "$1" -F comm,tid,ip,sym,dso 2>/dev/null | awk -v tarsyms="$TARSYMS" -v shasyms="$SHASYMS" '
	function kcat(sym) {
		if (sym ~ /idle|safe_halt|cpuidle|mwait|poll_idle|do_idle/) return "k-idle"
		if (sym ~ /^(fuse_|__fuse_|fuse|request_wait_answer|queue_request|backing_file)/) return "k-fuse"
		if (sym ~ /copy_user|copy_to_user|copy_from_user|memcpy|memmove|memset|rep_movs|copy_page|_copy_to_iter|_copy_from_iter|copyout|copyin|copy_mc|splice|pipe_|anon_pipe|iov_iter/) return "k-copies"
		if (sym ~ /filemap|folio|readahead|page_cache|fault|alloc_pages|get_page_from_freelist|rmqueue|free_pcp|free_unref|free_pages|__free_page|lru|mem_cgroup|memcg|xa_|xas_|clear_page|zap_|unmap|mmap|vma|pte|pmd|shrink|workingset|mark_page|mapping|truncate|invalidate|tlb|smp_call_function|on_each_cpu/) return "k-pagecache"
		if (sym ~ /^(ext4|__ext4|jbd2|__jbd2|d_|__d_|dput|dentry|lookup|path_|link_path|walk_component|inode|iput|__iget|vfs_|do_sys_open|do_filp_open|getname|kmem_cache|__kmem|kfree|__kmalloc|kmalloc|mb_|crc32c|chksum|security_|generic_perm|make_kuid|from_kuid|mnt_|may_|step_into|filename_|do_mkdirat|do_renameat|do_unlinkat|do_symlinkat|do_linkat|utimes|notify_change|setattr|simple_|fsnotify|__fsnotify|xattr|posix_acl|iterate_dir|filldir|dcache|__lookup)/) return "k-fs"
		if (sym ~ /^(blk|__blk|bio|__bio|submit_bio|virtblk|virtqueue|vring|vp_|virtio|loop_|lo_|scsi|nvme|dd_|bfq|kyber|sbitmap|__submit_bio|mpage|iomap)/) return "k-block"
		if (sym ~ /schedule|switch_to|finish_task_switch|wake|futex|pick_next|enqueue|dequeue|update_curr|update_load|psi_|ttwu|sched|select_task_rq|newidle|load_balance|native_sched_clock/) return "k-sched"
		return "k-other"
	}
	function role(comm, tid) {
		if (tid in r) return r[tid] == "case" ? "ocitree" : r[tid]
		if (comm ~ /^swapper/) return "idle"
		if (comm ~ /^(kworker|ksoftirqd|jbd2|loop|kswapd|rcu|migration|kcompactd|khugepaged|kthreadd|writeback|kblockd|irq\/)/) return "kthreads"
		if (comm ~ /^perf/) return "perf"
		return "other"
	}
	BEGIN {
		n = split(tarsyms, t, " "); for (i = 1; i <= n; i++) tar[t[i]] = 1
		n = split(shasyms, t, " "); for (i = 1; i <= n; i++) sha[t[i]] = 1
		while ((getline l <ENVIRON["RF"]) > 0) { split(l, f, " "); r[f[1]] = f[2] }
	}
	# the sample line of -G: comm tid ip sym (dso)
	function sample() {
		if ((getline l <ENVIRON["SF"]) <= 0) return 0
		m = split(l, f, " "); dso = f[m]; sym = f[m - 1]; tid = f[m - 3] + 0
		comm = f[1]; for (i = 2; i <= m - 4; i++) comm = comm " " f[i]
		return 1
	}
	function flush(   c, i, x) {
		if (!have) return
		have = 0
		if (!sample()) return
		if (dso !~ /kernel/) {
			if (sym ~ /crc/) c = "crc"
			else if ((sym in sha) || sym ~ /sha256|sha_ni|sha2_|SHA256/) c = "sha256"
			else if (sym ~ /inflate|huff|HUF_|FSE_|ZSTD_decomp|ZSTD_exec|ZSTD_decode|decode_|igzip|isal_/ || dso ~ /libz\.|libisal|libzstd/) c = "inflate"
			else if ((sym in tar) || sym ~ /^tar_/) c = "tarscan"
			else c = "user-other"
		} else {
			# self symbol; samples deferred to an irq enable, and generic
			# helpers, go to the first caller with a category
			c = kcat(sym)
			for (i = 2; c == "k-other" && i <= nf; i++) {
				if (fr[i] ~ /^(do_syscall_64|entry_SYSCALL|asm_|ret_from_fork|kthread|worker_thread|start_kernel|common_startup)/) break
				x = kcat(fr[i]); if (x != "k-other") { c = x; sym = sym "<" fr[i] }
			}
		}
		ro = role(comm, tid)
		cnt[ro " " c]++
		sy[ro " " sym]++
		if (ro == "ocitree") { th = comm "[" tid "]"; gsub(/ /, "_", th); tc[th " " c]++ }
	}
	/^[^\t]/ { flush(); have = 1; nf = 0; next }
	/^\t/ { fr[++nf] = $2 }
	END {
		flush()
		for (x in cnt) print x, cnt[x]
		for (x in tc) print "thread", x, tc[x]
		for (x in sy) print "sym", x, sy[x]
	}'
}
profile() { # VARIANT SETUP TIMED POST: one run under perf record -a; categories into $W/p/VARIANT
	local v=$1 setup=$2 timed=$3 post=$4 a
	mkdir -p "$W/p"
	"$setup"
	rm -f "$W/ctl" "$W/ack" && mkfifo "$W/ctl" "$W/ack"
	perf record -q -a -g --kernel-callchains --all-cgroups -e cpu-clock -F "$FREQ" -D -1 --control "fifo:$W/ctl,$W/ack" -o "$W/perf.$v.data" >/dev/null 2>&1 &
	PERF_PID=$!
	exec {ctlfd}>"$W/ctl" {ackfd}<"$W/ack"
	echo enable >&$ctlfd
	read -r -t 20 -u $ackfd a
	"$timed"
	echo disable >&$ctlfd
	read -r -t 20 -u $ackfd a
	kill -INT $PERF_PID
	wait $PERF_PID
	PERF_PID=
	exec {ctlfd}>&- {ackfd}<&-
	"$post"
	cg_empty case
	RF=$W/roles SF=$W/self categorise "$W/perf.$v.data" >"$W/p/$v"
	rm -f "$W/perf.$v.data"
}
CATS="inflate crc sha256 tarscan user-other k-fuse k-copies k-pagecache k-fs k-block k-sched k-other k-idle"
psec() { awk -v r="$2" -v c="$3" -v f="$FREQ" '$1 == r && (c == "" || $2 == c) {s += $3} END {printf "%.3f", s / f}' "$W/p/$1"; }
# pcats VARIANT ROLE: "cat 1.23 s" for the categories of ROLE above 2% of it
pcats() {
	local tot c x out=
	tot=$(psec "$1" "$2" "")
	for c in $CATS; do
		x=$(psec "$1" "$2" "$c")
		awk -v x="$x" -v t="$tot" 'BEGIN {exit !(t > 0 && x / t >= 0.02)}' && out+="$c $x, "
	done
	echo "${out%, }"
}
print_profile() { # VARIANT LABEL
	local v=$1 r tot
	[ -s "$W/p/$v" ] || return
	for r in ocitree reader floor kthreads idle other perf; do
		tot=$(psec "$v" $r "")
		is0 "$tot" && continue
		report "$2: perf, $r CPU (s, samples/$FREQ Hz)" "$tot"
		[ $r = idle ] || [ $r = perf ] || report "  $r by category (s)" "$(pcats "$v" $r)"
		case $r in ocitree | reader | floor | kthreads)
			report "  $r top symbols (s; a<b: deferred sample a, categorised by caller b)" "$(awk -v r=$r '$1 == "sym" && $2 == r {print $4, $3}' "$W/p/$v" |
				sort -rn | head -6 | awk -v f="$FREQ" '{printf "%s%s %.3f", (NR > 1) ? ", " : "", $2, $1 / f}')" ;;
		esac
	done
	# ocitree's threads (name[tid]), the busiest first, with their categories
	awk '$1 == "thread" {n[$2] += $4} END {for (t in n) print n[t], t}' "$W/p/$v" | sort -rn | head -6 |
		while read -r n t; do
			report "  ocitree thread(s) $t (s; by category)" "$(awk -v t="$t" -v n="$n" -v f="$FREQ" '$1 == "thread" && $2 == t && $4 / n >= 0.05 {printf ", %s %.0f%%", $3, 100 * $4 / n}' "$W/p/$v" |
				sed "s/^/$(awk -v n="$n" -v f="$FREQ" 'BEGIN {printf "%.3f", n / f}')/")"
		done
}

# ---- report of a variant's medians ----
print_variant() { # VARIANT LABEL
	local v=$1 l=$2 g k d
	report "$l: wall (s)" "$(med "$v" wall)"
	for g in case reader floor; do
		is0 "$(med "$v" cpu.$g.user)" && is0 "$(med "$v" cpu.$g.sys)" && continue
		report "  cpu of $g group, user / sys (s)" "$(med "$v" cpu.$g.user) / $(med "$v" cpu.$g.sys)"
	done
	report "  machine (all CPUs): user / sys / idle / iowait (s)" \
		"$(med "$v" machine.user) / $(med "$v" machine.sys) / $(med "$v" machine.idle) / $(med "$v" machine.iowait)"
	if ! is0 "$(med "$v" fuse.n)"; then
		report "  FUSE requests, total / busy time (ms)" "$(med "$v" fuse.n) / $(med "$v" fuse.busy_ms)"
		for k in $(keys "$v" fuse.n. | sort); do
			k=${k#fuse.n.}
			report "    $k: count / reply KiB / summed round trips (ms)" \
				"$(med "$v" fuse.n.$k) / $(med "$v" fuse.kib.$k) / $(med "$v" fuse.ms.$k)"
		done
	fi
	for d in $(keys "$v" blk. | cut -d. -f2 | sort -u); do
		is0 "$(med "$v" blk.$d.rd.n)" && is0 "$(med "$v" blk.$d.wr.n)" && continue
		report "  block $d: reads n / MiB (ours), writes n / MiB, busy ms" \
			"$(med "$v" blk.$d.rd.n) / $(med "$v" blk.$d.rd.mib) ($(med "$v" blk.$d.rd.ours.n) / $(med "$v" blk.$d.rd.ours.mib)), $(med "$v" blk.$d.wr.n) / $(med "$v" blk.$d.wr.mib), $(med "$v" blk.$d.busy_ms)"
	done
	local top
	top=$(for k in $(keys "$v" blkc. | grep '\.n$'); do k=${k%.n}; echo "$(med "$v" "$k.mib") ${k#blkc.} $(med "$v" "$k.n")"; done |
		sort -rn | head -5 | awk '{printf "%s%s %d/%.2f", (NR > 1) ? ", " : "", $2, $3, $1}')
	[ -z "$top" ] || report "  block reads by issuing comm, n/MiB" "$top"
	if [ "${TIMELINE:-0}" = 1 ]; then
		for k in $(keys "$v" tl.); do echo "$(med "$v" "$k") ${k#tl.}"; done | sort -g |
			while read -r t k; do report "    timeline: $k (ms)" "$t"; done
	fi
}

# the summary table's rows
rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$@")"); }
r2() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
cpu_split() { # VARIANT: "case u+s, reader u+s" / floor
	local g out=
	for g in case reader floor; do
		is0 "$(med "$1" cpu.$g.user)" && is0 "$(med "$1" cpu.$g.sys)" && continue
		out+="$g $(med "$1" cpu.$g.user)u+$(med "$1" cpu.$g.sys)s, "
	done
	echo "${out%, }"
}
fuse_cell() { # VARIANT: total, top opcodes
	local v=$1 k out
	is0 "$(med "$v" fuse.n)" && { echo "-"; return; }
	out="$(med "$v" fuse.n) (busy $(med "$v" fuse.busy_ms) ms): "
	for k in $(for k in $(keys "$v" fuse.n.); do echo "$(med "$v" "$k") ${k#fuse.n.}"; done | sort -rn | head -4 | awk '{print $2}'); do
		out+="$k $(med "$v" fuse.n.$k), "
	done
	echo "${out%, }"
}
io_cell() { # VARIANT: reads/writes per disk with busy time
	local v=$1 d out=
	for d in $(keys "$v" blk. | cut -d. -f2 | sort -u); do
		is0 "$(med "$v" blk.$d.rd.n)" && is0 "$(med "$v" blk.$d.wr.n)" && continue
		out+="$d r $(med "$v" blk.$d.rd.n)/$(med "$v" blk.$d.rd.mib) MiB w $(med "$v" blk.$d.wr.n)/$(med "$v" blk.$d.wr.mib) MiB busy $(med "$v" blk.$d.busy_ms) ms; "
	done
	out=${out%; }
	echo "${out:--}"
}
# verdict CASEVAR FLOORVAR: the gap, the extra CPU and the categories
# (perf) that grew most from the floor to the case, the disk and FUSE busy
# times against the gap
verdict() {
	local v=$1 f=$2 wc wf cc cf out c x y
	wc=$(med "$v" wall)
	wf=$(med "$f" wall)
	cc=$(cpu_of "$v" | fsum)
	cf=$(cpu_of "$f" | fsum)
	out="gap $(awk -v a="$wc" -v b="$wf" 'BEGIN {printf "%.3f", a - b}') s; CPU $cc s vs $cf s ($(r2 "$cc" "$wc") vs $(r2 "$cf" "$wf") CPUs busy)"
	if [ -s "$W/p/$v" ] && [ -s "$W/p/$f" ]; then
		out+="; perf, case - floor:"
		for c in $CATS; do
			[ "$c" = k-idle ] && continue
			x=$(awk -v c="$c" -v f="$FREQ" '$1 ~ /^(ocitree|reader|floor|kthreads)$/ && $2 == c {s += $3} END {printf "%.3f", s / f}' "$W/p/$v")
			y=$(awk -v c="$c" -v f="$FREQ" '$1 ~ /^(ocitree|reader|floor|kthreads)$/ && $2 == c {s += $3} END {printf "%.3f", s / f}' "$W/p/$f")
			echo "$(awk -v x="$x" -v y="$y" 'BEGIN {printf "%.3f", x - y}') $c"
		done | sort -rn | head -3 | while read -r d c; do printf ' %s %+.2f s' "$c" "$d"; done >"$W/vd"
		out+="$(cat "$W/vd")"
	fi
	is0 "$(med "$v" fuse.n)" || out+="; FUSE busy $(med "$v" fuse.busy_ms) ms"
	echo "$out"
}

slim_layers=$(layers "$CORPUS/oci" slim)
RA=$(cat "/sys/class/bdi/$(findmnt -no MAJ:MIN -T "$CORPUS" | tr -d ' ')/read_ahead_kb" 2>/dev/null || echo "?")
T0=$SECONDS
echo "# ocitree profile: $(nproc) cores, $(date -u '+%F %H:%M UTC'), runs=$RUNS, perf=$PERF at $FREQ Hz, load $(load)"
echo "# ocitree: $OCITREE ($("$OCITREE" --version 2>/dev/null | head -1))"
report "read_ahead_kb of the corpus's disk ($(findmnt -no SOURCE -T "$CORPUS"))" "$RA"

# ---- the variants: SETUP, TIMED and POST functions ----
nop() { :; }
cold_setup() { rm -rf "$OCITREE_CACHE_DIR"; drop; }
warm_setup() { drop; }
mount_read() { ( cg case; exec "$OCITREE" mount --image "$CORPUS/oci:slim" "$MP" ) && ( cg reader; exec cat "$MP/etc/os-release" ) >/dev/null; }
unmount() { umnt "$MP"; }
floor_igzip() { ( cg floor; for l in $slim_layers; do igzip -dc <"$l"; done ) >/dev/null; }
full_setup() { drop; ( cg case; exec "$OCITREE" mount --image "$CORPUS/oci:slim" "$MP" ); }
full_read() { ( cg reader; cd "$MP" && find . -type f -print0 | xargs -0 -n 256 cat ) >/dev/null; }
reread_setup() { full_setup && full_read; }
cat_version() { ( cg floor; exec cat --version ) >/dev/null; }
ocitree_version() { ( cg floor; exec "$OCITREE" --version ) >/dev/null; }
fresh_target() { # a brand-new ext4 on a loop device, as bench/unpack-repack.sh
	umount "$W/fs" 2>/dev/null
	rm -f "$W/fs.img"
	truncate -s 32G "$W/fs.img"
	mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$W/fs.img"
	mount -o loop "$W/fs.img" "$W/fs"
	TGT=$W/fs/t
	sync
}
unpack_warm_setup() { fresh_target; }
unpack_cold_setup() { fresh_target; drop; }
unpack_case() { ( cg case; exec "$OCITREE" unpack --image "$CORPUS/oci:slim" "$TGT" ) >/dev/null; }
unpack_tar() { ( cg floor; mkdir "$TGT" && for f in "${tars[@]}"; do tar -xf "$f" -C "$TGT" || exit 1; done ); }
unpack_pipe() { ( cg floor; mkdir "$TGT" && for l in $slim_layers; do igzip -dc <"$l" | tar -x -C "$TGT" || exit 1; done ); }

# run_case NAME SETUP:TIMED:POST:LABEL...: RUNS rounds of the variants in
# turn, then a perf run of the first two, then the report
run_case() {
	local name=$1 i spec v setup timed post label
	shift
	echo "# ---- $name: load before $(load)"
	for i in $(seq "$RUNS"); do
		for spec in "$@"; do
			IFS=: read -r v setup timed post label <<<"$spec"
			measure "$name.$v" "$setup" "$timed" "$post"
		done
	done
	if [ "$PERF" != 0 ]; then
		for spec in "${@:1:${PROF_N:-2}}"; do
			IFS=: read -r v setup timed post label <<<"$spec"
			profile "$name.$v" "$setup" "$timed" "$post"
		done
	fi
	echo "# $name: load after $(load)"
	for spec in "$@"; do
		IFS=: read -r v setup timed post label <<<"$spec"
		print_variant "$name.$v" "$name: $label"
		print_profile "$name.$v" "$name: $label"
	done
	v=${1%%:*}
	local f=${2%%:*}
	report "$name: ratio case / floor" "$(r2 "$(med "$name.$v" wall)" "$(med "$name.$f" wall)")"
}
summary() { # NAME CASEVAR FLOORVAR LABEL TARGET [EXTRA]
	local n=$1 v=$1.$2 f=$1.$3
	row "$4" "$(med "$v" wall) s vs $(med "$f" wall) s = $(r2 "$(med "$v" wall)" "$(med "$f" wall)")x (target $5)" \
		"$(cpu_split "$v") / floor $(cpu_split "$f")" "$(fuse_cell "$v")" "$(io_cell "$v") / floor: $(io_cell "$f")" \
		"$(verdict "$v" "$f")${6:+; $6}"
}

for c in $CASES; do
	case $c in
	cold)
		TIMELINE=1 run_case cold case:cold_setup:mount_read:unmount:"cold mount slim + read os-release" \
			floor:cold_setup:floor_igzip:nop:"igzip -dc of slim's layers, cold"
		summary cold case floor "cold mount + first read" "<= 1.3"
		;;
	fullread)
		"$OCITREE" mount --image "$CORPUS/oci:slim" "$MP" && umnt "$MP" # the index cached
		run_case fullread case:full_setup:full_read:unmount:"full read of slim, fresh mount, cold" \
			floor:warm_setup:floor_igzip:nop:"igzip -dc of slim's layers, cold" \
			reread:reread_setup:full_read:unmount:"the same read again through the same mount, info"
		summary fullread case floor "full read, fresh mount, cold" "<= 1.5" \
			"the same read again through the same mount: $(med fullread.reread wall) s, $(cpu_split fullread.reread), FUSE $(med fullread.reread fuse.n) requests"
		;;
	warm)
		"$OCITREE" mount --image "$CORPUS/oci:slim" "$MP" && umnt "$MP" # the index cached
		TIMELINE=1 PROF_N=1 run_case warm case:warm_setup:mount_read:unmount:"warm mount + read os-release" \
			catv:warm_setup:cat_version:nop:"cold cat --version" \
			ociv:warm_setup:ocitree_version:nop:"cold ocitree --version"
		a=$(med warm.case wall) b=$(med warm.catv wall) d=$(med warm.ociv wall)
		report "warm: case - cold cat --version - cold ocitree --version (ms)" \
			"$(awk -v a="$a" -v b="$b" -v d="$d" 'BEGIN {printf "%.1f", (a - b - d) * 1000}')"
		report "warm: wall, case / cat --version / ocitree --version (ms)" \
			"$(awk -v a="$a" -v b="$b" -v d="$d" 'BEGIN {printf "%.1f / %.1f / %.1f", a * 1000, b * 1000, d * 1000}')"
		row "warm mount + first read" "$(awk -v a="$a" 'BEGIN {printf "%.1f ms", a * 1000}') (target <= 25 ms); cold exec of cat $(awk -v b="$b" 'BEGIN {printf "%.1f", b * 1000}') ms + of ocitree $(awk -v d="$d" 'BEGIN {printf "%.1f", d * 1000}') ms" \
			"$(cpu_split warm.case)" "$(fuse_cell warm.case)" "$(io_cell warm.case); exec floors: $(io_cell warm.catv) / $(io_cell warm.ociv); read_ahead_kb $RA" \
			"$(verdict warm.case warm.ociv)"
		;;
	unpack)
		# the tar floor's input: the layers decompressed beforehand, outside
		# the target file system and the timing (as bench/unpack-repack.sh)
		tars=()
		for l in $slim_layers; do
			tars+=("$W/${l##*/}.tar")
			igzip -dc "$l" >"${tars[-1]}"
		done
		for mode in warm cold; do
			run_case unpack-$mode case:unpack_${mode}_setup:unpack_case:nop:"ocitree unpack slim onto a new ext4, $mode" \
				tar:unpack_${mode}_setup:unpack_tar:nop:"tar -xf of the decompressed layers, $mode" \
				pipe:unpack_${mode}_setup:unpack_pipe:nop:"igzip -dc | tar -x, $mode"
			report "unpack-$mode: ratio case / igzip -dc | tar -x" "$(r2 "$(med unpack-$mode.case wall)" "$(med unpack-$mode.pipe wall)")"
			summary unpack-$mode case tar "unpack slim, $mode (vs tar -xf)" "<= 1.2" \
				"igzip -dc | tar -x $(med unpack-$mode.pipe wall) s, CPU $(cpu_of unpack-$mode.pipe | fsum) s"
		done
		umount "$W/fs" 2>/dev/null
		rm -f "${tars[@]}" "$W/fs.img"
		;;
	*) echo "unknown case $c" >&2; exit 2 ;;
	esac
done

echo
echo "# profile of $OCITREE, $(date -u '+%F %H:%M UTC'), $RUNS runs, medians; load $(load); $((SECONDS - T0)) s"
echo
echo "| case | wall vs floor | CPU split (s, user u + system s) | FUSE requests | I/O (requests/MiB) | where the time is |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
