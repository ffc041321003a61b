package main

// Snapshot deltas in VMware's own format. On NFS and VMFS5 datastores ESXi
// keeps a snapshot's delta as a vmfsSparse disk: a text descriptor
// (createType="vmfsSparse", parentCID, parentFileNameHint) naming one
// VMFSSPARSE extent, "<name>-delta.vmdk", which is a COWD ("ESX Server
// sparse") extent:
//
//	sector 0..3   the 2048-byte header (little endian):
//	                0 magic "COWD"        4 version (1)       8 flags (3)
//	               12 numSectors          16 grainSize (1)    20 gdOffset
//	               24 numGDEntries        28 freeSector
//	               32 parentFileName[1024]                    1056 parentGeneration
//	             1060 generation        1064 name[60]         1124 description[512]
//	             1636 savedGeneration   1640 reserved[8]      1648 uncleanShutdown
//	gdOffset..    the grain directory: numGDEntries 32-bit sector offsets of
//	              grain tables (0 = none yet)
//	then          grain tables (4096 32-bit sector offsets of grains, 0 = not
//	              in this delta: read the parent) and grains (1 sector each),
//	              appended at freeSector as they are needed.
//
// One grain table covers 4096 grains of 512 bytes = 2 MiB of the disk. The
// peer keeps the grain directory and every grain table of a delta in memory
// (a table only once it exists), so a read is a table lookup and one ReadAt
// per run of grains that lie next to each other in the file.
//
// On a VMFS6 datastore deltas are seSparse; nobody outside VMware writes
// that format, so the peer keeps such a delta's data in this same layout
// under a magic of its own ("PSES"), in "<name>-sesparse.vmdk", behind a
// real seSparse descriptor (createType="seSparse", SESPARSE extent).

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	sectorSize     = 512
	cowdHdrSize    = 2048
	cowdHdrSectors = cowdHdrSize / sectorSize
	gtEntries      = 4096
	gtBytes        = gtEntries * 4
	gtSectors      = gtBytes / sectorSize
	cowdMaxSectors = 1<<32 - 1 // 32-bit sector numbers: the 2 TiB limit

	kindVmfsSparse = "vmfsSparse"
	kindSeSparse   = "seSparse"

	cowdFlags = 3
)

var (
	cowdMagic = [4]byte{'C', 'O', 'W', 'D'}
	pseMagic  = [4]byte{'P', 'S', 'E', 'S'} // the peer's stand-in for seSparse data
)

// sparse is the in-memory state of one delta extent file.
type sparse struct {
	magic    [4]byte
	sectors  int64      // numSectors
	gdOffset int64      // sector of the grain directory
	gd       []uint32   // grain directory: sector of each grain table, 0 = none
	gts      [][]uint32 // grain tables by directory index (nil = none)
	free     int64      // freeSector: where the next table or grain goes
	hdr      [cowdHdrSize]byte
}

func gdEntriesFor(sectors int64) int64 { return (sectors + gtEntries - 1) / gtEntries }
func gdSectorsFor(n int64) int64       { return (n*4 + sectorSize - 1) / sectorSize }

