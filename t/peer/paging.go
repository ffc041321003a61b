package main

// Paged property retrieval, as vCenter does it: RetrievePropertiesEx returns
// at most maxObjects objects (further capped by --max-objects) plus a token,
// ContinueRetrievePropertiesEx(token) hands out the next page, and
// CancelRetrievePropertiesEx forgets the rest. vcsim ignores maxObjects and
// answers everything at once; its complete reply is cut into pages here. The
// <objects> elements are kept byte for byte as vcsim wrote them, so every
// page looks exactly like a vcsim reply. The whole result is taken when
// RetrievePropertiesEx runs (a snapshot), so pages never overlap or miss an
// object, whatever changes in between.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/vmware/govmomi/vim25/types"
)

// maxPendingResults bounds the results kept for ContinueRetrievePropertiesEx;
// beyond it the oldest is dropped (its token becomes invalid).
const maxPendingResults = 1000

type pendingResult struct {
	session string                       // session cookie that made the request
	pc      types.ManagedObjectReference // property collector it was made on
	objects [][]byte                     // remaining <objects> elements, raw
	limit   int                          // page size
}

type pagingTable struct {
	mu    sync.Mutex
	seq   int
	m     map[string]*pendingResult
	order []string // tokens, oldest first (may hold tokens already gone)
}

func newPagingTable() *pagingTable { return &pagingTable{m: map[string]*pendingResult{}} }

func (t *pagingTable) put(r *pendingResult) string {
	var rnd [6]byte
	rand.Read(rnd[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	tok := fmt.Sprintf("%d-%s", t.seq, hex.EncodeToString(rnd[:]))
	t.m[tok] = r
	t.order = append(t.order, tok)
	for len(t.m) > maxPendingResults && len(t.order) > 0 {
		delete(t.m, t.order[0])
		t.order = t.order[1:]
	}
	if len(t.order) > 2*maxPendingResults {
		live := t.order[:0]
		for _, k := range t.order {
			if t.m[k] != nil {
				live = append(live, k)
			}
		}
		t.order = live
	}
	return tok
}

// take removes and returns the result of a token, if it belongs to that
// session and collector.
func (t *pagingTable) take(tok, session string, pc types.ManagedObjectReference) *pendingResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.m[tok]
	if r == nil || r.session != session || r.pc != pc {
		return nil
	}
	delete(t.m, tok)
	return r
}

// pageLimit is the page size for a request asking for maxObjects (<= 0:
// no limit asked for); 0 means unlimited.
func (p *Peer) pageLimit(maxObjects int32) int {
	n := int(maxObjects)
	if n < 0 {
		n = 0
	}
	if p.maxObjects > 0 && (n == 0 || n > p.maxObjects) {
		n = p.maxObjects
	}
	return n
}

// splitObjects finds the <objects> elements of returnval in a
// RetrievePropertiesEx reply, in order. It fails when the reply does not
// have the expected shape (Envelope/Body/Response/returnval/objects).
func splitObjects(reply []byte) (objects [][]byte, err error) {
	d := xml.NewDecoder(bytes.NewReader(reply))
	depth := 0
	start := int64(-1)
	sawReturnval := false
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch se := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 3:
				if se.Name.Local != "RetrievePropertiesExResponse" {
					return nil, fmt.Errorf("unexpected element %s", se.Name.Local)
				}
			case 4:
				if se.Name.Local != "returnval" {
					return nil, fmt.Errorf("unexpected element %s", se.Name.Local)
				}
				sawReturnval = true
			case 5:
				if se.Name.Local != "objects" {
					return nil, fmt.Errorf("unexpected element returnval/%s", se.Name.Local)
				}
				start = off
			}
		case xml.EndElement:
			if depth == 5 {
				objects = append(objects, reply[start:d.InputOffset()])
				start = -1
			}
			depth--
		}
	}
	if !sawReturnval {
		return nil, errors.New("no returnval")
	}
	return objects, nil
}

// writePage sends one page: token (if any) first, then the objects, the
// order of types.RetrieveResult.
func writePage(w http.ResponseWriter, method, token string, objects [][]byte) {
	var b bytes.Buffer
	b.WriteString(envelopeOpen)
	fmt.Fprintf(&b, `<%sResponse xmlns="urn:vim25"><returnval>`, method)
	if token != "" {
		b.WriteString("<token>")
		xml.EscapeText(&b, []byte(token))
		b.WriteString("</token>")
	}
	for _, o := range objects {
		b.Write(o)
	}
	fmt.Fprintf(&b, `</returnval></%sResponse>`, method)
	b.WriteString(envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// sendPage answers with the first page of objects and parks the rest.
func (p *Peer) sendPage(w http.ResponseWriter, method, session string, pc types.ManagedObjectReference, objects [][]byte, limit int) {
	token := ""
	page := objects
	if limit > 0 && len(objects) > limit {
		page = objects[:limit]
		token = p.paging.put(&pendingResult{session: session, pc: pc, objects: objects[limit:], limit: limit})
	}
	writePage(w, method, token, page)
}

// pageRetrieve cuts vcsim's complete RetrievePropertiesEx reply into pages.
// It returns false when the reply is to be passed on unchanged.
func (p *Peer) pageRetrieve(w http.ResponseWriter, q *types.RetrievePropertiesEx, session string, reply []byte) bool {
	limit := p.pageLimit(q.Options.MaxObjects)
	if limit == 0 {
		return false
	}
	objects, err := splitObjects(reply)
	if err != nil {
		logf("RetrievePropertiesEx: cannot page vcsim's reply: %v", err)
		return false
	}
	if len(objects) <= limit {
		return false
	}
	p.sendPage(w, "RetrievePropertiesEx", session, q.This, objects, limit)
	return true
}

func invalidToken(w http.ResponseWriter) {
	writeFault(w, "A specified parameter was not correct: token", &types.InvalidArgument{InvalidProperty: "token"})
}

func (p *Peer) continueRetrieve(w http.ResponseWriter, q *types.ContinueRetrievePropertiesEx, session string) {
	r := p.paging.take(q.Token, session, q.This)
	if r == nil {
		invalidToken(w)
		return
	}
	p.sendPage(w, "ContinueRetrievePropertiesEx", session, q.This, r.objects, r.limit)
}

func (p *Peer) cancelRetrieve(w http.ResponseWriter, q *types.CancelRetrievePropertiesEx, session string) {
	if p.paging.take(q.Token, session, q.This) == nil {
		invalidToken(w)
		return
	}
	var b bytes.Buffer
	b.WriteString(envelopeOpen)
	b.WriteString(`<CancelRetrievePropertiesExResponse xmlns="urn:vim25"></CancelRetrievePropertiesExResponse>`)
	b.WriteString(envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// dropSession forgets the pending results of a session that logged out.
func (t *pagingTable) dropSession(session string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, r := range t.m {
		if r.session == session {
			delete(t.m, k)
		}
	}
}
