package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// chunked frames body as HTTP/1.1 chunks of the given sizes (the rest in
// one more chunk), with an extension on the first, as a server may send
// them. The body goes on: lastChunk would end it.
func chunked(body []byte, sizes ...int) []byte {
	var b []byte
	for k := 0; len(body) > 0; k++ {
		n := len(body)
		if k < len(sizes) {
			n = min(n, sizes[k])
		}
		b = fmt.Appendf(b, "%x", n)
		if k == 0 {
			b = append(b, ";name=value"...)
		}
		b = append(b, "\r\n"...)
		b = append(b, body[:n]...)
		b = append(b, "\r\n"...)
		body = body[n:]
	}
	return b
}

// lastChunk ends a chunked body, with a trailer.
const lastChunk = "0\r\nX-Trailer: yes\r\n\r\n"

// splits calls fn with every way of cutting b into two reads, and with b
// one byte at a time; each read is a fresh copy, since feed may overwrite
// what it is given.
func splits(b []byte, fn func(name string, reads [][]byte)) {
	for k := 0; k <= len(b); k++ {
		fn(fmt.Sprintf("cut at %d", k), [][]byte{bytes.Clone(b[:k]), bytes.Clone(b[k:])})
	}
	bytewise := make([][]byte, len(b))
	for i := range b {
		bytewise[i] = []byte{b[i]}
	}
	fn("byte by byte", bytewise)
}

func TestChunkDecoderSplits(t *testing.T) {
	body := []byte("retry: 2000\n\nid: e:1\ndata: {\"t\":1}\n\n: ping\n\n")
	stream := append(chunked(body, 5, 1, 17), lastChunk...)
	stream = append(stream, "HTTP/1.1 200 OK\r\n"...) // after the end: not the body's
	splits(stream, func(name string, reads [][]byte) {
		var d chunkDecoder
		var got []byte
		var done bool
		for _, r := range reads {
			out, end, err := d.decode(r)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if done && len(out) > 0 {
				t.Fatalf("%s: body after the end: %q", name, out)
			}
			got = append(got, out...)
			done = done || end
		}
		if !done || !bytes.Equal(got, body) {
			t.Fatalf("%s: done %v body %q", name, done, got)
		}
	})
}

func TestChunkDecoderErrors(t *testing.T) {
	for _, in := range []string{
		"x\r\n",                 // no size
		"5\r\nhelloXX",          // no CRLF after the data
		"5\r\nhello\rX",         // CR without LF
		"5z\r\nhello\r\n",       // junk after the size
		"1000000000000000\r\n",  // 16 hex digits
		"ffffffffffffffff\r\n0", // more
	} {
		var d chunkDecoder
		if _, _, err := d.decode([]byte(in)); err == nil {
			t.Errorf("%q decoded without an error", in)
		}
	}
}

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		in             string
		size           int // 0: incomplete
		name, id, data string
		hasID, hasData bool
		comments       int
		joined         bool // data is a copy, joined from several lines
	}{
		{in: "data: x\n\nrest", size: 9, data: "x", hasData: true},
		{in: "data: x\r\n\r\n", size: 11, data: "x", hasData: true},
		{in: "data: x\r\r", size: 9, data: "x", hasData: true},
		{in: "data:x\n\n", size: 8, data: "x", hasData: true},     // the space is optional
		{in: "data:  x\n\n", size: 10, data: " x", hasData: true}, // only one is removed
		{in: "data\n\n", size: 6, data: "", hasData: true},        // a field without a colon
		{in: "data: a\ndata: b\rdata:c\r\n\n", size: 25, data: "a\nb\nc", hasData: true, joined: true},
		{in: "event: counts\nid: e:7\ndata: {}\n\n", size: 32, name: "counts", id: "e:7", hasID: true, data: "{}", hasData: true},
		{in: "id: a\x00b\ndata: 1\n\n", size: 17, data: "1", hasData: true}, // an id with NUL is ignored
		{in: ": ping\n\n", size: 8, comments: 1},
		{in: ": ping\n: pong\nretry: 5\nfoo: bar\ndata: 1\n\n", size: 41, comments: 2, data: "1", hasData: true},
		{in: "id: e:1\n\n", size: 9, id: "e:1", hasID: true},
		{in: "data: x\n", size: 0},
		{in: "data: x\r", size: 0},
		{in: "data: x", size: 0},
		{in: "", size: 0},
	} {
		in := []byte(tc.in)
		ev, size, ok := parseEvent(in)
		if ok != (tc.size > 0) || size != tc.size {
			t.Errorf("%q: ok %v size %d, want size %d", tc.in, ok, size, tc.size)
			continue
		}
		if !ok {
			continue
		}
		if string(ev.name) != tc.name || string(ev.id) != tc.id || ev.hasID != tc.hasID ||
			string(ev.data) != tc.data || ev.hasData != tc.hasData || ev.comments != tc.comments {
			t.Errorf("%q: name %q id %q (%v) data %q (%v) comments %d", tc.in, ev.name, ev.id, ev.hasID, ev.data, ev.hasData, ev.comments)
		}
		// A single data line is not copied: the event aliases the input.
		if len(ev.data) > 0 && !tc.joined && &ev.data[0] != &in[bytes.Index(in, ev.data)] {
			t.Errorf("%q: data copied", tc.in)
		}
	}
}

