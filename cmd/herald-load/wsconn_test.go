package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// serverFrame builds an unmasked server frame.
func serverFrame(fin bool, op byte, p []byte) []byte {
	b := []byte{op, 0}
	if fin {
		b[0] |= 0x80
	}
	switch {
	case len(p) < 126:
		b[1] = byte(len(p))
	case len(p) < 1<<16:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
	}
	return append(b, p...)
}

func testConn(t *testing.T, track bool) (*wconn, net.Conn) {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	w := &worker{latency: newHistogram(), connect: newHistogram(), reconnect: newHistogram()}
	if track {
		w.seqs = map[int64]*seqStat{}
	}
	w.open.Add(1)
	return &wconn{w: w, nc: client}, server
}

// Whatever way the bytes are split into reads, every message is parsed
// once: frames with 7-, 16- and 64-bit lengths, a fragmented message, and
// a message that is not ours.
func TestFeedSplits(t *testing.T) {
	big := make([]byte, 70000)
	copy(big, `{"t":5,"seq":3,"pad":"`)
	for i := 22; i < len(big)-2; i++ {
		big[i] = 'x'
	}
	copy(big[len(big)-2:], `"}`)
	var stream []byte
	stream = append(stream, serverFrame(true, opText, []byte(`{"t":1,"seq":1}`))...)
	stream = append(stream, serverFrame(true, opText, []byte(`{"t": 2, "seq": 2, "pad": "`+string(make([]byte, 200))+`"}`))...)
	stream = append(stream, serverFrame(true, opText, big)...)
	stream = append(stream, serverFrame(false, opText, []byte(`{"t":7,`))...)
	stream = append(stream, serverFrame(true, opCont, []byte(`"seq":4}`))...)
	stream = append(stream, serverFrame(true, opText, []byte(`"hello"`))...)
	for _, chunk := range []int{1, 2, 3, 7, 125, 4096, len(stream)} {
		c, _ := testConn(t, true)
		for i := 0; i < len(stream); i += chunk {
			if !c.feed(stream[i:min(i+chunk, len(stream))], 1_000_000) {
				t.Fatalf("chunk %d: connection ended", chunk)
			}
		}
		w := c.w
		if w.delivered.Load() != 4 || w.other.Load() != 1 || w.outOfOrder.Load() != 0 || c.pend != nil || c.frag != nil {
			t.Fatalf("chunk %d: delivered %d other %d out of order %d pend %d", chunk, w.delivered.Load(), w.other.Load(), w.outOfOrder.Load(), len(c.pend))
		}
		if w.latency.min != 1_000_000-7 || w.latency.max != 1_000_000-1 || len(w.seqs) != 4 || w.seqs[3].N != 1 {
			t.Fatalf("chunk %d: latency [%d,%d] seqs %d", chunk, w.latency.min, w.latency.max, len(w.seqs))
		}
	}
}

func TestPingAnsweredAndServerClose(t *testing.T) {
	c, server := testConn(t, false)
	got := make(chan []byte, 2)
	go func() {
		for {
			b := make([]byte, 64)
			n, err := server.Read(b)
			if err != nil {
				close(got)
				return
			}
			got <- b[:n]
		}
	}()
	if !c.feed(serverFrame(true, opPing, []byte("hi")), time.Now().UnixNano()) {
		t.Fatal("ended on a ping")
	}
	pong := <-got
	if pong[0] != 0x80|opPong || pong[1] != 0x80|2 {
		t.Fatalf("pong header % x", pong[:2])
	}
	mask := pong[2:6]
	if p := []byte{pong[6] ^ mask[0], pong[7] ^ mask[1]}; string(p) != "hi" {
		t.Fatalf("pong payload %q", p)
	}
	// A close from the server is answered, ends the connection and counts
	// as a drop: we did not ask for it.
	if c.feed(serverFrame(true, opClose, []byte{0x0F, 0xA5, 'b', 'y', 'e'}), 0) {
		t.Fatal("still open after a close frame")
	}
	if reply := <-got; reply[0] != 0x80|opClose {
		t.Fatalf("close reply % x", reply)
	}
	if c.w.dropped.Load() != 1 || c.w.open.Load() != 0 || c.state.Load() != stClosed {
		t.Fatalf("dropped %d open %d state %d", c.w.dropped.Load(), c.w.open.Load(), c.state.Load())
	}
	if _, ok := <-got; ok {
		t.Fatal("socket not closed")
	}
}

func TestFeedRejectsMaskedFrame(t *testing.T) {
	c, server := testConn(t, false)
	go io.Copy(io.Discard, server)
	if c.feed([]byte{0x81, 0x81, 1, 2, 3, 4, 'x'}, 0) {
		t.Fatal("masked server frame accepted")
	}
	if c.w.badFrames.Load() != 1 || c.state.Load() != stClosed {
		t.Fatalf("bad frames %d state %d", c.w.badFrames.Load(), c.state.Load())
	}
}

