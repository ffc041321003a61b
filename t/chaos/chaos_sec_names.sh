#!/usr/bin/env bash
# Security: names that try to escape (issue #6).  VM, disk and rule names
# with "../", slashes, leading dots, control characters, URL and datastore
# path syntax, long names and bytes that are not UTF-8, through the test
# peer and the config:
# - the VMs whose names the config accepts migrate, over HTTPS and through
#   mounted datastores, to target VMs of exactly the same name with the
#   source's bytes;
# - every file vmferryd creates, writes, renames or removes (traced with
#   strace) lies under the state directory (temp_dir is in it) or is its
#   socket, and nothing lies deeper than temp_dir/KIND/RULE/VM/FILE;
# - names the config rightly rejects are refused with FILE:LINE:COL and
#   create nothing;
# - control characters from the peer (host and VM names) are escaped in the
#   daemon log, the job log and vmferryctl's tables, so they cannot forge a
#   line; --json gives the exact names back.
# CHAOS_FULL=1 uses larger disks (the names are the point, not the size).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/migrate_lib.sh"

command -v strace >/dev/null || fail "strace is needed (tools/setup installs it)"
if [ "${CHAOS_FULL:-0}" = 1 ]; then CAP=9437201; else CAP=1048597; fi   # odd sizes

FORGED='2026-01-01 00:00:00 vmferryd[error]: FORGED'
LONG=long-$(printf 'L%.0s' $(seq 1 75))                     # 80 bytes, vSphere's limit
RULE64=..rule-%2f..%2f?#\&=+~$(printf 'r%.0s' $(seq 1 43))    # 64 bytes, the limit
[ ${#LONG} -eq 80 ] && [ ${#RULE64} -eq 64 ] || fail "test setup: name lengths"

# VMs the config accepts, over HTTPS and through the mount (direct).
HTTPS_VMS=(".hidden" "..." "-rf" 'a\b' "sp ace" "$LONG")
DIRECT_VMS=("%2e%2e%2f%2e%2e%2fetc" "x?y#z&w=1" "ü-名前" "[ds0] br]ack[et" "on-forged-host")
# VMs whose disk descriptor the test rewrites to name an extent file
# outside their directory (a hostile or broken platform).
EVIL_VMS=(evil-https evil-direct)
# VMs only the inventory shows (the config refuses such names).
CTL_VMS=("nl
$FORGED" "tab	here" "nel"$'\xc2\x85'"x" "ls"$'\xe2\x80\xa8'"x")

vm_json() { # NAME HOST SEED
	jq -cn --arg n "$1" --arg h "$2" --argjson s "$3" --argjson c "$CAP" \
		'{name: $n, host: $h, power: "on", disks: [{capacity: $c, seed: $s, allocated: 0.6}]}'
}
{
	seed=1
	echo '{"datacenters":[{"name":"DC0","hosts":["H0",'"$(jq -cn --arg h "H1
$FORGED" '$h')"'],"datastores":["ds0"]}],"vms":['
	sep=""
	for v in "${HTTPS_VMS[@]}" "${DIRECT_VMS[@]}" "${EVIL_VMS[@]}" "${CTL_VMS[@]}"; do
		host=H0
		[ "$v" = on-forged-host ] && host="H1
$FORGED"
		echo "$sep$(vm_json "$v" "$host" $seed)"
		sep=","
		seed=$((seed + 1))
	done
	echo ']}'
} >"$T/fixture.json"
jq -e . "$T/fixture.json" >/dev/null || fail "test setup: fixture is not JSON"
mig_start_peers "$T/fixture.json"
ok "the peer serves VMs named ${#HTTPS_VMS[@]}+${#DIRECT_VMS[@]} ways the config accepts and ${#CTL_VMS[@]} with control characters"
# The descriptors of the evil VMs name a file of this test, outside the
# datastore, by a relative path.
head -c 65536 /dev/urandom >"$T/outside.bin"
for v in "${EVIL_VMS[@]}"; do
	rel=$(realpath -m --relative-to="$S_DIR/ds0/$v" "$T/outside.bin")
	sed -i "s|^RW \([0-9]*\) VMFS \".*\"|RW \1 VMFS \"$rel\"|" "$S_DIR/ds0/$v/$v.vmdk"
	grep -qF "\"$rel\"" "$S_DIR/ds0/$v/$v.vmdk" || fail "test setup: descriptor of $v not rewritten"
done

MIG_MOUNTS=1 mig_config
yaml_list() { # NAME... -> a YAML flow list of double-quoted strings (jq's JSON strings are YAML)
	local out="" v
	for v in "$@"; do out+="${out:+, }$(jq -cn --arg v "$v" '$v')"; done
	echo "[$out]"
}
cat >"$CONF/20-https.yaml" <<YAML
kind: migration
name: "$RULE64"
source: { platform: src, vms: $(yaml_list "${HTTPS_VMS[@]}" evil-https) }
node: local
target: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }
options: { fast_transfer: true, auto_migrate: true, cutover: none }
YAML
cat >"$CONF/20-direct.yaml" <<YAML
kind: migration
name: .direct
source: { platform: src, vms: $(yaml_list "${DIRECT_VMS[@]}" evil-direct) }
node: local
target: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }
options: { fast_transfer: true, lan_free: true, auto_migrate: true, cutover: poweroff }
YAML

# --- Names the config refuses: FILE:LINE:COL, nothing created.
mkdir -p "$T/bad"
cp "$CONF"/00-system.yaml "$CONF"/10-platforms.yaml "$T/bad/"
cp -r "$CONF/secrets" "$T/bad/"
bad_rule() { # FILE NAME_YAML [VMS_YAML]
	printf 'kind: migration\nname: %s\nsource: { platform: src, vms: %s }\nnode: local\ntarget: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }\n' \
		"$2" "${3:-[web01]}" >"$T/bad/$1"
}
bad_rule 30-dotdot.yaml '"../etc"'
bad_rule 31-slash.yaml 'a/b'
bad_rule 32-dot.yaml '"."'
bad_rule 33-tab.yaml '"x\ty"'
bad_rule 34-newline.yaml "\"x\\n$FORGED\""
bad_rule 35-long.yaml "r$(printf 'x%.0s' $(seq 1 64))"
bad_rule 36-backslash.yaml "'a\\b'"
bad_rule 37-vms.yaml ok-rule '["../up", "a/b", "..", "c\u0001d", "'"$(printf 'v%.0s' $(seq 1 256))"'"]'
printf 'kind: migration\nname: bad\xff\xfename\n' >"$T/bad/38-utf8.yaml"
out=$("$BIN/vmferryd" -n -c "$T/bad" 2>&1) && fail "vmferryd -n accepted unsafe names"
for f in 30-dotdot 31-slash 32-dot 33-tab 34-newline 35-long 36-backslash; do
	assert_match "$out" "^$T/bad/$f.yaml:2:7: name: .* is not a safe name" "rule name refused with file:line:col ($f)"
done
assert_eq "$(grep -c "$T/bad/37-vms.yaml:3:.*cannot be used as a VM name here" <<<"$out")" 5 \
	"VM names ../up, a/b, .., a control character and 256 bytes are refused, each with its file:line:col"
assert_match "$out" "^$T/bad/38-utf8.yaml:2:[0-9]+: .*UTF-8" "a rule name that is not UTF-8 is refused with file:line:col"
assert_match "$out" '34-newline.yaml:2:7: name: "x\?2026-01-01 00:00:00 vmferryd\[error\]: FORGED"' "a newline in a name is shown as ?, in the same line"
assert_eq "$(grep -vc "^$T/bad/" <<<"$out" || true)" 0 "every line of vmferryd -n starts with a file name (no line is forged)"

# --- Start the daemon under strace: every path it creates or changes.
start_traced_daemon() {
	strace -f -qq -s 4096 -o "$T/strace.log" \
		-e trace=open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,unlinkat,rmdir,truncate,chmod,fchmodat,chown,fchownat,lchown,mknod,mknodat,utimensat,bind \
		"$BIN/vmferryd" -c "$CONF" -d "$STATE" -s "$SOCK" >>"$T/daemon.log" 2>&1 &
	DAEMON_PID=$!
	wait_until 30 ctl ping || fail "vmferryd did not come up under strace"
	local p
	p=$(pgrep -P "$DAEMON_PID" vmferryd || true)
	[ -n "$p" ] && PIDS+=("$p")
}
start_traced_daemon
for f in 30-dotdot 31-slash 34-newline 37-vms; do cp "$T/bad/$f.yaml" "$CONF/"; done
reload_config
errs=$(ctl --json rules | jq -r '.config_errors[]')
assert_eq "$(grep -c "cannot be used as a VM name\|is not a safe name" <<<"$errs")" 8 \
	"the running daemon reports the 3 bad rule names and 5 bad VM names"
out=$(ctl rules)
assert_nomatch "$out" "^FORGED|^$FORGED" "vmferryctl rules prints the errors without a forged line"

# --- The migrations.
for v in "${HTTPS_VMS[@]}"; do wait_job "$RULE64" "$v" complete 300; done
for v in "${DIRECT_VMS[@]}"; do wait_job .direct "$v" complete 300; done
ok "all $((${#HTTPS_VMS[@]} + ${#DIRECT_VMS[@]})) migrations complete (HTTPS and direct)"
for rv in "$RULE64 evil-https" ".direct evil-direct"; do
	r=${rv% *} v=${rv##* }
	wait_job "$r" "$v" failed 120
	assert_match "$(job_field "$r" "$v" error)" "extent file \.\./.*outside\.bin at offset 0 cannot be read as a flat disk" \
		"$v: a descriptor naming a file outside the VM's directory fails the job, naming it"
	wait_until 30 sh -c "[ \"\$(curl -sf '$S_CTL/snapshots?vm=$v' | jq length)\" = 0 ]" ||
		fail "$v: the failed job left its snapshot on the source ($(curl -sf "$S_CTL/snapshots?vm=$v" | jq -c '[.[].name]'))"
	ok "$v: the failed job removed its snapshot from the source"
done
usha() { curl -sf --get --data-urlencode "vm=$2" --data-urlencode "disk=0" "$1/disk" | jq -r .sha256; }
for v in "${HTTPS_VMS[@]}" "${DIRECT_VMS[@]}"; do
	[ "$(curl -sf "$D_CTL/vms" | jq --arg n "$v" '[.[] | select(.name == $n)] | length')" = 1 ] ||
		fail "the target has no VM named exactly '$v'"
	s=$(usha "$S_CTL" "$v") d=$(usha "$D_CTL" "$v")
	[ -n "$s" ] && [ "$s" = "$d" ] || fail "'$v': target disk differs ($d vs $s)"
done
ok "every target VM has exactly the source's name and bytes"
want=$(printf '%s\n' "${HTTPS_VMS[@]}" "${DIRECT_VMS[@]}" "${EVIL_VMS[@]}" | jq -R . | jq -sc 'sort')
assert_eq "$(curl -sf "$D_CTL/vms" | jq -c '[.[].name] | sort')" "$want" "the target holds those VMs and no other"

# --- Inventory and logs: control characters escaped, JSON exact.
inv=$(ctl inventory src)
nvm=$(jq '.vms | length' "$T/fixture.json")
assert_eq "$(sed -n '/^VM /,/^$/p' <<<"$inv" | grep -vc '^VM \|^$')" "$nvm" \
	"vmferryctl inventory prints one line per VM ($nvm), names with newlines included"
assert_match "$inv" '^nl\\n2026-01-01 00:00:00 vmferryd\[error\]: FORGED ' "a newline in a VM name is shown as \\\\n"
assert_match "$inv" '^tab\\there ' "a tab in a VM name is shown as \\\\t"
assert_match "$inv" '^nel\\u0085x ' "NEL (U+0085) is escaped"
assert_match "$inv" '^ls\\u2028x ' "U+2028 is escaped"
assert_eq "$(ctl --json inventory src | jq -c '[.vms[].name] | sort')" "$(jq -c '[.vms[].name] | sort' "$T/fixture.json")" \
	"vmferryctl --json inventory gives every name back exactly"
log=$(ctl log .direct on-forged-host)
assert_match "$log" 'on host H1\\n2026-01-01 00:00:00 vmferryd\[error\]: FORGED' "the job log shows the forged host name escaped"
assert_nomatch "$log" "^$FORGED|^FORGED" "the job log has no forged line"
assert_eq "$(grep -c "^2026-01-01 00:00:00 vmferryd\[error\]: FORGED" "$T/daemon.log" || true)" 0 "the daemon log has no forged line"
assert_match "$(grep -F 'on-forged-host' "$T/daemon.log" | grep -F 'on host H1\n2026-01-01')" . "the daemon log shows the host name escaped"
bad_lines=$(grep -avE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} vmferryd\[(error|warning|info|debug)\]: ' "$T/daemon.log" || true)
assert_eq "$bad_lines" "" "every daemon log line is a log record (none starts inside a name)"

# --- Bytes that are not UTF-8, from the command line and on the socket.
out=$(ctl jobs $'\xff\xfe' 2>&1) && fail "vmferryctl accepted a rule name that is not UTF-8"
assert_match "$out" 'rule "\\xff\\xfe" is not valid UTF-8' "vmferryctl refuses an argument that is not UTF-8, shown escaped"
resp=$(printf '{"op":"jobs","rule":"\xff\xfe"}\n' | timeout 10 socat - UNIX-CONNECT:"$SOCK")
assert_eq "$(jq -r .ok <<<"$resp")" false "a socket request with bytes that are not UTF-8 is refused"
ctl ping >/dev/null || fail "vmferryd died on a request that is not UTF-8"
ok "vmferryd keeps serving after it"

# --- Stop, then check every path the daemon touched.
kill -TERM "$(pgrep -P "$DAEMON_PID" vmferryd)"
wait "$DAEMON_PID" || true
DAEMON_PID=
# With threads, strace splits a call another thread interrupts in two
# lines: join them (t/tools/strace_log.py), or a failed call's first half
# (mkdir("/tmp") = -1 EEXIST) would count as a path made.
python3 "$SRC/t/tools/strace_log.py" "$T/strace.log" >"$T/strace.joined" || fail "strace_log.py could not read $T/strace.log"
grep -q 'unfinished \.\.\.>\|resumed>' "$T/strace.joined" && fail "strace lines left unjoined: $(grep -m3 'unfinished\|resumed>' "$T/strace.joined")"
# "openat(AT_FDCWD, "path", O_WRONLY|O_CREAT..., 0600) = 5" and friends; only
# successful calls count, and opens only when they may write.
paths=$(grep -v ' = -1 ' "$T/strace.joined" | grep -v '^[0-9]* +++\|^[0-9]* ---' |
	grep -E '^[0-9]+ +(open|openat|openat2|creat)\(' | grep -E 'O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|creat\(' |
	sed -E 's/^[0-9]+ +[a-z0-9]+\((AT_FDCWD, )?"((\\"|[^"])*)".*/\2/')
paths+=$'\n'$(grep -v ' = -1 ' "$T/strace.joined" |
	grep -E '^[0-9]+ +(mkdir|mkdirat|rename|renameat|renameat2|link|linkat|symlink|symlinkat|unlink|unlinkat|rmdir|truncate|chmod|fchmodat|chown|fchownat|lchown|mknod|mknodat|utimensat)\(' |
	grep -oE '"((\\"|[^"])*)"' | sed -E 's/^"(.*)"$/\1/')
paths+=$'\n'$(grep -v ' = -1 ' "$T/strace.joined" | grep -E '^[0-9]+ +bind\(' | grep -oE 'sun_path="[^"]*"' | sed -E 's/^sun_path="(.*)"$/\1/')
# strace writes bytes outside printable ASCII as \ooo (and "\\" for "\").
paths=$(grep -v '^$' <<<"$paths" | sort -u | while IFS= read -r p; do
	printf '%b\n' "$(sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g' <<<"$p")"; done)
n=$(grep -c . <<<"$paths")
[ "$n" -gt 5 ] || fail "strace saw too few paths ($n): $(head -c 400 "$T/strace.log")"
# Through the target's mount (lan_free) it writes the flat files of the
# target VMs it made: those files exactly, nothing else there.
names=$(printf '%s\n' "${DIRECT_VMS[@]}" | jq -R . | jq -sc .)
flats=$(curl -sf "$D_CTL/vms" | jq -r --argjson names "$names" \
	'.[] | select(.name as $n | $names | index($n)) | .disks[].flat | sub("^\\[ds0\\] "; "")' | sed "s|^|$D_DIR/ds0/|")
assert_eq "$(grep -c . <<<"$flats")" "${#DIRECT_VMS[@]}" "the target has one flat file per lan_free VM"
outside=$(grep -vxF "$SOCK" <<<"$paths" | grep -vxF "$STATE" | grep -v "^$STATE/" | grep -vxF -f <(echo "$flats") |
	grep -v '^/dev/null$' || true)
assert_eq "$outside" "" "every one of the $n paths vmferryd created, wrote, renamed or removed lies in the state directory, is its socket or a target VM's flat file on the mount"
in_mount=$(grep -c "^$D_DIR/" <<<"$paths" || true)
assert_eq "$in_mount" "${#DIRECT_VMS[@]}" "on the target mount it wrote exactly the ${#DIRECT_VMS[@]} flat files"
deep=$(grep "^$STATE/tmp/" <<<"$paths" | sed "s|^$STATE/tmp/||" | awk -F/ 'NF > 4' || true)
assert_eq "$deep" "" "nothing in temp_dir lies deeper than KIND/RULE/VM/FILE"
kinds=$(grep "^$STATE/tmp/" <<<"$paths" | sed "s|^$STATE/tmp/||" | cut -d/ -f1 | LC_ALL=C sort -u | tr '\n' ' ')
assert_eq "$kinds" ".trash migration " "temp_dir holds the migration kind's directory and the trash (what goes is removed off the loop) only"
dots=$(grep "^$STATE/" <<<"$paths" | sed "s|^$STATE/||" | tr '/' '\n' | grep -xE '\.|\.\.' || true)
assert_eq "$dots" "" "no path component is . or .."
rules=$(grep "^$STATE/tmp/migration/" <<<"$paths" | sed "s|^$STATE/tmp/migration/||" | cut -d/ -f1 | LC_ALL=C sort -u | tr '\n' ' ')
assert_eq "$rules" "$(printf '%s\n' .direct "$RULE64" | LC_ALL=C sort | tr '\n' ' ')" "temp_dir holds directories of the two running rules only (none for refused names)"
assert_eq "$(grep -c 'outside\.bin' "$T/strace.log" || true)" 0 "the file the evil descriptors name was never opened, not even for reading"
assert_eq "$(curl -sf "$S_CTL/stats" | jq '[.files | keys[] | select(test("outside"))] | length')" 0 \
	"nor asked for over HTTPS"
wait_until 30 test ! -e "$STATE/tmp/.trash" || fail "temp_dir/.trash did not empty: $(find "$STATE/tmp/.trash" | head -5 | tr '\n' ' ')"
staging=$(find "$STATE/tmp" -mindepth 3 | grep -v "/evil-" | head -5 || true)
assert_eq "$staging" "" "no staging is left in temp_dir after the migrations"
echo "# figure: names: $((${#HTTPS_VMS[@]} + ${#DIRECT_VMS[@]})) VMs with hostile names migrated (HTTPS and direct), 13 unsafe names (7 rule, 5 VM, 1 not UTF-8) refused with file:line:col, $n paths traced: 0 outside the state directory and the target VMs' files; 2 descriptors naming a file outside the datastore: refused, never opened; ${#CTL_VMS[@]} control-character names and 1 forged host name: 0 forged log lines"
