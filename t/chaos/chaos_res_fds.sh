#!/usr/bin/env bash
# Resources: file descriptor exhaustion.  vmferryd runs with a low
# `ulimit -n` and far more status clients connect than it has descriptors
# for, while a migration copies.  The daemon serves what its limit allows
# (the jobs' reserve kept) and lets the others wait in the listen backlog:
# it does not crash, does not spin, the migration goes on and completes,
# and once the clients close a new `vmferryctl ping` is answered (the one
# that waited, too).  CI: ulimit 64, 200 clients; CHAOS_FULL=1: ulimit 128,
# 500 clients.  (Accept failing with EMFILE itself is t/unit/test_ctl.c.)
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/migrate_lib.sh"

MIB=1048576
if [ "${CHAOS_FULL:-0}" = 1 ]; then limit=128; nclients=500; else limit=64; nclients=200; fi

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"fd01","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":6291469,"seed":41,"allocated":1.0},{"capacity":4194319,"seed":42,"allocated":1.0}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
( ulimit -n $limit && exec "$BIN/vmferryd" -c "$CONF" -d "$STATE" -s "$SOCK" ) >>"$T/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_until 20 ctl ping || fail "vmferryd did not come up"
assert_eq "$(awk '/Max open files/ {print $4}' /proc/$DAEMON_PID/limits)" $limit "vmferryd runs with $limit descriptors"
max=$(ctl --json ping | jq .max_clients)
[ "$max" -ge 1 ] && [ "$max" -lt $((limit / 2)) ] && ok "it serves $max status clients at most, the rest of its descriptors kept for the jobs" ||
	fail "max_clients $max for a limit of $limit"

# 1 MiB/s: the copy (10 MiB) outlasts the siege, and its second disk
# (a new staging image, new connections) starts during it.
mig_rule fd fd01 "fast_transfer: true, auto_migrate: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 1MiB/s } ]'
wait_job fd fd01 transferring 60

# Clients that connect and hold their connections without a word.
perl -MIO::Socket::UNIX -e '
	my ($path, $n) = @ARGV;
	my @s;
	for (1 .. $n) {
		my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or last;
		push @s, $c;
	}
	print scalar(@s), "\n";
	STDOUT->flush;
	sleep 3600;' "$SOCK" $nclients >"$T/holder.out" 2>&1 &
holder=$!
PIDS+=($holder)
wait_until 60 test -s "$T/holder.out" || fail "the clients did not connect"
assert_eq "$(head -1 "$T/holder.out")" $nclients "$nclients clients connected (more than the daemon's $limit descriptors)"
wait_until 30 grep -q "status socket: $max clients, the most allowed" "$T/daemon.log" ||
	fail "the daemon did not pause accepting: $(grep 'status socket' "$T/daemon.log" | tail -3)"
ok "the daemon took $max clients in and paused accepting"

# A ping now waits in the backlog.
"$BIN/vmferryctl" -s "$SOCK" ping >"$T/ping.out" 2>&1 &
ping_pid=$!
PIDS+=($ping_pid)
read -r _ _ c0 _ _ < <(awk '{print $1, $2, $14 + $15, $3, $4}' /proc/$DAEMON_PID/stat)
t0=$(awk '{print $1}' /proc/uptime)
b0=$(flat_bytes fd01)
disk1() { curl -sf "$S_CTL/stats" | jq '.files["ds0/fd01/fd01_1-flat.vmdk"] // 0'; }
assert_eq "$(disk1)" 0 "the siege holds before the copy of the second disk starts"
# The migration goes on meanwhile, into its second disk.
wait_until 60 sh -c "[ \$(curl -sf '$S_CTL/stats' | jq '.files[\"ds0/fd01/fd01_1-flat.vmdk\"] // 0') -ge $MIB ]" ||
	fail "the migration did not go on into its second disk while the clients held the socket"
b1=$(flat_bytes fd01)
read -r _ _ c1 _ _ < <(awk '{print $1, $2, $14 + $15, $3, $4}' /proc/$DAEMON_PID/stat)
t1=$(awk '{print $1}' /proc/uptime)
ok "the migration copied $(((b1 - b0) / 1024)) KiB while $nclients clients held the socket, its second disk included"
kill -0 "$DAEMON_PID" || fail "vmferryd died"
kill -0 "$ping_pid" 2>/dev/null && ok "a new ping waits meanwhile (not refused, not answered)" ||
	fail "the ping did not wait: $(cat "$T/ping.out")"
hz=$(getconf CLK_TCK)
cpu_pct=$(awk -v c=$((c1 - c0)) -v hz=$hz -v t0=$t0 -v t1=$t1 'BEGIN { printf "%d", 100 * c / hz / (t1 - t0) }')
[ "$cpu_pct" -lt 50 ] && ok "vmferryd does not spin: ${cpu_pct}% CPU meanwhile" || fail "vmferryd used ${cpu_pct}% CPU while paused"

# The clients leave: the waiting ping is answered, and new ones are.
kill "$holder"
wait "$holder" 2>/dev/null || true
wait "$ping_pid" && ok "the waiting ping is answered once the clients closed ($(cat "$T/ping.out"))" ||
	fail "the waiting ping failed: $(cat "$T/ping.out")"
assert_match "$(ctl ping)" "vmferryd .* up" "a new vmferryctl ping succeeds"
wait_until 30 grep -q "status socket: accepting connections again" "$T/daemon.log" || fail "no resume in the log"
ok "the daemon logged that it accepts again"

wait_job fd fd01 complete 120
check_complete fd fd01 2 "descriptor exhaustion"
log=$(ctl log fd fd01 -n 1000)
assert_nomatch "$log" "Too many open files|-> invalid" "the job never lacked a descriptor and never went 失效"
echo "# figure: descriptors: ulimit -n $limit, $nclients clients held: $max served, $((nclients - max)) waited in the backlog, ${cpu_pct}% CPU, the migration copied $(((b1 - b0) / 1024)) KiB meanwhile (its second disk opened during the siege) and completed with identical bytes; ping answered once they closed"
