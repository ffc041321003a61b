package main

// A VM's hardware as ESXi keeps it: fixture VMs get the devices a real VM
// has (NIC models with static or generated MACs, any SCSI controller,
// CD-ROM and floppy drives, EFI firmware with secure boot, cores per
// socket, extraConfig), and a VM made through CreateVM_Task keeps every
// device as it was given. What CreateVM_Task was given is kept per VM and
// reported (GET /created), beside what the VM now has (GET /vms,
// "hardware"), so tests can see both.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// fixtureNIC is a network name ("VM Network": a vmxnet3 card with a
// generated MAC) or {"network","model","mac"}: model e1000, e1000e,
// vmxnet2, vmxnet3, pcnet32, sriov; a mac is a manual (static) one.
type fixtureNIC struct {
	Network string `json:"network"`
	Model   string `json:"model"`
	MAC     string `json:"mac"`
}

func (n *fixtureNIC) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*n = fixtureNIC{Network: s}
		return nil
	}
	type plain fixtureNIC
	var v plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	*n = fixtureNIC(v)
	return nil
}

var nicModels = map[string]func() types.BaseVirtualEthernetCard{
	"e1000":   func() types.BaseVirtualEthernetCard { return &types.VirtualE1000{} },
	"e1000e":  func() types.BaseVirtualEthernetCard { return &types.VirtualE1000e{} },
	"vmxnet2": func() types.BaseVirtualEthernetCard { return &types.VirtualVmxnet2{} },
	"vmxnet3": func() types.BaseVirtualEthernetCard { return &types.VirtualVmxnet3{} },
	"pcnet32": func() types.BaseVirtualEthernetCard { return &types.VirtualPCNet32{} },
	"sriov":   func() types.BaseVirtualEthernetCard { return &types.VirtualSriovEthernetCard{} },
}

// fixtureNICDevice builds card i of a fixture VM.
func fixtureNICDevice(i int, n fixtureNIC) (types.BaseVirtualDevice, error) {
	model := n.Model
	if model == "" {
		model = "vmxnet3"
	}
	mk, ok := nicModels[model]
	if !ok {
		return nil, fmt.Errorf("nic %d: unknown model %q", i, model)
	}
	card := mk()
	c := card.GetVirtualEthernetCard()
	c.Key = 4000 + int32(i)
	c.DeviceInfo = &types.Description{Label: fmt.Sprintf("Network adapter %d", i+1), Summary: n.Network}
	c.Backing = &types.VirtualEthernetCardNetworkBackingInfo{
		VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: n.Network},
	}
	c.Connectable = &types.VirtualDeviceConnectInfo{StartConnected: true, AllowGuestControl: true, Connected: true}
	c.SlotInfo = &types.VirtualDevicePciBusSlotInfo{PciSlotNumber: 160 + 32*int32(i)}
	if n.MAC != "" {
		c.AddressType = string(types.VirtualEthernetCardMacTypeManual)
		c.MacAddress = n.MAC
	} else {
		c.AddressType = string(types.VirtualEthernetCardMacTypeGenerated)
	}
	return card.(types.BaseVirtualDevice), nil
}

// fixtureDrives adds an empty CD-ROM (IDE 1:0, as a VM from the vSphere
// Client has it) and an empty floppy (SIO, unit 0).
func fixtureDrives(fv *fixtureVM, devices object.VirtualDeviceList) object.VirtualDeviceList {
	unit := int32(0)
	if fv.CDROM {
		devices = append(devices, &types.VirtualCdrom{VirtualDevice: types.VirtualDevice{
			Key:         3000,
			DeviceInfo:  &types.Description{Label: "CD/DVD drive 1", Summary: "Remote device"},
			Backing:     &types.VirtualCdromRemotePassthroughBackingInfo{},
			Connectable: &types.VirtualDeviceConnectInfo{AllowGuestControl: true},
			// 201: the second of the IDE controllers every VM has
			ControllerKey: 201,
			UnitNumber:    &unit,
		}})
	}
	if fv.Floppy {
		devices = append(devices, &types.VirtualFloppy{VirtualDevice: types.VirtualDevice{
			Key:           8000,
			DeviceInfo:    &types.Description{Label: "Floppy drive 1", Summary: "Remote"},
			Backing:       &types.VirtualFloppyRemoteDeviceBackingInfo{},
			Connectable:   &types.VirtualDeviceConnectInfo{AllowGuestControl: true},
			ControllerKey: 400,
			UnitNumber:    &unit,
		}})
	}
	return devices
}

