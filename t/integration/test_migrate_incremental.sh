#!/usr/bin/env bash
# Incremental catch-up: after 迁移就绪 (ready) the guest writes; `migrate`
# then reads only the changed 64 KiB grains (CBT, paged replies followed to
# the end of the disk), and writes made while the source is being shut
# down arrive through the final pass.  The peer's served-byte counters for
# the source's flat files prove what was read.  The target ends equal to
# the source.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

G=65536
C0=6303089   # 6 MiB + 12401
C1=4190285   # 4 MiB - 4019
C2=2097485   # 2 MiB + 333
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"app01","host":"H0","power":"on","cpus":2,"memory_mb":2048,
         "disks":[{"capacity":$C0,"seed":5,"allocated":0.5},{"capacity":$C1,"seed":6,"allocated":0.25},
                  {"capacity":$C2,"seed":7,"allocated":0.1}]}]}
JSON
# Few extents per QueryChangedDiskAreas reply: the engine must follow the pages.
mig_start_peers "$T/fixture.json" --cbt-max-extents 3
mig_config
mig_rule inc app01 "fast_transfer: true"
start_daemon "$CONF"

wait_job inc app01 ready 120
ok "the full copy reaches ready"
full_served=$(flat_bytes app01)
assert_eq "$(job_field inc app01 bytes_done)" "$full_served" "the full copy read exactly the bytes it reports"

# Expected bytes read for a write [a, a+n) on a disk of capacity cap: the
# 64 KiB grains it touches, clipped to the disk end.
rounded() {
	local a=$1 n=$2 cap=$3 s e
	s=$((a / G * G))
	e=$(((a + n + G - 1) / G * G))
	[ $e -le $cap ] || e=$cap
	echo $((e - s))
}

# The grains each pass finds changed, per disk ("g g ..."): CHANGED0..2
# for the catch-up pass, LATE0..2 for the final pass.
CHANGED0= CHANGED1= CHANGED2= LATE0= LATE1= LATE2=
add_grains() { # VAR first last
	local g
	for ((g = $2; g <= $3; g++)); do printf -v "$1" '%s %s' "${!1}" "$g"; done
}
# QueryChangedDiskAreas replies the peer needs for a pass over a disk whose
# changed grains are GRAINS: adjacent grains make one extent, a reply holds
# at most 3 (--cbt-max-extents) and a disk is asked at least once.
pages() { # "GRAINS"
	local runs
	runs=$(tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -nu | awk 'NR == 1 || $1 != last + 1 { n++ } { last = $1 } END { print n + 0 }')
	echo $(((runs + 2) / 3 > 0 ? (runs + 2) / 3 : 1))
}

stats_reset
written=0 expect=0 extents=0
wr() { # disk offset length seed [VAR for its grains]
	gwrite "{\"vm\":\"app01\",\"disk\":$1,\"offset\":$2,\"length\":$3,\"seed\":$4}" >/dev/null
	local cap=$C0
	[ "$1" = 0 ] || cap=$C1
	written=$((written + $3))
	expect=$((expect + $(rounded "$2" "$3" "$cap")))
	extents=$((extents + 1))
	add_grains "${5:-CHANGED$1}" $(($2 / G)) $((($2 + $3 - 1) / G))
}
wr 0 100000 300000 101       # unaligned both ends: grains 1..6
wr 0 $((C0 - 1)) 1 102       # the very last byte (a partial last grain)
wr 0 0 1 103                 # the very first byte
wr 1 $((3 * G)) $G 104       # exactly one aligned grain
wr 1 $((C1 - 5000)) 5000 105 # the tail of the second disk
# Many scattered grains (more extents than one CBT reply holds), on a
# disk of their own so that no two writes share a grain.
# Which grains it rewrote: those of the source's flat file (no snapshot is
# kept while ready, so the guest writes into it) that changed.
flat2=$S_DIR/ds0/app01/app01_2-flat.vmdk
cp "$flat2" "$T/flat2.before"
p=$(gwrite '{"vm":"app01","disk":2,"percent":30,"seed":106}')
pg=$(jq -r .grains <<<"$p")
pb=$(jq -r .bytes <<<"$p")
written=$((written + pb)); expect=$((expect + pb)); extents=$((extents + pg))
[ "$pg" -gt 6 ] || fail "the percent write touched only $pg grains"
CHANGED2=$({ cmp -l "$T/flat2.before" "$flat2" || true; } | awk -v G=$G '{ g = int(($1 - 1) / G) } g != last { print g; last = g }' | paste -sd' ')
assert_eq "$(wc -w <<<"$CHANGED2")" "$pg" "the percent write's grains are found in the source's flat file"
at_ready=$(src_hashes app01 3)

# A write while the source is shutting down (ShutdownGuest held 3 s): it
# must arrive through the final pass.
fault "$S_CTL" '{"delay":{"method":"ShutdownGuest","ms":3000}}'
ctl migrate inc app01 >/dev/null || fail "migrate refused"
wait_job inc app01 "cutting_over complete" 120
[ "$(job_state inc app01)" = cutting_over ] || fail "the job passed cutting_over before the late write"
wr 1 12345 54321 107 LATE1
ok "guest writes after the catch-up snapshot, while the source shuts down"
wait_job inc app01 complete 120
ok "the migration completes"
fault "$S_CTL" '{"clear":true}'

check_complete inc app01 3 "after the catch-up"
[ "$(src_hashes app01 3)" != "$at_ready" ] || fail "the guest writes did not change the source"
served=$(flat_bytes app01)
echo "# written $written bytes in $extents extents; grain-rounded $expect; served $served"
[ "$served" -ge "$written" ] && ok "the catch-up read every written byte ($served >= $written)" ||
	fail "the catch-up read $served bytes, less than the $written written"
[ "$served" -le "$expect" ] && ok "the catch-up read only the changed grains ($served of $expect)" ||
	fail "the catch-up read $served bytes; the changed grains hold at most $expect"
[ "$served" -le $((written + extents * G)) ] && ok "within one grain per written extent of the bytes written" ||
	fail "served $served > written $written + $extents grains"
[ "$served" -lt $((full_served / 2)) ] && ok "the catch-up is much smaller than the full copy ($served vs $full_served)" ||
	fail "the catch-up read $served bytes, the full copy $full_served"

log=$(ctl log inc app01 -n 200)
assert_match "$log" "sync pass 2: [0-9]+ bytes in [0-9]+ areas to copy" "the log shows the catch-up pass"
assert_nomatch "$log" "copying (it|its allocated areas) in full" "no disk is copied in full during the catch-up"
total=$(ctl --json stats inc app01 | jq -r '.jobs[0].bytes')
assert_eq "$total" $((full_served + served)) "the statistics count the full copy plus the catch-up bytes"
# The catch-up and the final pass ask for every disk's changes; without
# paging that is 6 calls, with 3 extents a reply the peer forces more.
want=0
for v in CHANGED0 CHANGED1 CHANGED2 LATE0 LATE1 LATE2; do want=$((want + $(pages "${!v}"))); done
[ "$want" -gt 6 ] || fail "the writes force no paging ($want replies needed)"
calls=$(curl -sf "$S_CTL/stats" | jq -r '.requests.cbt_query')
[ "$calls" -ge "$want" ] && ok "paged QueryChangedDiskAreas replies were followed ($calls calls, $want pages forced)" ||
	fail "only $calls QueryChangedDiskAreas calls; the peer's pages of 3 extents need $want"
