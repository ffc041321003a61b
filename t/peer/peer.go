package main

// Inventory: the fixture is turned into a vcsim VPX inventory through the
// simulator's own API (in process), then every VM disk gets a real
// descriptor and flat extent. The peer keeps its own model of disks,
// snapshots and change tracking next to vcsim's objects and rewrites the
// disk backings in vcsim's VM and snapshot configs whenever that model moves.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

type fixtureDisk struct {
	Capacity  int64    `json:"capacity"`
	Fill      string   `json:"fill"`
	Seed      int64    `json:"seed"`
	Allocated *float64 `json:"allocated"`
	Mode      string   `json:"mode"`
	Boot      bool     `json:"boot"` // a BIOS boot sector in LBA 0, a generation sector in LBA 1 (boot.go)
	Gen       *int64   `json:"gen"`  // the generation a bootable disk prints (default 1)
}

type fixtureVM struct {
	Name           string            `json:"name"`
	Datacenter     string            `json:"datacenter"`
	Folder         string            `json:"folder"`
	Host           string            `json:"host"`
	Datastore      string            `json:"datastore"`
	Power          string            `json:"power"`
	CPUs           int32             `json:"cpus"`
	CoresPerSocket int32             `json:"cores_per_socket"`
	MemoryMB       int64             `json:"memory_mb"`
	NICs           []fixtureNIC      `json:"nics"`
	GuestID        string            `json:"guest_id"`
	HWVersion      string            `json:"hw_version"`
	Firmware       string            `json:"firmware"`
	SecureBoot     bool              `json:"secure_boot"`
	Controller     string            `json:"controller"`
	CDROM          bool              `json:"cdrom"`
	Floppy         bool              `json:"floppy"`
	ExtraConfig    map[string]string `json:"extra_config"`
	CBT            bool              `json:"cbt"`
	Disks          []fixtureDisk     `json:"disks"`
}

// fixtureDS is a datastore: a name, or {"name","type","version"} where type
// is "VMFS" (version 5 or 6, default 6) or "NFS" (version 3 or 4.1). A
// VMFS6 datastore makes seSparse snapshot deltas, the others vmfsSparse.
type fixtureDS struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Version string `json:"version"`
}

func (f *fixtureDS) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &f.Name)
	}
	type plain fixtureDS
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode((*plain)(f)); err != nil {
		return err
	}
	switch f.Type {
	case "", "OTHER":
		if f.Version != "" {
			return fmt.Errorf("datastore %s: a version needs a type", f.Name)
		}
	case "VMFS":
		if f.Version == "" {
			f.Version = "6"
		}
		if f.Version != "5" && f.Version != "6" {
			return fmt.Errorf("datastore %s: VMFS version %q (5 or 6)", f.Name, f.Version)
		}
	case "NFS":
		if f.Version == "" {
			f.Version = "3"
		}
		if f.Version != "3" && f.Version != "4.1" {
			return fmt.Errorf("datastore %s: NFS version %q (3 or 4.1)", f.Name, f.Version)
		}
	default:
		return fmt.Errorf("datastore %s: unknown type %q (VMFS or NFS)", f.Name, f.Type)
	}
	return nil
}

// deltaKind is the format of the snapshot deltas ESXi makes there.
func (f *fixtureDS) deltaKind() string {
	if f.Type == "VMFS" && f.Version == "6" {
		return kindSeSparse
	}
	return kindVmfsSparse
}

type fixture struct {
	Datacenters []struct {
		Name       string      `json:"name"`
		Hosts      []string    `json:"hosts"`
		Datastores []fixtureDS `json:"datastores"`
		Folders    []string    `json:"folders"`
	} `json:"datacenters"`
	VMs []fixtureVM `json:"vms"`
	// Appliance names the fixture VM that plays vmferry's appliance for
	// hot-add (hotadd.go); "" = no hot-add.
	Appliance string `json:"appliance"`
}

const defaultFixture = `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":[]}`

func loadFixture(file string) (*fixture, error) {
	data := []byte(defaultFixture)
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, err
		}
	}
	var fx fixture
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fx); err != nil {
		return nil, fmt.Errorf("fixture %s: %v", file, err)
	}
	if len(fx.Datacenters) == 0 {
		return nil, fmt.Errorf("fixture %s: no datacenters", file)
	}
	return &fx, nil
}

type snapRec struct {
	Ref         types.ManagedObjectReference
	Name        string
	Description string
	Memory      bool
	Quiesce     bool
	Created     time.Time
	Vmsn        string
}

