package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Server-Sent Events connections. An SSE client is a plain HTTP/1.1 GET
// whose response never ends: "text/event-stream", lines of "field: value"
// grouped into events by blank lines
// (https://html.spec.whatwg.org/multipage/server-sent-events.html). Herald
// sends
//
//	retry: 2000
//
//	event: connected
//	data: {"type":"connected","connection_id":"…","epoch":"…"}
//
//	id: <epoch>:<offset>
//	data: {"type":"message","id":"…","offset":17,"epoch":"…","ts":"…","data":{…}}
//
//	data: {"type":"message","id":"…","ts":"…","data":{…}}      (a broadcast: no id)
//
//	: ping                                                      (the heartbeat)
//
// and named events (reset, counts, reconnect, close) carrying JSON. A
// browser resumes a dropped stream by sending the last id it saw back as
// the Last-Event-ID header.
//
// To hold thousands of streams per process the client is as small as the
// WebSocket one: the request is written by hand on a raw TCP connection,
// the response head is read once at dial time, and from then on the
// connection is read by the same epoll loop (or read goroutine) as a
// WebSocket, through wconn.feed. The bytes go through two incremental
// parsers whose state is a few integers: chunkDecoder strips the HTTP/1.1
// chunked framing in place when the response has it, and parseEvent cuts
// the events out of what is left. Herald's HTTP/1.1 streams are
// close-delimited (Connection: close, no length, no chunking: the gateway
// carries them), earlier versions' were chunked by net/http; both are read
// here, told apart by Transfer-Encoding. Like a WebSocket frame, only an event split across reads is
// copied (into wconn.pend); an idle stream holds no buffer.

// sseStream is what an SSE connection keeps besides wconn's own fields.
type sseStream struct {
	chunked bool // the body is chunked: decode before parsing events
	chunks  chunkDecoder
	// skipLF: the last event ended in a CR that was the last byte read. A
	// line may end in CR, LF or CRLF, so an LF at the start of the next
	// read is that CRLF's second half, not an empty line.
	skipLF bool
}

// sseTarget is where a worker's SSE connections go, parsed once from the
// spec's URL.
type sseTarget struct {
	addr   string      // host:port to dial
	host   string      // the Host header
	path   string      // for messages: /sse
	target string      // the request target up to the token: /sse?token=
	tls    *tls.Config // https only
}

