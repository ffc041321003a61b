package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"reflect"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// A VM as old as the hills, and one of the same name in another folder.
const legacyFixture = `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"],"folders":["empty/deep"]}],
 "vms":[{"name":"legacy01","folder":"apps","host":"H0","cpus":4,"cores_per_socket":2,"memory_mb":3072,
         "guest_id":"windows9_64Guest","hw_version":"vmx-14","firmware":"efi","secure_boot":true,
         "controller":"lsilogic","cdrom":true,"floppy":true,
         "nics":[{"network":"VM Network","model":"e1000","mac":"00:50:56:01:02:03"},"VM Network"],
         "extra_config":{"disk.EnableUUID":"TRUE","guestinfo.note":"x"},
         "disks":[{"capacity":1048576,"seed":1},{"capacity":2097152,"seed":2}]},
        {"name":"legacy01","host":"H0","disks":[{"capacity":1048576,"seed":3}]}]}`

func vmsByFolder(t *testing.T, p *peer) map[string]vmJSON {
	var vms []vmJSON
	p.ctl("GET", "/vms", nil, &vms)
	out := map[string]vmJSON{}
	for _, v := range vms {
		out[v.Folder+"/"+v.Name] = v
	}
	return out
}

func TestFixtureHardware(t *testing.T) {
	p := startPeer(t, legacyFixture)
	vms := vmsByFolder(t, p)
	v, ok := vms["apps/legacy01"]
	if !ok || len(vms) != 2 {
		t.Fatalf("want legacy01 in apps and in the VM folder, got %v", vms)
	}
	if _, ok := vms["/legacy01"]; !ok {
		t.Fatalf("no legacy01 in the VM folder: %v", vms)
	}
	hw := v.Hardware
	if hw.Firmware != "efi" || !hw.SecureBoot || hw.CPUs != 4 || hw.CoresPerSocket != 2 || hw.MemoryMB != 3072 ||
		hw.Version != "vmx-14" || hw.GuestID != "windows9_64Guest" {
		t.Errorf("machine: %+v", hw)
	}
	if len(hw.NICs) != 2 || hw.NICs[0].Model != "VirtualE1000" || hw.NICs[0].MAC != "00:50:56:01:02:03" ||
		hw.NICs[0].AddressType != "manual" || hw.NICs[1].Model != "VirtualVmxnet3" || hw.NICs[1].MAC == "" {
		t.Errorf("nics: %+v", hw.NICs)
	}
	want := []hwDisk{{"VirtualLsiLogicController:0", 0, 1048576, true}, {"VirtualLsiLogicController:0", 1, 2097152, true}}
	if !reflect.DeepEqual(hw.Disks, want) {
		t.Errorf("disks: %+v", hw.Disks)
	}
	if len(hw.CDROMs) != 1 || hw.CDROMs[0].Controller != "VirtualIDEController:1" || hw.CDROMs[0].Unit != 0 ||
		len(hw.Floppies) != 1 || hw.Floppies[0].Controller != "VirtualSIOController:0" {
		t.Errorf("drives: %+v %+v", hw.CDROMs, hw.Floppies)
	}
	if hw.ExtraConfig["disk.EnableUUID"] != "TRUE" {
		t.Errorf("extraConfig: %v", hw.ExtraConfig)
	}

	// The same, read through the SOAP API by the hardware client.
	cmd := exec.Command(peerBin, "hardware", "-url", p.URL, "-vm", "legacy01", "-folder", "apps")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hardware query: %v: %s", err, stderr.String())
	}
	var q hardware
	if err := json.Unmarshal(out, &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(q, hw) {
		t.Errorf("SOAP says\n%+v\n/vms says\n%+v", q, hw)
	}
}

