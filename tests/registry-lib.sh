# SPDX-License-Identifier: Apache-2.0
# start_registry DIR: Debian's docker-registry serving DIR on a free
# loopback port, its access log in DIR.log; sets REG (127.0.0.1:PORT) and
# stops it at exit.  Returns non-zero (with the log's end as a diagnostic)
# when it does not listen within 10 s.  Needs tests/lib.sh.
start_registry() {
	local dir=$1 port i
	port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	REG=127.0.0.1:$port
	cat >"$dir.yml" <<EOR
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir
  delete:
    enabled: true
http:
  addr: $REG
EOR
	/usr/bin/docker-registry serve "$dir.yml" >"$dir.log" 2>&1 &
	REG_PID=$!
	at_exit stop_registry
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	diag "$(tail -5 "$dir.log")"
	return 1
}

stop_registry() {
	kill "$REG_PID" 2>/dev/null || return 0
	local i
	for i in $(seq 50); do
		kill -0 "$REG_PID" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$REG_PID" 2>/dev/null
}