// fixtureSpec adds the fixture's firmware, topology and extraConfig.
func fixtureSpec(fv *fixtureVM, spec *types.VirtualMachineConfigSpec) error {
	switch fv.Firmware {
	case "", "bios", "efi":
	default:
		return fmt.Errorf("unknown firmware %q (bios or efi)", fv.Firmware)
	}
	if fv.SecureBoot && fv.Firmware != "efi" {
		return fmt.Errorf("secure_boot needs firmware efi")
	}
	spec.Firmware = fv.Firmware
	if fv.Firmware == "efi" {
		spec.BootOptions = &types.VirtualMachineBootOptions{EfiSecureBootEnabled: types.NewBool(fv.SecureBoot)}
	}
	if fv.CoresPerSocket > 0 {
		if fv.CPUs%fv.CoresPerSocket != 0 {
			return fmt.Errorf("cpus %d is not a multiple of cores_per_socket %d", fv.CPUs, fv.CoresPerSocket)
		}
		spec.NumCoresPerSocket = fv.CoresPerSocket
	}
	keys := make([]string, 0, len(fv.ExtraConfig))
	for k := range fv.ExtraConfig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: k, Value: fv.ExtraConfig[k]})
	}
	return nil
}

// --- what ESXi does with a new VM's devices ---------------------------------

// afterCreateVM keeps what the call was given and makes the devices what
// ESXi would have made of them: a NIC without a MAC gets one from the
// platform ("assigned", vCenter's kind), a manual MAC stays as it is, and
// every controller lists the devices on it.
func (p *Peer) afterCreateVM(ref types.ManagedObjectReference, req *types.CreateVM_Task) {
	vm := vmObject(ref)
	if vm == nil {
		return
	}
	given := hardwareOfSpec(&req.Config)
	p.mu.Lock()
	p.given[ref] = given
	p.mu.Unlock()
	simulator.Map.WithLock(vm, func() {
		devs := object.VirtualDeviceList(vm.Config.Hardware.Device)
		for _, d := range devs {
			if c, ok := d.(types.BaseVirtualEthernetCard); ok {
				e := c.GetVirtualEthernetCard()
				if e.AddressType != string(types.VirtualEthernetCardMacTypeManual) {
					e.AddressType = string(types.VirtualEthernetCardMacTypeAssigned)
				}
			}
		}
		for _, d := range devs {
			c, ok := d.(types.BaseVirtualController)
			if !ok {
				continue
			}
			vc := c.GetVirtualController()
			vc.Device = nil
			for _, child := range devs {
				if child.GetVirtualDevice().ControllerKey == vc.Key {
					vc.Device = append(vc.Device, child.GetVirtualDevice().Key)
				}
			}
		}
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: []types.BaseVirtualDevice(devs)}})
	})
}

// --- a VM's hardware, for comparing two VMs ------------------------------

type hwController struct {
	Type string `json:"type"`
	Bus  int32  `json:"bus"`
}

type hwDisk struct {
	Controller string `json:"controller"` // "VirtualLsiLogicController:0"
	Unit       int32  `json:"unit"`
	Capacity   int64  `json:"capacity"`
	Thin       bool   `json:"thin"`
}

type hwNIC struct {
	Model       string `json:"model"`
	MAC         string `json:"mac"`
	AddressType string `json:"address_type"`
	Network     string `json:"network"`
	PCISlot     int32  `json:"pci_slot"`
}

type hwDrive struct {
	Controller     string `json:"controller"`
	Unit           int32  `json:"unit"`
	Backing        string `json:"backing"`
	StartConnected bool   `json:"start_connected"`
}

type hardware struct {
	Version        string            `json:"version"`
	GuestID        string            `json:"guest_id"`
	Firmware       string            `json:"firmware"`
	SecureBoot     bool              `json:"secure_boot"`
	CPUs           int32             `json:"cpus"`
	CoresPerSocket int32             `json:"cores_per_socket"`
	MemoryMB       int64             `json:"memory_mb"`
	Controllers    []hwController    `json:"controllers"`
	Disks          []hwDisk          `json:"disks"`
	NICs           []hwNIC           `json:"nics"`
	CDROMs         []hwDrive         `json:"cdroms"`
	Floppies       []hwDrive         `json:"floppies"`
	ExtraConfig    map[string]string `json:"extra_config"`
}

