package main

// Datastore file access over HTTPS, as vCenter's /folder/<path>?dcPath=&dsName=.
// Requests need a live SOAP session cookie. GET/HEAD serve files with Range
// support; PUT streams into a temporary file and renames it into place.

import (
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

type countingWriter struct {
	http.ResponseWriter
	stats   *statTable
	key     string
	sent    int64
	cut     int64 // cut the connection after this many body bytes; -1 = never
	framing bool  // a multipart body: the file's bytes are counted as read (fileReader)
}

// fileReader counts the bytes of a file that a multipart answer reads, so
// that the served counters hold file bytes only, not part headers.
type fileReader struct {
	io.ReadSeeker
	read int64
}

func (f *fileReader) Read(b []byte) (int, error) {
	n, err := f.ReadSeeker.Read(b)
	f.read += int64(n)
	return n, err
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.cut >= 0 && c.sent+int64(len(b)) >= c.cut {
		n := c.cut - c.sent
		m, _ := c.ResponseWriter.Write(b[:n])
		c.sent += int64(m)
		if !c.framing {
			c.stats.served(c.key, int64(m))
		}
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		logf("drop: cut %s after %d body bytes", c.key, c.sent)
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(b)
	c.sent += int64(n)
	if !c.framing {
		c.stats.served(c.key, int64(n))
	}
	return n, err
}

// byteRange is one range of a Range header, clipped to the file.
type byteRange struct{ start, length int64 }

// parseRanges reads a "bytes=a-b,c-,-n" header the way Go's
// http.ServeContent does: ranges starting at or past the end are left out,
// ends are clipped to the file. ok is false for a header ServeContent
// refuses (malformed, or no range overlapping the file).
func parseRanges(h string, size int64) (ranges []byteRange, ok bool) {
	if !strings.HasPrefix(h, "bytes=") {
		return nil, false
	}
	noOverlap := false
	for _, ra := range strings.Split(strings.TrimPrefix(h, "bytes="), ",") {
		ra = strings.TrimSpace(ra)
		if ra == "" {
			continue
		}
		i := strings.Index(ra, "-")
		if i < 0 {
			return nil, false
		}
		a, b := strings.TrimSpace(ra[:i]), strings.TrimSpace(ra[i+1:])
		if a == "" {
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil || n < 0 || strings.HasPrefix(b, "-") {
				return nil, false
			}
			n = min64(n, size)
			ranges = append(ranges, byteRange{size - n, n})
			continue
		}
		start, err := strconv.ParseInt(a, 10, 64)
		if err != nil || start < 0 {
			return nil, false
		}
		if start >= size {
			noOverlap = true
			continue
		}
		end := size - 1
		if b != "" {
			e, err := strconv.ParseInt(b, 10, 64)
			if err != nil || e < start {
				return nil, false
			}
			end = min64(e, size-1)
		}
		ranges = append(ranges, byteRange{start, end - start + 1})
	}
	if noOverlap && len(ranges) == 0 {
		return nil, false
	}
	return ranges, true
}

// multipartRanges returns the ranges of a request that http.ServeContent
// answers with a multipart/byteranges body (two or more ranges, together
// no longer than the file), else nil.
func multipartRanges(r *http.Request, size int64) []byteRange {
	ranges, ok := parseRanges(r.Header.Get("Range"), size)
	if !ok || len(ranges) < 2 || sumRanges(ranges) > size {
		return nil
	}
	return ranges
}

func sumRanges(ranges []byteRange) int64 {
	var n int64
	for _, ra := range ranges {
		n += ra.length
	}
	return n
}

// bodyLength predicts the file bytes of the answer: those of the requested
// ranges (for several ranges their sum, which the multipart body exceeds
// by its part headers, so a cut there falls inside the body), else the
// whole file.
func bodyLength(r *http.Request, size int64) int64 {
	ranges, ok := parseRanges(r.Header.Get("Range"), size)
	if !ok || len(ranges) == 0 {
		return size
	}
	if n := sumRanges(ranges); n <= size {
		return n
	}
	return size
}

// multiRangeFault applies the multi_range fault to a request that would
// get a multipart answer: the Range header is rewritten for the kinds that
// answer a single range or the whole file. It returns true when it has
// answered the request itself (refuse: 416).
func (p *Peer) multiRangeFault(w http.ResponseWriter, r *http.Request, key string, f *os.File, size int64) bool {
	ranges := multipartRanges(r, size)
	if ranges == nil {
		if p.faults.rangeShifted() {
			if rs, ok := parseRanges(r.Header.Get("Range"), size); ok && len(rs) == 1 && rs[0].start+rs[0].length < size {
				r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rs[0].start+1, rs[0].start+rs[0].length))
				logf("shift_range: answers GET %s with Range %q", key, r.Header.Get("Range"))
			}
		}
		return false
	}
	kind := p.faults.multiRangeFires()
	switch kind {
	case "":
		return false
	case "short":
		shortPart(w, r, p.stats, key, f, ranges[0], size)
		return true
	case "extra_part":
		extraPart(w, r, p.stats, key, f, ranges, size)
		return true
	case "whole":
		r.Header.Del("Range")
	case "first":
		ra := ranges[0]
		r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", ra.start, ra.start+ra.length-1))
	case "coalesce":
		lo, hi := ranges[0].start, ranges[0].start+ranges[0].length
		for _, ra := range ranges[1:] {
			if ra.start < lo {
				lo = ra.start
			}
			if e := ra.start + ra.length; e > hi {
				hi = e
			}
		}
		r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", lo, hi-1))
	case "refuse":
		logf("multi_range: refuse %s %s (%d ranges)", r.Method, key, len(ranges))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		// through the counter, as ServeContent's own 416 answers are
		http.Error(&countingWriter{ResponseWriter: w, stats: p.stats, key: key, cut: -1},
			"416 Range Not Satisfiable: multiple ranges", http.StatusRequestedRangeNotSatisfiable)
		return true
	}
	logf("multi_range: %s answers %s %s (%d ranges) with Range %q", kind, r.Method, key, len(ranges), r.Header.Get("Range"))
	return false
}