func newSSETarget(raw string) (*sseTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("SSE URL %q: %w", raw, err)
	}
	t := &sseTarget{host: u.Host, path: u.EscapedPath(), target: u.EscapedPath() + "?token="}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
		t.tls = &tls.Config{ServerName: u.Hostname()}
	default:
		return nil, fmt.Errorf("SSE URL %q: want http or https", raw)
	}
	if u.Path == "" {
		return nil, fmt.Errorf("SSE URL %q has no path", raw)
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// request returns the GET that opens a stream for token, resuming after
// lastEventID unless it is empty. It is what EventSource sends, less the
// cookies.
func (t *sseTarget) request(token, lastEventID string) []byte {
	b := make([]byte, 0, 160+len(t.target)+len(token)+len(t.host))
	b = append(b, "GET "...)
	b = append(b, t.target...)
	b = append(b, url.QueryEscape(token)...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\nUser-Agent: herald-load\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"...)
	if lastEventID != "" {
		b = append(b, "Last-Event-ID: "...)
		b = append(b, lastEventID...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// dialSSE opens connection i's stream with tok: a TCP connection (TLS for
// https) from the connection's source address, the GET, and the response
// head, all within the dial timeout. A resume reconnect (kind connResume)
// sends the last id its stream got as Last-Event-ID, and the connection
// is marked resumed before any event is read. The stream's first bytes,
// read with the head, are fed to the connection before it is returned;
// should they end it (a close event), dialSSE returns nil and no error:
// finish has counted the drop.
func (w *worker) dialSSE(ctx context.Context, i int, tok string, kind connKind) (*wconn, time.Duration, error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, w.spec.DialTimeout)
	defer cancel()
	nc, err := w.nets[(w.spec.First+i)%len(w.nets)].DialContext(ctx, "tcp", w.sse.addr)
	if err != nil {
		return nil, 0, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = nc.Close()
		}
	}()
	// The handshake's deadline; a context would not bound a blocking Read.
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	if w.sse.tls != nil {
		tc := tls.Client(nc, w.sse.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, 0, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	var since int64
	var lastID string
	if kind == connResume {
		var epoch string
		since, epoch = w.resumePoint(i)
		lastID = epoch + ":" + strconv.FormatInt(since, 10)
	}
	if _, err := nc.Write(w.sse.request(tok, lastID)); err != nil {
		return nil, 0, fmt.Errorf("send request: %w", err)
	}
	head, rest, err := readHead(nc)
	if err != nil {
		return nil, 0, err
	}
	h, err := parseHead(head)
	if err != nil {
		return nil, 0, err
	}
	if h.status != 200 {
		return nil, 0, fmt.Errorf("GET %s: %s", w.sse.path, h.errorText(rest))
	}
	if !bytes.HasPrefix(h.contentType, []byte("text/event-stream")) {
		return nil, 0, fmt.Errorf("GET %s: 200 with Content-Type %q, not text/event-stream", w.sse.path, h.contentType)
	}
	_ = nc.SetDeadline(time.Time{})
	took := time.Since(t0)
	ok = true
	c := &wconn{w: w, nc: nc, idx: i, sse: &sseStream{chunked: h.chunked}}
	w.opened(i, 1)
	if kind == connResume {
		// Before anything is read: the first message must find the
		// connection resumed.
		w.markResumed(i, since, t0.UnixNano())
	}
	if len(rest) > 0 && !c.feed(rest, time.Now().UnixNano()) {
		return nil, took, nil
	}
	return c, took, nil
}

// maxHead bounds a response head: Herald's is under 300 bytes.
const maxHead = 16 << 10

// readHead reads from r up to and including the blank line that ends an
// HTTP response head. rest is what was read after it: the body's first
// bytes, in a buffer that is the caller's to keep or scribble on.
func readHead(r io.Reader) (head, rest []byte, err error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxHead {
				return nil, nil, fmt.Errorf("response head longer than %d bytes", maxHead)
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], buf[i+4:], nil
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				rerr = errors.New("connection closed before the response head")
			}
			return nil, nil, fmt.Errorf("read response head: %w", rerr)
		}
	}
}

// respHead is what the load tool needs of a response head.
type respHead struct {
	status      int
	reason      []byte
	chunked     bool
	contentType []byte
}

// parseHead parses a response head as readHead returns it.
func parseHead(head []byte) (respHead, error) {
	var h respHead
	lines := bytes.Split(bytes.TrimSuffix(head, []byte("\r\n\r\n")), []byte("\r\n"))
	// HTTP/1.1 200 OK
	proto, status, ok := bytes.Cut(lines[0], []byte(" "))
	if !ok || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(status) < 3 {
		return h, fmt.Errorf("not an HTTP/1.x response: %q", lines[0][:min(len(lines[0]), 80)])
	}
	code, err := strconv.Atoi(string(status[:3]))
	if err != nil {
		return h, fmt.Errorf("bad status line %q", lines[0])
	}
	h.status, h.reason = code, bytes.TrimSpace(status[3:])
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return h, fmt.Errorf("bad header line %q", l)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			// The last coding is the framing; chunked is the only one
			// a server may use without the client asking.
			codings := bytes.Split(value, []byte(","))
			h.chunked = bytes.EqualFold(bytes.TrimSpace(codings[len(codings)-1]), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Type")):
			h.contentType = value
		}
	}
	return h, nil
}

// errorText describes a refused stream: the status and as much of the
// body (Herald's JSON error) as came with the head.
func (h respHead) errorText(body []byte) string {
	if h.chunked {
		var d chunkDecoder
		body, _, _ = d.decode(body) // whatever decodes before any error
	}
	body = bytes.TrimSpace(body[:min(len(body), 300)])
	return fmt.Sprintf("%d %s: %s", h.status, h.reason, body)
}

// feedSSE is feed for an SSE connection: p is decoded in place (chunked
// framing removed) and every whole event in it handled; the tail of an
// incomplete one waits in pend. It reports whether the connection is
// still open.
func (c *wconn) feedSSE(p []byte, now int64) bool {
	s := c.sse
	body, done := p, false
	if s.chunked {
		var err error
		if body, done, err = s.chunks.decode(p); err != nil {
			c.protocolError(err)
			return false
		}
	}
	if s.skipLF && len(body) > 0 {
		if body[0] == '\n' {
			body = body[1:]
		}
		s.skipLF = false
	}
	data := body
	if len(c.pend) > 0 {
		c.pend = append(c.pend, body...)
		data = c.pend
	}
	for len(data) > 0 {
		ev, size, ok := parseEvent(data)
		if !ok {
			break
		}
		// A CR ending the read may be half of a CRLF.
		s.skipLF = size == len(data) && data[size-1] == '\r'
		if ev.comments > 0 {
			c.w.pings.Add(int64(ev.comments))
		}
		if ev.hasData && !c.onEvent(&ev, now) {
			return false
		}
		data = data[size:]
	}
	switch {
	case len(data) > maxServerMessage:
		c.protocolError(fmt.Errorf("an event of more than %d bytes", maxServerMessage))
		return false
	case len(data) == 0:
		c.pend = nil // drop the buffer: idle connections hold none
	case len(c.pend) > 0:
		c.pend = c.pend[:copy(c.pend, data)] // data is a tail of pend
	default:
		c.pend = append([]byte(nil), data...)
	}
	if done {
		// The server ended the response without a close event first.
		c.finish(errors.New("server ended the stream without a close event"))
		return false
	}
	return true
}

// onEvent handles one dispatched event. Message events are counted as
// the WebSocket messages are (their data is the herald.v1 envelope, whose
// own fields come before the payload's, so the payload's "t" and "seq"
// are found the same way); a close event ends the connection, counted as
// a drop since we did not ask for it; the connected event is the
// stream's opening, part of the handshake. It reports whether the
// connection is still open.
func (c *wconn) onEvent(ev *sseEvent, now int64) bool {
	w := c.w
	switch string(ev.name) { // compared without a copy
	case "", "message":
		if w.streams == nil {
			c.onMessage(ev.data, now)
			return true
		}
		if !ev.hasID { // a broadcast: no place in any stream
			w.other.Add(1)
			return true
		}
		off, epoch, ok := parseEventID(ev.id)
		if !ok {
			w.badFrames.Add(1)
			w.addError(fmt.Sprintf("connection %d: event id %q is not <epoch>:<offset>", w.spec.First+c.idx, ev.id))
			return true
		}
		c.onStored(off, epoch, ev.data, now)
	case "connected":
	case "reset":
		w.resets.Add(1)
		w.addError(fmt.Sprintf("connection %d: reset: %s", w.spec.First+c.idx, ev.data))
		if off, epoch, ok := parseEventID(ev.id); ok && w.streams != nil {
			w.advance(c.idx, off, epoch, now, true)
		}
	case "close":
		code, _ := jsonInt(ev.data, `"code":`)
		reason, _ := jsonString(ev.data, `"reason":`)
		if c.state.CompareAndSwap(stOpen, stClosing) {
			w.drop(fmt.Sprintf("connection %d: server closed the stream: %d %q", w.spec.First+c.idx, code, reason))
		}
		c.finish(nil)
		return false
	default: // counts, reconnect, and whatever a newer server sends
		w.other.Add(1)
	}
	return true
}

// parseEventID splits a stored message's event id, "<epoch>:<offset>".
func parseEventID(id []byte) (offset int64, epoch []byte, ok bool) {
	i := bytes.LastIndexByte(id, ':')
	if i <= 0 || i == len(id)-1 || len(id)-i-1 > 18 {
		return 0, nil, false
	}
	for _, d := range id[i+1:] {
		if d < '0' || d > '9' {
			return 0, nil, false
		}
		offset = offset*10 + int64(d-'0')
	}
	return offset, id[:i], true
}

// sseEvent is one event as parseEvent cuts it out. Its slices alias the
// parser's input, except data joined from several lines.
type sseEvent struct {
	name     []byte // the event field: "" is a "message" event
	id       []byte // this event's id field, when hasID
	hasID    bool
	data     []byte // the data fields' values joined by "\n"
	hasData  bool   // at least one data field: only such an event is dispatched
	comments int    // comment lines (": ping", the heartbeat)
}

// parseEvent parses the event at the start of b: its lines up to and
// including the blank line that ends it. size is how many bytes that is;
// ok is false when b does not hold the blank line yet (the caller keeps b
// and tries again with more). Lines end in LF, CRLF or a lone CR; a CR
// that is the last byte of b ends its line, and the caller must then drop
// an LF that comes first in the next read (sseStream.skipLF).
//
// As the standard says: a line starting with ':' is a comment; "name:
// value" loses one space after the colon; a line without a colon is a
// field with an empty value; an id containing NUL is ignored; unknown
// fields are ignored; an event with no data field is not dispatched.
// Unlike a browser it reports only this event's id, not the last one seen
// (a broadcast has none, and that is what tells it from a stored message).
func parseEvent(b []byte) (ev sseEvent, size int, ok bool) {
	var joined []byte // only when there are two data lines or more
	for i := 0; ; {
		j := indexLineEnd(b[i:])
		if j < 0 {
			return sseEvent{}, 0, false
		}
		line := b[i : i+j]
		next := i + j + 1
		if b[i+j] == '\r' && next < len(b) && b[next] == '\n' {
			next++
		}
		i = next
		if len(line) == 0 {
			if joined != nil {
				ev.data = joined
			}
			return ev, i, true
		}
		if line[0] == ':' {
			ev.comments++
			continue
		}
		field, value, colon := bytes.Cut(line, []byte(":"))
		if colon && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "data":
			switch {
			case !ev.hasData:
				ev.data, ev.hasData = value, true
			case joined == nil:
				joined = append(append(append(make([]byte, 0, len(ev.data)+1+len(value)), ev.data...), '\n'), value...)
			default:
				joined = append(append(joined, '\n'), value...)
			}
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.id, ev.hasID = value, true
			}
		case "event":
			ev.name = value
		}
	}
}

