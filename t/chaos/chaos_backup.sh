#!/usr/bin/env bash
# Crash anywhere in a backup (issue 15, SPEC §3 and §10): kill -9 of
# vmferryd at random instants of backups, right after a restore point was
# committed (its snapshot's removal, retention, garbage collection) and
# while retention and garbage collection run, then a restart, point after
# point.
#
# One backup rule saves bc-a (three disks of odd sizes, CBT off: the
# engine turns it on) and bc-b (one disk) into the node's repository with
# retention 3, so that from the fourth point on every point is followed
# by a retention that deletes one and a garbage collection.  Each round
# runs one point of each VM at once (`vmferryctl run bc VM --mode M`), the
# modes drawn from full, incremental and differential (a differential
# whose full is gone is a full); the guest writes to every disk between
# rounds (1-25 % of its grains, or a run of up to 400 KB), and the
# source's per-disk SHA-256 (the peer's) is kept as what that round's
# points must read back.  Every SOAP call of the source is 50 ms late and
# the rule's bandwidth is 6 MiB/s, so that the copy and the calls take
# their share of a point.  Before each commit and gc round the repository
# gets JUNK (2000) two-hour-old chunk files that no point uses (as deleted
# points leave them), so that garbage collection has a sweep to interrupt.
#
# Four rounds without kills measure a round with a full (DF), a later one
# (DI), and in the fourth, the first with retention: bc-a's commit to its
# retention, and the first retention's start to the end of gc's sweep (G);
# R is their sum.  Then the rounds get, in turn:
#   random   1-2 kill instants drawn uniformly from [0, D) after the runs
#            (D: DF when a VM runs a full, else DI);
#   commit   a kill 0-10 ms (half of them) or 0-R ms after a VM's new
#            point appears in the repository (its directory renamed into
#            place: the job's record of the commit, its snapshot's
#            removal, retention, gc);
#   random
#   gc       a kill 0-G ms after the round's first retention renamed a
#            point away (its files' removal, gc's mark and sweep).
# Instants are drawn by a seeded generator (CHAOS_SEED); the waits poll
# the repository every millisecond.  A kill counts only while a job of
# the rule is under way (not 已完成 or 空闲): the daemon is asked first,
# except for kills within 50 ms of what they wait for, which count when
# the repository shows that VM's retention or gc unfinished.  Each is
# filed under its jobs' states and, in 执行中, the phase the repository
# shows (copy, committed, retention or gc mark, gc sweep, after gc).
#
# While the daemon is down after each kill: no directory under points/
# lacks its manifest (no half point), `repo_read.py check` passes for
# every listed point, and every listed point is one the model knows (an
# earlier round's, or this round's next number).  The daemon restarts
# and the jobs go on by themselves.  After each round, with both jobs at
# rest: the jobs rest without an error and count no failure; each VM has
# exactly one new point, numbered after the last, and its points are
# exactly the newest 3; every point reported complete (the job log's
# `restore point N complete`) within retention is listed; `vmferryctl
# show` lists the same points; every listed point passes `repo_read.py
# check`; the new point's disks, read back by `repo_read.py image`, have
# the source's SHA-256 as of its round (an older point's manifest, which
# names its indexes' checksums, must be the one read back then); no
# snapshot is left on the source.  Leftovers in tmp/ are allowed.  Each
# round's backups are the proof that the repository opens after a crash
# without repair; a last round without kills ends the campaign.
#
# CI size: 3 counted kills (1 random, 1 commit, 1 gc).  CHAOS_FULL=1: 60
# counted kills (30 random, 15 commit, 15 gc).  CHAOS_KILLS sets the
# number (split the same way).
. "$(dirname "$0")/chaos_lib.sh"
. "$(dirname "$0")/../integration/backup_lib.sh"

