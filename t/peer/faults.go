package main

// Fault injection and counters. Every fault kind is one slot; a POST /fault
// replaces the slots it names. Probabilistic faults draw from one seeded
// RNG so a test run is repeatable.

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"sync"
	"time"
)

type delayFault struct {
	Method string `json:"method"`
	MS     int    `json:"ms"`
}

type httpErrorFault struct {
	Status   int     `json:"status"`
	Fraction float64 `json:"fraction"`
	Path     string  `json:"path"`
	Count    int     `json:"count,omitempty"`  // fail exactly the next N matching requests
	Method   string  `json:"method,omitempty"` // only requests with this HTTP method ("PUT": uploads); "" or "*": any
}

type dropFault struct {
	Fraction float64 `json:"fraction"`
	Count    int     `json:"count,omitempty"`
	After    int64   `json:"after,omitempty"`  // body bytes sent (or received) before the cut
	Method   string  `json:"method,omitempty"` // "GET" (default): reads; "PUT": uploads; "*": both
}

type cbtResetFault struct {
	VM   string `json:"vm"`
	Disk int    `json:"disk"`
}

// faultRequest is the body of POST /fault.
type faultRequest struct {
	Delay          *delayFault     `json:"delay"`
	HTTPError      *httpErrorFault `json:"http_error"`
	Drop           *dropFault      `json:"drop"`
	SessionExpiryS *float64        `json:"session_expiry_s"`
	OutageS        *float64        `json:"outage_s"`
	CBTReset       *cbtResetFault  `json:"cbt_reset"`
	Hostile        *hostileFault   `json:"hostile"`
	Cert           *string         `json:"cert"` // "new": a fresh self-signed certificate; "original"
	IgnoreRange    *bool           `json:"ignore_range"`
	ShiftRange     *bool           `json:"shift_range"`
	MultiRange     *string         `json:"multi_range"` // "" or "serve", "whole", "first", "refuse", "coalesce"
	Hotadd         *hotaddFault    `json:"hotadd"`
	Clear          bool            `json:"clear"`
	Seed           *int64          `json:"seed"`
}

type faultState struct {
	mu              sync.Mutex
	rng             *rand.Rand
	seed            int64
	delayF          *delayFault
	httpErr         *httpErrorFault
	drop            *dropFault
	expiry          time.Duration
	ignoreRange     bool
	shiftRange      bool
	multiRange      string // "" (normal), "whole", "first", "refuse" or "coalesce"
	outageUntil     time.Time
	hostile         *hostileFault
	injectedHTTP    int
	injectedDrops   int
	injectedHostile int
	injectedMulti   int
	injectedDelay   int // requests held by a delay
	injectedExpiry  int // sessions found expired by session_expiry_s
	injectedOutage  int // outages begun
	hotaddAttach    hotaddSlot
	hotaddDetach    hotaddSlot
	injectedHotadd  int // hot-add tasks a hotadd fault changed
}

// hotaddFault is the "hotadd" key of POST /fault: attach "fail" or
// "no_device", detach "fail", each for the next count (default 1) tasks;
// "" or "none" empties that slot.
type hotaddFault struct {
	Attach *string `json:"attach"`
	Detach *string `json:"detach"`
	Count  int     `json:"count,omitempty"`
}

type hotaddSlot struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

func (h *hotaddFault) check() error {
	if h.Attach != nil {
		switch *h.Attach {
		case "", "none", "fail", "no_device":
		default:
			return fmt.Errorf(`hotadd attach must be "fail", "no_device" or "none", not %q`, *h.Attach)
		}
	}
	if h.Detach != nil {
		switch *h.Detach {
		case "", "none", "fail":
		default:
			return fmt.Errorf(`hotadd detach must be "fail" or "none", not %q`, *h.Detach)
		}
	}
	if h.Count < 0 {
		return fmt.Errorf("hotadd count must be >= 0")
	}
	if h.Attach == nil && h.Detach == nil {
		return fmt.Errorf(`hotadd needs "attach" or "detach"`)
	}
	return nil
}

// hotaddFires is asked once per hot-add task that attaches ("attach") or
// detaches ("detach"): it returns the fault kind to apply ("" = none) and
// counts it down.
func (f *faultState) hotaddFires(op string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &f.hotaddAttach
	if op == "detach" {
		s = &f.hotaddDetach
	}
	if s.Kind == "" || s.Count <= 0 {
		return ""
	}
	kind := s.Kind
	s.Count--
	if s.Count == 0 {
		*s = hotaddSlot{}
	}
	f.injectedHotadd++
	return kind
}

