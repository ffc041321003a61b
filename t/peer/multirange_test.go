package main

// Multi-range GETs on /folder: Go's multipart/byteranges answer, the
// multi_range fault that models datastores without multi-range support,
// and the per-file GET counter.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// folderDo sends one /folder request with an optional Range header and
// returns the answer with its whole body (or what came before an error).
func folderDo(t *testing.T, hc *http.Client, method, u, rng string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return res, data, err
}

type folderStats struct {
	Files    map[string]int64
	Requests map[string]int64
	Gets     map[string]int64
}

func (p *peer) folderStats() folderStats {
	p.t.Helper()
	var st folderStats
	if code := p.ctl("GET", "/stats", nil, &st); code != 200 {
		p.t.Fatalf("GET /stats: %d", code)
	}
	return st
}

type multiRangeView struct {
	Injected   map[string]int
	MultiRange *string `json:"multi_range"`
}

func (p *peer) multiRangeView() multiRangeView {
	p.t.Helper()
	var v multiRangeView
	if code := p.ctl("GET", "/fault", nil, &v); code != 200 {
		p.t.Fatalf("GET /fault: %d", code)
	}
	return v
}

// checkMultipart checks a 206 multipart/byteranges answer: one part per
// range, in order, each with its Content-Range and exactly the file's bytes.
// checkMultipart returns the file bytes the answer carries (what the
// peer's files counter counts for it).
func checkMultipart(t *testing.T, res *http.Response, body, file []byte, ranges [][2]int64) int64 {
	t.Helper()
	var payload int64
	if res.StatusCode != http.StatusPartialContent {
		t.Fatalf("multi-range GET: status %d, want 206", res.StatusCode)
	}
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" || params["boundary"] == "" {
		t.Fatalf("multi-range GET: Content-Type %q (%v)", res.Header.Get("Content-Type"), err)
	}
	if cr := res.Header.Get("Content-Range"); cr != "" {
		t.Errorf("multipart answer with a Content-Range header %q", cr)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i, r := range ranges {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		want := fmt.Sprintf("bytes %d-%d/%d", r[0], r[1], len(file))
		if cr := part.Header.Get("Content-Range"); cr != want {
			t.Errorf("part %d: Content-Range %q, want %q", i, cr, want)
		}
		data, err := io.ReadAll(part)
		payload += int64(len(data))
		if err != nil || !bytes.Equal(data, file[r[0]:r[1]+1]) {
			t.Errorf("part %d (%v): %d bytes, equal=%v, %v", i, r, len(data), bytes.Equal(data, file[r[0]:r[1]+1]), err)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("more parts than ranges: %v", err)
	}
	return payload
}

// partBytes: the file bytes in a multipart body cut short.
func partBytes(body []byte, boundary string) int64 {
	var n int64
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if err != nil {
			return n
		}
		k, _ := io.Copy(io.Discard, part)
		n += k
	}
}

func rangeHeader(ranges [][2]int64) string {
	var s []string
	for _, r := range ranges {
		s = append(s, fmt.Sprintf("%d-%d", r[0], r[1]))
	}
	return "bytes=" + strings.Join(s, ",")
}