func le32(b []byte, off int) uint32     { return binary.LittleEndian.Uint32(b[off:]) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func putStr(b []byte, off, n int, s string) {
	for i := 0; i < n; i++ {
		b[off+i] = 0
	}
	copy(b[off:off+n-1], s)
}

// newSparse lays out an empty delta of the given size: header, grain
// directory of zeros, freeSector right after it.
func newSparse(magic [4]byte, sectors int64, parentName string, parentGen, gen uint32) *sparse {
	n := gdEntriesFor(sectors)
	s := &sparse{magic: magic, sectors: sectors, gdOffset: cowdHdrSectors,
		gd: make([]uint32, n), gts: make([][]uint32, n)}
	s.free = s.gdOffset + gdSectorsFor(n)
	h := s.hdr[:]
	copy(h[0:4], magic[:])
	put32(h, 4, 1)
	put32(h, 8, cowdFlags)
	put32(h, 12, uint32(sectors))
	put32(h, 16, 1)
	put32(h, 20, uint32(s.gdOffset))
	put32(h, 24, uint32(n))
	put32(h, 28, uint32(s.free))
	s.setParent(parentName, parentGen)
	put32(h, 1060, gen)
	put32(h, 1636, gen)
	return s
}

func (s *sparse) setParent(name string, gen uint32) {
	putStr(s.hdr[:], 32, 1024, name)
	put32(s.hdr[:], 1056, gen)
}

func (s *sparse) generation() uint32 { return le32(s.hdr[:], 1060) }

// create writes the empty extent file.
func (s *sparse) create(file string) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0644)
	if err != nil {
		return err
	}
	buf := make([]byte, s.free*sectorSize)
	copy(buf, s.hdr[:])
	_, err = f.Write(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// lookup returns the file sector of grain g, 0 when this delta lacks it.
func (s *sparse) lookup(g int64) uint32 {
	if gt := s.gts[g/gtEntries]; gt != nil {
		return gt[g%gtEntries]
	}
	return 0
}

// allocated calls fn for every run of grains this delta holds, in order of
// grain number: [g, g+n).
func (s *sparse) allocated(fn func(g, n int64) error) error {
	var start, n int64
	for i, gt := range s.gts {
		if gt == nil {
			continue
		}
		for j, sec := range gt {
			g := int64(i)*gtEntries + int64(j)
			if g >= s.sectors {
				break
			}
			if sec == 0 {
				continue
			}
			if n > 0 && start+n == g {
				n++
				continue
			}
			if n > 0 {
				if err := fn(start, n); err != nil {
					return err
				}
			}
			start, n = g, 1
		}
	}
	if n > 0 {
		return fn(start, n)
	}
	return nil
}

func (s *sparse) count() int64 {
	var n int64
	s.allocated(func(_, k int64) error { n += k; return nil })
	return n
}

// parseSparse reads and checks a delta extent file the way ESXi opens one
// for a disk of the given size in sectors. Anything a reader could not use
// safely is an error: a wrong magic, version or grain size, another
// capacity, a grain directory of the wrong size, an offset past the end of
// the file, a grain table or grain that overlaps the header, the directory
// or another table or grain, a freeSector below what is in use or past the
// end, a file left open (uncleanShutdown).
func parseSparse(file string, magic [4]byte, sectors int64) (*sparse, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	s := &sparse{}
	if _, err := io.ReadFull(f, s.hdr[:]); err != nil {
		return nil, fmt.Errorf("header: file of %d bytes is shorter than the %d-byte header", size, cowdHdrSize)
	}
	h := s.hdr[:]
	copy(s.magic[:], h[0:4])
	if s.magic != magic {
		return nil, fmt.Errorf("bad magic %q, want %q", h[0:4], magic[:])
	}
	if v := le32(h, 4); v != 1 {
		return nil, fmt.Errorf("version %d, want 1", v)
	}
	s.sectors = int64(le32(h, 12))
	if s.sectors != sectors {
		return nil, fmt.Errorf("numSectors %d, but the disk has %d sectors", s.sectors, sectors)
	}
	if gs := le32(h, 16); gs != 1 {
		return nil, fmt.Errorf("grainSize %d sectors, want 1", gs)
	}
	n := int64(le32(h, 24))
	if n != gdEntriesFor(sectors) {
		return nil, fmt.Errorf("numGDEntries %d, want %d for %d sectors", n, gdEntriesFor(sectors), sectors)
	}
	if u := le32(h, 1648); u != 0 {
		return nil, fmt.Errorf("uncleanShutdown is %d: the extent was not closed cleanly", u)
	}
	fileSectors := size / sectorSize
	s.gdOffset = int64(le32(h, 20))
	s.free = int64(le32(h, 28))
	gdSecs := gdSectorsFor(n)
	if s.gdOffset < cowdHdrSectors {
		return nil, fmt.Errorf("gdOffset %d overlaps the header", s.gdOffset)
	}
	if s.gdOffset+gdSecs > fileSectors {
		return nil, fmt.Errorf("grain directory [%d,+%d) past the end of the file (%d sectors)", s.gdOffset, gdSecs, fileSectors)
	}
	// what each sector of the file holds, to find overlaps
	used := newBitset(fileSectors)
	claim := func(what string, from, k int64) error {
		if from+k > fileSectors {
			return fmt.Errorf("%s at sector %d (+%d) past the end of the file (%d sectors)", what, from, k, fileSectors)
		}
		for i := from; i < from+k; i++ {
			if used.get(i) {
				return fmt.Errorf("%s at sector %d overlaps the header, the grain directory or another table or grain (sector %d)", what, from, i)
			}
			used.set(i)
		}
		return nil
	}
	claim("header", 0, cowdHdrSectors)
	if err := claim("grain directory", s.gdOffset, gdSecs); err != nil {
		return nil, err
	}
	raw := make([]byte, n*4)
	if _, err := f.ReadAt(raw, s.gdOffset*sectorSize); err != nil {
		return nil, fmt.Errorf("grain directory: %v", err)
	}
	s.gd = make([]uint32, n)
	s.gts = make([][]uint32, n)
	end := s.gdOffset + gdSecs
	for i := range s.gd {
		s.gd[i] = le32(raw, i*4)
		if s.gd[i] == 0 {
			continue
		}
		at := int64(s.gd[i])
		if err := claim(fmt.Sprintf("grain table %d", i), at, gtSectors); err != nil {
			return nil, err
		}
		end = max64(end, at+gtSectors)
	}
	buf := make([]byte, gtBytes)
	for i, at := range s.gd {
		if at == 0 {
			continue
		}
		if _, err := f.ReadAt(buf, int64(at)*sectorSize); err != nil {
			return nil, fmt.Errorf("grain table %d: %v", i, err)
		}
		gt := make([]uint32, gtEntries)
		for j := range gt {
			gt[j] = le32(buf, j*4)
			if gt[j] == 0 {
				continue
			}
			g := int64(i)*gtEntries + int64(j)
			if g >= sectors {
				return nil, fmt.Errorf("grain table %d entry %d: grain %d is past the disk's %d sectors", i, j, g, sectors)
			}
			if err := claim(fmt.Sprintf("grain %d", g), int64(gt[j]), 1); err != nil {
				return nil, err
			}
			end = max64(end, int64(gt[j])+1)
		}
		s.gts[i] = gt
	}
	if s.free < end {
		return nil, fmt.Errorf("freeSector %d is below sector %d, which is in use", s.free, end)
	}
	if s.free > (size+sectorSize-1)/sectorSize {
		return nil, fmt.Errorf("freeSector %d past the end of the file (%d bytes)", s.free, size)
	}
	return s, nil
}

// sparseWriter gathers the metadata a write changes and puts it in the file
// after the grains: grain tables, then the directory, then freeSector.
type sparseWriter struct {
	s       *sparse
	f       *os.File
	dirtyGT map[int64][2]int // table -> [first, last] entry changed
	dirtyGD bool
	gdLo    int64 // directory entries changed: [gdLo, gdHi]
	gdHi    int64
}

func (s *sparse) writer(f *os.File) *sparseWriter {
	return &sparseWriter{s: s, f: f, dirtyGT: map[int64][2]int{}}
}

func (w *sparseWriter) mark(t int64, lo, hi int) {
	if r, ok := w.dirtyGT[t]; ok {
		if r[0] < lo {
			lo = r[0]
		}
		if r[1] > hi {
			hi = r[1]
		}
	}
	w.dirtyGT[t] = [2]int{lo, hi}
}

// ensureTables gives grains [g, g+n) their grain tables, appended at
// freeSector (written whole when flushed).
func (w *sparseWriter) ensureTables(g, n int64) error {
	s := w.s
	for t := g / gtEntries; t <= (g+n-1)/gtEntries; t++ {
		if s.gts[t] != nil {
			continue
		}
		if s.free+gtSectors > cowdMaxSectors {
			return fmt.Errorf("delta full: no room for a grain table below the 2 TiB limit")
		}
		s.gts[t] = make([]uint32, gtEntries)
		s.gd[t] = uint32(s.free)
		s.free += gtSectors
		w.mark(t, 0, gtEntries-1)
		if !w.dirtyGD || t < w.gdLo {
			w.gdLo = t
		}
		if !w.dirtyGD || t > w.gdHi {
			w.gdHi = t
		}
		w.dirtyGD = true
	}
	return nil
}

// place gives grains [g, g+n), none of which this delta holds yet, sectors
// next to each other at freeSector, and returns the first.
func (w *sparseWriter) place(g, n int64) (int64, error) {
	s := w.s
	if s.free+n > cowdMaxSectors {
		return 0, fmt.Errorf("delta full: %d more grains pass the 2 TiB limit", n)
	}
	at := s.free
	for i := int64(0); i < n; i++ {
		t, e := (g+i)/gtEntries, int((g+i)%gtEntries)
		s.gts[t][e] = uint32(at + i)
		w.mark(t, e, e)
	}
	s.free += n
	return at, nil
}

func (w *sparseWriter) flush() error {
	s := w.s
	for t, r := range w.dirtyGT {
		buf := make([]byte, (r[1]-r[0]+1)*4)
		for e := r[0]; e <= r[1]; e++ {
			put32(buf, (e-r[0])*4, s.gts[t][e])
		}
		if _, err := w.f.WriteAt(buf, int64(s.gd[t])*sectorSize+int64(r[0])*4); err != nil {
			return err
		}
	}
	if w.dirtyGD {
		buf := make([]byte, (w.gdHi-w.gdLo+1)*4)
		for i := w.gdLo; i <= w.gdHi; i++ {
			put32(buf, int(i-w.gdLo)*4, s.gd[i])
		}
		if _, err := w.f.WriteAt(buf, s.gdOffset*sectorSize+w.gdLo*4); err != nil {
			return err
		}
	}
	if len(w.dirtyGT) > 0 || w.dirtyGD {
		put32(s.hdr[:], 28, uint32(s.free))
		if _, err := w.f.WriteAt(s.hdr[28:32], 28); err != nil {
			return err
		}
	}
	w.dirtyGT = map[int64][2]int{}
	w.dirtyGD = false
	return nil
}

// writeHeader rewrites the whole header (after a change of parent).
func (s *sparse) writeHeader(file string) error {
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(s.hdr[:], 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// layerAt finds the delta layer of a VM's disk whose extent file is rel on
// datastore dsName.
func (p *Peer) layerAt(dsName, rel string) (types.ManagedObjectReference, *vdisk, *layer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ref, disks := range p.disks {
		for _, d := range disks {
			if d.dsName != dsName {
				continue
			}
			d.mu.Lock()
			for _, l := range d.layers {
				if !l.base && path.Join(d.dir, l.data) == rel {
					d.mu.Unlock()
					return ref, d, l
				}
			}
			d.mu.Unlock()
		}
	}
	return types.ManagedObjectReference{}, nil, nil
}

// putInPlace moves an uploaded file (tmp) to its place. An upload over the
// delta extent of a VM's disk chain is read as ESXi would open it: parsed
// and checked first (parseSparse); a file ESXi could not use safely is
// refused with 400 and nothing changes, so the chain the peer holds stays
// readable. Otherwise its grains become that layer's content. The VM must
// be powered off (a running VM holds its disks open: 409). A vmfsSparse
// delta on a VMFS6 datastore, whose deltas are seSparse, is refused (400),
// as is any upload over a seSparse extent (the peer cannot read VMware's).
// Change tracking does not see uploads, as ESXi's does not see writes that
// bypass the VM.
func (p *Peer) putInPlace(dsName, rel, tmp, full string) (int, error) {
	var head [4]byte
	if f, err := os.Open(tmp); err == nil {
		io.ReadFull(f, head[:])
		f.Close()
	}
	if p.dsKind[dsName] == kindSeSparse && (head == cowdMagic || strings.HasSuffix(rel, "-delta.vmdk")) {
		return http.StatusBadRequest, fmt.Errorf("datastore %s is VMFS6: its snapshot deltas are seSparse, a vmfsSparse (COWD) delta cannot be used there", dsName)
	}
	ref, d, l := p.layerAt(dsName, rel)
	if l == nil {
		if err := os.Rename(tmp, full); err != nil {
			return http.StatusInternalServerError, err
		}
		return 0, nil
	}
	if l.kind == kindSeSparse {
		return http.StatusBadRequest, fmt.Errorf("%s is a seSparse extent: the peer takes no uploads of that format", rel)
	}
	p.guestMu.Lock() // ordered against power changes
	defer p.guestMu.Unlock()
	if vm := vmObject(ref); vm != nil {
		var power types.VirtualMachinePowerState
		simulator.Map.WithLock(vm, func() { power = vm.Runtime.PowerState })
		if power != types.VirtualMachinePowerStatePoweredOff {
			return http.StatusConflict, fmt.Errorf("%s is locked: VM %s is %s", rel, vm.Name, power)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if a := p.hotaddHolding(d); a != nil {
		return http.StatusConflict, fmt.Errorf("%s is locked: its disk is attached to the appliance (%s)", rel, a.file)
	}
	live := false
	for _, c := range d.layers {
		live = live || c == l
	}
	if !live {
		return http.StatusConflict, fmt.Errorf("%s is no longer part of the disk's chain", rel)
	}
	sp, err := parseSparse(tmp, cowdMagic, d.sectors())
	if err != nil {
		return http.StatusBadRequest, fmt.Errorf("%s is not a vmfsSparse extent that disk %s can use: %v", rel, d.dsPath(l), err)
	}
	if err := os.Rename(tmp, full); err != nil {
		return http.StatusInternalServerError, err
	}
	l.sp = sp
	logf("PUT %s/%s: delta of %s now holds %d grains, freeSector %d", dsName, rel, d.dsPath(l), sp.count(), sp.free)
	return 0, nil
}
