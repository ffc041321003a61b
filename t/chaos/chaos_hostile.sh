#!/usr/bin/env bash
# Hostile input from a vCenter (docs/RELIABILITY.md, "Hostile input"): the
# test peer answers with truncated XML, wrong types, absurd sizes, huge
# bodies, endless pages, floods of changed areas and bytes dripping at
# 1 byte/s (t/peer/README.md, "Hostile answers").  Each ends in an error
# that names the cause (the CLI's, or the job's reason), the daemon's peak
# memory (VmHWM, a fresh daemon for each case) stays under a bound, it answers
# `vmferryctl ping` while a peer drips, and once the peer behaves again
# every migration completes with the source's bytes: nothing wrong was
# written.  CHAOS_FULL=1 makes the bodies and floods larger.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/migrate_lib.sh"

full=${CHAOS_FULL:-0}
cases=0

# Memory: the daemon's peak resident size (VmHWM, KiB).  Each measured
# case starts a fresh daemon (the jobs carry on from the store), so that
# memory kept by malloc from an earlier case does not count.
fresh_daemon() { stop_daemon; start_daemon "$CONF"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status"; }
# ASan keeps freed memory in quarantine and shadows all of it: bounds are
# for the plain build; under ASan the quarantine is cut to 16 MiB for the
# daemon and the bound is doubled plus 128 MiB (shadow, redzones, the
# sanitizer's own tables).
asan=0
grep -qa AddressSanitizer "$BIN/vmferryd" && asan=1
if [ $asan -eq 1 ]; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
fi
bound_kib() { # MiB -> KiB for this build
	if [ $asan -eq 1 ]; then echo $((($1 * 2 + 128) * 1024)); else echo $(($1 * 1024)); fi
}
# check_hwm MIB WHAT: the peak since fresh_daemon stays under MIB.
check_hwm() {
	local peak limit
	peak=$(hwm_kib)
	limit=$(bound_kib "$1")
	[ "$peak" -lt "$limit" ] && ok "$2: peak memory $((peak / 1024)) MiB < $((limit / 1024)) MiB" ||
		fail "$2: peak memory $((peak / 1024)) MiB, bound $((limit / 1024)) MiB"
	cases=$((cases + 1))
}
alive() { kill -0 "$DAEMON_PID" 2>/dev/null || fail "vmferryd died"; }

# inv_error: the CLI's error for a fresh inventory read of the source
# (shown as a comment too).
inv_error() {
	local e
	e=$(ctl inventory src --refresh 2>&1 >/dev/null && echo "(no error)" || true)
	echo "# $e" >&2
	echo "$e"
}

# wait_reason RULE VM "STATES" REGEX TIMEOUT: the job reaches one of the
# states with an error matching REGEX.
wait_reason() {
	local rule=$1 vm=$2 want=" $3 " re=$4 limit=$5 st err
	local end=$((SECONDS + limit))
	while :; do
		alive
		st=$(job_state "$rule" "$vm" 2>/dev/null || echo none)
		err=$(job_field "$rule" "$vm" error 2>/dev/null || true)
		case "$want" in *" $st "*) grep -Eq -- "$re" <<<"$err" && echo "# $rule/$vm $st: $err" && return 0 ;; esac
		if [ $SECONDS -ge $end ]; then
			ctl log "$rule" "$vm" -n 20 2>&1 | sed 's/^/#   /' || true
			fail "$rule/$vm: wanted$want with /$re/, got $st: $err"
		fi
		sleep 0.2
	done
}
hostile() { fault "$1" "{\"hostile\":$2}"; }
clear_faults() { fault "$S_CTL" '{"clear":true}'; fault "$D_CTL" '{"clear":true}'; }

