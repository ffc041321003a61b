#!/usr/bin/env bash
# Crash anywhere in a replication cycle (issue 14, SPEC §3 and §9): kill -9
# of vmferryd at random instants of replication cycles, and at the named
# steps where a cycle's end or an operation on restore points is one call
# on a peer, then a restart, cycle after cycle.
#
# One rule replicates rc-a (three disks of odd sizes, CBT off: the engine
# turns it on) and rc-b (one disk) with keep_history 2 and no auto_sync:
# each cycle ends in 完成 and `vmferryctl run` starts the next.  Before
# each later cycle the guest writes to the VMs; the source's content is
# then kept (peer hashes, and each disk read into a raw image by
# qemu-img) as what that cycle must bring to the target.  Every SOAP call
# is slowed down by 50 ms, as on a real vCenter, and the copies to 3 MiB/s,
# so that the steps made of calls and the copy take their share of a
# cycle's time.  Two cycles without kills
# measure how long a first cycle (D1) and a later one (D) take; then
#  - rc-c (two disks) joins the rule: its first cycle (the target VM
#    made, the full copy landed through a landing snapshot, restore point
#    1) gets 1-2 kill instants drawn uniformly from [0, D1);
#  - every later cycle gets 1-2 kill instants drawn from [0, D) by a
#    seeded generator (CHAOS_SEED) while random kills are wanted, and one
#    kill that waits for a named step, in turn:
#      put        the deltas' PUTs into the top of the chain (75 % of the
#                 target's PUTs answered 503, so the landing lasts; the
#                 kill lands 0-0.7 s after the first refusal)
#      point      the restore point's CreateSnapshot_Task on the target
#                 (held 2 s on the peer; the kill lands 0-1 s into it: the
#                 engine committed the time it asked before asking, and
#                 finds the point by its name after the restart)
#      retention  the oldest point's RemoveSnapshot_Task on the target
#      src_remove the source snapshot's RemoveSnapshot_Task at the cycle's
#                 end (held; the guest writes meanwhile, after the cycle's
#                 snapshot, so the next cycle's; the daemon stays down
#                 until the removal went through)
#  - then on rc-a, each killed inside its held call: revert --point P
#    (RevertToSnapshot_Task), a revert's 快照清除 (RemoveSnapshot_Task;
#    with CHAOS_FULL only), failover --point P (PowerOnVM_Task; the
#    failed-over VM then writes), failback (PowerOffVM_Task); cycles
#    follow each.
# A kill counts only while a job of the rule is under way (not 完成 or
# 空闲); each is filed under its job's phase (its state; in transferring
# the step its log shows last).
#
# After each cycle and operation, for each VM: the job rests; every target
# disk has the source's SHA-256 as of the cycle it must hold (peer hashes);
# qemu-img finds the target's chain clean (check) and equal to the source
# as of that cycle (compare with the raw image); no snapshot left on the
# source; the target's snapshots are exactly the expected restore points
# vmferry-replication-rc-rpN, oldest first, none twice; `vmferryctl
# points` lists the same points with the same snapshots; the job counts
# one cycle and one success per cycle run, no failure; one target VM.
# CI size: 3 random kills, and each named step but cleanup once.
# CHAOS_FULL=1: 24 random kills, and each named step twice, every step
# killed at least once (a kill that comes after the jobs rested does not
# count).  CHAOS_KILLS sets the random kills.
. "$(dirname "$0")/chaos_lib.sh"
command -v qemu-img >/dev/null || skip_test "qemu-img (qemu-utils) is not installed"

