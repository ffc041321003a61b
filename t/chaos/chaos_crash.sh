#!/usr/bin/env bash
# Crash anywhere (issue #6, docs/RELIABILITY.md): kill -9 of vmferryd at
# random instants across whole migrations, then a restart, again and again.
#
# Every run migrates two VMs with auto_migrate (full copy, catch-up,
# cutover, final sync, deltas or in-place writes, power-on, no manual
# step): one with three disks of odd sizes, one with one disk.  Runs
# alternate the https transport (every pass lands in the target as
# snapshot deltas, consolidated) and
# lan_free (datastores mounted on the node, written in place), and every
# third run copies whole disks (fast_transfer off).  The guest writes
# while it runs, so the catch-up and the final sync have work.  A first
# run without kills measures how long a run takes (D); each later run
# gets 2-4 kill instants drawn uniformly from [0, D) by a seeded
# generator (CHAOS_SEED), so the kills land in proportion to the time
# spent in each step (every SOAP call is slowed down by 50 ms, as on a
# real vCenter): creating the target VM, CBT and snapshot creation, the
# copy, the catch-up, the cutover, the upload, the power-on, and the
# restart itself.  In every run one of its kills instead waits for a
# short step, in turn: the target VM's creation, enabling CBT, the source's
# shutdown, the target's power-on (each held 2 s on its peer by a delay on
# its call, and the kill lands 0-1 s into the call), a landing's
# consolidation (https runs: the target's RemoveSnapshot_Task, held the same way).
# A kill counts only when a job exists and is not complete; each counted
# kill is filed under its job's phase (its state; in the cutover the last
# step its log shows), and with CHAOS_FULL=1 every promised phase must
# have been hit.
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
		assert_eq "$(curl -sf "$D_CTL/snapshots?vm=$vm" | jq length)" 0 "run $r: $vm: no snapshot is left on the target"
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
kills=0         # counted: a job existed and was not complete
survived=0      # counted kills whose run then passed check_run
skipped=0       # instants after both jobs completed: no kill
early=0         # kills before the run's jobs existed: not counted
declare -A at_phase=()

# The steps a targeted kill waits for: the phase name and the log line
# that starts it.
declare -A step_line=([creating_vm]="creating target VM" [enabling_cbt]="enabling change tracking"
	[shutdown]="cutover: shutting down the source VM" [landing]="uploading the delta of disk" [power_on]="powering on the target VM")
# The steps made of one SOAP call: the peer and the call.
declare -A step_call=([creating_vm]="D CreateVM_Task" [enabling_cbt]="S ReconfigVM_Task"
	[shutdown]="S ShutdownGuest" [landing]="D RemoveSnapshot_Task" [power_on]="D PowerOnVM_Task")
steps="creating_vm enabling_cbt shutdown landing power_on"
# Phases a --full campaign must have killed in.
promised="creating_vm enabling_cbt transferring shutdown landing power_on"

# landing_last LOG: 1 when a pass's deltas are being put or consolidated
# (the last of its landing lines is a delta's upload, not the landed one).
landing_last() {
	grep -E "${step_line[landing]}|the pass landed in the target|sync pass [0-9]+:" <<<"$1" | tail -1 |
		grep -c "${step_line[landing]}" || true
}

# job_phase R VM STATE: the phase of a job: its state; while it enables
# CBT or cuts over, the step its log shows last.
job_phase() {
	local log
	case $3 in
	fetching_config | querying_changes | transferring | cutting_over) ;;
	*) echo "$3"; return ;;
	esac
	log=$(ctl log "crash$1" "$2" -n 1000 2>/dev/null || true)
	case $3 in
	cutting_over)
		if grep -q "${step_line[power_on]}" <<<"$log"; then echo power_on
		elif [ "$(landing_last "$log")" = 1 ]; then echo landing
		elif grep -q "${step_line[shutdown]}" <<<"$log"; then echo shutdown
		else echo cutting_over; fi ;;
	transferring)
		if [ "$(landing_last "$log")" = 1 ]; then echo landing; else echo transferring; fi ;;
	*)
		# The last CBT switch of the job, unless a pass started after it.
		if [ "$(grep -E "${step_line[enabling_cbt]}|sync pass [0-9]+:" <<<"$log" | tail -1 |
			grep -c "${step_line[enabling_cbt]}")" = 1 ]; then echo enabling_cbt; else echo "$3"; fi ;;
	esac
}

