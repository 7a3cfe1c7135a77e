package api

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/stream"
)

// BenchmarkBatch20 is the API's own share of a POST /v1/batch of 20
// messages to 20 users (no one connected, memory store): reading, decoding
// and validating the request, appending, and encoding the reply. The load
// tool's notify scenario with -batch measures the whole path.
func BenchmarkBatch20(b *testing.B) {
	st := memory.New()
	b.Cleanup(func() { st.Close() })
	h := hub.New(16)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(Config{APIKey: "k"}, log, Deps{Hub: h, Stream: stream.New(st, h, memory.NewBus().Node(), log)}).Handler()
	var body bytes.Buffer
	body.WriteString(`{"messages":[`)
	for i := range 20 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"user":"load-user-%d","data":{"t":1764000000000000000,"seq":%d}}`, i*7919%10000, i)
	}
	body.WriteString(`]}`)
	payload := body.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer k")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20), "ns/msg")
}