if [ "$CHAOS_FULL" = 1 ]; then want=${CHAOS_KILLS:-24}; rounds=2; else want=${CHAOS_KILLS:-3}; rounds=1; fi
limit=240 # seconds a cycle may take at most (ASan, loaded machine)
KEEP=2
RULE=rc
declare -A ndisks=([rc-a]=3 [rc-b]=1 [rc-c]=2)

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"rc-a","host":"H0","power":"on","disks":[
          {"capacity":$((4 * MiB + 512 * 13)),"seed":11,"allocated":0.6},
          {"capacity":$((2 * MiB + 512 * 7)),"seed":12},
          {"capacity":$((6 * MiB + 512 * 3)),"seed":13,"allocated":0.3}]},
        {"name":"rc-b","host":"H0","power":"on","cbt":true,"disks":[
          {"capacity":$((5 * MiB + 512 * 5)),"seed":14,"allocated":0.8}]},
        {"name":"rc-c","host":"H0","power":"on","cbt":true,"disks":[
          {"capacity":$((6 * MiB + 512 * 9)),"seed":15,"allocated":0.7},
          {"capacity":$((3 * MiB + 512)),"seed":16,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config "transfer_buffer: 256KiB
host_buffer_cap: 8MiB"
slow_calls() { fault "$1" '{"delay":{"method":"*","ms":50}}'; }
# The copies take their share of a cycle too.
BW='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 3MiB/s } ]'
slow_calls "$S_CTL"
slow_calls "$D_CTL"
start_daemon "$CONF"

# ---- the model: what each target must hold

VMS="rc-a rc-b" # the rule's VMs
declare -A tat  # tat[VM]: the campaign's cycle its target's disks must hold
declare -A nrun # nrun[VM]: the job's cycles (its restore points' numbers)
declare -A pts  # pts[VM]: its restore points expected, oldest first ("3 4")
declare -A camp # camp[VM.N]: the campaign's cycle that made its point N

# remember C: the source as campaign cycle C reads it, kept in $T/at/C (no
# guest writes until the cycle has made its snapshot).
remember() {
	local vm
	for vm in $VMS; do rep_keep_source "$T/at/$1" "$vm" "${ndisks[$vm]}"; done
}

# cycle_ran VM C: the job ran a cycle (campaign cycle C): a new point, the
# oldest beyond KEEP gone.
cycle_ran() {
	nrun[$1]=$((${nrun[$1]:-0} + 1))
	tat[$1]=$2
	camp[$1.${nrun[$1]}]=$2
	pts[$1]=$(echo ${pts[$1]:-} ${nrun[$1]} | tr ' ' '\n' | tail -n $KEEP | paste -sd' ')
}

# check WHAT STATES [VM...]: the jobs (default: the rule's) rest in one of
# STATES (a regex), and their targets hold what the model says.
check() {
	local what=$1 states=$2 vm; shift 2
	for vm in ${*:-$VMS}; do
		rep_check "$what (target as of campaign cycle ${tat[$vm]})" "$RULE" "$vm" "${ndisks[$vm]}" \
			"$T/at/${tat[$vm]}" "${pts[$vm]}" "${nrun[$vm]}" "$states"
	done
}

# ---- kills

kills=0 # counted kills at random instants
named=0 # counted kills at named steps
declare -A named_at=() # ... by step
skipped=0
declare -A at_phase=()

# job_phase VM STATE: its state; in transferring, the step its log shows last.
job_phase() {
	local line
	[ "$2" = transferring ] || { echo "$2"; return; }
	line=$(ctl log "$RULE" "$1" -n 60 2>/dev/null | grep -E 'sync pass [0-9]+: .* to copy|uploading the delta|the pass landed|restore point [0-9]+ (made|removed)|sync pass [0-9]+ finished' | tail -1 || true)
	case $line in
	*"to copy"*) echo copy ;;
	*"uploading the delta"*) echo landing ;;
	*"pass landed"*) echo restore_point ;;
	*made* | *removed*) echo retention ;;
	*finished*) echo source_snapshot_removal ;;
	*) echo transferring ;;
	esac
}

# kill_now WHEN [DOWN_S]: kill -9 the daemon (unless every job rests),
# note the jobs' phases, restart it (DOWN_S seconds later).  KILLED: 1 when
# it counted.
kill_now() {
	local jobs states phases="" vm st
	KILLED=0
	jobs=$(ctl --json jobs "$RULE" 2>/dev/null | jq -r '.jobs[] | "\(.vm) \(.state)"' || true)
	states=$(awk '{ print $2 }' <<<"$jobs" | paste -sd/)
	if [ -z "$(awk '$2 != "complete" && $2 != "idle"' <<<"$jobs")" ]; then
		skipped=$((skipped + 1))
		echo "# $C: instant $1 came after the jobs rested ($states); not counted"
		return 0
	fi
	while read -r vm st; do
		case $st in complete | idle) ;; *) phases+="${phases:+/}$(job_phase "$vm" "$st")" ;; esac
	done <<<"$jobs"
	crash_daemon
	KILLED=1
	for st in ${phases//\// }; do at_phase[$st]=$((${at_phase[$st]:-0} + 1)); done
	now_ms
	ok "$C: vmferryd killed (-9) at $((NOW_MS - t0)) ms, $1 (jobs: $states; phases: $phases)"
	[ -z "${2:-}" ] || sleep "$2"
	start_daemon "$CONF"
}

# The named steps: the peer and the call held 2 s (in place of the 50 ms
# on every call); put answers the target's PUTs with 503 instead.
declare -A step_call=([point]="D CreateSnapshot_Task" [retention]="D RemoveSnapshot_Task"
	[src_remove]="S RemoveSnapshot_Task" [revert]="D RevertToSnapshot_Task" [cleanup]="D RemoveSnapshot_Task"
	[failover]="D PowerOnVM_Task" [failback]="D PowerOffVM_Task")
