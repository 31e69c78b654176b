# SPDX-License-Identifier: Apache-2.0
# A loopback docker-registry and a podman kept off the host's state, for the
# scripts that pull through `ocitree store` (tests/fs/store.sh and
# bench/store.sh): one copy of the registry's start-up and of podman's
# containers.conf, so that the test and the benchmark run the same set-up.
# Sourced; needs python3, /usr/bin/docker-registry and bash's /dev/tcp.

# registry_start DIR LEVEL: a registry storing under DIR/registry, its
# config DIR/registry.yml, its log (LEVEL and the access log)
# DIR/registry.log; sets PORT, REG (127.0.0.1:PORT) and REG_PID.  Returns
# non-zero when it does not listen within 10 seconds.
registry_start() {
	local dir=$1 level=$2 _
	PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	REG=127.0.0.1:$PORT
	cat >"$dir/registry.yml" <<EOC
version: 0.1
log:
  level: $level
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: $REG
EOC
	/usr/bin/docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
	REG_PID=$!
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# registry_stop: end the registry of registry_start (SIGKILL after 5 s).
registry_stop() {
	[ -n "${REG_PID:-}" ] || return 0
	kill "$REG_PID" 2>/dev/null || return 0
	local _
	for _ in $(seq 50); do
		kill -0 "$REG_PID" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$REG_PID" 2>/dev/null
}

# podman_containers_conf DIR: write DIR/containers.conf, for
# CONTAINERS_CONF.  The ulimits, no network namespace, cgroupfs, runc and a
# file event log keep podman off systemd and the host's network (crun
# refuses this machine's hybrid cgroup layout); its events, temporary files
# and network configuration go under DIR/events.log, DIR/tmp and DIR/net.
podman_containers_conf() {
	cat >"$1/containers.conf" <<EOC
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$1/events.log"
tmp_dir = "$1/tmp"
[network]
network_config_dir = "$1/net"
EOC
}
