package main

// A disk that boots (boot.go): the fixture puts the boot sector assembled
// from boot/bootsector.s in LBA 0 and the generation sector in LBA 1, and
// leaves the rest of the disk as the fixture's other options make it; a
// gen write rewrites exactly the generation sector, as a guest write that
// change tracking sees. (t/tools/test_boot_check.sh boots such disks.)

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/types"
)

const bootCap = 1<<20 + 3000 // not a multiple of a grain

const bootFixture = `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"boot01","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":1051576,"seed":3,"allocated":0.5,"boot":true,"gen":5},
                  {"capacity":2097152,"fill":"zero","boot":true}]},
        {"name":"plain01","host":"H0",
         "disks":[{"capacity":1051576,"seed":3,"allocated":0.5}]}]}`

func readFlat(t *testing.T, p *peer, vm, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, "ds0", vm, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBootableFixture(t *testing.T) {
	want, err := bootSector()
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 512 || want[510] != 0x55 || want[511] != 0xaa ||
		!bytes.Contains(want, []byte("VMFERRY-BOOT-OK gen=")) || !bytes.Contains(want, []byte(genMagic)) {
		t.Fatalf("the assembled boot sector is not the one of boot/bootsector.s: % x", want)
	}
	p := startPeer(t, bootFixture)
	boot := readFlat(t, p, "boot01", "boot01-flat.vmdk")
	plain := readFlat(t, p, "plain01", "plain01-flat.vmdk")
	if len(boot) != bootCap {
		t.Fatalf("flat file of %d bytes, not %d", len(boot), bootCap)
	}
	if !bytes.Equal(boot[:512], want) {
		t.Error("LBA 0 is not the boot sector")
	}
	gen := boot[512:1024]
	if string(gen[:12]) != "VMFERRY-GEN:" || binary.LittleEndian.Uint32(gen[12:16]) != 5 ||
		bytes.Count(gen[16:], []byte{0}) != len(gen)-16 {
		t.Errorf("LBA 1 is not the generation sector of gen 5: % x", gen[:32])
	}
	if !bytes.Equal(boot[1024:], plain[1024:]) {
		t.Error("past LBA 1 the bootable disk differs from the same fixture disk without boot")
	}
	z := readFlat(t, p, "boot01", "boot01_1-flat.vmdk")
	if !bytes.Equal(z[:512], want) || !bytes.Equal(z[512:1024], genSector(1)) ||
		bytes.Count(z[1024:], []byte{0}) != len(z)-1024 {
		t.Error("a zero bootable disk without gen: boot sector, gen 1, zeros")
	}

	// The generation write: exactly LBA 1 changes, and CBT sees grain 0.
	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "boot01")
	s1 := createSnapshot(ctx, t, vm, "s1", false, false)
	cid1 := snapDisks(ctx, t, c.Client, s1)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId
	all, _, err := queryAll(ctx, t, c.Client, vm.Reference(), s1, 2000, "*", bootCap)
	if err != nil {
		t.Fatal(err)
	}
	if !grainsOf(all)[0] {
		t.Errorf("CBT * leaves out grain 0, which holds the boot sector: %+v", all)
	}
	before := p.diskHash("boot01", 0)
	var r struct {
		OK     bool
		Bytes  int64
		Grains int64
	}
	if code := p.ctl("POST", "/write", map[string]interface{}{"vm": "boot01", "disk": 0, "gen": 6}, &r); code != 200 ||
		!r.OK || r.Bytes != 512 || r.Grains != 1 {
		t.Fatalf("/write gen: %d %+v", code, r)
	}
	if !bytes.Equal(readFlat(t, p, "boot01", "boot01-flat.vmdk"), boot) {
		t.Error("the gen write changed the snapshot's frozen base")
	}
	expect := append([]byte{}, boot...)
	copy(expect[512:1024], genSector(6))
	if got := p.diskHash("boot01", 0); got != sha(expect) || got == before {
		t.Errorf("after the gen write the disk is not the old one with LBA 1 for gen 6")
	}
	s2 := createSnapshot(ctx, t, vm, "s2", false, false)
	inc, _, err := queryAll(ctx, t, c.Client, vm.Reference(), s2, 2000, cid1, bootCap)
	if err != nil {
		t.Fatal(err)
	}
	if len(inc) != 1 || inc[0].Start != 0 || inc[0].Length != grainSize {
		t.Errorf("CBT after the gen write: %+v, want grain 0 only", inc)
	}
	removeSnapshot(ctx, t, c.Client, s1)
	removeSnapshot(ctx, t, c.Client, s2)
	if !bytes.Equal(readFlat(t, p, "boot01", "boot01-flat.vmdk"), expect) {
		t.Error("consolidated, the flat file is not the old one with LBA 1 for gen 6")
	}

	for _, bad := range []map[string]interface{}{
		{"vm": "boot01", "disk": 0, "gen": -1},
		{"vm": "boot01", "disk": 0, "gen": 1 << 32},
		{"vm": "boot01", "disk": 0, "gen": 2, "offset": 0, "length": 1},
		{"vm": "boot01", "disk": 0, "gen": 2, "fill": "zero"},
	} {
		if code := p.ctl("POST", "/write", bad, nil); code != 400 {
			t.Errorf("/write %v: %d, want 400", bad, code)
		}
	}
	if got := p.diskHash("boot01", 0); got != sha(expect) {
		t.Error("a refused gen write changed the disk")
	}
}

func TestBootableFixtureRefused(t *testing.T) {
	for _, c := range []struct{ disk, err string }{
		{`{"capacity":1048576,"gen":2}`, "gen needs boot"},
		{`{"capacity":1000,"boot":true}`, "at least 1024 bytes"},
		{`{"capacity":1048576,"boot":true,"gen":4294967296}`, "outside 0..4294967295"},
	} {
		fx := filepath.Join(t.TempDir(), "fixture.json")
		os.WriteFile(fx, []byte(`{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"b","host":"H0","disks":[`+c.disk+`]}]}`), 0644)
		out, err := exec.Command(peerBin, "--fixture", fx, "--dir", t.TempDir()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.err) {
			t.Errorf("fixture disk %s: %v, %q; want a refusal naming %q", c.disk, err, out, c.err)
		}
	}
}
