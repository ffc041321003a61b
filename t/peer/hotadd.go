package main

// Hot-add: the fixture's "appliance" VM plays vmferry's appliance, which
// writes a powered-off VM's disk by attaching that disk's current file (the
// top of its chain) to itself with ReconfigVM_Task (add, no fileOperation),
// writing the block device that appears in its guest, and detaching it
// again (remove, no fileOperation). The peer checks an attach as ESXi would
// (file, locks, controller, unit, chain), puts the device in the
// appliance's config.hardware.device, and exposes it as a file
// "wwn-0x<uuid>" in a FUSE directory (hotadd_fuse.go), standing in for
// /dev/disk/by-id of the appliance's guest. Reads and writes of that file go
// through the owner disk's chain logic (disk.go), exactly as guest writes do.
//
// Locks: opMu serialises every hot-add change and the owner operations a
// hot-added disk forbids (power-on, snapshots, destroy), and is taken before
// anything else. mu guards the attachment list and is a leaf (nothing else
// is taken while it is held). An attachment's io lock is held (read) by FUSE
// I/O and taken (write) by a detach, so a detach waits for I/O in flight and
// nothing reaches the disk after it.

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"reflect"
	"strings"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type attachment struct {
	io   sync.RWMutex
	gone bool // detached: I/O on open handles fails (EIO)

	key        int32
	controller int32
	unit       int32
	file       string // the datastore path attached ("[ds0] web01/web01-000001.vmdk")
	owner      types.ManagedObjectReference
	ownerName  string
	d          *vdisk
	l          *layer
	uuid       string // the backing uuid, as the owner's config has it
	device     string // "wwn-0x" + uuid lowercased without dashes
	visible    bool   // false: the no_device fault, or no FUSE mount
	ino        uint64
}

type hotadd struct {
	p *Peer

	opMu sync.Mutex
	mu   sync.Mutex

	appliance types.ManagedObjectReference
	name      string
	uuid      string // the appliance's config.uuid (BIOS UUID)
	dir       string // the FUSE mount point
	mountErr  string // why there is no mount ("" when mounted)
	fs        *hotaddFS
	attached  []*attachment
	nextIno   uint64
}

// wwnName is the name Linux gives a VMware disk with disk.EnableUUID in
// /dev/disk/by-id: "wwn-0x" and the backing uuid in lower case, no dashes.
func wwnName(uuid string) string {
	return "wwn-0x" + strings.ToLower(strings.Replace(uuid, "-", "", -1))
}

// setupHotadd makes the named fixture VM the appliance and mounts the FUSE
// directory DIR/.hotadd (or records why it could not).
func (p *Peer) setupHotadd(name string) error {
	vm := p.findVM(name)
	if vm == nil {
		return fmt.Errorf("appliance %q is not a VM of the fixture", name)
	}
	h := &hotadd{p: p, appliance: vm.Self, name: name, dir: p.dir + "/.hotadd", nextIno: 100}
	simulator.Map.WithLock(vm, func() {
		if vm.Config != nil {
			h.uuid = vm.Config.Uuid
		}
	})
	if err := h.mount(); err != nil {
		h.mountErr = err.Error()
		logf("hotadd: no FUSE mount at %s: %v (attaches succeed, no device ever appears)", h.dir, err)
	} else {
		logf("hotadd: appliance %s (%s), devices in %s", name, vm.Self.Value, h.dir)
	}
	p.hotadd = h
	return nil
}

// close unmounts the FUSE directory (on exit).
func (h *hotadd) close() {
	if h == nil {
		return
	}
	h.unmount()
}

func (h *hotadd) attachments() []*attachment {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*attachment(nil), h.attached...)
}

// byKey finds the attachment of the appliance's device key.
func (h *hotadd) byKey(key int32) *attachment {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.attached {
		if a.key == key {
			return a
		}
	}
	return nil
}

// isAttachedKey: the device key of vm is a hot-added disk (not a disk of
// its own: syncVM leaves it alone).
func (p *Peer) isAttachedKey(vm types.ManagedObjectReference, key int32) bool {
	h := p.hotadd
	if h == nil || vm != h.appliance {
		return false
	}
	return h.byKey(key) != nil
}

// lockedBy returns the attachment holding disk d, if any.
func (p *Peer) hotaddHolding(d *vdisk) *attachment {
	h := p.hotadd
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.attached {
		if a.d == d {
			return a
		}
	}
	return nil
}

