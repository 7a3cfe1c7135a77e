package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// The dashboard is served by the binary in dev mode, with its dev routes:
// a token for any user, and a test notification that reaches that user's
// connections. Other origins cannot use the dev routes.
func TestDashboardDevMode(t *testing.T) {
	h := startHerald(t, map[string]string{
		"HERALD_ADDR": "127.0.0.1:0", "HERALD_DB": filepath.Join(t.TempDir(), "herald.db"), "HERALD_LOG_LEVEL": "warn",
	})
	if b := waitBanner(t, h); !strings.Contains(b, "/dashboard/#user=demo") {
		t.Fatalf("the banner does not link the dashboard:\n%s", b)
	}
	resp, err := http.Get(h.URL + "/dashboard/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `<script type="module" src="app.js">`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("page: %d %v\n%.300s", resp.StatusCode, resp.Header, page)
	}
	for _, f := range []string{"app.js", "style.css", "herald-client.js"} {
		if status, _ := h.request(t, "GET", "/dashboard/"+f, "", nil); status != 200 {
			t.Errorf("/dashboard/%s: %d", f, status)
		}
	}
	if _, body := h.request(t, "GET", "/dashboard/config.json", "", nil); !strings.Contains(body, `"dev":true`) {
		t.Fatalf("config: %s", body)
	}

	jsonCT := map[string]string{"Content-Type": "application/json"}
	status, body := h.request(t, "POST", "/dashboard/dev/token", `{"user_id":"dash"}`, jsonCT)
	var tok struct{ Token string }
	if status != 200 || json.Unmarshal([]byte(body), &tok) != nil || tok.Token == "" {
		t.Fatalf("dev token: %d %s", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, h.WSURL+"/ws?token="+tok.Token, nil)
	if err != nil {
		t.Fatalf("the dev token does not connect: %v", err)
	}
	defer c.CloseNow()
	for i := 0; ; i++ {
		status, body = h.request(t, "POST", "/dashboard/dev/notify", `{"user_id":"dash","data":{"hello":1}}`, jsonCT)
		if status != 200 {
			t.Fatalf("dev notify: %d %s", status, body)
		}
		if strings.Contains(body, `"connections":1`) {
			break
		}
		if i > 200 {
			t.Fatalf("never delivered: %s", body)
		}
	}
	for { // the first notifies may have gone before the connection registered
		_, got := read(t, c)
		if string(got) == `{"hello":1}` {
			break
		}
	}

	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"another origin", map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, 403},
		{"a form post", map[string]string{"Content-Type": "text/plain"}, 415},
	} {
		if status, body := h.request(t, "POST", "/dashboard/dev/token", `{"user_id":"x"}`, tc.headers); status != tc.status {
			t.Errorf("%s: %d %s", tc.name, status, body)
		}
	}
}

// Outside dev mode the dashboard is off unless configured, and when on it
// has no dev routes: a token is what the page is opened with.
func TestDashboardConfigured(t *testing.T) {
	off := startHerald(t, testEnv(t))
	if status, _ := off.request(t, "GET", "/dashboard/", "", nil); status != 404 {
		t.Fatalf("dashboard served outside dev mode by default: %d", status)
	}
	on := startHerald(t, testEnv(t, "HERALD_DASHBOARD", "on"))
	if status, _ := on.request(t, "GET", "/dashboard/", "", nil); status != 200 {
		t.Fatalf("dashboard=on: %d", status)
	}
	if _, body := on.request(t, "GET", "/dashboard/config.json", "", nil); !strings.Contains(body, `"dev":false`) {
		t.Fatalf("config: %s", body)
	}
	if status, body := on.request(t, "POST", "/dashboard/dev/token", `{"user_id":"x"}`, map[string]string{"Content-Type": "application/json"}); status != 404 || !strings.Contains(body, `"code":"not_found"`) {
		t.Fatalf("dev routes outside dev mode: %d %s", status, body)
	}
}