huge=$((300 << 20))
endless_pages=1000
[ "$full" = 1 ] && huge=$((2048 << 20))

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"cap","host":"H0","disks":[{"capacity":1048583,"seed":1}]},
        {"name":"nofile","host":"H0","disks":[{"capacity":1048589,"seed":2,"allocated":0.5}]},
        {"name":"flood","host":"H0","power":"on","disks":[{"capacity":4194319,"seed":3,"allocated":0.6}]},
        {"name":"tiny","host":"H0","power":"on","disks":[{"capacity":2097169,"seed":4}]},
        {"name":"fdrip","host":"H0","disks":[{"capacity":3145739,"seed":5}]},
        {"name":"fhuge","host":"H0","disks":[{"capacity":2097181,"seed":6,"allocated":0.7}]},
        {"name":"sdrip","host":"H0","disks":[{"capacity":1048601,"seed":7}]},
        {"name":"task","host":"H0","disks":[{"capacity":1048609,"seed":8}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"
opts="fast_transfer: true, auto_migrate: true"
ctl inventory src --refresh >/dev/null || fail "the first inventory read failed"

# --- Replies that are not what they claim (CLI errors, inventory reads).
fresh_daemon
hostile "$S_CTL" '{"kind":"truncate","method":"RetrievePropertiesEx"}'
assert_match "$(inv_error)" 'src: RetrievePropertiesEx: reply is not XML' "truncated XML: the CLI names the cause"
check_hwm 64 "truncated XML"

fresh_daemon
hostile "$S_CTL" "{\"kind\":\"huge\",\"method\":\"RetrievePropertiesEx\",\"bytes\":$huge}"
assert_match "$(inv_error)" 'RetrievePropertiesEx: reply larger than 16777216 bytes' \
	"a $((huge >> 20)) MiB body (Content-Length) is refused"
check_hwm 64 "a $((huge >> 20)) MiB body announced"

fresh_daemon
hostile "$S_CTL" "{\"kind\":\"huge\",\"method\":\"RetrievePropertiesEx\",\"bytes\":$huge,\"chunked\":true}"
assert_match "$(inv_error)" 'RetrievePropertiesEx: reply larger than 16777216 bytes' \
	"a $((huge >> 20)) MiB body (chunked) is cut at 16 MiB"
check_hwm 64 "a $((huge >> 20)) MiB chunked body"

# 15 MiB of empty elements: under the size limit, ~500 MiB as a tree.
fresh_daemon
hostile "$S_CTL" "{\"kind\":\"huge\",\"method\":\"RetrievePropertiesEx\",\"bytes\":$((15 << 20))}"
assert_match "$(inv_error)" 'reply needs more than 64 MiB of memory to parse' \
	"15 MiB of empty elements are refused before they take 500 MiB"
check_hwm 128 "15 MiB of empty elements"

fresh_daemon
hostile "$S_CTL" "{\"kind\":\"endless\",\"method\":\"RetrievePropertiesEx\",\"objects\":$endless_pages}"
assert_match "$(inv_error)" 'the inventory is too large: 100[0-9]{3} objects .* and more announced; at most 100000' \
	"endless pages of objects stop at 100,000 objects"
check_hwm 128 "endless pages of 1000 VMs"

hostile "$S_CTL" '{"kind":"endless","method":"RetrievePropertiesEx","objects":0}'
assert_match "$(inv_error)" 'the inventory is too large: 1 objects in 102 pages \(101 empty\)' \
	"endless empty pages stop after 100"
cases=$((cases + 1))

for v in 9223372036854775808 -1 lots; do
	hostile "$S_CTL" "{\"kind\":\"replace\",\"method\":\"RetrievePropertiesEx\",\"element\":\"capacityInBytes\",\"value\":\"$v\"}"
	out=$(ctl --json inventory src --refresh)
	assert_match "$(jq -r '.vms[] | select(.name == "cap") | .problem' <<<"$out")" \
		"capacityInBytes \"$v\" is not a size from 1 byte to 64 TiB" "a disk capacity of $v is shown as unusable"
	cases=$((cases + 1))
done
hostile "$S_CTL" '{"kind":"replace","method":"RetrievePropertiesEx","element":"key","value":"many"}'
assert_match "$(ctl inventory src --refresh)" 'cap .*
  \^ cannot be migrated: the platform sent unusable data: disk 0 \(Hard disk 1\): no valid device key' \
	"a device key that is no number is shown by the CLI"
cases=$((cases + 1))
clear_faults
alive

# --- Migrations against absurd values: refused with the reason, nothing
# created; once the peer behaves, `start` migrates them correctly.
hostile "$S_CTL" '{"kind":"replace","method":"RetrievePropertiesEx","element":"capacityInBytes","value":"9223372036854775808"}'
mig_rule rcap cap "$opts"
wait_reason rcap cap failed 'sent unusable data for VM cap: disk 0 \(Hard disk 1\): capacityInBytes "9223372036854775808"' 60
ok "a disk capacity of 2^63 fails the migration with the reason"
assert_eq "$(vm_count "$D_CTL" cap)" 0 "no target VM was created for it"
hostile "$S_CTL" '{"kind":"remove","method":"RetrievePropertiesEx","element":"fileName"}'
mig_rule rnofile nofile "$opts"
wait_reason rnofile nofile failed 'VM nofile: disk 0 \(Hard disk 1\): no backing file name' 60
ok "a disk without a file name fails the migration with the reason"
clear_faults
ctl start rcap cap >/dev/null
ctl start rnofile nofile >/dev/null
wait_job rcap cap complete 120
wait_job rnofile nofile complete 120
check_complete rcap cap 1 "after the absurd capacity"
check_complete rnofile nofile 1 "after the missing file name"
cases=$((cases + 2))

# A task whose state is no state: CreateVM_Task ran, its outcome cannot be
# read; after `start` the job finds its VM again (by its marker) instead of
# making a second one.
hostile "$D_CTL" '{"kind":"replace","method":"RetrievePropertiesEx","element":"state","value":"lots"}'
mig_rule rtask task "$opts"
wait_reason rtask task failed 'dst: task task-[0-9]+ is in an unknown state "lots"' 60
ok "a task in an unknown state fails the job with the reason"
clear_faults
ctl start rtask task >/dev/null
wait_job rtask task complete 120
check_complete rtask task 1 "after the unknown task state"
cases=$((cases + 1))

# --- Changed areas: a flood of one-byte areas, page after page, is merged
# (copying the bytes between is always right) and the copy is correct.
fresh_daemon
floodn=50000
hostile "$S_CTL" "{\"kind\":\"extents\",\"method\":\"QueryChangedDiskAreas\",\"extents\":$floodn,\"paged\":true}"
mig_rule rflood flood "fast_transfer: true"
wait_job rflood flood ready 400
ok "a flood of $(((4194319 + 2 * floodn - 1) / (2 * floodn) * floodn)) one-byte changed areas is read"
assert_match "$(ctl log rflood flood -n 200)" 'more than 1048576 changed areas; areas less than [0-9]+ bytes apart are copied as one' \
	"the merge is logged"
check_hwm 128 "a flood of changed areas"
clear_faults
ctl migrate rflood flood >/dev/null
wait_job rflood flood complete 120
check_complete rflood flood 1 "after the flood of changed areas"
# Every reply covering one byte: the pages are bounded by the disk size.
hostile "$S_CTL" '{"kind":"replace","method":"QueryChangedDiskAreas","element":"length","value":"1"}'
mig_rule rtiny tiny "$opts"
wait_reason rtiny tiny failed 'QueryChangedDiskAreas still at offset [0-9]+ of 2097169 after [0-9]+ replies' 300
ok "replies that each cover one byte fail the pass with the reason"
hostile "$S_CTL" '{"kind":"extents","method":"QueryChangedDiskAreas","extents":2000000000}'
ctl start rtiny tiny >/dev/null
wait_reason rtiny tiny failed 'QueryChangedDiskAreas: reply larger than 16777216 bytes' 120
ok "two billion changed areas in one reply are cut at 16 MiB"
clear_faults
ctl start rtiny tiny >/dev/null
wait_job rtiny tiny complete 120
check_complete rtiny tiny 1 "after the endless and flooded replies"
cases=$((cases + 3))

# --- Dripping: a source that sends disk data at 1 byte/s and a target
# whose SOAP replies come at 1 byte/s, at the same time.  The daemon
# answers ping meanwhile; the stalled transfers are given up with the
# cause, the jobs wait in 失效 and complete once the peers behave.
fresh_daemon
hostile "$S_CTL" '{"kind":"drip","path":"/folder","match":"-flat.vmdk","bps":1}'
mig_rule rfdrip fdrip "$opts"
wait_job rfdrip fdrip transferring 60
hostile "$D_CTL" '{"kind":"drip","method":"RetrievePropertiesEx","bps":1}'
mig_rule rsdrip sdrip "$opts"
# (the job log keeps each reason: fdrip meets the target's drip too once
# it tries again)
fdrip_re='-> invalid \(event peer_lost\): disk 0: src: \[ds0\] fdrip/fdrip-flat.vmdk: Operation too slow. Less than 1024 bytes/sec'
sdrip_re='-> invalid \(event peer_lost\): target platform dst: dst unreachable: Operation too slow. Less than 1024 bytes/sec'
pings=0
while ! grep -Eq -- "$fdrip_re" <<<"$(ctl log rfdrip fdrip -n 100)" || ! grep -Eq -- "$sdrip_re" <<<"$(ctl log rsdrip sdrip -n 100)"; do
	timeout 60 "$BIN/vmferryctl" -s "$SOCK" ping >/dev/null || fail "ping got no answer during the drip"
	pings=$((pings + 1))
	[ $pings -lt 600 ] || fail "the dripping transfers were not given up (fdrip $(job_state rfdrip fdrip), sdrip $(job_state rsdrip sdrip))"
	sleep 0.5
done
ok "the daemon answered $pings pings while both peers dripped"
ok "a source dripping disk data at 1 byte/s: 失效 with the cause"
ok "a target dripping SOAP at 1 byte/s: 失效 with the cause"
check_hwm 64 "two dripping peers"
clear_faults
wait_job rfdrip fdrip complete 180
wait_job rsdrip sdrip complete 180
check_complete rfdrip fdrip 1 "after the disk drip"
check_complete rsdrip sdrip 1 "after the SOAP drip"
cases=$((cases + 2))

# --- A source that answers every range read with far more bytes.
hostile "$S_CTL" '{"kind":"huge","path":"/folder","match":"-flat.vmdk","bytes":67108864}'
mig_rule rfhuge fhuge "$opts"
wait_reason rfhuge fhuge invalid 'the server sent more bytes than asked for' 120
ok "range reads answered with 64 MiB: 失效 with the cause"
clear_faults
wait_job rfhuge fhuge complete 180
check_complete rfhuge fhuge 1 "after the oversized range answers"
cases=$((cases + 1))

alive
echo "# figure: hostile answers survived: $cases cases (truncated XML, wrong types, absurd sizes, $((huge >> 20)) MiB bodies, endless pages, floods of changed areas, 1 byte/s drips), every error names its cause, peak memory within bounds, 0 wrong bytes"