injected_503() { curl -sf "$D_CTL/fault" | jq -r .injected.http_error; }
step_hold() {
	STEP=$1
	if [ "$1" = put ]; then
		STEP_N0=$(injected_503)
		rnd 1000
		fault "$D_CTL" "{\"http_error\":{\"status\":503,\"fraction\":0.75,\"path\":\"/folder\",\"method\":\"PUT\"},\"seed\":$REPLY}"
		return
	fi
	set -- ${step_call[$1]}
	STEP_CTL=${1}_CTL STEP_METHOD=$2
	STEP_CTL=${!STEP_CTL}
	STEP_N0=$(method_count "$STEP_CTL" "$STEP_METHOD")
	fault "$STEP_CTL" "{\"delay\":{\"method\":\"$STEP_METHOD\",\"ms\":2000}}"
}
step_release() {
	if [ "$STEP" = put ]; then fault "$D_CTL" '{"http_error":{"fraction":0}}'; else slow_calls "$STEP_CTL"; fi
}
# step_seen: the held call reached its peer (put: a PUT was refused).
step_seen() {
	if [ "$STEP" = put ]; then
		[ "$(injected_503)" -gt "$STEP_N0" ]
	else
		[ "$(method_count "$STEP_CTL" "$STEP_METHOD")" -gt "$STEP_N0" ]
	fi
}
# step_kill: wait for the step (bounded), kill inside it, release it.
step_kill() {
	local end=$((SECONDS + limit)) down=
	until step_seen; do
		[ $SECONDS -lt $end ] || fail "$C never reached the step $STEP"
		sleep 0.02
	done
	if [ "$STEP" = put ]; then rnd 700; else rnd 1000; fi
	sleep "$(printf '0.%03d' "$REPLY")"
	if [ "$STEP" = src_remove ]; then
		# The guest writes while the removal is held: after the cycle's
		# snapshot, so the next cycle's.
		gwrite "{\"vm\":\"rc-a\",\"disk\":0,\"offset\":0,\"length\":131072,\"seed\":$((c + 500))}" >/dev/null
		gwrite "{\"vm\":\"rc-b\",\"disk\":0,\"offset\":65536,\"length\":131072,\"seed\":$((c + 600))}" >/dev/null
		down=2.5
	fi
	kill_now "$REPLY ms into the step $STEP${down:+ (down until the removal went through)}" $down
	[ $KILLED = 0 ] || { named=$((named + 1)); named_at[$STEP]=$((${named_at[$STEP]:-0} + 1)); }
	step_release
}

# cycle VMS_RUN START SPAN [STEP]: campaign cycle c+1 of the VMs VMS_RUN,
# started by START (run: vmferryctl run; rule: the rule written with VMS),
# with 1-2 random kills at instants drawn from [0, SPAN) ms while random
# kills are wanted (SPAN 0: none), and a kill at STEP.
cycle() {
	local run=$1 start=$2 span=$3 step=${4:-} vm ev k i stepped=0 events=()
	c=$((c + 1))
	C="cycle $c"
	[ "$start" = rule ] || chaos_writes
	remember $c
	# (Not with src_remove: its write must come after the cycle's snapshot.)
	if [ "$span" -gt 0 ] && [ $kills -lt $want ] && [ "$step" != src_remove ]; then
		rnd 2; k=$((REPLY + 1))
		[ $((want - kills)) -ge $k ] || k=$((want - kills))
		for ((i = 0; i < k; i++)); do rnd "$span"; events+=("$REPLY"); done
		mapfile -t events < <(printf '%s\n' "${events[@]}" | sort -n)
	fi
	[ -z "$step" ] || step_hold "$step"
	now_ms; t0=$NOW_MS
	if [ "$start" = rule ]; then
		rep_rule "$RULE" "$VMS" "fast_transfer: true, auto_sync: false" $KEEP local "$BW"
	else
		for vm in $run; do ctl run "$RULE" "$vm" >/dev/null || fail "$C: run $vm refused"; done
	fi
	echo "# $C of $run: kills at ${events[*]:-no} ms${step:+, and at the step $step}"
	for ev in "${events[@]}"; do
		if [ -n "$step" ] && [ $stepped = 0 ]; then
			# The step first, when it shows before the instant.
			while now_ms && [ $NOW_MS -lt $((t0 + ev)) ]; do
				if step_seen; then step_kill; stepped=1; break; fi
				sleep 0.02
			done
		fi
		sleep_until_ms $((t0 + ev))
		kill_now "$ev ms drawn"
		[ $KILLED = 0 ] || kills=$((kills + 1))
	done
	[ -z "$step" ] || [ $stepped = 1 ] || step_kill
	for vm in $run; do wait_job "$RULE" "$vm" complete $limit; done
	now_ms
	CYCLE_MS=$((NOW_MS - t0))
	echo "# $C took $CYCLE_MS ms"
	for vm in $run; do cycle_ran "$vm" $c; done
	check "$C" complete $run
}

