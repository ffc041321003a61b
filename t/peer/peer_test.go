package main

// End-to-end tests: each test starts the real peer binary (vcsim keeps
// global state, so one peer per process) and talks to it over HTTPS with
// govmomi's own client packages, and over the control endpoint.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var peerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmferry-peer-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	peerBin = filepath.Join(dir, "vmferry-peer")
	if bin := os.Getenv("VMFERRY_PEER_BIN"); bin != "" {
		peerBin = bin
	} else {
		cmd := exec.Command("go", "build", "-o", peerBin, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the peer:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const capacity0 = 50397184 // 769 grains minus a bit: not a multiple of 64 KiB or 1 MiB

const stdFixture = `{"datacenters":[{"name":"DC0","hosts":["H0","H1"],"datastores":["ds0"]}],
 "vms":[{"name":"web01","host":"H0","datastore":"ds0","power":"on","cpus":2,"memory_mb":1024,
         "nics":["VM Network"],"guest_id":"otherGuest64","hw_version":"vmx-13",
         "disks":[{"capacity":50397184,"fill":"random","seed":1,"allocated":0.25,"mode":"persistent"},
                  {"capacity":3000000,"fill":"zero","seed":2,"allocated":0.5,"mode":"independent_persistent"}]}]}`

type peer struct {
	t          *testing.T
	cmd        *exec.Cmd
	URL        string `json:"url"`
	Thumbprint string `json:"thumbprint"`
	ControlURL string `json:"control_url"`
	Dir        string `json:"dir"`
	HotaddDir  string `json:"hotadd_dir"`
	HotaddErr  string `json:"hotadd_error"`
	ApplUUID   string `json:"appliance_uuid"`
	stderr     bytes.Buffer
}

func startPeer(t *testing.T, fixture string, args ...string) *peer {
	t.Helper()
	fx := filepath.Join(t.TempDir(), "fixture.json")
	if err := os.WriteFile(fx, []byte(fixture), 0644); err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t}
	p.cmd = exec.Command(peerBin, append([]string{"--fixture", fx, "--dir", t.TempDir()}, args...)...)
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		p.cmd.Wait()
		t.Fatalf("peer did not start: %v\n%s", err, p.stderr.String())
	}
	if err := json.Unmarshal([]byte(line), p); err != nil {
		t.Fatalf("bad hello line %q: %v", line, err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		err := p.cmd.Wait()
		if err != nil {
			t.Errorf("peer exit: %v", err)
		}
		if t.Failed() {
			t.Logf("peer stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *peer) client(ctx context.Context) *govmomi.Client {
	p.t.Helper()
	u, _ := url.Parse(p.URL)
	u.User = url.UserPassword("user", "pass")
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

func (p *peer) ctl(method, path string, body interface{}, out interface{}) int {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.ControlURL+path, rd)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			p.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return res.StatusCode
}

func (p *peer) diskHash(vm string, disk int) string {
	var r struct{ Sha256 string }
	if code := p.ctl("GET", fmt.Sprintf("/disk?vm=%s&disk=%d", vm, disk), nil, &r); code != 200 {
		p.t.Fatalf("/disk: %d", code)
	}
	return r.Sha256
}

func (p *peer) write(body map[string]interface{}) {
	p.t.Helper()
	var r struct {
		OK    bool
		Bytes int64
	}
	if code := p.ctl("POST", "/write", body, &r); code != 200 || !r.OK {
		p.t.Fatalf("/write %v: %d", body, code)
	}
}

func (p *peer) fault(body map[string]interface{}) {
	p.t.Helper()
	if code := p.ctl("POST", "/fault", body, nil); code != 200 {
		p.t.Fatalf("/fault %v: %d", body, code)
	}
}

// folderClient is an HTTPS client carrying the SOAP session cookie.
func folderClient(c *govmomi.Client) *http.Client {
	jar := c.Client.Client.Jar
	return &http.Client{
		Jar:       jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: false},
	}
}

func (p *peer) folderURL(file string) string {
	u, _ := url.Parse(p.URL)
	return fmt.Sprintf("https://%s/folder/%s?dcPath=DC0&dsName=ds0", u.Host, file)
}

func get(t *testing.T, hc *http.Client, u string, rng string) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return res.StatusCode, data, err
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func findVM(ctx context.Context, t *testing.T, c *vim25.Client, name string) *object.VirtualMachine {
	t.Helper()
	f := find.NewFinder(c, true)
	dc, err := f.Datacenter(ctx, "DC0")
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	vm, err := f.VirtualMachine(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func vmDisks(ctx context.Context, t *testing.T, vm *object.VirtualMachine) []*types.VirtualDisk {
	t.Helper()
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.hardware.device"}, &m); err != nil {
		t.Fatal(err)
	}
	return diskDevices(m.Config.Hardware.Device)
}

func snapDisks(ctx context.Context, t *testing.T, c *vim25.Client, snap types.ManagedObjectReference) []*types.VirtualDisk {
	t.Helper()
	var m mo.VirtualMachineSnapshot
	if err := property.DefaultCollector(c).RetrieveOne(ctx, snap, []string{"config.hardware.device"}, &m); err != nil {
		t.Fatal(err)
	}
	return diskDevices(m.Config.Hardware.Device)
}

func createSnapshot(ctx context.Context, t *testing.T, vm *object.VirtualMachine, name string, memory, quiesce bool) types.ManagedObjectReference {
	t.Helper()
	task, err := vm.CreateSnapshot(ctx, name, "test", memory, quiesce)
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info.Result.(types.ManagedObjectReference)
}

func removeSnapshot(ctx context.Context, t *testing.T, c *vim25.Client, snap types.ManagedObjectReference) {
	t.Helper()
	res, err := methods.RemoveSnapshot_Task(ctx, c, &types.RemoveSnapshot_Task{This: snap, RemoveChildren: false})
	if err != nil {
		t.Fatal(err)
	}
	if err := object.NewTask(c, res.Returnval).Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func enableCBT(ctx context.Context, t *testing.T, vm *object.VirtualMachine) {
	t.Helper()
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: types.NewBool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// queryAll pages through QueryChangedDiskAreas and returns the extents and
// the number of calls made.
func queryAll(ctx context.Context, t *testing.T, c *vim25.Client, vm, snap types.ManagedObjectReference, key int32, changeID string, capacity int64) ([]types.DiskChangeExtent, int, error) {
	var out []types.DiskChangeExtent
	calls := 0
	for off := int64(0); off < capacity; {
		res, err := methods.QueryChangedDiskAreas(ctx, c, &types.QueryChangedDiskAreas{
			This: vm, Snapshot: &snap, DeviceKey: key, StartOffset: off, ChangeId: changeID})
		if err != nil {
			return nil, calls, err
		}
		calls++
		info := res.Returnval
		if info.StartOffset != off || info.Length <= 0 {
			t.Fatalf("reply covers [%d,+%d), asked from %d", info.StartOffset, info.Length, off)
		}
		for _, e := range info.ChangedArea {
			if e.Start < off || e.Start+e.Length > off+info.Length {
				t.Fatalf("extent %+v outside reply range [%d,+%d)", e, off, info.Length)
			}
		}
		out = append(out, info.ChangedArea...)
		off += info.Length
	}
	return out, calls, nil
}

// grainsOf turns extents into a set of 64 KiB grains.
func grainsOf(exts []types.DiskChangeExtent) map[int64]bool {
	g := map[int64]bool{}
	for _, e := range exts {
		for o := e.Start / grainSize; o*grainSize < e.Start+e.Length; o++ {
			g[o] = true
		}
	}
	return g
}

func isFault(err error, kind string) bool {
	if soap.IsSoapFault(err) {
		return strings.Contains(fmt.Sprintf("%T", soap.ToSoapFault(err).VimFault()), kind)
	}
	return false
}

// --- tests -------------------------------------------------------------------

func TestFixtureAndFiles(t *testing.T) {
	p := startPeer(t, stdFixture)
	dir := filepath.Join(p.Dir, "ds0", "web01")
	for _, f := range []struct {
		name string
		size int64
	}{{"web01-flat.vmdk", capacity0}, {"web01_1-flat.vmdk", 3000000}} {
		st, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != f.size {
			t.Errorf("%s: size %d, want %d", f.name, st.Size(), f.size)
		}
		blocks := st.Sys().(*syscall.Stat_t).Blocks * 512
		if blocks >= f.size/2 {
			t.Errorf("%s: %d bytes allocated of %d, not sparse", f.name, blocks, f.size)
		}
	}
	desc, err := os.ReadFile(filepath.Join(dir, "web01.vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`createType="vmfs"`, `RW 98432 VMFS "web01-flat.vmdk"`, "ddb.uuid", "ddb.adapterType"} {
		if !strings.Contains(string(desc), want) {
			t.Errorf("descriptor lacks %q:\n%s", want, desc)
		}
	}
	// fixture content: allocated grains hold stream bytes of the seed
	flat, _ := os.ReadFile(filepath.Join(dir, "web01-flat.vmdk"))
	nonzero := 0
	for g := int64(0); g*grainSize < capacity0; g++ {
		chunk := flat[g*grainSize : min64((g+1)*grainSize, capacity0)]
		if bytes.Count(chunk, []byte{0}) == len(chunk) {
			continue
		}
		nonzero++
		want := make([]byte, len(chunk))
		fillStream(want, 1, g*grainSize)
		if !bytes.Equal(chunk, want) {
			t.Fatalf("grain %d does not hold the seed's stream bytes", g)
		}
	}
	grains := (capacity0 + grainSize - 1) / grainSize
	if want := int(0.25*float64(grains) + 0.5); nonzero != want {
		t.Errorf("%d allocated grains, want %d", nonzero, want)
	}
	if got, want := p.diskHash("web01", 0), sha(flat); got != want {
		t.Errorf("/disk hash %s, file hash %s", got, want)
	}

	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "web01")
	disks := vmDisks(ctx, t, vm)
	if len(disks) != 2 {
		t.Fatalf("%d disks", len(disks))
	}
	b := disks[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if b.FileName != "[ds0] web01/web01.vmdk" || b.DiskMode != "persistent" || b.Uuid == "" || disks[0].CapacityInBytes != capacity0 {
		t.Errorf("disk 0 backing %+v capacity %d", b, disks[0].CapacityInBytes)
	}
	if *disks[0].UnitNumber != 0 || *disks[1].UnitNumber != 1 {
		t.Errorf("unit numbers %d %d", *disks[0].UnitNumber, *disks[1].UnitNumber)
	}
	if m := disks[1].Backing.(*types.VirtualDiskFlatVer2BackingInfo).DiskMode; m != "independent_persistent" {
		t.Errorf("disk 1 mode %s", m)
	}
	var vmo mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"runtime.powerState", "config.hardware.numCPU", "config.hardware.memoryMB", "config.version", "network"}, &vmo); err != nil {
		t.Fatal(err)
	}
	if vmo.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || vmo.Config.Hardware.NumCPU != 2 || vmo.Config.Hardware.MemoryMB != 1024 || vmo.Config.Version != "vmx-13" || len(vmo.Network) != 1 {
		t.Errorf("vm properties: %+v %+v %v", vmo.Runtime.PowerState, vmo.Config.Hardware, vmo.Network)
	}
	// the datastore is shared by both hosts
	f := find.NewFinder(c.Client, true)
	ds, err := f.Datastore(ctx, "/DC0/datastore/ds0")
	if err != nil {
		t.Fatal(err)
	}
	var dso mo.Datastore
	if err := ds.Properties(ctx, ds.Reference(), []string{"host", "summary"}, &dso); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ds.Reference().Value, "/") || dso.Summary.Url != filepath.Join(p.Dir, "ds0") {
		t.Errorf("datastore moref %s url %s", ds.Reference().Value, dso.Summary.Url)
	}
	if label := disks[0].DeviceInfo.GetDescription().Label; label != "Hard disk 1" {
		t.Errorf("disk label %q", label)
	}
	if len(dso.Host) != 2 || dso.Summary.Capacity <= 0 || dso.Summary.FreeSpace <= 0 {
		t.Errorf("datastore: %d mounts, summary %+v", len(dso.Host), dso.Summary)
	}
	hosts, err := f.HostSystemList(ctx, "/DC0/host/*")
	if err != nil || len(hosts) != 2 {
		t.Errorf("hosts: %v %v", hosts, err)
	}
	var vms []struct{ Name string }
	p.ctl("GET", "/vms", nil, &vms)
	if len(vms) != 1 || vms[0].Name != "web01" {
		t.Errorf("/vms: %+v", vms)
	}
}

func TestThumbprintAndLogin(t *testing.T) {
	p := startPeer(t, `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":[]}`, "--user", "admin", "--password", "s3cret")
	u, _ := url.Parse(p.URL)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	conn.Close()
	var parts []string
	for _, b := range sum {
		parts = append(parts, fmt.Sprintf("%02X", b))
	}
	if got := strings.Join(parts, ":"); got != p.Thumbprint {
		t.Errorf("thumbprint %s, served cert %s", p.Thumbprint, got)
	}
	if u.Hostname() != "127.0.0.1" {
		t.Errorf("url host %s", u.Hostname())
	}

	ctx := context.Background()
	for _, creds := range []*url.Userinfo{url.UserPassword("admin", "wrong"), url.UserPassword("user", "pass")} {
		u.User = creds
		_, err := govmomi.NewClient(ctx, u, true)
		if err == nil || !isFault(err, "InvalidLogin") {
			t.Errorf("login %v: %v, want InvalidLogin", creds, err)
		}
	}
	u.User = url.UserPassword("admin", "s3cret")
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		t.Fatal(err)
	}
	// empty inventory: a target-only vCenter
	f := find.NewFinder(c.Client, true)
	dc, err := f.Datacenter(ctx, "DC0")
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	if vms, _ := f.VirtualMachineList(ctx, "*"); len(vms) != 0 {
		t.Errorf("vms: %v", vms)
	}
	// no session: SOAP calls other than login are refused
	sc := soap.NewClient(u, true)
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = methods.RetrieveProperties(ctx, vc, &types.RetrieveProperties{This: vc.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{}})
	if !isFault(err, "NotAuthenticated") {
		t.Errorf("sessionless RetrieveProperties: %v", err)
	}
}

func TestRangeGet(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	c := p.client(ctx)
	hc := folderClient(c)
	flat, _ := os.ReadFile(filepath.Join(p.Dir, "ds0", "web01", "web01-flat.vmdk"))
	u := p.folderURL("web01/web01-flat.vmdk")
	p.ctl("POST", "/stats/reset", nil, nil)
	var total int64
	for _, r := range [][2]int64{{0, 65535}, {65536 * 3, 65536*3 + 1048575}, {capacity0 - 1000, capacity0 - 1}, {12345, 12345}} {
		code, data, err := get(t, hc, u, fmt.Sprintf("bytes=%d-%d", r[0], r[1]))
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusPartialContent || !bytes.Equal(data, flat[r[0]:r[1]+1]) {
			t.Errorf("range %v: status %d, %d bytes, equal=%v", r, code, len(data), bytes.Equal(data, flat[r[0]:r[1]+1]))
		}
		total += r[1] - r[0] + 1
	}
	code, data, err := get(t, hc, u, "")
	if err != nil || code != 200 || !bytes.Equal(data, flat) {
		t.Errorf("whole GET: %d %d %v", code, len(data), err)
	}
	total += capacity0
	var st struct {
		Files    map[string]int64
		Requests map[string]int64
	}
	p.ctl("GET", "/stats", nil, &st)
	if st.Files["ds0/web01/web01-flat.vmdk"] != total {
		t.Errorf("stats: %v, want %d", st.Files, total)
	}
	// descriptor is readable and names the extent
	code, data, _ = get(t, hc, p.folderURL("web01/web01.vmdk"), "")
	if ext, _, ok := parseExtent(string(data)); code != 200 || !ok || ext != "web01-flat.vmdk" {
		t.Errorf("descriptor GET: %d %q", code, ext)
	}
	// no cookie, no data
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if code, _, _ := get(t, plain, u, "bytes=0-9"); code != http.StatusUnauthorized {
		t.Errorf("cookieless GET: %d", code)
	}
	// PUT a file, read it back
	body := bytes.Repeat([]byte("vmferry"), 1000)
	req, _ := http.NewRequest("PUT", p.folderURL("up/x.bin"), bytes.NewReader(body))
	res, err := hc.Do(req)
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %v %v", res, err)
	}
	res.Body.Close()
	if code, data, _ := get(t, hc, p.folderURL("up/x.bin"), ""); code != 200 || !bytes.Equal(data, body) {
		t.Errorf("GET after PUT: %d", code)
	}
}

func TestSnapshotFreezeAndConsolidate(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	c := p.client(ctx)
	hc := folderClient(c)
	vm := findVM(ctx, t, c.Client, "web01")
	before := p.diskHash("web01", 0)
	indepBefore := p.diskHash("web01", 1)

	snap := createSnapshot(ctx, t, vm, "s1", false, true)
	sd := snapDisks(ctx, t, c.Client, snap)
	if fn := sd[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName; fn != "[ds0] web01/web01.vmdk" {
		t.Errorf("snapshot disk 0 names %s", fn)
	}
	cur := vmDisks(ctx, t, vm)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if cur.FileName != "[ds0] web01/web01-000001.vmdk" || cur.Parent == nil || cur.Parent.FileName != "[ds0] web01/web01.vmdk" {
		t.Errorf("current backing %s parent %+v", cur.FileName, cur.Parent)
	}
	desc, _ := os.ReadFile(filepath.Join(p.Dir, "ds0", "web01", "web01-000001.vmdk"))
	if !strings.Contains(string(desc), `parentFileNameHint="web01.vmdk"`) {
		t.Errorf("delta descriptor:\n%s", desc)
	}
	// the independent disk is not part of the snapshot
	if fn := vmDisks(ctx, t, vm)[1].Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName; fn != "[ds0] web01/web01_1.vmdk" {
		t.Errorf("independent disk moved to %s", fn)
	}

	_, base1, err := get(t, hc, p.folderURL("web01/web01-flat.vmdk"), "")
	if err != nil {
		t.Fatal(err)
	}
	if sha(base1) != before {
		t.Errorf("base differs from pre-snapshot content")
	}
	// guest writes: unaligned, crossing grains, and a share of the disk
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "percent": 10, "seed": 8})
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 100000, "length": 200000, "seed": 7})
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": capacity0 - 10, "length": 10, "seed": 9})
	p.write(map[string]interface{}{"vm": "web01", "disk": 1, "offset": 0, "length": 4096, "seed": 9})

	_, base2, _ := get(t, hc, p.folderURL("web01/web01-flat.vmdk"), "")
	if sha(base2) != before {
		t.Errorf("base flat file changed after guest writes")
	}
	after := p.diskHash("web01", 0)
	if after == before {
		t.Errorf("/disk hash unchanged by writes")
	}
	var sr struct{ Sha256 string }
	p.ctl("GET", "/disk?vm=web01&disk=0&snapshot=s1", nil, &sr)
	if sr.Sha256 != before {
		t.Errorf("snapshot content hash changed")
	}
	if p.diskHash("web01", 1) == indepBefore {
		t.Errorf("independent disk write not visible")
	}

	// expected current content, computed here from the stream rule
	want := append([]byte(nil), base1...)
	apply := func(off, n int64, seed uint64) { fillStream(want[off:off+n], seed, off) }
	apply(100000, 200000, 7)
	apply(capacity0-10, 10, 9)
	var snaps []struct {
		Name    string
		Quiesce bool
		Memory  bool
		Moref   string
	}
	p.ctl("GET", "/snapshots?vm=web01", nil, &snaps)
	if len(snaps) != 1 || snaps[0].Name != "s1" || !snaps[0].Quiesce || snaps[0].Memory || snaps[0].Moref != snap.Value {
		t.Errorf("/snapshots: %+v", snaps)
	}

	removeSnapshot(ctx, t, c.Client, snap)
	if got := p.diskHash("web01", 0); got != after {
		t.Errorf("consolidation changed content: %s != %s", got, after)
	}
	_, base3, _ := get(t, hc, p.folderURL("web01/web01-flat.vmdk"), "")
	if sha(base3) != after {
		t.Errorf("base flat file is not base+delta after consolidation")
	}
	// check the explicit writes landed where the stream rule says
	if !bytes.Equal(base3[100000:300000], want[100000:300000]) || !bytes.Equal(base3[capacity0-10:], want[capacity0-10:]) {
		t.Errorf("written bytes differ from the stream rule")
	}
	if fn := vmDisks(ctx, t, vm)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName; fn != "[ds0] web01/web01.vmdk" {
		t.Errorf("backing after consolidation: %s", fn)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, "ds0", "web01", "web01-000001.vmdk")); !os.IsNotExist(err) {
		t.Errorf("delta descriptor left behind: %v", err)
	}
	var m mo.VirtualMachine
	vm.Properties(ctx, vm.Reference(), []string{"snapshot"}, &m)
	if m.Snapshot != nil {
		t.Errorf("snapshot property still set: %+v", m.Snapshot)
	}
}