// indexLineEnd returns the index of the first CR or LF in p, or -1.
func indexLineEnd(p []byte) int {
	for i, c := range p {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}

// chunkDecoder removes HTTP/1.1 chunked framing (RFC 9112 §7.1) from a
// body as it arrives: "<hex size>[;extensions]\r\n<size bytes>\r\n", …,
// "0\r\n<trailer lines>\r\n". Whatever way the body is split into reads,
// decode returns the same bytes; its state is three integers.
type chunkDecoder struct {
	state  uint8
	n      int64 // chunkSize: the size so far; chunkData: bytes still to come; chunkTrailer: the line's length
	digits int
}

// chunkDecoder states.
const (
	chunkSize    uint8 = iota // the hex size
	chunkExt                  // after the size: extensions and CR, up to LF
	chunkData                 // the chunk's bytes
	chunkDataCR               // the CR after them
	chunkDataLF               // the LF after that
	chunkTrailer              // after the last (empty) chunk: trailer lines up to an empty one
	chunkDone                 // the body is over
)

// decode decodes p in place and returns the body bytes it held (a prefix
// of p). done reports that the body is over; anything after its end is
// ignored.
func (d *chunkDecoder) decode(p []byte) (body []byte, done bool, err error) {
	w := 0
	for r := 0; r < len(p); {
		c := p[r]
		switch d.state {
		case chunkSize:
			switch v := unhex(c); {
			case v >= 0:
				if d.digits == 15 {
					return p[:w], false, errors.New("chunked body: chunk size too large")
				}
				d.n, d.digits = d.n<<4|int64(v), d.digits+1
			case d.digits == 0:
				return p[:w], false, fmt.Errorf("chunked body: %q where a chunk size was expected", c)
			case c == '\n':
				d.endSizeLine()
			case c == '\r' || c == ';' || c == ' ' || c == '\t':
				d.state = chunkExt
			default:
				return p[:w], false, fmt.Errorf("chunked body: %q after a chunk size", c)
			}
			r++
		case chunkExt:
			if c == '\n' {
				d.endSizeLine()
			}
			r++
		case chunkData:
			n := int(min(int64(len(p)-r), d.n))
			w += copy(p[w:], p[r:r+n])
			r += n
			if d.n -= int64(n); d.n == 0 {
				d.state = chunkDataCR
			}
		case chunkDataCR:
			if c != '\r' {
				return p[:w], false, fmt.Errorf("chunked body: %q after a chunk's data, want CRLF", c)
			}
			d.state = chunkDataLF
			r++
		case chunkDataLF:
			if c != '\n' {
				return p[:w], false, fmt.Errorf("chunked body: %q after a chunk's data, want CRLF", c)
			}
			d.state = chunkSize
			r++
		case chunkTrailer:
			switch c {
			case '\n':
				if d.n == 0 {
					d.state = chunkDone
					return p[:w], true, nil
				}
				d.n = 0
			case '\r':
			default:
				d.n++
			}
			r++
		case chunkDone:
			return p[:w], true, nil
		}
	}
	return p[:w], d.state == chunkDone, nil
}

// endSizeLine moves on from a size line: to the chunk's data, or after
// the last chunk (size 0) to the trailer.
func (d *chunkDecoder) endSizeLine() {
	if d.n == 0 {
		d.state = chunkTrailer
	} else {
		d.state = chunkData
	}
	d.digits = 0
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
