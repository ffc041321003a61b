#!/usr/bin/env bash
# Every vSphere driver call against the real test peer: login (and refused
# credentials), TLS pinning (and a refused thumbprint, also next to an
# insecure client of the same server), inventory (datastore types), CBT,
# snapshots with freeze semantics, paged QueryChangedDiskAreas, FileFault
# after a CBT reset, VM creation, power, upload, destroy, and recovery from
# injected faults (HTTP 503, dropped bodies, expired sessions, an outage).
. "$(dirname "$0")/lib.sh"
PROBE=${VMFERRY_PROBE:-$BIN/t/integration/vsprobe}

cat >"$T/fixture.json" <<'JSON'
{"datacenters":[{"name":"DC0","hosts":["H0","H1"],"datastores":["ds0",{"name":"ds6","type":"VMFS","version":"6"},
   {"name":"ds5","type":"VMFS","version":"5"},{"name":"nfs","type":"NFS","version":"4.1"}]}],
 "vms":[{"name":"web01","host":"H0","datastore":"ds0","power":"on","cpus":2,"memory_mb":1024,"nics":["VM Network"],
         "disks":[{"capacity":50397184,"fill":"random","seed":1,"allocated":0.25},
                  {"capacity":7340033,"fill":"random","seed":2,"allocated":1.0}]},
        {"name":"indep","host":"H1","datastore":"ds0","power":"off",
         "disks":[{"capacity":1048576,"fill":"zero","mode":"independent_persistent"}]}]}
JSON
start_peer P "$T/fixture.json" --cbt-max-extents 3
probe() { "$PROBE" --thumbprint "$P_THUMB" "$@"; }
disk_sha() { curl -sf "$P_CTL/disk?vm=$1&disk=$2" | jq -r .sha256; }

# Login and TLS.
assert_eq "$(probe "$P_URL" login | jq -r .status)" ok "login with the right credentials"
out=$(probe --password wrong "$P_URL" login 2>&1) && fail "a wrong password must fail"
assert_match "$out" '"status":"authentication".*refused \(wrong user name or password\)' "a wrong password is refused clearly"
bad=00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
out=$("$PROBE" --thumbprint "$bad" "$P_URL" login 2>&1) && fail "a wrong thumbprint must fail"
assert_match "$out" '"status":"tls"' "a mismatching thumbprint is refused"
assert_match "$out" "thumbprint $P_THUMB" "the refusal shows the presented thumbprint"
out=$("$PROBE" --thumbprint "$bad" "$P_URL" after-insecure 2>&1) &&
	fail "a wrong thumbprint must fail, also when an insecure client is connected to the same server"
assert_match "$out" '"status":"tls".*does not match the pinned thumbprint' \
	"a pinned client never reuses a connection that an insecure client opened"
assert_eq "$(probe "$P_URL" after-insecure | jq -r .status)" ok "the right thumbprint works next to an insecure client"
out=$("$PROBE" "$P_URL" login 2>&1) && fail "an untrusted self-signed certificate must fail"
assert_match "$out" "certificate not trusted.*thumbprint $P_THUMB" "an untrusted certificate is refused with its thumbprint"
assert_eq "$("$PROBE" --insecure "$P_URL" login | jq -r .status)" ok "insecure (explicit) accepts it"

# Inventory.
inv=$(probe "$P_URL" inventory)
assert_eq "$(jq -r '[.vms[].name] | sort | join(",")' <<<"$inv")" "indep,web01" "inventory lists the VMs"
assert_eq "$(jq -r '[.hosts[].name] | sort | join(",")' <<<"$inv")" "H0,H1" "inventory lists the hosts"
assert_eq "$(jq -r '.vms[] | select(.name=="web01") | [.disks[].capacity] | join(",")' <<<"$inv")" "50397184,7340033" "disk capacities are exact"
assert_eq "$(jq -r '.vms[] | select(.name=="web01") | "\(.host) \(.datacenter) \(.datastore) \(.cpus) \(.memory_mb) \(.power)"' <<<"$inv")" \
	"H0 DC0 ds0 2 1024 poweredOn" "VM hardware, host and placement"
