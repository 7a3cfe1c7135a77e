package stream

import (
	"context"
	"log/slog"
	"time"
)

// Retention bounds what the Store keeps of each user's stream.
type Retention struct {
	MaxCount int           // newest messages kept per user (1,000; negative = no limit)
	MaxAge   time.Duration // older messages are dropped (7 days; negative = no limit)
	Every    time.Duration // how often trimming runs (1 minute)
}

func (r *Retention) setDefaults() {
	if r.MaxCount == 0 {
		r.MaxCount = 1000
	}
	if r.MaxAge == 0 {
		r.MaxAge = 7 * 24 * time.Hour
	}
	if r.Every <= 0 {
		r.Every = time.Minute
	}
}

// RunRetention trims the Store in the background until ctx is done.
// Trimming off the publish path keeps appends cheap; a stream may exceed
// its bounds for up to one period.
func (s *Service) RunRetention(ctx context.Context, r Retention, log *slog.Logger) {
	r.setDefaults()
	t := time.NewTicker(r.Every)
	defer t.Stop()
	for {
		s.Trim(ctx, r, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Trim applies retention once.
func (s *Service) Trim(ctx context.Context, r Retention, log *slog.Logger) {
	r.setDefaults()
	var before time.Time
	if r.MaxAge > 0 {
		before = s.now().Add(-r.MaxAge)
	}
	n, err := s.store.Trim(ctx, r.MaxCount, before)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error("retention trim", "err", err)
	case n > 0:
		log.Debug("retention trimmed", "messages", n)
	}
}