// ownerAttachment returns one attachment of a disk of VM ref, if any.
func (h *hotadd) ownerAttachment(ref types.ManagedObjectReference) *attachment {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.attached {
		if a.owner == ref {
			return a
		}
	}
	return nil
}

// visible returns the attachment whose device file is name, when the
// device exists in the appliance's guest: attached, not hidden by the
// no_device fault, and the appliance powered on.
func (h *hotadd) visibleDevice(name string) *attachment {
	if !h.appliancePoweredOn() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.attached {
		if a.visible && a.device == name {
			return a
		}
	}
	return nil
}

func (h *hotadd) visibleDevices() []*attachment {
	if !h.appliancePoweredOn() {
		return nil
	}
	var out []*attachment
	seen := map[string]bool{}
	for _, a := range h.attachments() {
		if a.visible && !seen[a.device] {
			seen[a.device] = true
			out = append(out, a)
		}
	}
	return out
}

func (h *hotadd) appliancePoweredOn() bool {
	vm := vmObject(h.appliance)
	if vm == nil {
		return false
	}
	on := false
	simulator.Map.WithLock(vm, func() { on = vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn })
	return on
}

// --- SOAP ------------------------------------------------------------------

// ownerGuarded are the methods refused on a VM while one of its disks is
// attached to the appliance: the appliance holds the disk's file open.
var ownerGuarded = map[string]bool{
	"PowerOnVM_Task":               true,
	"CreateSnapshot_Task":          true,
	"RemoveSnapshot_Task":          true,
	"RemoveAllSnapshots_Task":      true,
	"RevertToSnapshot_Task":        true,
	"RevertToCurrentSnapshot_Task": true,
	"ConsolidateVMDisks_Task":      true,
	"Destroy_Task":                 true,
}

// hotaddIntercept runs before vcsim sees a SOAP call. It answers hot-add
// reconfigurations of the appliance and refuses what a hot-added disk
// forbids its owner; done says it answered. Otherwise release must be
// called once the call (and the peer's follow-up) is over.
func (p *Peer) hotaddIntercept(w http.ResponseWriter, name string, req interface{}, this, related types.ManagedObjectReference) (done bool, release func()) {
	h := p.hotadd
	noop := func() {}
	if h == nil {
		return false, noop
	}
	switch {
	case name == "ReconfigVM_Task" && this == h.appliance:
		q, ok := req.(*types.ReconfigVM_Task)
		if !ok || !h.isHotadd(&q.Spec) {
			return false, noop
		}
		h.opMu.Lock()
		defer h.opMu.Unlock()
		fault, msg := h.reconfigure(&q.Spec)
		answerTask(w, name, this, "reconfigVm", fault, msg)
		return true, noop
	case name == "Destroy_Task" && this == h.appliance:
		h.opMu.Lock()
		return false, func() {
			defer h.opMu.Unlock()
			if vmObject(h.appliance) == nil {
				h.applianceDestroyed()
			}
		}
	case ownerGuarded[name]:
		owner := this
		if name == "RemoveSnapshot_Task" || name == "RevertToSnapshot_Task" {
			owner = related
		}
		h.opMu.Lock()
		if a := h.ownerAttachment(owner); a != nil {
			defer h.opMu.Unlock()
			msg := fmt.Sprintf("Unable to access file %s since it is locked (attached to %s)", a.file, h.name)
			logf("hotadd: %s on %s refused: %s", name, a.ownerName, msg)
			answerTask(w, name, owner, taskID(name), &types.FileLocked{FileFault: types.FileFault{File: a.file}}, msg)
			return true, noop
		}
		if name == "PowerOnVM_Task" {
			if file := p.destroyedDisk(owner); file != "" {
				defer h.opMu.Unlock()
				msg := fmt.Sprintf("File %s was not found", file)
				answerTask(w, name, owner, taskID(name), &types.FileNotFound{FileFault: types.FileFault{File: file}}, msg)
				return true, noop
			}
		}
		return false, h.opMu.Unlock
	}
	return false, noop
}

// taskID names the vcsim task of a method ("PowerOnVM_Task" → "powerOnVm").
func taskID(method string) string {
	id := strings.TrimSuffix(method, "_Task")
	id = strings.Replace(id, "VM", "Vm", 1)
	return strings.ToLower(id[:1]) + id[1:]
}

