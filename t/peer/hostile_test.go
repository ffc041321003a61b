package main

// The hostile switches of POST /fault: each distorts the answers the way
// its README row says, only where it is aimed, and goes away when cleared.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

const serviceContentReq = `<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>` +
	`<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>` +
	`</soapenv:Body></soapenv:Envelope>`

// soapNoSession posts a request body to /sdk without a session and returns the
// status, the Content-Length header and the body.
func soapNoSession(t *testing.T, p *peer, body string) (int, string, []byte, error) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := hc.Post(p.URL, "text/xml", strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Content-Length"), data, err
}

func (p *peer) hostile(h map[string]interface{}) {
	p.t.Helper()
	p.fault(map[string]interface{}{"hostile": h})
}

func TestHostileSOAP(t *testing.T) {
	p := startPeer(t, stdFixture)
	_, _, normal, err := soapNoSession(t, p, serviceContentReq)
	if err != nil || !bytes.Contains(normal, []byte("<rootFolder")) {
		t.Fatalf("normal reply: %v %s", err, normal)
	}

	// truncate: a well-framed half of the real reply, once (count 1)
	p.hostile(map[string]interface{}{"kind": "truncate", "method": "RetrieveServiceContent", "count": 1})
	code, clen, body, err := soapNoSession(t, p, serviceContentReq)
	if err != nil || code != 200 || len(body) != len(normal)/2 || clen != fmt.Sprint(len(normal)/2) || !bytes.HasPrefix(normal, body) {
		t.Errorf("truncate: %d %v len %d (Content-Length %s), want %d", code, err, len(body), clen, len(normal)/2)
	}
	if _, _, body, _ := soapNoSession(t, p, serviceContentReq); !bytes.Equal(body, normal) {
		t.Errorf("count 1: the second reply is changed too")
	}
	// truncate to a given size
	p.hostile(map[string]interface{}{"kind": "truncate", "bytes": 100})
	if _, _, body, _ := soapNoSession(t, p, serviceContentReq); len(body) != 100 {
		t.Errorf("truncate bytes 100: %d bytes", len(body))
	}

	// replace: every <rootFolder> gets another text, attributes kept
	p.hostile(map[string]interface{}{"kind": "replace", "element": "rootFolder", "value": "9223372036854775808<&>"})
	if _, _, body, _ := soapNoSession(t, p, serviceContentReq); !bytes.Contains(body, []byte(`<rootFolder type="Folder">9223372036854775808&lt;&amp;&gt;</rootFolder>`)) {
		t.Errorf("replace: %s", body)
	}
	// remove: the element is gone, the rest is intact
	p.hostile(map[string]interface{}{"kind": "remove", "element": "about"})
	if _, _, body, _ := soapNoSession(t, p, serviceContentReq); bytes.Contains(body, []byte("<about")) || !bytes.Contains(body, []byte("<rootFolder")) {
		t.Errorf("remove: %s", body)
	}
	// another method is not affected
	p.hostile(map[string]interface{}{"kind": "remove", "element": "rootFolder", "method": "Login"})
	if _, _, body, _ := soapNoSession(t, p, serviceContentReq); !bytes.Equal(body, normal) {
		t.Errorf("a fault aimed at Login changed RetrieveServiceContent")
	}

	// huge: exactly that many bytes, with or without Content-Length
	const huge = 48 << 20
	for _, chunked := range []bool{false, true} {
		p.hostile(map[string]interface{}{"kind": "huge", "bytes": huge, "chunked": chunked})
		code, clen, body, err := soapNoSession(t, p, serviceContentReq)
		wantLen := fmt.Sprint(huge)
		if chunked {
			wantLen = ""
		}
		if err != nil || code != 200 || len(body) != huge || clen != wantLen ||
			!bytes.HasPrefix(body, []byte(envelopeOpen+`<RetrieveServiceContentResponse`)) || !bytes.HasSuffix(body, []byte(envelopeClose)) {
			t.Errorf("huge chunked=%v: %d %v %d bytes, Content-Length %q", chunked, code, err, len(body), clen)
		}
	}

	// drip: the real reply, slowly
	p.hostile(map[string]interface{}{"kind": "drip", "bps": float64(len(normal))})
	t0 := time.Now()
	_, _, body, err = soapNoSession(t, p, serviceContentReq)
	if d := time.Since(t0); err != nil || !bytes.Equal(body, normal) || d < 800*time.Millisecond {
		t.Errorf("drip: %v, same body %v, took %v", err, bytes.Equal(body, normal), d)
	}

	// bad requests are refused with 400; clear removes the fault
	for _, bad := range []map[string]interface{}{{"kind": "explode"}, {"kind": "replace"}, {"kind": "huge"},
		{"kind": "truncate", "path": "/folder"}, {"kind": "drip", "bps": -1}} {
		if code := p.ctl("POST", "/fault", map[string]interface{}{"hostile": bad}, nil); code != 400 {
			t.Errorf("hostile %v: %d, want 400", bad, code)
		}
	}
	var st struct {
		Injected map[string]int
		Hostile  *hostileFault
	}
	p.ctl("GET", "/fault", nil, &st)
	if st.Injected["hostile"] != 7 || st.Hostile == nil || st.Hostile.Kind != "drip" {
		t.Errorf("GET /fault: %+v", st)
	}
	p.fault(map[string]interface{}{"clear": true})
	if _, _, body, _ := soapNoSession(t, p, serviceContentReq); !bytes.Equal(body, normal) {
		t.Errorf("after clear the reply is still changed")
	}
}