assert_eq "$(jq -r '.vms[] | select(.name=="indep") | .disks[0].mode' <<<"$inv")" independent_persistent "independent disks are recognised"
assert_match "$(jq -r '.datastores[] | select(.name == "ds0") | "\(.name) \(.capacity) \(.free)"' <<<"$inv")" '^ds0 [0-9]+ [0-9]+$' "datastore capacity and free space"
# Each datastore's type, and a VMFS volume's major version from the
# polymorphic info (read whole: vCenter refuses a path into a subtype).
assert_eq "$(jq -r '[.datastores[] | "\(.name):\(.type):\(.vmfs_major)"] | sort | join(" ")' <<<"$inv")" \
	"ds0:OTHER:0 ds5:VMFS:5 ds6:VMFS:6 nfs:NFS41:0" "datastore types and VMFS major versions (VMFS6 makes seSparse deltas)"

# A server that pages property results (at most one object a page).
start_peer Q "$T/fixture.json" --max-objects 1
pinv=$("$PROBE" --thumbprint "$Q_THUMB" --page 100 "$Q_URL" inventory)
pages=$(jq -r .pages <<<"$pinv")
[ "$pages" -ge 4 ] && ok "inventory follows ContinueRetrievePropertiesEx tokens ($pages pages)" || fail "expected paging, got $pages pages"
assert_eq "$(jq -r '[.vms[].name] | sort | join(",")' <<<"$pinv")" "indep,web01" "paged inventory has every VM exactly once"
assert_eq "$(jq -c '[.vms[] | select(.name=="web01") | .disks[].capacity]' <<<"$pinv")" "[50397184,7340033]" "paged inventory has the same details"

# CBT and a snapshot; the snapshot's disk is frozen.
probe "$P_URL" cbt web01 on >/dev/null
assert_eq "$(probe "$P_URL" vm web01 | jq -r .cbt)" true "ReconfigVM turns CBT on"
before=$(disk_sha web01 0)
snap=$(probe "$P_URL" snapshot web01 vmferry-test | jq -r .moref)
assert_match "$snap" '^snapshot-' "CreateSnapshot returns the snapshot"
disks=$(probe "$P_URL" snapdisks "$snap")
cid=$(jq -r '.disks[0].change_id' <<<"$disks")
assert_match "$cid" '/[0-9]+$' "the snapshot's disks carry a changeId"
curl -sf -XPOST "$P_CTL/write" -d '{"vm":"web01","disk":0,"offset":65536,"length":300000,"seed":7}' >/dev/null
curl -sf -XPOST "$P_CTL/write" -d '{"vm":"web01","disk":0,"offset":40000000,"length":1,"seed":8}' >/dev/null
after=$(disk_sha web01 0)
[ "$after" != "$before" ] && ok "guest writes change the live disk" || fail "guest writes did not change the disk"
read=$(probe "$P_URL" read web01 "$snap" 0)
assert_eq "$(jq -r .sha256 <<<"$read")" "$before" "bytes read from the snapshot equal the bytes at snapshot time"
assert_eq "$(jq -r .extent <<<"$read")" "web01/web01-flat.vmdk" "the extent file comes from the descriptor"
read=$(probe --direct "$P_DIR/ds0" "$P_URL" read web01 "$snap" 0)
assert_eq "$(jq -r .sha256 <<<"$read")" "$before" "the direct transport reads the same bytes"
read=$(probe --chunk 1000003 --parallel 7 "$P_URL" read web01 "$snap" 1)
assert_eq "$(jq -r .sha256 <<<"$read")" "$(disk_sha web01 1)" "odd chunk sizes and an odd disk size read exactly"

# CBT: '*' pages to the end; incremental areas are the written grains.
all=$(probe "$P_URL" changes web01 "$snap" 0 '*')
pages=$(jq -r .pages <<<"$all")
[ "$pages" -gt 1 ] && ok "QueryChangedDiskAreas is paged ($pages replies)" || fail "expected several pages, got $pages"
last_end=$(jq -r '.extents[-1] | .[0] + .[1]' <<<"$all")
[ "$last_end" -le 50397184 ] && ok "changed areas stay within the disk" || fail "extent past the end: $last_end"
probe "$P_URL" remove-snapshot "$snap" >/dev/null
assert_eq "$(disk_sha web01 0)" "$after" "RemoveSnapshot consolidates the guest writes"
snap2=$(probe "$P_URL" snapshot web01 vmferry-test2 | jq -r .moref)
inc=$(probe "$P_URL" changes web01 "$snap2" 0 "$cid")
assert_eq "$(jq -c .extents <<<"$inc")" "[[65536,327680],[39976960,65536]]" "incremental changes are the written 64 KiB grains"
assert_eq "$(probe "$P_URL" read web01 "$snap2" 0 | jq -r .sha256)" "$after" "the new snapshot holds the writes"