// A rolling chain of snapshots, as replication keeps its restore points:
// each round writes, makes a snapshot and removes the oldest, sometimes
// asking for a removal twice (a client that restarted).  vcsim removes a
// snapshot's files by the layoutEx keys it noted at its creation but
// renumbers layoutEx.file on every storage refresh, so such a key could by
// then name a disk's flat or delta file: no removal may take a disk file
// with it, and the content stays the guest's.
func TestSnapshotRollingRemovalKeepsDisks(t *testing.T) {
	p := startPeer(t, `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"roll","host":"H0","power":"on","disks":[
   {"capacity":2101248,"seed":3,"allocated":0.5},{"capacity":1051136,"seed":4},{"capacity":3148288,"seed":5,"allocated":0.3}]}]}`)
	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "roll")
	dir := filepath.Join(p.Dir, "ds0", "roll")
	var snaps []types.ManagedObjectReference
	for i := 1; i <= 12; i++ {
		for d := 0; d < 3; d++ {
			p.write(map[string]interface{}{"vm": "roll", "disk": d, "percent": 3, "seed": 10*i + d})
		}
		snaps = append(snaps, createSnapshot(ctx, t, vm, fmt.Sprintf("rp%d", i), false, false))
		if len(snaps) <= 2 {
			continue
		}
		var want [3]string
		for d := range want {
			want[d] = p.diskHash("roll", d)
		}
		removeSnapshot(ctx, t, c.Client, snaps[0])
		if i%3 == 0 {
			// asked again: the snapshot is gone, nothing else changes
			res, err := methods.RemoveSnapshot_Task(ctx, c.Client, &types.RemoveSnapshot_Task{This: snaps[0]})
			if err == nil {
				object.NewTask(c.Client, res.Returnval).Wait(ctx)
			}
		}
		snaps = snaps[1:]
		for _, f := range []string{"roll-flat.vmdk", "roll_1-flat.vmdk", "roll_2-flat.vmdk", "roll.vmdk", "roll_1.vmdk", "roll_2.vmdk"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Fatalf("round %d: removing a snapshot took %s with it: %v", i, f, err)
			}
		}
		for d := range want {
			if got := p.diskHash("roll", d); got != want[d] {
				t.Fatalf("round %d: disk %d changed by a snapshot removal", i, d)
			}
		}
	}
}

