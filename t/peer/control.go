package main

// The control endpoint: plain HTTP on 127.0.0.1, JSON in and out. It lets
// tests act as the guest (writes), look at disks and snapshots, read the
// counters and switch faults at run time.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.Encode(v)
}

func jsonError(w http.ResponseWriter, status int, format string, args ...interface{}) {
	writeJSON(w, status, map[string]interface{}{"ok": false, "error": fmt.Sprintf(format, args...)})
}

func (p *Peer) controlHandler() http.Handler {
	mux := http.NewServeMux()
	post := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				jsonError(w, http.StatusMethodNotAllowed, "use POST")
				return
			}
			h(w, r)
		}
	}
	get := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				jsonError(w, http.StatusMethodNotAllowed, "use GET")
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]interface{}{"ok": true})
	})
	mux.HandleFunc("/write", post(p.ctlWrite))
	mux.HandleFunc("/disk", get(p.ctlDisk))
	mux.HandleFunc("/snapshots", get(p.ctlSnapshots))
	mux.HandleFunc("/vms", get(p.ctlVMs))
	mux.HandleFunc("/created", get(p.ctlCreated))
	mux.HandleFunc("/stats", get(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.stats)
	}))
	mux.HandleFunc("/stats/reset", post(func(w http.ResponseWriter, r *http.Request) {
		p.stats.reset()
		writeJSON(w, http.StatusOK, map[string]interface{}{"ok": true})
	}))
	mux.HandleFunc("/fault", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, p.faultView())
		case http.MethodPost:
			var req faultRequest
			dec := json.NewDecoder(r.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				jsonError(w, http.StatusBadRequest, "bad fault request: %v", err)
				return
			}
			if err := p.applyFault(&req); err != nil {
				status := http.StatusNotFound
				if _, ok := err.(badFault); ok {
					status = http.StatusBadRequest
				}
				jsonError(w, status, "%v", err)
				return
			}
			logf("fault set: %+v", p.faults.snapshot())
			writeJSON(w, http.StatusOK, map[string]interface{}{"ok": true, "faults": p.faultView()})
		default:
			jsonError(w, http.StatusMethodNotAllowed, "use GET or POST")
		}
	})
	mux.HandleFunc("/power", post(p.ctlPower))
	mux.HandleFunc("/hotadd", get(p.ctlHotadd))
	return mux
}

type writeRequest struct {
	VM      string   `json:"vm"`
	Disk    int      `json:"disk"`
	Offset  *int64   `json:"offset"`
	Length  int64    `json:"length"`
	Percent *float64 `json:"percent"`
	Seed    int64    `json:"seed"`
	Fill    string   `json:"fill"`    // "random" (default) or "zero"
	Running bool     `json:"running"` // only while the VM is powered on (409 otherwise)
	Gen     *int64   `json:"gen"`     // rewrite the generation sector (LBA 1) of a bootable disk (boot.go)
}

func (p *Peer) diskByIndex(w http.ResponseWriter, vmName string, index int) (*simulator.VirtualMachine, *vdisk, bool) {
	vm := p.findVM(vmName)
	if vm == nil {
		jsonError(w, http.StatusNotFound, "unknown vm %q", vmName)
		return nil, nil, false
	}
	disks := p.sortedDisks(vm.Self)
	if index < 0 || index >= len(disks) {
		jsonError(w, http.StatusNotFound, "vm %s has no disk %d", vmName, index)
		return nil, nil, false
	}
	return vm, disks[index], true
}

