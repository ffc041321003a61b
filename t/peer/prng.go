package main

import "encoding/binary"

// The peer's deterministic data stream. Byte o of stream s is byte (o % 8)
// (little-endian) of splitmix64(s, o / 8). Random access by offset lets a
// fixture disk, a guest write and a test's expectation all agree on the same
// bytes without replaying a generator from the start:
//
//   z = seed + (k+1) * 0x9E3779B97F4A7C15
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//   word(k) = z ^ (z >> 31)

func streamWord(seed uint64, k uint64) uint64 {
	z := seed + (k+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// fillStream fills buf with stream bytes starting at stream offset off.
func fillStream(buf []byte, seed uint64, off int64) {
	pos := 0
	k := uint64(off) / 8
	if skip := int(uint64(off) % 8); skip != 0 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], streamWord(seed, k))
		pos = copy(buf, w[skip:])
		k++
	}
	for ; pos+8 <= len(buf); pos += 8 {
		binary.LittleEndian.PutUint64(buf[pos:], streamWord(seed, k))
		k++
	}
	if pos < len(buf) {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], streamWord(seed, k))
		copy(buf[pos:], w[:])
	}
}
