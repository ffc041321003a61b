#!/usr/bin/env bash
# Replication cycles through the migration suite's transient faults,
# injected on the peers (SPEC §3: transient faults retry with backoff and
# re-login; only a peer that stays away makes 失效, and the job resumes by
# itself).  Each scenario replicates its own VM (keep_history 2, no
# auto_sync) for three cycles, the guest writing between them: the first
# cycle creates the target VM and lands through a landing snapshot, the
# later ones land in the top of the chain.
#  - 10 % HTTP 503 on every request of both peers, all three cycles;
#  - dropped bodies: 20 % of the source's datastore reads cut half way,
#    all three cycles, and the deltas' PUTs of cycle 2 cut twice;
#  - sessions expiring every 2 s on both peers, the copies slowed down so
#    that a cycle outlives several sessions;
#  - a source outage of 20 s in the middle of cycle 2's copy: 失效
#    (invalid) meanwhile, then the cycle resumes and completes;
#  - a target outage of 20 s while cycle 2's restore point is being made
#    (its CreateSnapshot_Task held on the peer, which makes the snapshot
#    after the connection is gone): 失效, then the cycle finds its point by
#    name and makes no second one.
# After every cycle (rep_check): the target's disks equal the source as the
# cycle read it (peer hashes, qemu-img compare) and its chain is clean
# (qemu-img check), no snapshot is left on the source, the target's
# snapshots are exactly the restore points expected (one per cycle, the
# oldest beyond keep_history removed, none twice), `vmferryctl points`
# agrees, and the job counts one cycle and one success per cycle, no
# failure.  The transient faults never show 失效; the outages do.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
command -v qemu-img >/dev/null || skip_test "qemu-img (qemu-utils) is not installed"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"r503","host":"H0","power":"on","disks":[{"capacity":$((4 * MiB + 512 * 3)),"seed":1,"allocated":0.7},{"capacity":$((3 * MiB + 512)),"seed":2}]},
        {"name":"rdrop","host":"H0","power":"on","disks":[{"capacity":$((6 * MiB + 512 * 5)),"seed":3},{"capacity":$((2 * MiB + 512 * 7)),"seed":4,"allocated":0.5}]},
        {"name":"rexp","host":"H0","power":"on","disks":[{"capacity":$((8 * MiB + 512 * 9)),"seed":5,"allocated":0.9}]},
        {"name":"routs","host":"H0","power":"on","disks":[{"capacity":$((12 * MiB + 512)),"seed":6,"allocated":0.5},{"capacity":$((MiB + 512 * 3)),"seed":7}]},
        {"name":"routd","host":"H0","power":"on","disks":[{"capacity":$((3 * MiB + 512 * 11)),"seed":8,"allocated":0.6}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"
injected() { curl -sf "$1/fault" | jq -r ".injected.$2"; }
clear_faults() { fault "$S_CTL" '{"clear":true}'; fault "$D_CTL" '{"clear":true}'; }
slow='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 1MiB/s } ]'
invalid_seen() { ctl log "$1" "$2" -n 1000 | grep -c -- '-> invalid' || true; }
# no_invalid VM WHAT: the job never went 失效; else the lines that led there.
no_invalid() {
	local n
	n=$(invalid_seen "$1" "$1")
	[ "$n" = 0 ] && ok "$2: a transient fault never showed 失效 (invalid)" ||
		fail "$2: 失效 (invalid) $n time(s): $(ctl log "$1" "$1" -n 1000 | grep -B4 -- '-> invalid' | tr '\n' '|')"
}
declare -A ndisks=([r503]=2 [rdrop]=2 [rexp]=1 [routs]=2 [routd]=1)

# start_cycle VM K [BANDWIDTH]: cycle K of VM's rule (named as the VM):
# before a later cycle the guest writes to every disk; the source is kept
# as the cycle will read it; the rule made (K = 1) or `vmferryctl run`.
start_cycle() {
	local vm=$1 k=$2 d
	if [ "$k" -gt 1 ]; then
		for ((d = 0; d < ${ndisks[$vm]}; d++)); do
			gwrite "{\"vm\":\"$vm\",\"disk\":$d,\"percent\":${WRITE_PCT:-6},\"seed\":$((10 * k + d))}" >/dev/null
		done
	fi
	rep_keep_source "$T/at/$k" "$vm" "${ndisks[$vm]}"
	if [ "$k" = 1 ]; then
		rep_rule "$vm" "$vm" "fast_transfer: true, auto_sync: false" 2 local "${3:-}"
	else
		assert_match "$(ctl run "$vm" "$vm")" "$vm: complete -> queued" "$vm: vmferryctl run starts cycle $k"
	fi
}
# end_cycle VM K WHAT: cycle K completes; the target holds what it read,
# with restore points K-1 and K (or 1).
end_cycle() {
	local vm=$1 k=$2 pts=$2
	wait_job "$vm" "$vm" complete 180
	[ "$k" = 1 ] || pts="$((k - 1)) $k"
	rep_check "$3, cycle $k" "$vm" "$vm" "${ndisks[$vm]}" "$T/at/$k" "$pts" "$k"
}

# --- 10 % HTTP 503 on both peers, every path, every cycle.
fault "$S_CTL" '{"http_error":{"status":503,"fraction":0.1,"path":"*"},"seed":7}'
fault "$D_CTL" '{"http_error":{"status":503,"fraction":0.1,"path":"*"},"seed":8}'
for k in 1 2 3; do start_cycle r503 $k; end_cycle r503 $k "HTTP 503"; done
n=$(($(injected "$S_CTL" http_error) + $(injected "$D_CTL" http_error)))
[ "$n" -gt 0 ] && ok "three cycles complete through $n injected HTTP 503 answers" || fail "no 503 was injected"
clear_faults
no_invalid r503 "HTTP 503"

# --- Bodies dropped: 20 % of the source's datastore reads cut half way
# (every cycle), and the two first PUTs of cycle 2's deltas cut after
# 1 KiB (the target takes them, then closes without an answer).
fault "$S_CTL" '{"drop":{"fraction":0.2},"seed":9}'
start_cycle rdrop 1; end_cycle rdrop 1 "dropped bodies"
fault "$D_CTL" '{"drop":{"count":2,"method":"PUT","after":1024}}'
start_cycle rdrop 2; end_cycle rdrop 2 "dropped bodies"
assert_eq "$(injected "$D_CTL" drop)" 2 "dropped bodies: two delta PUTs into the top of the chain were cut"
start_cycle rdrop 3; end_cycle rdrop 3 "dropped bodies"
n=$(injected "$S_CTL" drop)
[ "$n" -gt 0 ] && ok "dropped bodies: three cycles complete through $n dropped source reads" || fail "no source read was dropped"
clear_faults
no_invalid rdrop "dropped bodies"

# --- Sessions expiring every 2 s on both peers; the copies take several.
fault "$S_CTL" '{"session_expiry_s":2}'
fault "$D_CTL" '{"session_expiry_s":2}'
s0=$(method_count "$S_CTL" Login) d0=$(method_count "$D_CTL" Login)
WRITE_PCT=30
for k in 1 2 3; do start_cycle rexp $k "$slow"; end_cycle rexp $k "expiring sessions"; done
WRITE_PCT=
sl=$(($(method_count "$S_CTL" Login) - s0)) dl=$(($(method_count "$D_CTL" Login) - d0))
[ "$sl" -gt 1 ] && [ "$dl" -gt 1 ] && [ "$(injected "$S_CTL" session_expiry)" -gt 0 ] &&
	[ "$(injected "$D_CTL" session_expiry)" -gt 0 ] &&
	ok "expiring sessions: three cycles complete while sessions expire (logged in again $sl times on the source, $dl on the target)" ||
	fail "expected expired sessions and new logins on both peers, saw $sl and $dl logins"
clear_faults
no_invalid rexp "expiring sessions"

# wait_invalid VM WHAT: the job shows 失效 (invalid) within 60 s, saying why.
wait_invalid() {
	local j= end=$((SECONDS + 60))
	while [ $SECONDS -lt $end ]; do
		j=$(job_json "$1" "$1")
		[ "$(jq -r .state <<<"$j")" = invalid ] && break
		sleep 0.3
	done
	assert_eq "$(jq -r '"\(.state) \(.label_zh)"' <<<"$j")" "invalid 失效" "$2: the job is 失效 (invalid) meanwhile"
	assert_match "$(jq -r .error <<<"$j")" "." "$2: the invalid job says why"
}

# --- A 20 s source outage in the middle of cycle 2's copy.
# The rule is paced from its first cycle (a cycle's progress starts from
# nothing, so the outage lands in cycle 2's copy, not before it).
start_cycle routs 1 "$slow"; end_cycle routs 1 "source outage"
WRITE_PCT=60
start_cycle routs 2
WRITE_PCT=
wait_until 60 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs routs | jq '.jobs[0].bytes_done') -gt 2097152 ]" ||
	fail "source outage: cycle 2's copy did not get past 2 MiB"
