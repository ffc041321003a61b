package main

// Hot-add: the appliance attaches another VM's disk, writes it through the
// FUSE device file and detaches it; refusals, faults and destroy.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	haCap   = 4195840 // 64 grains and 3 sectors: a multiple of 512, not of 64 KiB
	haCap6  = 3000001 // not even a multiple of 512
	haCtrl  = 1000    // the appliance's SCSI controller
	haFixTm = `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0",{"name":"ds6","type":"VMFS","version":"6"}]}],
 "appliance":"vmferry-app",
 "vms":[{"name":"vmferry-app","datastore":"ds0","power":"on","disks":[{"capacity":1048576,"fill":"zero"}]},
        {"name":"web01","datastore":"ds0","power":"off","cbt":true,"disks":[{"capacity":4195840,"seed":1,"allocated":0.5}]},
        {"name":"web02","datastore":"ds0","power":"on","disks":[{"capacity":1048576,"seed":2}]},
        {"name":"db06","datastore":"ds6","power":"off","disks":[{"capacity":3000001,"seed":3,"allocated":0.3}]}]}`
)

// startHotadd starts a peer with the appliance; FUSE tests skip when the
// peer could not mount.
func startHotadd(t *testing.T, needFUSE bool, args ...string) *peer {
	t.Helper()
	p := startPeer(t, haFixTm, args...)
	if p.ApplUUID == "" {
		t.Fatalf("no appliance_uuid in the first line")
	}
	if needFUSE && p.HotaddDir == "" {
		t.Skipf("FUSE mount impossible here (needs /dev/fuse and root or fusermount3): %s", p.HotaddErr)
	}
	return p
}

type hotaddView struct {
	Appliance     string
	ApplianceUUID string `json:"appliance_uuid"`
	Mounted       bool
	Dir           string
	Attached      []hotaddDeviceJSON
}

func (p *peer) hotaddView() hotaddView {
	p.t.Helper()
	var v hotaddView
	if code := p.ctl("GET", "/hotadd", nil, &v); code != 200 {
		p.t.Fatalf("/hotadd: %d", code)
	}
	return v
}

func (p *peer) hotaddStats() map[string]int64 {
	p.t.Helper()
	var st struct{ Requests map[string]int64 }
	p.ctl("GET", "/stats", nil, &st)
	return st.Requests
}

// reconfigure runs ReconfigVM_Task and returns the task's fault, if any.
func reconfigure(ctx context.Context, t *testing.T, vm *object.VirtualMachine, changes ...types.BaseVirtualDeviceConfigSpec) error {
	t.Helper()
	tk, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: changes})
	if err != nil {
		t.Fatalf("ReconfigVM_Task: %v", err)
	}
	return tk.Wait(ctx)
}

func attachSpec(file string, ctrl int32, unit int32) *types.VirtualDeviceConfigSpec {
	u := unit
	return &types.VirtualDeviceConfigSpec{
		Operation: types.VirtualDeviceConfigSpecOperationAdd,
		Device: &types.VirtualDisk{VirtualDevice: types.VirtualDevice{
			Key: -100, ControllerKey: ctrl, UnitNumber: &u,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file},
				DiskMode:                     string(types.VirtualDiskModeIndependent_persistent),
			},
		}},
	}
}

func detachSpec(key int32, destroy bool) *types.VirtualDeviceConfigSpec {
	s := &types.VirtualDeviceConfigSpec{
		Operation: types.VirtualDeviceConfigSpecOperationRemove,
		Device:    &types.VirtualDisk{VirtualDevice: types.VirtualDevice{Key: key, ControllerKey: haCtrl}},
	}
	if destroy {
		s.FileOperation = types.VirtualDeviceConfigSpecFileOperationDestroy
	}
	return s
}

// taskFault returns the fault type of a failed task ("" when it succeeded).
func taskFault(err error) string {
	if err == nil {
		return ""
	}
	var te task.Error
	if errors.As(err, &te) {
		s := fmt.Sprintf("%T", te.Fault())
		return s[strings.LastIndex(s, ".")+1:]
	}
	return "not a task fault: " + err.Error()
}

