package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/gobwas/ws"
)

// testMask is the masking key of the example in RFC 6455 §5.7.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// masked returns a client frame: fin, op, payload masked with testMask.
// Unlike clientFrame it needs no *testing.T, so fuzz seeds can use it, and
// it builds frames a conforming client never would (control frames too
// long, reserved opcodes) as easily as valid ones.
func masked(fin bool, op byte, payload []byte) []byte {
	b := AppendFrameHeader(nil, op, len(payload))
	if !fin {
		b[0] &^= 0x80
	}
	b[1] |= 0x80
	b = append(b, testMask[:]...)
	start := len(b)
	b = append(b, payload...)
	Unmask(b[start:], testMask)
	return b
}

// maskServerFrame turns a complete unmasked frame, as the server builds
// them, into the same frame as a client would send it.
func maskServerFrame(f []byte) []byte {
	h, err := ws.ReadHeader(bytes.NewReader(f))
	if err != nil {
		panic(err)
	}
	payload := f[len(f)-int(h.Length):]
	return masked(h.Fin, byte(h.OpCode), payload)
}

func frames(fs ...[]byte) []byte { return bytes.Join(fs, nil) }

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// call is one Handler call, recorded with copies of its arguments.
type call struct {
	Kind   string // "message", "ping", "pong", "close"
	Op     byte
	P      string
	Code   uint16
	Reason string
}

func (c call) String() string {
	switch c.Kind {
	case "message":
		return fmt.Sprintf("message(%d, %q)", c.Op, c.P)
	case "close":
		return fmt.Sprintf("close(%d, %q)", c.Code, c.Reason)
	}
	return fmt.Sprintf("%s(%q)", c.Kind, c.P)
}

func msg(op byte, p string) call        { return call{Kind: "message", Op: op, P: p} }
func ping(p string) call                { return call{Kind: "ping", P: p} }
func pong(p string) call                { return call{Kind: "pong", P: p} }
func closed(code uint16, r string) call { return call{Kind: "close", Code: code, Reason: r} }

// recorder is a Handler that records its calls and checks what every
// Handler may rely on. failOn makes it return errHandler for that call
// number (1-based), to test that a handler's error stops the Assembler.
type recorder struct {
	calls  []call
	broken []string // promises the Assembler broke
	max    int
	failOn int
}

var errHandler = errors.New("handler refused")

func (r *recorder) add(c call) error {
	r.calls = append(r.calls, c)
	if len(r.calls) == r.failOn {
		return errHandler
	}
	return nil
}

func (r *recorder) Message(op byte, p []byte) error {
	if op != OpText && op != OpBinary {
		r.broken = append(r.broken, fmt.Sprintf("message opcode %d", op))
	}
	if op == OpText && !utf8.Valid(p) {
		r.broken = append(r.broken, "text message not UTF-8")
	}
	if len(p) > r.max {
		r.broken = append(r.broken, fmt.Sprintf("message of %d bytes over %d", len(p), r.max))
	}
	return r.add(msg(op, string(p)))
}

func (r *recorder) Ping(p []byte) error { r.control(p); return r.add(ping(string(p))) }
func (r *recorder) Pong(p []byte) error { r.control(p); return r.add(pong(string(p))) }

func (r *recorder) control(p []byte) {
	if len(p) > 125 {
		r.broken = append(r.broken, fmt.Sprintf("control payload of %d bytes", len(p)))
	}
}

func (r *recorder) Close(code uint16, reason string) error {
	if code != CloseNoStatus && !ValidCloseCode(code) || !utf8.ValidString(reason) || len(reason) > 123 {
		r.broken = append(r.broken, fmt.Sprintf("close(%d, %q) accepted", code, reason))
	}
	return r.add(closed(code, reason))
}

// outcome is what feeding a stream produced.
type outcome struct {
	Calls   []call
	Err     error
	Stopped bool
}

func (o outcome) String() string {
	return fmt.Sprintf("calls %v, err %v, stopped %v", o.Calls, o.Err, o.Stopped)
}

