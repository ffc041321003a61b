#!/usr/bin/env bash
# Faults (issue #6, docs/RELIABILITY.md): a matrix over the test peer's
# fault switches.  Each cell migrates its own VM (two disks of odd sizes,
# fast_transfer and auto_migrate on, so it runs through the full copy, the
# catch-up, the cutover, the upload and the power-on) with a fault
# switched on at a chosen moment: from the start, in the middle of the
# copy, or during the cutover.  A cell ends in one of two ways, decided in
# advance:
#  - complete: the job completes, every target disk has the source's
#    SHA-256, no snapshot is left, one target VM; a transient fault (delay,
#    HTTP 5xx, dropped body, expired session) must not even show 失效
#    (invalid) — an outage longer than the retry window must;
#  - failed: the job fails with a reason naming the cause (the certificate's
#    thumbprint, the HTTP status and file), never completes with wrong
#    bytes; then the fault is removed, `vmferryctl start` resumes the job
#    and it completes with identical bytes.
# Every cell also proves that its fault fired: the peer's injected
# counters (fired), the failure naming the changed certificate, or the
# log naming the CBT reset.
# CI size: a subset with small disks; CHAOS_FULL=1: every cell, bigger
# disks, and combined faults.  CHAOS_CELLS="a b" runs only those cells.
. "$(dirname "$0")/chaos_lib.sh"

ci_cells="e503_src e500_sdk drop_src drop_upload cbt_reset_copy cert_src pin_wrong e404_folder"
full_cells="delay_src delay_dst delay_snapshot delay_shutdown e503_src e503_dst e500_sdk e500_folder
	drop_src drop_early drop_upload expiry upload_503 outage_src_copy outage_dst_copy outage_src_cutover
	outage_dst_cutover outage_src_long cbt_reset_copy cbt_reset_all cbt_reset_catchup cert_src cert_dst
	pin_wrong e404_folder e401_folder combined_src combined_both"
if [ "$CHAOS_FULL" = 1 ]; then cells=$full_cells; size=6291456; else cells=$ci_cells; size=2097152; fi
cells=${CHAOS_CELLS:-$cells}
limit=300

# One source VM per cell: f-NAME, two disks of odd sizes.
{
	echo '{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":['
	n=0
	for c in $cells; do
		[ $n -eq 0 ] || echo ','
		n=$((n + 1))
		echo "{\"name\":\"f-$c\",\"host\":\"H0\",\"power\":\"on\",\"disks\":["
		echo "  {\"capacity\":$((size + 4097 + n)),\"seed\":$((n * 2)),\"allocated\":0.6},"
		echo "  {\"capacity\":$((size / 2 + 11)),\"seed\":$((n * 2 + 1)),\"allocated\":0.9}]}"
	done
	echo ']}'
} >"$T/fixture.json"
mig_start_peers "$T/fixture.json"
mig_config "transfer_buffer: 256KiB
host_buffer_cap: 8MiB"
# A platform pinned to a thumbprint the source does not present.
mig_platform srcpin "$S_URL" "$(printf '00:%.0s' {1..31})00" vc >"$CONF/11-wrong-pin.yaml"
start_daemon "$CONF"

slow='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 2MiB/s } ]'
slower='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 512KiB/s } ]'
survived=0
ncomplete=0
nfailed=0
total_injected=0

# --- building blocks

both_clear() {
	fault "$S_CTL" '{"clear":true}'
	fault "$D_CTL" '{"clear":true}'
}

# cell_rule [BANDWIDTH]: the cell's rule, over its VM.
cell_rule() { mig_rule "$RULE" "$VM" "fast_transfer: true, auto_migrate: true" "${1:-}"; }

# mid_copy: the rule with a slow copy (several seconds even for the small
# disks); returns once the copy is under way.
mid_copy() {
	cell_rule "$slower"
	wait_job "$RULE" "$VM" transferring 120
	wait_until 120 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs '$RULE' | jq '.jobs[0].bytes_done') -gt 524288 ]" ||
		fail "$CELL: the copy did not get past 512 KiB"
}