func typeName(v interface{}) string {
	s := fmt.Sprintf("%T", v)
	return s[strings.LastIndex(s, ".")+1:]
}

// hardwareOf describes devices; controllers every VM has (IDE, SIO, PCI,
// PS/2) are listed too, so that drives can name theirs.
func hardwareOf(devs []types.BaseVirtualDevice, extra []types.BaseOptionValue) hardware {
	hw := hardware{Controllers: []hwController{}, Disks: []hwDisk{}, NICs: []hwNIC{}, CDROMs: []hwDrive{},
		Floppies: []hwDrive{}, ExtraConfig: map[string]string{}}
	ctrl := map[int32]string{}
	for _, d := range devs {
		if c, ok := d.(types.BaseVirtualController); ok {
			vc := c.GetVirtualController()
			ctrl[vc.Key] = fmt.Sprintf("%s:%d", typeName(d), vc.BusNumber)
			hw.Controllers = append(hw.Controllers, hwController{Type: typeName(d), Bus: vc.BusNumber})
		}
	}
	unit := func(d *types.VirtualDevice) int32 {
		if d.UnitNumber == nil {
			return -1
		}
		return *d.UnitNumber
	}
	at := func(d *types.VirtualDevice) string {
		if s, ok := ctrl[d.ControllerKey]; ok {
			return s
		}
		return fmt.Sprintf("unknown:%d", d.ControllerKey)
	}
	drive := func(d *types.VirtualDevice) hwDrive {
		dr := hwDrive{Controller: at(d), Unit: unit(d), Backing: typeName(d.Backing)}
		if d.Connectable != nil {
			dr.StartConnected = d.Connectable.StartConnected
		}
		return dr
	}
	for _, d := range devs {
		vd := d.GetVirtualDevice()
		switch x := d.(type) {
		case *types.VirtualDisk:
			hd := hwDisk{Controller: at(vd), Unit: unit(vd), Capacity: capacityOf(x)}
			if b, ok := x.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && b.ThinProvisioned != nil {
				hd.Thin = *b.ThinProvisioned
			}
			hw.Disks = append(hw.Disks, hd)
		case types.BaseVirtualEthernetCard:
			e := x.GetVirtualEthernetCard()
			n := hwNIC{Model: typeName(d), MAC: e.MacAddress, AddressType: e.AddressType}
			if b, ok := e.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok {
				n.Network = b.DeviceName
			}
			if s, ok := e.SlotInfo.(*types.VirtualDevicePciBusSlotInfo); ok {
				n.PCISlot = s.PciSlotNumber
			}
			hw.NICs = append(hw.NICs, n)
		case *types.VirtualCdrom:
			hw.CDROMs = append(hw.CDROMs, drive(vd))
		case *types.VirtualFloppy:
			hw.Floppies = append(hw.Floppies, drive(vd))
		}
	}
	for _, o := range extra {
		v := o.GetOptionValue()
		hw.ExtraConfig[v.Key] = fmt.Sprint(v.Value)
	}
	return hw
}

func hardwareOfVM(vm *simulator.VirtualMachine) hardware {
	var hw hardware
	simulator.Map.WithLock(vm, func() {
		c := vm.Config
		hw = hardwareOf(c.Hardware.Device, c.ExtraConfig)
		hw.Version, hw.GuestID, hw.Firmware = c.Version, c.GuestId, c.Firmware
		hw.CPUs, hw.CoresPerSocket, hw.MemoryMB = c.Hardware.NumCPU, c.Hardware.NumCoresPerSocket, int64(c.Hardware.MemoryMB)
		if c.BootOptions != nil && c.BootOptions.EfiSecureBootEnabled != nil {
			hw.SecureBoot = *c.BootOptions.EfiSecureBootEnabled
		}
	})
	return hw
}