func newFaultState() *faultState {
	return &faultState{rng: rand.New(rand.NewSource(1)), seed: 1}
}

func (f *faultState) delay(method string) {
	f.sleepIf(func(m string) bool { return m == "*" || m == method })
}

// delayGet holds a /folder GET of a file when the delay's method is
// "GET /folder" (never matched by "*", which stays with SOAP methods: a
// delay of every read would slow the copies under test tenfold).
func (f *faultState) delayGet() {
	f.sleepIf(func(m string) bool { return m == "GET /folder" })
}

// sleepIf sleeps the delay fault's time when its method matches.
func (f *faultState) sleepIf(match func(method string) bool) {
	f.mu.Lock()
	d := f.delayF
	f.mu.Unlock()
	if d != nil && d.MS > 0 && match(d.Method) {
		f.mu.Lock()
		f.injectedDelay++
		f.mu.Unlock()
		time.Sleep(time.Duration(d.MS) * time.Millisecond)
	}
}

func (f *faultState) sessionExpiry() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.expiry
}

// sessionExpired counts a session that session_expiry_s ended.
func (f *faultState) sessionExpired() {
	f.mu.Lock()
	f.injectedExpiry++
	f.mu.Unlock()
}

// draw decides whether a probabilistic fault fires; count, when set, fires
// deterministically and counts down.
func (f *faultState) draw(fraction float64, count *int) bool {
	if *count > 0 {
		*count--
		return true
	}
	return fraction > 0 && f.rng.Float64() < fraction
}

// httpError answers the request with the configured status if the fault
// fires for this path kind ("/sdk" or "/folder") and HTTP method.
func (f *faultState) httpError(kind, method string, w http.ResponseWriter) bool {
	f.mu.Lock()
	e := f.httpErr
	fire := false
	status := 0
	if e != nil && (e.Path == "*" || e.Path == "" || e.Path == kind) && (e.Method == "" || e.Method == "*" || e.Method == method) {
		fire = f.draw(e.Fraction, &e.Count)
		status = e.Status
		if fire {
			f.injectedHTTP++
		}
	}
	f.mu.Unlock()
	if !fire {
		return false
	}
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	http.Error(w, "vmferry-peer: injected fault", status)
	return true
}

// rangeIgnored: /folder GETs answer with the whole file (HTTP 200), as a
// server without Range support would.
func (f *faultState) rangeIgnored() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ignoreRange
}

// rangeShifted: single-range /folder GETs are answered for the range one
// byte further (with its own Content-Range), as a broken server would.
func (f *faultState) rangeShifted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shiftRange
}

// multiRangeKinds are the values of the multi_range fault ("" and "serve"
// both mean a normal multipart/byteranges answer).
var multiRangeKinds = []string{"serve", "whole", "first", "refuse", "coalesce", "short", "extra_part"}

func checkMultiRange(kind string) error {
	if kind == "" {
		return nil
	}
	for _, k := range multiRangeKinds {
		if kind == k {
			return nil
		}
	}
	return badFault{fmt.Errorf(`multi_range must be "serve" (or ""), "whole", "first", "refuse", "coalesce", "short" or "extra_part", not %q`, kind)}
}

// multiRangeFires is asked for a /folder GET or HEAD that http.ServeContent
// would answer with several parts: it returns how to answer instead ("" =
// normally) and counts the answers it changes.
func (f *faultState) multiRangeFires() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.multiRange != "" {
		f.injectedMulti++
	}
	return f.multiRange
}

// dropAfter returns how many body bytes of a request with that method to
// send (GET) or take (PUT) before cutting the connection, or -1 for no drop.
func (f *faultState) dropAfter(method string, length int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.drop
	if d == nil || length <= 0 {
		return -1
	}
	want := d.Method
	if want == "" {
		want = http.MethodGet
	}
	if (want != "*" && want != method) || !f.draw(d.Fraction, &d.Count) {
		return -1
	}
	f.injectedDrops++
	if d.After > 0 && d.After < length {
		return d.After
	}
	return length / 2
}

