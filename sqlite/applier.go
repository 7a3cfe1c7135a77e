package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// The applier moves the log into the tables. Appends are durable once
// they are in the log (see log.go); putting them into the tables is what
// costs: with many users every transaction dirties about one stream-index
// page per user, and each dirty page is a WAL frame (two pwrite and a
// checksum) and later a checkpoint copy. Committing once a second instead
// of once per group of Appends writes each hot page once per second, and
// the appending goroutine does no SQL at all.
//
// It runs on the writer's connection, in transactions of its own: one per
// apply, holding the applied entries and the new log_applied position, and
// one per op (Mark, a step of Trim), each after an apply of everything
// acknowledged before the op was queued, so an op sees every message that
// was appended before it.

const (
	// defaultApplyEvery is how long an acknowledged message may wait in
	// the log before it is applied.
	defaultApplyEvery = time.Second
	// defaultApplyRows starts an apply before the second is up once the
	// tail holds this many messages.
	defaultApplyRows = 16384
	// maxTailFactor: Appends wait for the applier while the tail holds
	// more than maxTailFactor × applyRows messages, so a store whose disk
	// is slower than its Appends does not grow the tail without bound.
	maxTailFactor = 4
)

func timeOf(ts int64) time.Time { return time.Unix(0, ts) }

// applier applies the log until the appender has exited and closed ops.
func (s *Store) applier() {
	defer close(s.applierDone)
	tick := time.NewTicker(s.applyEvery)
	defer tick.Stop()
	for {
		select {
		case req, ok := <-s.ops:
			if !ok {
				if err := s.flush(); err == nil {
					// Everything is in the tables: the log is no longer
					// needed, and a later Open has nothing to replay.
					if err := removeSegments(s.path, math.MaxInt64); err != nil {
						s.log.Warn("sqlite: remove applied log segments", "err", err)
					}
				}
				return
			}
			if s.claim(req) {
				err := s.flush()
				if err == nil {
					err = s.runOp(req.op)
				}
				req.done <- err
			}
		case <-s.applyKick:
			s.flush()
		case <-tick.C:
			s.flush()
		}
	}
}

// flush applies the whole tail as it is now, in one transaction.
func (s *Store) flush() error {
	entries, end := s.tail.snapshot()
	if len(entries) == 0 {
		return nil
	}
	err := s.apply(entries, end)
	if err != nil {
		err = fmt.Errorf("sqlite: apply log: %w", err)
		s.applyErr.Store(&err)
	} else {
		s.applyErr.Store(nil)
		s.tail.drop(len(entries))
		// Every segment before the one holding the last applied frame
		// is in the tables now.
		if err := removeSegments(s.path, end.gen); err != nil {
			s.log.Warn("sqlite: remove applied log segments", "err", err)
		}
	}
	select {
	case s.applied <- struct{}{}:
	default:
	}
	return err
}

// apply inserts entries, which end at end in the log, and records end as
// applied, in one transaction.
func (s *Store) apply(entries []tailEntry, end logPos) (err error) {
	ctx := context.Background()
	if err := s.beginTxn(ctx); err != nil {
		return err
	}
	err = s.insertEntries(ctx, entries)
	if err == nil {
		if _, err = s.w.setApplied.ExecContext(ctx, end.String()); err != nil {
			err = fmt.Errorf("record log position: %w", err)
		}
	}
	if err != nil {
		_ = s.endTxn(ctx, false)
		return err
	}
	if err := s.endTxn(ctx, true); err != nil {
		return err
	}
	s.txns.Add(1)
	// About one WAL frame per user (its stream-index page) plus a few
	// for the table and the right-edge indexes.
	clear(s.applyUsers)
	for _, e := range entries {
		s.applyUsers[e.user] = struct{}{}
	}
	s.walGrew(len(s.applyUsers) + len(entries)/16 + 3)
	return nil
}

// insertSizes is how many INSERT statements the writer prepares: they write
// 1, 2, 4, ... 1<<(insertSizes-1) rows each.
const insertSizes = 5