func deviceByKey(ctx context.Context, t *testing.T, vm *object.VirtualMachine, key int32) *types.VirtualDisk {
	t.Helper()
	for _, d := range vmDisks(ctx, t, vm) {
		if d.Key == key {
			return d
		}
	}
	return nil
}

func ownerUUID(ctx context.Context, t *testing.T, c *vim25.Client, name string) string {
	t.Helper()
	return vmDisks(ctx, t, findVM(ctx, t, c, name))[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).Uuid
}

// attachOK attaches file and checks the device in the appliance's config,
// /hotadd and the FUSE file; it returns the device key and the file's path.
func attachOK(ctx context.Context, t *testing.T, p *peer, c *vim25.Client, app *object.VirtualMachine, owner, file string, unit int32, capacity int64) (int32, string) {
	t.Helper()
	if f := taskFault(reconfigure(ctx, t, app, attachSpec(file, haCtrl, unit))); f != "" {
		t.Fatalf("attach %s: %s", file, f)
	}
	v := p.hotaddView()
	var a *hotaddDeviceJSON
	for i := range v.Attached {
		if v.Attached[i].File == file {
			a = &v.Attached[i]
		}
	}
	if a == nil {
		t.Fatalf("%s not in /hotadd: %+v", file, v)
	}
	uuid := ownerUUID(ctx, t, c, owner)
	if a.UUID != uuid || a.Unit != unit || a.Key <= 0 || a.Controller != haCtrl || a.Capacity != capacity {
		t.Errorf("/hotadd entry %+v (owner uuid %s)", a, uuid)
	}
	want := "wwn-0x" + strings.ToLower(strings.Replace(uuid, "-", "", -1))
	if a.Device != want {
		t.Errorf("device %s, want %s", a.Device, want)
	}
	dev := deviceByKey(ctx, t, app, a.Key)
	if dev == nil {
		t.Fatalf("device %d not in the appliance's config", a.Key)
	}
	b := dev.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if b.FileName != file || b.Uuid != uuid || dev.CapacityInBytes != capacity || dev.ControllerKey != haCtrl || *dev.UnitNumber != unit {
		t.Errorf("appliance device: file %s uuid %s capacity %d at %d:%d", b.FileName, b.Uuid, dev.CapacityInBytes, dev.ControllerKey, *dev.UnitNumber)
	}
	path := filepath.Join(p.HotaddDir, a.Device)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("device file: %v", err)
	}
	if st.Size() != capacity {
		t.Errorf("device file is %d bytes, want %d", st.Size(), capacity)
	}
	return a.Key, path
}

func detachOK(ctx context.Context, t *testing.T, p *peer, app *object.VirtualMachine, key int32, path string) {
	t.Helper()
	if f := taskFault(reconfigure(ctx, t, app, detachSpec(key, false))); f != "" {
		t.Fatalf("detach %d: %s", key, f)
	}
	if deviceByKey(ctx, t, app, key) != nil {
		t.Errorf("device %d still in the appliance's config", key)
	}
	if len(p.hotaddView().Attached) != 0 {
		t.Errorf("still attached: %+v", p.hotaddView().Attached)
	}
	if path != "" {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("device file after detach: %v", err)
		}
	}
}

// writeAreas writes stream bytes of seed at each area through the device
// file, fdatasyncs, and applies them to want.
func writeAreas(t *testing.T, path string, areas [][2]int64, seed uint64, want []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, a := range areas {
		b := make([]byte, a[1])
		fillStream(b, seed, a[0])
		if n, err := f.WriteAt(b, a[0]); err != nil || n != len(b) {
			t.Fatalf("pwrite [%d,+%d): %d, %v", a[0], a[1], n, err)
		}
		copy(want[a[0]:], b)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		t.Fatalf("fdatasync: %v", err)
	}
}