# kill_now R WHEN: kill -9 the daemon (unless both jobs are complete
# already), note the jobs' phases, restart it.
kill_now() {
	local r=$1 when=$2 jobs states phases="" vm st
	jobs=$(ctl --json jobs "crash$r" 2>/dev/null | jq -r '.jobs[] | "\(.vm) \(.state)"' || true)
	states=$(awk '{ print $2 }' <<<"$jobs" | paste -sd/)
	if [ "$states" = "complete/complete" ]; then
		skipped=$((skipped + 1))
		echo "# run $r: instant $when came after both jobs completed; not counted"
		return 0
	fi
	if [ -z "$states" ]; then
		crash_daemon
		early=$((early + 1))
		echo "# run $r: vmferryd killed (-9) $when, before the jobs existed; not counted"
		start_daemon "$CONF"
		return 0
	fi
	while read -r vm st; do
		[ "$st" = complete ] || phases+="${phases:+/}$(job_phase "$r" "$vm" "$st")"
	done <<<"$jobs"
	crash_daemon
	kills=$((kills + 1))
	run_kills=$((run_kills + 1))
	for st in ${phases//\// }; do at_phase[$st]=$((${at_phase[$st]:-0} + 1)); done
	now_ms
	ok "run $r: vmferryd killed (-9) at $((NOW_MS - t0)) ms, $when (jobs: $states; phases: $phases); kill $kills of $want"
	start_daemon "$CONF"
}

# step_hold STEP: a step made of a call gets that call held 2 s on its
# peer (in place of the 50 ms on every call); STEP_N0 = the calls so far.
# step_release: back to 50 ms on every call.
step_hold() {
	STEP_CTL=
	[ -n "${step_call[$1]:-}" ] || return 0
	set -- ${step_call[$1]}
	STEP_CTL=${1}_CTL STEP_METHOD=$2
	STEP_CTL=${!STEP_CTL}
	STEP_N0=$(method_count "$STEP_CTL" "$STEP_METHOD")
	fault "$STEP_CTL" "{\"delay\":{\"method\":\"$STEP_METHOD\",\"ms\":2000}}"
}
step_release() { [ -z "$STEP_CTL" ] || fault "$STEP_CTL" '{"delay":{"method":"*","ms":50}}'; }

# step_seen R STEP: the step's call reached its peer (held there), or a
# job of run R that is not complete shows STEP's line in its log; or both
# jobs are complete.
step_seen() {
	local vm
	[ "$(ctl --json jobs "crash$1" | jq -r '[.jobs[] | .state] | join("/")')" != complete/complete ] || return 0
	if [ -n "$STEP_CTL" ]; then
		[ "$(method_count "$STEP_CTL" "$STEP_METHOD")" -gt "$STEP_N0" ]
		return
	fi
	for vm in "r$1-a" "r$1-b"; do
		[ "$(job_state "crash$1" "$vm")" != complete ] && ctl log "crash$1" "$vm" -n 1000 | grep -q "${step_line[$2]}" && return 0
	done
	return 1
}
nsteps=0

r=0
while [ $kills -lt $want ]; do
	r=$((r + 1))
	[ $r -le $max_runs ] || fail "$kills of $want kills after $max_runs runs ($skipped instants came after completion)"
	rnd 3; k=$((REPLY + 2))
	[ $((want - kills)) -ge $k ] || k=$((want - kills))
	run_kills=0
	# One of the kills waits for a short step (so that each is hit often
	# enough), the next in turn that this run has (no landing with lan_free).
	step=$(echo $steps | cut -d' ' -f$((nsteps % 5 + 1)))
	nsteps=$((nsteps + 1))
	if [ $step = landing ] && [ $((r % 2)) -eq 1 ]; then
		step=$(echo $steps | cut -d' ' -f$((nsteps % 5 + 1)))
		nsteps=$((nsteps + 1))
	fi
	# The schedule: the other kills and two guest writes, as offsets in
	# ms from the start of the run, sorted; the kill at the step comes
	# after them unless the step shows first.
	events=()
	for ((i = 1; i < k; i++)); do rnd "$D"; events+=("$REPLY kill"); done
	for ((i = 0; i < 2; i++)); do rnd $((D * 6 / 10)); events+=("$REPLY write"); done
	mapfile -t events < <(printf '%s\n' "${events[@]}" | sort -n)
	step_hold $step
	now_ms; t0=$NOW_MS
	run_rule $r
	echo "# run $r ($RUN_DESC): events at ${events[*]}, and a kill at the step $step"
	stepped=0
	# (The last event, "end", only bounds the wait for the step.)
	for ev in "${events[@]}" "$((limit * 1000)) end"; do
		# Until the event is due, watch for the step (in 20 ms steps).
		while [ $stepped = 0 ]; do
			now_ms
			[ $NOW_MS -lt $((t0 + ${ev%% *})) ] || break
			if step_seen $r $step; then
				stepped=1
				if [ -n "$STEP_CTL" ]; then
					rnd 1000; sleep "$(printf '0.%03d' $REPLY)"
					kill_now $r "$REPLY ms into $STEP_METHOD (the step $step)"
					step_release
				else
					rnd 40; sleep "$(printf '0.%03d' $REPLY)"
					kill_now $r "$REPLY ms after the step $step showed in the log"
				fi
			else
				sleep 0.02
			fi
		done
		case $ev in
		*write) sleep_until_ms $((t0 + ${ev%% *})); random_write $r ;;
		*kill) sleep_until_ms $((t0 + ${ev%% *})); kill_now $r "${ev%% *} ms drawn" ;;
		esac
	done
	[ $stepped = 1 ] || fail "run $r never reached the step $step"
	wait_run $r
	now_ms
	echo "# run $r took $((NOW_MS - t0)) ms"
	check_run $r
	survived=$((survived + run_kills))
done

# Nothing else appeared on the target: one VM per migrated source VM.
want_vms=$(for ((i = 0; i <= r; i++)); do echo "r$i-a"; echo "r$i-b"; done | sort | paste -sd,)
assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[].name] | sort | join(",")')" "$want_vms" \
	"the target holds exactly one VM per migrated VM"

if [ "$CHAOS_FULL" = 1 ]; then
	for p in $promised; do
		[ "${at_phase[$p]:-0}" -gt 0 ] && ok "a kill landed in the phase $p (${at_phase[$p]})" ||
			fail "no kill landed in the phase $p"
	done
fi
by_phase=$(for s in "${!at_phase[@]}"; do echo "$s ${at_phase[$s]}"; done | sort -k2,2nr -k1,1 | paste -sd, | sed 's/,/, /g')
figure "crash instants survived: $survived/$kills kills while a job was under way (kill -9 of vmferryd; $early more before the jobs existed and $skipped instants after they completed, not counted; $((r + 1)) runs, $((2 * (r + 1))) migrations, every target disk identical, no snapshot left, one target VM each; jobs were in: $by_phase; seed $CHAOS_SEED)"
