package main

import (
	"bufio"
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
	Data  string // the data lines, joined with "\n"
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
	r       *bufio.Reader
	started bool // the first line was read (and a BOM at its start dropped)
	skipLF  bool // the last line ended with CR: an LF right after it belongs to it

	lastEventID string   // the spec's last event ID buffer: it outlives events
	retry       int      // the last valid retry field, in ms; -1 while there was none
	unknown     []string // field names the spec ignores; Herald sends none

	// onComment is called with each comment line's text (after the colon).
	onComment func(string)

	// The event being read.
	event, id  string
	data       strings.Builder
	dataLines  int
	fieldsRead bool
}

func newSSEParser(r io.Reader) *sseParser {
	return &sseParser{r: bufio.NewReader(r), retry: -1}
}

// readLine returns the next line without its end: CRLF, LF or CR, as the
// spec has it. A line cut off by the end of the stream is an error.
func (p *sseParser) readLine() (string, error) {
	var line []byte
	for {
		b, err := p.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if p.skipLF {
			p.skipLF = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\r':
			p.skipLF = true
			return p.line(line), nil
		case '\n':
			return p.line(line), nil
		}
		line = append(line, b)
	}
}

// line drops the byte order mark a stream may start with.
func (p *sseParser) line(b []byte) string {
	s := string(b)
	if !p.started {
		p.started = true
		s = strings.TrimPrefix(s, "\uFEFF")
	}
	return s
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
		if line == "" {
			if ev, ok := p.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, ":"); ok {
			if p.onComment != nil {
				p.onComment(rest)
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		p.fieldsRead = true
		switch field {
		case "event":
			p.event = value
		case "data":
			p.data.WriteString(value)
			p.data.WriteByte('\n')
			p.dataLines++
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.lastEventID = value
				p.id = value
			}
		case "retry":
			if n, err := strconv.Atoi(value); err == nil && value != "" && strings.Trim(value, "0123456789") == "" {
				p.retry = n
			}
		default:
			p.unknown = append(p.unknown, field)
		}
	}
}

// dispatch ends the event at a blank line. An event without data is not
// dispatched (its id still sets the last event ID).
func (p *sseParser) dispatch() (sseEvent, bool) {
	ev := sseEvent{Event: p.event, ID: p.id, Data: strings.TrimSuffix(p.data.String(), "\n"), LastEventID: p.lastEventID, Retry: p.retry}
	had := p.dataLines > 0
	p.event, p.id, p.dataLines, p.fieldsRead = "", "", 0, false
	p.data.Reset()
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
				schema.SSEEvent(c.t, ev.Event, []byte(ev.Data))
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
}
