package main

// Snapshot deltas in VMware's format: the peer's own reads agree with
// qemu-img's (an independent VMDK reader) on every layer of every chain,
// the delta files are laid out as a COWD extent says, an uploaded delta is
// taken or refused as ESXi would, and a VMFS6 datastore makes seSparse
// deltas.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	chainCap0 = 20000003 // ten grain tables and a bit; not a multiple of 512
	chainCap1 = 3000000
)

const chainFixture = `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"web01","host":"H0","datastore":"ds0","power":"on","cbt":true,
         "disks":[{"capacity":20000003,"fill":"random","seed":1,"allocated":0.3},
                  {"capacity":3000000,"fill":"random","seed":2,"allocated":0.5}]}]}`

type vmDiskInfo struct {
	Index    int
	File     string
	Current  string
	Capacity int64
}

func (p *peer) vmDisks(name string) []vmDiskInfo {
	p.t.Helper()
	var vms []struct {
		Name  string
		Disks []vmDiskInfo
	}
	p.ctl("GET", "/vms", nil, &vms)
	for _, v := range vms {
		if v.Name == name {
			return v.Disks
		}
	}
	p.t.Fatalf("no vm %s in /vms", name)
	return nil
}

type snapInfo struct {
	Name  string
	Moref string
	Disks []struct {
		Key  int32
		File string
	}
}

func (p *peer) snapshots(vm string) []snapInfo {
	p.t.Helper()
	var out []snapInfo
	p.ctl("GET", "/snapshots?vm="+vm, nil, &out)
	return out
}

func (p *peer) layerHash(vm string, disk int, snap string) string {
	p.t.Helper()
	var r struct{ Sha256, Layer string }
	u := fmt.Sprintf("/disk?vm=%s&disk=%d", vm, disk)
	if snap != "" {
		u += "&snapshot=" + snap
	}
	if code := p.ctl("GET", u, nil, &r); code != 200 {
		p.t.Fatalf("%s: %d", u, code)
	}
	return r.Sha256
}

// local is the file of a datastore path "[ds0] web01/web01.vmdk".
func (p *peer) local(dsPath string) string {
	m := regexp.MustCompile(`^\[([^\]]+)\] (.*)$`).FindStringSubmatch(dsPath)
	if m == nil {
		p.t.Fatalf("bad datastore path %q", dsPath)
	}
	return filepath.Join(p.Dir, m[1], filepath.FromSlash(m[2]))
}

func qemuImgOrSkip(t *testing.T) string {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (Debian package qemu-utils): chains not checked by an independent reader")
	}
	return bin
}

// qemuAgrees converts the layer whose descriptor is dsPath with qemu-img
// and compares it with the peer's own read of that layer (want, a SHA-256),
// and runs qemu-img check on it.
func qemuAgrees(t *testing.T, qemu string, p *peer, what, dsPath string, capacity int64, want string) {
	t.Helper()
	desc := p.local(dsPath)
	out := filepath.Join(t.TempDir(), "layer.raw")
	if b, err := exec.Command(qemu, "convert", "-f", "vmdk", "-O", "raw", desc, out).CombinedOutput(); err != nil {
		t.Errorf("%s: qemu-img convert %s: %v\n%s", what, dsPath, err, b)
		return
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sectors := (capacity + 511) / 512
	if int64(len(raw)) != sectors*512 {
		t.Errorf("%s: qemu-img gives %d bytes, want %d", what, len(raw), sectors*512)
		return
	}
	if got := sha(raw[:capacity]); got != want {
		t.Errorf("%s: qemu-img reads %s as %s, the peer as %s", what, dsPath, got[:12], want[:12])
	}
	if bytes.Count(raw[capacity:], []byte{0}) != len(raw)-int(capacity) {
		t.Errorf("%s: bytes past the capacity are not zero", what)
	}
	b, err := exec.Command(qemu, "check", "-f", "vmdk", desc).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "No errors were found") {
		t.Errorf("%s: qemu-img check %s: %v\n%s", what, dsPath, err, b)
	}
}

