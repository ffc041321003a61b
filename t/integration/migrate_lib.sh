# Helpers for the migration end-to-end tests (test_migrate*.sh).
# Source after lib.sh:
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/migrate_lib.sh"
#
# Two peers: S (the source, with VMs) and D (the target, empty), both with
# datacenter DC0, host H0 and datastore ds0; a config dir $CONF with the
# platforms "src" and "dst" (thumbprints pinned), the node "local" with a
# relative temp_dir, a system document, and one file per rule.

CONF=$T/conf

# mig_start_peers SOURCE_FIXTURE [source peer args]: starts S and D (D
# from $MIG_TARGET_FIXTURE when set, else empty).
mig_start_peers() {
	local fixture=$1; shift
	cat >"$T/target.json" <<'JSON'
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":[]}
JSON
	start_peer S "$fixture" "$@"
	start_peer D "${MIG_TARGET_FIXTURE:-$T/target.json}"
}

# mig_start_hotadd_peers SOURCE_FIXTURE: S from the fixture, D a target
# whose datastore ds0 poses as VMFS6 (seSparse deltas) with the VM the
# appliance runs in, vmferry-appliance; sets HOTADD_DIR (where attached
# disks appear) and APP_UUID (the appliance's BIOS UUID), and writes $CONF
# with node local finding the appliance by that UUID.  The test is skipped
# where the peer cannot emulate hot-add (no FUSE).
mig_start_hotadd_peers() {
	local line
	cat >"$T/target6.json" <<'JSON'
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":[{"name":"ds0","type":"VMFS","version":"6"}]}],
 "appliance":"vmferry-appliance",
 "vms":[{"name":"vmferry-appliance","host":"H0","power":"on","controller":"pvscsi","disks":[{"capacity":1048576,"fill":"zero"}]}]}
JSON
	MIG_TARGET_FIXTURE=$T/target6.json mig_start_peers "$1"
	line=$(head -n1 "$T/peer-D.json")
	HOTADD_DIR=$(jq -r '.hotadd_dir // empty' <<<"$line")
	APP_UUID=$(jq -r '.appliance_uuid // empty' <<<"$line")
	[ -n "$HOTADD_DIR" ] || skip_test "the peer cannot emulate hot-add here: $(jq -r '.hotadd_error // "no hotadd_dir"' <<<"$line")"
	[ -n "$APP_UUID" ] || fail "the peer names no appliance_uuid"
	MIG_NODE_EXTRA="hotadd: { uuid: \"$APP_UUID\", devices: $HOTADD_DIR }" mig_config
}