// faultView is what GET /fault shows: the settings, counters and the
// thumbprint of the certificate served now.
func (p *Peer) faultView() map[string]interface{} {
	out := p.faults.snapshot()
	out["thumbprint"] = p.https.thumbprint()
	return out
}

func (f *faultState) snapshot() map[string]interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]interface{}{
		"seed":             f.seed,
		"session_expiry_s": f.expiry.Seconds(),
		"injected": map[string]int{"http_error": f.injectedHTTP, "drop": f.injectedDrops, "hostile": f.injectedHostile,
			"multi_range": f.injectedMulti, "delay": f.injectedDelay, "session_expiry": f.injectedExpiry, "outage": f.injectedOutage,
			"hotadd": f.injectedHotadd},
	}
	if f.hotaddAttach.Kind != "" || f.hotaddDetach.Kind != "" {
		h := map[string]hotaddSlot{}
		if f.hotaddAttach.Kind != "" {
			h["attach"] = f.hotaddAttach
		}
		if f.hotaddDetach.Kind != "" {
			h["detach"] = f.hotaddDetach
		}
		out["hotadd"] = h
	}
	if f.delayF != nil {
		out["delay"] = f.delayF
	}
	if f.httpErr != nil {
		out["http_error"] = f.httpErr
	}
	if f.drop != nil {
		out["drop"] = f.drop
	}
	if f.hostile != nil {
		out["hostile"] = f.hostile
	}
	if f.ignoreRange {
		out["ignore_range"] = true
	}
	if f.shiftRange {
		out["shift_range"] = true
	}
	if f.multiRange != "" {
		out["multi_range"] = f.multiRange
	}
	if time.Now().Before(f.outageUntil) {
		out["outage_remaining_s"] = time.Until(f.outageUntil).Seconds()
	}
	return out
}

// badFault is a fault request that makes no sense (400, not 404).
type badFault struct{ error }

// apply installs the settings of one POST /fault body.
func (p *Peer) applyFault(req *faultRequest) error {
	f := p.faults
	if h := req.Hostile; h != nil && h.Kind != "" && h.Kind != "none" {
		if err := h.check(); err != nil {
			return badFault{err}
		}
	}
	if req.Cert != nil && *req.Cert != "new" && *req.Cert != "original" {
		return fmt.Errorf("cert must be \"new\" or \"original\", not %q", *req.Cert)
	}
	if req.MultiRange != nil {
		if err := checkMultiRange(*req.MultiRange); err != nil {
			return err
		}
	}
	if req.Hotadd != nil {
		if err := req.Hotadd.check(); err != nil {
			return badFault{err}
		}
	}
	if req.CBTReset != nil {
		if err := p.cbtReset(req.CBTReset.VM, req.CBTReset.Disk); err != nil {
			return err
		}
	}
	f.mu.Lock()
	if req.Clear {
		f.delayF, f.httpErr, f.drop, f.expiry, f.hostile, f.ignoreRange, f.shiftRange, f.multiRange = nil, nil, nil, 0, nil, false, false, ""
		f.injectedHTTP, f.injectedDrops, f.injectedHostile, f.injectedMulti = 0, 0, 0, 0
		f.injectedDelay, f.injectedExpiry, f.injectedOutage = 0, 0, 0
		f.hotaddAttach, f.hotaddDetach, f.injectedHotadd = hotaddSlot{}, hotaddSlot{}, 0
		f.seed = 1
		f.rng = rand.New(rand.NewSource(1))
	}
	if req.Seed != nil {
		f.seed = *req.Seed
		f.rng = rand.New(rand.NewSource(f.seed))
	}
	if req.Delay != nil {
		f.delayF = req.Delay
		if req.Delay.MS <= 0 {
			f.delayF = nil
		}
	}
	if req.HTTPError != nil {
		f.httpErr = req.HTTPError
		if req.HTTPError.Fraction <= 0 && req.HTTPError.Count <= 0 {
			f.httpErr = nil
		}
	}
	if req.Drop != nil {
		f.drop = req.Drop
		if req.Drop.Fraction <= 0 && req.Drop.Count <= 0 {
			f.drop = nil
		}
	}
	if req.Hostile != nil {
		f.hostile = req.Hostile
		if req.Hostile.Kind == "" || req.Hostile.Kind == "none" {
			f.hostile = nil
		}
	}
	if h := req.Hotadd; h != nil {
		n := h.Count
		if n == 0 {
			n = 1
		}
		set := func(s *hotaddSlot, kind *string) {
			if kind == nil {
				return
			}
			*s = hotaddSlot{Kind: *kind, Count: n}
			if *kind == "" || *kind == "none" {
				*s = hotaddSlot{}
			}
		}
		set(&f.hotaddAttach, h.Attach)
		set(&f.hotaddDetach, h.Detach)
	}
	if req.SessionExpiryS != nil {
		f.expiry = time.Duration(*req.SessionExpiryS * float64(time.Second))
	}
	if req.ShiftRange != nil {
		f.shiftRange = *req.ShiftRange
	}
	if req.IgnoreRange != nil {
		f.ignoreRange = *req.IgnoreRange
	}
	if req.MultiRange != nil {
		f.multiRange = *req.MultiRange
		if f.multiRange == "serve" {
			f.multiRange = ""
		}
	}
	f.mu.Unlock()
	if req.Clear {
		p.https.endOutage()
	}
	if req.Cert != nil && *req.Cert == "new" {
		cert, _, err := selfSigned()
		if err != nil {
			return err
		}
		p.https.setCert(cert)
	} else if (req.Cert != nil || req.Clear) && p.https.thumbprint() != thumbprint(p.https.original.Certificate[0]) {
		p.https.setCert(p.https.original)
	}
	if req.OutageS != nil && *req.OutageS > 0 {
		d := time.Duration(*req.OutageS * float64(time.Second))
		f.mu.Lock()
		f.outageUntil = time.Now().Add(d)
		f.injectedOutage++
		f.mu.Unlock()
		p.https.outage(d)
	}
	return nil
}