// ctlWrite performs a guest write: stream bytes for seed at the given disk
// offsets (byte o of the disk gets stream byte o), or percent% of the
// disk's grains, chosen by seed, rewritten whole, or the generation sector
// of a bootable disk rewritten for gen.
func (p *Peer) ctlWrite(w http.ResponseWriter, r *http.Request) {
	var req writeRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "bad write request: %v", err)
		return
	}
	vm, d, ok := p.diskByIndex(w, req.VM, req.Disk)
	if !ok {
		return
	}
	if req.Running {
		// A guest writes only while it runs: held against power changes,
		// the write is wholly before a power-off or refused.
		p.guestMu.Lock()
		defer p.guestMu.Unlock()
		var power types.VirtualMachinePowerState
		simulator.Map.WithLock(vm, func() { power = vm.Runtime.PowerState })
		if power != types.VirtualMachinePowerStatePoweredOn {
			jsonError(w, http.StatusConflict, "vm %s is %s: a running guest's write needs it powered on", req.VM, power)
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fill := func(b []byte, off int64) {
		if req.Fill == "zero" {
			for i := range b {
				b[i] = 0
			}
			return
		}
		fillStream(b, uint64(req.Seed), off)
	}
	var total int64
	var grains int64
	switch {
	case req.Gen != nil:
		if req.Offset != nil || req.Percent != nil || req.Fill != "" {
			jsonError(w, http.StatusBadRequest, "gen goes alone: no offset, percent or fill")
			return
		}
		if err := checkGen(*req.Gen); err != nil {
			jsonError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if d.capacity < bootMin {
			jsonError(w, http.StatusBadRequest, "disk of %d bytes has no generation sector", d.capacity)
			return
		}
		if err := d.write(genLBA*sectorSize, genSector(uint32(*req.Gen))); err != nil {
			jsonError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		total, grains = sectorSize, 1
	case req.Percent != nil:
		if *req.Percent < 0 || *req.Percent > 100 {
			jsonError(w, http.StatusBadRequest, "percent must be 0..100")
			return
		}
		n := int64(*req.Percent/100*float64(d.grains) + 0.5)
		rng := rand.New(rand.NewSource(req.Seed))
		perm := rng.Perm(int(d.grains))[:n]
		sort.Ints(perm)
		buf := make([]byte, grainSize)
		for _, g := range perm {
			off := int64(g) * grainSize
			b := buf[:min64(grainSize, d.capacity-off)]
			fill(b, off)
			if err := d.write(off, b); err != nil {
				jsonError(w, http.StatusInternalServerError, "%v", err)
				return
			}
			total += int64(len(b))
		}
		grains = n
	case req.Offset != nil:
		off, end := *req.Offset, *req.Offset+req.Length
		if off < 0 || req.Length <= 0 || end > d.capacity {
			jsonError(w, http.StatusBadRequest, "range [%d,+%d) outside disk of %d bytes", off, req.Length, d.capacity)
			return
		}
		buf := make([]byte, 4<<20)
		for off < end {
			b := buf[:min64(int64(len(buf)), end-off)]
			fill(b, off)
			if err := d.write(off, b); err != nil {
				jsonError(w, http.StatusInternalServerError, "%v", err)
				return
			}
			off += int64(len(b))
			total += int64(len(b))
		}
		grains = (end+grainSize-1)/grainSize - *req.Offset/grainSize
	default:
		jsonError(w, http.StatusBadRequest, "need offset+length or percent")
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"ok": true, "bytes": total, "grains": grains})
}

func (p *Peer) ctlDisk(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	idx, err := strconv.Atoi(q.Get("disk"))
	if err != nil {
		idx = 0
		if q.Get("disk") != "" {
			jsonError(w, http.StatusBadRequest, "bad disk index")
			return
		}
	}
	_, d, ok := p.diskByIndex(w, q.Get("vm"), idx)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.destroyed != "" {
		jsonError(w, http.StatusConflict, "%s was deleted by a hot-add detach with fileOperation=destroy", d.destroyed)
		return
	}
	l := d.cur
	if s := q.Get("snapshot"); s != "" {
		l = nil
		p.mu.Lock()
		for _, recs := range p.snaps {
			for _, rec := range recs {
				if rec.Ref.Value == s || rec.Name == s {
					if sl, ok := d.snapLayer[rec.Ref.Value]; ok {
						l = sl
					}
				}
			}
		}
		p.mu.Unlock()
		if l == nil {
			jsonError(w, http.StatusNotFound, "no snapshot %q on that disk", s)
			return
		}
	}
	sum, err := d.hash(l)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{
		"sha256":   sum,
		"capacity": d.capacity,
		"file":     d.dsPath(d.root),
		"current":  d.dsPath(d.cur),
		"layer":    d.dsPath(l),
	})
}

type snapJSON struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Moref       string     `json:"moref"`
	Quiesce     bool       `json:"quiesce"`
	Memory      bool       `json:"memory"`
	Created     time.Time  `json:"created"`
	Vmsn        string     `json:"vmsn,omitempty"`
	VmsnSize    int64      `json:"vmsn_size"`
	Disks       []snapDisk `json:"disks"`
}