// feedPieces feeds a copy of in to a new Assembler cut at the given
// offsets (increasing), and returns what happened: the error of the
// first failing Feed, and whether later Feeds kept quiet.
func feedPieces(t testing.TB, in []byte, maxMessage, failOn int, cuts []int) outcome {
	t.Helper()
	in = bytes.Clone(in) // Feed unmasks in place
	a := Assembler{MaxMessage: maxMessage}
	r := &recorder{max: a.maxMessage(), failOn: failOn}
	var o outcome
	prev := 0
	for _, c := range append(cuts, len(in)) {
		err := a.Feed(in[prev:c], r)
		prev = c
		if o.Err != nil {
			if err != nil || len(r.calls) != len(o.Calls) {
				t.Fatalf("Feed after %v: err %v, calls %v", o.Err, err, r.calls[len(o.Calls):])
			}
			continue
		}
		o.Err, o.Calls = err, r.calls
	}
	o.Calls, o.Stopped = r.calls, a.Stopped()
	if len(r.broken) > 0 {
		t.Fatalf("cuts %v: the Handler was given what it must not be: %v", cuts, r.broken)
	}
	if (o.Err != nil || o.Stopped) && a.st != nil {
		t.Fatalf("a stopped Assembler holds state %+v", a.st)
	}
	return o
}

// sameOutcome compares outcomes, errors by close code and reason.
func sameOutcome(a, b outcome) bool {
	if !reflect.DeepEqual(a.Calls, b.Calls) && (len(a.Calls) > 0 || len(b.Calls) > 0) || a.Stopped != b.Stopped {
		return false
	}
	var pa, pb *ProtocolError
	if errors.As(a.Err, &pa) && errors.As(b.Err, &pb) {
		return *pa == *pb
	}
	return a.Err == b.Err
}