# at_cutover: the rule, with the source's shutdown held for 3 s so that
# the cell can act while the job is cutting over.
at_cutover() {
	fault "$S_CTL" '{"delay":{"method":"ShutdownGuest","ms":3000}}'
	cell_rule
	wait_job "$RULE" "$VM" cutting_over $limit
	# The guest writes while it is being shut down: the final pass has
	# changes, so the cutover puts deltas into the target.
	gwrite "{\"vm\":\"$VM\",\"disk\":0,\"offset\":0,\"length\":65536,\"seed\":71}" >/dev/null
	gwrite "{\"vm\":\"$VM\",\"disk\":1,\"offset\":0,\"length\":65536,\"seed\":72}" >/dev/null
}

# injected: S_INJ, D_INJ = the peers' injected counters by kind (GET
# /fault), read before a clear resets them; INJECTED = the HTTP errors and
# dropped connections of both.
injected() {
	S_INJ=$(curl -sf "$S_CTL/fault" | jq -c .injected)
	D_INJ=$(curl -sf "$D_CTL/fault" | jq -c .injected)
	INJECTED=$(( $(jq '.http_error + .drop' <<<"$S_INJ") + $(jq '.http_error + .drop' <<<"$D_INJ") ))
}

# fired S|D KIND [N]: the cell's fault fired on that peer: its injected
# counter KIND (as injected read it) is at least 1, or exactly N.
fired() {
	local inj=${1}_INJ n
	n=$(jq -r --arg k "$2" '.[$k]' <<<"${!inj}")
	if [ -n "${3:-}" ]; then
		assert_eq "$n" "$3" "$CELL: the $2 fault fired $3 times on $1"
	else
		[ "$n" -ge 1 ] && ok "$CELL: the $2 fault fired on $1 ($n)" || fail "$CELL: the $2 fault never fired on $1"
	fi
}

invalid_seen() { ctl log "$RULE" "$VM" -n 1000 | grep -c -- '-> invalid' || true; }

# expect_complete [invalid]: the cell ends in completion with identical
# bytes; with invalid the job must have shown 失效 on the way, without it
# never.
expect_complete() {
	wait_job "$RULE" "$VM" complete $limit
	injected
	total_injected=$((total_injected + INJECTED))
	echo "# $CELL: completed; the peers injected $INJECTED HTTP errors and dropped connections"
	both_clear
	check_complete "$RULE" "$VM" 2 "$CELL"
	if [ "${1:-}" = invalid ]; then
		[ "$(invalid_seen)" -ge 1 ] && ok "$CELL: the outage showed 失效 (invalid)" ||
			fail "$CELL: the job never showed 失效 (invalid) through the outage"
	else
		assert_eq "$(invalid_seen)" 0 "$CELL: a transient fault never showed 失效 (invalid)"
	fi
	assert_eq "$(ctl --json stats "$RULE" "$VM" | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "1 0" \
		"$CELL: one success, no failure counted"
	survived=$((survived + 1))
	ncomplete=$((ncomplete + 1))
}

# expect_failed REGEX FIX...: the job fails with a reason matching REGEX;
# then FIX (a command) removes the cause, the job is started again and
# completes with identical bytes.
expect_failed() {
	local re=$1 err; shift
	wait_job "$RULE" "$VM" failed $limit
	err=$(job_field "$RULE" "$VM" error)
	assert_match "$err" "$re" "$CELL: the job failed naming the cause ($err)"
	injected
	"$@"
	ctl start "$RULE" "$VM" >/dev/null || fail "$CELL: start refused"
	wait_job "$RULE" "$VM" complete $limit
	check_complete "$RULE" "$VM" 2 "$CELL: after the cause was removed"
	survived=$((survived + 1))
	nfailed=$((nfailed + 1))
}

# --- the cells