type snapDisk struct {
	Key      int32  `json:"key"`
	File     string `json:"file"`
	ChangeID string `json:"change_id"`
}

func (p *Peer) ctlSnapshots(w http.ResponseWriter, r *http.Request) {
	vm := p.findVM(r.URL.Query().Get("vm"))
	if vm == nil {
		jsonError(w, http.StatusNotFound, "unknown vm %q", r.URL.Query().Get("vm"))
		return
	}
	disks := p.sortedDisks(vm.Self)
	p.mu.Lock()
	recs := append([]*snapRec(nil), p.snaps[vm.Self]...)
	p.mu.Unlock()
	out := []snapJSON{}
	for _, s := range recs {
		sj := snapJSON{Name: s.Name, Description: s.Description, Moref: s.Ref.Value, Quiesce: s.Quiesce,
			Memory: s.Memory, Created: s.Created, Vmsn: s.Vmsn, Disks: []snapDisk{}}
		if st, err := statSize(s.Vmsn); err == nil {
			sj.VmsnSize = st
		}
		for _, d := range disks {
			d.mu.Lock()
			if l, ok := d.snapLayer[s.Ref.Value]; ok {
				sj.Disks = append(sj.Disks, snapDisk{Key: d.key, File: d.dsPath(l), ChangeID: d.snapChange[s.Ref.Value]})
			}
			d.mu.Unlock()
		}
		out = append(out, sj)
	}
	writeJSON(w, http.StatusOK, out)
}

type diskJSON struct {
	Index    int    `json:"index"`
	Key      int32  `json:"key"`
	File     string `json:"file"`
	Current  string `json:"current"`
	Flat     string `json:"flat"`
	Capacity int64  `json:"capacity"`
	Mode     string `json:"mode"`
	ChangeID string `json:"change_id,omitempty"`
}

type vmJSON struct {
	Name       string     `json:"name"`
	Moref      string     `json:"moref"`
	Power      string     `json:"power"`
	Host       string     `json:"host"`
	Datacenter string     `json:"datacenter"`
	Datastores []string   `json:"datastores"`
	VmxPath    string     `json:"vmx"`
	CPUs       int32      `json:"cpus"`
	MemoryMB   int32      `json:"memory_mb"`
	GuestID    string     `json:"guest_id"`
	HWVersion  string     `json:"hw_version"`
	CBT        bool       `json:"cbt"`
	Snapshots  int        `json:"snapshots"`
	Disks      []diskJSON `json:"disks"`
	Folder     string     `json:"folder"`                   // below the datacenter's VM folder
	Hardware   hardware   `json:"hardware"`                 // what config.hardware.device and its neighbours say
	Suspend    string     `json:"suspend_sha256,omitempty"` // the memory state of a suspended VM
	Resumed    string     `json:"resumed_sha256,omitempty"` // the memory state it last resumed from
}

func entityName(ref *types.ManagedObjectReference) string {
	if ref == nil {
		return ""
	}
	if e, ok := simulator.Map.Get(*ref).(mo.Entity); ok {
		return e.Entity().Name
	}
	return ""
}