func TestAssembler(t *testing.T) {
	const max = 16
	text := func(s string) []byte { return masked(true, OpText, []byte(s)) }
	long := strings.Repeat("x", max)
	for _, tc := range []struct {
		name     string
		in       []byte
		failOn   int    // the recorder fails this call (1-based)
		want     []call // calls made before any error
		wantCode uint16 // 0: no protocol error
	}{
		{name: "text", in: text("hello"), want: []call{msg(OpText, "hello")}},
		{name: "empty text", in: text(""), want: []call{msg(OpText, "")}},
		{name: "binary not UTF-8", in: masked(true, OpBinary, []byte{0xff, 0}), want: []call{msg(OpBinary, "\xff\x00")}},
		{name: "message of MaxMessage bytes", in: text(long), want: []call{msg(OpText, long)}},
		{name: "frames back to back", in: frames(text("a"), masked(true, OpPing, []byte("p")), text("b")),
			want: []call{msg(OpText, "a"), ping("p"), msg(OpText, "b")}},
		{name: "16-bit length, too big", in: masked(true, OpBinary, bytes.Repeat([]byte{7}, 200)), wantCode: CloseTooBig},

		// Fragmentation (§5.4).
		{name: "fragmented", in: frames(masked(false, OpText, []byte("he")), masked(false, OpContinuation, []byte("l")), masked(true, OpContinuation, []byte("lo"))),
			want: []call{msg(OpText, "hello")}},
		{name: "fragmented, empty fragments", in: frames(masked(false, OpBinary, nil), masked(false, OpContinuation, nil), masked(true, OpContinuation, nil)),
			want: []call{msg(OpBinary, "")}},
		{name: "fragmented, control frames between", in: frames(masked(false, OpText, []byte("he")), masked(true, OpPing, []byte("1")),
			masked(false, OpContinuation, []byte("l")), masked(true, OpPong, nil), masked(true, OpContinuation, []byte("lo")), text("next")),
			want: []call{ping("1"), pong(""), msg(OpText, "hello"), msg(OpText, "next")}},
		{name: "fragmented, close between", in: frames(masked(false, OpText, []byte("he")), masked(true, OpClose, closePayload(1001, "bye")), masked(true, OpContinuation, []byte("llo"))),
			want: []call{closed(1001, "bye")}},
		{name: "UTF-8 character split across fragments", in: frames(masked(false, OpText, []byte("caf\xc3")), masked(true, OpContinuation, []byte("\xa9"))),
			want: []call{msg(OpText, "café")}},
		{name: "reassembled message of MaxMessage bytes", in: frames(masked(false, OpText, []byte(long[:10])), masked(true, OpContinuation, []byte(long[10:]))),
			want: []call{msg(OpText, long)}},
		{name: "reassembled message too big", in: frames(masked(false, OpText, []byte(long[:10])), masked(false, OpContinuation, []byte(long[10:])), masked(true, OpContinuation, []byte("!"))),
			wantCode: CloseTooBig},
		{name: "text frame inside fragmented message", in: frames(masked(false, OpText, []byte("a")), text("b")), wantCode: CloseProtocolError},
		{name: "binary frame inside fragmented message", in: frames(masked(false, OpText, []byte("a")), masked(false, OpBinary, []byte("b"))), wantCode: CloseProtocolError},
		{name: "continuation without message", in: masked(true, OpContinuation, []byte("a")), wantCode: CloseProtocolError},
		{name: "continuation after complete message", in: frames(text("a"), masked(true, OpContinuation, []byte("b"))),
			want: []call{msg(OpText, "a")}, wantCode: CloseProtocolError},

		// UTF-8 (§8.1).
		{name: "text not UTF-8", in: text("caf\xc3"), wantCode: CloseInvalidPayload},
		{name: "fragmented text not UTF-8", in: frames(masked(false, OpText, []byte("ok")), masked(true, OpContinuation, []byte{0xff})), wantCode: CloseInvalidPayload},
		{name: "surrogate half in text", in: text("\xed\xa0\x80"), wantCode: CloseInvalidPayload},

		// Header checks (ParseHeader).
		{name: "unmasked", in: Frame(OpText, []byte("x")), wantCode: CloseProtocolError},
		{name: "reserved bits", in: []byte{0xC1, 0x80, 0, 0, 0, 0}, wantCode: CloseProtocolError},
		{name: "reserved data opcode", in: masked(true, 0x3, nil), wantCode: CloseProtocolError},
		{name: "reserved control opcode", in: masked(true, 0xB, nil), wantCode: CloseProtocolError},
		{name: "frame too big", in: text(long + "!"), wantCode: CloseTooBig},
		{name: "length top bit", in: []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, wantCode: CloseProtocolError},
		{name: "fragmented ping", in: masked(false, OpPing, nil), wantCode: CloseProtocolError},
		{name: "ping of 125 bytes", in: masked(true, OpPing, bytes.Repeat([]byte("p"), 125)), want: []call{ping(strings.Repeat("p", 125))}},
		{name: "ping of 126 bytes", in: masked(true, OpPing, bytes.Repeat([]byte("p"), 126)), wantCode: CloseProtocolError},

		// Close frames (§5.5.1, §7.4).
		{name: "close without payload", in: masked(true, OpClose, nil), want: []call{closed(CloseNoStatus, "")}},
		{name: "close with code", in: masked(true, OpClose, closePayload(1000, "")), want: []call{closed(1000, "")}},
		{name: "close with reason", in: masked(true, OpClose, closePayload(4000, "done ✓")), want: []call{closed(4000, "done ✓")}},
		{name: "close with longest reason", in: masked(true, OpClose, closePayload(3000, strings.Repeat("r", 123))), want: []call{closed(3000, strings.Repeat("r", 123))}},
		{name: "close payload of 1 byte", in: masked(true, OpClose, []byte{0x03}), wantCode: CloseProtocolError},
		{name: "close reason not UTF-8", in: masked(true, OpClose, closePayload(1000, "\xff")), wantCode: CloseInvalidPayload},
		{name: "input after close ignored", in: frames(masked(true, OpClose, nil), text("late"), []byte{0xff, 0xff}), want: []call{closed(CloseNoStatus, "")}},

		// Errors stop the Assembler.
		{name: "frames after an error ignored", in: frames(text("a"), Frame(OpText, []byte("b")), text("c")),
			want: []call{msg(OpText, "a")}, wantCode: CloseProtocolError},
		{name: "handler error", in: frames(text("a"), text("b"), text("c")), failOn: 2,
			want: []call{msg(OpText, "a"), msg(OpText, "b")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole := feedPieces(t, tc.in, max, tc.failOn, nil)
			got, err := whole.Calls, whole.Err
			if len(got) > 0 || len(tc.want) > 0 {
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("calls %v, want %v", got, tc.want)
				}
			}
			var pe *ProtocolError
			switch {
			case tc.failOn > 0:
				if err != errHandler {
					t.Errorf("err = %v, want the handler's", err)
				}
			case tc.wantCode == 0:
				if err != nil {
					t.Errorf("err = %v", err)
				}
			case !errors.As(err, &pe) || pe.Code != tc.wantCode:
				t.Errorf("err = %v, want close %d", err, tc.wantCode)
			}
			if wantStopped := err != nil || len(got) > 0 && got[len(got)-1].Kind == "close"; whole.Stopped != wantStopped {
				t.Errorf("Stopped() = %v, want %v", whole.Stopped, wantStopped)
			}

			// The same stream cut anywhere, and fed a byte at a time, must
			// make the same calls and fail the same way.
			for i := 1; i < len(tc.in); i++ {
				if o := feedPieces(t, tc.in, max, tc.failOn, []int{i}); !sameOutcome(o, whole) {
					t.Fatalf("cut at %d: %v\nwhole: %v", i, o, whole)
				}
			}
			var each []int
			for i := 1; i < len(tc.in); i++ {
				each = append(each, i)
			}
			if o := feedPieces(t, tc.in, max, tc.failOn, each); !sameOutcome(o, whole) {
				t.Fatalf("byte by byte: %v\nwhole: %v", o, whole)
			}
		})
	}
}

func TestAssemblerCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		code     uint16
		wantCode uint16 // 0: accepted
	}{
		{0, CloseProtocolError},
		{999, CloseProtocolError},
		{1000, 0},
		{1001, 0},
		{1002, 0},
		{1003, 0},
		{1004, CloseProtocolError},
		{1005, CloseProtocolError},
		{1006, CloseProtocolError},
		{1007, 0},
		{1011, 0},
		{1014, 0},
		{1015, CloseProtocolError},
		{1016, CloseProtocolError},
		{2999, CloseProtocolError},
		{3000, 0},
		{4999, 0},
		{5000, CloseProtocolError},
		{65535, CloseProtocolError},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			if got := ValidCloseCode(tc.code); got != (tc.wantCode == 0) {
				t.Errorf("ValidCloseCode = %v", got)
			}
			o := feedPieces(t, masked(true, OpClose, closePayload(tc.code, "why")), 0, 0, nil)
			if tc.wantCode == 0 {
				if o.Err != nil || !reflect.DeepEqual(o.Calls, []call{closed(tc.code, "why")}) {
					t.Errorf("%v", o)
				}
				return
			}
			var pe *ProtocolError
			if !errors.As(o.Err, &pe) || pe.Code != tc.wantCode || len(o.Calls) > 0 {
				t.Errorf("%v, want close %d", o, tc.wantCode)
			}
		})
	}
}

// A zero MaxMessage means DefaultMaxMessage, summed over fragments.
func TestAssemblerDefaultMax(t *testing.T) {
	half := bytes.Repeat([]byte("h"), DefaultMaxMessage/2)
	ok := frames(masked(false, OpBinary, half), masked(true, OpContinuation, half))
	if o := feedPieces(t, ok, 0, 0, nil); o.Err != nil || len(o.Calls) != 1 || len(o.Calls[0].P) != DefaultMaxMessage {
		t.Fatalf("%d-byte message: err %v, %d calls", DefaultMaxMessage, o.Err, len(o.Calls))
	}
	over := frames(masked(false, OpBinary, half), masked(true, OpContinuation, append(half, 0)))
	var pe *ProtocolError
	if o := feedPieces(t, over, 0, 0, nil); !errors.As(o.Err, &pe) || pe.Code != CloseTooBig {
		t.Fatalf("%d-byte message: err %v", DefaultMaxMessage+1, o.Err)
	}
}

// A too-large frame is refused from its header alone: the server does not
// buffer a payload it would refuse.
func TestAssemblerRefusesFromHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"frame", masked(true, OpBinary, make([]byte, 1001))[:8]},
		{"fragment", frames(masked(false, OpBinary, make([]byte, 600)), masked(true, OpContinuation, make([]byte, 600))[:8])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Assembler{MaxMessage: 1000}
			err := a.Feed(tc.in, &recorder{max: 1000})
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != CloseTooBig {
				t.Fatalf("err = %v, want close %d", err, CloseTooBig)
			}
		})
	}
}

// MaxFrame bounds each frame, not the message: a message of frames under
// it may grow to MaxMessage (API Gateway's 32 KB frames, 128 KB messages).
func TestAssemblerMaxFrame(t *testing.T) {
	part := make([]byte, 100)
	cases := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"frame at the limit", masked(true, OpText, part), true},
		{"fragments at the limit", frames(masked(false, OpText, part), masked(false, OpContinuation, part), masked(true, OpContinuation, part)), true},
		{"frame over", masked(true, OpText, make([]byte, 101))[:8], false},
		{"fragment over", frames(masked(false, OpText, part), masked(true, OpContinuation, make([]byte, 101))[:8]), false},
		{"control frames are RFC 6455's business", masked(true, OpPing, make([]byte, 125)), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Assembler{MaxMessage: 1000, MaxFrame: 100}
			err := a.Feed(bytes.Clone(tc.in), &recorder{max: 1000})
			var pe *ProtocolError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.ok && (!errors.As(err, &pe) || pe.Code != CloseTooBig):
				t.Fatalf("err = %v, want close %d", err, CloseTooBig)
			}
		})
	}
}