// readAll reads the whole device file.
func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// qemuCompare: qemu-img compare of the chain under desc with want (padded
// to whole sectors with zeros).
func qemuCompare(t *testing.T, qemu, desc string, want []byte) {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "want.raw")
	pad := make([]byte, (int64(len(want))+511)/512*512)
	copy(pad, want)
	if err := os.WriteFile(raw, pad, 0644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(qemu, "compare", "-f", "vmdk", "-F", "raw", desc, raw).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s: %v\n%s", desc, err, b)
	}
}

var haAreas = [][2]int64{{0, 4096}, {65536 + 512, 1000}, {1 << 20, 200000}, {haCap - 4096, 4096}}

// TestHotaddFlat: a disk without snapshot is written in its flat file.
func TestHotaddFlat(t *testing.T) {
	p := startHotadd(t, true)
	ctx := context.Background()
	c := p.client(ctx)
	app := findVM(ctx, t, c.Client, "vmferry-app")
	var m mo.VirtualMachine
	if err := app.Properties(ctx, app.Reference(), []string{"config.uuid"}, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.Uuid != p.ApplUUID {
		t.Errorf("appliance_uuid %s, config.uuid %s", p.ApplUUID, m.Config.Uuid)
	}
	file := p.vmDisks("web01")[0].Current
	if file != "[ds0] web01/web01.vmdk" {
		t.Fatalf("current %s", file)
	}
	before := p.diskHash("web01", 0)
	key, path := attachOK(ctx, t, p, c.Client, app, "web01", file, 1, haCap)
	if key != 2001 {
		t.Errorf("key %d, want 2001 (the first free after the appliance's own disk)", key)
	}
	// the directory lists exactly that device: not the appliance's own disk
	ents, err := os.ReadDir(p.HotaddDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("hotadd dir: %v %v", ents, err)
	}
	want := readAll(t, path)
	if sha(want) != before {
		t.Fatalf("device reads %s, /disk says %s", sha(want)[:12], before[:12])
	}
	// power-on of the owner is refused while attached (SOAP and /power)
	web01 := findVM(ctx, t, c.Client, "web01")
	tk, err := web01.PowerOn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f := taskFault(tk.Wait(ctx)); f != "FileLocked" {
		t.Errorf("power-on while attached: %q, want FileLocked", f)
	}
	if code := p.ctl("POST", "/power", map[string]string{"vm": "web01", "state": "on"}, nil); code != 409 {
		t.Errorf("/power on while attached: %d", code)
	}
	writeAreas(t, path, haAreas, 77, want)
	// a write across the end is cut there (a short write, as on a block
	// device); at the end ENOSPC. (os.File.WriteAt would retry the rest.)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	tail := make([]byte, 1024)
	fillStream(tail, 78, haCap-512)
	if n, err := syscall.Pwrite(int(f.Fd()), tail, haCap-512); n != 512 {
		t.Errorf("write across the end wrote %d, want 512 (%v)", n, err)
	}
	copy(want[haCap-512:], tail[:512])
	if _, err := syscall.Pwrite(int(f.Fd()), tail, haCap); err != syscall.ENOSPC {
		t.Errorf("write at the end: %v, want ENOSPC", err)
	}
	if got := readAll(t, path); !bytes.Equal(got, want) {
		t.Errorf("read back differs")
	}
	if p.diskHash("web01", 0) != sha(want) {
		t.Errorf("/disk of the owner does not show the writes")
	}
	detachOK(ctx, t, p, app, key, path)
	// an open handle of a removed device fails
	if _, err := f.ReadAt(tail, 0); err == nil {
		t.Errorf("read on a handle of a detached device succeeded")
	}
	f.Close()
	st := p.hotaddStats()
	if st["hotadd_attached"] != 1 || st["hotadd_detached"] != 1 || st["hotadd_destroyed"] != 0 {
		t.Errorf("stats %v", st)
	}
	var written int64 = 512
	for _, a := range haAreas {
		written += a[1]
	}
	if st["hotadd_bytes_written"] != written {
		t.Errorf("hotadd_bytes_written %d, want %d", st["hotadd_bytes_written"], written)
	}
	if p.diskHash("web01", 0) != sha(want) {
		t.Errorf("/disk after detach")
	}
	if qemu, err := exec.LookPath("qemu-img"); err == nil {
		qemuCompare(t, qemu, p.local(file), want)
	} else {
		t.Log("qemu-img missing: chain not compared by an independent reader")
	}
	// the disk is free again: the owner powers on
	if code := p.ctl("POST", "/power", map[string]string{"vm": "web01", "state": "on"}, nil); code != 200 {
		t.Errorf("/power on after detach: %d", code)
	}
}

// TestHotaddSnapshot: with a snapshot, writes become grains of the
// vmfsSparse delta; the frozen base is untouched; CBT records them.
func TestHotaddSnapshot(t *testing.T) {
	p := startHotadd(t, true)
	ctx := context.Background()
	c := p.client(ctx)
	app := findVM(ctx, t, c.Client, "vmferry-app")
	web01 := findVM(ctx, t, c.Client, "web01")
	s1 := createSnapshot(ctx, t, web01, "s1", false, false)
	base := p.layerHash("web01", 0, "s1")
	file := p.vmDisks("web01")[0].Current
	if file != "[ds0] web01/web01-000001.vmdk" {
		t.Fatalf("current %s", file)
	}
	// the frozen parent cannot be attached
	if f := taskFault(reconfigure(ctx, t, app, attachSpec("[ds0] web01/web01.vmdk", haCtrl, 1))); f != "InvalidDeviceSpec" {
		t.Errorf("attach of the frozen base: %q, want InvalidDeviceSpec", f)
	}
	deltaBefore, _ := os.Stat(p.local("[ds0] web01/web01-000001-delta.vmdk"))
	key, path := attachOK(ctx, t, p, c.Client, app, "web01", file, 1, haCap)
	want := readAll(t, path)
	if sha(want) != base {
		t.Fatalf("device does not read the chain")
	}
	// snapshot operations on the owner are refused while attached
	tk, err := web01.CreateSnapshot(ctx, "s2", "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if f := taskFault(tk.Wait(ctx)); f != "FileLocked" {
		t.Errorf("snapshot while attached: %q, want FileLocked", f)
	}
	writeAreas(t, path, haAreas, 91, want)
	deltaAfter, _ := os.Stat(p.local("[ds0] web01/web01-000001-delta.vmdk"))
	if deltaAfter.Size() <= deltaBefore.Size() {
		t.Errorf("delta did not grow: %d -> %d", deltaBefore.Size(), deltaAfter.Size())
	}
	detachOK(ctx, t, p, app, key, path)
	if p.layerHash("web01", 0, "s1") != base {
		t.Errorf("the frozen base changed")
	}
	if p.diskHash("web01", 0) != sha(want) {
		t.Errorf("/disk after detach")
	}
	if qemu, err := exec.LookPath("qemu-img"); err == nil {
		qemuCompare(t, qemu, p.local(file), want)
		if b, err := exec.Command(qemu, "check", "-f", "vmdk", p.local(file)).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check: %v\n%s", err, b)
		}
	} else {
		t.Log("qemu-img missing: chain not compared by an independent reader")
	}
	// CBT of the owner saw the writes (a snapshot after the detach)
	s2 := createSnapshot(ctx, t, web01, "s2", false, false)
	var snaps []struct {
		Moref string
		Disks []struct {
			ChangeID string `json:"change_id"`
		}
	}
	p.ctl("GET", "/snapshots?vm=web01", nil, &snaps)
	cid := ""
	for _, s := range snaps {
		if s.Moref == s1.Value {
			cid = s.Disks[0].ChangeID
		}
	}
	if cid == "" {
		t.Fatalf("no change id for s1: %+v", snaps)
	}
	exts, _, err := queryAll(ctx, t, c.Client, web01.Reference(), s2, 2000, cid, haCap)
	if err != nil {
		t.Fatal(err)
	}
	got := grainsOf(exts)
	for _, a := range haAreas {
		for g := a[0] / grainSize; g*grainSize < a[0]+a[1]; g++ {
			if !got[g] {
				t.Errorf("grain %d written through hot-add is not in CBT", g)
			}
		}
	}
}