func TestParseEventID(t *testing.T) {
	for _, tc := range []struct {
		in    string
		off   int64
		epoch string
		ok    bool
	}{
		{"3f9c0d1e2a4b5c6d:17", 17, "3f9c0d1e2a4b5c6d", true},
		{"a:b:0", 0, "a:b", true},
		{":17", 0, "", false},
		{"e:", 0, "", false},
		{"e:1x", 0, "", false},
		{"17", 0, "", false},
		{"e:1234567890123456789", 0, "", false}, // would overflow
	} {
		off, epoch, ok := parseEventID([]byte(tc.in))
		if off != tc.off || string(epoch) != tc.epoch || ok != tc.ok {
			t.Errorf("parseEventID(%q) = %d %q %v", tc.in, off, epoch, ok)
		}
	}
}

// sseTestConn is an SSE connection over a pipe, as dialSSE leaves it.
func sseTestConn(t *testing.T, isChunked, streams bool) *wconn {
	t.Helper()
	c, server := testConn(t, false)
	go io.Copy(io.Discard, server)
	c.sse = &sseStream{chunked: isChunked}
	if streams {
		c.w.streams = make([]streamPos, 1)
		c.w.catchUp = newHistogram()
	}
	return c
}

// sseSample is a stream as Herald writes it, and then some: CRLF and lone
// CR line ends, data over several lines, a named event, heartbeats, an id
// without data and an empty data field.
const sseSample = "retry: 2000\n\n" +
	"event: connected\ndata: {\"type\":\"connected\",\"connection_id\":\"c1\",\"epoch\":\"e1\"}\n\n" +
	": ping\n\n" +
	"id: e1:1\ndata: {\"type\":\"message\",\"id\":\"m1\",\"offset\":1,\"epoch\":\"e1\",\"ts\":\"2026-01-01T00:00:00Z\",\"data\":{\"t\":1,\"seq\":1}}\n\n" +
	"data: {\"type\":\"message\",\"id\":\"m2\",\"ts\":\"2026-01-01T00:00:00Z\",\"data\":{\"t\":2,\"seq\":2}}\r\n\r\n" +
	"id: e1:2\rdata: {\"type\":\"message\",\"id\":\"m3\",\"offset\":2,\"epoch\":\"e1\",\"data\":{\"t\":3,\rdata: \"seq\":3}}\r\r" +
	"event: counts\ndata: {\"type\":\"counts\",\"unread\":2,\"unseen\":0}\n\n" +
	": ping\r\n\r\n" +
	"id: e1:99\n\n" +
	"data\n\n"

