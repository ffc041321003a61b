#!/usr/bin/env bash
# Backups through faults (seed 002, SPEC §3 and §10, issue #15):
#  - a source outage of 20 s in the middle of a full's transfer (paced by
#    the rule's bandwidth, 1 MiB/s): the job shows 未知 (unknown) meanwhile
#    with its reason, then resumes by itself and completes; the point
#    reads back (t/tools/repo_read.py) as the source was; no snapshot is
#    left on the source;
#  - the repository's disk filling up (the repository on a 20 MiB tmpfs,
#    nearly filled by another file): a full that does not fit fails
#    (失败, failed) saying there is no space; the point before it still
#    reads back, no half point is listed and the half point left nothing
#    in tmp/; with the other file removed, `start` and `run` make the
#    point, which reads back;
#  - the status socket answers `ping` (a new connection each time, as
#    vmferryctl does) within 100 ms all through the full backup of a
#    1 GiB disk, 90 % allocated with random bytes, that the worker pool
#    hashes and tries to compress meanwhile.  The pinger, the measuring
#    instrument, runs at nice -10 where it may (root), so that a machine
#    busy with other work delays it less than the daemon it measures.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
GiB=$((1024 * MiB))
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"out01","host":"H0","power":"on","disks":[{"capacity":$((20 * MiB + 512)),"seed":51}]},
        {"name":"fill01","host":"H0","power":"on","disks":[{"capacity":$((6 * MiB)),"seed":61}]},
        {"name":"big01","host":"H0","power":"on","disks":[{"capacity":$GiB,"seed":71,"allocated":0.9}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"
slow='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 1MiB/s } ]'

# ---- a source outage during the transfer
bak_rule outr out01 "fast_transfer: true" 3 "bandwidth: $slow"
wait_job outr out01 idle 30
want=$(src_sha out01 0)
assert_match "$(ctl run outr out01 --mode full)" "out01: idle -> queued" "outage: vmferryctl run outr out01 --mode full"
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs outr | jq '.jobs[0].bytes_done')\" -gt $((4 * MiB)) ]" ||
	fail "outage: the full's transfer did not get past 4 MiB"
assert_eq "$(job_state outr out01)" transferring "outage: the full is transferring"
fault "$S_CTL" '{"outage_s":20}'
ok "outage: the source is away for 20 s, in the middle of the transfer"
j=
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ]; do
	j=$(job_json outr out01)
	[ "$(jq -r .state <<<"$j")" = unknown ] && break
	sleep 0.3
done
assert_eq "$(jq -r '"\(.state) \(.label_zh)"' <<<"$j")" "unknown 未知" "outage: the job shows 未知 (unknown) meanwhile"
assert_match "$(jq -r .error <<<"$j")" "." "outage: the unknown job says why ($(jq -r .error <<<"$j"))"
wait_job outr out01 complete 180
ok "outage: the backup resumes by itself and completes"
fault "$S_CTL" '{"clear":true}'
assert_eq "$(repo_points outr out01)" 1 "outage: the repository lists point 1"
assert_eq "$(repo_sha outr out01 1 0)" "$want" "outage: point 1 reads back as the source was"
assert_eq "$(snap_count out01)" 0 "outage: no snapshot left on the source ($(snap_names out01))"
assert_eq "$(ctl --json stats outr out01 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "1 0" "outage: one success, no failure"

# ---- the repository's disk filling up
tmpfs_mount SMALL 20m
bak_rule fillr fill01 "fast_transfer: true" 7 "repository: $SMALL/repo"
wait_job fillr fill01 idle 30
BAK_REPO_DIR=$SMALL/repo
keep1=$(src_sha fill01 0)
assert_match "$(ctl run fillr fill01 --mode full)" "fill01: idle -> queued" "disk full: a first full"
wait_job fillr fill01 complete 60
assert_eq "$(repo_sha fillr fill01 1 0)" "$keep1" "disk full: point 1 reads back as the source was"
# Leave about 3 MiB: a full of 6 MiB of new random bytes does not fit.
free_kib=$(df -k --output=avail "$SMALL" | tail -n1 | tr -d ' ')
dd if=/dev/zero of="$SMALL/filler" bs=1024 count=$((free_kib - 3 * 1024)) status=none 2>/dev/null || true
gwrite '{"vm":"fill01","disk":0,"percent":100,"seed":62}' >/dev/null
keep2=$(src_sha fill01 0)
[ "$keep2" != "$keep1" ] || fail "disk full: the guest's writes changed nothing"
find "$SMALL/repo" -path "$SMALL/repo/chunks" -prune -o -printf '%P %y %s\n' | sort >"$T/small.before"
assert_match "$(ctl run fillr fill01 --mode full)" "fill01: complete -> queued" "disk full: a second full, that does not fit"
wait_job fillr fill01 "failed" 120
ok "disk full: the backup fails (失败)"
err=$(job_field fillr fill01 error)
assert_match "$err" "No space left on device" "disk full: the job's error says why ($err)"
assert_eq "$(repo_points fillr fill01)" 1 "disk full: no half point is listed: the repository lists point 1 only"
assert_eq "$(repo_sha fillr fill01 1 0)" "$keep1" "disk full: point 1 still reads back as the source was"
"$REPO_READ" "$(BAK_REPO)" check fillr fill01 1 >/dev/null && ok "disk full: repo_read.py checks every chunk id of point 1" ||
	fail "disk full: repo_read.py check of point 1"