if [ "$CHAOS_FULL" = 1 ]; then want=${CHAOS_KILLS:-60}; else want=${CHAOS_KILLS:-3}; fi
want_commit=$(((want + 3) / 4)) want_gc=$(((want + 2) / 4))
want_random=$((want - want_commit - want_gc))
limit=240 # seconds a point may take at most (ASan, loaded machine)
KEEP=3
RULE=bc
JUNK=${CHAOS_JUNK:-2000}
VMS="bc-a bc-b"
declare -A ndisks=([bc-a]=3 [bc-b]=1)

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"bc-a","host":"H0","power":"on","disks":[
          {"capacity":$((9 * MiB + 512 * 13)),"seed":21,"allocated":0.6},
          {"capacity":$((2 * MiB + 512 * 7)),"seed":22},
          {"capacity":$((6 * MiB + 512 * 3)),"seed":23,"allocated":0.3}]},
        {"name":"bc-b","host":"H0","power":"on","cbt":true,"disks":[
          {"capacity":$((10 * MiB + 512 * 5)),"seed":24,"allocated":0.8}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config "transfer_buffer: 256KiB
host_buffer_cap: 8MiB"
fault "$S_CTL" '{"delay":{"method":"*","ms":50}}'
bak_rule "$RULE" "$VMS" "fast_transfer: true" $KEEP \
	'bandwidth: [ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 6MiB/s } ]'
start_daemon "$CONF"
for vm in $VMS; do wait_job "$RULE" "$vm" idle 30; done
REPO=$(BAK_REPO)

# A sleep without a process (the kill instants want milliseconds).
exec {nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$nap_fd" || true; }

# ---- the model

declare -A last  # last[VM]: the newest point's number
declare -A exp   # exp[VM.SEQ]: the source's disk hashes that point must hold
declare -A cur   # cur[VM]: the source's disk hashes now (this round's)
r=0              # rounds

# The source as this round's points must hold it (no guest write until
# the round is over).
remember() {
	local vm
	for vm in $VMS; do cur[$vm]=$(src_hashes "$vm" "${ndisks[$vm]}"); done
}

# JUNK chunk files no point uses, two hours old, spread over chunks/<hh>/;
# a sentinel in chunks/00 (swept first) and chunks/ff (swept last).
plant_junk() {
	[ -d "$REPO/chunks" ] || return 0
	python3 - "$REPO" "$JUNK" "$r" <<'PY'
import hashlib, os, sys, time
repo, n, rnd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
old = time.time() - 7200
def put(name):
    p = os.path.join(repo, "chunks", name[:2], name)
    with open(p, "wb") as f:
        f.write(b"junk")
    os.utime(p, (old, old))
for i in range(n):
    put(hashlib.sha256(f"junk {rnd} {i}".encode()).hexdigest())
put("00" + "0" * 60 + "01")
put("ff" + "f" * 60 + "01")
PY
}

# The phase the repository shows (daemon down): what the kill interrupted.
repo_phase() {
	local vm=$1 n=$((${last[$1]:-0} + 1)) oldest=$((${last[$1]:-0} + 1 - KEEP))
	[ -d "$REPO/points/$RULE/$vm/$n" ] || { echo copy; return; }
	if [ $oldest -lt 1 ] || [ -d "$REPO/points/$RULE/$vm/$oldest" ]; then echo committed; return; fi
	[ "$JUNKED" = 1 ] || { echo retention_or_gc; return; }
	if [ -e "$REPO/chunks/00/00${Z60}01" ]; then echo retention_or_gc_mark; return; fi
	if [ -e "$REPO/chunks/ff/ff${F60}01" ]; then echo gc_sweep; return; fi
	echo after_gc
}
Z60=$(printf '0%.0s' {1..60})
F60=$(printf 'f%.0s' {1..60})

# The repository as a crash left it (daemon down): no half point, every
# point checked by the independent reader, each one the model knows.
check_down() {
	local vm d s listed
	for vm in $VMS; do
		[ -d "$REPO/points/$RULE/$vm" ] || continue
		for d in "$REPO/points/$RULE/$vm"/*; do
			[ -e "$d" ] || continue
			[ -f "$d/manifest.json" ] || fail "$C: a half point is listed: $d has no manifest.json ($(ls "$d" | paste -sd' '))"
		done
		listed=$(repo_points "$RULE" "$vm") || fail "$C: repo_read.py cannot list the points"
		for s in ${listed//,/ }; do
			[ -n "${exp[$vm.$s]:-}" ] || [ "$s" = $((${last[$vm]:-0} + 1)) ] ||
				fail "$C: $vm point $s is listed; the model knows points up to ${last[$vm]:-0} and this round's"
			"$REPO_READ" "$REPO" check "$RULE" "$vm" "$s" >/dev/null 2>"$T/check.err" ||
				fail "$C: repo_read.py check $vm point $s after the crash: $(cat "$T/check.err")"
		done
		CHECKED_DOWN=$((CHECKED_DOWN + $(wc -w <<<"${listed//,/ }")))
	done
}
CHECKED_DOWN=0

# ---- kills

kills=0 kills_random=0 kills_commit=0 kills_gc=0
skipped=0
declare -A at_state=() at_phase=()

# kill_now WHAT [VM [killed]]: kill -9 the daemon (unless every job
# rests), check the repository as the crash left it, restart.  KILLED: 1
# when it counted.  With VM (a kill right after VM's commit or retention)
# the daemon is not asked first, which takes tens of ms (killed: the kill
# was sent already): the kill counts when the repository shows VM's job
# had not come to rest (its retention had not taken its oldest point, or
# the round's gc had not swept its last directory).
kill_now() {
	local jobs states vm st
	KILLED=0
	if [ -n "${2:-}" ]; then
		if [ "${3:-}" = killed ]; then
			# kill_on_rename sent it.
			wait "$DAEMON_PID" 2>/dev/null || true
			DAEMON_PID=
		else
			crash_daemon
		fi
		vm=$2
		st=$((${last[$vm]:-0} + 1 - KEEP))
		if [ $st -ge 1 ] && [ ! -d "$REPO/points/$RULE/$vm/$st" ] &&
			! { [ "$JUNKED" = 1 ] && [ -e "$REPO/chunks/ff/ff${F60}01" ]; }; then
			skipped=$((skipped + 1))
			echo "# $C: instant $1: $vm's job may have rested (its retention and gc were over); not counted"
			check_down
			start_daemon "$CONF"
			return 0
		fi
		jobs="$vm transferring"
		states=transferring
	else
		jobs=$(ctl --json jobs "$RULE" 2>/dev/null | jq -r '.jobs[] | "\(.vm) \(.state)"' || true)
		states=$(awk '{ print $2 }' <<<"$jobs" | paste -sd/)
		if [ -z "$(awk '$2 != "complete" && $2 != "idle"' <<<"$jobs")" ]; then
			skipped=$((skipped + 1))
			echo "# $C: instant $1 came after the jobs rested ($states); not counted"
			return 0
		fi
		crash_daemon
	fi
	KILLED=1
	now_ms
	local ms=$((NOW_MS - t0)) phases=""
	while read -r vm st; do
		case $st in complete | idle) continue ;; esac
		at_state[$st]=$((${at_state[$st]:-0} + 1))
		local ph
		ph=$(repo_phase "$vm")
		[ "$st" = transferring ] || ph=$st
		at_phase[$ph]=$((${at_phase[$ph]:-0} + 1))
		phases+="${phases:+/}$vm:$ph"
	done <<<"$jobs"
	ok "$C: vmferryd killed (-9) at $ms ms, $1 (jobs: $states; phases: $phases)"
	check_down
	start_daemon "$CONF"
}

# wait_dir PRESENT PATH...: wait (bounded) until one of the PATHs is there
# (PRESENT 1) or gone (0); 1 when the jobs came to rest first.
wait_dir() {
	local end=$((SECONDS + limit)) n=0 want=$1 p
	shift
	while :; do
		for p in "$@"; do
			WAIT_HIT=$p
			if [ "$want" = 1 ]; then [ ! -d "$p" ] || return 0; else [ -d "$p" ] || return 0; fi
		done
		[ $SECONDS -lt $end ] || fail "$C: $* never $([ "$want" = 1 ] && echo appeared || echo went)"
		n=$((n + 1))
		if [ $((n % 200)) = 0 ] && jobs_rest; then return 1; fi
		nap 0.001
	done
}

# kill_on_rename DIR NAME: in the background (RENAME_PID), kill -9 the
# daemon as soon as NAME is renamed into DIR (inotify: within a fraction
# of a millisecond of the point's commit); exits 0 when it killed, 1 when
# nothing came within the limit.
kill_on_rename() {
	rm -f "$T/watching"
	python3 - "$1" "$2" "$DAEMON_PID" "$T/watching" "$limit" <<'PY' &
import ctypes, os, select, signal, struct, sys
d, name, pid, ready, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
if fd < 0 or libc.inotify_add_watch(fd, d.encode(), 0x80 | 0x100) < 0:  # IN_MOVED_TO | IN_CREATE
    sys.exit("inotify: %s" % os.strerror(ctypes.get_errno()))
open(ready, "w").close()
while select.select([fd], [], [], limit)[0]:
    buf, i = os.read(fd, 65536), 0
    while i < len(buf):
        _, _, _, n = struct.unpack_from("iIII", buf, i)
        if buf[i + 16:i + 16 + n].rstrip(b"\0").decode() == name:
            os.kill(pid, signal.SIGKILL)
            sys.exit(0)
        i += 16 + n
sys.exit(1)
PY
	RENAME_PID=$!
	PIDS+=("$RENAME_PID")
	wait_until 20 test -e "$T/watching" || fail "$C: the inotify watch did not start"
}

# kill_after EV WHAT PRESENT PATH...: once one of the PATHs
# (points/RULE/VM/N) is there (PRESENT 1) or gone (0), a kill EV ms later;
# within 50 ms without asking the daemon first (kill_now with that VM).
kill_after() {
	local ev=$1 what=$2 vm
	shift 2
	KILLED=0
	wait_dir "$@" || { skipped=$((skipped + 1)); return 0; }
	vm=$(basename "$(dirname "$WAIT_HIT")")
	[ "$ev" = 0 ] || sleep_ms "$ev"
	[ "$ev" -lt 50 ] || vm=
	kill_now "$ev ms after $what" $vm
}
jobs_rest() { [ -z "$(ctl --json jobs "$RULE" | jq -r '.jobs[] | select(.state != "complete" and .state != "idle") | .vm')" ]; }

# ---- a round: one point of each VM

mode_name() { case $1 in 0) echo full ;; 1) echo incremental ;; *) echo differential ;; esac; }
sleep_ms() { nap "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# round KIND [MODES]: KIND none, random, commit, gc or measure (none,
# and R and G measured).
round() {
	local kind=$1 modes=${2:-} vm i k ev events=() pick n span olds=()
	r=$((r + 1))
	C="round $r"
	[ $r = 1 ] || chaos_writes
	remember
	JUNKED=0
	case $kind in commit | gc | measure) plant_junk; JUNKED=1 ;; esac
	if [ -z "$modes" ]; then
		for vm in $VMS; do rnd 3; modes+="${modes:+ }$(mode_name $REPLY)"; done
	fi
	RMODES=$modes
	local -a ms=($modes)
	span=$DI
	[[ " $modes " != *" full "* ]] || span=$DF
	case $kind in
	random)
		rnd 2; k=$((REPLY + 1))
		[ $((want_random - kills_random)) -ge $k ] || k=$((want_random - kills_random))
		for ((i = 0; i < k; i++)); do rnd "$span"; events+=("$REPLY"); done
		mapfile -t events < <(printf '%s\n' "${events[@]}" | sort -n)
		;;
	commit)
		# In turn: at the rename itself (inotify), 0-10 ms after it (the
		# job's record of the commit follows by a store commit), 0-R ms.
		rnd 2; pick=bc-a; [ $REPLY = 0 ] || pick=bc-b
		case $((kills_commit % 3)) in
		0) ev=rename ;;
		1) rnd 10; ev=$REPLY ;;
		2) rnd "$R"; ev=$REPLY ;;
		esac
		[ $ev != rename ] || kill_on_rename "$REPO/points/$RULE/$pick" $((${last[$pick]:-0} + 1))
		;;
	gc) rnd "$G"; ev=$REPLY ;;
	esac
	# The oldest point of each VM, which this round's retention deletes.
	for vm in $VMS; do
		n=$((${last[$vm]:-0} + 1 - KEEP))
		[ $n -lt 1 ] || olds+=("$REPO/points/$RULE/$vm/$n")
	done
	now_ms; t0=$NOW_MS
	i=0
	for vm in $VMS; do
		assert_match "$(ctl run "$RULE" "$vm" --mode "${ms[i]}")" "$vm: (idle|complete) -> queued" \
			"$C: vmferryctl run $RULE $vm --mode ${ms[i]}"
		i=$((i + 1))
	done
	case $kind in
	random)
		echo "# $C ($modes): kills at ${events[*]} ms"
		for ev in "${events[@]}"; do
			sleep_until_ms $((t0 + ev))
			kill_now "$ev ms drawn"
			[ $KILLED = 0 ] || { kills=$((kills + 1)); kills_random=$((kills_random + 1)); }
		done
		;;
	commit)
		n=$((${last[$pick]:-0} + 1))
		if [ $ev = rename ]; then
			echo "# $C ($modes): a kill as $pick's point $n is renamed into place"
			if wait "$RENAME_PID"; then
				kill_now "as $pick's point $n was renamed into place" "$pick" killed
			else
				skipped=$((skipped + 1))
			fi
		else
			echo "# $C ($modes): a kill $ev ms after $pick's point $n is committed"
			kill_after "$ev" "$pick's point $n was committed" 1 "$REPO/points/$RULE/$pick/$n"
		fi
		[ $KILLED = 0 ] || { kills=$((kills + 1)); kills_commit=$((kills_commit + 1)); }
		;;
	gc)
		echo "# $C ($modes): a kill $ev ms after the round's first retention began"
		kill_after "$ev" "the round's first retention began" 0 "${olds[@]}"
		[ $KILLED = 0 ] || { kills=$((kills + 1)); kills_gc=$((kills_gc + 1)); }
		;;
	measure)
		# When bc-a's new point appears (ta) and its oldest goes (tra),
		# when the first retention begins (tr) and gc's sweep ends (tg).
		local pa="$REPO/points/$RULE/bc-a/$((${last[bc-a]:-0} + 1))" oa=${olds[0]} ta= tra= tr= tg= p end=$((SECONDS + limit))
		while [ -z "$ta" ] || [ -z "$tra" ] || [ -z "$tr" ] || [ -z "$tg" ]; do
			now_ms
			[ -n "$ta" ] || [ ! -d "$pa" ] || ta=$NOW_MS
			[ -n "$tra" ] || [ -d "$oa" ] || tra=$NOW_MS
			if [ -z "$tr" ]; then for p in "${olds[@]}"; do [ -d "$p" ] || { tr=$NOW_MS; break; }; done; fi
			[ -n "$tg" ] || [ -e "$REPO/chunks/ff/ff${F60}01" ] || tg=$NOW_MS
			[ $SECONDS -lt $end ] || fail "$C: the point, its retention or gc never came"
			nap 0.001
		done
		G=$((tg - tr)) R=$((tra - ta + tg - tr))
		;;
	esac
	for vm in $VMS; do wait_job "$RULE" "$vm" "complete idle" $limit; done
	now_ms
	ROUND_MS=$((NOW_MS - t0))
	if [ $kind = measure ]; then
		echo "# $C took $ROUND_MS ms: bc-a's commit to its retention $((tra - ta)) ms, the first retention to the end of gc $G ms"
	else
		echo "# $C took $ROUND_MS ms"
	fi
	check_round
}

# After a round: the model's checks, both jobs at rest.
declare -A msum  # msum[VM.SEQ]: SHA-256 of the point's manifest.json when it was read back
declare -A made  # points made, by mode
check_round() {
	local vm s d want got listed reported shown i=0 h m
	local -a ms=($RMODES)
	for vm in $VMS; do
		assert_eq "$(job_field "$RULE" "$vm" error)" null "$C: $vm rests without an error"
		assert_eq "$(ctl --json stats "$RULE" "$vm" | jq -r '.jobs[0].failures')" 0 "$C: $vm counts no failure"
		listed=$(repo_points "$RULE" "$vm")
		s=$((${last[$vm]:-0} + 1))
		want=$(seq -s, $((s - KEEP + 1 > 1 ? s - KEEP + 1 : 1)) "$s")
		assert_eq "$listed" "$want" "$C: $vm's points are the newest $KEEP, point $s new (run as ${ms[i]})"
		i=$((i + 1))
		last[$vm]=$s
		exp[$vm.$s]=${cur[$vm]}
		m=$("$REPO_READ" "$REPO" manifest "$RULE" "$vm" "$s" | jq -r .mode)
		made[$m]=$((${made[$m]:-0} + 1))
		shown=$(ctl --json show "$RULE" "$vm" | jq -r '[.details.points[].point] | join(",")')
		assert_eq "$shown" "$listed" "$C: vmferryctl show lists $vm's points as the repository does"
		# Every point reported complete and within retention is there.
		reported=$(ctl log "$RULE" "$vm" -n 100000 | grep -Eo 'restore point [0-9]+ complete' | awk '{ print $3 }' | sort -n | uniq | paste -sd' ')
		for s in $reported; do
			[ "$s" -le $((last[$vm] - KEEP)) ] || [[ ",$listed," == *",$s,"* ]] ||
				fail "$C: $vm's point $s was reported complete and is within retention, but is not listed ($listed)"
		done
		[[ " $reported " == *" ${last[$vm]} "* ]] || echo "# $C: $vm's point ${last[$vm]} is listed but its log line was lost with a kill"
		# Every point: its chunks checked by the reader; a new one read back
		# whole (a point read back once holds the same bytes while its
		# manifest, which names its indexes' checksums, is the same and
		# every chunk still has its id).
		for s in ${listed//,/ }; do
			"$REPO_READ" "$REPO" check "$RULE" "$vm" "$s" >/dev/null 2>"$T/check.err" ||
				fail "$C: repo_read.py check $vm point $s: $(cat "$T/check.err")"
			got=$(sha256sum <"$REPO/points/$RULE/$vm/$s/manifest.json" | cut -d' ' -f1)
			if [ -n "${msum[$vm.$s]:-}" ]; then
				[ "$got" = "${msum[$vm.$s]}" ] || fail "$C: $vm point $s: its manifest changed since it was read back"
				continue
			fi
			h=(${exp[$vm.$s]})
			for ((d = 0; d < ${ndisks[$vm]}; d++)); do
				want=${h[d]}
				got=$(repo_sha "$RULE" "$vm" "$s" "$d")
				[ "$got" = "$want" ] || fail "$C: $vm point $s disk $d read back by repo_read.py: $got, the source had $want"
			done
			msum[$vm.$s]=$(sha256sum <"$REPO/points/$RULE/$vm/$s/manifest.json" | cut -d' ' -f1)
			READBACK=$((READBACK + 1))
		done
		ok "$C: $vm's points $listed pass repo_read.py check; point ${last[$vm]} ($m) reads back equal to the source as of its round"
		assert_eq "$(snap_count "$vm")" 0 "$C: no snapshot of $vm left on the source"
		for d in "$REPO/points/$RULE/$vm"/*; do
			[ -f "$d/manifest.json" ] || fail "$C: a half point: $d has no manifest.json"
		done
	done
}
READBACK=0

# ---- three rounds without kills measure DF, DI, R and G

DF=1 DI=1 R=1 G=1
round none "full full"
DF=$ROUND_MS
round none "incremental differential"
DI=$ROUND_MS
# (retention 3: the fourth point is the first that deletes one)
round none "differential incremental"
[ $ROUND_MS -le $DI ] || DI=$ROUND_MS
round measure "incremental differential"
[ $G -ge 20 ] || G=20
[ $R -ge 20 ] || R=20
echo "# without kills: a full round takes ${DF} ms, a later one ${DI} ms; commit kills within ${R} ms, retention kills within ${G} ms"

# ---- rounds with kills, in turn random, commit, random, gc (while each is wanted)
turn=0
while [ $kills -lt $want ]; do
	case $((turn % 4)) in
	0 | 2) kind=random ;;
	1) kind=commit ;;
	3) kind=gc ;;
	esac
	turn=$((turn + 1))
	case $kind in
	random) [ $kills_random -lt $want_random ] || continue ;;
	commit) [ $kills_commit -lt $want_commit ] || continue ;;
	gc) [ $kills_gc -lt $want_gc ] || continue ;;
	esac
	round $kind
done
# A last round without kills: the repository serves a next backup.
round none "incremental full"

stop_daemon
by_state=$(for s in "${!at_state[@]}"; do echo "$s ${at_state[$s]}"; done | sort -k2,2nr -k1,1 | paste -sd, | sed 's/,/, /g')
by_phase=$(for s in "${!at_phase[@]}"; do echo "$s ${at_phase[$s]}"; done | sort -k2,2nr -k1,1 | paste -sd, | sed 's/,/, /g')
by_mode=$(for s in "${!made[@]}"; do echo "$s ${made[$s]}"; done | sort -k2,2nr -k1,1 | paste -sd, | sed 's/,/, /g')
figure "backup crash instants survived: $kills ($kills_random at random instants, $kills_commit after a point's commit, $kills_gc in retention and gc; kill -9 of vmferryd while a backup was under way; $skipped instants after the jobs rested, not counted; $r rounds of 2 VMs (points made: $by_mode), retention $KEEP; after each kill no half point and every listed point checked by repo_read.py ($CHECKED_DOWN checks); after each round every point checked, $READBACK points read back equal to the source as of their rounds; jobs were in: $by_state; their repository phases: $by_phase; seed $CHAOS_SEED)"
echo "1..$NTEST"
