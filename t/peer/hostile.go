package main

// Hostile answers: a server that truncates, lies about types and sizes,
// floods or drips. One slot, set with POST /fault {"hostile":{...}}; the
// kinds are listed in README.md. Kinds that distort a real reply (truncate,
// replace, remove, drip) run the request through the normal handlers into a
// recorder first and then send a changed copy; the others (huge, endless,
// extents) make their answer up. Big answers are streamed, never held in
// memory.

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

type hostileFault struct {
	Kind    string  `json:"kind"`
	Path    string  `json:"path,omitempty"`    // "/sdk" (default) or "/folder"
	Method  string  `json:"method,omitempty"`  // /sdk: this SOAP method only ("" or "*": every one)
	Match   string  `json:"match,omitempty"`   // /folder: only paths containing this
	Count   int     `json:"count,omitempty"`   // only the next N matching requests; 0 = all
	Element string  `json:"element,omitempty"` // replace, remove: local element name
	Value   string  `json:"value,omitempty"`   // replace: the new text
	Bytes   int64   `json:"bytes,omitempty"`   // truncate: bytes kept (default half); huge: body size
	BPS     float64 `json:"bps,omitempty"`     // drip: bytes per second (default 1)
	Chunked bool    `json:"chunked,omitempty"` // huge: no Content-Length
	Objects *int    `json:"objects,omitempty"` // endless: objects per made-up page (default 100)
	Extents int64   `json:"extents,omitempty"` // extents: changed areas per reply
	Paged   bool    `json:"paged,omitempty"`   // extents: each reply covers only its areas
}

var hostileKinds = map[string][]string{ // kind -> paths it applies to
	"truncate": {"/sdk"},
	"replace":  {"/sdk"},
	"remove":   {"/sdk"},
	"huge":     {"/sdk", "/folder"},
	"drip":     {"/sdk", "/folder"},
	"endless":  {"/sdk"},
	"extents":  {"/sdk"},
}

func (h *hostileFault) check() error {
	paths, ok := hostileKinds[h.Kind]
	if !ok {
		return fmt.Errorf("unknown hostile kind %q", h.Kind)
	}
	if h.Path == "" {
		h.Path = "/sdk"
	}
	okPath := false
	for _, p := range paths {
		okPath = okPath || p == h.Path
	}
	if !okPath {
		return fmt.Errorf("hostile kind %q does not apply to %s", h.Kind, h.Path)
	}
	switch {
	case (h.Kind == "replace" || h.Kind == "remove") && h.Element == "":
		return errors.New("hostile replace/remove needs an element")
	case h.Kind == "huge" && h.Bytes <= 0:
		return errors.New("hostile huge needs bytes")
	case h.Kind == "extents" && h.Extents <= 0:
		return errors.New("hostile extents needs extents")
	case h.BPS < 0 || h.Bytes < 0 || h.Count < 0:
		return errors.New("hostile: negative bps, bytes or count")
	}
	if h.Kind == "drip" && h.BPS == 0 {
		h.BPS = 1
	}
	if h.Objects == nil {
		n := 100
		h.Objects = &n
	}
	return nil
}

// hostileFor returns the hostile fault for a request, if one applies, and
// counts it.
func (f *faultState) hostileFor(path, method, file string) *hostileFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hostile
	if h == nil || h.Path != path {
		return nil
	}
	if path == "/sdk" && h.Method != "" && h.Method != "*" && h.Method != method {
		// endless also answers the Continue calls that follow its pages
		if !(h.Kind == "endless" && method == "ContinueRetrievePropertiesEx") {
			return nil
		}
	}
	if path == "/folder" && h.Match != "" && !strings.Contains(file, h.Match) {
		return nil
	}
	f.injectedHostile++
	c := *h
	if h.Count > 0 {
		h.Count--
		if h.Count == 0 {
			f.hostile = nil
		}
	}
	return &c
}

// --- /sdk ----------------------------------------------------------------

const endlessPrefix = "endless-"