assert_eq "$(snap_count fill01)" 0 "disk full: the failed backup left no snapshot on the source"
find "$SMALL/repo" -path "$SMALL/repo/chunks" -prune -o -printf '%P %y %s\n' | sort >"$T/small.after"
cmp -s "$T/small.before" "$T/small.after" && ok "disk full: apart from chunks, the failed backup left nothing (no half point in tmp/)" ||
	fail "disk full: the failed backup left files: $(diff "$T/small.before" "$T/small.after" | grep '^>' | head -5)"
rm -f "$SMALL/filler"
out=$(ctl start fillr fill01)
assert_match "$out" "fill01: failed -> " "disk full: vmferryctl start after making room"
wait_job fillr fill01 idle 30
assert_match "$(ctl run fillr fill01 --mode full)" "fill01: idle -> queued" "disk full: vmferryctl run after making room"
wait_job fillr fill01 complete 60
ok "disk full: with room again the backup succeeds"
assert_eq "$(repo_points fillr fill01)" "1,2" "disk full: the repository lists points 1 and 2"
assert_eq "$(repo_sha fillr fill01 2 0)" "$keep2" "disk full: point 2 reads back as the source was"
assert_eq "$(repo_sha fillr fill01 1 0)" "$keep1" "disk full: point 1 still reads back"
BAK_REPO_DIR=

# ---- ping while a 1 GiB backup hashes and compresses
bak_rule bigr big01 "fast_transfer: true" 1
wait_job bigr big01 idle 30
want=$(src_sha big01 0)
# A pinger: a new connection and a ping every 10 ms, the job's state and
# bytes every tenth time (on a connection of their own, not timed);
# "state bytes_done latency_ms" a line, until the job rests again.
pinger_nice=
[ "$(id -u)" != 0 ] || pinger_nice="nice -n -10"
$pinger_nice /usr/bin/python3 - "$SOCK" >"$T/pings" 2>"$T/pinger.err" <<'PY' &
import json, socket, sys, time
path = sys.argv[1]
def ask(req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t0 = time.monotonic()
    s.connect(path)
    s.sendall((json.dumps(req) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(65536)
        if not b:
            break
        buf += b
    t1 = time.monotonic()
    s.close()
    return json.loads(buf), (t1 - t0) * 1000
state, done, seen, i = "idle", 0, False, 0
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    if i % 10 == 0:
        job = ask({"op": "jobs", "rule": "bigr"})[0]["jobs"][0]
        state, done = job["state"], job["bytes_done"] or 0
        if state not in ("idle", "complete"):
            seen = True
        elif seen:
            break
    r, ms = ask({"op": "ping"})
    if not r.get("ok"):
        sys.exit("ping answered " + json.dumps(r))
    print(state, done, "%.3f" % ms, flush=True)
    i += 1
    time.sleep(0.01)
PY
pinger=$!
PIDS+=($pinger)
started=$SECONDS
assert_match "$(ctl run bigr big01 --mode full)" "big01: idle -> queued" "ping: a full backup of a 1 GiB disk"
wait_job bigr big01 complete 240
took=$((SECONDS - started))
wait "$pinger" || fail "ping: the pinger failed: $(cat "$T/pinger.err")"
n=$(awk '$1 == "transferring"' "$T/pings" | wc -l)
moved=$(awk '$1 == "transferring" { if (lo == "") lo = $2; hi = $2 } END { print hi - lo }' "$T/pings")
max=$(awk '$1 == "transferring" && $3 > m { m = $3 } END { print m + 0 }' "$T/pings")
[ "$n" -ge 100 ] && ok "ping: $n pings answered while the backup transferred ($took s)" ||
	fail "ping: only $n pings while the backup transferred"
[ "$moved" -ge $((GiB / 2)) ] && ok "ping: the backup moved $moved bytes while they were asked" ||
	fail "ping: the backup moved only $moved bytes while the pings were asked"
# The 100 ms of SPEC §8 hold for the build users run; under ASan+UBSan
# every instruction of the loop costs several times more, so there the
# bound is not asserted (the figure is tools/bench's, docs/BENCHMARKS.md).
if grep -qs '^VMFERRY_SANITIZE:BOOL=ON' "$BIN/CMakeCache.txt"; then
	NTEST=$((NTEST + 1))
	echo "ok $NTEST # SKIP ping within 100 ms: a sanitizer build (the slowest ping took $max ms)"
else
	# The probe shares two cores with the backup's workers and, in CI,
	# with another test: a ping it sends may itself wait for a CPU.  So
	# 99 % within 100 ms and none beyond 250 ms (tools/bench figure 9g
	# measures the slowest on its own, docs/BENCHMARKS.md).
	over=$(awk '$1 == "transferring" && $3 >= 100' "$T/pings" | wc -l)
	awk -v m="$max" -v o="$over" -v n="$n" 'BEGIN { exit !(m < 250 && o * 100 <= n) }' &&
		ok "ping: answered within 100 ms ($over of $n slower, the slowest in $max ms)" ||
		fail "ping: $over of $n pings took 100 ms or more, the slowest $max ms: $(sort -k3 -n -r "$T/pings" | head -5 | paste -sd';' -)"
fi
assert_eq "$(repo_sha bigr big01 1 0)" "$want" "ping: the 1 GiB point reads back as the source was"
stop_daemon
echo "1..$NTEST"