func TestSnapshotRevertNestedMemory(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "web01")
	h0 := p.diskHash("web01", 0)
	s1 := createSnapshot(ctx, t, vm, "s1", true, false)
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 0, "length": 70000, "seed": 3})
	h1 := p.diskHash("web01", 0)
	s2 := createSnapshot(ctx, t, vm, "s2", false, false)
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 1 << 20, "length": 5, "seed": 4})
	h2 := p.diskHash("web01", 0)
	if h0 == h1 || h1 == h2 {
		t.Fatal("writes did not change content")
	}
	if fn := snapDisks(ctx, t, c.Client, s2)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName; fn != "[ds0] web01/web01-000001.vmdk" {
		t.Errorf("s2 disk names %s", fn)
	}
	var snaps []struct {
		Name     string
		Memory   bool
		VmsnSize int64 `json:"vmsn_size"`
	}
	p.ctl("GET", "/snapshots?vm=web01", nil, &snaps)
	if len(snaps) != 2 || !snaps[0].Memory || snaps[0].VmsnSize == 0 {
		t.Errorf("/snapshots: %+v", snaps)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, "ds0", "web01", "web01-Snapshot1.vmsn")); err != nil {
		t.Errorf("vmsn: %v", err)
	}
	// revert to s2 drops the write made after it
	res, err := methods.RevertToSnapshot_Task(ctx, c.Client, &types.RevertToSnapshot_Task{This: s2})
	if err != nil {
		t.Fatal(err)
	}
	if err := object.NewTask(c.Client, res.Returnval).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.diskHash("web01", 0); got != h1 {
		t.Errorf("after revert to s2: content != s2 content")
	}
	// remove s1 (older): its delta folds into the base, s2 still intact
	removeSnapshot(ctx, t, c.Client, s1)
	if got := p.diskHash("web01", 0); got != h1 {
		t.Errorf("after removing s1: content changed")
	}
	if fn := snapDisks(ctx, t, c.Client, s2)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName; fn != "[ds0] web01/web01.vmdk" {
		t.Errorf("s2 now names %s, want the base", fn)
	}
	hc := folderClient(c)
	_, base, _ := get(t, hc, p.folderURL("web01/web01-flat.vmdk"), "")
	if sha(base) != h1 {
		t.Errorf("base is not s2's content")
	}
	// remove all: back to a single flat file
	task, err := vm.RemoveAllSnapshot(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.diskHash("web01", 0); got != h1 {
		t.Errorf("after remove all: content changed")
	}
	if fn := vmDisks(ctx, t, vm)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName; fn != "[ds0] web01/web01.vmdk" {
		t.Errorf("backing after remove all: %s", fn)
	}
}

