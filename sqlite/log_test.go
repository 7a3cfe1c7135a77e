package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/storetest"
)

// frame encodes one frame of msgs, which must carry their offsets.
func frame(msgs ...herald.Message) []byte {
	b, start := beginFrame(nil)
	for _, m := range msgs {
		b = appendRecord(b, m.User, m.Offset, m.ID, m.Time.UnixNano(), m.Data)
	}
	return sealFrame(b, start)
}

func logMsg(user herald.UserID, off uint64) herald.Message {
	return herald.Message{User: user, Offset: off, ID: fmt.Sprintf("%s-%d", user, off),
		Time: time.Unix(0, int64(1e18+off)), Data: []byte(fmt.Sprintf("%s/%d", user, off))}
}

// newEmptyStore creates a store file at path, closed again, and returns
// its epoch.
func newEmptyStore(t *testing.T, path string) string {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	epoch := s.Epoch()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return epoch
}

func writeSegment(t *testing.T, path string, gen int64, b []byte) {
	t.Helper()
	if err := os.WriteFile(segmentPath(path, gen), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReplayTornTail cuts the log at every byte of its last frame, as a
// kill in the middle of the write(2) can: Open must replay every whole
// frame before it, drop the torn one, continue the offsets after the last
// replayed message, and leave nothing to replay twice.
func TestReplayTornTail(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "herald.db")
	epoch := newEmptyStore(t, base)
	template, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	seg := segmentHeader(epoch)
	seg = append(seg, frame(logMsg("a", 1), logMsg("b", 1))...)
	seg = append(seg, frame(logMsg("a", 2))...)
	whole := len(seg)
	seg = append(seg, frame(logMsg("a", 3), logMsg("b", 2), logMsg("a", 4))...)

	for cut := whole; cut <= len(seg); cut++ {
		path := filepath.Join(dir, fmt.Sprintf("cut%d.db", cut))
		if err := os.WriteFile(path, template, 0o644); err != nil {
			t.Fatal(err)
		}
		writeSegment(t, path, 1, seg[:cut])
		s := openTest(t, path)
		wantA, wantB := []string{"a/1", "a/2"}, []string{"b/1"}
		if cut == len(seg) {
			wantA, wantB = []string{"a/1", "a/2", "a/3", "a/4"}, []string{"b/1", "b/2"}
		}
		storetest.CheckStream(t, s, "a", wantA)
		storetest.CheckStream(t, s, "b", wantB)
		m := storetest.Msg("a", "next")
		storetest.MustAppend(t, s, m)
		if m.Offset != uint64(len(wantA)+1) {
			t.Fatalf("cut at %d: Append after replay got offset %d, want %d", cut, m.Offset, len(wantA)+1)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if gens, _ := segments(path); len(gens) != 0 {
			t.Fatalf("cut at %d: segments %v left after Close", cut, gens)
		}
		s = openTest(t, path)
		storetest.CheckStream(t, s, "a", append(wantA, "next"))
		storetest.CheckStream(t, s, "b", wantB)
	}
}

// TestReplaySkipsApplied leaves a segment behind that was applied already
// (its removal cut short by a crash): Open must not apply it again. It also
// checks that a segment of another epoch (left next to a restored backup)
// and an empty one (a crash before the first write) are ignored.
func TestReplaySkipsApplied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	epoch := newEmptyStore(t, path)
	seg := append(segmentHeader(epoch), frame(logMsg("a", 1), logMsg("a", 2))...)
	writeSegment(t, path, 1, seg)
	s := openTest(t, path) // replays and removes it
	storetest.CheckStream(t, s, "a", []string{"a/1", "a/2"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	writeSegment(t, path, 1, seg)                                                                 // applied already
	writeSegment(t, path, 2, append(segmentHeader("fedcba9876543210"), frame(logMsg("a", 3))...)) // another history
	writeSegment(t, path, 3, nil)                                                                 // created, never written
	s = openTest(t, path)
	storetest.CheckStream(t, s, "a", []string{"a/1", "a/2"})
	m := storetest.Msg("a", "a/3")
	storetest.MustAppend(t, s, m)
	if m.Offset != 3 {
		t.Fatalf("offset %d, want 3", m.Offset)
	}
	// The new segment's generation is past every old one's.
	if gens, _ := segments(path); !slices.Equal(gens, []int64{4}) {
		t.Fatalf("segments %v, want [4]", gens)
	}
}

// TestReadYourWrites reads every way right after Append, while nothing
// has been applied, then after an apply, and after a reopen.
func TestReadYourWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	s, err := Open(context.Background(), path, withApply(time.Hour, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(stage string, first, last uint64, n int) {
		t.Helper()
		f, l, err := s.Bounds(ctx, "u")
		if err != nil || f != first || l != last {
			t.Fatalf("%s: Bounds %d %d %v, want %d %d", stage, f, l, err, first, last)
		}
		if got := storetest.All(t, s, "u"); len(got) != n {
			t.Fatalf("%s: %d messages, want %d", stage, len(got), n)
		}
		items, err := s.Inbox(ctx, herald.InboxQuery{User: "u", Limit: herald.MaxInboxLimit})
		if err != nil || len(items) != n {
			t.Fatalf("%s: Inbox %d items %v, want %d", stage, len(items), err, n)
		}
		for i := 1; i < len(items); i++ {
			if items[i].Offset != items[i-1].Offset-1 {
				t.Fatalf("%s: Inbox order %d after %d", stage, items[i].Offset, items[i-1].Offset)
			}
		}
		c, err := s.Counts(ctx, "u")
		if err != nil || c.Unread != n || c.Unseen != n {
			t.Fatalf("%s: Counts %+v %v, want %d unread", stage, c, err, n)
		}
	}
	storetest.Fill(t, s, "u", 0, 3)
	check("in the tail", 1, 3, 3)
	if got := s.tail.len(); got != 3 {
		t.Fatalf("tail holds %d, want 3 (the test needs them unapplied)", got)
	}
	if err := s.do(ctx, func() error { return nil }); err != nil { // applies
		t.Fatal(err)
	}
	storetest.Fill(t, s, "u", 3, 2)
	check("tables and tail", 1, 5, 5)
	storetest.Trim(t, s, 2, time.Time{})
	storetest.Fill(t, s, "u", 5, 1)
	check("trimmed, and a new one in the tail", 4, 6, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	check("reopened", 4, 6, 3)
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(frame(logMsg("a", 1)))
	f.Add(frame(logMsg("a", 1), logMsg("bb", 1<<40), herald.Message{User: "c", Offset: 7}))
	f.Add(append(frame(logMsg("a", 1)), frame(logMsg("a", 2))...))
	f.Add(frame(logMsg("a", 1))[:10])
	f.Add([]byte{})
	f.Add(segmentHeader("0123456789abcdef"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = readSegmentHeader(b)
		recs, n, err := decodeFrame(b)
		if err != nil {
			if recs != nil || n != 0 {
				t.Fatalf("error %v with %d records, %d bytes", err, len(recs), n)
			}
			return
		}
		if n < frameHeader || n > len(b) || len(recs) == 0 {
			t.Fatalf("%d records in %d of %d bytes", len(recs), n, len(b))
		}
		// What was decoded encodes to a frame that decodes the same.
		var msgs []herald.Message
		for _, r := range recs {
			if r.user == "" || r.off == 0 || r.off >= 1<<63 {
				t.Fatalf("accepted record %+v", r)
			}
			msgs = append(msgs, herald.Message{User: r.user, Offset: r.off, ID: r.id, Time: time.Unix(0, r.ts), Data: r.data})
		}
		again, m, err := decodeFrame(frame(msgs...))
		if err != nil || len(again) != len(recs) {
			t.Fatalf("re-encoded frame: %d records, %d bytes, %v", len(again), m, err)
		}
		for i := range again {
			a, r := again[i], recs[i]
			if a.user != r.user || a.off != r.off || a.id != r.id || a.ts != r.ts || !bytes.Equal(a.data, r.data) {
				t.Fatalf("record %d: %+v, then %+v", i, r, a)
			}
		}
	})
}