// However the stream is cut into reads, chunked or not, every event is
// handled once: three messages delivered (a stored one, a broadcast and
// one whose data spans two lines), the counts event and the empty data
// counted as other, two heartbeats, the connected event and the id
// without data ignored, and no buffer left behind.
func TestFeedSSESplits(t *testing.T) {
	for _, isChunked := range []bool{false, true} {
		stream := []byte(sseSample)
		if isChunked {
			stream = chunked(stream, 7, 60, 1, 200)
		}
		splits(stream, func(name string, reads [][]byte) {
			c := sseTestConn(t, isChunked, false)
			for _, r := range reads {
				if !c.feed(r, 1_000_000) {
					t.Fatalf("chunked %v, %s: connection ended", isChunked, name)
				}
			}
			w := c.w
			if w.delivered.Load() != 3 || w.other.Load() != 2 || w.pings.Load() != 2 || w.outOfOrder.Load() != 0 || w.badFrames.Load() != 0 {
				t.Fatalf("chunked %v, %s: delivered %d other %d pings %d out of order %d bad %d %v", isChunked, name,
					w.delivered.Load(), w.other.Load(), w.pings.Load(), w.outOfOrder.Load(), w.badFrames.Load(), w.errs)
			}
			if w.latency.min != 1_000_000-3 || w.latency.max != 1_000_000-1 || c.pend != nil || c.state.Load() != stOpen {
				t.Fatalf("chunked %v, %s: latency [%d,%d] pend %q state %d", isChunked, name, w.latency.min, w.latency.max, c.pend, c.state.Load())
			}
		})
	}
}

// The stream checks of the resume scenario, on SSE: offsets come from the
// event ids; a broadcast (no id) has no place in the stream.
func TestSSEStreamChecks(t *testing.T) {
	c := sseTestConn(t, true, true)
	w := c.w
	msg := func(epoch string, off int64) string {
		return fmt.Sprintf("id: %s:%d\ndata: {\"type\":\"message\",\"id\":\"m\",\"offset\":%d,\"epoch\":%q,\"data\":{\"t\":1,\"seq\":%d}}\n\n", epoch, off, off, epoch, off)
	}
	feed := func(s string) {
		t.Helper()
		if !c.feed(chunked([]byte(s)), 1000) {
			t.Fatalf("connection ended on %q", s)
		}
	}
	feed(msg("e1", 7))
	feed("data: {\"type\":\"message\",\"id\":\"b\",\"data\":{\"t\":1,\"seq\":1}}\n\n")
	if w.positioned.Load() != 1 || w.delivered.Load() != 1 || w.other.Load() != 1 {
		t.Fatalf("positioned %d delivered %d other %d", w.positioned.Load(), w.delivered.Load(), w.other.Load())
	}
	// A reconnect resumes from e1:7 and must get 8..10.
	w.streams[0].target = 10
	if since, epoch := w.resumePoint(0); since != 7 || epoch != "e1" {
		t.Fatalf("resume point %d %q", since, epoch)
	}
	w.markResumed(0, 7, 500)
	feed(msg("e1", 8) + msg("e1", 8) + msg("e1", 10))
	s := w.snapshot(0)
	if s.Replayed != 2 || s.Duplicates != 1 || s.Gaps != 1 || s.CaughtUp != 1 || s.ResumeEnd != 1000 || w.delivered.Load() != 1 {
		t.Fatalf("after 8, 8, 10: %+v delivered %d", s, w.delivered.Load())
	}
	feed("id: e1\ndata: {}\n\n") // not <epoch>:<offset>
	feed("event: reset\nid: e2:3\ndata: {\"type\":\"reset\",\"epoch\":\"e2\",\"offset\":3}\n\n")
	if w.badFrames.Load() != 1 || w.resets.Load() != 1 || w.streams[0].offset != 3 || w.streams[0].epoch != "e2" {
		t.Fatalf("bad %d resets %d stream %+v", w.badFrames.Load(), w.resets.Load(), w.streams[0])
	}
	// A close event ends the connection, counted as a drop.
	if c.feed(chunked([]byte("event: close\ndata: {\"type\":\"close\",\"code\":4008,\"reason\":\"send queue full\"}\n\n")), 1000) {
		t.Fatal("still open after a close event")
	}
	if w.dropped.Load() != 1 || w.open.Load() != 0 || c.state.Load() != stClosed || !strings.Contains(strings.Join(w.errs, "\n"), `4008 "send queue full"`) {
		t.Fatalf("dropped %d open %d state %d errs %q", w.dropped.Load(), w.open.Load(), c.state.Load(), w.errs)
	}
}

