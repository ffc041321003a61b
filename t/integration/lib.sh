# Shared helpers for integration tests: each test sources this, gets a
# private temp dir, and everything it started is killed on exit.
# Tests print "ok N - text" / "not ok N - text" lines and exit non-zero on
# the first failure.
set -euo pipefail

SRC=${VMFERRY_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${VMFERRY_BIN:-$SRC/build}
T=$(mktemp -d /tmp/vmferry-it.XXXXXX)
SOCK=$T/sock
STATE=$T/state
DAEMON_PID=
PIDS=()
NTEST=0

# it_cleanup [STATUS]: STATUS is the test's exit status (default $?).
it_cleanup() {
	local rc=${1:-$?} p m
	# A test that stops outside an assertion (set -e: a command failed,
	# such as vmferryctl when the daemon died) still says what the daemon
	# printed last: a sanitizer's report ends up there.
	if [ "$rc" -ne 0 ] && [ -z "${IT_SAID:-}" ] && [ -f "$T/daemon.log" ]; then
		echo "# stopped with status $rc outside an assertion; daemon log (tail):"
		tail -n 80 "$T/daemon.log" | sed 's/^/#   /'
	fi
	for p in "${PIDS[@]}" $DAEMON_PID; do
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	# A peer killed with -9 leaves its hot-add (FUSE) mounts behind.
	for m in $(awk -v d="$T/" 'index($2, d) == 1 { print $2 }' /proc/mounts); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	if [ "${KEEP_TMP:-}" = "" ]; then rm -rf "$T"; else echo "# kept $T"; fi
}
trap it_cleanup EXIT

ok() { NTEST=$((NTEST + 1)); echo "ok $NTEST - $*"; }

# set_clock DATE: the daemon's injected clock (the file $CLOCK, named by
# VMFERRY_CLOCK_FILE) reads DATE.  Written whole, then renamed into place:
# the daemon reads the file at any moment, and refuses one that holds no
# time (a file `date >` has just truncated).
set_clock() { date -u -d "$1" +%s >"$CLOCK.new" && mv -f "$CLOCK.new" "$CLOCK"; }

# free_ports N: the first of N consecutive loopback ports free now, below
# the kernel's ephemeral range (ip_local_port_range), so that no other
# test's connection or port-0 listener can take one of them meanwhile.
free_ports() {
	python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    base = random.randrange(10000, low - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    sys.exit(0)
sys.exit("no %d free loopback ports in a row below %d" % (n, low))
PY
}

# skip_test REASON: the whole test cannot run here; it exits with the code
# ctest reports as Skipped (SKIP_RETURN_CODE in t/integration and t/chaos).
IT_SKIP_RC=77
skip_test() {
	echo "ok $((NTEST + 1)) # SKIP $*"
	IT_SAID=1
	exit $IT_SKIP_RC
}
fail() {
	NTEST=$((NTEST + 1))
	echo "not ok $NTEST - $*"
	if [ -f "$T/daemon.log" ]; then echo "# daemon log (tail):"; tail -n 40 "$T/daemon.log" | sed 's/^/#   /'; fi
	IT_SAID=1
	exit 1
}
assert_eq() { [ "$1" = "$2" ] && ok "$3" || fail "$3: expected '$2', got '$1'"; }
assert_match() { grep -Eq -- "$2" <<<"$1" && ok "$3" || fail "$3: '$1' does not match /$2/"; }
assert_nomatch() { grep -Eq -- "$2" <<<"$1" && fail "$3: '$1' matches /$2/" || ok "$3"; }

ctl() { "$BIN/vmferryctl" -s "$SOCK" "$@"; }

# wait_until TIMEOUT_S COMMAND...: poll until COMMAND succeeds.
wait_until() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	while ! "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}

# start_daemon CONFIG_DIR [extra args]
start_daemon() {
	local conf=$1; shift
	"$BIN/vmferryd" -c "$conf" -d "$STATE" -s "$SOCK" "$@" >>"$T/daemon.log" 2>&1 &
	DAEMON_PID=$!
	wait_until 20 ctl ping || fail "vmferryd did not come up"
}

# stop_daemon: SIGTERM, and vmferryd must exit 0: a non-zero status (a
# crash, or under the ASan build a leak LeakSanitizer found at exit, or a
# sanitizer's error) fails the test, showing the daemon's log from the
# sanitizer's report on.
stop_daemon() {
	[ -n "$DAEMON_PID" ] || return 0
	local rc=0
	kill -TERM "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=
	[ $rc -ne 0 ] || return 0
	echo "# vmferryd exited with status $rc after SIGTERM; its stderr and log, $T/daemon.log, from the first error:"
	{ grep -n -m1 -E '^==[0-9]+==(ERROR|WARNING)|runtime error|^(LeakSanitizer|AddressSanitizer)' "$T/daemon.log" ||
		echo "1:"; } | {
		IFS=: read -r first _
		tail -n +"$first" "$T/daemon.log" | head -n 80 | sed 's/^/#   /'
	}
	fail "vmferryd exited with status $rc after SIGTERM (not 0): see its stderr in $T/daemon.log (KEEP_TMP=1 keeps it)"
}

crash_daemon() {
	kill -9 "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=
}

# job_state RULE VM [KIND]: the job's state id, or "none".
job_state() {
	ctl --json jobs "$1" ${3:+--kind "$3"} | jq -r --arg vm "$2" '[.jobs[] | select(.vm == $vm) | .state][0] // "none"'
}

# start_peer NAME FIXTURE [peer args]: sets NAME_URL, NAME_THUMB, NAME_CTL, NAME_DIR.
start_peer() {
	local name=$1 fixture=$2; shift 2
	local out=$T/peer-$name.json
	# Its datastores under $T (a peer killed with -9 cannot remove a temp
	# dir of its own); a --dir in the arguments comes later and wins.
	"$SRC/tools/peer" --fixture "$fixture" --dir "$T/peer-$name.d" "$@" >"$out" 2>"$T/peer-$name.log" &
	PIDS+=($!)
	wait_until 60 test -s "$out" || fail "peer $name did not start: $(tail -5 "$T/peer-$name.log")"
	local line
	line=$(head -n1 "$out")
	printf -v "${name}_URL" '%s' "$(jq -r .url <<<"$line")"
	printf -v "${name}_THUMB" '%s' "$(jq -r .thumbprint <<<"$line")"
	printf -v "${name}_CTL" '%s' "$(jq -r .control_url <<<"$line")"
	printf -v "${name}_DIR" '%s' "$(jq -r .dir <<<"$line")"
}

# A config directory with two platforms, a node and a rule "mig" over the
# given VMs.  The rule is a backup rule whose only run is far away: its
# jobs rest in 空闲 and exercise the engine (states, store, socket)
# without talking to a peer (backup moves no data yet).
# make_config DIR [VMS...]
make_config() {
	local dir=$1; shift
	local vms=${*:-web01}
	mkdir -p "$dir/secrets"
	echo pass >"$dir/secrets/vc"
	cat >"$dir/platforms.yaml" <<YAML
kind: platform
name: src
type: vsphere
url: https://127.0.0.1:1/sdk
username: user
password_file: secrets/vc
tls: { insecure: true }
---
kind: platform
name: dst
type: vsphere
url: https://127.0.0.1:2/sdk
username: user
password_file: secrets/vc
tls: { insecure: true }
---
kind: node
name: local
repository: repo
temp_dir: tmp
YAML
	cat >"$dir/mig.yaml" <<YAML
kind: backup
name: mig
source: { platform: src, vms: [$(echo "$vms" | sed 's/ /, /g')] }
node: local
schedule: { once: "2099-01-01 00:00" }
YAML
}

# ---- Small filesystems for the resource scenarios (t/chaos/chaos_res_*) ----
# tmpfs_mount VAR SIZE: mounts a tmpfs of SIZE (e.g. 16m) on a fresh
# directory outside $T and sets VAR to its path; on exit everything started
# is killed first, then the mount is removed.  Mounting needs root: when it
# is refused the whole test is skipped (skip_test) with the reason.
TMPFS_MOUNTS=()
tmpfs_cleanup() {
	local m
	for m in "${TMPFS_MOUNTS[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		rmdir "$m" 2>/dev/null || true
	done
}
tmpfs_mount() {
	local dir err
	dir=$(mktemp -d /tmp/vmferry-tmpfs.XXXXXX)
	if ! err=$(mount -t tmpfs -o "size=$2,mode=0700" tmpfs "$dir" 2>&1); then
		rmdir "$dir"
		skip_test "cannot mount a tmpfs (root is needed): $err"
	fi
	TMPFS_MOUNTS+=("$dir")
	trap 'it_cleanup; tmpfs_cleanup' EXIT
	printf -v "$1" '%s' "$dir"
}