// TestHotaddVMFS6: on a VMFS6 datastore the delta is the peer's seSparse
// stand-in; the device of a capacity that is no multiple of 512.
func TestHotaddVMFS6(t *testing.T) {
	p := startHotadd(t, true)
	ctx := context.Background()
	c := p.client(ctx)
	app := findVM(ctx, t, c.Client, "vmferry-app")
	db := findVM(ctx, t, c.Client, "db06")
	createSnapshot(ctx, t, db, "s1", false, false)
	file := p.vmDisks("db06")[0].Current
	if !strings.HasSuffix(file, "db06-000001.vmdk") {
		t.Fatalf("current %s", file)
	}
	key, path := attachOK(ctx, t, p, c.Client, app, "db06", file, 2, haCap6)
	want := readAll(t, path)
	if int64(len(want)) != haCap6 || sha(want) != p.diskHash("db06", 0) {
		t.Fatalf("device reads %d bytes", len(want))
	}
	writeAreas(t, path, [][2]int64{{7, 3}, {2 << 20, 70000}, {haCap6 - 1, 1}}, 5, want)
	if !bytes.Equal(readAll(t, path), want) {
		t.Errorf("read back differs")
	}
	detachOK(ctx, t, p, app, key, path)
	if p.diskHash("db06", 0) != sha(want) {
		t.Errorf("/disk after detach")
	}
	head := make([]byte, 4)
	if f, err := os.Open(p.local(strings.Replace(file, ".vmdk", "-sesparse.vmdk", 1))); err == nil {
		f.Read(head)
		f.Close()
	}
	if string(head) != "PSES" {
		t.Errorf("seSparse extent starts %q", head)
	}
}

