package main

// The /sdk front: sessions, faults and delays are applied here, then the
// request goes to vcsim's own SOAP handler. Calls that change disks are
// followed up once vcsim's (synchronous) task has finished, before the reply
// leaves, so a client never sees a task complete before the model caught up.
// QueryChangedDiskAreas, which vcsim lacks, is answered here entirely;
// RetrievePropertiesEx replies are cut into pages (paging.go).

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	vxml "github.com/vmware/govmomi/vim25/xml"
)

type sessionTable struct {
	mu sync.Mutex
	m  map[string]time.Time // session key -> login time
}

func newSessionTable() *sessionTable { return &sessionTable{m: map[string]time.Time{}} }

func (t *sessionTable) add(key string) {
	t.mu.Lock()
	t.m[key] = time.Now()
	t.mu.Unlock()
}

func (t *sessionTable) del(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// valid reports whether key names a live session no older than expiry
// (0 = no limit). Expired sessions are forgotten.
func (t *sessionTable) valid(key string, f *faultState) bool {
	expiry := f.sessionExpiry()
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.m[key]
	if !ok {
		return false
	}
	if expiry > 0 && time.Since(at) > expiry {
		delete(t.m, key)
		f.sessionExpired()
		return false
	}
	return true
}

func (t *sessionTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// methods that work without a session
var sessionless = map[string]bool{
	"RetrieveServiceContent":      true,
	"Login":                       true,
	"LoginByToken":                true,
	"LoginExtensionByCertificate": true,
	"CloneSession":                true,
}

// methods that change a VM's power state (ordered against guest writes)
var powerMethods = map[string]bool{
	"PowerOnVM_Task":      true,
	"PowerOffVM_Task":     true,
	"PowerOnMultiVM_Task": true,
	"ShutdownGuest":       true,
	"StandbyGuest":        true,
	"RebootGuest":         true,
	"ResetVM_Task":        true,
	"SuspendVM_Task":      true,
}

var returnvalRe = regexp.MustCompile(`<returnval type="Task">([^<]+)</returnval>`)

func sessionCookie(r *http.Request) string {
	if c, err := r.Cookie(soap.SessionCookieName); err == nil {
		return c.Value
	}
	return ""
}

// stripSessionCookie removes the session cookie, keeping any others.
func stripSessionCookie(r *http.Request) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != soap.SessionCookieName {
			r.AddCookie(c)
		}
	}
}

// methodName finds the first element inside the SOAP Body.
func methodName(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			if inBody {
				return se.Name.Local
			}
			if se.Name.Local == "Body" {
				inBody = true
			}
		}
	}
}

