package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCentrifugoConfig(t *testing.T) {
	s := centrifugoSettings{Port: 18123, Secret: "s3cret", APIKey: "k3y", HistorySize: 1000, HistoryTTL: "168h"}
	b, err := centrifugoConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		HTTPServer struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"http_server"`
		Log struct {
			Level string `json:"level"`
		} `json:"log"`
		Client struct {
			Token struct {
				HMAC string `json:"hmac_secret_key"`
			} `json:"token"`
			AllowedOrigins []string `json:"allowed_origins"`
			Personal       struct {
				Enabled   bool   `json:"enabled"`
				Namespace string `json:"personal_channel_namespace"`
			} `json:"subscribe_to_user_personal_channel"`
		} `json:"client"`
		Channel struct {
			Namespaces []struct {
				Name          string `json:"name"`
				HistorySize   int    `json:"history_size"`
				HistoryTTL    string `json:"history_ttl"`
				ForceRecovery bool   `json:"force_recovery"`
			} `json:"namespaces"`
		} `json:"channel"`
		HTTPAPI struct {
			Key string `json:"key"`
		} `json:"http_api"`
		Health struct {
			Enabled bool `json:"enabled"`
		} `json:"health"`
		UsageStats struct {
			Disabled bool `json:"disabled"`
		} `json:"usage_stats"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	ns := c.Channel.Namespaces
	switch {
	case c.HTTPServer.Address != "127.0.0.1" || c.HTTPServer.Port != 18123:
		t.Errorf("listens on %s:%d", c.HTTPServer.Address, c.HTTPServer.Port)
	case c.Client.Token.HMAC != "s3cret" || c.HTTPAPI.Key != "k3y":
		t.Errorf("secret %q key %q", c.Client.Token.HMAC, c.HTTPAPI.Key)
	case !c.Client.Personal.Enabled || c.Client.Personal.Namespace != centrifugoPersonalNS:
		t.Errorf("personal channel %+v", c.Client.Personal)
	case len(ns) != 1 || ns[0].Name != centrifugoPersonalNS || ns[0].HistorySize != 1000 || ns[0].HistoryTTL != "168h" || !ns[0].ForceRecovery:
		t.Errorf("namespaces %+v", ns)
	case c.Log.Level != "error" || !c.Health.Enabled || !c.UsageStats.Disabled || len(c.Client.AllowedOrigins) == 0:
		t.Errorf("log %q health %v usage stats disabled %v origins %v", c.Log.Level, c.Health.Enabled, c.UsageStats.Disabled, c.Client.AllowedOrigins)
	}
	// The summary recorded in run.txt keeps the secrets out.
	if sum := centrifugoConfigSummary(s); strings.Contains(sum, "s3cret") || strings.Contains(sum, "k3y") || !strings.Contains(sum, "history_size 1000") {
		t.Errorf("summary %q", sum)
	}
	if _, err := centrifugoConfig(centrifugoSettings{Port: 1}); err == nil {
		t.Error("a config without secrets was generated")
	}
}

// TestCentrifugoConfigAccepted has the real binary check the generated
// file, when the binary is there.
func TestCentrifugoConfigAccepted(t *testing.T) {
	bin := peerBinForTest(t)
	s, err := newCentrifugoSettings()
	if err != nil {
		t.Fatal(err)
	}
	b, err := centrifugoConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "checkconfig", "--config", path).CombinedOutput(); err != nil {
		t.Fatalf("centrifugo checkconfig: %v\n%s", err, out)
	}
}

