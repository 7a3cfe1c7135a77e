package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// A Server-Sent Events client for the tests, as a browser's EventSource
// interprets a stream: https://html.spec.whatwg.org/multipage/server-sent-events.html
// ("Interpreting an event stream"). No library: net/http for the request,
// this file for the parsing.

// sseEvent is one dispatched event.
type sseEvent struct {
	Event string // the event type: "message" when the event had no event field
	ID    string // the id field of this event, "" when it had none
	Data  []byte // the data lines, joined with "\n"
	// LastEventID is the event's lastEventId in a browser: the last id
	// field seen so far, which EventSource sends back as Last-Event-ID.
	LastEventID string
	// Retry is the reconnection time the stream set so far, in ms (-1:
	// none yet).
	Retry int
}

// errEventCut is the end of a stream in the middle of an event: the spec
// discards the event, and for Herald it means the stream was cut off.
var errEventCut = errors.New("event stream ended inside an event")

// sseParser turns an event stream into events.
type sseParser struct {
	r       io.Reader
	buf     []byte // read from r: buf[pos:] is not parsed yet
	pos     int
	err     error // r's error, once it returned one
	started bool  // the first line was read (and a BOM at its start dropped)
	skipLF  bool  // the last line ended with CR: an LF right after it belongs to it

	lastEventID string   // the spec's last event ID buffer: it outlives events
	retry       int      // the last valid retry field, in ms; -1 while there was none
	unknown     []string // field names the spec ignores; Herald sends none

	// onComment is called with each comment line's text (after the colon).
	onComment func(string)

	// The event being read.
	event, id  string
	data       []byte
	dataLines  int
	fieldsRead bool
}

func newSSEParser(r io.Reader) *sseParser {
	return &sseParser{r: r, buf: make([]byte, 0, 32<<10), retry: -1}
}

// readLine returns the next line without its end: CRLF, LF or CR, as the
// spec has it. The line is valid until the next call. A line cut off by
// the end of the stream is an error (io.ErrUnexpectedEOF).
func (p *sseParser) readLine() ([]byte, error) {
	for {
		rest := p.buf[p.pos:]
		if p.skipLF && len(rest) > 0 {
			p.skipLF = false
			if rest[0] == '\n' {
				p.pos++
				continue
			}
		}
		i := bytes.IndexByte(rest, '\n')
		if j := bytes.IndexByte(rest, '\r'); j >= 0 && (i < 0 || j < i) {
			i = j
			p.skipLF = true
		}
		if i >= 0 {
			p.pos += i + 1
			line := rest[:i]
			if !p.started { // a stream may start with a byte order mark
				p.started = true
				line = bytes.TrimPrefix(line, []byte("\uFEFF"))
			}
			return line, nil
		}
		if p.err != nil {
			if len(rest) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, p.err
		}
		// Keep what is not parsed at the front, with room behind it.
		n := copy(p.buf[:cap(p.buf)], rest)
		p.buf, p.pos = p.buf[:n], 0
		if cap(p.buf)-n < 4<<10 {
			p.buf = append(make([]byte, 0, 2*cap(p.buf)), p.buf...)
		}
		m, err := p.r.Read(p.buf[n:cap(p.buf)])
		p.buf = p.buf[:n+m]
		if err != nil {
			p.err = err
		}
	}
}

// next returns the next dispatched event. At the end of the stream it
// returns io.EOF, or errEventCut when an event was left unfinished.
func (p *sseParser) next() (sseEvent, error) {
	for {
		line, err := p.readLine()
		if err == io.ErrUnexpectedEOF || err == io.EOF && p.fieldsRead {
			return sseEvent{}, errEventCut
		}
		if err != nil {
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if ev, ok := p.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte(":")); ok {
			if p.onComment != nil {
				p.onComment(string(rest))
			}
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		p.fieldsRead = true
		switch string(field) {
		case "event":
			p.event = string(value)
		case "data":
			p.data = append(p.data, value...)
			p.data = append(p.data, '\n')
			p.dataLines++
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.lastEventID = string(value)
				p.id = p.lastEventID
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && len(value) > 0 && len(bytes.Trim(value, "0123456789")) == 0 {
				p.retry = n
			}
		default:
			p.unknown = append(p.unknown, string(field))
		}
	}
}

// dispatch ends the event at a blank line. An event without data is not
// dispatched (its id still sets the last event ID).
func (p *sseParser) dispatch() (sseEvent, bool) {
	ev := sseEvent{Event: p.event, ID: p.id, LastEventID: p.lastEventID, Retry: p.retry}
	had := p.dataLines > 0
	if had {
		ev.Data = p.data[:len(p.data)-1] // without the last "\n"
	}
	p.event, p.id, p.data, p.dataLines, p.fieldsRead = "", "", nil, 0, false
	if !had {
		return sseEvent{}, false
	}
	if ev.Event == "" {
		ev.Event = "message"
	}
	return ev, true
}

// sseConn is one GET /sse stream. A goroutine reads it from the first
// call to recv on, so a test can hold a stream it does not read (its
// socket fills up) and read it later.
type sseConn struct {
	t      testing.TB
	body   io.ReadCloser
	cancel context.CancelFunc

	p      *sseParser
	pings  atomic.Int64 // ": ping" comments read
	events chan sseEvent
	end    chan struct{} // closed when the reader stopped; then err is set
	err    error
	quit   chan struct{}

	startOnce, closeOnce sync.Once
}

// newSSEConn reads the stream in body. cancel, if not nil, aborts its
// request. Every event read is validated against the protocol schema.
func newSSEConn(t testing.TB, body io.ReadCloser, cancel context.CancelFunc) *sseConn {
	c := &sseConn{
		t: t, body: body, cancel: cancel, p: newSSEParser(body),
		events: make(chan sseEvent, 64), end: make(chan struct{}), quit: make(chan struct{}),
	}
	c.p.onComment = func(text string) {
		if strings.TrimSpace(text) == "ping" {
			c.pings.Add(1)
		}
	}
	t.Cleanup(c.close)
	return c
}

func (c *sseConn) start() {
	c.startOnce.Do(func() {
		go func() {
			defer close(c.end)
			for {
				ev, err := c.p.next()
				if err != nil {
					c.err = err
					return
				}
				if len(c.p.unknown) > 0 {
					c.t.Errorf("SSE: fields %q are not part of Herald's stream", c.p.unknown)
					c.p.unknown = nil
				}
				schema.SSEEvent(c.t, ev.Event, ev.Data)
				select {
				case c.events <- ev:
				case <-c.quit:
					c.err = errors.New("closed by the test")
					return
				}
			}
		}()
	})
}

// recv returns the next event, waiting at most d. When the stream has
// ended it returns io.EOF (or what else ended it).
func (c *sseConn) recv(d time.Duration) (sseEvent, error) {
	c.start()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ev := <-c.events:
		return ev, nil
	case <-c.end:
		select { // the reader's last events come before its end
		case ev := <-c.events:
			return ev, nil
		default:
			return sseEvent{}, c.err
		}
	case <-timer.C:
		return sseEvent{}, fmt.Errorf("no SSE event within %v", d)
	}
}