# CBT reset: the old changeId is refused with a FileFault.
curl -sf -XPOST "$P_CTL/fault" -d '{"cbt_reset":{"vm":"web01","disk":0}}' >/dev/null
out=$(probe "$P_URL" changes web01 "$snap2" 0 "$cid" 2>&1) && fail "a pre-reset changeId must be refused"
assert_match "$out" '"fault":"FileFault"' "a changeId from before a CBT reset gives FileFault"
probe "$P_URL" remove-snapshot "$snap2" >/dev/null

# Faults during a read: 5 % HTTP 503, bodies dropped mid-way, sessions
# expiring every second; the bytes still come out exact.
snap3=$(probe "$P_URL" snapshot web01 vmferry-faults | jq -r .moref)
want=$(disk_sha web01 0)
curl -sf -XPOST "$P_CTL/fault" -d '{"http_error":{"status":503,"fraction":0.05,"path":"*"},"seed":3}' >/dev/null
assert_eq "$(probe --chunk 262144 "$P_URL" read web01 "$snap3" 0 | jq -r .sha256)" "$want" "reads survive 5 % HTTP 503"
curl -sf -XPOST "$P_CTL/fault" -d '{"clear":true}' >/dev/null
curl -sf -XPOST "$P_CTL/fault" -d '{"drop":{"fraction":0.2},"seed":4}' >/dev/null
assert_eq "$(probe --chunk 1048576 "$P_URL" read web01 "$snap3" 0 | jq -r .sha256)" "$want" "reads survive bodies dropped mid-way"
curl -sf -XPOST "$P_CTL/fault" -d '{"clear":true}' >/dev/null
curl -sf -XPOST "$P_CTL/fault" -d '{"session_expiry_s":1,"delay":{"method":"*","ms":0}}' >/dev/null
curl -sf -XPOST "$P_CTL/fault" -d '{"drop":{"fraction":0.0}}' >/dev/null
out=$(probe --chunk 65536 --parallel 1 --verbose "$P_URL" read web01 "$snap3" 0 2>"$T/expiry.log")
assert_eq "$(jq -r .sha256 <<<"$out")" "$want" "a long read survives sessions expiring every second"
curl -sf -XPOST "$P_CTL/fault" -d '{"clear":true}' >/dev/null

# Datastore file reads (descriptors) ride out transient faults too: a
# body cut short and HTTP 503 are repeated, not reported unreachable; a
# certificate that changed is a refusal naming its thumbprint.
dlen=$(stat -c %s "$P_DIR/ds0/web01/web01.vmdk")
curl -sf -XPOST "$P_CTL/fault" -d '{"drop":{"count":2,"after":10}}' >/dev/null
assert_eq "$(probe "$P_URL" get-file DC0 ds0 web01/web01.vmdk | jq -r '"\(.status) \(.bytes)"')" "ok $dlen" \
	"a descriptor read survives bodies cut short"
curl -sf -XPOST "$P_CTL/fault" -d '{"http_error":{"status":503,"count":3,"path":"/folder"}}' >/dev/null
assert_eq "$(probe "$P_URL" get-file DC0 ds0 web01/web01.vmdk | jq -r '"\(.status) \(.bytes)"')" "ok $dlen" \
	"a descriptor read survives HTTP 503"
newthumb=$(curl -sf -XPOST "$P_CTL/fault" -d '{"cert":"new"}' | jq -r .faults.thumbprint)
out=$(probe "$P_URL" get-file DC0 ds0 web01/web01.vmdk 2>&1) && fail "a changed certificate must be refused"
assert_match "$out" "\"status\":\"tls\".*thumbprint $newthumb" "a descriptor read refuses a changed certificate, naming it"
curl -sf -XPOST "$P_CTL/fault" -d '{"clear":true}' >/dev/null

# An outage shorter than the retry window is ridden out; a longer one is
# reported as unreachable.
curl -sf -XPOST "$P_CTL/fault" -d '{"outage_s":3}' >/dev/null
assert_eq "$(probe --retry-window 15 "$P_URL" vm web01 | jq -r .name)" web01 "a 3 s outage is ridden out"
sleep 0.5
curl -sf -XPOST "$P_CTL/fault" -d '{"outage_s":6}' >/dev/null
out=$(probe --retry-window 2 "$P_URL" vm web01 2>&1) && fail "a long outage must be reported"
assert_match "$out" '"status":"unreachable"' "an outage longer than the retry window is reported unreachable"
sleep 6
probe "$P_URL" remove-snapshot "$snap3" >/dev/null