func (p *Peer) ctlVMs(w http.ResponseWriter, r *http.Request) {
	out := []vmJSON{}
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		var v vmJSON
		var host *types.ManagedObjectReference
		var dss []types.ManagedObjectReference
		simulator.Map.WithLock(vm, func() {
			v = vmJSON{Name: vm.Name, Moref: vm.Self.Value, Power: string(vm.Runtime.PowerState), Datastores: []string{}, Disks: []diskJSON{}}
			if vm.Config != nil {
				v.VmxPath = vm.Config.Files.VmPathName
				v.CPUs = vm.Config.Hardware.NumCPU
				v.MemoryMB = vm.Config.Hardware.MemoryMB
				v.GuestID = vm.Config.GuestId
				v.HWVersion = vm.Config.Version
				v.CBT = vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
			}
			host = vm.Runtime.Host
			dss = append(dss, vm.Datastore...)
		})
		v.Host = entityName(host)
		for i := range dss {
			v.Datastores = append(v.Datastores, entityName(&dss[i]))
		}
		if dc := p.dcOf(vm); dc != "" {
			v.Datacenter = dc
		}
		v.Folder = folderPath(vm)
		v.Hardware = hardwareOfVM(vm)
		v.Suspend = fileSHA256(p.suspendFile(vm))
		p.mu.Lock()
		v.Resumed = p.resumed[vm.Self]
		v.Snapshots = len(p.snaps[vm.Self])
		cbt := p.cbtOn[vm.Self]
		p.mu.Unlock()
		for i, d := range p.sortedDisks(vm.Self) {
			d.mu.Lock()
			dj := diskJSON{Index: i, Key: d.key, File: d.dsPath(d.root), Current: d.dsPath(d.cur),
				Flat: fmt.Sprintf("[%s] %s/%s", d.dsName, d.dir, d.root.data), Capacity: d.capacity, Mode: d.mode}
			if cbt && !d.independent {
				dj.ChangeID = fmt.Sprintf("%s/%d", d.epoch, d.seq-1)
			}
			d.mu.Unlock()
			v.Disks = append(v.Disks, dj)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
}

// folderPath is a VM's folder below its datacenter's VM folder ("a/b").
func folderPath(vm *simulator.VirtualMachine) string {
	var parent *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() { parent = vm.Parent })
	var names []string
	for i := 0; parent != nil && i < 32; i++ {
		f, ok := simulator.Map.Get(*parent).(*simulator.Folder)
		if !ok {
			break
		}
		if _, top := simulator.Map.Get(*f.Parent).(*simulator.Datacenter); top {
			break
		}
		names = append([]string{f.Name}, names...)
		parent = f.Parent
	}
	return strings.Join(names, "/")
}

func (p *Peer) dcOf(vm *simulator.VirtualMachine) string {
	var parent *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() { parent = vm.Parent })
	for i := 0; parent != nil && i < 32; i++ {
		obj := simulator.Map.Get(*parent)
		if obj == nil {
			return ""
		}
		if dc, ok := obj.(*simulator.Datacenter); ok {
			return dc.Name
		}
		e, ok := obj.(mo.Entity)
		if !ok {
			return ""
		}
		parent = e.Entity().Parent
	}
	return ""
}

func (p *Peer) ctlPower(w http.ResponseWriter, r *http.Request) {
	var req struct {
		VM    string `json:"vm"`
		State string `json:"state"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "bad power request: %v", err)
		return
	}
	vm := p.findVM(req.VM)
	if vm == nil {
		jsonError(w, http.StatusNotFound, "unknown vm %q", req.VM)
		return
	}
	if h := p.hotadd; h != nil && req.State == "on" {
		h.opMu.Lock()
		defer h.opMu.Unlock()
		if a := h.ownerAttachment(vm.Self); a != nil {
			jsonError(w, http.StatusConflict, "Unable to access file %s since it is locked (attached to %s)", a.file, h.name)
			return
		}
	}
	p.guestMu.Lock()
	defer p.guestMu.Unlock()
	ctx := context.Background()
	o := object.NewVirtualMachine(p.client, vm.Self)
	var t *object.Task
	var err error
	switch req.State {
	case "on":
		t, err = o.PowerOn(ctx)
	case "off":
		t, err = o.PowerOff(ctx)
	case "suspended":
		t, err = o.Suspend(ctx)
	default:
		jsonError(w, http.StatusBadRequest, "state must be on, off or suspended")
		return
	}
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		jsonError(w, http.StatusConflict, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{"ok": true})
}