func (p *Peer) serveFolder(w http.ResponseWriter, r *http.Request) {
	p.stats.request("folder_" + strings.ToLower(r.Method))
	if p.faults.httpError("/folder", r.Method, w) {
		return
	}
	cookie := sessionCookie(r)
	if cookie == "" || !p.sessions.valid(cookie, p.faults) {
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	dsName := q.Get("dsName")
	dir, ok := p.dsDirs[dsName]
	if !ok {
		http.Error(w, "404 Not Found: unknown datastore", http.StatusNotFound)
		return
	}
	if dc := q.Get("dcPath"); dc != "" && p.dsDC[dsName] != "" && strings.Trim(dc, "/") != p.dsDC[dsName] {
		http.Error(w, "404 Not Found: datastore not in that datacenter", http.StatusNotFound)
		return
	}
	rel := strings.TrimPrefix(path.Clean("/"+strings.TrimPrefix(r.URL.Path, "/folder")), "/")
	full := filepath.Join(dir, filepath.FromSlash(rel))
	key := dsName + "/" + rel

	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f, err := os.Open(full)
		if err != nil {
			http.Error(w, "404 Not Found", http.StatusNotFound)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if st.IsDir() {
			p.listDir(w, f, rel, r.URL.RawQuery)
			return
		}
		if r.Method == http.MethodGet {
			p.stats.fileGet(key)
			owed := bodyLength(r, st.Size())
			p.stats.getBegin(owed)
			defer p.stats.getEnd(owed)
			p.faults.delayGet()
		}
		if p.faults.rangeIgnored() {
			r.Header.Del("Range")
		}
		if p.multiRangeFault(w, r, key, f, st.Size()) {
			return
		}
		var out http.ResponseWriter = w
		if r.Method == http.MethodGet {
			if h := p.faults.hostileFor("/folder", "", rel); h != nil {
				logf("hostile: %s answers GET %s", h.Kind, key)
				if h.Kind == "huge" {
					hugeFolder(&countingWriter{ResponseWriter: w, stats: p.stats, key: key, cut: -1}, r, h, st.Size())
					return
				}
				out = &dripWriter{ResponseWriter: w, bps: h.BPS}
			}
		}
		cw := &countingWriter{ResponseWriter: out, stats: p.stats, key: key, cut: -1}
		if r.Method == http.MethodGet {
			cw.cut = p.faults.dropAfter(http.MethodGet, bodyLength(r, st.Size()))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.Method == http.MethodGet && multipartRanges(r, st.Size()) != nil {
			// Count the file's bytes, not the part headers: what was
			// read, at most what was sent (a cut may leave up to one
			// read buffer unsent).
			fr := &fileReader{ReadSeeker: f}
			cw.framing = true
			defer func() { p.stats.served(key, min64(fr.read, cw.sent)) }()
			http.ServeContent(cw, r, st.Name(), st.ModTime(), fr)
			return
		}
		http.ServeContent(cw, r, st.Name(), st.ModTime(), f)
	case http.MethodPut, http.MethodPost:
		if rel == "" {
			http.Error(w, "400 Bad Request", http.StatusBadRequest)
			return
		}
		_, statErr := os.Stat(full)
		existed := statErr == nil
		if r.Method == http.MethodPost && existed {
			http.Error(w, "409 Conflict", http.StatusConflict)
			return
		}
		if cut := p.faults.dropAfter(http.MethodPut, r.ContentLength); cut >= 0 {
			// The connection breaks in the middle of the upload: nothing
			// is written, the client gets no answer.
			io.CopyN(io.Discard, r.Body, cut)
			logf("drop: cut the upload of %s after %d body bytes", key, cut)
			panic(http.ErrAbortHandler)
		}
		if err := os.MkdirAll(filepath.Dir(full), 0755); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		tmp := fmt.Sprintf("%s.upload-%d", full, p.nextUpload())
		f, err := os.Create(tmp)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n, err := io.Copy(f, r.Body)
		cerr := f.Close()
		if err == nil {
			err = cerr
		}
		if err == nil && r.ContentLength >= 0 && n != r.ContentLength {
			err = fmt.Errorf("short body: %d of %d bytes", n, r.ContentLength)
		}
		if err == nil {
			// a delta of a VM's disk is taken as ESXi takes it, or refused
			if status, perr := p.putInPlace(dsName, rel, tmp, full); perr != nil {
				os.Remove(tmp)
				logf("PUT %s refused: %v", key, perr)
				http.Error(w, perr.Error(), status)
				return
			}
		}
		if err != nil {
			os.Remove(tmp)
			logf("PUT %s: %v", key, err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		p.stats.mu.Lock()
		p.stats.requests["folder_put_bytes"] += n
		p.stats.mu.Unlock()
		if existed {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusCreated)
		}
	case http.MethodDelete:
		if err := os.Remove(full); err != nil {
			http.Error(w, "404 Not Found", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "405 Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

func (p *Peer) nextUpload() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Int63()
}

func (p *Peer) listDir(w http.ResponseWriter, f *os.File, rel, query string) {
	names, err := f.Readdirnames(-1)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<html><body><table>\n")
	for _, n := range names {
		u := path.Join("/folder", rel, n) + "?" + query
		fmt.Fprintf(w, "<tr><td><a href=\"%s\">%s</a></td></tr>\n", html.EscapeString(u), html.EscapeString(n))
	}
	fmt.Fprintf(w, "</table></body></html>\n")
}

// shortPart answers with a single-part 206 for the first range that ends
// halfway, without Content-Length, the connection closed cleanly: the
// client sees a complete answer unless it counts the bytes itself.
func shortPart(w http.ResponseWriter, r *http.Request, stats *statTable, key string, f *os.File, ra byteRange, size int64) {
	logf("multi_range: short answers %s %s with half of its first range", r.Method, key)
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Range: bytes %d-%d/%d\r\nConnection: close\r\n\r\n", ra.start, ra.start+ra.length-1, size)
	if r.Method == http.MethodGet {
		n, _ := io.Copy(buf, io.NewSectionReader(f, ra.start, ra.length/2))
		stats.served(key, n)
	}
	buf.Flush()
}

// extraPart answers with a multipart/byteranges body whose first range
// comes in two parts: every byte right, one part more than ranges asked.
func extraPart(w http.ResponseWriter, r *http.Request, stats *statTable, key string, f *os.File, ranges []byteRange, size int64) {
	logf("multi_range: extra_part answers %s %s with %d parts", r.Method, key, len(ranges)+1)
	half := ranges[0].length / 2
	if half == 0 {
		half = ranges[0].length
	}
	parts := []byteRange{{ranges[0].start, half}}
	if half < ranges[0].length {
		parts = append(parts, byteRange{ranges[0].start + half, ranges[0].length - half})
	}
	parts = append(parts, ranges[1:]...)
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/byteranges; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusPartialContent)
	if r.Method != http.MethodGet {
		return
	}
	for _, ra := range parts {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("bytes %d-%d/%d", ra.start, ra.start+ra.length-1, size)},
		})
		if err != nil {
			return
		}
		n, err := io.Copy(pw, io.NewSectionReader(f, ra.start, ra.length))
		stats.served(key, n)
		if err != nil {
			return
		}
	}
	mw.Close()
}