// TestHotaddRefusals: each attach ESXi would refuse fails with its fault
// and changes nothing.
func TestHotaddRefusals(t *testing.T) {
	p := startHotadd(t, false)
	ctx := context.Background()
	c := p.client(ctx)
	app := findVM(ctx, t, c.Client, "vmferry-app")
	web01 := "[ds0] web01/web01.vmdk"
	for _, tc := range []struct {
		what  string
		spec  *types.VirtualDeviceConfigSpec
		fault string
	}{
		{"missing file", attachSpec("[ds0] web01/nope.vmdk", haCtrl, 1), "FileNotFound"},
		{"unknown datastore", attachSpec("[dsX] web01/web01.vmdk", haCtrl, 1), "FileNotFound"},
		{"owner powered on", attachSpec("[ds0] web02/web02.vmdk", haCtrl, 1), "FileLocked"},
		{"the appliance's own disk", attachSpec("[ds0] vmferry-app/vmferry-app.vmdk", haCtrl, 1), "FileLocked"},
		{"not a disk", attachSpec("[ds0] web01/web01.vmx", haCtrl, 1), "InvalidDeviceSpec"},
		{"foreign controller", attachSpec(web01, 1001, 1), "InvalidController"},
		{"unit taken", attachSpec(web01, haCtrl, 0), "InvalidDeviceSpec"},
		{"unit 7", attachSpec(web01, haCtrl, 7), "InvalidDeviceSpec"},
	} {
		if f := taskFault(reconfigure(ctx, t, app, tc.spec)); f != tc.fault {
			t.Errorf("%s: %q, want %s", tc.what, f, tc.fault)
		}
	}
	if n := len(p.hotaddView().Attached); n != 0 {
		t.Errorf("%d attached after refusals", n)
	}
	// attached once, a second attach (here or in the same task) is locked
	if f := taskFault(reconfigure(ctx, t, app, attachSpec(web01, haCtrl, 1))); f != "" {
		t.Fatalf("attach: %s", f)
	}
	if f := taskFault(reconfigure(ctx, t, app, attachSpec(web01, haCtrl, 2))); f != "FileLocked" {
		t.Errorf("second attach: %q, want FileLocked", f)
	}
	if f := taskFault(reconfigure(ctx, t, app, attachSpec(web01, haCtrl, 1))); f != "InvalidDeviceSpec" {
		t.Errorf("attach at a unit the first one holds: %q", f)
	}
	// detaching an unknown key
	if f := taskFault(reconfigure(ctx, t, app, detachSpec(2001, false), detachSpec(2001, false))); f != "InvalidDeviceSpec" {
		t.Errorf("double detach: %q", f)
	}
	if f := taskFault(reconfigure(ctx, t, app, detachSpec(2001, false))); f != "" {
		t.Errorf("detach: %s", f)
	}
	if f := taskFault(reconfigure(ctx, t, app, detachSpec(2001, false))); f != "InvalidDeviceSpec" {
		t.Errorf("detach of a detached key: %q", f)
	}
}