// CreateVM_Task as the engine sends it: every device stays as given.
func TestCreateVMKeepsDevices(t *testing.T) {
	p := startPeer(t, `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"],"folders":["moved"]}],"vms":[]}`)
	ctx := context.Background()
	c := p.client(ctx)
	f := find.NewFinder(c.Client, true)
	dc, _ := f.Datacenter(ctx, "DC0")
	f.SetDatacenter(dc)
	host, _ := f.HostSystem(ctx, "H0")
	pool, _ := host.ResourcePool(ctx)
	folder, err := f.Folder(ctx, "vm/moved")
	if err != nil {
		t.Fatal(err)
	}
	u0, u1, u3 := int32(0), int32(1), int32(3)
	remote := func() *types.VirtualDeviceConnectInfo {
		return &types.VirtualDeviceConnectInfo{AllowGuestControl: true}
	}
	nic := func(card types.BaseVirtualEthernetCard, key int32, mac string) types.BaseVirtualDevice {
		e := card.GetVirtualEthernetCard()
		e.Key = key
		e.Backing = &types.VirtualEthernetCardNetworkBackingInfo{VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"}}
		e.SlotInfo = &types.VirtualDevicePciBusSlotInfo{PciSlotNumber: 192}
		e.AddressType = "generated"
		if mac != "" {
			e.AddressType, e.MacAddress = "manual", mac
		}
		return card.(types.BaseVirtualDevice)
	}
	disk := func(key int32, ctrl int32, unit *int32, capacity int64) types.BaseVirtualDevice {
		return &types.VirtualDisk{VirtualDevice: types.VirtualDevice{Key: key, ControllerKey: ctrl, UnitNumber: unit,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: "[ds0]"},
				DiskMode: "persistent", ThinProvisioned: types.NewBool(true)}},
			CapacityInBytes: capacity, CapacityInKB: capacity / 1024}
	}
	devs := []types.BaseVirtualDevice{
		&types.VirtualLsiLogicSASController{VirtualSCSIController: types.VirtualSCSIController{SharedBus: "noSharing",
			VirtualController: types.VirtualController{BusNumber: 1, VirtualDevice: types.VirtualDevice{Key: -100}}}},
		&types.VirtualAHCIController{VirtualSATAController: types.VirtualSATAController{
			VirtualController: types.VirtualController{BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: -101}}}},
		disk(-200, -100, &u3, 1048576),
		disk(-201, -100, &u0, 2097152),
		&types.VirtualCdrom{VirtualDevice: types.VirtualDevice{Key: -400, ControllerKey: -101, UnitNumber: &u1,
			Backing: &types.VirtualCdromRemotePassthroughBackingInfo{}, Connectable: remote()}},
		&types.VirtualCdrom{VirtualDevice: types.VirtualDevice{Key: -401, ControllerKey: 201, UnitNumber: &u0,
			Backing: &types.VirtualCdromRemotePassthroughBackingInfo{}, Connectable: remote()}},
		&types.VirtualFloppy{VirtualDevice: types.VirtualDevice{Key: -500, ControllerKey: 400, UnitNumber: &u0,
			Backing: &types.VirtualFloppyRemoteDeviceBackingInfo{}, Connectable: remote()}},
		nic(&types.VirtualE1000{}, -300, "00:50:56:0a:0b:0c"),
		nic(&types.VirtualPCNet32{}, -301, ""),
	}
	spec := types.VirtualMachineConfigSpec{Name: "copy01", GuestId: "windows9_64Guest", Version: "vmx-14", NumCPUs: 4,
		NumCoresPerSocket: 2, MemoryMB: 1024, Firmware: "efi",
		BootOptions: &types.VirtualMachineBootOptions{EfiSecureBootEnabled: types.NewBool(true)},
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: "disk.EnableUUID", Value: "TRUE"}},
		Files:       &types.VirtualMachineFileInfo{VmPathName: "[ds0]"}}
	for _, d := range devs {
		ds := &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: d}
		if _, ok := d.(*types.VirtualDisk); ok {
			ds.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		}
		spec.DeviceChange = append(spec.DeviceChange, ds)
	}
	task, err := folder.CreateVM(ctx, spec, pool, host)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.WaitForResult(ctx, nil); err != nil {
		t.Fatal(err)
	}

	v, ok := vmsByFolder(t, p)["moved/copy01"]
	if !ok {
		t.Fatalf("copy01 is not in folder moved")
	}
	hw := v.Hardware
	if hw.Firmware != "efi" || !hw.SecureBoot || hw.CPUs != 4 || hw.CoresPerSocket != 2 || hw.Version != "vmx-14" ||
		hw.ExtraConfig["disk.EnableUUID"] != "TRUE" {
		t.Errorf("machine: %+v", hw)
	}
	wantDisks := []hwDisk{{"VirtualLsiLogicSASController:1", 3, 1048576, true}, {"VirtualLsiLogicSASController:1", 0, 2097152, true}}
	if !reflect.DeepEqual(hw.Disks, wantDisks) {
		t.Errorf("disks: %+v", hw.Disks)
	}
	wantDrives := []hwDrive{{"VirtualAHCIController:0", 1, "VirtualCdromRemotePassthroughBackingInfo", false},
		{"VirtualIDEController:1", 0, "VirtualCdromRemotePassthroughBackingInfo", false}}
	if !reflect.DeepEqual(hw.CDROMs, wantDrives) {
		t.Errorf("cdroms: %+v", hw.CDROMs)
	}
	if len(hw.Floppies) != 1 || hw.Floppies[0].Controller != "VirtualSIOController:0" || hw.Floppies[0].StartConnected {
		t.Errorf("floppies: %+v", hw.Floppies)
	}
	if len(hw.NICs) != 2 || hw.NICs[0].Model != "VirtualE1000" || hw.NICs[0].MAC != "00:50:56:0a:0b:0c" ||
		hw.NICs[0].AddressType != "manual" || hw.NICs[0].PCISlot != 192 {
		t.Errorf("manual nic: %+v", hw.NICs)
	}
	if len(hw.NICs) == 2 && (hw.NICs[1].Model != "VirtualPCNet32" || hw.NICs[1].MAC == "" || hw.NICs[1].AddressType != "assigned") {
		t.Errorf("generated nic: %+v", hw.NICs[1])
	}

	// What it was given, as given.
	var given hardware
	if code := p.ctl("GET", "/created?vm=copy01", nil, &given); code != 200 {
		t.Fatalf("/created: %d", code)
	}
	if len(given.Disks) != 2 || given.Disks[0].Controller != "VirtualLsiLogicSASController:1" || given.Disks[0].Unit != 3 ||
		len(given.CDROMs) != 2 || given.CDROMs[1].Controller != "default:201" || given.NICs[1].MAC != "" {
		t.Errorf("/created: %+v", given)
	}
	// Every controller lists its devices, as ESXi's do.
	vm := object.NewVirtualMachine(c.Client, findVM(ctx, t, c.Client, "copy01").Reference())
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.hardware.device"}, &m); err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Config.Hardware.Device {
		if sas, ok := d.(*types.VirtualLsiLogicSASController); ok && len(sas.Device) != 2 {
			t.Errorf("SAS controller lists %v", sas.Device)
		}
	}
	if code := p.ctl("GET", "/created?vm=nope", nil, nil); code != 404 {
		t.Errorf("/created of an unknown VM: %d", code)
	}
}
