package main

// RetrievePropertiesEx paging: pages within maxObjects, every object once,
// continuation tokens, the server's cap (peer.go's paging, paging.go).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// --- RetrievePropertiesEx paging ---------------------------------------------

// manyVMs is a fixture with n VMs vm01…vmNN (one small disk each).
func manyVMs(n int) string {
	var vms []string
	for i := 1; i <= n; i++ {
		vms = append(vms, fmt.Sprintf(`{"name":"vm%02d","host":"H0","disks":[{"capacity":1048576,"fill":"zero"}]}`, i))
	}
	return `{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":[` + strings.Join(vms, ",") + `]}`
}

// vmNameSpec selects the name of every VM through a container view.
func vmNameSpec(ctx context.Context, t *testing.T, c *vim25.Client) types.PropertyFilterSpec {
	t.Helper()
	v, err := view.NewManager(c).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	return types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{
			Obj:       v.Reference(),
			Skip:      types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ContainerView", Path: "view"}},
		}},
		PropSet: []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"name"}}},
	}
}

func objectNames(t *testing.T, objs []types.ObjectContent) []string {
	t.Helper()
	var names []string
	for _, o := range objs {
		if len(o.PropSet) != 1 || o.PropSet[0].Name != "name" {
			t.Fatalf("object %v: propSet %+v", o.Obj, o.PropSet)
		}
		names = append(names, o.PropSet[0].Val.(string))
	}
	return names
}

// retrieveAll pages through a result and returns each page's names.
func retrieveAll(ctx context.Context, t *testing.T, c *vim25.Client, spec types.PropertyFilterSpec, maxObjects int32) [][]string {
	t.Helper()
	pc := c.ServiceContent.PropertyCollector
	res, err := methods.RetrievePropertiesEx(ctx, c, &types.RetrievePropertiesEx{
		This: pc, SpecSet: []types.PropertyFilterSpec{spec}, Options: types.RetrieveOptions{MaxObjects: maxObjects},
	})
	if err != nil {
		t.Fatal(err)
	}
	rr := res.Returnval
	var pages [][]string
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("token never ends")
		}
		pages = append(pages, objectNames(t, rr.Objects))
		if rr.Token == "" {
			return pages
		}
		cres, err := methods.ContinueRetrievePropertiesEx(ctx, c, &types.ContinueRetrievePropertiesEx{This: pc, Token: rr.Token})
		if err != nil {
			t.Fatalf("continue: %v", err)
		}
		rr = &cres.Returnval
	}
}

func pageSizes(pages [][]string) []int {
	var n []int
	for _, p := range pages {
		n = append(n, len(p))
	}
	return n
}

func checkAllOnce(t *testing.T, pages [][]string, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, p := range pages {
		for _, name := range p {
			seen[name]++
		}
	}
	for i := 1; i <= n; i++ {
		if name := fmt.Sprintf("vm%02d", i); seen[name] != 1 {
			t.Errorf("%s seen %d times", name, seen[name])
		}
		delete(seen, fmt.Sprintf("vm%02d", i))
	}
	if len(seen) != 0 {
		t.Errorf("unexpected objects %v", seen)
	}
}

// rawSOAP posts a SOAP body with the client's session cookie.
func rawSOAP(t *testing.T, p *peer, c *govmomi.Client, body string) (int, string) {
	t.Helper()
	env := `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>` + body + `</soapenv:Body></soapenv:Envelope>`
	req, _ := http.NewRequest("POST", p.URL, strings.NewReader(env))
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("SOAPAction", "urn:vim25/7.0")
	res, err := folderClient(c).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(data)
}