// TestHotaddFaults: attach fail / no_device, detach fail, count and clear.
func TestHotaddFaults(t *testing.T) {
	p := startHotadd(t, false)
	ctx := context.Background()
	c := p.client(ctx)
	app := findVM(ctx, t, c.Client, "vmferry-app")
	file := "[ds0] web01/web01.vmdk"
	p.fault(map[string]interface{}{"hotadd": map[string]interface{}{"attach": "fail", "count": 2}})
	for i := 0; i < 2; i++ {
		if f := taskFault(reconfigure(ctx, t, app, attachSpec(file, haCtrl, 1))); f != "GenericVmConfigFault" {
			t.Errorf("attach %d with the fault: %q", i, f)
		}
	}
	if n := len(p.hotaddView().Attached); n != 0 {
		t.Fatalf("a failed attach left %d attached", n)
	}
	p.fault(map[string]interface{}{"hotadd": map[string]interface{}{"attach": "no_device"}})
	if f := taskFault(reconfigure(ctx, t, app, attachSpec(file, haCtrl, 1))); f != "" {
		t.Fatalf("attach with no_device: %s", f)
	}
	v := p.hotaddView()
	if len(v.Attached) != 1 || v.Attached[0].Visible {
		t.Fatalf("no_device: %+v", v.Attached)
	}
	if p.HotaddDir != "" {
		if _, err := os.Stat(filepath.Join(p.HotaddDir, v.Attached[0].Device)); !os.IsNotExist(err) {
			t.Errorf("no_device: the device file exists (%v)", err)
		}
	}
	p.fault(map[string]interface{}{"hotadd": map[string]interface{}{"detach": "fail"}})
	var fv struct {
		Hotadd   map[string]hotaddSlot
		Injected map[string]int
	}
	p.ctl("GET", "/fault", nil, &fv)
	if fv.Hotadd["detach"].Kind != "fail" || fv.Hotadd["detach"].Count != 1 || fv.Injected["hotadd"] != 3 {
		t.Errorf("GET /fault: %+v", fv)
	}
	key := v.Attached[0].Key
	if f := taskFault(reconfigure(ctx, t, app, detachSpec(key, false))); f != "GenericVmConfigFault" {
		t.Errorf("detach with the fault: %q", f)
	}
	if len(p.hotaddView().Attached) != 1 || deviceByKey(ctx, t, app, key) == nil {
		t.Errorf("a failed detach detached")
	}
	detachOK(ctx, t, p, app, key, "")
	// clear empties the slots
	p.fault(map[string]interface{}{"hotadd": map[string]interface{}{"attach": "fail", "detach": "fail", "count": 5}})
	p.fault(map[string]interface{}{"clear": true})
	if f := taskFault(reconfigure(ctx, t, app, attachSpec(file, haCtrl, 1))); f != "" {
		t.Errorf("attach after clear: %s", f)
	}
	if code := p.ctl("POST", "/fault", map[string]interface{}{"hotadd": map[string]interface{}{"attach": "explode"}}, nil); code != 400 {
		t.Errorf("bad hotadd fault: %d", code)
	}
}