# op STEP "CMD ARGS" STATE: an operation on rc-a's restore points
# (vmferryctl CMD RULE rc-a ARGS), killed inside its step STEP; it ends in
# STATE.
op() {
	local cmd=${2%% *} args=
	[ "$cmd" = "$2" ] || args=${2#* }
	step_hold "$1"
	C=$1
	now_ms; t0=$NOW_MS
	# shellcheck disable=SC2086
	ctl "$cmd" "$RULE" rc-a $args >/dev/null || fail "$2: refused"
	step_kill
	wait_job "$RULE" rc-a "$3" $limit
}

# ---- two cycles without kills measure D1 and D; rc-c joins, killed
c=0
cycle "$VMS" rule 0
D1=$CYCLE_MS
cycle "$VMS" run 0
D=$CYCLE_MS
echo "# a first cycle without kills takes ${D1} ms, a later one ${D} ms"
VMS="rc-a rc-b rc-c"
cycle rc-c rule "$D1"

# ---- cycles with kills, a named step each, and the operations
for ((round = 0; round < rounds; round++)); do
	for s in put point retention src_remove; do cycle "$VMS" run "$D" $s; done
	# 恢复快照 to the older point, killed in the revert (its 快照清除 then
	# removes the later point).
	P=${pts[rc-a]%% *}
	op revert "revert --point $P" idle
	pts[rc-a]=$P tat[rc-a]=${camp[rc-a.$P]}
	check "after the revert to point $P (killed in the revert)" idle rc-a
	cycle "$VMS" run "$D"
	if [ "$CHAOS_FULL" = 1 ]; then
		# Again, killed in its 快照清除 (the later point's RemoveSnapshot_Task).
		P=${pts[rc-a]%% *}
		op cleanup "revert --point $P" idle
		pts[rc-a]=$P tat[rc-a]=${camp[rc-a.$P]}
		check "after the revert to point $P (killed in its clean-up)" idle rc-a
		cycle "$VMS" run "$D"
	fi
	# 临时切换 to the older point, killed while it powers on; the failed-over
	# VM writes; 回切, killed while it powers off, discards that.
	P=${pts[rc-a]%% *}
	op failover "failover --point $P" failover_temporary
	wait_until 30 sh -c "[ \"\$(curl -sf '$D_CTL/vms' | jq -r '.[] | select(.name==\"rc-a\") | .power')\" = poweredOn ]" ||
		fail "the failed-over target VM never powered on"
	latest=${tat[rc-a]}
	tat[rc-a]=${camp[rc-a.$P]}
	check "failed over to point $P (killed while it powered on)" failover_temporary rc-a
	curl -sf -XPOST "$D_CTL/write" -d "{\"vm\":\"rc-a\",\"disk\":1,\"percent\":3,\"seed\":$c}" >/dev/null ||
		fail "the failed-over target VM could not be written"
	op failback failback idle
	tat[rc-a]=$latest
	assert_eq "$(vm_power "$D_CTL" rc-a)" poweredOff "after the failback the target VM is off"
	check "after the failback (killed while it powered off)" idle rc-a
	cycle "$VMS" run "$D"
done
# The random kills still wanted, in plain cycles.
while [ $kills -lt $want ]; do cycle "$VMS" run "$D"; done

assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[].name] | sort | join(",")')" "rc-a,rc-b,rc-c" \
	"the target holds exactly one VM per replicated VM"
if [ "$CHAOS_FULL" = 1 ]; then
	for s in put point retention src_remove revert cleanup failover failback; do
		[ "${named_at[$s]:-0}" -gt 0 ] && ok "a kill landed in the step $s (${named_at[$s]})" ||
			fail "no kill landed in the step $s"
	done
fi
by_phase=$(for s in "${!at_phase[@]}"; do echo "$s ${at_phase[$s]}"; done | sort -k2,2nr -k1,1 | paste -sd, | sed 's/,/, /g')
figure "replication crash instants survived: $kills at random instants and $named at named steps (kill -9 of vmferryd while a cycle or an operation on restore points was under way; $skipped instants after the jobs rested, not counted; $c cycles of up to 3 VMs, keep_history $KEEP; after each: the target equal to the source as of its cycle by peer hashes and qemu-img compare, its chain clean by qemu-img check, no snapshot left on the source, each restore point once, points agreeing with the target; jobs were in: $by_phase; seed $CHAOS_SEED)"