func (p *Peer) serveSDK(w http.ResponseWriter, r *http.Request) {
	p.stats.request("sdk")
	if p.faults.httpError("/sdk", r.Method, w) {
		return
	}
	if r.Method != http.MethodPost {
		p.svc.ServeSDK(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var req interface{}
	var this types.ManagedObjectReference
	name := ""
	if m, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil {
		name, req, this = m.Name, m.Body, m.This
	} else {
		name = methodName(body)
	}
	p.stats.method(name)

	cookie := sessionCookie(r)
	valid := cookie != "" && p.sessions.valid(cookie, p.faults)
	if cookie != "" && (!valid || strings.HasPrefix(name, "Login")) {
		// vcsim refuses Login on a live session and would accept an
		// expired one; neither is what vCenter does.
		stripSessionCookie(r)
	}
	if !valid && !sessionless[name] {
		writeFault(w, "The session is not authenticated.", &types.NotAuthenticated{
			NoPermission: types.NoPermission{Object: this, PrivilegeId: "System.View"},
		})
		return
	}
	p.faults.delay(name)

	answer := func(w http.ResponseWriter) { p.answerSDK(w, r, body, name, req, this, cookie) }
	if h := p.faults.hostileFor("/sdk", name, ""); h != nil {
		p.hostileSDK(w, h, name, req, answer)
		return
	}
	answer(w)
}

// answerSDK answers one authenticated SOAP request: the peer's own methods,
// or vcsim's handler followed by the peer's model updates.
func (p *Peer) answerSDK(w http.ResponseWriter, r *http.Request, body []byte, name string, req interface{}, this types.ManagedObjectReference, cookie string) {
	switch name {
	case "QueryChangedDiskAreas":
		if q, ok := req.(*types.QueryChangedDiskAreas); ok {
			p.queryChangedDiskAreas(w, q)
			return
		}
	case "ContinueRetrievePropertiesEx":
		if q, ok := req.(*types.ContinueRetrievePropertiesEx); ok {
			p.continueRetrieve(w, q, cookie)
			return
		}
	case "CancelRetrievePropertiesEx":
		if q, ok := req.(*types.CancelRetrievePropertiesEx); ok {
			p.cancelRetrieve(w, q, cookie)
			return
		}
	}

	// Look up what the follow-up needs before vcsim forgets it: the VM of
	// a snapshot, or the current snapshot of a VM.
	var related types.ManagedObjectReference
	switch name {
	case "RemoveSnapshot_Task", "RevertToSnapshot_Task":
		related = p.vmOfSnapshot(this)
	case "RevertToCurrentSnapshot_Task":
		if vm := vmObject(this); vm != nil {
			simulator.Map.WithLock(vm, func() {
				if vm.Snapshot != nil && vm.Snapshot.CurrentSnapshot != nil {
					related = *vm.Snapshot.CurrentSnapshot
				}
			})
		}
	}

	done, release := p.hotaddIntercept(w, name, req, this, related)
	if done {
		return
	}
	defer release()
	switch name {
	case "RemoveSnapshot_Task":
		p.forgetSnapshotFileKeys(related)
	case "RemoveAllSnapshots_Task":
		p.forgetSnapshotFileKeys(this)
	}

	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	if powerMethods[name] {
		p.guestMu.Lock()
		p.svc.ServeSDK(rec, r)
		p.guestMu.Unlock()
	} else {
		p.svc.ServeSDK(rec, r)
	}

	res := rec.Result()
	for _, c := range res.Cookies() {
		if c.Name == soap.SessionCookieName {
			p.sessions.add(c.Value)
		}
	}
	if rec.Code == http.StatusOK {
		if name == "Logout" {
			p.sessions.del(cookie)
			p.paging.dropSession(cookie)
		}
		p.after(name, req, this, related, rec.Body.Bytes())
		if q, ok := req.(*types.RetrievePropertiesEx); ok && name == "RetrievePropertiesEx" {
			if p.pageRetrieve(w, q, cookie, rec.Body.Bytes()) {
				return
			}
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// taskResult returns the result of the finished task named in a reply.
func taskResult(reply []byte) (types.AnyType, bool) {
	m := returnvalRe.FindSubmatch(reply)
	if m == nil {
		return nil, false
	}
	ref := types.ManagedObjectReference{Type: "Task", Value: string(m[1])}
	t, ok := simulator.Map.Get(ref).(*simulator.Task)
	if !ok {
		return nil, false
	}
	var res types.AnyType
	var state types.TaskInfoState
	simulator.Map.WithLock(t, func() {
		res, state = t.Info.Result, t.Info.State
	})
	return res, state == types.TaskInfoStateSuccess
}

// after brings the peer's model up to date once vcsim finished a call.
func (p *Peer) after(name string, req interface{}, this, related types.ManagedObjectReference, reply []byte) {
	switch name {
	case "CreateVM_Task", "CloneVM_Task", "RegisterVM_Task":
		if res, ok := taskResult(reply); ok {
			if ref, ok := res.(types.ManagedObjectReference); ok {
				if err := p.syncVM(ref, nil); err != nil {
					logf("%s: %v", name, err)
				}
				if q, ok := req.(*types.CreateVM_Task); ok {
					p.afterCreateVM(ref, q)
				}
			}
		}
	case "ReconfigVM_Task", "RelocateVM_Task", "Destroy_Task", "UnregisterVM":
		if this.Type == "VirtualMachine" {
			if name != "UnregisterVM" {
				if _, ok := taskResult(reply); !ok {
					return
				}
			}
			if err := p.syncVM(this, nil); err != nil {
				logf("%s: %v", name, err)
			}
		}
	case "SuspendVM_Task":
		if _, ok := taskResult(reply); ok {
			p.afterSuspend(this)
		}
	case "PowerOnVM_Task":
		if _, ok := taskResult(reply); ok {
			p.afterPowerOn(this)
		}
	case "CreateSnapshot_Task":
		res, ok := taskResult(reply)
		q, qok := req.(*types.CreateSnapshot_Task)
		if ok && qok {
			if ref, ok := res.(types.ManagedObjectReference); ok {
				p.afterCreateSnapshot(this, ref, q)
			}
		}
	case "RemoveSnapshot_Task":
		if _, ok := taskResult(reply); ok && related.Value != "" {
			p.afterRemoveSnapshots(related)
		}
	case "RemoveAllSnapshots_Task", "ConsolidateVMDisks_Task":
		if _, ok := taskResult(reply); ok {
			p.afterRemoveSnapshots(this)
		}
	case "RevertToSnapshot_Task":
		if _, ok := taskResult(reply); ok && related.Value != "" {
			p.afterRevert(related, this)
		}
	case "RevertToCurrentSnapshot_Task":
		if _, ok := taskResult(reply); ok && related.Value != "" {
			p.afterRevert(this, related)
		}
	}
	for _, ref := range []types.ManagedObjectReference{this, related} {
		if vm := vmObject(ref); vm != nil {
			p.listSuspendFile(vm)
		}
	}
}

func (p *Peer) vmOfSnapshot(ref types.ManagedObjectReference) types.ManagedObjectReference {
	p.mu.Lock()
	defer p.mu.Unlock()
	for vm, recs := range p.snaps {
		for _, s := range recs {
			if s.Ref == ref {
				return vm
			}
		}
	}
	if so, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot); ok {
		return so.Vm
	}
	return types.ManagedObjectReference{}
}

// --- SOAP replies ----------------------------------------------------------

const envelopeOpen = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`
const envelopeClose = `</soapenv:Body></soapenv:Envelope>`

func encodeElement(buf *bytes.Buffer, val interface{}, start vxml.StartElement) error {
	e := vxml.NewEncoder(buf)
	if err := e.EncodeElement(val, start); err != nil {
		return err
	}
	return e.Flush()
}

// writeFault sends a fault shaped like vcsim's own (HTTP 500, detail
// element "<Kind>Fault" in urn:vim25 with xsi:type="<Kind>").
func writeFault(w http.ResponseWriter, msg string, fault types.BaseMethodFault) {
	kind := fmt.Sprintf("%T", fault)
	kind = kind[strings.LastIndex(kind, ".")+1:]
	var b bytes.Buffer
	b.WriteString(envelopeOpen)
	b.WriteString(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>`)
	xml.EscapeText(&b, []byte(msg))
	b.WriteString(`</faultstring><detail>`)
	start := vxml.StartElement{
		Name: vxml.Name{Local: kind + "Fault"},
		Attr: []vxml.Attr{{Name: vxml.Name{Local: "xmlns"}, Value: "urn:vim25"}, {Name: vxml.Name{Local: "xsi:type"}, Value: kind}},
	}
	if err := encodeElement(&b, fault, start); err != nil {
		logf("encode fault: %v", err)
	}
	b.WriteString(`</detail></soapenv:Fault>`)
	b.WriteString(envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	w.Write(b.Bytes())
}

func writeResponse(w http.ResponseWriter, method string, val interface{}) {
	var b bytes.Buffer
	b.WriteString(envelopeOpen)
	fmt.Fprintf(&b, `<%sResponse xmlns="urn:vim25">`, method)
	if err := encodeElement(&b, val, vxml.StartElement{Name: vxml.Name{Local: "returnval"}}); err != nil {
		logf("encode %s: %v", method, err)
	}
	fmt.Fprintf(&b, `</%sResponse>`, method)
	b.WriteString(envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// --- QueryChangedDiskAreas -------------------------------------------------

func splitChangeID(id string) (string, int64, bool) {
	i := strings.LastIndex(id, "/")
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return id[:i], n, true
}

func (p *Peer) queryChangedDiskAreas(w http.ResponseWriter, q *types.QueryChangedDiskAreas) {
	vm := vmObject(q.This)
	if vm == nil {
		writeFault(w, "The object has already been deleted or has not been completely created", &types.ManagedObjectNotFound{Obj: q.This})
		return
	}
	var snapKey string
	if q.Snapshot != nil {
		snapKey = q.Snapshot.Value
	} else {
		simulator.Map.WithLock(vm, func() {
			if vm.Snapshot != nil && vm.Snapshot.CurrentSnapshot != nil {
				snapKey = vm.Snapshot.CurrentSnapshot.Value
			}
		})
	}
	p.mu.Lock()
	cbt := p.cbtOn[q.This]
	d := p.disks[q.This][q.DeviceKey]
	p.mu.Unlock()
	if d == nil {
		writeFault(w, "A specified parameter was not correct: deviceKey", &types.InvalidArgument{InvalidProperty: "deviceKey"})
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.snapLayer[snapKey]
	if !ok {
		ref := types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: snapKey}
		if q.Snapshot != nil {
			ref = *q.Snapshot
		}
		writeFault(w, "The object has already been deleted or has not been completely created", &types.ManagedObjectNotFound{Obj: ref})
		return
	}
	fileFault := func(why string) {
		logf("QueryChangedDiskAreas vm=%s disk=%d changeId=%q: %s", vm.Name, d.key, q.ChangeId, why)
		writeFault(w, "Error caused by file "+d.dsPath(l), &types.FileFault{File: d.dsPath(l)})
	}
	snapEpoch, snapSeq, ok := splitChangeID(d.snapChange[snapKey])
	switch {
	case !cbt:
		fileFault("change tracking is off")
		return
	case !ok:
		fileFault("snapshot has no change id")
		return
	case snapEpoch != d.epoch:
		fileFault("change tracking was reset after the snapshot")
		return
	}
	if q.StartOffset < 0 || q.StartOffset >= d.capacity {
		writeFault(w, "A specified parameter was not correct: startOffset", &types.InvalidArgument{InvalidProperty: "startOffset"})
		return
	}
	var bits bitset
	if q.ChangeId == "*" {
		bits = d.allocated(snapSeq)
	} else {
		e, s, ok := splitChangeID(q.ChangeId)
		switch {
		case !ok:
			fileFault("malformed change id")
			return
		case e != d.epoch:
			fileFault("change id from another epoch")
			return
		case s > snapSeq:
			fileFault("change id newer than the snapshot")
			return
		}
		bits = d.changed(s, snapSeq)
	}
	exts, covered := d.extents(bits, q.StartOffset, p.cbtMax)
	res := types.DiskChangeInfo{StartOffset: q.StartOffset, Length: covered}
	for _, e := range exts {
		res.ChangedArea = append(res.ChangedArea, types.DiskChangeExtent{Start: e.Start, Length: e.Length})
	}
	p.stats.cbtQuery()
	writeResponse(w, "QueryChangedDiskAreas", &res)
}