// --- counters --------------------------------------------------------------

type statTable struct {
	mu       sync.Mutex
	files    map[string]int64
	requests map[string]int64
	methods  map[string]int64
	gets     map[string]int64 // /folder GETs answered from each file
	owed     int64            // bytes of the /folder GETs of files being answered now
}

func newStatTable() *statTable {
	t := &statTable{}
	t.reset()
	return t
}

func (t *statTable) reset() {
	t.mu.Lock()
	t.files = map[string]int64{}
	t.requests = map[string]int64{}
	t.methods = map[string]int64{}
	t.gets = map[string]int64{}
	for _, k := range []string{"attached", "detached", "destroyed", "bytes_written", "bytes_read"} {
		t.requests["hotadd_"+k] = 0
	}
	t.requests["folder_get_owed_max"] = t.owed
	t.mu.Unlock()
}

// getBegin and getEnd bracket the answer to a /folder GET of n bytes of
// a file; folder_get_owed_max is the most bytes owed at once since the
// last reset, what a host holds for its clients (host_buffer_cap).
func (t *statTable) getBegin(n int64) {
	t.mu.Lock()
	t.owed += n
	if t.owed > t.requests["folder_get_owed_max"] {
		t.requests["folder_get_owed_max"] = t.owed
	}
	t.mu.Unlock()
}

func (t *statTable) getEnd(n int64) {
	t.mu.Lock()
	t.owed -= n
	t.mu.Unlock()
}

// hotadd counts hot-add events: "attached", "detached", "destroyed"
// (detaches with fileOperation=destroy), "bytes_written", "bytes_read".
func (t *statTable) hotadd(kind string, n int64) {
	t.mu.Lock()
	t.requests["hotadd_"+kind] += n
	t.mu.Unlock()
}

func (t *statTable) request(kind string) {
	t.mu.Lock()
	t.requests[kind]++
	t.mu.Unlock()
}

func (t *statTable) method(name string) {
	t.mu.Lock()
	t.methods[name]++
	t.mu.Unlock()
}

func (t *statTable) fileGet(file string) {
	t.mu.Lock()
	t.gets[file]++
	t.mu.Unlock()
}

func (t *statTable) cbtQuery() { t.request("cbt_query") }

func (t *statTable) served(file string, n int64) {
	t.mu.Lock()
	t.files[file] += n
	t.requests["folder_bytes"] += n
	t.mu.Unlock()
}

func (t *statTable) MarshalJSON() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return json.Marshal(map[string]interface{}{"files": t.files, "requests": t.requests, "methods": t.methods, "gets": t.gets})
}