func TestMultiRangeGet(t *testing.T) {
	p := startPeer(t, stdFixture)
	c := p.client(context.Background())
	hc := folderClient(c)
	const key = "ds0/web01/web01-flat.vmdk"
	flat, _ := os.ReadFile(filepath.Join(p.Dir, "ds0", "web01", "web01-flat.vmdk"))
	u := p.folderURL("web01/web01-flat.vmdk")
	p.ctl("POST", "/stats/reset", nil, nil)

	// several ranges, one clipped to the end of the file, one single byte
	ranges := [][2]int64{{0, 99}, {65536, 131071}, {12345, 12345}, {capacity0 - 1000, capacity0 - 1}}
	res, body, err := folderDo(t, hc, "GET", u, rangeHeader(ranges[:3])+fmt.Sprintf(",%d-%d", capacity0-1000, capacity0+5000))
	if err != nil {
		t.Fatal(err)
	}
	sent := checkMultipart(t, res, body, flat, ranges)
	boundary := strings.TrimPrefix(res.Header.Get("Content-Type"), "multipart/byteranges; boundary=")

	// HEAD: the same headers, no body, not a GET
	if res, body, err := folderDo(t, hc, "HEAD", u, rangeHeader(ranges)); err != nil || res.StatusCode != 206 ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "multipart/byteranges") || len(body) != 0 {
		t.Errorf("multi-range HEAD: %v %v", res, err)
	}
	// a single range is a plain 206
	if res, body, err := folderDo(t, hc, "GET", u, "bytes=10-19"); err != nil || res.StatusCode != 206 ||
		res.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", capacity0) || !bytes.Equal(body, flat[10:20]) {
		t.Errorf("single-range GET: %v %v", res, err)
	} else {
		sent += int64(len(body))
	}

	// a dropped multi-range answer is cut inside the multipart body, after
	// half the ranges' bytes
	p.fault(map[string]interface{}{"drop": map[string]interface{}{"count": 1}})
	var sum int64
	for _, r := range ranges {
		sum += r[1] - r[0] + 1
	}
	_, body, err = folderDo(t, hc, "GET", u, rangeHeader(ranges))
	if err == nil || int64(len(body)) != sum/2 {
		t.Errorf("dropped multi-range GET: err=%v, %d bytes, want %d before the cut", err, len(body), sum/2)
	}
	// The file bytes of a cut multipart answer: those read from the file,
	// at most what was sent, at least those of the parts received.
	slack := int64(len(body)) - partBytes(body, boundary)
	sent += partBytes(body, boundary)
	var fv struct{ Injected map[string]int }
	p.ctl("GET", "/fault", nil, &fv)
	if fv.Injected["drop"] != 1 {
		t.Errorf("injected: %v", fv.Injected)
	}
	p.fault(map[string]interface{}{"clear": true})

	// a directory listing, a missing file and a HEAD are not file GETs
	folderDo(t, hc, "GET", p.folderURL("web01"), "")
	folderDo(t, hc, "GET", p.folderURL("web01/nothing.vmdk"), "")
	folderDo(t, hc, "HEAD", u, "")
	if _, body, err := folderDo(t, hc, "GET", p.folderURL("web01/web01.vmdk"), ""); err != nil || len(body) == 0 {
		t.Errorf("descriptor GET: %v", err)
	}
	st := p.folderStats()
	if st.Files[key] < sent || st.Files[key] > sent+slack {
		t.Errorf("files[%s] = %d, want %d to %d (the file bytes sent)", key, st.Files[key], sent, sent+slack)
	}
	want := map[string]int64{key: 3, "ds0/web01/web01.vmdk": 1}
	if len(st.Gets) != len(want) || st.Gets[key] != want[key] || st.Gets["ds0/web01/web01.vmdk"] != 1 {
		t.Errorf("gets: %v, want %v", st.Gets, want)
	}
	if st.Requests["folder_get"] != 6 || st.Requests["folder_head"] != 2 {
		t.Errorf("requests: %v", st.Requests)
	}
	p.ctl("POST", "/stats/reset", nil, nil)
	if st := p.folderStats(); st.Gets == nil || len(st.Gets) != 0 {
		t.Errorf("gets after reset: %v", st.Gets)
	}
}

