#!/usr/bin/env bash
# Small areas share requests: a sparse disk's allocated areas are read
# with multi-range GETs (one per transfer_buffer), and a datastore that
# does not answer several ranges at once — the whole file, only the first
# range, one merged range, 416, a part cut short without a length, more
# parts than ranges — is read one range per request instead,
# with the same bytes on the target and the reason in the log.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

kinds="serve whole first coalesce refuse short extra_part"
vms=""
seed=1
{
	echo '{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}], "vms":['
	for k in $kinds; do
		[ $seed = 1 ] || echo ','
		# 6 MiB + 7 bytes, a quarter of its 64 KiB grains allocated: a
		# few dozen areas, more than one request may carry at once.
		echo "{\"name\":\"mr$k\",\"host\":\"H0\",\"power\":\"on\",\"disks\":[{\"capacity\":6291463,\"seed\":$seed,\"allocated\":0.25}]}"
		seed=$((seed + 1))
	done
	echo ']}'
} >"$T/fixture.json"
mig_start_peers "$T/fixture.json"
declare -A alloc
for k in $kinds; do alloc[mr$k]=$(alloc_bytes "mr$k"); done
mig_config
start_daemon "$CONF"

gets() { curl -sf "$S_CTL/stats" | jq --arg f "ds0/$1/$1-flat.vmdk" '.gets[$f] // 0'; }
injected() { curl -sf "$S_CTL/fault" | jq '.injected.multi_range // 0'; }

# The reason each answer is refused for, as the daemon logs it.
declare -A why=([whole]="HTTP 200" [first]="bytes asked for" [coalesce]="not inside the ranges asked for"
	[refuse]="HTTP 416" [short]="cut short" [extra_part]="more parts than the")
for k in $kinds; do
	vm=mr$k
	fault "$S_CTL" "{\"multi_range\":\"$k\"}"
	stats_reset
	before=$(injected)
	mig_rule "r$k" "$vm" "fast_transfer: true"
	wait_job "r$k" "$vm" ready 120
	n=$(gets "$vm")
	log=$(grep -F "[ds0] $vm/$vm-flat.vmdk" "$T/daemon.log" || true)
	if [ "$k" = serve ]; then
		assert_eq "$n" 2 "$k: the full copy of $vm takes 2 GETs (32 areas per request at most)"
		assert_nomatch "$log" "one range per request" "$k: no fallback is logged"
	else
		[ "$(injected)" -gt "$before" ] || fail "$k: the peer did not apply the fault"
		assert_match "$log" "does not answer several ranges in one request \\(.*${why[$k]}.*\\); reading one range per request" \
			"$k: the daemon logs the fallback to one range per request, naming the file and the reason (${why[$k]})"
		[ "$n" -gt 10 ] && ok "$k: the areas were read one per request ($n GETs)" || fail "$k: only $n GETs"
	fi
	# The allocated bytes, as the source peer's flat file holds them.
	want=${alloc[$vm]}
	assert_match "$(ctl log "r$k" "$vm" -n 200)" "sync pass 1: $want bytes in [0-9]+ areas" \
		"$k: the daemon's first pass plans the allocated bytes"
	assert_eq "$(job_field "r$k" "$vm" bytes_done)" "$want" "$k: the bytes reported are those of the allocated areas"
	if [ "$k" = serve ]; then
		assert_eq "$(flat_bytes "$vm")" "$want" "$k: the source served exactly those bytes"
	else
		# The refused answer's bytes were sent too (and not used).
		[ "$(flat_bytes "$vm")" -ge "$want" ] && ok "$k: the source served them (and the refused answer)" ||
			fail "$k: the source served $(flat_bytes "$vm") bytes, fewer than $want"
	fi
	ctl migrate "r$k" "$vm" >/dev/null
	wait_job "r$k" "$vm" complete 120
	check_complete "r$k" "$vm" 1 "$k"
done
fault "$S_CTL" '{"clear":true}'