# Revert to a snapshot discards what was written after it.
snap4=$(probe "$P_URL" snapshot web01 vmferry-revert | jq -r .moref)
at_snap=$(disk_sha web01 1)
curl -sf -XPOST "$P_CTL/write" -d '{"vm":"web01","disk":1,"offset":0,"length":4096,"seed":11}' >/dev/null
[ "$(disk_sha web01 1)" != "$at_snap" ] || fail "write did not change disk 1"
probe "$P_URL" revert web01 "$snap4" >/dev/null
assert_eq "$(disk_sha web01 1)" "$at_snap" "RevertToSnapshot brings back the snapshot's content"
probe "$P_URL" remove-snapshot "$snap4" >/dev/null
assert_eq "$(probe "$P_URL" vm web01 | jq '.snapshots | length')" 0 "no snapshot is left behind"

# Keepalive: an idle session gets a cheap call before it could expire.
ka=$(probe --keepalive 1 "$P_URL" idle 3.5)
[ "$(jq -r .keepalives <<<"$ka")" -ge 1 ] && ok "an idle session is kept alive" || fail "no keepalive: $ka"
assert_eq "$(jq -r .relogins <<<"$ka")" 0 "the kept-alive session needs no new login"

# ca_file: a peer serving the demo certificate is trusted through it.
start_peer D "$T/fixture.json" --cert "$SRC/t/peer/testdata/demo-cert.pem" --key "$SRC/t/peer/testdata/demo-key.pem"
assert_eq "$("$PROBE" --ca "$SRC/t/peer/testdata/demo-cert.pem" "$D_URL" login | jq -r .status)" ok \
	"a certificate signed by ca_file is trusted (host name checked)"
out=$("$PROBE" --ca "$SRC/t/peer/testdata/demo-cert.pem" "$P_URL" login 2>&1) && fail "another certificate must fail"
assert_match "$out" '"status":"tls"' "ca_file does not trust other certificates"

# A guest shutdown powers the VM off.
probe "$P_URL" power web01 shutdown >/dev/null
wait_until 10 sh -c "[ \"\$('$PROBE' --thumbprint '$P_THUMB' '$P_URL' vm web01 | jq -r .power)\" = poweredOff ]" ||
	fail "ShutdownGuest did not power the VM off"
ok "ShutdownGuest powers the VM off"

# Creating a VM on the target side, power, upload, destroy.
created=$(probe --network "VM Network" "$P_URL" create-vm newvm ds0 H1 7340033,1048576)
assert_match "$(jq -r .moref <<<"$created")" '^vm-' "CreateVM_Task creates the VM"
nvm=$(probe "$P_URL" vm newvm)
assert_eq "$(jq -r '[.disks[].capacity] | join(",")' <<<"$nvm")" "7340033,1048576" "the new VM has equally sized disks in order"
assert_eq "$(jq -r '.nics[0].network' <<<"$nvm")" "VM Network" "the new VM has its NIC"
file=$(jq -r '.disks[0].file' <<<"$nvm")
path=${file#*] }
flat=${path%.vmdk}-flat.vmdk
head -c 7340033 /dev/urandom >"$T/img"
assert_eq "$(probe "$P_URL" upload DC0 ds0 "$flat" "$T/img" | jq -r .status)" ok "a whole disk image uploads over HTTPS"
assert_eq "$(disk_sha newvm 0)" "$(sha256sum <"$T/img" | cut -d' ' -f1)" "the uploaded disk holds the image's bytes"
probe "$P_URL" power newvm on >/dev/null
assert_eq "$(probe "$P_URL" vm newvm | jq -r .power)" poweredOn "PowerOn"
probe "$P_URL" power newvm off >/dev/null
assert_eq "$(probe "$P_URL" vm newvm | jq -r .power)" poweredOff "PowerOff"
probe "$P_URL" destroy newvm >/dev/null
assert_eq "$(curl -sf "$P_CTL/vms" | jq -r '[.[].name] | index("newvm")')" null "Destroy removes the VM"

out=$(probe "$P_URL" snapshot nosuchvm x 2>&1) && fail "an unknown VM must fail"
assert_match "$out" "no VM named nosuchvm" "an unknown VM is a clear error"
