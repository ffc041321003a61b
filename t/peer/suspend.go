package main

// Suspend and resume with memory state, as ESXi keeps it: SuspendVM_Task
// writes the guest's memory to a .vmss file in the VM's directory (listed
// in layoutEx.file with type "suspend"); PowerOnVM_Task resumes from the
// file named by the VM's extraConfig "checkpoint.vmState" (relative to the
// VM's directory), or from its own suspend file, and then deletes it. The
// peer records the SHA-256 of the state each VM resumed from, so a test can
// check that a migrated VM came up with the source's memory.

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

const vmStateKey = "checkpoint.vmState"

// vmDir is the VM's directory on the local disk and as a datastore path.
func (p *Peer) vmDir(vm *simulator.VirtualMachine) (local string, ds object.DatastorePath, ok bool) {
	var vmx string
	simulator.Map.WithLock(vm, func() {
		if vm.Config != nil {
			vmx = vm.Config.Files.VmPathName
		}
	})
	var dp object.DatastorePath
	if !dp.FromString(vmx) {
		return "", dp, false
	}
	p.mu.Lock()
	root, found := p.dsDirs[dp.Datastore]
	p.mu.Unlock()
	if !found {
		return "", dp, false
	}
	dp.Path = filepath.Dir(dp.Path)
	return filepath.Join(root, dp.Path), dp, true
}

// suspendFile is the local path of the memory state the VM would resume
// from, or "".
func (p *Peer) suspendFile(vm *simulator.VirtualMachine) string {
	dir, _, ok := p.vmDir(vm)
	if !ok {
		return ""
	}
	var name string
	simulator.Map.WithLock(vm, func() {
		if vm.Config == nil {
			return
		}
		for _, o := range vm.Config.ExtraConfig {
			if v := o.GetOptionValue(); v.Key == vmStateKey {
				if s, ok := v.Value.(string); ok {
					name = s
				}
			}
		}
	})
	if name == "" {
		name = vm.Name + ".vmss"
	}
	f := filepath.Join(dir, filepath.Clean("/" + name)[1:])
	if !fileExists(f) {
		return ""
	}
	return f
}

func fileSHA256(file string) string {
	if file == "" {
		return ""
	}
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// afterSuspend writes the memory state (after() then lists it in layoutEx).
func (p *Peer) afterSuspend(ref types.ManagedObjectReference) {
	vm := vmObject(ref)
	if vm == nil {
		return
	}
	dir, _, ok := p.vmDir(vm)
	if !ok {
		return
	}
	p.writeMemoryImage(filepath.Join(dir, vm.Name+".vmss"), vm)
}

// listSuspendFile, run by after() on every VM a call touched, makes
// layoutEx.file list the VM's own suspend file, if it has one, once and
// under its right name (vcsim's storage refresh, run on snapshot
// operations, lists directory files without their directory).
func (p *Peer) listSuspendFile(vm *simulator.VirtualMachine) {
	dir, ds, ok := p.vmDir(vm)
	if !ok {
		return
	}
	st, err := os.Stat(filepath.Join(dir, vm.Name+".vmss"))
	name := ds.String() + "/" + vm.Name + ".vmss"
	suspend := string(types.VirtualMachineFileLayoutExFileTypeSuspend)
	simulator.Map.WithLock(vm, func() {
		if vm.LayoutEx == nil {
			return
		}
		var keep []types.VirtualMachineFileLayoutExFileInfo
		key := int32(0)
		for _, f := range vm.LayoutEx.File {
			if f.Key >= key {
				key = f.Key + 1
			}
			if f.Type != suspend {
				keep = append(keep, f)
			}
		}
		if err == nil {
			keep = append(keep, types.VirtualMachineFileLayoutExFileInfo{
				Key: key, Name: name, Type: suspend, Size: st.Size(), UniqueSize: st.Size(),
				Accessible: types.NewBool(true),
			})
		}
		vm.LayoutEx.File = keep
	})
}

// afterPowerOn resumes from the memory state, if there is one.
func (p *Peer) afterPowerOn(ref types.ManagedObjectReference) {
	vm := vmObject(ref)
	if vm == nil {
		return
	}
	file := p.suspendFile(vm)
	sum := fileSHA256(file)
	if sum == "" {
		return
	}
	os.Remove(file)
	simulator.Map.WithLock(vm, func() {
		if vm.Config != nil {
			var keep []types.BaseOptionValue
			for _, o := range vm.Config.ExtraConfig {
				if o.GetOptionValue().Key != vmStateKey {
					keep = append(keep, o)
				}
			}
			vm.Config.ExtraConfig = keep
		}
	})
	p.mu.Lock()
	p.resumed[ref] = sum
	p.mu.Unlock()
	logf("%s resumed from its memory state (sha256 %s)", vm.Name, sum[:12])
}
