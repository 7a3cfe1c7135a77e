package main

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"runtime"

	"github.com/herald-gw/herald/gateway"
	"github.com/herald-gw/herald/session"
)

// adminHandler serves the admin listener (HERALD_ADMIN_ADDR, off by
// default): metrics, profiling and runtime stats, which never go on the
// public listener (profiles reveal the program's internals), and the same /healthz
// and /readyz as the public listener, answered by api (one readiness for
// both, so a probe on either port sees the drain).
func adminHandler(gw *gateway.Gateway, sessions *session.Manager, api, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.Handle("GET /healthz", api)
	mux.Handle("GET /readyz", api)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/stats", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"connections": sessions.Open(),
			"io":          gw.IO(),
			"goroutines":  runtime.NumGoroutine(),
			"heap_alloc":  ms.HeapAlloc,
			"heap_inuse":  ms.HeapInuse,
			"sys":         ms.Sys,
			"num_gc":      ms.NumGC,
		})
	})
	return mux
}