type Peer struct {
	mu         sync.Mutex // guards the maps below and rng
	rng        *rand.Rand
	svc        *simulator.Service
	client     *vim25.Client
	dir        string
	user       string
	pass       string
	cbtMax     int
	maxObjects int               // --max-objects: server cap on objects per page, 0 = none
	dsDirs     map[string]string // datastore name -> absolute directory
	dsDC       map[string]string // datastore name -> datacenter name
	dsKind     map[string]string // datastore name -> kind of snapshot deltas
	disks      map[types.ManagedObjectReference]map[int32]*vdisk
	cbtOn      map[types.ManagedObjectReference]bool
	snaps      map[types.ManagedObjectReference][]*snapRec
	adapter    map[types.ManagedObjectReference]string
	given      map[types.ManagedObjectReference]hardware // what CreateVM_Task was given
	resumed    map[types.ManagedObjectReference]string   // sha256 of the memory state a VM last resumed from

	// guestMu orders guest writes that need a running VM against power
	// changes: such a write lands wholly before a power-off, or is refused.
	guestMu sync.Mutex

	sessions *sessionTable
	paging   *pagingTable
	faults   *faultState
	stats    *statTable
	https    *httpsServer
	hotadd   *hotadd // nil without an appliance
}

func newPeer(dir, user, pass string, cbtMax, maxObjects int) *Peer {
	return &Peer{
		rng:        rand.New(rand.NewSource(time.Now().UnixNano())),
		dir:        dir,
		user:       user,
		pass:       pass,
		cbtMax:     cbtMax,
		maxObjects: maxObjects,
		dsDirs:     map[string]string{},
		dsDC:       map[string]string{},
		dsKind:     map[string]string{},
		disks:      map[types.ManagedObjectReference]map[int32]*vdisk{},
		cbtOn:      map[types.ManagedObjectReference]bool{},
		snaps:      map[types.ManagedObjectReference][]*snapRec{},
		adapter:    map[types.ManagedObjectReference]string{},
		given:      map[types.ManagedObjectReference]hardware{},
		resumed:    map[types.ManagedObjectReference]string{},
		sessions:   newSessionTable(),
		paging:     newPagingTable(),
		faults:     newFaultState(),
		stats:      newStatTable(),
	}
}

// build creates the simulator and the fixture's inventory.
func (p *Peer) build(fx *fixture) error {
	ctx := context.Background()
	m := simulator.VPX()
	m.Datacenter, m.Portgroup, m.Host, m.Cluster, m.ClusterHost, m.Datastore, m.Machine = 0, 0, 0, 0, 0, 0, 0
	if err := m.Create(); err != nil {
		return err
	}
	p.svc = m.Service
	c, err := vim25.NewClient(ctx, p.svc)
	if err != nil {
		return err
	}
	p.client = c
	root := object.NewRootFolder(c)

	type dcInfo struct {
		folders *object.DatacenterFolders
		hosts   map[string]*object.HostSystem
		ds      map[string]types.ManagedObjectReference
	}
	dcs := map[string]*dcInfo{}
	hostDC := map[string]string{}
	for _, fdc := range fx.Datacenters {
		dc, err := root.CreateDatacenter(ctx, fdc.Name)
		if err != nil {
			return fmt.Errorf("datacenter %s: %v", fdc.Name, err)
		}
		folders, err := dc.Folders(ctx)
		if err != nil {
			return err
		}
		info := &dcInfo{folders: folders, hosts: map[string]*object.HostSystem{}, ds: map[string]types.ManagedObjectReference{}}
		dcs[fdc.Name] = info
		var hosts []*object.HostSystem
		for _, hn := range fdc.Hosts {
			task, err := folders.HostFolder.AddStandaloneHost(ctx, types.HostConnectSpec{HostName: hn}, true, nil, nil)
			if err != nil {
				return err
			}
			res, err := task.WaitForResult(ctx, nil)
			if err != nil {
				return fmt.Errorf("host %s: %v", hn, err)
			}
			h := object.NewHostSystem(c, res.Result.(types.ManagedObjectReference))
			info.hosts[hn] = h
			hosts = append(hosts, h)
			hostDC[hn] = fdc.Name
		}
		for _, fds := range fdc.Datastores {
			dsn := fds.Name
			if dsn == "" {
				return fmt.Errorf("datacenter %s: a datastore without a name", fdc.Name)
			}
			if _, dup := p.dsDirs[dsn]; dup {
				return fmt.Errorf("datastore %s defined twice", dsn)
			}
			dir := filepath.Join(p.dir, dsn)
			if err := os.MkdirAll(dir, 0755); err != nil {
				return err
			}
			p.dsDirs[dsn] = dir
			p.dsDC[dsn] = fdc.Name
			p.dsKind[dsn] = fds.deltaKind()
			ref, err := p.createDatastore(ctx, dsn, hosts)
			if err != nil {
				return err
			}
			if len(hosts) > 0 {
				p.shareDatastore(ref, hosts, folders, &fds)
			}
			info.ds[dsn] = ref
		}
		for _, fp := range fdc.Folders {
			if _, err := p.vmFolder(ctx, folders, fp); err != nil {
				return fmt.Errorf("datacenter %s: folder %s: %v", fdc.Name, fp, err)
			}
		}
	}

	seenDir := map[string]bool{}
	for i := range fx.VMs {
		fv := &fx.VMs[i]
		dcName := fv.Datacenter
		if dcName == "" {
			dcName = hostDC[fv.Host]
			if fv.Host == "" {
				dcName = fx.Datacenters[0].Name
			}
		}
		info := dcs[dcName]
		if info == nil {
			return fmt.Errorf("vm %s: unknown datacenter/host %q/%q", fv.Name, fv.Datacenter, fv.Host)
		}
		host := info.hosts[fv.Host]
		if host == nil {
			if fv.Host != "" || len(info.hosts) == 0 {
				return fmt.Errorf("vm %s: unknown host %q", fv.Name, fv.Host)
			}
			host = info.hosts[fx.Datacenters[0].Hosts[0]]
		}
		dsn := fv.Datastore
		if dsn == "" && len(info.ds) > 0 {
			for n := range info.ds {
				if dsn == "" || n < dsn {
					dsn = n
				}
			}
		}
		dsRef, ok := info.ds[dsn]
		if !ok {
			return fmt.Errorf("vm %s: unknown datastore %q", fv.Name, fv.Datastore)
		}
		// A directory left by an earlier run would make vcsim pick
		// "web01 (0)"; the fixture's VMs own their directories.
		// Two VMs of one name may live in two folders (not in one).
		if old := filepath.Join(p.dsDirs[dsn], fv.Name); fileExists(old) && !seenDir[old] {
			logf("replacing %s from an earlier run", old)
			if err := os.RemoveAll(old); err != nil {
				return err
			}
		}
		seenDir[filepath.Join(p.dsDirs[dsn], fv.Name)] = true
		if err := p.createFixtureVM(ctx, fv, info.folders, host, dsn, dsRef); err != nil {
			return fmt.Errorf("vm %s: %v", fv.Name, err)
		}
	}
	return nil
}