// insertEntries inserts entries, largest prepared size first (so 16 rows,
// say, take one statement and 23 take four). Each execution of a statement
// has a fixed cost, in database/sql, in the driver (stepping, resetting) and
// in SQLite (opening a cursor on the table and on each index), which a
// multi-row statement pays once for all its rows.
func (s *Store) insertEntries(ctx context.Context, entries []tailEntry) error {
	args := s.applyArgs[:0]
	defer func() {
		clear(args)
		s.applyArgs = args[:0]
	}()
	for i := 0; i < len(entries); {
		k := insertSizes - 1
		for 1<<k > len(entries)-i {
			k--
		}
		chunk := entries[i : i+1<<k]
		args = args[:0]
		for _, e := range chunk {
			args = append(args, string(e.user), int64(e.off), e.id, e.ts, e.data)
		}
		if _, err := s.w.insert[k].ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert %q/%d and %d more: %w", chunk[0].user, chunk[0].off, len(chunk)-1, err)
		}
		i += len(chunk)
	}
	return nil
}

// appliedPos reads how far the log has been applied.
func appliedPos(ctx context.Context, conn *sql.Conn) (logPos, error) {
	var v string
	err := conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'log_applied'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return logPos{}, nil
	}
	if err != nil {
		return logPos{}, fmt.Errorf("read log position: %w", err)
	}
	return parseLogPos(v)
}

// replay applies what the log holds beyond the applied position, then
// starts a new segment generation. Open runs it before the appender and
// the applier start. A frame that is torn or damaged ends its segment: it
// was never acknowledged (Append returns only after the whole frame was
// written), and neither can anything after it have been, in that segment.
func (s *Store) replay(ctx context.Context) error {
	applied, err := appliedPos(ctx, s.wconn)
	if err != nil {
		return err
	}
	gens, err := segments(s.path)
	if err != nil {
		return fmt.Errorf("list log segments: %w", err)
	}
	last := applied.gen
	replayed := 0
	for _, g := range gens {
		last = max(last, g)
		if g < applied.gen {
			continue // applied; its removal was cut short
		}
		b, err := os.ReadFile(segmentPath(s.path, g))
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		epoch, p, err := readSegmentHeader(b)
		if err != nil || epoch != s.epoch {
			// An empty segment (the process died before its header was
			// written) holds nothing; one of another epoch belongs to
			// the history this file was restored over.
			if len(b) > 0 {
				s.log.Warn("sqlite: ignoring a log segment of another history (epoch) or without a header",
					"segment", segmentPath(s.path, g), "epoch", epoch)
			}
			continue
		}
		if g == applied.gen {
			p = max(p, int(min(applied.pos, int64(len(b)))))
		}
		var entries []tailEntry
		for p < len(b) {
			recs, n, err := decodeFrame(b[p:])
			if err != nil {
				s.log.Warn("sqlite: dropping the torn end of the log (never acknowledged)",
					"segment", segmentPath(s.path, g), "at", p, "bytes", len(b)-p)
				break
			}
			p += n
			for _, r := range recs {
				entries = append(entries, tailEntry{user: r.user, off: r.off, id: r.id, ts: r.ts, data: r.data})
			}
			if len(entries) >= s.applyRows {
				if err := s.apply(entries, logPos{g, int64(p)}); err != nil {
					return fmt.Errorf("replay log: %w", err)
				}
				replayed += len(entries)
				entries = nil
			}
		}
		if len(entries) > 0 {
			if err := s.apply(entries, logPos{g, int64(p)}); err != nil {
				return fmt.Errorf("replay log: %w", err)
			}
			replayed += len(entries)
		}
	}
	if replayed > 0 {
		s.log.Info("sqlite: replayed the log", "messages", replayed)
	}
	if err := removeSegments(s.path, math.MaxInt64); err != nil {
		s.log.Warn("sqlite: remove replayed log segments", "err", err)
	}
	s.seg.gen = last // the first write starts generation last+1
	return nil
}