// answerTask makes a vcsim task on obj that ends with fault (nil: success),
// with msg as its localized message, and answers the method with it.
func answerTask(w http.ResponseWriter, method string, obj types.ManagedObjectReference, id string, fault types.BaseMethodFault, msg string) {
	task := simulator.CreateTask(obj, id, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, fault
	})
	ref := task.Run()
	if fault != nil {
		simulator.Map.WithLock(task, func() {
			task.Info.Error = &types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
		})
	}
	writeResponse(w, method, &ref)
}

// destroyedDisk names a disk file of VM ref that a detach with
// fileOperation=destroy deleted ("" when none).
func (p *Peer) destroyedDisk(ref types.ManagedObjectReference) string {
	for _, d := range p.sortedDisks(ref) {
		d.mu.Lock()
		gone := d.destroyed
		d.mu.Unlock()
		if gone != "" {
			return gone
		}
	}
	return ""
}

// isHotadd: the spec attaches an existing disk file (add of a VirtualDisk
// with a file backing naming a file, no fileOperation) or detaches a
// hot-added disk (remove of its key).
func (h *hotadd) isHotadd(spec *types.VirtualMachineConfigSpec) bool {
	for _, ch := range spec.DeviceChange {
		if h.hotChange(ch.GetVirtualDeviceConfigSpec()) != "" {
			return true
		}
	}
	return false
}

func (h *hotadd) hotChange(ds *types.VirtualDeviceConfigSpec) string {
	if ds == nil || ds.Device == nil {
		return ""
	}
	switch ds.Operation {
	case types.VirtualDeviceConfigSpecOperationAdd:
		disk, ok := ds.Device.(*types.VirtualDisk)
		if !ok || ds.FileOperation != "" {
			return ""
		}
		fb, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			return ""
		}
		var dp object.DatastorePath
		if !dp.FromString(fb.GetVirtualDeviceFileBackingInfo().FileName) || dp.Path == "" {
			return ""
		}
		return "attach"
	case types.VirtualDeviceConfigSpecOperationRemove:
		key := ds.Device.GetVirtualDevice().Key
		if h.byKey(key) != nil {
			return "detach"
		}
		// vcsim takes the removal of a device that is not there as a
		// success; vCenter refuses it (a detach done twice).
		if vm := vmObject(h.appliance); vm != nil {
			missing := false
			simulator.Map.WithLock(vm, func() {
				missing = object.VirtualDeviceList(vm.Config.Hardware.Device).FindByKey(key) == nil
			})
			if missing {
				return "missing"
			}
		}
	}
	return ""
}

type plannedAttach struct {
	index      int
	spec       *types.VirtualDeviceConfigSpec
	disk       *types.VirtualDisk
	file       string
	d          *vdisk
	l          *layer
	owner      *simulator.VirtualMachine
	controller int32
	unit       int32
}