var tokenRe = regexp.MustCompile(`<token>[^<]*</token>`)

// hostileSDK answers a SOAP request the hostile way. answer runs the
// request through the normal handlers.
func (p *Peer) hostileSDK(w http.ResponseWriter, h *hostileFault, name string, req interface{}, answer func(http.ResponseWriter)) {
	logf("hostile: %s answers %s", h.Kind, name)
	switch h.Kind {
	case "huge":
		p.hugeSOAP(w, h, name)
		return
	case "extents":
		if q, ok := req.(*types.QueryChangedDiskAreas); ok {
			p.floodExtents(w, h, q)
			return
		}
	case "endless":
		if q, ok := req.(*types.ContinueRetrievePropertiesEx); ok && strings.HasPrefix(q.Token, endlessPrefix) {
			p.endlessPage(w, *h.Objects)
			return
		}
	}
	rec := httptest.NewRecorder()
	answer(rec)
	body := rec.Body.Bytes()
	switch h.Kind {
	case "truncate":
		n := h.Bytes
		if n <= 0 || n >= int64(len(body)) {
			n = int64(len(body)) / 2
		}
		body = body[:n]
	case "replace":
		re := regexp.MustCompile(`<(` + regexp.QuoteMeta(h.Element) + `)(\s[^>]*)?>[^<]*</` + regexp.QuoteMeta(h.Element) + `>`)
		var val bytes.Buffer
		xmlEscape(&val, h.Value)
		body = re.ReplaceAll(body, []byte(`<${1}${2}>`+strings.ReplaceAll(val.String(), "$", "$$")+`</${1}>`))
	case "remove":
		el := regexp.QuoteMeta(h.Element)
		re := regexp.MustCompile(`(?s)<` + el + `(\s[^>]*)?/>|<` + el + `(\s[^>]*)?>.*?</` + el + `>`)
		body = re.ReplaceAll(body, nil)
	case "endless":
		if (name == "RetrievePropertiesEx" || name == "ContinueRetrievePropertiesEx") && rec.Code == http.StatusOK {
			tok := []byte("<token>" + endlessPrefix + strconv.FormatInt(time.Now().UnixNano(), 10) + "</token>")
			if tokenRe.Match(body) {
				body = tokenRe.ReplaceAll(body, tok)
			} else {
				body = bytes.Replace(body, []byte("<returnval>"), append([]byte("<returnval>"), tok...), 1)
			}
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	if h.Kind == "drip" {
		drip(w, body, h.BPS)
		return
	}
	w.Write(body)
}

func xmlEscape(b *bytes.Buffer, s string) {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	b.WriteString(r.Replace(s))
}

// drip sends body at bps bytes per second, flushing every piece.
func drip(w http.ResponseWriter, body []byte, bps float64) error {
	piece := int(bps / 10)
	if piece < 1 {
		piece = 1
	}
	pause := time.Duration(float64(piece) / bps * float64(time.Second))
	fl, _ := w.(http.Flusher)
	for len(body) > 0 {
		n := piece
		if n > len(body) {
			n = len(body)
		}
		if _, err := w.Write(body[:n]); err != nil {
			return err
		}
		if fl != nil {
			fl.Flush()
		}
		body = body[n:]
		time.Sleep(pause)
	}
	return nil
}

// stream writes head, then filler repeated up to total bytes, then tail,
// without holding the body in memory.
func stream(w http.ResponseWriter, head, filler, tail []byte, total int64) {
	if _, err := w.Write(head); err != nil {
		return
	}
	left := total - int64(len(head)) - int64(len(tail))
	block := bytes.Repeat(filler, 65536/len(filler)+1)
	for left > 0 {
		n := int64(len(block))
		if n > left {
			n = left
		}
		if _, err := w.Write(block[:n]); err != nil {
			return
		}
		left -= n
	}
	w.Write(tail)
}

// hugeSOAP: a well-formed start of the method's response, then empty
// elements up to h.Bytes.
func (p *Peer) hugeSOAP(w http.ResponseWriter, h *hostileFault, name string) {
	head := []byte(envelopeOpen + `<` + name + `Response xmlns="urn:vim25"><returnval>`)
	tail := []byte(`</returnval></` + name + `Response>` + envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	if !h.Chunked {
		w.Header().Set("Content-Length", strconv.FormatInt(h.Bytes, 10))
	}
	w.WriteHeader(http.StatusOK)
	stream(w, head, []byte("<x/>"), tail, h.Bytes)
}

// endlessPage: made-up VMs and yet another token, forever.
func (p *Peer) endlessPage(w http.ResponseWriter, objects int) {
	var b bytes.Buffer
	b.WriteString(envelopeOpen)
	b.WriteString(`<ContinueRetrievePropertiesExResponse xmlns="urn:vim25"><returnval>`)
	seq := time.Now().UnixNano()
	fmt.Fprintf(&b, "<token>%s%d</token>", endlessPrefix, seq)
	for i := 0; i < objects; i++ {
		fmt.Fprintf(&b, `<objects><obj type="VirtualMachine">vm-e%d-%d</obj><propSet><name>name</name><val xsi:type="xsd:string">endless-%d-%d</val></propSet></objects>`, seq, i, seq, i)
	}
	b.WriteString(`</returnval></ContinueRetrievePropertiesExResponse>`)
	b.WriteString(envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// floodExtents answers QueryChangedDiskAreas with h.Extents changed areas
// of one byte every two bytes from the asked offset. The reply claims to
// cover the rest of the disk, or with paged only up to its last area, so
// that the client keeps asking.
func (p *Peer) floodExtents(w http.ResponseWriter, h *hostileFault, q *types.QueryChangedDiskAreas) {
	capacity := int64(1) << 62
	p.mu.Lock()
	if d := p.disks[q.This][q.DeviceKey]; d != nil {
		capacity = d.capacity
	}
	p.mu.Unlock()
	start := q.StartOffset
	length := capacity - start
	if h.Paged && 2*h.Extents < length {
		length = 2 * h.Extents
	}
	var head bytes.Buffer
	head.WriteString(envelopeOpen)
	fmt.Fprintf(&head, `<QueryChangedDiskAreasResponse xmlns="urn:vim25"><returnval><startOffset>%d</startOffset><length>%d</length>`, start, length)
	tail := []byte(`</returnval></QueryChangedDiskAreasResponse>` + envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(head.Bytes()); err != nil {
		return
	}
	var b bytes.Buffer
	for i := int64(0); i < h.Extents; i++ {
		fmt.Fprintf(&b, "<changedArea><start>%d</start><length>1</length></changedArea>", start+2*i)
		if b.Len() >= 65536 {
			if _, err := w.Write(b.Bytes()); err != nil {
				return
			}
			b.Reset()
		}
	}
	w.Write(b.Bytes())
	w.Write(tail)
}

// --- /folder -------------------------------------------------------------

// dripWriter slows a /folder body down to bps bytes per second.
type dripWriter struct {
	http.ResponseWriter
	bps float64
}

func (d *dripWriter) Write(b []byte) (int, error) {
	if err := drip(d.ResponseWriter, b, d.bps); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (d *dripWriter) Flush() {
	if f, ok := d.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// hugeFolder answers a GET with h.Bytes zero bytes whatever range was
// asked for (206 with the asked Content-Range when there was one).
func hugeFolder(w http.ResponseWriter, r *http.Request, h *hostileFault, size int64) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if !h.Chunked {
		w.Header().Set("Content-Length", strconv.FormatInt(h.Bytes, 10))
	}
	status := http.StatusOK
	if rng := r.Header.Get("Range"); strings.HasPrefix(rng, "bytes=") {
		w.Header().Set("Content-Range", "bytes "+strings.TrimPrefix(rng, "bytes=")+"/"+strconv.FormatInt(size, 10))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	stream(w, nil, []byte{0}, nil, h.Bytes)
}