// TestHotaddDestroy: a detach with fileOperation=destroy deletes the file,
// counts it, and leaves the owner broken.
func TestHotaddDestroy(t *testing.T) {
	p := startHotadd(t, false)
	ctx := context.Background()
	c := p.client(ctx)
	app := findVM(ctx, t, c.Client, "vmferry-app")
	file := "[ds0] web01/web01.vmdk"
	if f := taskFault(reconfigure(ctx, t, app, attachSpec(file, haCtrl, 3))); f != "" {
		t.Fatalf("attach: %s", f)
	}
	key := p.hotaddView().Attached[0].Key
	if f := taskFault(reconfigure(ctx, t, app, detachSpec(key, true))); f != "" {
		t.Fatalf("destroy: %s", f)
	}
	for _, f := range []string{"web01/web01.vmdk", "web01/web01-flat.vmdk"} {
		if _, err := os.Stat(filepath.Join(p.Dir, "ds0", f)); !os.IsNotExist(err) {
			t.Errorf("%s after destroy: %v", f, err)
		}
	}
	if st := p.hotaddStats(); st["hotadd_destroyed"] != 1 || st["hotadd_detached"] != 1 {
		t.Errorf("stats %v", st)
	}
	if code := p.ctl("GET", "/disk?vm=web01&disk=0", nil, nil); code != 409 {
		t.Errorf("/disk of a destroyed disk: %d", code)
	}
	tk, err := findVM(ctx, t, c.Client, "web01").PowerOn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f := taskFault(tk.Wait(ctx)); f != "FileNotFound" {
		t.Errorf("power-on with a destroyed disk: %q", f)
	}
}

// TestHotaddNoMount: without a mount the peer still runs and says why;
// attaches succeed and no device appears.
func TestHotaddNoMount(t *testing.T) {
	os.Setenv("VMFERRY_PEER_HOTADD_NOMOUNT", "1")
	p := startHotadd(t, false)
	os.Unsetenv("VMFERRY_PEER_HOTADD_NOMOUNT")
	if p.HotaddDir != "" || !strings.Contains(p.HotaddErr, "VMFERRY_PEER_HOTADD_NOMOUNT") {
		t.Fatalf("hotadd_dir %q hotadd_error %q", p.HotaddDir, p.HotaddErr)
	}
	ctx := context.Background()
	c := p.client(ctx)
	app := findVM(ctx, t, c.Client, "vmferry-app")
	if f := taskFault(reconfigure(ctx, t, app, attachSpec("[ds0] web01/web01.vmdk", haCtrl, 1))); f != "" {
		t.Fatalf("attach: %s", f)
	}
	if v := p.hotaddView(); v.Mounted || len(v.Attached) != 1 || v.Attached[0].Visible {
		t.Errorf("/hotadd: %+v", v)
	}
}

// TestHotaddStaleMount: a peer killed with its mount in place leaves it
// stale; the next peer on that directory unmounts it and mounts afresh.
func TestHotaddStaleMount(t *testing.T) {
	dir := t.TempDir()
	fx := filepath.Join(t.TempDir(), "fixture.json")
	if err := os.WriteFile(fx, []byte(haFixTm), 0644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(peerBin, "--fixture", fx, "--dir", dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	var hello struct {
		HotaddDir string `json:"hotadd_dir"`
		HotaddErr string `json:"hotadd_error"`
	}
	json.Unmarshal([]byte(line), &hello)
	cmd.Process.Kill()
	cmd.Wait()
	if hello.HotaddDir == "" {
		t.Skipf("FUSE mount impossible here: %s", hello.HotaddErr)
	}
	if !isMounted(hello.HotaddDir) {
		t.Logf("the killed peer's mount went away by itself")
	}
	t.Cleanup(func() {
		// runs after the peer's SIGTERM (cleanups run last first): nothing stays mounted
		deadline := time.Now().Add(3 * time.Second)
		for isMounted(hello.HotaddDir) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if isMounted(hello.HotaddDir) {
			t.Errorf("%s still mounted after the peer exited", hello.HotaddDir)
		}
	})
	p := startPeer(t, haFixTm, "--dir", dir)
	if p.HotaddDir != hello.HotaddDir {
		t.Fatalf("second peer: hotadd_dir %q, error %q", p.HotaddDir, p.HotaddErr)
	}
	if _, err := os.ReadDir(p.HotaddDir); err != nil {
		t.Errorf("read the new mount: %v", err)
	}
}