// checkAllLayers compares every snapshot layer and the current one of both
// disks with what qemu-img reads.
func checkAllLayers(t *testing.T, qemu string, p *peer, stage string) int {
	t.Helper()
	n := 0
	disks := p.vmDisks("web01")
	for _, s := range p.snapshots("web01") {
		for i, sd := range s.Disks {
			qemuAgrees(t, qemu, p, fmt.Sprintf("%s: snapshot %s disk %d", stage, s.Name, i), sd.File,
				disks[i].Capacity, p.layerHash("web01", i, s.Name))
			n++
		}
	}
	for i, d := range disks {
		qemuAgrees(t, qemu, p, fmt.Sprintf("%s: current disk %d", stage, i), d.Current, d.Capacity, p.layerHash("web01", i, ""))
		n++
	}
	return n
}

func revertTo(ctx context.Context, t *testing.T, p *peer, snap types.ManagedObjectReference) {
	t.Helper()
	c := p.client(ctx)
	res, err := methods.RevertToSnapshot_Task(ctx, c.Client, &types.RevertToSnapshot_Task{This: snap})
	if err != nil {
		t.Fatal(err)
	}
	if err := object.NewTask(c.Client, res.Returnval).Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestQemuImgReadsChains(t *testing.T) {
	qemu := qemuImgOrSkip(t)
	p := startPeer(t, chainFixture)
	ctx := context.Background()
	c := p.client(ctx)
	hc := folderClient(c)
	vm := findVM(ctx, t, c.Client, "web01")
	// the expected content of each disk, now and at each snapshot, from
	// the stream rule: a model independent of the peer and of qemu-img
	var cur [2][]byte
	for i, f := range []string{"web01/web01-flat.vmdk", "web01/web01_1-flat.vmdk"} {
		_, b, err := get(t, hc, p.folderURL(f), "")
		if err != nil {
			t.Fatal(err)
		}
		cur[i] = b
	}
	snaps := map[string][2][]byte{}
	snap := func(name string) types.ManagedObjectReference {
		ref := createSnapshot(ctx, t, vm, name, false, false)
		snaps[name] = [2][]byte{append([]byte(nil), cur[0]...), append([]byte(nil), cur[1]...)}
		return ref
	}
	w := func(disk int, off, n int64, seed int) {
		p.write(map[string]interface{}{"vm": "web01", "disk": disk, "offset": off, "length": n, "seed": seed})
		fillStream(cur[disk][off:off+n], uint64(seed), off)
	}
	expect := func(stage string) {
		t.Helper()
		for name, ds := range snaps {
			for i := range ds {
				if got := p.layerHash("web01", i, name); got != sha(ds[i]) {
					t.Errorf("%s: snapshot %s disk %d reads %s, want %s", stage, name, i, got[:12], sha(ds[i])[:12])
				}
			}
		}
		for i := range cur {
			if got := p.layerHash("web01", i, ""); got != sha(cur[i]) {
				t.Errorf("%s: disk %d reads %s, want %s", stage, i, got[:12], sha(cur[i])[:12])
			}
		}
	}
	w(0, 1000, 300000, 11)
	w(1, 65536*3, 65536*5, 12)
	s1 := snap("s1")
	w(0, 5000000, 4096, 13) // 8 grains
	w(0, 3, 700, 14)        // partial grains at both ends
	w(1, chainCap1-100, 100, 15)
	s2 := snap("s2")
	w(0, 5000000+100, 50, 21) // inside grains the parent delta holds
	w(0, 5000000+4000, 1000, 22)
	w(0, 7<<20, 3<<20, 16) // across grain tables
	w(1, 0, 1<<20, 17)
	w(0, 7<<20-4096, 4096, 23) // next to grains it follows on the disk, not in the file
	expect("two snapshots")
	checkAllLayers(t, qemu, p, "two snapshots")
	revertTo(ctx, t, p, s1)
	cur = [2][]byte{append([]byte(nil), snaps["s1"][0]...), append([]byte(nil), snaps["s1"][1]...)}
	w(0, chainCap0-1003, 1003, 18)
	w(1, 777, 5, 19)
	expect("after revert")
	if n := checkAllLayers(t, qemu, p, "after revert"); n != 6 {
		t.Errorf("checked %d layers, want 6", n)
	}
	// removing s2 drops the branch the revert left
	removeSnapshot(ctx, t, c.Client, s2)
	delete(snaps, "s2")
	for _, f := range []string{"web01-000001.vmdk", "web01-000001-delta.vmdk"} {
		if _, err := os.Stat(filepath.Join(p.Dir, "ds0", "web01", f)); !os.IsNotExist(err) {
			t.Errorf("%s left after removing s2: %v", f, err)
		}
	}
	expect("after removing s2")
	checkAllLayers(t, qemu, p, "after removing s2")
	// consolidation: s1's delta folds into the base, s3 stays readable
	s3 := snap("s3")
	w(0, 2<<20, 65536, 20)
	removeSnapshot(ctx, t, c.Client, s1)
	delete(snaps, "s1")
	expect("after removing s1")
	checkAllLayers(t, qemu, p, "after removing s1")
	removeSnapshot(ctx, t, c.Client, s3)
	delete(snaps, "s3")
	expect("after removing s3")
	if n := checkAllLayers(t, qemu, p, "after removing s3"); n != 2 {
		t.Errorf("checked %d layers, want 2", n)
	}
	for i, f := range []string{"web01/web01-flat.vmdk", "web01/web01_1-flat.vmdk"} {
		if _, b, _ := get(t, hc, p.folderURL(f), ""); sha(b) != sha(cur[i]) {
			t.Errorf("disk %d: the flat file is not the consolidated content", i)
		}
	}
}

// cowdHeader reads the header fields of a COWD extent.
type cowdHeader struct {
	Magic                                                  string
	Version, Flags, NumSectors, GrainSize, GDOffset, NumGD uint32
	FreeSector, ParentGen, Generation, Saved, Unclean      uint32
	ParentName                                             string
}

func readCOWD(t *testing.T, b []byte) cowdHeader {
	t.Helper()
	if len(b) < 2048 {
		t.Fatalf("delta of %d bytes", len(b))
	}
	u := func(o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
	return cowdHeader{Magic: string(b[0:4]), Version: u(4), Flags: u(8), NumSectors: u(12), GrainSize: u(16),
		GDOffset: u(20), NumGD: u(24), FreeSector: u(28), ParentName: strings.TrimRight(string(b[32:1056]), "\x00"),
		ParentGen: u(1056), Generation: u(1060), Saved: u(1636), Unclean: u(1648)}
}

func TestDeltaFormat(t *testing.T) {
	p := startPeer(t, chainFixture)
	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "web01")
	createSnapshot(ctx, t, vm, "s1", false, false)
	dir := filepath.Join(p.Dir, "ds0", "web01")
	base, _ := os.ReadFile(filepath.Join(dir, "web01.vmdk"))
	desc, _ := os.ReadFile(filepath.Join(dir, "web01-000001.vmdk"))
	cid := regexp.MustCompile(`(?m)^CID=([0-9a-f]{8})$`).FindSubmatch(base)
	sectors := (chainCap0 + 511) / 512
	for _, want := range []string{
		`createType="vmfsSparse"`,
		fmt.Sprintf("parentCID=%s\n", cid[1]),
		`parentFileNameHint="web01.vmdk"`,
		fmt.Sprintf("RW %d VMFSSPARSE \"web01-000001-delta.vmdk\"\n", sectors),
	} {
		if !strings.Contains(string(desc), want) {
			t.Errorf("delta descriptor lacks %q:\n%s", want, desc)
		}
	}
	file := filepath.Join(dir, "web01-000001-delta.vmdk")
	data, _ := os.ReadFile(file)
	h := readCOWD(t, data)
	ngd := uint32((sectors + 4095) / 4096)
	first := 4 + (ngd*4+511)/512
	if h.Magic != "COWD" || h.Version != 1 || h.NumSectors != uint32(sectors) || h.GrainSize != 1 || h.GDOffset != 4 ||
		h.NumGD != ngd || h.FreeSector != first || h.Unclean != 0 || h.ParentName != "web01.vmdk" || h.Generation == 0 ||
		h.Saved != h.Generation {
		t.Errorf("empty delta header %+v", h)
	}
	if int64(len(data)) != int64(first)*512 {
		t.Errorf("empty delta is %d bytes, want %d", len(data), first*512)
	}
	step := func(what string, off int64, grew uint32) {
		t.Helper()
		before := readCOWD(t, mustRead(t, file)).FreeSector
		p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": off, "length": 4096, "seed": 5})
		b := mustRead(t, file)
		after := readCOWD(t, b).FreeSector
		if after-before != grew || int64(len(b)) != int64(after)*512 {
			t.Errorf("%s: freeSector %d -> %d (want +%d), file %d bytes", what, before, after, grew, len(b))
		}
	}
	step("4 KiB into a new grain table", 1<<20, 32+8)
	step("4 KiB next to it", 1<<20+4096, 8)
	step("the same 4 KiB again", 1<<20, 0)
	step("4 KiB across into the next grain table", 2<<20-2048, 32+8)
	step("4 KiB across two new grain tables", 6<<20-2048, 32+32+8)
	// the grains hold the written bytes where the tables say
	b := mustRead(t, file)
	gt := binary.LittleEndian.Uint32(b[4*512+4*0:]) // grain table of the first 2 MiB
	sec := binary.LittleEndian.Uint32(b[int(gt)*512+4*((1<<20)/512):])
	want := make([]byte, 512)
	fillStream(want, 5, 1<<20)
	if !bytes.Equal(b[int(sec)*512:int(sec)*512+512], want) {
		t.Errorf("grain of offset 1 MiB (sector %d) does not hold the written bytes", sec)
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildDelta is the test's own COWD writer: it keeps the header of the empty
// delta (every field the platform wrote), and lays out after the grain
// directory one grain table per 2 MiB that an area touches, then the areas'
// grains in order, freeSector after them. Areas are [offset, length) in
// bytes, 512-aligned, with stream bytes of seed.
func buildDelta(empty []byte, areas [][2]int64, seed uint64, capacity int64) []byte {
	hdr := append([]byte(nil), empty[:2048]...)
	u := func(o int) uint32 { return binary.LittleEndian.Uint32(hdr[o:]) }
	gdOff, ngd := int64(u(20)), int64(u(24))
	gdSecs := (ngd*4 + 511) / 512
	next := gdOff + gdSecs
	gd := make([]uint32, ngd)
	gts := map[int64][]uint32{}
	var order []int64
	for _, a := range areas {
		for g := a[0] / 512; g*512 < a[0]+a[1]; g++ {
			t := g / 4096
			if gts[t] == nil {
				gts[t] = make([]uint32, 4096)
				order = append(order, t)
			}
		}
	}
	for _, t := range order {
		gd[t] = uint32(next)
		next += 32
	}
	var grains []byte
	for _, a := range areas {
		for g := a[0] / 512; g*512 < a[0]+a[1]; g++ {
			gts[g/4096][g%4096] = uint32(next)
			next++
			b := make([]byte, 512)
			if n := capacity - g*512; n < 512 {
				b = b[:n]
			}
			fillStream(b, seed, g*512)
			grains = append(grains, b...)
			grains = append(grains, make([]byte, 512-len(b))...)
		}
	}
	out := make([]byte, next*512)
	copy(out, hdr)
	binary.LittleEndian.PutUint32(out[28:], uint32(next))
	for i, v := range gd {
		binary.LittleEndian.PutUint32(out[gdOff*512+int64(i)*4:], v)
	}
	for _, t := range order {
		for i, v := range gts[t] {
			binary.LittleEndian.PutUint32(out[int64(gd[t])*512+int64(i)*4:], v)
		}
	}
	copy(out[(next*512)-int64(len(grains)):], grains)
	return out
}

func put(t *testing.T, hc *http.Client, u string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", u, bytes.NewReader(body))
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestDeltaUpload(t *testing.T) {
	p := startPeer(t, chainFixture)
	ctx := context.Background()
	c := p.client(ctx)
	hc := folderClient(c)
	vm := findVM(ctx, t, c.Client, "web01")
	createSnapshot(ctx, t, vm, "s1", false, false)
	u := p.folderURL("web01/web01-000001-delta.vmdk")
	_, empty, err := get(t, hc, u, "")
	if err != nil {
		t.Fatal(err)
	}
	areas := [][2]int64{{0, 4096}, {1 << 20, 3 << 20}, {chainCap0 / 512 * 512, 512}}
	good := buildDelta(empty, areas, 77, chainCap0)

	// a running VM holds its disks open
	if code := put(t, hc, u, good); code != http.StatusConflict {
		t.Errorf("upload onto a running VM's delta: %d, want 409", code)
	}
	if code := p.ctl("POST", "/power", map[string]interface{}{"vm": "web01", "state": "off"}, nil); code != 200 {
		t.Fatalf("power off: %d", code)
	}
	before := p.layerHash("web01", 0, "")
	set32 := func(b []byte, o int, v uint32) []byte {
		b = append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(b[o:], v)
		return b
	}
	gdOff := int(binary.LittleEndian.Uint32(good[20:]))
	gt0 := binary.LittleEndian.Uint32(good[gdOff*512:])
	bad := map[string][]byte{
		"bad magic":                   append([]byte("KDMV"), good[4:]...),
		"numSectors of another disk":  set32(good, 12, binary.LittleEndian.Uint32(good[12:])+1),
		"grain size 8":                set32(good, 16, 8),
		"a grain past the end":        set32(good, int(gt0)*512+4, uint32(len(good)/512)),
		"a grain table past the end":  set32(good, gdOff*512+4*3, uint32(len(good)/512-1)),
		"a grain table on the GD":     set32(good, gdOff*512, uint32(gdOff)),
		"a grain on a grain table":    set32(good, int(gt0)*512, gt0),
		"two grains in one sector":    set32(good, int(gt0)*512+4, binary.LittleEndian.Uint32(good[int(gt0)*512:])),
		"freeSector below the grains": set32(good, 28, uint32(len(good)/512-1)),
		"freeSector past the end":     set32(good, 28, uint32(len(good)/512+1)),
		"uncleanShutdown":             set32(good, 1648, 1),
		"truncated":                   good[:len(good)-512],
		"shorter than a header":       good[:1000],
	}
	for what, b := range bad {
		if code := put(t, hc, u, b); code != http.StatusBadRequest {
			t.Errorf("%s: PUT gives %d, want 400", what, code)
			put(t, hc, u, empty) // back to the empty delta for the next case
		}
		if _, now, _ := get(t, hc, u, ""); !bytes.Equal(now, empty) {
			t.Errorf("%s: the delta file changed", what)
		}
		if got := p.layerHash("web01", 0, ""); got != before {
			t.Errorf("%s: the disk's content changed", what)
		}
	}
	if code := put(t, hc, u, good); code != http.StatusOK {
		t.Fatalf("good delta: PUT gives %d", code)
	}
	// expected: the snapshot's content with the areas overlaid
	_, want, _ := get(t, hc, p.folderURL("web01/web01-flat.vmdk"), "")
	for _, a := range areas {
		end := a[0] + a[1]
		if end > chainCap0 {
			end = chainCap0
		}
		fillStream(want[a[0]:end], 77, a[0])
	}
	if got := p.layerHash("web01", 0, ""); got != sha(want) {
		t.Errorf("after the upload the disk reads %s, want %s", got[:12], sha(want)[:12])
	}
	if qemu, err := exec.LookPath("qemu-img"); err == nil {
		qemuAgrees(t, qemu, p, "uploaded delta", "[ds0] web01/web01-000001.vmdk", chainCap0, sha(want))
	}
	// the VM runs on from the uploaded delta: its writes go to freeSector
	free := binary.LittleEndian.Uint32(good[28:])
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 9 << 20, "length": 512, "seed": 3})
	_, now, _ := get(t, hc, u, "")
	nh := readCOWD(t, now)
	g0 := int(binary.LittleEndian.Uint32(good[int(gt0)*512:])) // the first grain
	if nh.FreeSector != free+32+1 || int64(len(now)) != int64(nh.FreeSector)*512 ||
		!bytes.Equal(now[g0*512:int(free)*512], good[g0*512:int(free)*512]) {
		t.Errorf("a write after the upload: freeSector %d (was %d), file %d bytes", nh.FreeSector, free, len(now))
	}
	fillStream(want[9<<20:9<<20+512], 3, 9<<20)
	if got := p.layerHash("web01", 0, ""); got != sha(want) {
		t.Errorf("after a write on the uploaded delta the disk reads %s, want %s", got[:12], sha(want)[:12])
	}
	// consolidation folds the uploaded grains into the base
	snaps := p.snapshots("web01")
	removeSnapshot(ctx, t, c.Client, types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: snaps[0].Moref})
	if _, flat, _ := get(t, hc, p.folderURL("web01/web01-flat.vmdk"), ""); sha(flat) != sha(want) {
		t.Errorf("after consolidation the flat file is not the uploaded content")
	}
}

const vmfs6Fixture = `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":[
   {"name":"ds6","type":"VMFS","version":"6"},{"name":"ds5","type":"VMFS","version":"5"},{"name":"nfs","type":"NFS"},"ds0"]}],
 "vms":[{"name":"web01","host":"H0","datastore":"ds6","power":"off",
         "disks":[{"capacity":3000000,"fill":"random","seed":1,"allocated":0.5}]},
        {"name":"web05","host":"H0","datastore":"ds5","power":"off",
         "disks":[{"capacity":3000000,"fill":"random","seed":1,"allocated":0.5}]}]}`

func TestVMFS6SeSparse(t *testing.T) {
	p := startPeer(t, vmfs6Fixture)
	ctx := context.Background()
	c := p.client(ctx)
	hc := folderClient(c)
	// the datastores say what they are
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	for _, want := range []struct {
		name, typ string
		major     int32
	}{{"ds6", "VMFS", 6}, {"ds5", "VMFS", 5}, {"nfs", "NFS", 0}, {"ds0", "OTHER", 0}} {
		ds, err := finder.Datastore(ctx, want.name)
		if err != nil {
			t.Fatal(err)
		}
		var m mo.Datastore
		if err := property.DefaultCollector(c.Client).RetrieveOne(ctx, ds.Reference(), []string{"summary", "info"}, &m); err != nil {
			t.Fatal(err)
		}
		if m.Summary.Type != want.typ {
			t.Errorf("%s: summary.type %q, want %q", want.name, m.Summary.Type, want.typ)
		}
		if want.major != 0 {
			vi, ok := m.Info.(*types.VmfsDatastoreInfo)
			if !ok || vi.Vmfs == nil || vi.Vmfs.MajorVersion != want.major {
				t.Errorf("%s: info %T %+v, want VMFS %d", want.name, m.Info, m.Info, want.major)
			}
		}
	}
	vm := findVM(ctx, t, c.Client, "web01")
	h0 := p.layerHash("web01", 0, "")
	s1 := createSnapshot(ctx, t, vm, "s1", false, false)
	dir := filepath.Join(p.Dir, "ds6", "web01")
	desc := string(mustRead(t, filepath.Join(dir, "web01-000001.vmdk")))
	for _, want := range []string{`createType="seSparse"`, `parentFileNameHint="web01.vmdk"`,
		fmt.Sprintf("RW %d SESPARSE \"web01-000001-sesparse.vmdk\"", (3000000+511)/512)} {
		if !strings.Contains(desc, want) {
			t.Errorf("VMFS6 delta descriptor lacks %q:\n%s", want, desc)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "web01-000001-delta.vmdk")); err == nil {
		t.Errorf("a vmfsSparse extent on a VMFS6 datastore")
	}
	if qemu, err := exec.LookPath("qemu-img"); err == nil {
		// the stand-in for seSparse data is no real seSparse: refused
		b, err := exec.Command(qemu, "convert", "-f", "vmdk", "-O", "raw",
			filepath.Join(dir, "web01-000001.vmdk"), filepath.Join(t.TempDir(), "x.raw")).CombinedOutput()
		if err == nil || !strings.Contains(string(b), "magic") {
			t.Errorf("qemu-img on the peer's seSparse stand-in: %v %s", err, b)
		}
	}
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 1000, "length": 100000, "seed": 9})
	h1 := p.layerHash("web01", 0, "")
	if h1 == h0 || p.layerHash("web01", 0, "s1") != h0 {
		t.Errorf("VMFS6 delta: writes not seen, or the snapshot changed")
	}
	// a vmfsSparse delta cannot go there, nor over the seSparse extent
	ds6 := func(f string) string { return strings.Replace(p.folderURL(f), "dsName=ds0", "dsName=ds6", 1) }
	w5 := findVM(ctx, t, c.Client, "web05")
	createSnapshot(ctx, t, w5, "s5", false, false)
	ds5url := strings.Replace(p.folderURL("web05/web05-000001-delta.vmdk"), "dsName=ds0", "dsName=ds5", 1)
	code, empty5, _ := get(t, hc, ds5url, "")
	if code != 200 || string(empty5[:4]) != "COWD" {
		t.Fatalf("VMFS5 delta: %d %q", code, empty5[:4])
	}
	cowd := buildDelta(empty5, [][2]int64{{0, 4096}}, 1, 3000000)
	for _, f := range []string{"web01/web01-000001-delta.vmdk", "web01/web01-000001-sesparse.vmdk", "web01/other.bin"} {
		if code := put(t, hc, ds6(f), cowd); code != http.StatusBadRequest {
			t.Errorf("PUT of a vmfsSparse delta as %s on VMFS6: %d, want 400", f, code)
		}
	}
	if got := p.layerHash("web01", 0, ""); got != h1 {
		t.Errorf("refused uploads changed the VMFS6 disk")
	}
	// the VMFS5 datastore takes it
	if code := put(t, hc, ds5url, cowd); code != http.StatusOK {
		t.Errorf("PUT of a vmfsSparse delta on VMFS5: %d", code)
	}
	// revert and consolidation work through the seSparse chain
	revertTo(ctx, t, p, s1)
	if got := p.layerHash("web01", 0, ""); got != h0 {
		t.Errorf("VMFS6: revert did not bring back the snapshot")
	}
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 2000000, "length": 5000, "seed": 4})
	h2 := p.layerHash("web01", 0, "")
	removeSnapshot(ctx, t, c.Client, s1)
	if got := p.layerHash("web01", 0, ""); got != h2 {
		t.Errorf("VMFS6: consolidation changed the content")
	}
	_, flat, _ := get(t, hc, ds6("web01/web01-flat.vmdk"), "")
	if sha(flat) != h2 {
		t.Errorf("VMFS6: the flat file is not the consolidated content")
	}
}
