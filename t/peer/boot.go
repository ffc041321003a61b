package main

// A disk that boots (SPEC §14): a fixture disk with "boot": true gets a BIOS
// boot sector in LBA 0 and a generation sector in LBA 1. The boot sector is
// assembled here, from boot/bootsector.s (embedded in the binary as text),
// with binutils' as and ld the first time one is needed; no built sector is
// kept in the repository. Booted under qemu-system-x86_64 it prints
// "VMFERRY-BOOT-OK gen=<N>" on COM1, N read from the generation sector, which
// POST /write {"gen":N} rewrites as a guest write.

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

//go:embed boot/bootsector.s
var bootSource string

const (
	genLBA   = 1              // the generation sector
	genMagic = "VMFERRY-GEN:" // its first 12 bytes; N is the uint32 LE at byte 12
	bootMin  = 2 * sectorSize // a bootable disk holds at least both sectors
)

var boot struct {
	once   sync.Once
	sector []byte
	err    error
}

// bootSector is the assembled boot sector: 512 bytes ending in 55 AA.
func bootSector() ([]byte, error) {
	boot.once.Do(func() { boot.sector, boot.err = assembleBoot() })
	return boot.sector, boot.err
}

func assembleBoot() ([]byte, error) {
	dir, err := os.MkdirTemp("", "vmferry-boot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "bootsector.s")
	obj := filepath.Join(dir, "bootsector.o")
	bin := filepath.Join(dir, "bootsector.bin")
	if err := os.WriteFile(src, []byte(bootSource), 0644); err != nil {
		return nil, err
	}
	for _, argv := range [][]string{
		{"as", "--32", "-o", obj, src},
		{"ld", "-m", "elf_i386", "--oformat", "binary", "-Ttext", "0x7c00", "-e", "_start", "-o", bin, obj},
	} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("building the boot sector: %s: %v: %s (binutils is needed: apt-get install binutils)",
				strings.Join(argv, " "), err, bytes.TrimSpace(out))
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	if len(b) != sectorSize || b[510] != 0x55 || b[511] != 0xaa {
		return nil, fmt.Errorf("building the boot sector: %d bytes, not 512 ending in 55 AA", len(b))
	}
	logf("boot sector assembled from boot/bootsector.s (%d bytes)", len(b))
	return b, nil
}

// genSector is the generation sector for n.
func genSector(n uint32) []byte {
	b := make([]byte, sectorSize)
	copy(b, genMagic)
	binary.LittleEndian.PutUint32(b[len(genMagic):], n)
	return b
}

// checkGen validates a generation from a fixture or a write.
func checkGen(g int64) error {
	if g < 0 || g > 0xffffffff {
		return fmt.Errorf("gen %d outside 0..4294967295", g)
	}
	return nil
}

// makeBootable writes the boot and generation sectors into the base flat
// file of a fixture disk (the fixture's content, not a guest write: no
// change is tracked) and counts grain 0 as allocated.
func (d *vdisk) makeBootable(gen uint32) error {
	if d.capacity < bootMin {
		return fmt.Errorf("a bootable disk needs at least %d bytes, not %d", bootMin, d.capacity)
	}
	bs, err := bootSector()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(d.path(d.root.data), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(append(append([]byte{}, bs...), genSector(gen)...), 0); err != nil {
		return err
	}
	d.alloc.set(0)
	return nil
}

// bootDisk is `vmferry-peer bootdisk -o FILE [-gen N] [-size BYTES]`: a raw
// image that boots as a fixture's bootable disk does (zeros after LBA 1), for
// testing the tools that boot disks without a peer.
func bootDisk(args []string) int {
	fs := flag.NewFlagSet("bootdisk", flag.ContinueOnError)
	out := fs.String("o", "", "the raw image to write (replaced)")
	gen := fs.Int64("gen", 1, "the generation N the guest prints")
	size := fs.Int64("size", 1<<20, "image size in bytes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: vmferry-peer bootdisk -o FILE [-gen N] [-size BYTES]")
		return 2
	}
	if err := checkGen(*gen); err != nil {
		fmt.Fprintln(os.Stderr, "vmferry-peer bootdisk:", err)
		return 2
	}
	if *size < bootMin {
		fmt.Fprintf(os.Stderr, "vmferry-peer bootdisk: size %d below %d\n", *size, bootMin)
		return 2
	}
	bs, err := bootSector()
	if err == nil {
		err = writeFileAtomic(*out, append(append([]byte{}, bs...), genSector(uint32(*gen))...))
	}
	if err == nil {
		err = os.Truncate(*out, *size)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmferry-peer bootdisk:", err)
		return 1
	}
	return 0
}