fault "$S_CTL" '{"outage_s":20}'
ok "source outage: 20 s, in the middle of cycle 2's copy"
wait_invalid routs "source outage"
end_cycle routs 2 "source outage (resumed by itself)"
start_cycle routs 3; end_cycle routs 3 "source outage"
clear_faults

# --- A 20 s target outage while cycle 2's restore point is made: its
# CreateSnapshot_Task is held 3 s on the peer, the outage cuts the
# connection meanwhile, and the peer makes the snapshot all the same.
start_cycle routd 1; end_cycle routd 1 "target outage"
n0=$(method_count "$D_CTL" CreateSnapshot_Task)
fault "$D_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":3000}}'
start_cycle routd 2
wait_until 60 sh -c "[ \$(curl -sf '$D_CTL/stats' | jq -r '.methods.CreateSnapshot_Task // 0') -gt $n0 ]" ||
	fail "target outage: cycle 2 never asked for its restore point"
fault "$D_CTL" '{"outage_s":20}'
ok "target outage: 20 s, while the target makes cycle 2's restore point"
wait_invalid routd "target outage"
fault "$D_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":0}}'
end_cycle routd 2 "target outage (resumed by itself)"
assert_eq "$(method_count "$D_CTL" CreateSnapshot_Task)" $((n0 + 1)) \
	"target outage: the restore point asked for before the outage is found by its name, not asked for again"
start_cycle routd 3; end_cycle routd 3 "target outage"
clear_faults

stop_daemon
echo "1..$NTEST"