func TestChangedBlockTracking(t *testing.T) {
	p := startPeer(t, stdFixture, "--cbt-max-extents", "3")
	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "web01")
	vmRef := vm.Reference()

	// without CBT: FileFault
	s0 := createSnapshot(ctx, t, vm, "nocbt", false, false)
	if _, _, err := queryAll(ctx, t, c.Client, vmRef, s0, 2000, "*", capacity0); !isFault(err, "FileFault") {
		t.Errorf("query without CBT: %v", err)
	}
	removeSnapshot(ctx, t, c.Client, s0)

	enableCBT(ctx, t, vm)
	var vmo mo.VirtualMachine
	vm.Properties(ctx, vmRef, []string{"config.changeTrackingEnabled"}, &vmo)
	if vmo.Config.ChangeTrackingEnabled == nil || !*vmo.Config.ChangeTrackingEnabled {
		t.Fatal("changeTrackingEnabled not set")
	}
	s1 := createSnapshot(ctx, t, vm, "s1", false, false)
	cid1 := snapDisks(ctx, t, c.Client, s1)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId
	if !strings.HasPrefix(cid1, "52 ") || !strings.Contains(cid1, "/") {
		t.Fatalf("changeId %q", cid1)
	}

	// "*": the allocated grains, paged 3 extents at a time
	all, calls, err := queryAll(ctx, t, c.Client, vmRef, s1, 2000, "*", capacity0)
	if err != nil {
		t.Fatal(err)
	}
	flat, _ := os.ReadFile(filepath.Join(p.Dir, "ds0", "web01", "web01-flat.vmdk"))
	want := map[int64]bool{}
	for g := int64(0); g*grainSize < capacity0; g++ {
		chunk := flat[g*grainSize : min64((g+1)*grainSize, capacity0)]
		if bytes.Count(chunk, []byte{0}) != len(chunk) {
			want[g] = true
		}
	}
	got := grainsOf(all)
	if len(got) != len(want) {
		t.Errorf("* reported %d grains, %d allocated", len(got), len(want))
	}
	for g := range want {
		if !got[g] {
			t.Errorf("allocated grain %d not reported", g)
			break
		}
	}
	if calls < 2 || len(all) > 3*calls {
		t.Errorf("%d extents in %d calls with max 3", len(all), calls)
	}
	for _, e := range all {
		if e.Start+e.Length > capacity0 {
			t.Errorf("extent %+v past the end", e)
		}
	}

	// incremental: exactly the grains written between s1 and s2
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 10, "length": 5, "seed": 1})                          // grain 0
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 5*grainSize - 1, "length": 2, "seed": 1})             // grains 4,5
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": 100 * grainSize, "length": 3 * grainSize, "seed": 1}) // 100..102
	p.write(map[string]interface{}{"vm": "web01", "disk": 0, "offset": capacity0 - 1, "length": 1, "seed": 1})               // last
	s2 := createSnapshot(ctx, t, vm, "s2", false, false)
	inc, _, err := queryAll(ctx, t, c.Client, vmRef, s2, 2000, cid1, capacity0)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(capacity0-1) / grainSize
	wantInc := map[int64]bool{0: true, 4: true, 5: true, 100: true, 101: true, 102: true, last: true}
	gotInc := grainsOf(inc)
	if fmt.Sprint(gotInc) != fmt.Sprint(wantInc) {
		t.Errorf("incremental grains %v, want %v (extents %+v)", gotInc, wantInc, inc)
	}
	if len(inc) != 4 {
		t.Errorf("extents not coalesced: %+v", inc)
	}
	if e := inc[len(inc)-1]; e.Start+e.Length != capacity0 {
		t.Errorf("last extent %+v should end at the disk end", e)
	}
	// s1 removed: its change id stays usable against s2
	removeSnapshot(ctx, t, c.Client, s1)
	if inc2, _, err := queryAll(ctx, t, c.Client, vmRef, s2, 2000, cid1, capacity0); err != nil || len(inc2) != len(inc) {
		t.Errorf("after removing s1: %v %v", inc2, err)
	}
	// same change id as the snapshot: nothing changed
	cid2 := snapDisks(ctx, t, c.Client, s2)[0].Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId
	if none, _, err := queryAll(ctx, t, c.Client, vmRef, s2, 2000, cid2, capacity0); err != nil || len(none) != 0 {
		t.Errorf("query at own change id: %v %v", none, err)
	}
	// unknown / malformed change ids
	for _, bad := range []string{"52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1", "garbage", strings.Split(cid2, "/")[0] + "/999"} {
		if _, _, err := queryAll(ctx, t, c.Client, vmRef, s2, 2000, bad, capacity0); !isFault(err, "FileFault") {
			t.Errorf("change id %q: %v, want FileFault", bad, err)
		}
	}
	// CBT reset: old change ids fail, a new snapshot works again
	p.fault(map[string]interface{}{"cbt_reset": map[string]interface{}{"vm": "web01", "disk": 0}})
	s3 := createSnapshot(ctx, t, vm, "s3", false, false)
	if _, _, err := queryAll(ctx, t, c.Client, vmRef, s3, 2000, cid2, capacity0); !isFault(err, "FileFault") {
		t.Errorf("pre-reset change id: %v, want FileFault", err)
	}
	if _, _, err := queryAll(ctx, t, c.Client, vmRef, s2, 2000, "*", capacity0); !isFault(err, "FileFault") {
		t.Errorf("pre-reset snapshot: %v, want FileFault", err)
	}
	if star, _, err := queryAll(ctx, t, c.Client, vmRef, s3, 2000, "*", capacity0); err != nil || len(grainsOf(star)) < len(want) {
		t.Errorf("* after reset: %d grains, %v", len(grainsOf(star)), err)
	}
	// independent disks are not in snapshots and have no change id
	if _, _, err := queryAll(ctx, t, c.Client, vmRef, s3, 2001, "*", 3000000); !isFault(err, "FileFault") {
		t.Errorf("independent disk: %v", err)
	}
}