# mig_config [SYSTEM_YAML_LINES]: writes $CONF; MIG_MOUNTS=1 adds
# datastore_mounts for ds0 on both platforms (the direct transport);
# MIG_NODE_EXTRA holds more lines of the node (hotadd).
mig_config() {
	local system=${1:-"transfer_buffer: 1MiB
host_buffer_cap: 8MiB"}
	local smount="" dmount=""
	if [ "${MIG_MOUNTS:-}" = 1 ]; then
		smount="datastore_mounts: { ds0: $S_DIR/ds0 }"
		dmount="datastore_mounts: { ds0: $D_DIR/ds0 }"
	fi
	mkdir -p "$CONF/secrets"
	echo pass >"$CONF/secrets/vc"
	printf 'kind: system\n%s\n' "$system" >"$CONF/00-system.yaml"
	{
		mig_platform src "$S_URL" "$S_THUMB" vc "$smount"
		echo ---
		mig_platform dst "$D_URL" "$D_THUMB" vc "$dmount"
		echo ---
		cat <<YAML
kind: node
name: local
repository: repo
temp_dir: tmp
${MIG_NODE_EXTRA:-}
YAML
	} >"$CONF/10-platforms.yaml"
}

# mig_platform NAME URL THUMBPRINT SECRET [EXTRA_LINE]: a platform
# document (user "user", password from secrets/SECRET) on stdout.
mig_platform() {
	cat <<YAML
kind: platform
name: $1
type: vsphere
url: $2
username: user
password_file: secrets/$4
tls: { thumbprint: "$3" }
${5:-}
YAML
}

# mig_rule NAME "VM1 VM2" "OPTIONS (flow mapping body)" [BANDWIDTH_FLOW_LIST]
# writes $CONF/20-NAME.yaml atomically; the platforms are src and dst
# unless MIG_SRC / MIG_DST name others, the node is local unless MIG_NODE
# names another; MIG_KIND (default migration) and MIG_RULE_EXTRA (more
# lines, e.g. keep_history) make other kinds' rules.
mig_rule() {
	local name=$1 vms=$2 opts=${3:-} bw=${4:-}
	{
		echo "kind: ${MIG_KIND:-migration}"
		echo "name: $name"
		echo "source: { platform: ${MIG_SRC:-src}, vms: [$(echo $vms | sed 's/ /, /g')] }"
		echo "node: ${MIG_NODE:-local}"
		echo "target: { platform: ${MIG_DST:-dst}, datacenter: DC0, host: H0, datastore: ds0 }"
		[ -z "$opts" ] || echo "options: { $opts }"
		[ -z "$bw" ] || echo "bandwidth: $bw"
		[ -z "${MIG_RULE_EXTRA:-}" ] || echo "$MIG_RULE_EXTRA"
	} >"$CONF/.20-$name.yaml.tmp"
	mv "$CONF/.20-$name.yaml.tmp" "$CONF/20-$name.yaml"
}

# rep_rule NAME "VM VM" "OPTIONS" KEEP [NODE] [BANDWIDTH_FLOW_LIST]: a
# replication rule onto dst.
rep_rule() {
	{
		echo "kind: replication"
		echo "name: $1"
		echo "source: { platform: ${MIG_SRC:-src}, vms: [$(echo $2 | sed 's/ /, /g')] }"
		echo "node: ${5:-local}"
		echo "target: { platform: ${MIG_DST:-dst}, datacenter: DC0, host: H0, datastore: ds0 }"
		echo "options: { $3 }"
		echo "keep_history: $4"
		[ -z "${6:-}" ] || echo "bandwidth: $6"
	} >"$CONF/.20-$1.yaml.tmp"
	mv "$CONF/.20-$1.yaml.tmp" "$CONF/20-$1.yaml"
}

# SHA-256 of a disk's current content on a peer: sha CTL VM INDEX.
sha() { curl -sf "$1/disk?vm=$2&disk=$3" | jq -r .sha256; }
src_sha() { sha "$S_CTL" "$1" "$2"; }
dst_sha() { sha "$D_CTL" "$1" "$2"; }

# Peer VM facts.
peer_vm() { curl -sf "$1/vms" | jq -c --arg n "$2" '[.[] | select(.name == $n)]'; }
vm_count() { curl -sf "$1/vms" | jq --arg n "$2" '[.[] | select(.name == $n)] | length'; }
vm_power() { curl -sf "$1/vms" | jq -r --arg n "$2" '[.[] | select(.name == $n) | .power][0]'; }
snap_count() { curl -sf "$S_CTL/snapshots?vm=$1" | jq 'length'; }
snap_names() { curl -sf "$S_CTL/snapshots?vm=$1" | jq -r '[.[].name] | join(",")'; }

# Bytes the source peer served from a VM's flat files (since the last reset).
flat_bytes() {
	curl -sf "$S_CTL/stats" | jq --arg vm "$1" \
		'[.files | to_entries[] | select(.key | startswith("ds0/" + $vm + "/")) | select(.key | endswith("-flat.vmdk")) | .value] | add // 0'
}
# Bytes the source peer served from one file of a VM: file_served VM FILE.
file_served() { curl -sf "$S_CTL/stats" | jq -r --arg f "ds0/$1/$2" '.files[$f] // 0'; }
stats_reset() { curl -sf -XPOST "$S_CTL/stats/reset" >/dev/null; }
# How often a peer was called with a SOAP method: method_count CTL METHOD.
method_count() { curl -sf "$1/stats" | jq -r --arg m "$2" '.methods[$m] // 0'; }
# The offsets a job's copy of disk N resumed at, in order, as it logged
# them: resume_offsets RULE VM N.
resume_offsets() {
	ctl log "$1" "$2" -n 1000 | grep -Eo "disk $3: resuming at offset [0-9]+" | grep -Eo '[0-9]+$' || true
}

# Allocated bytes of a source VM's flat files: the bytes of their 64 KiB
# grains that hold data (the peer fills allocated grains with random
# bytes and leaves the others zero), read from the content, so that it
# holds on file systems without holes too.
alloc_bytes() {
	local f total=0
	for f in "$S_DIR"/ds0/"$1"/*-flat.vmdk; do
		total=$((total + $(od -An -v -w65536 -tx8 "$f" | awk -v G=65536 -v size="$(stat -c %s "$f")" '
			/[1-9a-f]/ { e = NR * G; if (e > size) e = size; n += e - (NR - 1) * G }
			END { print n + 0 }')))
	done
	echo "$total"
}
# qemu-img (an independent VMDK reader) compares the target's chain with
# the source's, per disk, and checks the target's: qcompare VM DISK.
vmdk_of() { curl -sf "$1/vms" | jq -r --arg n "$2" --argjson i "$3" '.[] | select(.name == $n) | .disks[$i].current // .disks[$i].file' | sed 's/^\[ds0\] //'; }
qcompare() {
	local s d
	s=$S_DIR/ds0/$(vmdk_of "$S_CTL" "$1" "$2")
	d=$D_DIR/ds0/$(vmdk_of "$D_CTL" "$1" "$2")
	if grep -aq 'createType="seSparse"' "$d"; then d=$(qreadable "$d") || return 1; fi
	qemu-img compare -q -f vmdk -F vmdk "$d" "$s" && qemu-img check -q -f vmdk "$d"
}
# qreadable DESCRIPTOR: a copy of a seSparse chain (a VMFS6 datastore's)
# that qemu-img opens, its path on stdout.  The peer keeps seSparse data in
# the COWD layout under its own magic "PSES" (t/peer/README.md, "VMFS6"):
# the copy's extents get "COWD" back and its descriptors say vmfsSparse;
# flat files are linked.  Everything else (grain tables, parent CIDs and
# hints, generations) is read as the peer wrote it.
qreadable() {
	local src=$1 dir f out
	dir=$(mktemp -d "$T/qread.XXXXXX")
	for f in "$(dirname "$src")"/*.vmdk; do
		out=$dir/$(basename "$f")
		if head -c 21 "$f" | grep -aqx "# Disk DescriptorFile"; then
			sed -e 's/createType="seSparse"/createType="vmfsSparse"/' -e 's/ SESPARSE "/ VMFSSPARSE "/' "$f" >"$out"
		elif head -c 4 "$f" | grep -aqx PSES; then
			cp --sparse=always "$f" "$out" && printf COWD | dd of="$out" conv=notrunc status=none
		else
			ln -s "$f" "$out"
		fi
	done
	echo "$dir/$(basename "$src")"
}
# target_equal VM NDISKS WHAT: every target disk of VM holds the source's
# bytes (peer hashes), and qemu-img finds its chain equal and clean.
target_equal() {
	local vm=$1 n=$2 what=$3 d
	for ((d = 0; d < n; d++)); do
		assert_eq "$(dst_sha "$vm" $d)" "$(src_sha "$vm" $d)" "$what: target disk $d holds the source's bytes (peer hashes)"
		qcompare "$vm" $d && ok "$what: qemu-img finds target disk $d's chain equal to the source, and clean" ||
			fail "$what: qemu-img finds target disk $d different from the source, or its chain broken"
	done
}
fault() { curl -sf -XPOST "$1/fault" -d "$2" >/dev/null || fail "fault injection $2 refused"; }
# Replication (SPEC §9).  rep_keep_source DIR VM NDISKS: the source's disks
# as they are now (what a cycle that starts now must bring to the target):
# DIR/VM.N.sha (the peer's hash) and DIR/VM.N.raw (read by qemu-img).
rep_keep_source() {
	local d=0 f
	mkdir -p "$1"
	for f in $(peer_vm "$S_CTL" "$2" | jq -r '.[0].disks[] | .current // .file | sub("^\\[ds0\\] "; "")'); do
		src_sha "$2" $d >"$1/$2.$d.sha"
		qemu-img convert -f vmdk -O raw "$S_DIR/ds0/$f" "$1/$2.$d.raw" || fail "qemu-img could not read source $2 disk $d"
		d=$((d + 1))
	done
	[ "$d" = "$3" ] || fail "source $2 has $d disks, not $3"
}
# qchain_check FILE: qemu-img check finds every image of FILE's chain
# clean (it checks one image, not the ones below it).
qchain_check() {
	local f
	for f in $(qemu-img info -f vmdk --backing-chain --output=json "$1" | jq -r '.[].filename'); do
		qemu-img check -q -f vmdk "$f" || return 1
	done
}
# The restore points on the target VM, "N moref" a line, oldest first: as
# the target's snapshots vmferry-replication-RULE-rpN have them
# (rep_target_points RULE VM), as `vmferryctl points` lists them
# (rep_ctl_points RULE VM).
rep_target_points() {
	curl -sf "$D_CTL/snapshots?vm=$2" | jq -r --arg p "vmferry-replication-$1-rp" \
		'.[] | select(.name | startswith($p)) | "\(.name | ltrimstr($p)) \(.moref)"'
}
rep_ctl_points() { ctl points "$1" "$2" | awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1, $4 }'; }
# rep_check WHAT RULE VM NDISKS DIR "POINTS" CYCLES [STATES]: after a
# replication cycle or operation: the job rests (complete, or one of
# STATES, a regex); the target's disks hold what rep_keep_source kept in
# DIR (peer hashes; qemu-img finds each image of each chain clean, and
# the chain equal); no
# snapshot is left on the source; the target's snapshots are exactly the
# restore points POINTS ("3 4", oldest first), none twice, and `vmferryctl
# points` lists the same with the same snapshots; the job counts CYCLES
# cycles, one success each and no failure; one target VM, with NDISKS disks.
rep_check() {
	local what=$1 rule=$2 vm=$3 n=$4 dir=$5 points=$6 cycles=$7 states=${8:-complete} d f want got vms
	assert_match "$(job_state "$rule" "$vm")" "^($states)\$" "$what: $vm: the job rests ($states)"
	want= got=
	for ((d = 0; d < n; d++)); do want+="$(cat "$dir/$vm.$d.sha") "; got+="$(dst_sha "$vm" $d) "; done
	assert_eq "$got" "$want" "$what: $vm: every target disk holds the source as that cycle read it (peer hashes)"
	vms=$(peer_vm "$D_CTL" "$vm")
	assert_eq "$(jq length <<<"$vms")" 1 "$what: $vm: exactly one target VM"
	d=0
	for f in $(jq -r '.[0].disks[] | .current // .file | sub("^\\[ds0\\] "; "")' <<<"$vms"); do
		f=$D_DIR/ds0/$f
		qchain_check "$f" || fail "$what: $vm: qemu-img check finds target disk $d's chain broken ($f)"
		qemu-img compare -q -f vmdk -F raw "$f" "$dir/$vm.$d.raw" ||
			fail "$what: $vm: qemu-img finds target disk $d different from the source as that cycle read it"
		d=$((d + 1))
	done
	assert_eq "$d" "$n" "$what: $vm: the target VM has $n disks"
	ok "$what: $vm: qemu-img finds every target disk's chain clean and equal to the source as that cycle read it"
	assert_eq "$(snap_count "$vm")" 0 "$what: $vm: no engine snapshot left on the source ($(snap_names "$vm"))"
	want=$(for d in $points; do printf 'vmferry-replication-%s-rp%s ' "$rule" "$d"; done)
	assert_eq "$(curl -sf "$D_CTL/snapshots?vm=$vm" | jq -r '[.[].name] | join(" ")')" "${want% }" \
		"$what: $vm: the target's snapshots are the restore points $points, each once"
	assert_eq "$(rep_ctl_points "$rule" "$vm")" "$(rep_target_points "$rule" "$vm")" \
		"$what: $vm: vmferryctl points agrees with the target's snapshots"
	assert_eq "$(ctl --json show "$rule" "$vm" --kind replication | jq -r .details.cycles)" "$cycles" \
		"$what: $vm: the job counts $cycles cycles"
	assert_eq "$(ctl --json stats "$rule" "$vm" | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "$cycles 0" \
		"$what: $vm: one success per cycle, no failure"
}
gwrite() { curl -sf -XPOST "$S_CTL/write" -d "$1" || fail "guest write $1 refused"; }

job_json() { ctl --json jobs "$1" | jq -c --arg vm "$2" '[.jobs[] | select(.vm == $vm)][0]'; }
job_field() { ctl --json jobs "$1" | jq -r --arg vm "$2" --arg f "$3" '[.jobs[] | select(.vm == $vm) | .[$f]][0]'; }

# wait_job RULE VM "STATE[ STATE...]" TIMEOUT_S: wait for one of the states;
# a failed job (unless failed is wanted) or a timeout fails the test.
wait_job() {
	local rule=$1 vm=$2 want=" $3 " limit=$4 st
	local end=$((SECONDS + limit))
	while :; do
		if [ -n "$DAEMON_PID" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			fail "vmferryd died while $rule/$vm waited for$want"
		fi
		st=$(job_state "$rule" "$vm" 2>/dev/null || echo none)
		case "$want" in *" $st "*) return 0 ;; esac
		if [ "$st" = failed ]; then
			fail "$rule/$vm failed while waiting for$want: $(job_field "$rule" "$vm" error)"
		fi
		if [ $SECONDS -ge $end ]; then
			echo "# job log of $rule/$vm:"
			ctl log "$rule" "$vm" -n 30 2>&1 | sed 's/^/#   /' || true
			fail "$rule/$vm did not reach$want within ${limit}s (state $st, error $(job_field "$rule" "$vm" error))"
		fi
		sleep 0.2
	done
}

# Record the source's disk hashes (call when the source no longer changes).
# src_hashes VM NDISKS -> "h0 h1 ..."
src_hashes() {
	local i out=""
	for ((i = 0; i < $2; i++)); do out+="$(src_sha "$1" "$i") "; done
	echo "${out% }"
}
dst_hashes() {
	local i out=""
	for ((i = 0; i < $2; i++)); do out+="$(dst_sha "$1" "$i") "; done
	echo "${out% }"
}

# check_complete RULE VM NDISKS [WHAT]: the usual checks after a finished
# migration: every target disk equals the source's, exactly one target VM,
# no snapshot left on the source.
check_complete() {
	local rule=$1 vm=$2 n=$3 what=${4:-$1/$2}
	assert_eq "$(job_state "$rule" "$vm")" complete "$what: the job is complete"
	assert_eq "$(vm_count "$D_CTL" "$vm")" 1 "$what: exactly one target VM $vm"
	local want got
	want=$(src_hashes "$vm" "$n")
	got=$(dst_hashes "$vm" "$n")
	assert_eq "$got" "$want" "$what: every target disk has the source's bytes"
	assert_eq "$(snap_count "$vm")" 0 "$what: no snapshot left on the source ($(snap_names "$vm"))"
}

# config_generation: the daemon's reload counter.
config_generation() { ctl --json ping | jq -r .config_generation; }

# reload_config: make the daemon re-read the config directory (a file
# rewritten with a new comment) and wait until it has.
reload_config() {
	local g
	g=$(config_generation)
	echo "# touched $(date +%s%N)" >>"$CONF/00-system.yaml"
	if ! wait_until 10 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json ping | jq -r .config_generation) -gt $g ]"; then
		kill -0 "$DAEMON_PID" 2>/dev/null || fail "vmferryd died during a config reload"
		fail "the config directory was not reloaded"
	fi
}

# dump_diag: print the state of everything (for debugging a failing run).
dump_diag() {
	echo "# jobs: $(ctl --json jobs | jq -c '[.jobs[] | {rule, vm, state, error, progress}]')"
}

# mig_temp_dir DIR: after mig_config, the node's temp_dir becomes DIR
# (absolute: e.g. a small filesystem of its own).
mig_temp_dir() {
	sed -i "s|^temp_dir: .*\$|temp_dir: $1|" "$CONF/10-platforms.yaml"
	grep -qx "temp_dir: $1" "$CONF/10-platforms.yaml" || fail "temp_dir could not be set to $1"
}

# A guest that boots (SPEC §14).  need_boot: skip the test where Debian's
# qemu-system-x86_64 is missing (tools/setup installs qemu-system-x86).
need_boot() {
	command -v qemu-system-x86_64 >/dev/null ||
		skip_test "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
}
# boot_disk S|D VM DISK GEN: boot disk DISK of VM as a peer's datastore
# holds it now (the descriptor of its current chain, read in place; a
# seSparse chain through qreadable) under qemu with t/tools/boot_check.sh;
# its exit status (0: the guest printed VMFERRY-BOOT-OK gen=GEN), its
# output in $T/boot.out.
boot_disk() {
	local dir ctl f
	case $1 in
	S) dir=$S_DIR ctl=$S_CTL ;;
	D) dir=$D_DIR ctl=$D_CTL ;;
	*) fail "boot_disk: no peer $1" ;;
	esac
	f=$dir/ds0/$(vmdk_of "$ctl" "$2" "$3")
	if grep -aq 'createType="seSparse"' "$f"; then f=$(qreadable "$f") || return 2; fi
	"$SRC/t/tools/boot_check.sh" "$f" vmdk "$4" >"$T/boot.out" 2>&1
}
