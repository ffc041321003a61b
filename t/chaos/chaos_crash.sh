#!/usr/bin/env bash
# Crash anywhere (issue #6, docs/RELIABILITY.md): kill -9 of vmferryd at
# random instants across whole migrations, then a restart, again and again.
#
# Every run migrates two VMs with auto_migrate (full copy, catch-up,
# cutover, final sync, upload or in-place writes, power-on, no manual
# step): one with three disks of odd sizes, one with one disk.  Runs
# alternate the https transport (staging images uploaded at cutover) and
# lan_free (datastores mounted on the node, written in place), and every
# third run copies whole disks (fast_transfer off).  The guest writes
# while it runs, so the catch-up and the final sync have work.  A first
# run without kills measures how long a run takes (D); each later run
# gets 2-4 kill instants drawn uniformly from [0, D) by a seeded
# generator (CHAOS_SEED), so the kills land in proportion to the time
# spent in each step (every SOAP call is slowed down by 50 ms, as on a
# real vCenter): creating the target VM, CBT and snapshot creation, the
# copy, the catch-up, the cutover, the upload, the power-on, and the
# restart itself.  Every other run, one of its kills waits for the
# cutover instead (a short step) and lands 0-600 ms into it.
#
# After each run: both jobs complete (bounded wait; a failed or stuck job
# fails with a diagnostic dump), every target disk has the SHA-256 of its
# source disk at cutover, no snapshot is left on the source, exactly one
# target VM per source VM, the source off and the target on, one success
# and no failure counted.  CI size: 5 kills; CHAOS_FULL=1: 50 (CHAOS_KILLS
# overrides either).
. "$(dirname "$0")/chaos_lib.sh"

if [ "$CHAOS_FULL" = 1 ]; then want=${CHAOS_KILLS:-50}; else want=${CHAOS_KILLS:-5}; fi
max_runs=$(( (want + 1) / 2 + 4 ))   # 2-4 kills a run, and a margin for instants that come too late
limit=300                            # seconds a run may take at most (ASan, loaded machine)

# Source VMs for every run: rN-a (three disks of odd sizes, CBT off: the
# engine turns it on) and rN-b (one disk, CBT on).
{
	echo '{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":['
	for ((r = 0; r <= max_runs; r++)); do
		s=$((r * 10))
		[ $r -eq 0 ] || echo ','
		echo "{\"name\":\"r$r-a\",\"host\":\"H0\",\"power\":\"on\",\"disks\":["
		echo "  {\"capacity\":$((2097152 + 13 + r)),\"seed\":$((s + 1)),\"allocated\":0.7},"
		echo "  {\"capacity\":$((1048576 + 4099)),\"seed\":$((s + 2))},"
		echo "  {\"capacity\":$((3145728 + 517 + 3 * r)),\"seed\":$((s + 3)),\"allocated\":0.4}]},"
		echo "{\"name\":\"r$r-b\",\"host\":\"H0\",\"power\":\"on\",\"cbt\":true,\"disks\":["
		echo "  {\"capacity\":$((2097152 + 7 + r)),\"seed\":$((s + 4)),\"allocated\":0.9}]}"
	done
	echo ']}'
} >"$T/fixture.json"
MIG_MOUNTS=1 mig_start_peers "$T/fixture.json"
MIG_MOUNTS=1 mig_config "transfer_buffer: 256KiB
host_buffer_cap: 8MiB"
# Every SOAP call takes a while, as on a real vCenter, so that the steps
# made of calls (snapshots, CBT, CreateVM, cutover, power-on) take their
# share of a run's time, and of the kill instants.
fault "$S_CTL" '{"delay":{"method":"*","ms":50}}'
fault "$D_CTL" '{"delay":{"method":"*","ms":50}}'
start_daemon "$CONF"
ndisks() { case $1 in *-a) echo 3 ;; *) echo 1 ;; esac; }

# A rule for run R: lan_free on odd runs, fast_transfer off every third.
# The bandwidth limit stretches the copies over a good part of a run.
run_rule() {
	local r=$1 lan=false fast=true
	[ $((r % 2)) -eq 1 ] && lan=true
	[ $((r % 3)) -eq 2 ] && fast=false
	mig_rule "crash$r" "r$r-a r$r-b" "fast_transfer: $fast, lan_free: $lan, auto_migrate: true" \
		'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 3MiB/s } ]'
	RUN_DESC="lan_free $lan, fast_transfer $fast"
}

# A random guest write to one of the run's source VMs (refused once off).
random_write() {
	local r=$1 vm disk
	rnd 2; [ $REPLY -eq 0 ] && vm="r$r-a" || vm="r$r-b"
	rnd "$(ndisks "$vm")"; disk=$REPLY
	rnd 2
	if [ $REPLY -eq 0 ]; then
		rnd 20; local pct=$((REPLY + 5))
		rnd 100000; guest_write "{\"vm\":\"$vm\",\"disk\":$disk,\"percent\":$pct,\"seed\":$REPLY}"
	else
		local cap off len
		cap=$(curl -sf "$S_CTL/disk?vm=$vm&disk=$disk" | jq -r .capacity)
		rnd "$cap"; off=$REPLY
		len=$((cap - off < 300000 ? cap - off : 300000))
		rnd "$len"; len=$((REPLY + 1))
		rnd 100000; guest_write "{\"vm\":\"$vm\",\"disk\":$disk,\"offset\":$off,\"length\":$len,\"seed\":$REPLY}"
	fi
	echo "# run $r: guest write to $vm disk $disk: $REPLY"
}