// An idle Assembler holds no buffer, whatever it went through.
func TestAssemblerIdleHoldsNothing(t *testing.T) {
	if size, limit := unsafe.Sizeof(Assembler{}), 3*unsafe.Sizeof(uintptr(0)); size > limit {
		t.Errorf("Assembler is %d bytes, want at most %d: it lives in every connection", size, limit)
	}
	in := frames(
		masked(true, OpText, []byte("whole")),
		masked(false, OpText, []byte("frag")), masked(true, OpPing, nil), masked(true, OpContinuation, []byte("ment")),
		masked(true, OpBinary, bytes.Repeat([]byte("b"), 300)),
	)
	for _, cut := range []int{1, 5, 9, 20, 40, len(in) - 1} {
		a := Assembler{}
		r := &recorder{max: DefaultMaxMessage}
		buf := bytes.Clone(in)
		if err := a.Feed(buf[:cut], r); err != nil {
			t.Fatal(err)
		}
		if a.st == nil {
			t.Fatalf("cut %d: no state kept mid-frame", cut)
		}
		if err := a.Feed(buf[cut:], r); err != nil {
			t.Fatal(err)
		}
		if a.st != nil {
			t.Errorf("cut %d: idle Assembler holds %+v", cut, *a.st)
		}
		if len(r.calls) != 4 {
			t.Errorf("cut %d: calls %v", cut, r.calls)
		}
	}
}

type nopHandler struct{ n int }

func (h *nopHandler) Message(byte, []byte) error { h.n++; return nil }
func (h *nopHandler) Ping([]byte) error          { h.n++; return nil }
func (h *nopHandler) Pong([]byte) error          { h.n++; return nil }
func (h *nopHandler) Close(uint16, string) error { h.n++; return nil }

// Whole frames cost no allocation: the payload handed to the Handler is
// the caller's buffer, unmasked in place.
func TestAssemblerNoAllocWholeFrames(t *testing.T) {
	in := frames(
		masked(true, OpText, []byte(`{"type":"ack","offset":12345}`)),
		masked(true, OpBinary, bytes.Repeat([]byte{1}, 300)),
		masked(true, OpPing, []byte("ping")),
		masked(true, OpPong, nil),
		masked(true, OpText, []byte(`{"type":"pong"}`)),
	)
	buf := make([]byte, len(in))
	var a Assembler
	h := &nopHandler{}
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf, in) // Feed unmasks in place
		if err := a.Feed(buf, h); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Feed of whole frames, want 0", allocs)
	}
	if h.n != 5*101 {
		t.Errorf("%d handler calls", h.n)
	}
}

func TestCloseFrame(t *testing.T) {
	long := strings.Repeat("a", 122)
	for _, tc := range []struct {
		name       string
		code       uint16
		reason     string
		wantCode   uint16
		wantReason string
	}{
		{"plain", 4008, "send queue full", 4008, "send queue full"},
		{"no status becomes normal", CloseNoStatus, "", CloseNormal, ""},
		{"abnormal becomes normal", 1006, "x", CloseNormal, "x"},
		{"TLS becomes normal", 1015, "", CloseNormal, ""},
		{"undefined becomes normal", 5000, "", CloseNormal, ""},
		{"123 bytes kept", 1000, long + "b", 1000, long + "b"},
		{"cut to 123 bytes", 1000, long + "bcd", 1000, long + "b"},
		{"cut before a 2-byte character", 1000, long + "é", 1000, long},
		{"cut before a 3-byte character", 1000, long[:121] + "€", 1000, long[:121]},
		{"cut before a 4-byte character", 1000, long[:120] + "😀", 1000, long[:120]},
		{"4-byte character ending at 123", 1000, long[:119] + "😀z", 1000, long[:119] + "😀"},
		{"invalid UTF-8 replaced", 1000, "a\xffb", 1000, "a\uFFFDb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := CloseFrame(tc.code, tc.reason)
			if len(f) > 2+125 {
				t.Fatalf("%d-byte close frame", len(f))
			}
			// An independent reader, and then ours: our own close frames
			// must pass our own checks.
			wf, err := ws.ReadFrame(bytes.NewReader(f))
			if err != nil || wf.Header.OpCode != ws.OpClose {
				t.Fatalf("gobwas: %v %+v", err, wf.Header)
			}
			o := feedPieces(t, maskServerFrame(f), 0, 0, nil)
			if want := []call{closed(tc.wantCode, tc.wantReason)}; o.Err != nil || !reflect.DeepEqual(o.Calls, want) {
				t.Fatalf("%v, want %v", o, want)
			}
		})
	}
}
