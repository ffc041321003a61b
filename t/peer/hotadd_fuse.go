package main

// The appliance's /dev/disk/by-id, as a FUSE directory DIR/.hotadd: one
// regular file "wwn-0x<uuid>" per disk hot-added to the appliance (while
// the appliance is powered on), exactly the disk's capacity long. Reads
// return the chain's current content; writes go through the disk's chain
// logic (vdisk.write: into the flat file, or as grains of the top delta),
// fsync makes them durable in the datastore files. After a detach the name
// is gone and handles still open fail with EIO, like a removed SCSI device.
//
// Debian's golang-github-hanwen-go-fuse-dev (go-fuse v2) installs under
// github.com/hanwen/go-fuse without the /v2 of its module path; in GOPATH
// mode a package outside GOPATH imports it there (its own files import
// ".../v2/...", which GOPATH mode resolves to the same directories).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/fs"
	"github.com/hanwen/go-fuse/fuse"
)

type hotaddFS struct {
	server *fuse.Server
	root   *hotaddRoot
}

type hotaddRoot struct {
	fs.Inode
	h *hotadd
}

type hotaddFile struct {
	fs.Inode
	h *hotadd
	a *attachment
}

var (
	_ fs.NodeLookuper   = (*hotaddRoot)(nil)
	_ fs.NodeReaddirer  = (*hotaddRoot)(nil)
	_ fs.NodeGetattrer  = (*hotaddFile)(nil)
	_ fs.NodeSetattrer  = (*hotaddFile)(nil)
	_ fs.NodeOpener     = (*hotaddFile)(nil)
	_ fs.NodeReader     = (*hotaddFile)(nil)
	_ fs.NodeWriter     = (*hotaddFile)(nil)
	_ fs.NodeFsyncer    = (*hotaddFile)(nil)
	_ fs.NodeFlusher    = (*hotaddFile)(nil)
	_ fs.NodeReleaser   = (*hotaddFile)(nil)
	_ fs.NodeGetattrer  = (*hotaddRoot)(nil)
	_ fs.NodeAllocater  = (*hotaddFile)(nil)
	_ fs.NodeOpendirer  = (*hotaddRoot)(nil)
	_ fs.InodeEmbedder  = (*hotaddFile)(nil)
	_ fs.NodeStatfser   = (*hotaddRoot)(nil)
	_ fs.NodeAccesser   = (*hotaddFile)(nil)
	_ fs.NodeGetxattrer = (*hotaddFile)(nil)
)

var startTime = time.Now()

// isMounted reports whether dir is a mount point (from /proc/self/mountinfo).
func isMounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == dir {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lazyUnmount detaches whatever is mounted at dir (a stale mount of an
// earlier run whose peer died): umount2(MNT_DETACH) as root, else
// fusermount3 -u -z.
func lazyUnmount(dir string) {
	for i := 0; i < 8 && isMounted(dir); i++ {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			for _, bin := range []string{"fusermount3", "fusermount"} {
				if exec.Command(bin, "-u", "-z", dir).Run() == nil {
					break
				}
			}
		}
	}
}

// mount mounts the FUSE directory at h.dir.
func (h *hotadd) mount() error {
	if isMounted(h.dir) {
		logf("hotadd: %s is still mounted (an earlier run?): unmounting it lazily", h.dir)
		lazyUnmount(h.dir)
	}
	if err := os.MkdirAll(h.dir, 0755); err != nil {
		return err
	}
	if os.Getenv("VMFERRY_PEER_HOTADD_NOMOUNT") != "" {
		return fmt.Errorf("mounting disabled by VMFERRY_PEER_HOTADD_NOMOUNT")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("FUSE is not available: %v", err)
	}
	root := &hotaddRoot{h: h}
	zero := time.Duration(0)
	opts := &fs.Options{EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero}
	opts.MountOptions = fuse.MountOptions{
		FsName:        "vmferry-hotadd",
		Name:          "vmferry-hotadd",
		DirectMount:   os.Geteuid() == 0,
		AllowOther:    os.Geteuid() == 0,
		MaxWrite:      1 << 20,
		DisableXAttrs: true,
	}
	server, err := fs.Mount(h.dir, root, opts)
	if err != nil {
		return fmt.Errorf("mount %s: %v", h.dir, err)
	}
	h.fs = &hotaddFS{server: server, root: root}
	return nil
}

// unmount unmounts the directory; handles still open in other processes
// make it a lazy unmount, so nothing stays mounted after the peer.
func (h *hotadd) unmount() {
	if h.fs == nil {
		return
	}
	done := make(chan error, 1)
	go func() { done <- h.fs.server.Unmount() }()
	select {
	case err := <-done:
		if err == nil {
			logf("hotadd: unmounted %s", h.dir)
			return
		}
		logf("hotadd: unmount %s: %v; detaching it lazily", h.dir, err)
	case <-time.After(3 * time.Second):
		logf("hotadd: unmount %s is taking long; detaching it lazily", h.dir)
	}
	lazyUnmount(h.dir)
}

// removed tells the kernel that a device's name is gone.
func (f *hotaddFS) removed(a *attachment) {
	f.root.NotifyEntry(a.device)
}

// --- the directory ---------------------------------------------------------

func (r *hotaddRoot) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0755
	out.Nlink = 2
	out.SetTimes(nil, &startTime, &startTime)
	out.SetTimeout(0)
	return 0
}