// createDatastore mounts DIR/<name> on every host. vcsim names the
// datastore moref after the path it is given, so the path is given relative
// to DIR (moref "ds0@folder-5" rather than "/tmp/.../ds0@folder-5") and
// made absolute afterwards.
func (p *Peer) createDatastore(ctx context.Context, name string, hosts []*object.HostSystem) (types.ManagedObjectReference, error) {
	var ref types.ManagedObjectReference
	cwd, err := os.Getwd()
	if err != nil {
		return ref, err
	}
	if err := os.Chdir(p.dir); err != nil {
		return ref, err
	}
	defer os.Chdir(cwd)
	for _, h := range hosts {
		dss, err := h.ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return ref, err
		}
		ds, err := dss.CreateLocalDatastore(ctx, name, name)
		if err != nil {
			return ref, fmt.Errorf("datastore %s on %s: %v", name, h.Reference().Value, err)
		}
		ref = ds.Reference()
	}
	return ref, nil
}

// shareDatastore makes one datastore object mounted on all hosts; vcsim
// creates it once per host and keeps only the last host's mount.
func (p *Peer) shareDatastore(ref types.ManagedObjectReference, hosts []*object.HostSystem, folders *object.DatacenterFolders, fds *fixtureDS) {
	ds, ok := simulator.Map.Get(ref).(*simulator.Datastore)
	if !ok {
		return
	}
	abs := p.dsDirs[ds.Name]
	simulator.Map.WithLock(ds, func() {
		if info, ok := ds.Info.(*types.LocalDatastoreInfo); ok {
			info.Url, info.Path = abs, abs
		}
		ds.Summary.Url = abs
		ds.Host = nil
		for _, h := range hosts {
			ds.Host = append(ds.Host, types.DatastoreHostMount{
				Key: h.Reference(),
				MountInfo: types.HostMountInfo{
					Path:       abs,
					AccessMode: string(types.HostMountModeReadWrite),
					Mounted:    types.NewBool(true),
					Accessible: types.NewBool(true),
				},
			})
		}
		ds.Summary.MultipleHostAccess = types.NewBool(len(hosts) > 1)
		declareType(ds, fds)
	})
	if f, ok := simulator.Map.Get(folders.DatastoreFolder.Reference()).(*simulator.Folder); ok {
		simulator.Map.WithLock(f, func() { f.ChildEntity = dedupe(f.ChildEntity) })
	}
}