func TestRetrievePaging(t *testing.T) {
	p := startPeer(t, manyVMs(25))
	ctx := context.Background()
	c := p.client(ctx)
	spec := vmNameSpec(ctx, t, c.Client)
	pc := c.Client.ServiceContent.PropertyCollector

	pages := retrieveAll(ctx, t, c.Client, spec, 10)
	if got := fmt.Sprint(pageSizes(pages)); got != "[10 10 5]" {
		t.Fatalf("page sizes %s", got)
	}
	checkAllOnce(t, pages, 25)
	for _, max := range []int32{0, -1, 25, 30} {
		if got := fmt.Sprint(pageSizes(retrieveAll(ctx, t, c.Client, spec, max))); got != "[25]" {
			t.Errorf("maxObjects %d: page sizes %s", max, got)
		}
	}
	ones := retrieveAll(ctx, t, c.Client, spec, 1)
	if len(ones) != 25 {
		t.Errorf("maxObjects 1: page sizes %v", pageSizes(ones))
	}
	checkAllOnce(t, ones, 25)
	// Same order as an unpaged retrieve.
	var flat []string
	for _, p := range ones {
		flat = append(flat, p...)
	}
	if all := retrieveAll(ctx, t, c.Client, spec, 0)[0]; fmt.Sprint(all) != fmt.Sprint(flat) {
		t.Errorf("paged order %v, unpaged %v", flat, all)
	}
	if got := fmt.Sprint(pageSizes(retrieveAll(ctx, t, c.Client, spec, 24))); got != "[24 1]" {
		t.Errorf("maxObjects 24: page sizes %s", got)
	}

	first := func(max int32) string {
		res, err := methods.RetrievePropertiesEx(ctx, c.Client, &types.RetrievePropertiesEx{
			This: pc, SpecSet: []types.PropertyFilterSpec{spec}, Options: types.RetrieveOptions{MaxObjects: max},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Returnval.Token == "" {
			t.Fatal("no token")
		}
		return res.Returnval.Token
	}
	cont := func(tok string) error {
		_, err := methods.ContinueRetrievePropertiesEx(ctx, c.Client, &types.ContinueRetrievePropertiesEx{This: pc, Token: tok})
		return err
	}
	cancel := func(tok string) error {
		_, err := methods.CancelRetrievePropertiesEx(ctx, c.Client, &types.CancelRetrievePropertiesEx{This: pc, Token: tok})
		return err
	}

	// Unknown and used tokens.
	if err := cont("no-such-token"); !isFault(err, "InvalidArgument") {
		t.Errorf("unknown token: %v", err)
	}
	if err := cont(""); !isFault(err, "InvalidArgument") {
		t.Errorf("empty token: %v", err)
	}
	tok := first(20)
	if err := cont(tok); err != nil {
		t.Fatal(err)
	}
	if err := cont(tok); !isFault(err, "InvalidArgument") {
		t.Errorf("used token: %v", err)
	}

	// Cancel drops the token; a cancelled or unknown token faults.
	tok = first(10)
	if err := cancel(tok); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := cont(tok); !isFault(err, "InvalidArgument") {
		t.Errorf("continue after cancel: %v", err)
	}
	if err := cancel(tok); !isFault(err, "InvalidArgument") {
		t.Errorf("cancel twice: %v", err)
	}

	// A token belongs to its session.
	tok = first(10)
	c2 := p.client(ctx)
	if _, err := methods.ContinueRetrievePropertiesEx(ctx, c2.Client, &types.ContinueRetrievePropertiesEx{This: pc, Token: tok}); !isFault(err, "InvalidArgument") {
		t.Errorf("token of another session: %v", err)
	}
	if err := cont(tok); err != nil {
		t.Errorf("token after the other session's try: %v", err)
	}

	// No session: NotAuthenticated before anything else.
	u, _ := url.Parse(p.URL)
	anon, err := vim25.NewClient(ctx, soap.NewClient(u, true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := methods.ContinueRetrievePropertiesEx(ctx, anon, &types.ContinueRetrievePropertiesEx{This: pc, Token: first(10)}); !isFault(err, "NotAuthenticated") {
		t.Errorf("no session: %v", err)
	}

	// The wire: token before objects, in returnval, on every page but the last.
	view := spec.ObjectSet[0].Obj.Value
	req := `<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">` + pc.Value + `</_this><specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet></propSet>` +
		`<objectSet><obj type="ContainerView">` + view + `</obj><skip>true</skip><selectSet xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path></selectSet></objectSet></specSet>` +
		`<options><maxObjects>12</maxObjects></options></RetrievePropertiesEx>`
	code, body := rawSOAP(t, p, c, req)
	tokRe := regexp.MustCompile(`<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>([^<]+)</token><objects>`)
	m := tokRe.FindStringSubmatch(body)
	if code != 200 || m == nil || strings.Count(body, "<objects>") != 12 {
		t.Fatalf("first page %d: %s", code, body)
	}
	code, body = rawSOAP(t, p, c, `<ContinueRetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">`+pc.Value+`</_this><token>`+m[1]+`</token></ContinueRetrievePropertiesEx>`)
	if m = regexp.MustCompile(`<ContinueRetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>([^<]+)</token><objects>`).FindStringSubmatch(body); code != 200 || m == nil || strings.Count(body, "<objects>") != 12 {
		t.Fatalf("second page %d: %s", code, body)
	}
	code, body = rawSOAP(t, p, c, `<ContinueRetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">`+pc.Value+`</_this><token>`+m[1]+`</token></ContinueRetrievePropertiesEx>`)
	if code != 200 || !strings.Contains(body, `<ContinueRetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects>`) || strings.Contains(body, "<token>") || strings.Count(body, "<objects>") != 1 {
		t.Fatalf("last page %d: %s", code, body)
	}
	code, body = rawSOAP(t, p, c, `<ContinueRetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">`+pc.Value+`</_this><token>`+m[1]+`</token></ContinueRetrievePropertiesEx>`)
	if code != 500 || !strings.Contains(body, `<InvalidArgumentFault xmlns="urn:vim25" xsi:type="InvalidArgument"><invalidProperty>token</invalidProperty>`) {
		t.Fatalf("used token %d: %s", code, body)
	}
}

func TestRetrieveMaxObjectsCap(t *testing.T) {
	p := startPeer(t, manyVMs(25), "--max-objects", "7")
	ctx := context.Background()
	c := p.client(ctx)
	spec := vmNameSpec(ctx, t, c.Client)
	for _, tc := range []struct {
		max  int32
		want string
	}{{0, "[7 7 7 4]"}, {100, "[7 7 7 4]"}, {7, "[7 7 7 4]"}, {5, "[5 5 5 5 5]"}, {10, "[7 7 7 4]"}} {
		pages := retrieveAll(ctx, t, c.Client, spec, tc.max)
		if got := fmt.Sprint(pageSizes(pages)); got != tc.want {
			t.Errorf("maxObjects %d: page sizes %s, want %s", tc.max, got, tc.want)
		}
		checkAllOnce(t, pages, 25)
	}
	// RetrieveProperties (no Ex) has no paging: everything, as on vCenter.
	var vms []mo.VirtualMachine
	v, err := view.NewManager(c.Client).CreateContainerView(ctx, c.Client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil || len(vms) != 25 {
		t.Errorf("RetrieveProperties: %d VMs, %v", len(vms), err)
	}
}