func TestMintCentrifugoToken(t *testing.T) {
	secret := []byte("secret-for-the-peer")
	exp := time.Unix(2000000000, 0)
	tok, err := mintCentrifugoToken(secret, "load-ab-7", exp, []string{centrifugoBroadcast})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	enc := base64.RawURLEncoding
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if got, _ := enc.DecodeString(parts[2]); !hmac.Equal(got, mac.Sum(nil)) {
		t.Fatal("signature does not verify with the secret")
	}
	var head struct{ Alg, Typ string }
	var claims struct {
		Sub      string   `json:"sub"`
		Exp      int64    `json:"exp"`
		Channels []string `json:"channels"`
	}
	h, _ := enc.DecodeString(parts[0])
	p, _ := enc.DecodeString(parts[1])
	if err := json.Unmarshal(h, &head); err != nil || head.Alg != "HS256" {
		t.Fatalf("header %s: %v", h, err)
	}
	if err := json.Unmarshal(p, &claims); err != nil || claims.Sub != "load-ab-7" || claims.Exp != exp.Unix() || !slices.Equal(claims.Channels, []string{"broadcast"}) {
		t.Fatalf("claims %s: %v", p, err)
	}
	// The same reading the baseline and -token-file use.
	if sub, err := tokenSubject(tok); err != nil || sub != "load-ab-7" {
		t.Fatalf("tokenSubject = %q, %v", sub, err)
	}
	if _, err := mintCentrifugoToken(nil, "u", exp, nil); err == nil {
		t.Fatal("minted without a secret")
	}
}

func TestParseCentrifugoLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want cfMessage
	}{
		{`{}`, cfMessage{kind: cfPing}},
		{" {} \r", cfMessage{kind: cfPing}},
		{`{"id":1,"connect":{"client":"c1","version":"6.9.1","subs":{"personal:#u":{"recoverable":true,"epoch":"ab","offset":0}},"ping":25,"pong":true}}`, cfMessage{kind: cfReply, id: 1}},
		{`{"id":1,"error":{"code":109,"message":"token expired"}}`, cfMessage{kind: cfReply, id: 1, err: []byte(`{"code":109,"message":"token expired"}}`)}},
		{`{"push":{"channel":"personal:#load-1","pub":{"data":{"t":1700000000000000000,"seq":42},"offset":7}}}`, cfMessage{kind: cfPub, t: 1700000000000000000, seq: 42}},
		{`{"push":{"channel":"broadcast","pub":{"data":{"t":5,"seq":1}}}}`, cfMessage{kind: cfPub, t: 5, seq: 1}},
		// Not ours: data without a timestamp, a timestamp outside data.
		{`{"push":{"channel":"x","pub":{"data":{"other":1},"t":5}}}`, cfMessage{}},
		{`{"push":{"channel":"x","pub":{"data":"text"}}}`, cfMessage{}},
		{`{"push":{"channel":"x","join":{"info":{"user":"u"}}}}`, cfMessage{}},
		{`{"id":0}`, cfMessage{}},
		{``, cfMessage{}},
		{`[]`, cfMessage{}},
		{`{"push":`, cfMessage{}},
		{`{"id":`, cfMessage{}},
	} {
		got := parseCentrifugoLine([]byte(tc.in))
		if got.kind != tc.want.kind || got.id != tc.want.id || got.t != tc.want.t || got.seq != tc.want.seq || !bytes.Equal(got.err, tc.want.err) {
			t.Errorf("%q: got %+v (err %s), want %+v", tc.in, got, got.err, tc.want)
		}
	}
}