// declareType makes a datastore look like the VMFS or NFS volume the
// fixture declares (summary.type, info.vmfs / info.nas); an undeclared one
// stays as vcsim makes it (type "OTHER").
func declareType(ds *simulator.Datastore, fds *fixtureDS) {
	if fds.Type == "" || fds.Type == "OTHER" {
		return
	}
	base := *ds.Info.GetDatastoreInfo()
	ds.Summary.Type = fds.Type
	switch fds.Type {
	case "VMFS":
		major := int32(5)
		version := "5.81"
		if fds.Version == "6" {
			major, version = 6, "6.82"
		}
		ds.Info = &types.VmfsDatastoreInfo{DatastoreInfo: base, Vmfs: &types.HostVmfsVolume{
			HostFileSystemVolume: types.HostFileSystemVolume{Type: "VMFS", Name: fds.Name, Capacity: ds.Summary.Capacity},
			BlockSizeMb:          1, MajorVersion: major, Version: version,
			Uuid: fmt.Sprintf("5f000000-0000000-0000-%012x", len(fds.Name)),
		}}
	case "NFS":
		t := "NFS"
		if fds.Version == "4.1" {
			t = "NFS41"
		}
		ds.Summary.Type = t
		ds.Info = &types.NasDatastoreInfo{DatastoreInfo: base, Nas: &types.HostNasVolume{
			HostFileSystemVolume: types.HostFileSystemVolume{Type: t, Name: fds.Name, Capacity: ds.Summary.Capacity},
			RemoteHost:           "127.0.0.1", RemotePath: ds.Summary.Url,
		}}
	}
}

