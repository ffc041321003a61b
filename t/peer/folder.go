package main

// Datastore file access over HTTPS, as vCenter's /folder/<path>?dcPath=&dsName=.
// Requests need a live SOAP session cookie. GET/HEAD serve files with Range
// support; PUT streams into a temporary file and renames it into place.

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

type countingWriter struct {
	http.ResponseWriter
	stats *statTable
	key   string
	sent  int64
	cut   int64 // cut the connection after this many body bytes; -1 = never
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.cut >= 0 && c.sent+int64(len(b)) >= c.cut {
		n := c.cut - c.sent
		m, _ := c.ResponseWriter.Write(b[:n])
		c.sent += int64(m)
		c.stats.served(c.key, int64(m))
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		logf("drop: cut %s after %d body bytes", c.key, c.sent)
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(b)
	c.sent += int64(n)
	c.stats.served(c.key, int64(n))
	return n, err
}

// bodyLength predicts the body size for a single "bytes=a-b" range, else
// the whole file.
func bodyLength(r *http.Request, size int64) int64 {
	h := r.Header.Get("Range")
	if !strings.HasPrefix(h, "bytes=") || strings.Contains(h, ",") {
		return size
	}
	spec := strings.TrimPrefix(h, "bytes=")
	i := strings.Index(spec, "-")
	if i < 0 {
		return size
	}
	a, b := strings.TrimSpace(spec[:i]), strings.TrimSpace(spec[i+1:])
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil {
			return size
		}
		return min64(n, size)
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start >= size {
		return size
	}
	end := size - 1
	if b != "" {
		if e, err := strconv.ParseInt(b, 10, 64); err == nil && e < end {
			end = e
		}
	}
	return end - start + 1
}

func (p *Peer) serveFolder(w http.ResponseWriter, r *http.Request) {
	p.stats.request("folder_" + strings.ToLower(r.Method))
	if p.faults.httpError("/folder", r.Method, w) {
		return
	}
	cookie := sessionCookie(r)
	if cookie == "" || !p.sessions.valid(cookie, p.faults.sessionExpiry()) {
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
		if p.faults.rangeIgnored() {
			r.Header.Del("Range")
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
			err = os.Rename(tmp, full)
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