// FuzzParseCentrifugoLine feeds the push parser untrusted bytes: it must
// never panic, and what it calls ours must be a well-formed number pair.
func FuzzParseCentrifugoLine(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"id":1,"connect":{"client":"c"}}`,
		`{"id":1,"error":{"code":109,"message":"token expired"}}`,
		`{"push":{"channel":"personal:#u","pub":{"data":{"t":1,"seq":2},"offset":3}}}`,
		`{"push":{"pub":{"data":{`,
		`{"id":99999999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := parseCentrifugoLine(b)
		switch m.kind {
		case cfPub:
			if m.t < 0 || m.seq < 0 {
				t.Fatalf("negative payload numbers %+v", m)
			}
		case cfReply:
			if m.id <= 0 || len(m.err) > 200 {
				t.Fatalf("reply %+v", m)
			}
		}
	})
}

// TestCentrifugoAPI checks the requests Centrifugo's API gets and that a
// 200 carrying an error is one.
func TestCentrifugoAPI(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "key" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.URL.Path+" "+string(body))
		switch {
		case r.URL.Path == "/api/publish" && strings.Contains(string(body), `#nobody"`):
			io.WriteString(w, `{"error":{"code":102,"message":"unknown channel"}}`)
		case r.URL.Path == "/api/publish":
			io.WriteString(w, `{"result":{"offset":1,"epoch":"e"}}`)
		case r.URL.Path == "/api/batch":
			io.WriteString(w, `{"replies":[{"publish":{}},{"error":{"code":103,"message":"permission denied"}}]}`)
		}
	}))
	defer srv.Close()
	conns := map[string]int{"u1": 2, "u2": 1}
	api := newCentrifugoAPI(srv.URL, "key", 4, func(u string) int { return conns[u] })
	ctx := context.Background()

	if n, err := api.broadcast(ctx, []byte(`{"t":1,"seq":1}`)); err != nil || n != -1 {
		t.Fatalf("broadcast = %d, %v", n, err)
	}
	if n, err := api.sendUser(ctx, "u1", []byte(`{"t":1,"seq":2}`)); err != nil || n != 2 {
		t.Fatalf("sendUser = %d, %v", n, err)
	}
	if _, err := api.sendUser(ctx, "nobody", []byte(`{"t":1,"seq":3}`)); err == nil || !strings.Contains(err.Error(), "unknown channel") {
		t.Fatalf("an error in a 200 reply was not one: %v", err)
	}
	items, err := api.sendMessages(ctx, []notifyMsg{{seq: 1, t: 10}, {seq: 2, t: 11}}, []string{"u1", "u2"})
	if err != nil || len(items) != 2 || items[0].Error != nil || items[0].Connections != 2 || items[1].Error == nil || items[1].Error.Code != "103" {
		t.Fatalf("sendMessages = %+v, %v", items, err)
	}
	want := []string{
		`/api/publish {"channel":"broadcast","data":{"t":1,"seq":1}}`,
		`/api/publish {"channel":"personal:#u1","data":{"t":1,"seq":2}}`,
		`/api/publish {"channel":"personal:#nobody","data":{"t":1,"seq":3}}`,
		`/api/batch {"commands":[{"publish":{"channel":"personal:#u1","data":{"t":10,"seq":1}}},{"publish":{"channel":"personal:#u2","data":{"t":11,"seq":2}}}]}`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCSVColumnsPeer(t *testing.T) {
	lat := &latencyResult{P50: 1, P99: 2, Max: 3}
	cpu := &cpuResult{MsPer1000Msgs: 40}
	herald := &result{Scenario: "notify", Latency: lat, Notify: &notifyResult{Rate: 100, ServerCPU: cpu}}
	peer := &result{Scenario: "notify", Latency: &latencyResult{P50: 4, P99: 5, Max: 6}, Notify: &notifyResult{Rate: 99, ServerCPU: &cpuResult{MsPer1000Msgs: 80}}, Errors: 1}
	herald.Peer, herald.VsPeer = peer, compare(herald, peer)
	header, row := csvColumns(herald)
	if len(header) != len(row) {
		t.Fatalf("%d columns, %d values", len(header), len(row))
	}
	col := func(name string) string {
		k := slices.Index(header, name)
		if k < 0 {
			t.Fatalf("no column %s in %v", name, header)
		}
		return row[k]
	}
	for name, want := range map[string]string{
		"peer_rate": "99.00", "peer_p50_ms": "4.00", "peer_p99_ms": "5.00", "peer_max_ms": "6.00",
		"peer_cpu_ms_per_1k_msgs": "80.00", "ratio_peer_cpu_per_1k_msgs": "0.500", "ratio_peer_p99_ms": "0.400",
		"peer_errors": "1", "baseline_rate": "", "baseline_errors": "",
		// The existing columns are still there, with Herald's figures.
		"p99_ms": "2.00", "server_cpu_ms_per_1k_msgs": "40.00", "baseline_p99_ms": "", "ratio_cpu_per_1k_msgs": "",
	} {
		if got := col(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// Every scenario -peer measures has peer columns next to the
	// baseline's, empty without a peer.
	for _, sc := range []string{"idle", "fanout", "notify"} {
		header, row := csvColumns(&result{Scenario: sc})
		n := 0
		for k, h := range header {
			if strings.HasPrefix(h, "peer_") || strings.HasPrefix(h, "ratio_peer_") {
				n++
				if row[k] != "" {
					t.Errorf("%s: %s = %q without a peer", sc, h, row[k])
				}
			}
		}
		if n < 3 {
			t.Errorf("%s: %d peer columns in %v", sc, n, header)
		}
	}
}

func TestWriteTable(t *testing.T) {
	res := &result{Scenario: "idle", Connect: connectResult{Established: 1000},
		Server:   serverResult{RSSAfterKB: 20000, Conns: 1000, PerConnKB: 2.5},
		Baseline: &result{Scenario: "idle", Server: serverResult{RSSAfterKB: 15000, Conns: 1000, PerConnKB: 1.75}},
		Peer:     &result{Scenario: "idle", Server: serverResult{RSSAfterKB: 90000, Conns: 1000, PerConnKB: 45.5}}}
	header, row := csvColumns(res)
	noPeer := &result{Scenario: "idle", Connect: connectResult{Established: 2000}, Server: serverResult{RSSAfterKB: 24000, Conns: 2000, PerConnKB: 2.25}}
	_, row2 := csvColumns(noPeer)
	var out bytes.Buffer
	if err := writeTable(&out, "memory.csv", [][]string{header, row, row2}); err != nil {
		t.Fatal(err)
	}
	want := `**memory.csv** (idle)

| connections | server | RSS per connection (KB) | RSS holding them (KB) | errors |
|---:|---|---:|---:|---:|
| 1000 | Herald | 2.50 | 20,000 | 0 |
| 1000 | raw baseline | 1.75 | 15,000 | 0 |
| 1000 | Centrifugo | 45.50 | 90,000 | 0 |
| 2000 | Herald | 2.25 | 24,000 | 0 |
`
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := writeTable(io.Discard, "churn.csv", [][]string{{"conns", "closed"}}); err == nil {
		t.Fatal("a churn file made a table")
	}
}

// peerBinForTest returns the Centrifugo binary to test against: the one
// -peer would use from the cache (or $HERALD_PEER_BIN). Without it the
// test is skipped — installing it takes minutes, which a clean CI machine
// must not pay — unless HERALD_REQUIRE_PEER=1.
func peerBinForTest(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HERALD_PEER_BIN")
	if bin == "" {
		var err error
		if bin, err = defaultPeerBin(); err != nil {
			t.Skipf("no cache folder: %v", err)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		msg := "Centrifugo " + centrifugoVersion + " is not installed at " + bin + ` (run "herald-load -peer-info centrifugo" once to install it, or set HERALD_PEER_BIN)`
		if os.Getenv("HERALD_REQUIRE_PEER") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// TestPeerEndToEnd runs a tiny idle, notify (one POST per message and
// batched) and fanout with -peer centrifugo against the real Centrifugo,
// checking counts, never timings. The target is an in-process raw
// baseline: what is tested here is the peer's run, and Herald's runs are
// TestEndToEnd's.
func TestPeerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Centrifugo")
	}
	bin := peerBinForTest(t)
	target := startTestBaseline(t)
	env := map[string]string{"HERALD_TOKEN_SECRET": e2eSecret, "HERALD_API_KEY": e2eAPIKey, "HERALD_URL": target}
	getenv := func(k string) string { return env[k] }

	t.Run("idle", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "idle", "-conns", "100", "-hold", "1s", "-peer", "centrifugo", "-peer-bin", bin)
		p := res.Peer
		if p == nil || p.Connect.Established != 100 || p.Errors != 0 || p.Server.Conns != 100 || p.Server.PID == os.Getpid() || p.Server.RSSAfterKB <= 0 {
			t.Fatalf("peer %+v", p)
		}
		if !strings.Contains(p.Software, "Centrifugo "+centrifugoVersion) {
			t.Fatalf("software %q", p.Software)
		}
		checkGone(t, p.Server.PID)
	})
	for _, batch := range []string{"1", "20"} {
		t.Run("notify batch "+batch, func(t *testing.T) {
			csvPath := filepath.Join(t.TempDir(), "notify.csv")
			res := runLoad(t, getenv, "-scenario", "notify", "-conns", "40", "-users", "20", "-msg-rate", "200", "-duration", "1s",
				"-batch", batch, "-batch-wait", "20ms", "-peer", "centrifugo", "-peer-bin", bin, "-csv", csvPath)
			p := res.Peer
			if p == nil || p.Notify == nil {
				t.Fatalf("no peer run: %+v", res)
			}
			n := p.Notify
			// Every message goes to the user's two connections.
			if n.Sent == 0 || n.APIErrors != 0 || n.Expected != 2*n.Sent || n.Delivered != n.Expected || p.Errors != 0 || p.Latency == nil || p.Latency.Count != uint64(n.Delivered) {
				t.Fatalf("peer notify %+v errors %d %v", n, p.Errors, p.ErrorSamples)
			}
			if n.ServerCPU == nil || n.ServerCPU.PID != p.Server.PID {
				t.Fatalf("peer cpu %+v %s", n.ServerCPU, n.ServerCPUNote)
			}
			rows := readCSVFile(t, csvPath)
			if csvField(t, rows, "peer_p99_ms") == "" || csvField(t, rows, "peer_errors") != "0" {
				t.Fatalf("csv %v", rows)
			}
			checkGone(t, p.Server.PID)
		})
	}
	t.Run("fanout", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "fanout", "-conns", "100", "-messages", "2", "-interval", "50ms", "-peer", "centrifugo", "-peer-bin", bin)
		p := res.Peer
		if p == nil || p.Fanout == nil || p.Fanout.Delivered != 200 || p.Errors != 0 || res.VsPeer == nil || res.VsPeer.DeliveriesPerSec == 0 {
			t.Fatalf("peer %+v", p)
		}
	})
}