func dedupe(refs []types.ManagedObjectReference) []types.ManagedObjectReference {
	seen := map[types.ManagedObjectReference]bool{}
	out := refs[:0]
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

func (p *Peer) ensureNetwork(ctx context.Context, name string, folders *object.DatacenterFolders, host *object.HostSystem) error {
	nf := simulator.Map.Get(folders.NetworkFolder.Reference()).(*simulator.Folder)
	if simulator.Map.FindByName(name, nf.ChildEntity) != nil {
		return nil
	}
	ns, err := host.ConfigManager().NetworkSystem(ctx)
	if err != nil {
		return err
	}
	return ns.AddPortGroup(ctx, types.HostPortGroupSpec{Name: name, VswitchName: "vSwitch0"})
}

func (p *Peer) createFixtureVM(ctx context.Context, fv *fixtureVM, folders *object.DatacenterFolders, host *object.HostSystem, dsn string, dsRef types.ManagedObjectReference) error {
	spec := types.VirtualMachineConfigSpec{
		Name:     fv.Name,
		GuestId:  fv.GuestID,
		NumCPUs:  fv.CPUs,
		MemoryMB: fv.MemoryMB,
		Version:  fv.HWVersion,
		Files:    &types.VirtualMachineFileInfo{VmPathName: "[" + dsn + "]"},
	}
	if spec.GuestId == "" {
		spec.GuestId = string(types.VirtualMachineGuestOsIdentifierOtherGuest64)
	}
	if spec.NumCPUs == 0 {
		spec.NumCPUs = 1
	}
	if spec.MemoryMB == 0 {
		spec.MemoryMB = 512
	}
	if spec.Version == "" {
		spec.Version = "vmx-13"
	}
	if fv.CBT {
		spec.ChangeTrackingEnabled = types.NewBool(true)
	}
	if err := fixtureSpec(fv, &spec); err != nil {
		return err
	}
	ctype := fv.Controller
	if ctype == "" {
		ctype = "pvscsi"
	}
	var devices object.VirtualDeviceList
	ctrl, err := devices.CreateSCSIController(ctype)
	if err != nil {
		return err
	}
	ctrl.GetVirtualDevice().Key = 1000
	devices = append(devices, ctrl)
	for i, fd := range fv.Disks {
		if fd.Capacity <= 0 {
			return fmt.Errorf("disk %d: capacity must be > 0", i)
		}
		switch fd.Mode {
		case "", "persistent", "independent_persistent", "independent_nonpersistent":
		default:
			return fmt.Errorf("disk %d: unknown mode %q", i, fd.Mode)
		}
		switch fd.Fill {
		case "", "random", "zero":
		default:
			return fmt.Errorf("disk %d: unknown fill %q", i, fd.Fill)
		}
		if fd.Gen != nil && !fd.Boot {
			return fmt.Errorf("disk %d: gen needs boot", i)
		}
		if fd.Gen != nil {
			if err := checkGen(*fd.Gen); err != nil {
				return fmt.Errorf("disk %d: %v", i, err)
			}
		}
		if fd.Boot && fd.Capacity < bootMin {
			return fmt.Errorf("disk %d: a bootable disk needs a capacity of at least %d bytes", i, bootMin)
		}
		disk := devices.CreateDisk(ctrl.(types.BaseVirtualController), dsRef, "")
		disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName = "[" + dsn + "]"
		if fd.Mode != "" {
			disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo).DiskMode = fd.Mode
		}
		if *disk.UnitNumber < 0 {
			return fmt.Errorf("too many disks (max 15)")
		}
		disk.Key = 2000 + int32(i)
		disk.DeviceInfo = &types.Description{Label: fmt.Sprintf("Hard disk %d", i+1)}
		disk.CapacityInBytes = fd.Capacity
		disk.CapacityInKB = fd.Capacity / 1024
		devices = append(devices, disk)
	}
	for i, n := range fv.NICs {
		if err := p.ensureNetwork(ctx, n.Network, folders, host); err != nil {
			return fmt.Errorf("network %s: %v", n.Network, err)
		}
		nic, err := fixtureNICDevice(i, n)
		if err != nil {
			return err
		}
		devices = append(devices, nic)
	}
	devices = fixtureDrives(fv, devices)
	spec.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return err
	}
	for _, ch := range spec.DeviceChange {
		cs := ch.GetVirtualDeviceConfigSpec()
		if _, ok := cs.Device.(*types.VirtualDisk); ok {
			cs.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		}
	}
	pool, err := host.ResourcePool(ctx)
	if err != nil {
		return err
	}
	folder, err := p.vmFolder(ctx, folders, fv.Folder)
	if err != nil {
		return fmt.Errorf("folder %s: %v", fv.Folder, err)
	}
	task, err := folder.CreateVM(ctx, spec, pool, host)
	if err != nil {
		return err
	}
	res, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return err
	}
	ref := res.Result.(types.ManagedObjectReference)
	p.mu.Lock()
	p.adapter[ref] = ctype
	p.mu.Unlock()
	if err := p.syncVM(ref, fv.Disks); err != nil {
		return err
	}
	if fv.Power == "on" {
		vm := object.NewVirtualMachine(p.client, ref)
		t, err := vm.PowerOn(ctx)
		if err != nil {
			return err
		}
		if err := t.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// vmFolder finds or makes the VM folder at path ("a/b") below the
// datacenter's VM folder ("" is that folder).
func (p *Peer) vmFolder(ctx context.Context, folders *object.DatacenterFolders, fp string) (*object.Folder, error) {
	f := folders.VmFolder
	if fp == "" {
		return f, nil
	}
	for _, name := range strings.Split(fp, "/") {
		if name == "" {
			return nil, fmt.Errorf("empty folder name in %q", fp)
		}
		var next *object.Folder
		if fo, ok := simulator.Map.Get(f.Reference()).(*simulator.Folder); ok {
			for _, c := range fo.ChildEntity {
				if sub, ok := simulator.Map.Get(c).(*simulator.Folder); ok && sub.Name == name {
					next = object.NewFolder(p.client, c)
				}
			}
		}
		if next == nil {
			var err error
			if next, err = f.CreateFolder(ctx, name); err != nil {
				return nil, err
			}
		}
		f = next
	}
	return f, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func vmObject(ref types.ManagedObjectReference) *simulator.VirtualMachine {
	vm, _ := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	return vm
}

func diskDevices(devs []types.BaseVirtualDevice) []*types.VirtualDisk {
	var out []*types.VirtualDisk
	for _, d := range devs {
		if disk, ok := d.(*types.VirtualDisk); ok {
			out = append(out, disk)
		}
	}
	return out
}

func capacityOf(d *types.VirtualDisk) int64 {
	if d.CapacityInBytes != 0 {
		return d.CapacityInBytes
	}
	return d.CapacityInKB * 1024
}

// syncVM reconciles the disk model of a VM with its devices: new disks get
// real files (fixture content when fds is given), removed ones are
// forgotten, and a change tracking switch-on starts a new epoch. Then the
// backings are rewritten.
func (p *Peer) syncVM(ref types.ManagedObjectReference, fds []fixtureDisk) error {
	vm := vmObject(ref)
	p.mu.Lock()
	defer p.mu.Unlock()
	if vm == nil {
		delete(p.disks, ref)
		delete(p.cbtOn, ref)
		delete(p.snaps, ref)
		delete(p.adapter, ref)
		return nil
	}
	var ferr error
	simulator.Map.WithLock(vm, func() {
		if vm.Config == nil {
			return
		}
		known := p.disks[ref]
		if known == nil {
			known = map[int32]*vdisk{}
			p.disks[ref] = known
		}
		keep := map[int32]bool{}
		cbt := vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
		for i, dev := range diskDevices(vm.Config.Hardware.Device) {
			if p.isAttachedKey(ref, dev.Key) {
				continue // another VM's disk, hot-added
			}
			keep[dev.Key] = true
			if known[dev.Key] != nil {
				continue
			}
			var fd *fixtureDisk
			if i < len(fds) {
				fd = &fds[i]
			}
			d, err := p.newDisk(vm, dev, fd)
			if err != nil {
				ferr = err
				return
			}
			if d != nil {
				known[dev.Key] = d
			}
		}
		for k := range known {
			if !keep[k] {
				delete(known, k)
			}
		}
		if cbt && !p.cbtOn[ref] {
			for _, d := range known {
				d.mu.Lock()
				d.epoch = newEpoch(p.rng)
				d.mu.Unlock()
			}
		}
		p.cbtOn[ref] = cbt
	})
	p.refreshLocked(vm)
	return ferr
}

// newDisk makes the files of a disk that is new to the model. Files that
// already hold data (an uploaded descriptor or extent) are kept.
func (p *Peer) newDisk(vm *simulator.VirtualMachine, dev *types.VirtualDisk, fd *fixtureDisk) (*vdisk, error) {
	b, ok := dev.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return nil, nil
	}
	var dp object.DatastorePath
	if !dp.FromString(b.FileName) || dp.Path == "" {
		return nil, nil
	}
	dsDir, ok := p.dsDirs[dp.Datastore]
	if !ok {
		return nil, nil
	}
	capacity := capacityOf(dev)
	if fd != nil {
		capacity = fd.Capacity
	}
	// Walk down an existing parent chain: the model starts at its root.
	for b.Parent != nil {
		b = b.Parent
		dp.FromString(b.FileName)
	}
	d := &vdisk{
		key:         dev.Key,
		capacity:    capacity,
		grains:      (capacity + grainSize - 1) / grainSize,
		dsName:      dp.Datastore,
		dsDir:       dsDir,
		dir:         path.Dir(dp.Path),
		name:        strings.TrimSuffix(path.Base(dp.Path), ".vmdk"),
		mode:        b.DiskMode,
		uuid:        b.Uuid,
		adapter:     "lsilogic",
		hwVersion:   vm.Config.Version,
		independent: strings.HasPrefix(b.DiskMode, "independent"),
		deltaKind:   p.dsKind[dp.Datastore],
		epoch:       newEpoch(p.rng),
		seq:         1,
		periods:     map[int64]bitset{},
		snapLayer:   map[string]*layer{},
		snapChange:  map[string]string{},
	}
	if d.uuid == "" {
		d.uuid = diskUUID(p.rng)
	}
	d.alloc = newBitset(d.grains)
	root := &layer{desc: d.name + ".vmdk", data: d.name + "-flat.vmdk", base: true, cid: p.rng.Uint32()}
	d.root, d.cur, d.layers = root, root, []*layer{root}
	if err := os.MkdirAll(d.path(""), 0755); err != nil {
		return nil, err
	}
	keepDesc := false
	if fd == nil {
		if data, err := os.ReadFile(d.path(root.desc)); err == nil && len(data) > 0 {
			if ext, _, ok := parseExtent(string(data)); ok {
				root.data = ext
				keepDesc = true
			}
		}
	}
	flat := d.path(root.data)
	st, err := os.Stat(flat)
	if fd != nil || err != nil || st.Size() == 0 {
		f, err := os.OpenFile(flat, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0644)
		if err != nil {
			return nil, err
		}
		err = f.Truncate(capacity)
		f.Close()
		if err != nil {
			return nil, err
		}
	} else {
		// an uploaded extent: treat all of it as allocated
		for g := int64(0); g < d.grains; g++ {
			d.alloc.set(g)
		}
	}
	if !keepDesc {
		if err := d.writeDescriptor(root); err != nil {
			return nil, err
		}
	}
	if fd != nil {
		fill := fd.Fill
		if fill == "" {
			fill = "random"
		}
		alloc := 1.0 // random disks are full unless told otherwise
		if fill == "zero" {
			alloc = 0
		}
		if fd.Allocated != nil {
			alloc = *fd.Allocated
		}
		if alloc < 0 || alloc > 1 {
			return nil, fmt.Errorf("allocated %v outside 0..1", alloc)
		}
		if err := d.fillFixture(fill, fd.Seed, alloc); err != nil {
			return nil, err
		}
		if fd.Boot {
			gen := int64(1)
			if fd.Gen != nil {
				gen = *fd.Gen
			}
			if err := d.makeBootable(uint32(gen)); err != nil {
				return nil, err
			}
		}
	}
	dev.CapacityInBytes = capacity
	dev.CapacityInKB = capacity / 1024
	return d, nil
}

// chain builds the backing of layer l (and its parents) from template t.
func (d *vdisk) chain(l *layer, t *types.VirtualDiskFlatVer2BackingInfo) *types.VirtualDiskFlatVer2BackingInfo {
	b := *t
	b.FileName = d.dsPath(l)
	b.Uuid = d.uuid
	b.ChangeId = ""
	b.Parent = nil
	if l.parent != nil {
		b.Parent = d.chain(l.parent, t)
	}
	return &b
}

// refreshLocked rewrites the disk backings of vm and of its snapshots from
// the model. Caller holds p.mu but no registry lock: vcsim locks a snapshot
// before its VM, so the two are taken one at a time here.
func (p *Peer) refreshLocked(vm *simulator.VirtualMachine) {
	ref := vm.Self
	known := p.disks[ref]
	cbt := p.cbtOn[ref]
	rewrite := func(devs []types.BaseVirtualDevice, pick func(d *vdisk) (*layer, string)) []types.BaseVirtualDevice {
		out := make([]types.BaseVirtualDevice, len(devs))
		for i, dev := range devs {
			out[i] = dev
			disk, ok := dev.(*types.VirtualDisk)
			if !ok || known[disk.Key] == nil {
				continue
			}
			t, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				continue
			}
			d := known[disk.Key]
			d.mu.Lock()
			l, cid := pick(d)
			nd := *disk
			if l != nil {
				nb := d.chain(l, t)
				nb.ChangeId = cid
				nd.Backing = nb
			}
			nd.CapacityInBytes = d.capacity
			nd.CapacityInKB = d.capacity / 1024
			d.mu.Unlock()
			out[i] = &nd
		}
		return out
	}
	simulator.Map.WithLock(vm, func() {
		if vm.Config == nil {
			return
		}
		devs := rewrite(vm.Config.Hardware.Device, func(d *vdisk) (*layer, string) {
			cid := ""
			if cbt && !d.independent {
				cid = fmt.Sprintf("%s/%d", d.epoch, d.seq-1)
			}
			return d.cur, cid
		})
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: devs}})
	})
	for _, s := range p.snaps[ref] {
		so, ok := simulator.Map.Get(s.Ref).(*simulator.VirtualMachineSnapshot)
		if !ok {
			continue
		}
		key := s.Ref.Value
		simulator.Map.WithLock(so, func() {
			so.Config.Hardware.Device = rewrite(so.Config.Hardware.Device, func(d *vdisk) (*layer, string) {
				return d.snapLayer[key], d.snapChange[key]
			})
		})
	}
}

