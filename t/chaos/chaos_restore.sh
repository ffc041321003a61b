#!/usr/bin/env bash
# Crash anywhere in a restore (issue #16, SPEC §3 and §10): kill -9 of
# vmferryd at random instants of restores, then a restart, restore after
# restore.
#
# One backup rule holds two points of rc01 (two disks of odd sizes, the
# guest writing between them).  Rounds alternate between a restore of a
# point to a new VM (a new name each round) and, with the VM powered off
# and the guest's disks changed (the peer's write endpoint), a restore to
# the original VM.  Every SOAP call of the peer is 30 ms late and the
# rule's bandwidth is 6 MiB/s, so creating the VM, the copy and the
# landing each take their share.  A first restore of each kind without a
# kill measures its length D; each round then gets 1-2 kills at instants
# drawn uniformly from [0, D) (seeded, CHAOS_SEED).  After each round,
# with the job back in 空闲: the job has no error and counts no failure;
# the restored VM's disks have the point's SHA-256 (the peer's); a new VM
# exists exactly once; no snapshot is left on it or on the original.
#
# CI size: 4 counted kills.  CHAOS_FULL=1: 24.  CHAOS_KILLS sets it.
. "$(dirname "$0")/chaos_lib.sh"
. "$(dirname "$0")/../integration/backup_lib.sh"

if [ "$CHAOS_FULL" = 1 ]; then want=${CHAOS_KILLS:-24}; else want=${CHAOS_KILLS:-4}; fi
limit=240
MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"rc01","host":"H0","power":"on","disks":[
          {"capacity":$((11 * MiB + 512 * 13)),"seed":51,"allocated":0.7},
          {"capacity":$((5 * MiB + 512 * 3)),"seed":52,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config "transfer_buffer: 512KiB
host_buffer_cap: 8MiB"
bak_rule rc rc01 "fast_transfer: true" 7 \
	'bandwidth: [ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 6MiB/s } ]'
start_daemon "$CONF"
wait_job rc rc01 idle 30
declare -A pt
ctl run rc rc01 --mode full >/dev/null
wait_job rc rc01 complete $limit
pt[1]=$(src_hashes rc01 2)
for d in 0 1; do gwrite "{\"vm\":\"rc01\",\"disk\":$d,\"percent\":20,\"seed\":$((70 + d))}" >/dev/null; done
ctl run rc rc01 --mode incremental >/dev/null
wait_job rc rc01 complete $limit
pt[2]=$(src_hashes rc01 2)
curl -sf -XPOST "$S_CTL/power" -d '{"vm":"rc01","state":"off"}' >/dev/null || fail "the peer cannot power rc01 off"
fault "$S_CTL" '{"delay":{"method":"*","ms":30}}'

exec {nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$nap_fd" || true; }

# scramble: the original's disks changed (a guest that ran meanwhile).
n=0
scramble() {
	n=$((n + 1))
	for d in 0 1; do
		curl -sf -XPOST "$S_CTL/write" -d "{\"vm\":\"rc01\",\"disk\":$d,\"percent\":15,\"seed\":$((100 + 2 * n + d))}" >/dev/null ||
			fail "the peer refused a write to rc01"
	done
}

# round KIND POINT KILLS D_MS: one restore with KILLS kills in [0, D_MS).
r=0 counted=0
declare -A dur
round() {
	local kind=$1 p=$2 kills=$3 dms=$4 name="" vm=rc01 t0 at k st
	r=$((r + 1))
	if [ "$kind" = new ]; then
		name=rc01-r$r vm=$name
		ctl restore rc rc01 --point "$p" --target new --name "$name" >/dev/null
	else
		scramble
		ctl restore rc rc01 --point "$p" >/dev/null
	fi
	now_ms; t0=$NOW_MS
	local -a ats=()
	for ((k = 0; k < kills; k++)); do rnd "$dms"; ats+=("$REPLY"); done
	[ "$kills" -eq 0 ] || mapfile -t ats < <(printf '%s\n' "${ats[@]}" | sort -n)
	for at in "${ats[@]}"; do
		sleep_until_ms $((t0 + at))
		st=$(job_state rc rc01)
		if [ "$st" = idle ]; then
			echo "# round $r ($kind): the restore ended before the kill at ${at} ms"
			break
		fi
		crash_daemon
		counted=$((counted + 1))
		echo "# round $r ($kind point $p): kill at ${at} ms in $st"
		start_daemon "$CONF"
		now_ms; t0=$((NOW_MS - at))
	done
	wait_job rc rc01 idle $limit
	now_ms
	[ "$kills" -gt 0 ] || dur[$kind]=$((NOW_MS - t0))
	assert_eq "$(job_field rc rc01 error)" "null" "round $r: the job rests without an error"
	assert_eq "$(ctl --json stats rc rc01 | jq -r '.jobs[0].failures')" 0 "round $r: no failure counted"
	assert_eq "$(src_hashes "$vm" 2)" "${pt[$p]}" "round $r ($kind): $vm holds point $p"
	[ "$kind" = new ] && assert_eq "$(vm_count "$S_CTL" "$name")" 1 "round $r: exactly one new VM $name"
	assert_eq "$(snap_count "$vm")" 0 "round $r: no snapshot left on $vm ($(snap_names "$vm"))"
}

round new 1 0 0
round original 1 0 0
figure "restore to a new VM takes ${dur[new]} ms, to the original ${dur[original]} ms (no kill)"
i=0
while [ $counted -lt "$want" ]; do
	i=$((i + 1))
	rnd 2; kills=$((REPLY + 1))
	rnd 2; p=$((REPLY + 1))
	if [ $((i % 2)) = 1 ]; then round new $p $kills "${dur[new]}"; else round original $p $kills "${dur[original]}"; fi
done
ok "$counted kills during restores: every restore ended right"
# The backup after the restores is a full, and right.
curl -sf -XPOST "$S_CTL/power" -d '{"vm":"rc01","state":"on"}' >/dev/null || true
ctl run rc rc01 --mode incremental >/dev/null
wait_job rc rc01 complete $limit
assert_eq "$(ctl --json show rc rc01 | jq -r '.details.points[-1].mode')" full "the backup after the restores is a full"
stop_daemon
echo "1..$NTEST"