// reconfigure carries out a hot-add ReconfigVM_Task of the appliance: all
// its changes are checked first, and either all happen or none.
func (h *hotadd) reconfigure(spec *types.VirtualMachineConfigSpec) (types.BaseMethodFault, string) {
	rest := *spec
	rest.DeviceChange = nil
	if !reflect.DeepEqual(rest, types.VirtualMachineConfigSpec{}) {
		return &types.NotSupported{}, "The peer takes hot-add attaches and detaches in a reconfiguration of their own (no other settings)"
	}
	vm := vmObject(h.appliance)
	if vm == nil {
		return &types.ManagedObjectNotFound{Obj: h.appliance}, "The appliance is gone"
	}
	var devices object.VirtualDeviceList
	simulator.Map.WithLock(vm, func() { devices = append(devices, vm.Config.Hardware.Device...) })

	var attaches []*plannedAttach
	var detaches []*attachment
	destroy := map[*attachment]bool{}
	taken := map[[2]int32]bool{} // controller key, unit
	for _, dev := range devices {
		if v := dev.GetVirtualDevice(); v.UnitNumber != nil {
			taken[[2]int32{v.ControllerKey, *v.UnitNumber}] = true
		}
	}
	for i, ch := range spec.DeviceChange {
		ds := ch.GetVirtualDeviceConfigSpec()
		switch h.hotChange(ds) {
		case "attach":
			pa, fault, msg := h.planAttach(i, ds, devices, taken, attaches)
			if fault != nil {
				logf("hotadd: attach refused: %s", msg)
				return fault, msg
			}
			taken[[2]int32{pa.controller, pa.unit}] = true
			attaches = append(attaches, pa)
		case "detach":
			a := h.byKey(ds.Device.GetVirtualDevice().Key)
			switch ds.FileOperation {
			case "":
			case types.VirtualDeviceConfigSpecFileOperationDestroy:
				destroy[a] = true
			default:
				return &types.InvalidDeviceSpec{DeviceIndex: int32(i), InvalidVmConfig: types.InvalidVmConfig{Property: "virtualDeviceSpec.fileOperation"}},
					fmt.Sprintf("Invalid configuration for device '%d': fileOperation %q on a remove", i, ds.FileOperation)
			}
			for _, b := range detaches {
				if b == a {
					return &types.InvalidDeviceSpec{DeviceIndex: int32(i)}, fmt.Sprintf("Invalid configuration for device '%d': removed twice", i)
				}
			}
			delete(taken, [2]int32{a.controller, a.unit})
			detaches = append(detaches, a)
		case "missing":
			return &types.InvalidDeviceSpec{DeviceIndex: int32(i), InvalidVmConfig: types.InvalidVmConfig{Property: "virtualDeviceSpec.device.key"}},
				fmt.Sprintf("Invalid configuration for device '%d': no device with key %d", i, ds.Device.GetVirtualDevice().Key)
		default:
			if ds.Operation == types.VirtualDeviceConfigSpecOperationRemove && devices.FindByKey(ds.Device.GetVirtualDevice().Key) == nil {
				return &types.InvalidDeviceSpec{DeviceIndex: int32(i), InvalidVmConfig: types.InvalidVmConfig{Property: "virtualDeviceSpec.device.key"}},
					fmt.Sprintf("Invalid configuration for device '%d': no device with key %d", i, ds.Device.GetVirtualDevice().Key)
			}
			return &types.NotSupported{}, "The peer takes hot-add attaches and detaches in a reconfiguration of their own (no other device changes)"
		}
	}

	f := h.p.faults
	hidden := false
	if len(attaches) > 0 {
		switch f.hotaddFires("attach") {
		case "fail":
			pa := attaches[0]
			msg := fmt.Sprintf("Failed to add disk 'scsi%d:%d'. (injected hot-add attach fault)", h.busOf(devices, pa.controller), pa.unit)
			logf("hotadd: %s", msg)
			return &types.GenericVmConfigFault{Reason: msg}, msg
		case "no_device":
			hidden = true
		}
	}
	if len(detaches) > 0 && f.hotaddFires("detach") == "fail" {
		a := detaches[0]
		msg := fmt.Sprintf("Failed to remove disk 'scsi%d:%d'. (injected hot-add detach fault)", h.busOf(devices, a.controller), a.unit)
		logf("hotadd: %s", msg)
		return &types.GenericVmConfigFault{Reason: msg}, msg
	}

	for _, a := range detaches {
		h.detach(a, destroy[a])
	}
	var added []*attachment
	for _, pa := range attaches {
		added = append(added, h.attach(pa, hidden, devices))
	}
	h.updateDevices(vm, detaches, added, attaches)
	return nil, ""
}

func (h *hotadd) busOf(devices object.VirtualDeviceList, ctrlKey int32) int32 {
	if c, ok := devices.FindByKey(ctrlKey).(types.BaseVirtualController); ok {
		return c.GetVirtualController().BusNumber
	}
	return 0
}

