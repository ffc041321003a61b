#!/usr/bin/env bash
# Resources: the node's temp_dir (where the staging images of a copy live)
# on a small tmpfs that fills up in the middle of the full copy.  The job
# goes to 失效 (invalid) with a reason naming the cause and the path; once
# space is freed it resumes by itself from its checkpoint and the migration
# completes with the source's bytes, no snapshot left on the source and one
# target VM.  CI: the disk fills up once; CHAOS_FULL=1: four times on a
# larger disk, space freed a step at a time.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/migrate_lib.sh"

MIB=1048576
if [ "${CHAOS_FULL:-0}" = 1 ]; then rounds=4; else rounds=1; fi
# Each round frees 8 MiB; the first failure comes after about 6 MiB.
cap=$(((rounds * 8 + 4) * MIB + 123))
fs_mib=$((rounds * 8 + 8))
tmpfs_mount TMPD "${fs_mib}m"

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"fill01","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":$cap,"seed":11,"allocated":1.0},{"capacity":2097173,"seed":12,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
mig_temp_dir "$TMPD"
# Leave about 6 MiB free.
filler=$TMPD/filler
fallocate -l $(((fs_mib - 6) * MIB)) "$filler" 2>/dev/null ||
	dd if=/dev/zero of="$filler" bs=1M count=$((fs_mib - 6)) status=none
start_daemon "$CONF"
mig_rule full fill01 "fast_transfer: true"

# How many times the job has gone 失效 so far (an attempt after space was
# freed can fill it again within a second: states alone would miss it).
n_invalid() { ctl log full fill01 -n 1000 2>/dev/null | grep -c -- '-> invalid' || true; }
# wait_invalid N: wait until the job has gone 失效 more than N times.
wait_invalid() {
	local end=$((SECONDS + 180)) st
	while [ "$(n_invalid)" -le "$1" ]; do
		st=$(job_state full fill01)
		[ "$st" != ready ] || fail "the job reached ready on a full temp_dir"
		[ "$st" != failed ] || fail "the job failed: $(job_field full fill01 error)"
		[ $SECONDS -lt $end ] || fail "the job did not go 失效 (state $st)"
		sleep 0.2
	done
}

fails=""
seen=0
for ((r = 1; r <= rounds; r++)); do
	wait_invalid $seen
	j=$(job_json full fill01)
	assert_eq "$(jq -r '"\(.state) \(.label_zh)"' <<<"$j")" "invalid 失效" "round $r: temp_dir full: the job is 失效 (invalid)"
	err=$(jq -r .error <<<"$j")
	assert_match "$err" "No space left on device" "round $r: the reason names the cause ($err)"
	assert_match "$err" "$TMPD" "round $r: the reason names the path"
	done_b=$(jq -r .bytes_done <<<"$j")
	fails+="$((done_b / MIB)) "
	kill -0 "$DAEMON_PID" || fail "vmferryd died"
	if [ $r = 1 ]; then
		# While it stays full the job tries again by itself, less and
		# less often (5 s, then 10 s, ...), and fails the same way.
		wait_until 90 sh -c "'$BIN/vmferryctl' -s '$SOCK' log full fill01 -n 50 | grep -q 'will try again in 10 s'" ||
			fail "no second attempt with a longer delay: $(ctl log full fill01 -n 8)"
		assert_match "$(ctl log full fill01 -n 50 | grep -B3 'will try again in 10 s' | head -3)" "No space left on device" \
			"round $r: still full, the next attempt failed the same way, and the one after waits twice as long"
		assert_eq "$(job_state full fill01)" invalid "round $r: the job is still 失效"
	fi
	seen=$(n_invalid)
	if [ $r -lt $rounds ]; then
		truncate -s -$((8 * MIB)) "$filler"
		ok "round $r: 8 MiB freed"
	else
		rm -f "$filler"
		ok "round $r: the filler removed"
	fi
done
wait_job full fill01 ready 180
ok "space freed: the job resumed by itself and finished its full copy (迁移就绪)"
log=$(ctl log full fill01 -n 400)
# (An attempt while still full may stop before the copy: fewer lines.)
offs=$(grep -Eo 'disk 0: resuming at offset [0-9]+' <<<"$log" | grep -Eo '[0-9]+$' | sort -nu | tr '\n' ' ' || true)
set -- $offs
[ $# -eq $rounds ] && [ "${1:-0}" -gt 0 ] && ok "after each of the $rounds fill-ups the copy continued from a later checkpoint (offsets $offs)" ||
	fail "expected $rounds distinct resumption offsets above 0, the log shows '$offs'"
# The source was read about once: each failure re-reads at most what was
# in flight (host_buffer_cap: 8 MiB), never the part below the checkpoint.
to_copy=$(grep -Eo 'sync pass 1: [0-9]+ bytes' <<<"$log" | head -1 | grep -Eo '[0-9]+ bytes' | grep -Eo '[0-9]+')
read_b=$(flat_bytes fill01)
[ "$read_b" -le $((to_copy + rounds * 8 * MIB)) ] &&
	ok "the source was read $((read_b / 1024)) KiB for $((to_copy / 1024)) KiB to copy" ||
	fail "the source was read $read_b bytes for $to_copy to copy: more than the checkpoints allow"
gwrite '{"vm":"fill01","disk":0,"percent":10,"seed":13}' >/dev/null
ctl migrate full fill01 >/dev/null || fail "migrate refused"
wait_job full fill01 complete 180
check_complete full fill01 2 "temp_dir full"
wait_until 30 test ! -e "$TMPD/.trash" || fail "temp_dir/.trash is still there: $(find "$TMPD/.trash" | head -5 | tr '\n' ' ')"
assert_eq "$(find "$TMPD" -name '*.img' | wc -l)" 0 "no staging image is left in temp_dir"
echo "# figure: temp_dir full: $rounds time(s), 失效 after ${fails% } MiB copied with the reason, resumed by itself at offsets ${offs% } once space was freed, source read $((read_b / 1024)) KiB for $((to_copy / 1024)) KiB, bytes identical, no snapshot left, one target VM"