func (p *Peer) refresh(ref types.ManagedObjectReference) {
	vm := vmObject(ref)
	if vm == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refreshLocked(vm)
}

// sortedDisks returns the model disks of a VM in device order.
func (p *Peer) sortedDisks(ref types.ManagedObjectReference) []*vdisk {
	vm := vmObject(ref)
	if vm == nil {
		return nil
	}
	var keys []int32
	simulator.Map.WithLock(vm, func() {
		for _, dev := range diskDevices(vm.Config.Hardware.Device) {
			keys = append(keys, dev.Key)
		}
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*vdisk
	for _, k := range keys {
		if d := p.disks[ref][k]; d != nil {
			out = append(out, d)
		}
	}
	return out
}

// findVM resolves a VM by name or moref value.
func (p *Peer) findVM(name string) *simulator.VirtualMachine {
	var found []*simulator.VirtualMachine
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		if vm.Self.Value == name {
			return vm
		}
		if vm.Name == name {
			found = append(found, vm)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Self.Value < found[j].Self.Value })
	if len(found) > 0 {
		return found[0]
	}
	return nil
}

// --- snapshot hooks, run after vcsim has completed the task -------------

func (p *Peer) afterCreateSnapshot(vmRef types.ManagedObjectReference, snap types.ManagedObjectReference, req *types.CreateSnapshot_Task) {
	rec := &snapRec{Ref: snap, Name: req.Name, Description: req.Description, Memory: req.Memory, Quiesce: req.Quiesce, Created: time.Now()}
	vm := vmObject(vmRef)
	if vm == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	simulator.Map.WithLock(vm, func() {
		cbt := p.cbtOn[vmRef]
		for _, d := range p.disks[vmRef] {
			d.mu.Lock()
			if err := d.snapshot(snap.Value, cbt, p.rng); err != nil {
				logf("snapshot %s disk %d: %v", snap.Value, d.key, err)
			}
			d.mu.Unlock()
		}
		rec.Vmsn = p.vmsnFile(vm, snap)
		if rec.Memory && rec.Vmsn != "" {
			p.writeMemoryImage(rec.Vmsn, vm)
		}
		p.snaps[vmRef] = append(p.snaps[vmRef], rec)
	})
	p.refreshLocked(vm)
}

// vmsnFile finds the .vmsn file vcsim made for the snapshot.
func (p *Peer) vmsnFile(vm *simulator.VirtualMachine, snap types.ManagedObjectReference) string {
	if vm.LayoutEx == nil {
		return ""
	}
	for _, s := range vm.LayoutEx.Snapshot {
		if s.Key != snap {
			continue
		}
		for _, f := range vm.LayoutEx.File {
			if f.Key == s.DataKey {
				var dp object.DatastorePath
				if dp.FromString(f.Name) {
					if dir, ok := p.dsDirs[dp.Datastore]; ok {
						return filepath.Join(dir, dp.Path)
					}
				}
			}
		}
	}
	return ""
}

// writeMemoryImage gives a memory snapshot's .vmsn file real content: a
// header plus up to 1 MiB of deterministic "memory".
func (p *Peer) writeMemoryImage(file string, vm *simulator.VirtualMachine) {
	n := int64(vm.Config.Hardware.MemoryMB) << 20
	if n > 1<<20 || n <= 0 {
		n = 1 << 20
	}
	buf := make([]byte, n)
	fillStream(buf, uint64(len(vm.Name))*7919+uint64(time.Now().UnixNano()), 0)
	hdr := fmt.Sprintf("vmferry-peer memory image\nvm=%s\nmemory_mb=%d\n", vm.Name, vm.Config.Hardware.MemoryMB)
	if err := os.WriteFile(file, append([]byte(hdr), buf...), 0644); err != nil {
		logf("memory image %s: %v", file, err)
	}
}

// forgetSnapshotFileKeys runs before vcsim removes a snapshot of the VM.
// vcsim deletes a removed snapshot's files by the layoutEx.file keys it
// noted when the snapshot was made (its .vmsn), but renumbers layoutEx.file
// on every storage refresh (each removal), so by then such a key may name
// a disk's flat or delta file, which it would delete with the snapshot.
// The keys are dropped here; afterRemoveSnapshots removes the .vmsn.
func (p *Peer) forgetSnapshotFileKeys(vmRef types.ManagedObjectReference) {
	vm := vmObject(vmRef)
	if vm == nil {
		return
	}
	simulator.Map.WithLock(vm, func() {
		if vm.LayoutEx == nil {
			return
		}
		for i := range vm.LayoutEx.Snapshot {
			vm.LayoutEx.Snapshot[i].DataKey = -1
			vm.LayoutEx.Snapshot[i].MemoryKey = -1
		}
	})
}

// afterRemoveSnapshots consolidates every snapshot the model knows that
// vcsim no longer has, and removes its .vmsn file.
func (p *Peer) afterRemoveSnapshots(vmRef types.ManagedObjectReference) {
	vm := vmObject(vmRef)
	if vm == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	simulator.Map.WithLock(vm, func() {
		var keep []*snapRec
		recs := p.snaps[vmRef]
		// newest first, so chains fold from the top
		for i := len(recs) - 1; i >= 0; i-- {
			s := recs[i]
			if simulator.Map.Get(s.Ref) != nil {
				keep = append([]*snapRec{s}, keep...)
				continue
			}
			for _, d := range p.disks[vmRef] {
				d.mu.Lock()
				if err := d.removeSnapshot(s.Ref.Value); err != nil {
					logf("consolidate %s disk %d: %v", s.Ref.Value, d.key, err)
				}
				d.mu.Unlock()
			}
			if s.Vmsn != "" {
				os.Remove(s.Vmsn)
			}
		}
		p.snaps[vmRef] = keep
	})
	p.refreshLocked(vm)
}

func (p *Peer) afterRevert(vmRef types.ManagedObjectReference, snap types.ManagedObjectReference) {
	vm := vmObject(vmRef)
	if vm == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	simulator.Map.WithLock(vm, func() {
		for _, d := range p.disks[vmRef] {
			d.mu.Lock()
			if err := d.revert(snap.Value, p.rng); err != nil {
				logf("revert %s disk %d: %v", snap.Value, d.key, err)
			}
			d.mu.Unlock()
		}
	})
	p.refreshLocked(vm)
}

// cbtReset starts a new change tracking epoch on one disk.
func (p *Peer) cbtReset(vmName string, index int) error {
	vm := p.findVM(vmName)
	if vm == nil {
		return fmt.Errorf("unknown vm %q", vmName)
	}
	disks := p.sortedDisks(vm.Self)
	if index < 0 || index >= len(disks) {
		return fmt.Errorf("vm %s has no disk %d", vmName, index)
	}
	d := disks[index]
	p.mu.Lock()
	d.mu.Lock()
	d.epoch = newEpoch(p.rng)
	d.mu.Unlock()
	p.mu.Unlock()
	p.refresh(vm.Self)
	return nil
}