// planAttach checks one attach as vCenter and ESXi would: the device spec
// first (controller, unit), then the file (exists, is a VM's disk), then
// its locks (owner running, attached elsewhere), then the chain (a
// snapshot's frozen parent cannot be attached).
func (h *hotadd) planAttach(i int, ds *types.VirtualDeviceConfigSpec, devices object.VirtualDeviceList, taken map[[2]int32]bool, earlier []*plannedAttach) (*plannedAttach, types.BaseMethodFault, string) {
	disk := ds.Device.(*types.VirtualDisk)
	file := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName
	pa := &plannedAttach{index: i, spec: ds, disk: disk, file: file}
	invalid := func(prop, why string) (*plannedAttach, types.BaseMethodFault, string) {
		return nil, &types.InvalidDeviceSpec{DeviceIndex: int32(i), InvalidVmConfig: types.InvalidVmConfig{Property: prop}},
			fmt.Sprintf("Invalid configuration for device '%d': %s", i, why)
	}

	if _, ok := devices.FindByKey(disk.ControllerKey).(types.BaseVirtualSCSIController); !ok {
		return nil, &types.InvalidController{InvalidDeviceSpec: types.InvalidDeviceSpec{DeviceIndex: int32(i)}, ControllerKey: disk.ControllerKey},
			fmt.Sprintf("Device '%d' is referring to a nonexisting controller '%d'.", i, disk.ControllerKey)
	}
	pa.controller = disk.ControllerKey
	if disk.UnitNumber == nil {
		pa.unit = -1
		for u := int32(0); u < 16; u++ {
			if u != 7 && !taken[[2]int32{pa.controller, u}] {
				pa.unit = u
				break
			}
		}
		if pa.unit < 0 {
			return invalid("virtualDeviceSpec.device.unitNumber", "no free unit on the controller")
		}
	} else {
		pa.unit = *disk.UnitNumber
		switch {
		case pa.unit == 7:
			return invalid("virtualDeviceSpec.device.unitNumber", "unit 7 is the SCSI controller's own")
		case pa.unit < 0 || pa.unit > 15:
			return invalid("virtualDeviceSpec.device.unitNumber", fmt.Sprintf("unit %d is outside 0..15", pa.unit))
		case taken[[2]int32{pa.controller, pa.unit}]:
			return invalid("virtualDeviceSpec.device.unitNumber", fmt.Sprintf("unit %d of controller %d is in use", pa.unit, pa.controller))
		}
	}

	var dp object.DatastorePath
	dp.FromString(file)
	rel := path.Clean(dp.Path)
	notFound := func() (*plannedAttach, types.BaseMethodFault, string) {
		return nil, &types.FileNotFound{FileFault: types.FileFault{File: file}}, fmt.Sprintf("File %s was not found", file)
	}
	dsDir, ok := h.p.dsDirs[dp.Datastore]
	if !ok || strings.HasPrefix(rel, "..") || strings.HasPrefix(rel, "/") {
		return notFound()
	}
	if st, err := os.Stat(dsDir + "/" + rel); err != nil || st.IsDir() {
		return notFound()
	}
	ownerRef, d, l := h.p.descriptorAt(dp.Datastore, rel)
	if d == nil {
		return invalid("virtualDeviceSpec.device.backing.fileName", fmt.Sprintf("%s is not a virtual disk of any VM", file))
	}
	pa.d, pa.l = d, l
	pa.file = d.dsPath(l)
	pa.owner = vmObject(ownerRef)
	locked := func(why string) (*plannedAttach, types.BaseMethodFault, string) {
		return nil, &types.FileLocked{FileFault: types.FileFault{File: pa.file}},
			fmt.Sprintf("Unable to access file %s since it is locked (%s)", pa.file, why)
	}
	if pa.owner == nil {
		return invalid("virtualDeviceSpec.device.backing.fileName", fmt.Sprintf("%s belongs to no VM", file))
	}
	if pa.owner.Self == h.appliance {
		return locked("it is a disk of the appliance itself")
	}
	var power types.VirtualMachinePowerState
	simulator.Map.WithLock(pa.owner, func() { power = pa.owner.Runtime.PowerState })
	if power == types.VirtualMachinePowerStatePoweredOn {
		return locked(fmt.Sprintf("VM %s is powered on", pa.owner.Name))
	}
	if a := h.p.hotaddHolding(d); a != nil {
		return locked(fmt.Sprintf("already attached to %s as device %d", h.name, a.key))
	}
	for _, e := range earlier {
		if e.d == d {
			return locked("attached twice in one reconfiguration")
		}
	}
	d.mu.Lock()
	cur := d.cur
	d.mu.Unlock()
	if l != cur {
		return invalid("virtualDeviceSpec.device.backing.fileName",
			fmt.Sprintf("%s is a frozen snapshot layer of %s, not the top of its chain (%s)", pa.file, pa.owner.Name, d.dsPath(cur)))
	}
	return pa, nil, ""
}

