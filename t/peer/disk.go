package main

// The disk model: every virtual disk is a chain of layers. The root layer is
// the real flat extent (<name>-flat.vmdk, exactly capacity bytes, sparse);
// each snapshot freezes the current layer and stacks a delta on top of it.
// Deltas are VMware's own vmfsSparse disks (cowd.go): a descriptor
// <name>-00000N.vmdk and a COWD extent <name>-00000N-delta.vmdk of 512-byte
// grains, whose grain directory and tables the peer keeps in memory. Layers
// form a tree (revert starts a new branch), so a snapshot's content is
// always "walk from its frozen layer towards the root", and any reader of
// VMDK chains (qemu-img) sees the same.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// grainSize is the grain of change tracking (and of fixture allocation), not
// of the delta format, whose grains are one sector.
const grainSize = 64 * 1024

type bitset []uint64

func newBitset(n int64) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int64)      { b[i>>6] |= 1 << uint(i&63) }
func (b bitset) get(i int64) bool { return b[i>>6]&(1<<uint(i&63)) != 0 }
func (b bitset) clone() bitset    { return append(bitset(nil), b...) }
func (b bitset) or(o bitset) {
	for i := range b {
		if i < len(o) {
			b[i] |= o[i]
		}
	}
}
func (b bitset) count() int64 {
	var n int64
	for _, w := range b {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

type layer struct {
	parent *layer
	desc   string // descriptor file name, relative to the disk's directory
	data   string // extent file name, relative to the disk's directory
	base   bool
	kind   string  // deltas: kindVmfsSparse or kindSeSparse
	sp     *sparse // deltas: grain directory and tables
	cid    uint32
}

type vdisk struct {
	mu sync.Mutex

	key         int32
	capacity    int64
	grains      int64
	dsName      string
	dsDir       string // absolute directory of the datastore
	dir         string // directory of the disk inside the datastore ("web01")
	name        string // base name without ".vmdk" ("web01", "web01_1")
	mode        string
	uuid        string
	adapter     string
	hwVersion   string
	independent bool
	deltaKind   string // kindVmfsSparse, or kindSeSparse on a VMFS6 datastore
	destroyed   string // the file a hot-add detach with fileOperation=destroy deleted ("": intact)

	root   *layer
	cur    *layer
	layers []*layer
	ndelta int

	// Change tracking: writes made while seq == p are recorded in
	// periods[p]; a snapshot taken at seq S covers every period <= S and
	// bumps seq, so the changes between snapshots S1 < S2 are the union of
	// periods (S1, S2].
	epoch   string
	seq     int64
	periods map[int64]bitset
	alloc   bitset // grains that held data when the disk was made

	snapLayer  map[string]*layer // snapshot moref -> its frozen layer
	snapChange map[string]string // snapshot moref -> changeId ("" = none)
}

func newEpoch(r *rand.Rand) string {
	// VMware's change ids start with the disk's ctk UUID in the
	// "52 xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx" form.
	b := make([]byte, 16)
	r.Read(b)
	b[0] = 0x52
	var s strings.Builder
	for i, c := range b {
		switch {
		case i == 8:
			s.WriteByte('-')
		case i > 0:
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}

// diskUUID returns a backing uuid in VMware's 8-4-4-4-12 form with the
// usual 6000C29 prefix.
func diskUUID(r *rand.Rand) string {
	b := make([]byte, 16)
	r.Read(b)
	h := "6000c29" + hex.EncodeToString(b)[7:]
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ddbUUID renders a backing uuid as the descriptor's "60 00 c2 9a ..." form.
func ddbUUID(u string) string {
	h := strings.Replace(u, "-", "", -1)
	var parts []string
	for i := 0; i+2 <= len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, " ")
}

func (d *vdisk) path(name string) string { return filepath.Join(d.dsDir, d.dir, name) }

// dsPath is the datastore path of a layer's descriptor, "[ds0] web01/web01.vmdk".
func (d *vdisk) dsPath(l *layer) string {
	return fmt.Sprintf("[%s] %s", d.dsName, filepath.ToSlash(filepath.Join(d.dir, l.desc)))
}

func (d *vdisk) sectors() int64 { return (d.capacity + 511) / 512 }

func (d *vdisk) descriptor(l *layer) string {
	var b strings.Builder
	parentCID := uint32(0xffffffff)
	create, extent := "vmfs", "VMFS"
	if l.parent != nil {
		parentCID = l.parent.cid
		create, extent = kindVmfsSparse, "VMFSSPARSE"
		if l.kind == kindSeSparse {
			create, extent = kindSeSparse, "SESPARSE"
		}
	}
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=%08x\ncreateType=\"%s\"\n", l.cid, parentCID, create)
	if l.parent != nil {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", l.parent.desc)
	}
	b.WriteString("\n# Extent description\n")
	fmt.Fprintf(&b, "RW %d %s \"%s\"\n", d.sectors(), extent, l.data)
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	cyl := d.sectors() / (255 * 63)
	if cyl > 65535 {
		cyl = 65535
	}
	ddb := [][2]string{
		{"ddb.adapterType", d.adapter},
		{"ddb.geometry.cylinders", fmt.Sprint(cyl)},
		{"ddb.geometry.heads", "255"},
		{"ddb.geometry.sectors", "63"},
		{"ddb.longContentID", fmt.Sprintf("%016x%016x", streamWord(uint64(l.cid), 0), streamWord(uint64(l.cid), 1))},
		{"ddb.thinProvisioned", "1"},
		{"ddb.uuid", ddbUUID(d.uuid)},
		{"ddb.virtualHWVersion", strings.TrimPrefix(d.hwVersion, "vmx-")},
		{"ddb.vmferry.capacityBytes", fmt.Sprint(d.capacity)},
	}
	for _, kv := range ddb {
		fmt.Fprintf(&b, "%s = \"%s\"\n", kv[0], kv[1])
	}
	return b.String()
}

func (d *vdisk) writeDescriptor(l *layer) error {
	return writeFileAtomic(d.path(l.desc), []byte(d.descriptor(l)))
}

func writeFileAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// parseExtent returns the extent file named by a VMDK text descriptor.
func parseExtent(desc string) (string, int64, bool) {
	for _, line := range strings.Split(desc, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) >= 4 && (f[0] == "RW" || f[0] == "RDONLY") && strings.HasPrefix(f[3], "\"") {
			var n int64
			fmt.Sscan(f[1], &n)
			q := strings.Index(line, "\"")
			r := strings.LastIndex(line, "\"")
			if q >= 0 && r > q {
				return line[q+1 : r], n, true
			}
		}
	}
	return "", 0, false
}

// fileCache keeps the extent files one operation opens.
type fileCache map[*layer]*cachedFile

type cachedFile struct {
	f        *os.File
	writable bool
}

func (c fileCache) get(d *vdisk, l *layer, write bool) (*os.File, error) {
	if cf, ok := c[l]; ok && (cf.writable || !write) {
		return cf.f, nil
	} else if ok {
		cf.f.Close()
		delete(c, l)
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(d.path(l.data), flag, 0)
	if err != nil {
		return nil, err
	}
	c[l] = &cachedFile{f, write}
	return f, nil
}

func (c fileCache) drop(l *layer) {
	if cf, ok := c[l]; ok {
		cf.f.Close()
		delete(c, l)
	}
}

func (c fileCache) close() {
	for _, cf := range c {
		cf.f.Close()
	}
}

func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// readFrom fills buf with the disk content at off as seen from layer l: a
// delta's own grains come from its extent (one read per run of grains that
// are next to each other in the file), the rest from its parent, and so on
// down to the flat extent. A missing or short flat file reads as zeros.
func (d *vdisk) readFrom(fc fileCache, l *layer, buf []byte, off int64) error {
	if l == nil {
		zero(buf)
		return nil
	}
	if l.base {
		return d.readFlat(fc, l, buf, off)
	}
	s := l.sp
	end := off + int64(len(buf))
	for pos := off; pos < end; {
		g := pos / sectorSize
		sec := int64(s.lookup(g))
		next := min64((g+1)*sectorSize, end)
		if sec == 0 {
			// a run this delta lacks: skip whole missing tables
			for next < end {
				g2 := next / sectorSize
				if s.gts[g2/gtEntries] == nil {
					next = min64((g2/gtEntries+1)*gtEntries*sectorSize, end)
					continue
				}
				if s.lookup(g2) != 0 {
					break
				}
				next = min64((g2+1)*sectorSize, end)
			}
			if err := d.readFrom(fc, l.parent, buf[pos-off:next-off], pos); err != nil {
				return err
			}
			pos = next
			continue
		}
		for next < end {
			g2 := next / sectorSize
			if int64(s.lookup(g2)) != sec+(g2-g) {
				break
			}
			next = min64((g2+1)*sectorSize, end)
		}
		f, err := fc.get(d, l, false)
		if err != nil {
			return err
		}
		chunk := buf[pos-off : next-off]
		m, err := f.ReadAt(chunk, sec*sectorSize+pos%sectorSize)
		if err != nil && err != io.EOF {
			return err
		}
		zero(chunk[m:])
		pos = next
	}
	return nil
}

func (d *vdisk) readFlat(fc fileCache, l *layer, chunk []byte, off int64) error {
	f, err := fc.get(d, l, false)
	if err != nil {
		if os.IsNotExist(err) {
			zero(chunk)
			return nil
		}
		return err
	}
	m, err := f.ReadAt(chunk, off)
	if err != nil && err != io.EOF {
		return err
	}
	zero(chunk[m:])
	return nil
}

// writeLayer writes data at off into layer l: in place into the flat
// extent, or into a delta: over the grains it already holds, and for the
// others new grains appended at freeSector (one write per run), a partly
// written grain completed from the parent. Grain tables, the directory and
// freeSector follow the grains.
func (d *vdisk) writeLayer(fc fileCache, l *layer, off int64, data []byte) error {
	f, err := fc.get(d, l, true)
	if err != nil {
		return err
	}
	if l.base {
		_, err := f.WriteAt(data, off)
		return err
	}
	s := l.sp
	w := s.writer(f)
	end := off + int64(len(data))
	for pos := off; pos < end; {
		g := pos / sectorSize
		if sec := int64(s.lookup(g)); sec != 0 {
			next := min64((g+1)*sectorSize, end)
			for next < end {
				g2 := next / sectorSize
				if int64(s.lookup(g2)) != sec+(g2-g) {
					break
				}
				next = min64((g2+1)*sectorSize, end)
			}
			if _, err := f.WriteAt(data[pos-off:next-off], sec*sectorSize+pos%sectorSize); err != nil {
				return err
			}
			pos = next
			continue
		}
		gEnd := g + 1
		for gEnd*sectorSize < end && s.lookup(gEnd) == 0 {
			gEnd++
		}
		if err := w.ensureTables(g, gEnd-g); err != nil {
			return err
		}
		gs, ge := g*sectorSize, min64(gEnd*sectorSize, d.capacity)
		wend := min64(end, gEnd*sectorSize)
		buf := make([]byte, (gEnd-g)*sectorSize)
		if pos > gs {
			if err := d.readFrom(fc, l.parent, buf[:pos-gs], gs); err != nil {
				return err
			}
		}
		copy(buf[pos-gs:], data[pos-off:wend-off])
		if wend < ge {
			if err := d.readFrom(fc, l.parent, buf[wend-gs:ge-gs], wend); err != nil {
				return err
			}
		}
		at, err := w.place(g, gEnd-g)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(buf, at*sectorSize); err != nil {
			return err
		}
		pos = wend
	}
	return w.flush()
}

// write applies a guest write to the current layer (copy-on-write into a
// delta), and records the touched grains for change tracking.
func (d *vdisk) write(off int64, data []byte) error {
	if off < 0 || off+int64(len(data)) > d.capacity {
		return fmt.Errorf("write [%d,+%d) outside disk of %d bytes", off, len(data), d.capacity)
	}
	fc := fileCache{}
	defer fc.close()
	if err := d.writeLayer(fc, d.cur, off, data); err != nil {
		return err
	}
	d.track(off, off+int64(len(data)))
	return nil
}

func (d *vdisk) track(off, end int64) {
	p := d.periods[d.seq]
	if p == nil {
		p = newBitset(d.grains)
		d.periods[d.seq] = p
	}
	for g := off / grainSize; g*grainSize < end; g++ {
		p.set(g)
	}
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}
func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// hash returns the SHA-256 of the content seen from layer l.
func (d *vdisk) hash(l *layer) (string, error) {
	fc := fileCache{}
	defer fc.close()
	h := sha256.New()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < d.capacity; {
		n := min64(int64(len(buf)), d.capacity-off)
		if err := d.readFrom(fc, l, buf[:n], off); err != nil {
			return "", err
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// snapshot freezes the current layer for snapshot ref and stacks a new
// delta on top. Independent disks are not part of snapshots: their layer is
// recorded but stays live, and they get no change id.
func (d *vdisk) snapshot(ref string, cbt bool, r *rand.Rand) error {
	frozen := d.cur
	d.snapLayer[ref] = frozen
	d.snapChange[ref] = ""
	if cbt && !d.independent {
		d.snapChange[ref] = fmt.Sprintf("%s/%d", d.epoch, d.seq)
	}
	d.seq++
	if d.independent {
		return nil
	}
	return d.pushDelta(frozen, r)
}

func (d *vdisk) pushDelta(parent *layer, r *rand.Rand) error {
	if d.sectors() > cowdMaxSectors {
		return fmt.Errorf("disk of %d bytes is over the 2 TiB limit of sparse deltas", d.capacity)
	}
	d.ndelta++
	for {
		name := fmt.Sprintf("%s-%06d", d.name, d.ndelta)
		if _, err := os.Stat(d.path(name + ".vmdk")); err == nil {
			d.ndelta++
			continue
		}
		l := &layer{parent: parent, desc: name + ".vmdk", data: name + "-delta.vmdk",
			kind: kindVmfsSparse, cid: r.Uint32()}
		magic := cowdMagic
		if d.deltaKind == kindSeSparse {
			l.kind, l.data, magic = kindSeSparse, name+"-sesparse.vmdk", pseMagic
		}
		l.sp = newSparse(magic, d.sectors(), parent.desc, parent.generation(), r.Uint32()|1)
		if err := l.sp.create(d.path(l.data)); err != nil {
			return err
		}
		if err := d.writeDescriptor(l); err != nil {
			return err
		}
		d.layers = append(d.layers, l)
		d.cur = l
		return nil
	}
}

// generation is the COWD generation of a delta, 0 for the flat base.
func (l *layer) generation() uint32 {
	if l.sp == nil {
		return 0
	}
	return l.sp.generation()
}

func (d *vdisk) children(l *layer) []*layer {
	var out []*layer
	for _, c := range d.layers {
		if c.parent == l {
			out = append(out, c)
		}
	}
	return out
}

func (d *vdisk) dropLayer(l *layer) {
	os.Remove(d.path(l.data))
	os.Remove(d.path(l.desc))
	for i, c := range d.layers {
		if c == l {
			d.layers = append(d.layers[:i], d.layers[i+1:]...)
			break
		}
	}
}

// removeSnapshot forgets snapshot ref and consolidates: the single child of
// its frozen layer is merged down into it and dropped.
func (d *vdisk) removeSnapshot(ref string) error {
	L := d.snapLayer[ref]
	delete(d.snapLayer, ref)
	delete(d.snapChange, ref)
	if L == nil || d.independent {
		return nil
	}
	for _, other := range d.snapLayer {
		if other == L {
			return nil // still frozen by another snapshot
		}
	}
	kids := d.children(L)
	if len(kids) == 0 && !L.base && L != d.cur {
		// a branch left by a revert: nothing stands on it any more
		d.dropLayer(L)
		return nil
	}
	if len(kids) != 1 {
		return nil // a branch point (after revert); keep as is
	}
	C := kids[0]
	fc := fileCache{}
	defer fc.close()
	// C's grains, run by run, into L (the flat file, or L's own grains)
	buf := make([]byte, 4<<20)
	err := C.sp.allocated(func(g, n int64) error {
		for n > 0 {
			k := min64(n, int64(len(buf))/sectorSize)
			off, end := g*sectorSize, min64((g+k)*sectorSize, d.capacity)
			b := buf[:end-off]
			if err := d.readFrom(fc, C, b, off); err != nil {
				return err
			}
			if err := d.writeLayer(fc, L, off, b); err != nil {
				return err
			}
			g, n = g+k, n-k
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range d.layers {
		if c.parent == C {
			c.parent = L
			c.sp.setParent(L.desc, L.generation())
			if err := c.sp.writeHeader(d.path(c.data)); err != nil {
				logf("consolidate: header of %s: %v", c.data, err)
			}
			d.writeDescriptor(c)
		}
	}
	for s, l := range d.snapLayer {
		if l == C {
			d.snapLayer[s] = L
		}
	}
	if d.cur == C {
		d.cur = L
	}
	fc.drop(C)
	d.dropLayer(C)
	return nil
}

// revert discards the current delta and starts a new one on top of the
// snapshot's frozen layer. Change tracking is reset (new epoch).
func (d *vdisk) revert(ref string, r *rand.Rand) error {
	L := d.snapLayer[ref]
	if L == nil || d.independent {
		return nil
	}
	old := d.cur
	if err := d.pushDelta(L, r); err != nil {
		return err
	}
	frozen := false
	for _, l := range d.snapLayer {
		if l == old {
			frozen = true
		}
	}
	if !frozen && len(d.children(old)) == 0 && old != L {
		d.dropLayer(old)
	}
	d.epoch = newEpoch(r)
	return nil
}

// changed returns the grains written in periods (from, to].
func (d *vdisk) changed(from, to int64) bitset {
	out := newBitset(d.grains)
	for p, b := range d.periods {
		if p > from && p <= to {
			out.or(b)
		}
	}
	return out
}

// allocated returns the grains holding data as of period to.
func (d *vdisk) allocated(to int64) bitset {
	out := d.alloc.clone()
	for p, b := range d.periods {
		if p <= to {
			out.or(b)
		}
	}
	return out
}

type extent struct{ Start, Length int64 }

// extents coalesces set grains at or after startOffset into byte extents,
// at most max of them. covered is the length of the range the answer is
// complete for, starting at startOffset.
func (d *vdisk) extents(b bitset, startOffset int64, max int) (out []extent, covered int64) {
	g := startOffset / grainSize
	for g < d.grains {
		if !b.get(g) {
			g++
			continue
		}
		s := g
		for g < d.grains && b.get(g) {
			g++
		}
		start := max64(s*grainSize, startOffset)
		end := min64(g*grainSize, d.capacity)
		if len(out) == max {
			return out, start - startOffset
		}
		out = append(out, extent{start, end - start})
	}
	return out, d.capacity - startOffset
}

// fillFixture writes the fixture content: a deterministic share of grains
// holding stream bytes (fill "random") or nothing (fill "zero").
func (d *vdisk) fillFixture(fill string, seed int64, allocated float64) error {
	n := int64(allocated*float64(d.grains) + 0.5)
	if n > d.grains {
		n = d.grains
	}
	var chosen []int64
	if n == d.grains {
		chosen = make([]int64, n)
		for i := range chosen {
			chosen[i] = int64(i)
		}
	} else if n > 0 {
		r := rand.New(rand.NewSource(seed))
		perm := r.Perm(int(d.grains))
		for _, g := range perm[:n] {
			chosen = append(chosen, int64(g))
		}
		sort.Slice(chosen, func(i, j int) bool { return chosen[i] < chosen[j] })
	}
	for _, g := range chosen {
		d.alloc.set(g)
	}
	if fill == "zero" || len(chosen) == 0 {
		return nil
	}
	f, err := os.OpenFile(d.path(d.root.data), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 0, 4<<20)
	for i := 0; i < len(chosen); {
		j := i + 1
		for j < len(chosen) && chosen[j] == chosen[j-1]+1 && int64(j-i) < int64(cap(buf)/grainSize) {
			j++
		}
		off := chosen[i] * grainSize
		end := min64((chosen[j-1]+1)*grainSize, d.capacity)
		b := buf[:end-off]
		fillStream(b, uint64(seed), off)
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
		i = j
	}
	return nil
}
