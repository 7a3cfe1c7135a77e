package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// Every bad request gets its documented status and code in the one error
// shape {"error":{"code","message"}}, and nothing is delivered.
func TestServerAPIErrors(t *testing.T) {
	h := startHerald(t, testEnv(t))
	c := h.dial(t, "42")
	h.waitConns(t, "42", 1)

	big := `"` + strings.Repeat("x", 128<<10) + `"`
	bigJSON, _ := json.Marshal(map[string]any{"user_id": 42, "json": strings.Repeat("x", 128<<10+1)})
	jsonCT := map[string]string{"Authorization": "Bearer " + testAPIKey, "Content-Type": "application/json"}
	for _, tc := range []struct {
		name, method, path, body string
		headers                  map[string]string
		status                   int
		code                     string
	}{
		{"malformed JSON", "POST", "/v1/notify", `{"user_id":42,`, jsonCT, 400, "invalid_json"},
		{"empty body", "POST", "/v1/notify", ``, jsonCT, 400, "invalid_json"},
		{"user_id wrong type", "POST", "/v1/notify", `{"user_id":true,"json":"{}"}`, jsonCT, 400, "invalid_json"},
		{"user_id fraction", "POST", "/v1/notify", `{"user_id":4.2,"json":"{}"}`, jsonCT, 400, "invalid_json"},
		{"json wrong type", "POST", "/v1/notify", `{"user_id":42,"json":{"a":1}}`, jsonCT, 400, "invalid_json"},
		{"missing user", "POST", "/v1/notify", `{"json":"{}"}`, jsonCT, 400, "invalid_request"},
		{"empty user", "POST", "/v1/notify", `{"user_id":"","json":"{}"}`, jsonCT, 400, "invalid_request"},
		{"missing json", "POST", "/v1/notify", `{"user_id":42}`, jsonCT, 400, "invalid_request"},
		{"oversized notify", "POST", "/v1/notify", string(bigJSON), jsonCT, 413, "payload_too_large"},
		{"oversized message", "POST", "/v1/users/42/messages", big[:len(big)-1] + `xx"`, jsonCT, 413, "payload_too_large"},
		{"huge body", "POST", "/v1/users/42/messages", `"` + strings.Repeat("x", 1<<20) + `"`, jsonCT, 413, "payload_too_large"},
		{"message not JSON", "POST", "/v1/users/42/messages", `hello`, jsonCT, 400, "invalid_json"},
		{"blank user in path", "POST", "/v1/users/%20/messages", `{}`, jsonCT, 400, "invalid_request"},
		{"multi without users", "POST", "/v1/messages", `{"users":[],"data":1}`, jsonCT, 400, "invalid_request"},
		{"multi empty user", "POST", "/v1/messages", `{"users":["a",""],"data":1}`, jsonCT, 400, "invalid_request"},
		{"multi users wrong type", "POST", "/v1/messages", `{"users":"a","data":1}`, jsonCT, 400, "invalid_json"},
		{"multi without data", "POST", "/v1/messages", `{"users":["a"]}`, jsonCT, 400, "invalid_request"},
		{"broadcast without data", "POST", "/v1/broadcast", `{}`, jsonCT, 400, "invalid_request"},
		{"wrong content type", "POST", "/v1/notify", `user_id=42`, map[string]string{"Authorization": "Bearer " + testAPIKey, "Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"no API key", "POST", "/v1/notify", `{"user_id":42,"json":"{}"}`, map[string]string{"Content-Type": "application/json"}, 401, "unauthorized"},
		{"wrong API key", "POST", "/v1/notify", `{"user_id":42,"json":"{}"}`, map[string]string{"Authorization": "Bearer nope", "Content-Type": "application/json"}, 401, "unauthorized"},
		{"client token is not an API key", "GET", "/v1/users/42/connections", ``, map[string]string{"Authorization": "Bearer " + h.token(t, "42")}, 401, "unauthorized"},
		{"wrong method", "GET", "/v1/notify", ``, jsonCT, 405, "method_not_allowed"},
		{"wrong method on user route", "PUT", "/v1/users/42/connections", ``, jsonCT, 405, "method_not_allowed"},
		{"unknown route", "GET", "/v2/nothing", ``, jsonCT, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := h.request(t, tc.method, tc.path, tc.body, tc.headers)
			if status != tc.status {
				t.Fatalf("status %d, want %d; body %s", status, tc.status, body)
			}
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Fatalf("body %q, want code %q", body, tc.code)
			}
		})
	}
	// Nothing of the above reached the client: the next frame is this one.
	h.api(t, "POST", "/v1/users/42/messages", `"after"`)
	if _, got := read(t, c); string(got) != `"after"` {
		t.Fatalf("client got %q", got)
	}
}

func TestMaxPayloadAccepted(t *testing.T) {
	h := startHerald(t, testEnv(t))
	c := h.dial(t, "42")
	h.waitConns(t, "42", 1)
	payload := `"` + strings.Repeat("y", 128<<10-2) + `"` // exactly 128 KiB
	if status, body := h.api(t, "POST", "/v1/users/42/messages", payload); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if _, got := read(t, c); string(got) != payload {
		t.Fatalf("got %d bytes", len(got))
	}
}

func TestHealth(t *testing.T) {
	h := startHerald(t, testEnv(t))
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _ := h.request(t, "GET", p, "", nil); status != 200 {
			t.Fatalf("%s: %d", p, status)
		}
	}
}
