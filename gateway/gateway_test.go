package gateway

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
)

func TestTokenFrom(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     string
		headers map[string]string
		want    string
	}{
		{"query", "/ws?token=q", nil, "q"},
		{"query wins over header", "/ws?token=q", map[string]string{"Authorization": "Bearer h"}, "q"},
		{"bearer", "/ws", map[string]string{"Authorization": "Bearer h"}, "h"},
		{"bearer any case", "/ws", map[string]string{"Authorization": "bEaReR  h "}, "h"},
		{"basic is not a token", "/ws", map[string]string{"Authorization": "Basic eDp5"}, ""},
		{"subprotocol", "/ws", map[string]string{"Sec-WebSocket-Protocol": "herald.v1, herald.token.s"}, "s"},
		{"none", "/ws", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.url, nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := TokenFrom(r); got != tc.want {
				t.Fatalf("TokenFrom = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConfigRejectsUnknownIO(t *testing.T) {
	iss, _ := token.NewIssuer([]byte("0123456789abcdef0123456789abcdef"))
	if _, err := New(Config{IO: "kqueue"}, testSessions(hub.New(0)), iss, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("unknown I/O strategy accepted")
	}
}