func (r *hotaddRoot) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (r *hotaddRoot) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.NameLen = 255
	return 0
}

func (r *hotaddRoot) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a := r.h.visibleDevice(name)
	if a == nil {
		return nil, syscall.ENOENT
	}
	fillAttr(a, &out.Attr)
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	return r.NewInode(ctx, &hotaddFile{h: r.h, a: a}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: a.ino}), 0
}

func (r *hotaddRoot) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var list []fuse.DirEntry
	for _, a := range r.h.visibleDevices() {
		list = append(list, fuse.DirEntry{Name: a.device, Mode: syscall.S_IFREG, Ino: a.ino})
	}
	return fs.NewListDirStream(list), 0
}

// --- a device --------------------------------------------------------------

func fillAttr(a *attachment, out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | 0600
	out.Size = uint64(a.d.capacity)
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	out.Nlink = 1
	out.Ino = a.ino
	out.SetTimes(nil, &startTime, &startTime)
}

// live: the device still exists in the appliance's guest. Caller holds a.io.
func (f *hotaddFile) live() bool {
	return !f.a.gone && f.h.appliancePoweredOn()
}

func (f *hotaddFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(f.a, &out.Attr)
	out.SetTimeout(0)
	return 0
}

// Setattr: a block device has a fixed size (truncate is EINVAL); modes and
// times are ignored.
func (f *hotaddFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && int64(sz) != f.a.d.capacity {
		return syscall.EINVAL
	}
	fillAttr(f.a, &out.Attr)
	out.SetTimeout(0)
	return 0
}

func (f *hotaddFile) Access(ctx context.Context, mask uint32) syscall.Errno { return 0 }

func (f *hotaddFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

// Open: no page cache (every read and write reaches the peer, as O_DIRECT
// on a block device would); a device that is gone gives ENXIO.
func (f *hotaddFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f.a.io.RLock()
	defer f.a.io.RUnlock()
	if !f.live() {
		return nil, 0, syscall.ENXIO
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *hotaddFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	a := f.a
	a.io.RLock()
	defer a.io.RUnlock()
	if !f.live() {
		return nil, syscall.EIO
	}
	d := a.d
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= d.capacity {
		return fuse.ReadResultData(nil), 0
	}
	n := min64(int64(len(dest)), d.capacity-off)
	d.mu.Lock()
	fc := fileCache{}
	err := d.readFrom(fc, a.l, dest[:n], off)
	fc.close()
	d.mu.Unlock()
	if err != nil {
		logf("hotadd: read %s at %d: %v", a.device, off, err)
		return nil, syscall.EIO
	}
	f.h.p.stats.hotadd("bytes_read", n)
	return fuse.ReadResultData(dest[:n]), 0
}

// Write goes through the owner disk's chain logic, as a guest write does
// (change tracking included). Past the end of the device: ENOSPC.
func (f *hotaddFile) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	a := f.a
	a.io.RLock()
	defer a.io.RUnlock()
	if !f.live() {
		return 0, syscall.EIO
	}
	d := a.d
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= d.capacity {
		return 0, syscall.ENOSPC
	}
	n := min64(int64(len(data)), d.capacity-off)
	d.mu.Lock()
	var err error
	if d.cur != a.l {
		err = fmt.Errorf("the disk's top layer is %s, not the attached %s", d.dsPath(d.cur), a.file)
	} else {
		err = d.write(off, data[:n])
	}
	d.mu.Unlock()
	if err != nil {
		logf("hotadd: write %s at %d: %v", a.device, off, err)
		return 0, syscall.EIO
	}
	f.h.p.stats.hotadd("bytes_written", n)
	return uint32(n), 0
}

// Fsync makes what was written durable in the datastore: the attached
// layer's extent (the flat file, or the delta with its tables) is synced.
func (f *hotaddFile) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	a := f.a
	a.io.RLock()
	defer a.io.RUnlock()
	if !f.live() {
		return syscall.EIO
	}
	a.d.mu.Lock()
	file := a.d.path(a.l.data)
	a.d.mu.Unlock()
	fd, err := os.OpenFile(file, os.O_RDWR, 0)
	if err == nil {
		err = fd.Sync()
		fd.Close()
	}
	if err != nil {
		logf("hotadd: fsync %s: %v", a.device, err)
		return syscall.EIO
	}
	return 0
}

func (f *hotaddFile) Allocate(ctx context.Context, fh fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	return syscall.EOPNOTSUPP
}

func (f *hotaddFile) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno   { return 0 }
func (f *hotaddFile) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }
