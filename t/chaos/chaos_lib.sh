# Shared helpers for the reliability scenarios (t/chaos/chaos_*.sh).
# Source it first: it brings in the integration helpers (lib.sh and
# migrate_lib.sh: peers, daemon, wait_job, check_complete, fault, ...).
#
#   CHAOS_FULL=1   full size (tools/chaos --full); otherwise the CI size
#   CHAOS_SEED=N   seed of the scenario's random choices; printed at the
#                  start, so a failing run can be repeated exactly
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../integration/migrate_lib.sh"

CHAOS_FULL=${CHAOS_FULL:-0}
CHAOS_SEED=${CHAOS_SEED:-$(( ${EPOCHREALTIME/./} % 1000000 ))}
echo "# seed: $CHAOS_SEED (CHAOS_SEED=$CHAOS_SEED repeats this run's choices)"

# A small deterministic generator (64-bit LCG), so that the choices depend
# on the seed only: rnd N sets REPLY to a number in [0, N).
CHAOS_RNG=$CHAOS_SEED
rnd() {
	CHAOS_RNG=$(( CHAOS_RNG * 6364136223846793005 + 1442695040888963407 ))
	REPLY=$(( ((CHAOS_RNG >> 33) & 0x7fffffff) % $1 ))
}

# Milliseconds of wall time, into NOW_MS (no subshell).
now_ms() { NOW_MS=$(( ${EPOCHREALTIME/./} / 1000 )); }

# sleep_until_ms T: sleep until now_ms reaches T (the scenario's own
# schedule, not a wait for a condition).
sleep_until_ms() {
	now_ms
	local d=$(( $1 - NOW_MS ))
	[ $d -le 0 ] || sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
}

figure() { echo "# figure: $*"; }

# guest_write JSON: a write by the running guest of a source VM (the
# peer refuses it once the VM is off, so nothing is written after the
# cutover stopped the source).  Sets REPLY to "written" or "refused".
guest_write() {
	local code
	code=$(curl -s -o "$T/write.out" -w '%{http_code}' -XPOST "$S_CTL/write" -d "$(jq -c '. + {running: true}' <<<"$1")")
	case $code in
	200) REPLY=written ;;
	409) REPLY=refused ;;
	*) fail "guest write $1: HTTP $code $(cat "$T/write.out")" ;;
	esac
}

# chaos_writes: the running guest writes to every disk of the VMs in
# $VMS (ndisks[VM] disks each): a share of grains (1-25 %) or a run of up
# to 400 KB somewhere, drawn by rnd.
chaos_writes() {
	local vm d cap off len pct
	for vm in $VMS; do
		for ((d = 0; d < ${ndisks[$vm]}; d++)); do
			rnd 2
			if [ $REPLY = 0 ]; then
				rnd 25; pct=$((REPLY + 1))
				rnd 100000; gwrite "{\"vm\":\"$vm\",\"disk\":$d,\"percent\":$pct,\"seed\":$REPLY}" >/dev/null
			else
				cap=$(curl -sf "$S_CTL/disk?vm=$vm&disk=$d" | jq -r .capacity)
				rnd "$cap"; off=$REPLY
				len=$((cap - off < 400000 ? cap - off : 400000))
				rnd "$len"; len=$((REPLY + 1))
				rnd 100000; gwrite "{\"vm\":\"$vm\",\"disk\":$d,\"offset\":$off,\"length\":$len,\"seed\":$REPLY}" >/dev/null
			fi
		done
	done
}

# chaos_dump: everything needed to understand a failed or stuck run.
chaos_dump() {
	local j
	echo "# ---- diagnostic dump"
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		echo "# jobs:"
		ctl --json jobs 2>/dev/null | jq -c '.jobs[] | {rule, vm, state, error, progress, bytes_done, bytes_total}' |
			sed 's/^/#   /' || true
		for j in $(ctl --json jobs 2>/dev/null | jq -r '.jobs[] | select(.state != "complete") | "\(.rule)/\(.vm)"'); do
			echo "# log of $j:"
			ctl log "${j%%/*}" "${j#*/}" -n 40 2>&1 | sed 's/^/#   /' || true
		done
	else
		echo "# vmferryd is not running"
	fi
	if [ -n "${S_CTL:-}" ]; then
		echo "# source VMs: $(curl -sf "$S_CTL/vms" | jq -c '[.[] | {name, power, snapshots}]' 2>/dev/null)"
		echo "# source faults: $(curl -sf "$S_CTL/fault" | jq -c . 2>/dev/null)"
	fi
	if [ -n "${D_CTL:-}" ]; then
		echo "# target VMs: $(curl -sf "$D_CTL/vms" | jq -c '[.[] | {name, power}]' 2>/dev/null)"
		echo "# target faults: $(curl -sf "$D_CTL/fault" | jq -c . 2>/dev/null)"
	fi
	if [ -f "$T/daemon.log" ]; then
		echo "# daemon log (tail):"
		tail -n 60 "$T/daemon.log" | sed 's/^/#   /'
	fi
	echo "# seed: $CHAOS_SEED"
}

chaos_exit() {
	local st=$?
	[ $st -eq 0 ] || [ $st -eq "$IT_SKIP_RC" ] || chaos_dump || true
	it_cleanup
}
trap chaos_exit EXIT