func TestMultiRangeFault(t *testing.T) {
	p := startPeer(t, stdFixture)
	c := p.client(context.Background())
	hc := folderClient(c)
	const key = "ds0/web01/web01-flat.vmdk"
	flat, _ := os.ReadFile(filepath.Join(p.Dir, "ds0", "web01", "web01-flat.vmdk"))
	u := p.folderURL("web01/web01-flat.vmdk")
	p.ctl("POST", "/stats/reset", nil, nil)
	size := int64(len(flat))
	multi := [][2]int64{{100, 199}, {1000, 1099}, {5000, 5999}}
	var sent, gets int64

	single := func(kind string) {
		t.Helper()
		res, body, err := folderDo(t, hc, "GET", u, "bytes=10-19")
		if err != nil || res.StatusCode != 206 || res.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", size) ||
			!bytes.Equal(body, flat[10:20]) {
			t.Errorf("%s: single-range GET: %v %v", kind, res, err)
		}
		sent += int64(len(body))
		gets++
	}
	plain206 := func(kind string, res *http.Response, body []byte, a, b int64) {
		t.Helper()
		if res.StatusCode != 206 || res.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", a, b, size) ||
			res.Header.Get("Content-Type") != "application/octet-stream" || !bytes.Equal(body, flat[a:b+1]) {
			t.Errorf("%s: %d %q %q, %d bytes, want a plain 206 of %d-%d", kind, res.StatusCode, res.Header.Get("Content-Range"),
				res.Header.Get("Content-Type"), len(body), a, b)
		}
	}

	checks := map[string]func(res *http.Response, body []byte){
		"whole": func(res *http.Response, body []byte) {
			if res.StatusCode != 200 || res.Header.Get("Content-Range") != "" || !bytes.Equal(body, flat) {
				t.Errorf("whole: %d %q, %d bytes", res.StatusCode, res.Header.Get("Content-Range"), len(body))
			}
		},
		"first": func(res *http.Response, body []byte) { plain206("first", res, body, 100, 199) },
		"refuse": func(res *http.Response, body []byte) {
			if res.StatusCode != http.StatusRequestedRangeNotSatisfiable || res.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
				t.Errorf("refuse: %d %q", res.StatusCode, res.Header.Get("Content-Range"))
			}
		},
		"coalesce": func(res *http.Response, body []byte) { plain206("coalesce", res, body, 100, 5999) },
	}
	injected := 0
	for _, kind := range []string{"whole", "first", "refuse", "coalesce"} {
		p.fault(map[string]interface{}{"multi_range": kind})
		res, body, err := folderDo(t, hc, "GET", u, rangeHeader(multi))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		checks[kind](res, body)
		sent += int64(len(body))
		gets++
		injected++
		single(kind)
		v := p.multiRangeView()
		if v.Injected["multi_range"] != injected || v.MultiRange == nil || *v.MultiRange != kind {
			t.Errorf("%s: GET /fault injected %v, multi_range %v", kind, v.Injected, v.MultiRange)
		}
	}

	// coalesce spans from the lowest start to the highest end
	res, body, err := folderDo(t, hc, "GET", u, "bytes=5000-5999,100-199")
	if err != nil {
		t.Fatal(err)
	}
	plain206("coalesce, descending", res, body, 100, 5999)
	sent += int64(len(body))
	gets++
	injected++

	// ranges Go would not answer with several parts are left alone: one
	// overlapping range, or more bytes than the file
	res, body, err = folderDo(t, hc, "GET", u, fmt.Sprintf("bytes=10-19,%d-%d", size, size+10))
	if err != nil {
		t.Fatal(err)
	}
	plain206("one overlapping range", res, body, 10, 19)
	sent += int64(len(body))
	gets++
	if v := p.multiRangeView(); v.Injected["multi_range"] != injected {
		t.Errorf("injected %v, want multi_range %d", v.Injected, injected)
	}

	// a drop under "first" cuts the single-part answer halfway
	p.fault(map[string]interface{}{"multi_range": "first", "drop": map[string]interface{}{"count": 1}})
	_, body, err = folderDo(t, hc, "GET", u, "bytes=0-9999,20000-29999")
	if err == nil || len(body) != 5000 || !bytes.Equal(body, flat[:5000]) {
		t.Errorf("first + drop: %v, %d bytes", err, len(body))
	}
	sent += int64(len(body))
	gets++
	injected++

	// unknown kinds are refused and change nothing
	for _, bad := range []interface{}{"split", "WHOLE", 3} {
		var e struct {
			OK    bool
			Error string
		}
		code := p.ctl("POST", "/fault", map[string]interface{}{"multi_range": bad}, &e)
		if code != 400 || e.OK || (bad == "split" && !strings.Contains(e.Error, `"coalesce"`)) {
			t.Errorf("multi_range %v: %d %+v, want 400 naming the kinds", bad, code, e)
		}
	}
	if v := p.multiRangeView(); v.MultiRange == nil || *v.MultiRange != "first" || v.Injected["multi_range"] != injected {
		t.Errorf("after refused settings: %v %v", v.MultiRange, v.Injected)
	}

	// "serve" and "" give the normal multipart answer again, uncounted
	for _, kind := range []string{"serve", ""} {
		p.fault(map[string]interface{}{"multi_range": "refuse"})
		p.fault(map[string]interface{}{"multi_range": kind})
		res, body, err := folderDo(t, hc, "GET", u, rangeHeader(multi))
		if err != nil {
			t.Fatal(err)
		}
		sent += checkMultipart(t, res, body, flat, multi)
		gets++
		if v := p.multiRangeView(); v.MultiRange != nil || v.Injected["multi_range"] != injected {
			t.Errorf("%q: multi_range %v, injected %v", kind, v.MultiRange, v.Injected)
		}
	}

	// byte and GET counters followed every answer as sent
	st := p.folderStats()
	if st.Files[key] != sent || st.Gets[key] != gets {
		t.Errorf("stats: files %d gets %d, want %d and %d", st.Files[key], st.Gets[key], sent, gets)
	}

	// clear restores the default and resets the counter
	p.fault(map[string]interface{}{"multi_range": "whole"})
	p.fault(map[string]interface{}{"clear": true})
	if v := p.multiRangeView(); v.MultiRange != nil || v.Injected["multi_range"] != 0 {
		t.Errorf("after clear: multi_range %v, injected %v", v.MultiRange, v.Injected)
	}
	res, body, err = folderDo(t, hc, "GET", u, rangeHeader(multi))
	if err != nil {
		t.Fatal(err)
	}
	checkMultipart(t, res, body, flat, multi)
}