c_delay_src() { fault "$S_CTL" '{"delay":{"method":"*","ms":250}}'; cell_rule; expect_complete; fired S delay; }
c_delay_dst() { fault "$D_CTL" '{"delay":{"method":"*","ms":250}}'; cell_rule; expect_complete; fired D delay; }
c_delay_snapshot() { fault "$S_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":5000}}'; cell_rule; expect_complete; fired S delay; }
c_delay_shutdown() { fault "$S_CTL" '{"delay":{"method":"ShutdownGuest","ms":8000}}'; cell_rule; expect_complete; fired S delay; }
c_e503_src() { fault "$S_CTL" '{"http_error":{"status":503,"fraction":0.1,"path":"*"},"seed":11}'; cell_rule; expect_complete; fired S http_error; }
c_e503_dst() { fault "$D_CTL" '{"http_error":{"status":503,"fraction":0.1,"path":"*"},"seed":12}'; cell_rule; expect_complete; fired D http_error; }
c_e500_sdk() {
	fault "$S_CTL" '{"http_error":{"status":500,"fraction":0.15,"path":"/sdk"},"seed":13}'
	fault "$D_CTL" '{"http_error":{"status":500,"fraction":0.15,"path":"/sdk"},"seed":14}'
	cell_rule; expect_complete
	fired S http_error; fired D http_error
}
c_e500_folder() {
	fault "$S_CTL" '{"http_error":{"status":500,"fraction":0.15,"path":"/folder"},"seed":15}'
	fault "$D_CTL" '{"http_error":{"status":500,"fraction":0.5,"path":"/folder"},"seed":16}'
	cell_rule; expect_complete
	fired S http_error; fired D http_error
}
c_drop_src() { fault "$S_CTL" '{"drop":{"fraction":0.3},"seed":17}'; cell_rule; expect_complete; fired S drop; }
c_drop_early() { fault "$S_CTL" '{"drop":{"fraction":0.3,"after":100},"seed":18}'; cell_rule; expect_complete; fired S drop; }
# Uploads at cutover cut in the middle (the target takes 1 KiB, then
# closes the connection without an answer).
c_drop_upload() {
	at_cutover
	fault "$D_CTL" '{"drop":{"count":2,"method":"PUT","after":1024}}'
	expect_complete
	assert_eq "$INJECTED" 2 "$CELL: two uploads were cut"
	fired D drop 2
}
c_expiry() {
	fault "$S_CTL" '{"session_expiry_s":2}'
	fault "$D_CTL" '{"session_expiry_s":2}'
	cell_rule "$slow"; expect_complete
	fired S session_expiry; fired D session_expiry
}
c_upload_503() {
	at_cutover
	fault "$D_CTL" '{"http_error":{"status":503,"count":4,"path":"/folder"}}'
	expect_complete
	fired D http_error 4
}
c_outage_src_copy() { mid_copy; fault "$S_CTL" '{"outage_s":20}'; expect_complete invalid; fired S outage 1; }
# The https copy writes staging images on the node and needs the target
# only at the cutover: its outage starts during the copy (about 18 s at
# the full size) and lasts into the cutover, past the retry window.
c_outage_dst_copy() { mid_copy; fault "$D_CTL" '{"outage_s":45}'; expect_complete invalid; fired D outage 1; }
c_outage_src_cutover() { at_cutover; fault "$S_CTL" '{"outage_s":20}'; expect_complete invalid; fired S outage 1; }
c_outage_dst_cutover() { at_cutover; fault "$D_CTL" '{"outage_s":20}'; expect_complete invalid; fired D outage 1; }
# A long outage: the job goes 失效 more than once, and waits longer each
# time (5 s, then 10 s) instead of knocking every 5 s.
c_outage_src_long() {
	mid_copy
	fault "$S_CTL" '{"outage_s":50}'
	expect_complete invalid
	fired S outage 1
	assert_match "$(ctl log "$RULE" "$VM" -n 1000 | grep -o 'will try again in [0-9]* s' | paste -sd,)" \
		"will try again in 5 s,will try again in 10 s" "$CELL: the wait in 失效 doubles while the source stays away"
}
cbt_reset_logged() {
	assert_match "$(ctl log "$RULE" "$VM" -n 1000)" "disk $1: change tracking was reset .*copying it in full" \
		"$CELL: the log says disk $1 was copied in full after the CBT reset"
}
c_cbt_reset_copy() {
	mid_copy
	fault "$S_CTL" "{\"cbt_reset\":{\"vm\":\"$VM\",\"disk\":0}}"
	expect_complete
	cbt_reset_logged 0
}
c_cbt_reset_all() {
	mid_copy
	fault "$S_CTL" "{\"cbt_reset\":{\"vm\":\"$VM\",\"disk\":0}}"
	fault "$S_CTL" "{\"cbt_reset\":{\"vm\":\"$VM\",\"disk\":1}}"
	guest_write "{\"vm\":\"$VM\",\"disk\":1,\"percent\":30,\"seed\":5}"
	expect_complete
	cbt_reset_logged 0
	cbt_reset_logged 1
}
# A reset between the full copy and the catch-up: the catch-up's changeId
# is refused.  The rule waits in 迁移就绪 (no auto_migrate) meanwhile.
c_cbt_reset_catchup() {
	mig_rule "$RULE" "$VM" "fast_transfer: true"
	wait_job "$RULE" "$VM" ready $limit
	guest_write "{\"vm\":\"$VM\",\"disk\":0,\"percent\":20,\"seed\":6}"
	fault "$S_CTL" "{\"cbt_reset\":{\"vm\":\"$VM\",\"disk\":0}}"
	ctl migrate "$RULE" "$VM" >/dev/null || fail "$CELL: migrate refused"
	expect_complete
	cbt_reset_logged 0
}
# The source's certificate changes in the middle of the copy: the pinned
# thumbprint no longer matches.  The failure shows the new thumbprint.
c_cert_src() {
	mid_copy
	thumb=$(curl -sf -XPOST "$S_CTL/fault" -d '{"cert":"new"}' | jq -r .faults.thumbprint)
	expect_failed "$thumb" fault "$S_CTL" '{"cert":"original"}'
}
c_cert_dst() {
	at_cutover
	thumb=$(curl -sf -XPOST "$D_CTL/fault" -d '{"cert":"new"}' | jq -r .faults.thumbprint)
	fault "$S_CTL" '{"delay":{"method":"ShutdownGuest","ms":0}}'
	expect_failed "$thumb" fault "$D_CTL" '{"cert":"original"}'
}
# A platform pinned to the wrong thumbprint: the failure shows the one the
# server presented, so that it can be pinned; the fixed rule completes.
c_pin_wrong() {
	MIG_SRC=srcpin cell_rule
	expect_failed "does not match the pinned thumbprint.*$S_THUMB" fix_pin
}
# Refused at the first contact: nothing was made on either side before.
pin_refused_first() {
	assert_eq "$(vm_count "$D_CTL" "$VM") $(snap_count "$VM")" "0 0" \
		"$CELL: refused before any target VM or snapshot was made"
}
fix_pin() { pin_refused_first; cell_rule; reload_config; }
c_e404_folder() {
	fault "$S_CTL" '{"http_error":{"status":404,"count":1,"path":"/folder"}}'
	cell_rule
	expect_failed "\\[ds0\\] $VM/.*HTTP 404" both_clear
	fired S http_error 1
}
c_e401_folder() {
	fault "$S_CTL" '{"http_error":{"status":401,"fraction":1,"path":"/folder"}}'
	cell_rule
	expect_failed "HTTP 401" both_clear
	fired S http_error
}
c_combined_src() {
	fault "$S_CTL" '{"http_error":{"status":503,"fraction":0.05,"path":"*"},"drop":{"fraction":0.1},"session_expiry_s":3,"delay":{"method":"*","ms":30},"seed":19}'
	cell_rule "$slow"; expect_complete
	for k in http_error drop session_expiry delay; do fired S $k; done
}
c_combined_both() {
	fault "$S_CTL" '{"http_error":{"status":503,"fraction":0.05,"path":"*"},"drop":{"fraction":0.1},"session_expiry_s":3,"delay":{"method":"*","ms":30},"seed":20}'
	# The target gets few requests (the VM's creation, the uploads, the
	# power-on): 30 % of them fail, so that some do.
	fault "$D_CTL" '{"http_error":{"status":500,"fraction":0.3,"path":"*"},"session_expiry_s":3,"delay":{"method":"*","ms":30},"seed":21}'
	cell_rule "$slow"; expect_complete
	for k in http_error drop session_expiry delay; do fired S $k; done
	for k in http_error session_expiry delay; do fired D $k; done
}

# --- the matrix
ncells=0
for c in $cells; do
	declare -F "c_$c" >/dev/null || fail "unknown cell $c"
	ncells=$((ncells + 1))
	CELL=$c VM=f-$c RULE=f-$c
	both_clear
	echo "# cell $c"
	"c_$c"
	both_clear
done
figure "fault cells survived: $survived/$ncells ($ncomplete completed through the fault with identical bytes, through $total_injected injected HTTP errors and dropped connections; $nfailed failed naming the cause and completed once it was removed; no wrong byte, no silent partial copy; seed $CHAOS_SEED)"