# wait_run R: both jobs complete (a failed job or a timeout fails).
wait_run() {
	local vm
	for vm in "r$1-a" "r$1-b"; do
		wait_job "crash$1" "$vm" complete $limit
	done
}

# Check a finished run: complete, identical bytes, no snapshot, one target VM.
check_run() {
	local r=$1 vm
	for vm in "r$r-a" "r$r-b"; do
		check_complete "crash$r" "$vm" "$(ndisks "$vm")" "run $r ($RUN_DESC): $vm"
		assert_eq "$(vm_power "$S_CTL" "$vm") $(vm_power "$D_CTL" "$vm")" "poweredOff poweredOn" \
			"run $r: $vm: the source is off, the target on"
		assert_eq "$(ctl --json stats "crash$r" "$vm" | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "1 0" \
			"run $r: $vm: one success, no failure counted"
	done
}

# --- Run 0: no kill; it measures D, the length of a run.
now_ms; t0=$NOW_MS
run_rule 0
rnd 1500; sleep_until_ms $((t0 + 500 + REPLY)); random_write 0
wait_run 0
now_ms; D=$((NOW_MS - t0))
echo "# a run without kills takes ${D} ms"
check_run 0

# --- Runs with kills.
kills=0
skipped=0
declare -A at_state=()

# kill_now R WHEN: kill -9 the daemon (unless both jobs are complete
# already), note the jobs' states, restart it.
kill_now() {
	local r=$1 when=$2 states s
	states=$(ctl --json jobs "crash$r" 2>/dev/null | jq -r '[.jobs[] | .state] | join("/")' || echo "?")
	[ -n "$states" ] || states=no_job_yet
	if [ "$states" = "complete/complete" ]; then
		skipped=$((skipped + 1))
		echo "# run $r: instant $when came after both jobs completed; not counted"
		return 0
	fi
	crash_daemon
	kills=$((kills + 1))
	for s in ${states//\// }; do at_state[$s]=$((${at_state[$s]:-0} + 1)); done
	now_ms
	ok "run $r: vmferryd killed (-9) at $((NOW_MS - t0)) ms, $when (jobs: $states); kill $kills of $want"
	start_daemon "$CONF"
}

cutover_seen() { ctl --json jobs "crash$1" | jq -e '[.jobs[] | .state] | (index("cutting_over") != null) or all(. == "complete")'; }

r=0
while [ $kills -lt $want ]; do
	r=$((r + 1))
	[ $r -le $max_runs ] || fail "$kills of $want kills after $max_runs runs ($skipped instants came after completion)"
	rnd 3; k=$((REPLY + 2))
	[ $((want - kills)) -ge $k ] || k=$((want - kills))
	# Every other run, one of the kills waits for the cutover (a short
	# step, so that it is hit often enough) and lands 0-600 ms into it.
	rnd 2; at_cut=$(( REPLY == 0 && k >= 2 ))
	# The schedule: the other kills and two guest writes, as offsets in
	# ms from the start of the run, sorted.
	events=()
	for ((i = at_cut; i < k; i++)); do rnd "$D"; events+=("$REPLY kill"); done
	for ((i = 0; i < 2; i++)); do rnd $((D * 6 / 10)); events+=("$REPLY write"); done
	mapfile -t events < <(printf '%s\n' "${events[@]}" | sort -n)
	now_ms; t0=$NOW_MS
	run_rule $r
	echo "# run $r ($RUN_DESC): events at ${events[*]}$([ $at_cut = 1 ] && echo ", then a kill during the cutover")"
	for ev in "${events[@]}"; do
		sleep_until_ms $((t0 + ${ev%% *}))
		case $ev in
		*write) random_write $r ;;
		*kill) kill_now $r "${ev%% *} ms drawn" ;;
		esac
	done
	if [ $at_cut = 1 ]; then
		wait_until $limit cutover_seen $r || fail "run $r never reached the cutover"
		rnd 600; now_ms; sleep_until_ms $((NOW_MS + REPLY))
		kill_now $r "$REPLY ms after a job entered cutting_over"
	fi
	wait_run $r
	now_ms
	echo "# run $r took $((NOW_MS - t0)) ms"
	check_run $r
done

# Nothing else appeared on the target: one VM per migrated source VM.
want_vms=$(for ((i = 0; i <= r; i++)); do echo "r$i-a"; echo "r$i-b"; done | sort | paste -sd,)
assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[].name] | sort | join(",")')" "$want_vms" \
	"the target holds exactly one VM per migrated VM"

by_state=$(for s in "${!at_state[@]}"; do echo "$s ${at_state[$s]}"; done | sort -k2,2nr -k1,1 | paste -sd, | sed 's/,/, /g')
figure "crash instants survived: $kills/$kills (kill -9 of vmferryd; $((r + 1)) runs, $((2 * (r + 1))) migrations, every target disk identical, no snapshot left, one target VM each; jobs were in: $by_state; seed $CHAOS_SEED)"