// close ends the stream from the client's side and waits for the reader,
// so that it reports nothing after the test.
func (c *sseConn) close() {
	c.closeOnce.Do(func() {
		close(c.quit)
		if c.cancel != nil {
			c.cancel()
		}
		c.body.Close()
		c.start() // so that end is closed
		<-c.end
	})
}

// sseGet starts GET /sse with query (which may hold the token) and
// headers on client hc (nil: a default one) and returns the response;
// the caller checks its status. The request lives until cancel.
func sseGet(h *server, hc *http.Client, query string, headers map[string]string) (*http.Response, context.CancelFunc, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", h.URL+"/sse"+query, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	// The headers of a stream come at once; the events may take long.
	headersIn := time.AfterFunc(testTimeout, cancel)
	resp, err := hc.Do(req)
	headersIn.Stop()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return resp, cancel, nil
}

// checkStreamHeaders checks the reply that starts a stream.
func checkStreamHeaders(t testing.TB, resp *http.Response) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("SSE Content-Type %q, want text/event-stream", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("SSE Cache-Control %q, want no-store", cc)
	}
	if xa := resp.Header.Get("X-Accel-Buffering"); xa != "no" {
		t.Errorf("SSE X-Accel-Buffering %q, want no", xa)
	}
}

// The test client parses streams as the spec says, whatever the reads'
// boundaries: it is what every SSE test relies on.
func TestSSEParser(t *testing.T) {
	stream := "\uFEFFretry: 1500\n" +
		": a comment\r\n" +
		"data: one\r\n\r\n" + // CRLF
		"event: counts\rdata:{\"x\":1}\r\rdata\n\n" + // CR; no space after the colon; a field without a colon
		"id: e:7\ndata:  two spaces\ndata: second line\n\n" +
		"event: ignored\nid: e:8\n\n" + // no data: not dispatched, but the id stays
		"id: bad\x00id\nretry: 12x\ndata: after\n\n" + // an id with NUL and a retry that is not digits are ignored
		"data: cut off"
	want := []sseEvent{
		{Event: "message", Data: []byte("one"), Retry: 1500},
		{Event: "counts", Data: []byte(`{"x":1}`), Retry: 1500},
		{Event: "message", Data: []byte(""), Retry: 1500},
		{Event: "message", ID: "e:7", Data: []byte(" two spaces\nsecond line"), LastEventID: "e:7", Retry: 1500},
		{Event: "message", Data: []byte("after"), LastEventID: "e:8", Retry: 1500},
	}
	for _, r := range []struct {
		name string
		r    io.Reader
	}{
		{"whole", strings.NewReader(stream)},
		{"byte by byte", iotest.OneByteReader(strings.NewReader(stream))},
	} {
		t.Run(r.name, func(t *testing.T) {
			p := newSSEParser(r.r)
			var comments []string
			p.onComment = func(s string) { comments = append(comments, s) }
			for i, w := range want {
				ev, err := p.next()
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if fmt.Sprintf("%+v", ev) != fmt.Sprintf("%+v", w) {
					t.Fatalf("event %d: %+v %q, want %+v %q", i, ev, ev.Data, w, w.Data)
				}
			}
			if _, err := p.next(); err != errEventCut {
				t.Fatalf("an event cut off by the end: %v", err)
			}
			if fmt.Sprint(comments) != "[ a comment]" || len(p.unknown) != 0 {
				t.Fatalf("comments %q, unknown fields %q", comments, p.unknown)
			}
		})
	}
	p := newSSEParser(strings.NewReader("data: x\n\n"))
	p.next()
	if _, err := p.next(); err != io.EOF {
		t.Fatalf("a stream that ends between events: %v", err)
	}
}