func TestHostileEndlessAndExtents(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	c := p.client(ctx)
	vm := findVM(ctx, t, c.Client, "web01")

	// endless: every page has a token, Continue hands out made-up VMs
	p.hostile(map[string]interface{}{"kind": "endless", "method": "RetrievePropertiesEx", "objects": 7})
	pc := c.ServiceContent.PropertyCollector
	res, err := methods.RetrievePropertiesEx(ctx, c.Client, &types.RetrievePropertiesEx{This: pc,
		SpecSet: []types.PropertyFilterSpec{{
			PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"name"}}},
			ObjectSet: []types.ObjectSpec{{Obj: vm.Reference()}},
		}}})
	if err != nil || res.Returnval == nil || !strings.HasPrefix(res.Returnval.Token, endlessPrefix) || len(res.Returnval.Objects) != 1 {
		t.Fatalf("endless first page: %v %+v", err, res)
	}
	tok := res.Returnval.Token
	for i := 0; i < 3; i++ {
		cr, err := methods.ContinueRetrievePropertiesEx(ctx, c.Client, &types.ContinueRetrievePropertiesEx{This: pc, Token: tok})
		if err != nil || len(cr.Returnval.Objects) != 7 || !strings.HasPrefix(cr.Returnval.Token, endlessPrefix) {
			t.Fatalf("endless page %d: %v %+v", i, err, cr)
		}
		if name := cr.Returnval.Objects[0].PropSet[0].Val; !strings.HasPrefix(fmt.Sprint(name), "endless-") {
			t.Errorf("made-up object name %v", name)
		}
		tok = cr.Returnval.Token
	}

	// extents: a flood of one-byte areas
	enableCBT(ctx, t, vm)
	snap := createSnapshot(ctx, t, vm, "s", false, false)
	q := &types.QueryChangedDiskAreas{This: vm.Reference(), Snapshot: &snap, DeviceKey: 2000, StartOffset: 4096, ChangeId: "*"}
	p.hostile(map[string]interface{}{"kind": "extents", "extents": 5000})
	qr, err := methods.QueryChangedDiskAreas(ctx, c.Client, q)
	if err != nil || qr.Returnval.StartOffset != 4096 || qr.Returnval.Length != capacity0-4096 || len(qr.Returnval.ChangedArea) != 5000 {
		t.Fatalf("extents: %v", err)
	}
	if e := qr.Returnval.ChangedArea[4999]; e.Start != 4096+2*4999 || e.Length != 1 {
		t.Errorf("last area %+v", e)
	}
	p.hostile(map[string]interface{}{"kind": "extents", "extents": 10, "paged": true})
	if qr, err := methods.QueryChangedDiskAreas(ctx, c.Client, q); err != nil || qr.Returnval.Length != 20 || len(qr.Returnval.ChangedArea) != 10 {
		t.Errorf("paged extents: %v %+v", err, qr)
	}
}

func TestHostileFolder(t *testing.T) {
	p := startPeer(t, stdFixture)
	ctx := context.Background()
	c := p.client(ctx)
	hc := folderClient(c)
	u := p.folderURL("web01/web01-flat.vmdk")
	_, want, err := get(t, hc, u, "bytes=0-99")
	if err != nil || len(want) != 100 {
		t.Fatal(err)
	}

	// drip: the right bytes, slowly
	p.hostile(map[string]interface{}{"kind": "drip", "path": "/folder", "bps": 100, "match": "-flat.vmdk"})
	t0 := time.Now()
	code, got, err := get(t, hc, u, "bytes=0-99")
	if d := time.Since(t0); err != nil || code != 206 || !bytes.Equal(got, want) || d < 800*time.Millisecond {
		t.Errorf("drip: %d %v same %v in %v", code, err, bytes.Equal(got, want), d)
	}
	// match: the descriptor is not affected
	t0 = time.Now()
	if code, _, err := get(t, hc, p.folderURL("web01/web01.vmdk"), ""); code != 200 || err != nil || time.Since(t0) > 500*time.Millisecond {
		t.Errorf("descriptor under a -flat.vmdk drip: %d %v %v", code, err, time.Since(t0))
	}

	// huge: far more than the range asked for
	p.hostile(map[string]interface{}{"kind": "huge", "path": "/folder", "bytes": 3 << 20})
	code, got, err = get(t, hc, u, "bytes=0-9")
	if err != nil || code != 206 || len(got) != 3<<20 {
		t.Errorf("huge: %d %v %d bytes", code, err, len(got))
	}
	p.fault(map[string]interface{}{"clear": true})
	if code, got, _ := get(t, hc, u, "bytes=0-99"); code != 206 || !bytes.Equal(got, want) {
		t.Errorf("after clear: %d", code)
	}
}
