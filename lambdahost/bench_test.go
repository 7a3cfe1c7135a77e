package lambdahost

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkInvokeWarm is one invocation of a warm Go function (the test
// program echoing its payload) through the Runtime API: the cost Herald
// adds to every Lambda integration and Invoke call. Run with
//
//	go test -run '^$' -bench Invoke -benchtime 2000x ./lambdahost/
func BenchmarkInvokeWarm(b *testing.B) {
	h, err := New(Options{Log: slog.New(slog.DiscardHandler)}, Function{Name: "fn", Command: []string{fnBinary}, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	payload := []byte(`{"do":"echo","data":"hello"}`)
	ctx := context.Background()
	if _, err := h.Invoke(ctx, "fn", payload); err != nil { // the cold start
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := h.Invoke(ctx, "fn", payload)
		if err != nil || res.Error != "" {
			b.Fatalf("%v %s", err, res.Payload)
		}
	}
}

// BenchmarkInvokeCold is a cold start: a new process, from fork to its
// first response.
func BenchmarkInvokeCold(b *testing.B) {
	payload := []byte(`{"do":"echo"}`)
	ctx := context.Background()
	for b.Loop() {
		h, err := New(Options{Log: slog.New(slog.DiscardHandler)}, Function{Name: "fn", Command: []string{fnBinary}, Timeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		res, err := h.Invoke(ctx, "fn", payload)
		if err != nil || res.Error != "" {
			b.Fatalf("%v %s", err, res.Payload)
		}
		_ = h.Close(ctx)
	}
}