// The bytes of /folder GETs answered at once: a "GET /folder" delay holds
// three reads together, and folder_get_owed_max is their sum; a "*"
// delay (SOAP methods) holds no read.
func TestFolderGetOwed(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	hc := folderClient(p.client(ctx))
	u := p.folderURL("web01/web01-flat.vmdk")
	stats := func() int64 {
		var st struct{ Requests map[string]int64 }
		p.ctl("GET", "/stats", nil, &st)
		return st.Requests["folder_get_owed_max"]
	}
	p.fault(map[string]interface{}{"delay": map[string]interface{}{"method": "*", "ms": 400}})
	t0 := time.Now()
	if code, _, err := get(t, hc, u, "bytes=0-9"); err != nil || code != http.StatusPartialContent {
		t.Fatalf("GET: %d %v", code, err)
	}
	if d := time.Since(t0); d > 300*time.Millisecond {
		t.Errorf("a \"*\" delay held a /folder GET for %v", d)
	}
	p.fault(map[string]interface{}{"delay": map[string]interface{}{"method": "GET /folder", "ms": 300}})
	p.ctl("POST", "/stats/reset", nil, nil)
	var wg sync.WaitGroup
	for _, r := range [][2]int64{{0, 99}, {4096, 5095}, {65536, 131071}} {
		wg.Add(1)
		go func(r [2]int64) {
			defer wg.Done()
			if code, data, err := get(t, hc, u, fmt.Sprintf("bytes=%d-%d", r[0], r[1])); err != nil ||
				code != http.StatusPartialContent || int64(len(data)) != r[1]-r[0]+1 {
				t.Errorf("range %v: %d, %d bytes, %v", r, code, len(data), err)
			}
		}(r)
	}
	wg.Wait()
	if got := stats(); got != 100+1000+65536 {
		t.Errorf("folder_get_owed_max %d, want %d", got, 100+1000+65536)
	}
	p.fault(map[string]interface{}{"clear": true})
	p.ctl("POST", "/stats/reset", nil, nil)
	if got := stats(); got != 0 {
		t.Errorf("folder_get_owed_max %d after a reset with nothing answered", got)
	}
}