// The end of the chunked body, or junk in its framing, ends the
// connection: the first as a drop, the second as a protocol error too.
func TestFeedSSEEnd(t *testing.T) {
	c := sseTestConn(t, true, false)
	if c.feed(append(chunked([]byte("data: {\"t\":1,\"seq\":1}\n\n")), lastChunk...), 10) {
		t.Fatal("open after the last chunk")
	}
	if c.w.delivered.Load() != 1 || c.w.dropped.Load() != 1 || c.state.Load() != stClosed {
		t.Fatalf("delivered %d dropped %d state %d", c.w.delivered.Load(), c.w.dropped.Load(), c.state.Load())
	}
	c = sseTestConn(t, true, false)
	if c.feed([]byte("zz\r\n"), 10) {
		t.Fatal("open after bad framing")
	}
	if c.w.badFrames.Load() != 1 || c.state.Load() != stClosed {
		t.Fatalf("bad %d state %d", c.w.badFrames.Load(), c.state.Load())
	}
}

// slowReader returns its input n bytes per Read.
type slowReader struct {
	b []byte
	n int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p, r.b[:min(r.n, len(r.b))])
	r.b = r.b[k:]
	return k, nil
}

func TestReadHead(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + "d\r\nretry: 2000\n\n\r\n"
	for _, n := range []int{1, 3, 100, 4096} {
		head, rest, err := readHead(&slowReader{b: []byte(resp), n: n})
		if err != nil {
			t.Fatalf("%d bytes a read: %v", n, err)
		}
		h, err := parseHead(head)
		if err != nil || h.status != 200 || !h.chunked || string(h.contentType) != "text/event-stream" {
			t.Fatalf("%d bytes a read: %+v %v", n, h, err)
		}
		// What came after the head is the stream's.
		if !strings.HasPrefix(resp[len(head):], string(rest)) {
			t.Fatalf("%d bytes a read: rest %q", n, rest)
		}
	}
	// Herald's own head now: close-delimited, no chunking to undo.
	head, rest, err := readHead(strings.NewReader("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Type: text/event-stream\r\nX-Accel-Buffering: no\r\n\r\nretry: 2000\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := parseHead(head); err != nil || h.status != 200 || h.chunked || string(h.contentType) != "text/event-stream" || string(rest) != "retry: 2000\n\n" {
		t.Fatalf("close-delimited: %+v %v, rest %q", h, err, rest)
	}
	if _, _, err := readHead(&slowReader{b: []byte("HTTP/1.1 200 OK\r\n"), n: 5}); err == nil {
		t.Fatal("no error for a head cut short")
	}
	// A refusal says why, from the body.
	head, rest, err = readHead(strings.NewReader("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3c\r\n{\"error\":{\"code\":\"unauthorized\",\"message\":\"invalid token\"}}\r\n0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHead(head)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.errorText(rest); got != `401 Unauthorized: {"error":{"code":"unauthorized","message":"invalid token"}}` {
		t.Fatalf("error text %q", got)
	}
	for _, bad := range []string{"SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 2\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n"} {
		if _, err := parseHead([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestSSERequest(t *testing.T) {
	tg, err := newSSETarget("http://127.0.0.1:8080/sse")
	if err != nil {
		t.Fatal(err)
	}
	got := string(tg.request("a+b", "e1:7"))
	want := "GET /sse?token=a%2Bb HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: herald-load\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: e1:7\r\n\r\n"
	if got != want {
		t.Fatalf("request\n%q\nwant\n%q", got, want)
	}
	if tg, err := newSSETarget("https://example.com/x/sse"); err != nil || tg.addr != "example.com:443" || tg.tls == nil || tg.target != "/x/sse?token=" {
		t.Fatalf("%+v %v", tg, err)
	}
}

// A refused stream fails the connect with the server's reason.
func TestDialSSERefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _, _ = readHead(c)
		_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\nno room!!!")
	}()
	w, err := newWorker(workerSpec{Count: 1, Rate: 1, DialConcurrency: 1, DialTimeout: 10 * time.Second, IO: "goroutine",
		Transport: "sse", URL: "http://" + ln.Addr().String() + "/sse", Tokens: []string{"t"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.connectOne(context.Background(), 0, connFirst) {
		t.Fatal("connected")
	}
	if w.connectFailed.Load() != 1 || len(w.errs) != 1 || !strings.Contains(w.errs[0], "503 Service Unavailable: no room!!!") {
		t.Fatalf("failed %d errs %q", w.connectFailed.Load(), w.errs)
	}
}
