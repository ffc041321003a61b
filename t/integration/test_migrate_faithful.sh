#!/usr/bin/env bash
# The target VM is the source VM, not a rebuilt one: a VM with an E1000
# card with a static MAC (and a vmxnet3 one with a generated MAC), an LSI
# Logic controller, EFI firmware with secure boot, a CD-ROM on IDE 1:0, a
# floppy, 4 CPUs in 2 sockets and boot options in extraConfig is migrated
# into a VM folder; the target's hardware, read through the target peer's
# SOAP API (vmferry-peer hardware, a govmomi client), equals the source's
# field by field, its disks are thin and hold the source's bytes.  With
# keep_mac: false the cards get new MACs.  A VM of the same name in another
# folder of the target is no clash.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

D1=3145728   # 3 MiB
D2=2101248   # 2 MiB + 4 KiB
legacy() { # NAME MAC SEED
	cat <<JSON
{"name":"$1","folder":"apps","host":"H0","power":"on","cpus":4,"cores_per_socket":2,"memory_mb":3072,
 "guest_id":"windows9_64Guest","hw_version":"vmx-14","firmware":"efi","secure_boot":true,
 "controller":"lsilogic","cdrom":true,"floppy":true,
 "nics":[{"network":"VM Network","model":"e1000","mac":"$2"},"VM Network"],
 "extra_config":{"disk.EnableUUID":"TRUE","bios.bootOrder":"hdd,cdrom","guestinfo.note":"not for the target"},
 "disks":[{"capacity":$D1,"seed":$3,"allocated":0.5},{"capacity":$D2,"seed":$(($3 + 1)),"allocated":0.3}]}
JSON
}
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[$(legacy legacy01 00:50:56:01:02:03 10), $(legacy legacy02 00:50:56:01:02:04 20)]}
JSON
# The target has the folder, and someone else's legacy02 in its VM folder.
cat >"$T/target-fixture.json" <<'JSON'
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"],"folders":["apps"]}],
 "vms":[{"name":"legacy02","host":"H0","disks":[{"capacity":1048576,"seed":99}]}]}
JSON
MIG_TARGET_FIXTURE=$T/target-fixture.json mig_start_peers "$T/fixture.json"
mig_config
target_in_apps() { # NAME VMS OPTIONS
	mig_rule "$1" "$2" "$3"
	sed -i 's/datastore: ds0 }$/datastore: ds0, folder: apps }/' "$CONF/20-$1.yaml"
	grep -q "folder: apps" "$CONF/20-$1.yaml" || fail "rule $1 has no target folder"
}
target_in_apps keep legacy01 "fast_transfer: true"
target_in_apps newmac legacy02 "fast_transfer: true, keep_mac: false"
start_daemon "$CONF"

for r in "keep legacy01" "newmac legacy02"; do
	set -- $r
	wait_job "$1" "$2" ready 180
	ctl migrate "$1" "$2" >/dev/null || fail "vmferryctl migrate $1 $2 was refused"
done
for r in "keep legacy01" "newmac legacy02"; do
	set -- $r
	wait_job "$1" "$2" complete 180
done
ok "both migrations complete"

# The peer's own SOAP client (tools/peer builds it where start_peer runs it from).
"$SRC/tools/peer" --build-only >/dev/null
PEER=${VMFERRY_BUILD:-$SRC/build}
case "$PEER" in /*) ;; *) PEER=$SRC/$PEER ;; esac
PEER=$PEER/peer/vmferry-peer
hw() { # URL VM: the VM's hardware (in folder apps) as the SOAP API shows it
	"$PEER" hardware -url "$1" -vm "$2" -folder apps || fail "reading the hardware of $2 at $1"
}
src=$(hw "$S_URL" legacy01)
dst=$(hw "$D_URL" legacy01)
echo "# source: $src"
echo "# target: $dst"
field() { jq -c "$2" <<<"$1"; }
same() { # JQ_PATH WHAT
	local a b
	a=$(field "$src" "$1")
	b=$(field "$dst" "$1")
	[ "$a" != null ] || fail "$2: the source has none ($1)"
	assert_eq "$b" "$a" "$2 ($a)"
}
same .version "hardware version"
same .guest_id "guest OS id"
same .firmware "firmware"
same .secure_boot "secure boot"
same .cpus "CPUs"
same .cores_per_socket "cores per socket"
same .memory_mb "memory"
same '[.controllers[] | "\(.type):\(.bus)"] | sort' "controller types and bus numbers"
same '[.disks[] | [.controller, .unit, .capacity]]' "disks: the same controller and unit, in the same order, the same sizes"
same '[.nics[] | .model]' "NIC models"
same '[.nics[] | .network]' "NIC networks"
same '[.nics[] | .mac]' "keep_mac: the MAC addresses"
same '[.nics[] | .pci_slot]' "NIC PCI slots (the guest's names for its adapters)"
same '[.cdroms[] | [.controller, .unit]]' "CD-ROM drives at the same controller and unit"
same '[.floppies[] | [.controller, .unit]]' "floppy drives at the same controller and unit"
same '.extra_config | {"disk.EnableUUID", "bios.bootOrder"}' "the boot options of extraConfig"
assert_eq "$(field "$src" '.nics[0].model')" '"VirtualE1000"' "the source's first card is an E1000 (the fixture holds)"
assert_eq "$(field "$dst" '[.nics[].address_type]')" '["manual","manual"]' "kept MACs are manual MACs on the target"
assert_eq "$(field "$dst" '[.disks[].thin] | unique')" '[true]' "the target disks are thin"
assert_eq "$(field "$dst" '[.cdroms[], .floppies[] | [.backing, .start_connected]] | unique')" \
	'[["VirtualCdromRemotePassthroughBackingInfo",false],["VirtualFloppyRemoteDeviceBackingInfo",false]]' \
	"the drives are empty and not connected at power-on"
assert_eq "$(field "$dst" '.extra_config["guestinfo.note"]')" null "extraConfig outside the boot options is not carried"
assert_match "$(ctl log keep legacy01)" "creating target VM legacy01 .*folder apps.*4 CPUs \(2 per socket\).*efi with secure boot.*NICs e1000 00:50:56:01:02:03" \
	"the log says what the target VM gets"

# keep_mac: false: the same adapters with new MACs.
src2=$(hw "$S_URL" legacy02)
dst2=$(hw "$D_URL" legacy02)
assert_eq "$(field "$dst2" '[.nics[].model]')" "$(field "$src2" '[.nics[].model]')" "keep_mac false: the same NIC models"
assert_nomatch "$(field "$dst2" '[.nics[].mac]')" "00:50:56:01:02:04" "keep_mac false: the static MAC is not reused"
assert_eq "$(field "$dst2" '[.nics[].address_type] | unique')" '["assigned"]' "keep_mac false: the platform assigns the MACs"

# Disks and VMs.
check_complete keep legacy01 2 "faithful copy"
want=$(src_hashes legacy02 2)
got=$(curl -sf "$D_CTL/vms" | jq -r '[.[] | select(.name == "legacy02" and .folder == "apps")][0].moref')
assert_eq "$(for i in 0 1; do sha "$D_CTL" "$got" "$i"; done | paste -sd' ')" "$want" \
	"keep_mac false: every target disk has the source's bytes"
assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[] | select(.name == "legacy02") | .folder] | sort | join(",")')" ",apps" \
	"a VM of the same name in another folder is no clash: both legacy02 are there"
assert_eq "$(job_state newmac legacy02)" complete "the migration next to the other legacy02 completes"