// TestEnsureCentrifugoFails checks that a peer that cannot be had says
// why: a -peer-bin that is not there, and an install that cannot fetch
// the module (the proxy turned off, an empty module cache).
func TestEnsureCentrifugoFails(t *testing.T) {
	if _, err := ensureCentrifugo(context.Background(), filepath.Join(t.TempDir(), "nothing"), io.Discard); err == nil || !strings.Contains(err.Error(), "-peer-bin") {
		t.Fatalf("missing -peer-bin: %v", err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	if runtime.GOOS != "linux" {
		// Elsewhere os.UserCacheDir hangs off HOME, and HOME must stay: see below.
		t.Skip("the empty user cache is made with XDG_CACHE_HOME, which only Linux reads")
	}
	// HOME stays the real one: the go command's telemetry writes under
	// HOME/.config from a child that outlives it, so a temporary HOME
	// could still be written to while the test removes it.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOMODCACHE", t.TempDir())
	var progress bytes.Buffer
	_, err := ensureCentrifugo(context.Background(), "", &progress)
	if err == nil || !strings.Contains(err.Error(), "did not build") || !strings.Contains(err.Error(), "GOPROXY=off") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(progress.String(), "installing Centrifugo "+centrifugoVersion) {
		t.Fatalf("progress %q", progress.String())
	}
}