func TestFaults(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	c := p.client(ctx)
	hc := folderClient(c)
	u := p.folderURL("web01/web01-flat.vmdk")

	// 503 on every /folder request, /sdk unaffected
	p.fault(map[string]interface{}{"http_error": map[string]interface{}{"status": 503, "fraction": 1.0, "path": "/folder"}})
	if code, _, _ := get(t, hc, u, "bytes=0-9"); code != 503 {
		t.Errorf("status %d, want 503", code)
	}
	findVM(ctx, t, c.Client, "web01")
	// a seeded fraction is repeatable
	count := func() int {
		p.fault(map[string]interface{}{"seed": 42, "http_error": map[string]interface{}{"status": 503, "fraction": 0.3, "path": "*"}})
		n := 0
		for i := 0; i < 100; i++ {
			if code, _, _ := get(t, hc, u, "bytes=0-9"); code == 503 {
				n++
			}
		}
		return n
	}
	n1, n2 := count(), count()
	if n1 != n2 || n1 < 10 || n1 > 50 {
		t.Errorf("503 counts %d and %d for the same seed", n1, n2)
	}
	p.fault(map[string]interface{}{"clear": true})
	if code, _, _ := get(t, hc, u, "bytes=0-9"); code != 206 {
		t.Errorf("after clear: %d", code)
	}

	// dropped connection mid-body
	p.fault(map[string]interface{}{"drop": map[string]interface{}{"fraction": 1.0}})
	_, data, err := get(t, hc, u, "bytes=0-1048575")
	if err == nil || len(data) >= 1048576 {
		t.Errorf("drop: err=%v, %d bytes", err, len(data))
	}
	p.fault(map[string]interface{}{"drop": map[string]interface{}{"fraction": 0}})
	if code, data, err := get(t, hc, u, "bytes=0-1048575"); code != 206 || len(data) != 1048576 || err != nil {
		t.Errorf("after drop off: %d %d %v", code, len(data), err)
	}

	// an upload cut in the middle: no answer, nothing written; GETs are
	// left alone by a PUT drop
	body := bytes.Repeat([]byte("vmferry"), 100000)
	put := func() (*http.Response, error) {
		req, _ := http.NewRequest("PUT", p.folderURL("up/cut.bin"), bytes.NewReader(body))
		return hc.Do(req)
	}
	p.fault(map[string]interface{}{"drop": map[string]interface{}{"count": 1, "method": "PUT", "after": 1000}})
	if code, _, err := get(t, hc, u, "bytes=0-1048575"); code != 206 || err != nil {
		t.Errorf("GET during a PUT drop: %d %v", code, err)
	}
	if res, err := put(); err == nil {
		res.Body.Close()
		t.Errorf("cut PUT answered %d", res.StatusCode)
	}
	if code, _, _ := get(t, hc, p.folderURL("up/cut.bin"), ""); code != 404 {
		t.Errorf("a cut PUT left a file: %d", code)
	}
	if res, err := put(); err != nil || res.StatusCode != http.StatusCreated {
		t.Errorf("PUT after the drop: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	p.fault(map[string]interface{}{"clear": true})

	// delay for one method
	p.fault(map[string]interface{}{"delay": map[string]interface{}{"method": "CreateSnapshot_Task", "ms": 700}})
	vm := findVM(ctx, t, c.Client, "web01")
	t0 := time.Now()
	createSnapshot(ctx, t, vm, "slow", false, false)
	if d := time.Since(t0); d < 700*time.Millisecond {
		t.Errorf("CreateSnapshot took %v", d)
	}
	p.fault(map[string]interface{}{"clear": true})

	// session expiry: SOAP gets NotAuthenticated, /folder 401, re-login works
	p.fault(map[string]interface{}{"session_expiry_s": 1})
	time.Sleep(1200 * time.Millisecond)
	_, err = find.NewFinder(c.Client, true).Datacenter(ctx, "DC0")
	if !isFault(err, "NotAuthenticated") {
		t.Errorf("expired session: %v", err)
	}
	if code, _, _ := get(t, hc, u, "bytes=0-9"); code != 401 {
		t.Errorf("expired /folder: %d", code)
	}
	if err := c.Login(ctx, url.UserPassword("user", "pass")); err != nil {
		t.Errorf("re-login: %v", err)
	}
	if code, _, _ := get(t, hc, u, "bytes=0-9"); code != 206 {
		t.Errorf("after re-login /folder: %d", code)
	}
	p.fault(map[string]interface{}{"session_expiry_s": 0})

	// outage: nothing listens, then the same port comes back
	pu, _ := url.Parse(p.URL)
	p.fault(map[string]interface{}{"outage_s": 1.5})
	if conn, err := net.DialTimeout("tcp", pu.Host, time.Second); err == nil {
		conn.Close()
		t.Errorf("port open during outage")
	}
	var ctlFault map[string]interface{}
	p.ctl("GET", "/fault", nil, &ctlFault)
	if _, ok := ctlFault["outage_remaining_s"]; !ok {
		t.Errorf("GET /fault during outage: %v", ctlFault)
	}
	time.Sleep(2 * time.Second)
	hc2 := folderClient(c)
	if code, _, err := get(t, hc2, u, "bytes=0-9"); code != 206 {
		t.Errorf("after outage: %d %v", code, err)
	}
	if _, err := find.NewFinder(c.Client, true).Datacenter(ctx, "DC0"); err != nil {
		t.Errorf("SOAP after outage: %v", err)
	}
}

// servedThumbprint is the SHA-256 thumbprint of the certificate the
// peer's HTTPS port presents to a new connection.
func servedThumbprint(t *testing.T, p *peer) string {
	t.Helper()
	u, _ := url.Parse(p.URL)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	var parts []string
	for _, b := range sum {
		parts = append(parts, fmt.Sprintf("%02X", b))
	}
	return strings.Join(parts, ":")
}

func TestCertFault(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	c := p.client(ctx)
	var f struct {
		OK     bool
		Faults struct {
			Thumbprint string `json:"thumbprint"`
		}
	}
	if code := p.ctl("POST", "/fault", map[string]interface{}{"cert": "new"}, &f); code != 200 || !f.OK {
		t.Fatalf("cert new: %d", code)
	}
	newThumb := f.Faults.Thumbprint
	if newThumb == p.Thumbprint || len(newThumb) != 95 {
		t.Errorf("new thumbprint %q (original %s)", newThumb, p.Thumbprint)
	}
	if got := servedThumbprint(t, p); got != newThumb {
		t.Errorf("served %s, GET /fault says %s", got, newThumb)
	}
	var g map[string]interface{}
	p.ctl("GET", "/fault", nil, &g)
	if g["thumbprint"] != newThumb {
		t.Errorf("GET /fault thumbprint %v", g["thumbprint"])
	}
	// the session survives; the client reconnects (it does not pin)
	findVM(ctx, t, c.Client, "web01")
	p.fault(map[string]interface{}{"cert": "original"})
	if got := servedThumbprint(t, p); got != p.Thumbprint {
		t.Errorf("after original: %s, want %s", got, p.Thumbprint)
	}
	// clear also brings the original back
	p.fault(map[string]interface{}{"cert": "new"})
	p.fault(map[string]interface{}{"clear": true})
	if got := servedThumbprint(t, p); got != p.Thumbprint {
		t.Errorf("after clear: %s, want %s", got, p.Thumbprint)
	}
	if code := p.ctl("POST", "/fault", map[string]interface{}{"cert": "other"}, nil); code == 200 {
		t.Errorf("cert other accepted")
	}
}

func TestRunningWrite(t *testing.T) {
	p := startPeer(t, stdFixture)
	w := map[string]interface{}{"vm": "web01", "disk": 0, "offset": 4096, "length": 100, "seed": 9, "running": true}
	before := p.diskHash("web01", 0)
	p.write(w)
	after := p.diskHash("web01", 0)
	if after == before {
		t.Errorf("a running write changed nothing")
	}
	if code := p.ctl("POST", "/power", map[string]interface{}{"vm": "web01", "state": "off"}, nil); code != 200 {
		t.Fatalf("power off: %d", code)
	}
	var r map[string]interface{}
	w["seed"] = 10
	if code := p.ctl("POST", "/write", w, &r); code != 409 || !strings.Contains(fmt.Sprint(r["error"]), "poweredOff") {
		t.Errorf("running write to a powered-off VM: %d %v", code, r)
	}
	if got := p.diskHash("web01", 0); got != after {
		t.Errorf("a refused write changed the disk")
	}
	// without "running" the control endpoint writes whatever the power state
	delete(w, "running")
	p.write(w)
	if got := p.diskHash("web01", 0); got == after {
		t.Errorf("a plain write to a powered-off VM changed nothing")
	}
}

func TestEngineCreatedVM(t *testing.T) {
	p := startPeer(t, `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":[]}`)
	ctx := context.Background()
	c := p.client(ctx)
	f := find.NewFinder(c.Client, true)
	dc, _ := f.Datacenter(ctx, "DC0")
	f.SetDatacenter(dc)
	folders, _ := dc.Folders(ctx)
	host, err := f.HostSystem(ctx, "H0")
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := host.ResourcePool(ctx)
	ds, _ := f.Datastore(ctx, "ds0")

	const capacity = 5*1024*1024 + 4096
	var devices object.VirtualDeviceList
	scsi, _ := devices.CreateSCSIController("lsilogic")
	devices = append(devices, scsi)
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), ds.Reference(), "[ds0] copy01/copy01.vmdk")
	disk.CapacityInBytes = capacity
	disk.CapacityInKB = capacity / 1024
	devices = append(devices, disk)
	spec := types.VirtualMachineConfigSpec{Name: "copy01", GuestId: "otherGuest64", NumCPUs: 1, MemoryMB: 256,
		Files: &types.VirtualMachineFileInfo{VmPathName: "[ds0] copy01/copy01.vmx"}}
	spec.DeviceChange, _ = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	spec.DeviceChange[1].GetVirtualDeviceConfigSpec().FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
	task, err := folders.VmFolder.CreateVM(ctx, spec, pool, host)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.WaitForResult(ctx, nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(p.Dir, "ds0", "copy01")
	st, err := os.Stat(filepath.Join(dir, "copy01-flat.vmdk"))
	if err != nil || st.Size() != capacity {
		t.Fatalf("flat file: %v %v", st, err)
	}
	if desc, _ := os.ReadFile(filepath.Join(dir, "copy01.vmdk")); !strings.Contains(string(desc), `VMFS "copy01-flat.vmdk"`) {
		t.Errorf("descriptor:\n%s", desc)
	}
	if got := p.diskHash("copy01", 0); got != sha(make([]byte, capacity)) {
		t.Errorf("new disk is not zero")
	}
	// direct write into the flat file shows in /disk
	content := make([]byte, capacity)
	fillStream(content, 5, 0)
	if err := os.WriteFile(filepath.Join(dir, "copy01-flat.vmdk"), content, 0644); err != nil {
		t.Fatal(err)
	}
	if got := p.diskHash("copy01", 0); got != sha(content) {
		t.Errorf("direct write not visible")
	}
	// a PUT replaces it
	fillStream(content, 6, 0)
	hc := folderClient(c)
	req, _ := http.NewRequest("PUT", p.folderURL("copy01/copy01-flat.vmdk"), bytes.NewReader(content))
	res, err := hc.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("PUT: %v %v", res, err)
	}
	res.Body.Close()
	if got := p.diskHash("copy01", 0); got != sha(content) {
		t.Errorf("PUT not visible")
	}
	var vms []struct {
		Name  string
		Disks []struct {
			File     string
			Capacity int64
		}
	}
	p.ctl("GET", "/vms", nil, &vms)
	if len(vms) != 1 || vms[0].Name != "copy01" || len(vms[0].Disks) != 1 || vms[0].Disks[0].Capacity != capacity {
		t.Errorf("/vms: %+v", vms)
	}
	if code := p.ctl("GET", "/disk?vm=nope&disk=0", nil, nil); code != 404 {
		t.Errorf("unknown vm: %d", code)
	}
	if code := p.ctl("GET", "/disk?vm=copy01&disk=3", nil, nil); code != 404 {
		t.Errorf("unknown disk: %d", code)
	}
	// destroy removes it from the model
	vm := object.NewVirtualMachine(c.Client, findVM(ctx, t, c.Client, "copy01").Reference())
	dt, _ := vm.Destroy(ctx)
	if err := dt.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	p.ctl("GET", "/vms", nil, &vms)
	if len(vms) != 0 {
		t.Errorf("after destroy: %+v", vms)
	}
}

