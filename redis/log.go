package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// LogTo sends the go-redis client's own log lines to l at debug level.
// Without it go-redis prints them with the standard library's logger on
// stderr, past the program's structured log and its level: during an
// outage a line per failed dial of every pool, repeating what the broker
// already says once per incident (at warn) and when it is over.
//
// go-redis keeps one logger for the whole process, so this setting is
// process-wide: a program calls it once, at start.
func LogTo(l *slog.Logger) {
	goredis.SetLogger(clientLog{l})
}

// clientLog adapts a *slog.Logger to go-redis's logging interface.
type clientLog struct{ l *slog.Logger }

func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	c.l.DebugContext(ctx, fmt.Sprintf(format, v...), "broker", "redis", "source", "go-redis")
}