// hardwareOfSpec describes a CreateVM_Task spec as it came: controllers it
// refers to but does not add (IDE, SIO) show as "default:<key>".
func hardwareOfSpec(s *types.VirtualMachineConfigSpec) hardware {
	var devs []types.BaseVirtualDevice
	for _, ch := range s.DeviceChange {
		devs = append(devs, ch.GetVirtualDeviceConfigSpec().Device)
	}
	hw := hardwareOf(devs, s.ExtraConfig)
	for i := range hw.Disks {
		hw.Disks[i].Controller = strings.Replace(hw.Disks[i].Controller, "unknown:", "default:", 1)
	}
	for _, l := range [][]hwDrive{hw.CDROMs, hw.Floppies} {
		for i := range l {
			l[i].Controller = strings.Replace(l[i].Controller, "unknown:", "default:", 1)
		}
	}
	hw.Version, hw.GuestID, hw.Firmware = s.Version, s.GuestId, s.Firmware
	hw.CPUs, hw.CoresPerSocket, hw.MemoryMB = s.NumCPUs, s.NumCoresPerSocket, s.MemoryMB
	if s.BootOptions != nil && s.BootOptions.EfiSecureBootEnabled != nil {
		hw.SecureBoot = *s.BootOptions.EfiSecureBootEnabled
	}
	return hw
}

// ctlCreated answers GET /created?vm=NAME: what CreateVM_Task was given
// for that VM (404 for a VM made otherwise, e.g. from the fixture).
func (p *Peer) ctlCreated(w http.ResponseWriter, r *http.Request) {
	vm := p.findVM(r.URL.Query().Get("vm"))
	if vm == nil {
		jsonError(w, http.StatusNotFound, "unknown vm %q", r.URL.Query().Get("vm"))
		return
	}
	p.mu.Lock()
	hw, ok := p.given[vm.Self]
	p.mu.Unlock()
	if !ok {
		jsonError(w, http.StatusNotFound, "vm %q was not made by CreateVM_Task", vm.Name)
		return
	}
	writeJSON(w, http.StatusOK, hw)
}

// hardwareQuery is `vmferry-peer hardware -url URL -vm NAME [-folder PATH]`:
// a client, not the peer. It logs in to a vSphere SOAP endpoint (any, the
// peer included), reads the VM's configuration through the property
// collector, as govc would, and prints its hardware as JSON (the shape of
// GET /vms "hardware"), so that tests compare two VMs by what the SOAP
// API says rather than by the peer's own model.
func hardwareQuery(args []string) int {
	fs := flag.NewFlagSet("hardware", flag.ContinueOnError)
	u := fs.String("url", "", "SOAP endpoint, https://127.0.0.1:PORT/sdk")
	user := fs.String("user", "user", "login user")
	pass := fs.String("password", "pass", "login password")
	name := fs.String("vm", "", "VM name")
	dcName := fs.String("datacenter", "DC0", "datacenter")
	folder := fs.String("folder", "", "VM folder path below the datacenter's (\"\": the VM folder itself)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx := context.Background()
	pu, err := url.Parse(*u)
	if err != nil || *name == "" {
		fmt.Fprintln(os.Stderr, "usage: vmferry-peer hardware -url URL -vm NAME [-folder PATH]")
		return 2
	}
	pu.User = url.UserPassword(*user, *pass)
	c, err := govmomi.NewClient(ctx, pu, true) // loopback test peers: self-signed
	if err != nil {
		fmt.Fprintln(os.Stderr, "login:", err)
		return 1
	}
	f := find.NewFinder(c.Client, true)
	dc, err := f.Datacenter(ctx, *dcName)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f.SetDatacenter(dc)
	path := *name
	if *folder != "" {
		path = *folder + "/" + *name
	}
	vm, err := f.VirtualMachine(ctx, "/"+*dcName+"/vm/"+path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config"}, &m); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := m.Config
	hw := hardwareOf(cfg.Hardware.Device, cfg.ExtraConfig)
	hw.Version, hw.GuestID, hw.Firmware = cfg.Version, cfg.GuestId, cfg.Firmware
	hw.CPUs, hw.CoresPerSocket, hw.MemoryMB = cfg.Hardware.NumCPU, cfg.Hardware.NumCoresPerSocket, int64(cfg.Hardware.MemoryMB)
	if cfg.BootOptions != nil && cfg.BootOptions.EfiSecureBootEnabled != nil {
		hw.SecureBoot = *cfg.BootOptions.EfiSecureBootEnabled
	}
	out, _ := json.Marshal(hw)
	fmt.Println(string(out))
	return 0
}