// descriptorAt finds the disk and layer whose descriptor is rel on ds.
func (p *Peer) descriptorAt(dsName, rel string) (types.ManagedObjectReference, *vdisk, *layer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ref, disks := range p.disks {
		if ref == p.hotaddAppliance() {
			continue // its own disks: a separate check (powered on: locked)
		}
		for _, d := range disks {
			if d.dsName != dsName {
				continue
			}
			d.mu.Lock()
			for _, l := range d.layers {
				if path.Join(d.dir, l.desc) == rel {
					d.mu.Unlock()
					return ref, d, l
				}
			}
			d.mu.Unlock()
		}
	}
	// the appliance's own disks
	for _, d := range p.disks[p.hotaddAppliance()] {
		d.mu.Lock()
		for _, l := range d.layers {
			if d.dsName == dsName && path.Join(d.dir, l.desc) == rel {
				d.mu.Unlock()
				return p.hotaddAppliance(), d, l
			}
		}
		d.mu.Unlock()
	}
	return types.ManagedObjectReference{}, nil, nil
}

func (p *Peer) hotaddAppliance() types.ManagedObjectReference {
	if p.hotadd == nil {
		return types.ManagedObjectReference{}
	}
	return p.hotadd.appliance
}

// attach records a checked attach. The device key is the first free one
// from 2000 (vCenter replaces the negative key of the spec).
func (h *hotadd) attach(pa *plannedAttach, hidden bool, devices object.VirtualDeviceList) *attachment {
	d := pa.d
	d.mu.Lock()
	a := &attachment{
		controller: pa.controller, unit: pa.unit, file: pa.file, owner: pa.owner.Self, ownerName: pa.owner.Name,
		d: d, l: pa.l, uuid: d.uuid, device: wwnName(d.uuid),
		visible: !hidden && h.fs != nil,
	}
	h.mu.Lock()
	used := map[int32]bool{}
	for _, dev := range devices {
		used[dev.GetVirtualDevice().Key] = true
	}
	for _, b := range h.attached {
		used[b.key] = true
	}
	a.key = 2000
	for used[a.key] {
		a.key++
	}
	h.nextIno++
	a.ino = h.nextIno
	h.attached = append(h.attached, a)
	h.mu.Unlock()
	d.mu.Unlock()
	h.p.stats.hotadd("attached", 1)
	logf("hotadd: attached %s (%s, %d bytes) to %s as key %d at %d:%d, device %s%s",
		a.file, a.ownerName, d.capacity, h.name, a.key, a.controller, a.unit, a.device,
		map[bool]string{true: "", false: " (no device appears)"}[a.visible])
	return a
}

// detach forgets an attachment once its I/O in flight is over; with
// destroy the attached file is deleted, as vSphere deletes it.
func (h *hotadd) detach(a *attachment, destroy bool) {
	a.io.Lock()
	a.gone = true
	a.io.Unlock()
	h.mu.Lock()
	for i, b := range h.attached {
		if b == a {
			h.attached = append(h.attached[:i], h.attached[i+1:]...)
			break
		}
	}
	h.mu.Unlock()
	if h.fs != nil {
		h.fs.removed(a)
	}
	h.p.stats.hotadd("detached", 1)
	if destroy {
		h.destroyFile(a)
	}
	logf("hotadd: detached %s (key %d)%s", a.file, a.key, map[bool]string{true: " and DESTROYED it", false: ""}[destroy])
}

// destroyFile deletes the attached file (descriptor and extent): the
// owner's disk is broken from then on.
func (h *hotadd) destroyFile(a *attachment) {
	d := a.d
	d.mu.Lock()
	os.Remove(d.path(a.l.desc))
	os.Remove(d.path(a.l.data))
	d.destroyed = a.file
	d.mu.Unlock()
	h.p.stats.hotadd("destroyed", 1)
}

// applianceDestroyed: Destroy_Task of the appliance deletes every disk it
// has, hot-added ones included, as vSphere does.
func (h *hotadd) applianceDestroyed() {
	for _, a := range h.attachments() {
		logf("hotadd: the appliance was destroyed with %s attached: deleting it, as vSphere does", a.file)
		h.detach(a, true)
	}
}

