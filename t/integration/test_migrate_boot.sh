#!/usr/bin/env bash
# A migrated guest boots (SPEC §14): a VM whose first disk is the peer's
# bootable guest (generation 1) is migrated; while the job waits in
# 迁移就绪 (ready) the guest bumps its generation to 2, then `vmferryctl
# migrate` runs the catch-up and the cutover.  The target's disk, read
# from the target peer's datastore files, boots under qemu-system-x86_64
# (software emulation) and prints gen=2: the catch-up brought the
# generation sector, and the boot sector landed where a BIOS looks.  The
# boot check is shown to fail: the same disk expecting gen=1, and the
# VM's second disk, which does not boot.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
need_boot

C0=6303089   # 6 MiB + 12401
C1=3149825   # 3 MiB + 4097
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"boot01","host":"H0","power":"on",
         "disks":[{"capacity":$C0,"seed":61,"allocated":0.4,"boot":true,"gen":1},
                  {"capacity":$C1,"seed":62,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
mig_rule boot boot01 "fast_transfer: true"

boot_disk S boot01 0 1 && ok "the source's first disk boots and prints gen=1 ($(cat "$T/boot.out"))" ||
	fail "the source's bootable disk does not boot with gen=1: $(cat "$T/boot.out")"

start_daemon "$CONF"
wait_job boot boot01 ready 120
ok "the full copy reaches ready (迁移就绪)"
boot_disk D boot01 0 1 && ok "while ready, the target's first disk boots and prints gen=1" ||
	fail "while ready, the target's disk does not boot with gen=1: $(cat "$T/boot.out")"

assert_eq "$(gwrite '{"vm":"boot01","disk":0,"gen":2}' | jq -c '[.bytes, .grains]')" "[512,1]" \
	"the guest bumps its generation to 2: one sector written"
boot_disk S boot01 0 2 && ok "the source now boots with gen=2" ||
	fail "the source does not boot with gen=2 after the bump: $(cat "$T/boot.out")"
boot_disk D boot01 0 1 && ok "the target still boots with gen=1 before the catch-up" ||
	fail "before the catch-up the target does not boot with gen=1: $(cat "$T/boot.out")"

stats_reset
ctl migrate boot boot01 >/dev/null || fail "vmferryctl migrate boot boot01 was refused"
wait_job boot boot01 complete 180
check_complete boot boot01 2 "boot"
target_equal boot01 2 "boot"
assert_eq "$(flat_bytes boot01)" 65536 "the catch-up read only the 64 KiB grain holding the generation sector"

boot_disk D boot01 0 2 && ok "after cutover the target's first disk boots and prints gen=2 ($(cat "$T/boot.out"))" ||
	fail "after cutover the target's disk does not boot with gen=2: $(cat "$T/boot.out")"

# The check can fail: the wrong generation, and a disk that does not boot.
rc=0; boot_disk D boot01 0 1 || rc=$?
assert_eq "$rc" 1 "the boot check expecting gen=1 on the migrated disk fails"
assert_match "$(cat "$T/boot.out")" "VMFERRY-BOOT-OK gen=2" "the failed boot check shows what the guest printed"
rc=0; BOOT_TIMEOUT=5 boot_disk D boot01 1 2 || rc=$?
assert_eq "$rc" 1 "the VM's second disk does not boot"
assert_match "$(cat "$T/boot.out")" "showed nothing" "the failed boot check says the serial port showed nothing"