func TestJSONInt(t *testing.T) {
	for _, tc := range []struct {
		in, key string
		want    int64
		ok      bool
	}{
		{`{"t":123,"seq":4}`, `"t":`, 123, true},
		{`{"seq": 4}`, `"seq":`, 4, true},
		{`{"t":"x"}`, `"t":`, 0, false},
		{`"hello"`, `"t":`, 0, false},
	} {
		if got, ok := jsonInt([]byte(tc.in), tc.key); got != tc.want || ok != tc.ok {
			t.Errorf("jsonInt(%s, %s) = %d %v", tc.in, tc.key, got, ok)
		}
	}
}

// v1Conn is a herald.v1 test connection, and its server end.
func v1Conn(t *testing.T) (*wconn, net.Conn) {
	t.Helper()
	c, server := testConn(t, false)
	c.w.streams = make([]streamPos, 1)
	c.w.catchUp = newHistogram()
	return c, server
}

func envelope(offset int64, epoch string) []byte {
	return fmt.Appendf(nil, `{"type":"message","id":"x%d","offset":%d,"epoch":%q,"ts":"2026-01-01T00:00:00Z","data":{"t":1,"seq":%d}}`, offset, offset, epoch, offset)
}

// The stream checks of the resume scenario: a live message positions the
// connection; after a resume, each offset must follow the last one, and
// the connection is caught up at its target.
func TestEnvelopeStreamChecks(t *testing.T) {
	c, server := v1Conn(t)
	resumeMsg := make(chan []byte, 1)
	go func() {
		b := make([]byte, 256)
		n, _ := server.Read(b)
		resumeMsg <- b[:n]
		_, _ = io.Copy(io.Discard, server)
	}()
	w := c.w
	feed := func(p []byte) {
		t.Helper()
		if !c.feed(serverFrame(true, opText, p), 1000) {
			t.Fatalf("connection ended on %s", p)
		}
	}
	feed([]byte(`{"type":"ping"}`))
	feed(envelope(7, "e1")) // a fresh connection joins wherever the stream is
	if w.positioned.Load() != 1 || w.delivered.Load() != 1 || w.other.Load() != 1 || w.gaps.Load() != 0 {
		t.Fatalf("positioned %d delivered %d other %d gaps %d", w.positioned.Load(), w.delivered.Load(), w.other.Load(), w.gaps.Load())
	}

	w.streams[0].target = 11
	if err := w.sendResume(c, 500); err != nil {
		t.Fatal(err)
	}
	// The resume message is a masked text frame with the last offset and epoch.
	f := <-resumeMsg
	if f[0] != 0x80|opText || f[1]&0x80 == 0 {
		t.Fatalf("resume frame header % x", f[:2])
	}
	n, mask := int(f[1]&0x7F), f[2:6]
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = f[6+i] ^ mask[i%4]
	}
	if string(payload) != `{"type":"resume","since":7,"epoch":"e1"}` {
		t.Fatalf("resume message %s", payload)
	}

	feed(envelope(8, "e1"))
	feed(envelope(8, "e1"))  // duplicate
	feed(envelope(10, "e1")) // 9 skipped
	s := w.snapshot(0)
	if s.Replayed != 2 || s.Duplicates != 1 || s.Gaps != 1 || s.ResumeExpected != 4 || s.Behind != 1 || s.CaughtUp != 0 || w.delivered.Load() != 1 {
		t.Fatalf("after 8, 8, 10: %+v delivered %d", s, w.delivered.Load())
	}
	feed(envelope(11, "e1"))
	s = w.snapshot(0)
	if s.Replayed != 3 || s.CaughtUp != 1 || s.Behind != 0 || s.ResumeEnd != 1000 || w.catchUp.count() != 1 || w.catchUp.max != 500 {
		t.Fatalf("after 11: %+v catch-up n %d max %d", s, w.catchUp.count(), w.catchUp.max)
	}
	// A reset, and an epoch that changes without one, are both counted.
	feed([]byte(`{"type":"reset","epoch":"e2","offset":3}`))
	feed(envelope(4, "e3"))
	feed([]byte(`{"type":"error","code":"bad_resume","message":"…"}`))
	if w.resets.Load() != 2 || w.badFrames.Load() != 1 || w.streams[0].offset != 4 || w.streams[0].epoch != "e3" {
		t.Fatalf("resets %d bad frames %d stream %+v", w.resets.Load(), w.badFrames.Load(), w.streams[0])
	}
}

func TestJSONString(t *testing.T) {
	for _, tc := range []struct {
		in, key, want string
		ok            bool
	}{
		{`{"type":"message","epoch":"3f9c"}`, `"type":`, "message", true},
		{`{"type":"message","epoch": "3f9c"}`, `"epoch":`, "3f9c", true},
		{`{"offset":17}`, `"offset":`, "", false},
		{`{"epoch":"unterminated`, `"epoch":`, "", false},
	} {
		if got, ok := jsonString([]byte(tc.in), tc.key); string(got) != tc.want || ok != tc.ok {
			t.Errorf("jsonString(%s, %s) = %q %v", tc.in, tc.key, got, ok)
		}
	}
}
