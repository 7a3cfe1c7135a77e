package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-gw/herald/sqlite/sqlitetest"
)

// The original system's user ids are integers: a token whose sub is the
// JSON number 42 is user "42", the same user the API's "user_id": 42 is.
func TestNumericSubject(t *testing.T) {
	h := startHerald(t, testEnv(t))
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": 42, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, h.WSURL+"/ws?token="+tok, nil)
	if err != nil {
		t.Fatalf("a numeric sub is refused: %v (%v)", err, resp)
	}
	defer c.CloseNow()
	h.waitConns(t, "42", 1)
	if status, body := h.api(t, "POST", "/v1/notify", `{"user_id":42,"json":"{\"n\":1}"}`); status != 200 {
		t.Fatalf("notify: %d %s", status, body)
	}
	if _, got := read(t, c); string(got) != `{"n":1}` {
		t.Fatalf("got %s", got)
	}
}

// Two Heralds on one SQLite file: the second stops at start, saying why,
// instead of running beside the first (whose clients would then miss the
// offsets the second one writes).
func TestSecondHeraldOnOneFileRefused(t *testing.T) {
	env := testEnv(t)
	startHerald(t, env)
	err := run(t.Context(), []string{"herald", "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another Herald process holds the database file") {
		t.Fatalf("second Herald on %s: %v", env["HERALD_DB"], err)
	}
}

// A file with damaged pages in the middle does not start (it used to start,
// report ready and acknowledge writes it could not read back); the error
// says what is wrong and how to recover.
func TestCorruptStoreRefused(t *testing.T) {
	env := testEnv(t, "HERALD_RETENTION_COUNT", "-1")
	h := startHerald(t, env)
	// Enough history for the file to have pages well past the first few.
	var batch strings.Builder
	batch.WriteString(`{"messages":[`)
	for i := range 1000 {
		if i > 0 {
			batch.WriteString(",")
		}
		batch.WriteString(`{"user":"u` + string(rune('a'+i%26)) + `","data":{"pad":"` + strings.Repeat("x", 200) + `"}}`)
	}
	batch.WriteString(`]}`)
	for range 4 {
		if status, body := h.api(t, "POST", "/v1/batch", batch.String()); status != 200 {
			t.Fatalf("batch: %d %.200s", status, body)
		}
	}
	h.stop()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil // for startHerald's cleanup

	db := env["HERALD_DB"]
	sqlitetest.CorruptPages(t, db, 4)

	err := run(t.Context(), []string{"herald", "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("Herald started on a damaged file")
	}
	for _, want := range []string{filepath.Base(db), "corrupt", "backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
}

// herald db new-epoch: after a restore, resuming clients get a reset
// instead of skipping the offsets handed out again; refused while Herald
// runs on the file.
func TestDBNewEpoch(t *testing.T) {
	env := testEnv(t)
	h := startHerald(t, env)
	_, before := h.publish(t, "u", 1)
	if before == "" {
		before = h.epoch(t, "u")
	}
	getenv := func(k string) string { return env[k] }
	if err := run(t.Context(), []string{"herald", "db", "new-epoch"}, getenv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "another Herald process") {
		t.Fatalf("new-epoch while Herald runs: %v", err)
	}
	h.stop()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil
	var out strings.Builder
	if err := run(t.Context(), []string{"herald", "db", "new-epoch", "-db", env["HERALD_DB"]}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), before+" → ") {
		t.Fatalf("output %q does not name the old epoch %s", out.String(), before)
	}
	h2 := startHerald(t, env)
	if after := h2.epoch(t, "u"); after == before || after == "" {
		t.Fatalf("epoch after new-epoch: %q (before %q)", after, before)
	}
}