// A suspended VM's memory state is a .vmss file in its directory, listed
// in layoutEx; another VM pointed at a copy of it (extraConfig
// checkpoint.vmState) resumes from it when powered on.
func TestSuspendCarryResume(t *testing.T) {
	p := startPeer(t, `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"web01","host":"H0","datastore":"ds0","power":"on","memory_mb":4,"disks":[{"capacity":1048576}]},
        {"name":"db01","host":"H0","datastore":"ds0","power":"off","memory_mb":4,"disks":[{"capacity":1048576}]}]}`)
	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "web01")
	task, err := vm.Suspend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// vcsim's storage refresh on snapshot operations must not lose it.
	removeSnapshot(ctx, t, c.Client, createSnapshot(ctx, t, vm, "final", false, false))
	var mvm mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"layoutEx.file"}, &mvm); err != nil {
		t.Fatal(err)
	}
	var susp *types.VirtualMachineFileLayoutExFileInfo
	for i, f := range mvm.LayoutEx.File {
		if f.Type == "suspend" {
			susp = &mvm.LayoutEx.File[i]
		}
	}
	if susp == nil || susp.Name != "[ds0] web01/web01.vmss" || susp.Size == 0 {
		t.Fatalf("layoutEx has no suspend file: %+v", mvm.LayoutEx.File)
	}
	hc := folderClient(c)
	_, mem, _ := get(t, hc, p.folderURL("web01/web01.vmss"), "")
	if int64(len(mem)) != susp.Size {
		t.Fatalf("vmss: %d bytes, layoutEx says %d", len(mem), susp.Size)
	}
	type vmState struct {
		Name    string
		Power   string
		Suspend string `json:"suspend_sha256"`
		Resumed string `json:"resumed_sha256"`
	}
	state := func(name string) vmState {
		var vms []vmState
		p.ctl("GET", "/vms", nil, &vms)
		for _, v := range vms {
			if v.Name == name {
				return v
			}
		}
		t.Fatalf("no vm %s", name)
		return vmState{}
	}
	if s := state("web01"); s.Power != "suspended" || s.Suspend != sha(mem) {
		t.Fatalf("web01 after suspend: %+v", s)
	}
	// Carry the state to a powered-off VM and point it at the copy.
	db01 := findVM(ctx, t, c.Client, "db01")
	req, _ := http.NewRequest("PUT", p.folderURL("db01/carried.vmss"), bytes.NewReader(mem))
	res, err := hc.Do(req)
	if err != nil || res.StatusCode/100 != 2 {
		t.Fatalf("PUT: %v %v", res, err)
	}
	res.Body.Close()
	if s := state("db01"); s.Suspend != "" {
		t.Fatalf("db01 shows a suspend state before it is pointed at one: %+v", s)
	}
	task, err = db01.Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{
		&types.OptionValue{Key: "checkpoint.vmState", Value: "carried.vmss"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if s := state("db01"); s.Suspend != sha(mem) {
		t.Fatalf("db01 pointed at the copy: %+v", s)
	}
	task, err = db01.PowerOn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if s := state("db01"); s.Power != "poweredOn" || s.Resumed != sha(mem) || s.Suspend != "" {
		t.Fatalf("db01 after power-on: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, "ds0", "db01", "carried.vmss")); !os.IsNotExist(err) {
		t.Errorf("the carried state was not consumed: %v", err)
	}
	// A VM powered on without memory state boots: nothing resumed.
	if s := state("web01"); s.Resumed != "" {
		t.Errorf("web01 resumed before power-on: %+v", s)
	}
}
