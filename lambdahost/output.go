package lambdahost

import (
	"bytes"
	"log/slog"
	"strings"
)

// maxLine is where a line without an end is cut, as CloudWatch cuts a log
// event at 256 KB: a function printing without newlines must not grow a
// buffer without bound.
const maxLine = 256 << 10

// lineLogger is a function's stdout or stderr: each line it writes becomes
// one log record, as each becomes one CloudWatch event on Lambda.
//
// os/exec copies each stream from a goroutine of its own and Wait waits for
// it, so Write is never called concurrently and flush, called after Wait,
// needs no lock.
type lineLogger struct {
	log      *slog.Logger
	function string
	stream   string
	buf      []byte
}

func newLineLogger(log *slog.Logger, function, stream string) *lineLogger {
	return &lineLogger{log: log, function: function, stream: stream}
}

func (l *lineLogger) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			take := min(len(b), maxLine-len(l.buf))
			l.buf = append(l.buf, b[:take]...)
			b = b[take:]
			if len(l.buf) == maxLine {
				l.emit()
			}
			continue
		}
		for len(l.buf)+i > maxLine {
			take := maxLine - len(l.buf)
			l.buf = append(l.buf, b[:take]...)
			b, i = b[take:], i-take
			l.emit()
		}
		l.buf = append(l.buf, b[:i]...)
		b = b[i+1:]
		l.emit()
	}
	return n, nil
}

// flush logs a last line that had no newline.
func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.emit()
	}
}

func (l *lineLogger) emit() {
	line := strings.TrimSuffix(string(l.buf), "\r")
	l.buf = l.buf[:0]
	l.log.Info("function output", "function", l.function, "stream", l.stream, "line", line)
}