// updateDevices rewrites the appliance's devices: detached disks leave,
// attached ones join (with the owner's backing chain and uuid), and the
// controllers list their devices.
func (h *hotadd) updateDevices(vm *simulator.VirtualMachine, gone []*attachment, added []*attachment, planned []*plannedAttach) {
	simulator.Map.WithLock(vm, func() {
		var out []types.BaseVirtualDevice
		drop := map[int32]bool{}
		for _, a := range gone {
			drop[a.key] = true
		}
		for _, dev := range vm.Config.Hardware.Device {
			if !drop[dev.GetVirtualDevice().Key] {
				out = append(out, dev)
			}
		}
		ndisks := len(diskDevices(out))
		for i, a := range added {
			pa := planned[i]
			ndisks++
			tmpl := types.VirtualDiskFlatVer2BackingInfo{}
			if b, ok := pa.disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
				tmpl = *b
			}
			if tmpl.DiskMode == "" {
				tmpl.DiskMode = a.d.mode
			}
			if tmpl.DiskMode == "" {
				tmpl.DiskMode = string(types.VirtualDiskModePersistent)
			}
			if tmpl.ThinProvisioned == nil {
				tmpl.ThinProvisioned = types.NewBool(true)
			}
			tmpl.Datastore = h.p.datastoreRef(a.d.dsName)
			a.d.mu.Lock()
			backing := a.d.chain(a.l, &tmpl)
			capacity := a.d.capacity
			a.d.mu.Unlock()
			unit := a.unit
			disk := &types.VirtualDisk{
				VirtualDevice: types.VirtualDevice{
					Key:           a.key,
					DeviceInfo:    &types.Description{Label: fmt.Sprintf("Hard disk %d", ndisks), Summary: fmt.Sprintf("%d KB", capacity/1024)},
					Backing:       backing,
					ControllerKey: a.controller,
					UnitNumber:    &unit,
				},
				CapacityInKB:    capacity / 1024,
				CapacityInBytes: capacity,
			}
			out = append(out, disk)
		}
		for _, dev := range out {
			c, ok := dev.(types.BaseVirtualController)
			if !ok {
				continue
			}
			vc := c.GetVirtualController()
			var keys []int32
			for _, k := range vc.Device {
				if !drop[k] {
					keys = append(keys, k)
				}
			}
			for _, a := range added {
				if a.controller == vc.Key {
					keys = append(keys, a.key)
				}
			}
			vc.Device = keys
		}
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "config.hardware.device", Val: out},
			{Name: "summary.config.numVirtualDisks", Val: int32(len(diskDevices(out)))},
		})
	})
}

// datastoreRef finds the moref of a datastore by name.
func (p *Peer) datastoreRef(name string) *types.ManagedObjectReference {
	for _, e := range simulator.Map.All("Datastore") {
		if ds, ok := e.(*simulator.Datastore); ok && ds.Name == name {
			ref := ds.Self
			return &ref
		}
	}
	return nil
}

// --- control ---------------------------------------------------------------

type hotaddDeviceJSON struct {
	File       string `json:"file"`
	Key        int32  `json:"key"`
	Controller int32  `json:"controller"`
	Unit       int32  `json:"unit"`
	UUID       string `json:"uuid"`
	Device     string `json:"device"`
	Visible    bool   `json:"visible"`
	Owner      string `json:"owner"`
	OwnerName  string `json:"owner_name"`
	Capacity   int64  `json:"capacity"`
}

// ctlHotadd answers GET /hotadd: the appliance and what is attached to it.
func (p *Peer) ctlHotadd(w http.ResponseWriter, r *http.Request) {
	h := p.hotadd
	if h == nil {
		jsonError(w, http.StatusNotFound, "no appliance in the fixture: hot-add is off")
		return
	}
	out := map[string]interface{}{
		"appliance":      h.appliance.Value,
		"appliance_name": h.name,
		"appliance_uuid": h.uuid,
		"mounted":        h.fs != nil,
		"dir":            h.dir,
	}
	if h.mountErr != "" {
		out["error"] = h.mountErr
	}
	list := []hotaddDeviceJSON{}
	for _, a := range h.attachments() {
		list = append(list, hotaddDeviceJSON{File: a.file, Key: a.key, Controller: a.controller, Unit: a.unit, UUID: a.uuid,
			Device: a.device, Visible: a.visible, Owner: a.owner.Value, OwnerName: a.ownerName, Capacity: a.d.capacity})
	}
	out["attached"] = list
	writeJSON(w, http.StatusOK, out)
}
