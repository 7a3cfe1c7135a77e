package wire

import (
	"encoding/binary"
	"testing"
)

// FuzzParseHeader feeds arbitrary bytes and limits to ParseHeader. It must
// never panic, and a header it reports complete must describe the bytes it
// was given: the parser is the first thing that touches untrusted input.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}, 1024)
	f.Add([]byte{0x82, 0xFE, 0x01, 0x00, 0, 0, 0, 0}, 1024)
	f.Add([]byte{0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, 1<<20)
	f.Add([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 1<<20)
	f.Add([]byte{0x89, 0x80, 0, 0, 0, 0}, 0)
	f.Add([]byte{0x88, 0xFE, 0, 126, 0, 0, 0, 0}, 1024)
	f.Fuzz(func(t *testing.T, b []byte, maxPayload int) {
		h, ok, err := ParseHeader(b, maxPayload)
		if err != nil {
			if ok {
				t.Fatalf("ok with error %v", err)
			}
			if _, isPE := err.(*ProtocolError); !isPE {
				t.Fatalf("error %T is not a *ProtocolError", err)
			}
			return
		}
		if !ok {
			return
		}
		if !h.Masked || h.Fin != (b[0]&0x80 != 0) || h.Op != b[0]&0x0F {
			t.Fatalf("header %+v does not match first bytes % x", h, b[:2])
		}
		ext := 0
		switch b[1] & 0x7F {
		case 126:
			ext = 2
		case 127:
			ext = 8
		}
		if h.Size != 2+ext+4 || h.Size > len(b) {
			t.Fatalf("Size %d for % x", h.Size, b[:min(len(b), 14)])
		}
		var want uint64
		switch ext {
		case 0:
			want = uint64(b[1] & 0x7F)
		case 2:
			want = uint64(binary.BigEndian.Uint16(b[2:]))
		case 8:
			want = binary.BigEndian.Uint64(b[2:])
		}
		if h.Length < 0 || uint64(h.Length) != want {
			t.Fatalf("Length %d, header says %d", h.Length, want)
		}
		if h.Op < OpClose && h.Length > max(maxPayload, 0) {
			t.Fatalf("Length %d over the limit %d", h.Length, maxPayload)
		}
		if h.Op >= OpClose && h.Length > 125 {
			t.Fatalf("control frame of %d bytes accepted", h.Length)
		}
		if [4]byte(b[h.Size-4:h.Size]) != h.Mask {
			t.Fatalf("mask %x, bytes % x", h.Mask, b[h.Size-4:h.Size])
		}
		// The header alone parses the same: nothing after it matters.
		if h2, ok2, err2 := ParseHeader(b[:h.Size], maxPayload); h2 != h || !ok2 || err2 != nil {
			t.Fatalf("header alone: %+v %v %v, with payload %+v", h2, ok2, err2, h)
		}
	})
}
