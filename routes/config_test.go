package routes

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse([]byte(`
[routes."$connect"]
kind = "lambda"
command = ["./bin/connect", "-v"]
[routes.send]
kind = "lambda"
function = "send"
response = true
[functions.send]
command = ["node", "send.js"]
env = { A = "1" }
`), "toml", "r.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.SelectionExpression != "$request.body.action" || c.Auth != AuthHerald || c.Stage != "local" || c.APIID != "herald" || c.MaxInFlight != 256 {
		t.Fatalf("defaults: %+v", c)
	}
	// An inline command becomes a function named after its route; a
	// relative program path resolves against the file's folder, a bare
	// program name is left to PATH.
	fn, ok := c.Functions["connect"]
	if !ok || c.Routes[KeyConnect].Function != "connect" || fn.Command[0] != filepath.Join(dir, "bin/connect") || fn.Command[1] != "-v" {
		t.Fatalf("inline function: %+v, route %+v", fn, c.Routes[KeyConnect])
	}
	send := c.Functions["send"]
	if send.Command[0] != "node" || send.Dir != dir || time.Duration(send.Timeout) != DefaultFunctionTimeout || send.Concurrency != 1 || send.MemoryMB != 128 {
		t.Fatalf("function defaults: %+v", send)
	}
	if time.Duration(c.Routes["send"].Timeout) != IntegrationTimeout {
		t.Fatalf("route timeout %v", c.Routes["send"].Timeout)
	}
}

func TestParseJSON(t *testing.T) {
	c, err := Parse([]byte(`{"auth":"integration","routes":{"$connect":{"kind":"http","url":"http://127.0.0.1:9/c","timeout":"2s"}}}`), "json", "HERALD_ROUTES", "/x")
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth != AuthIntegration || time.Duration(c.Routes[KeyConnect].Timeout) != 2*time.Second {
		t.Fatalf("%+v", c)
	}
}

// Every mistake is refused with the file's name and what is wrong.
func TestParseErrors(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"unknown key", `stagee = "x"`, "r.toml:1"},
		{"unknown route key", "[routes.x]\nkind = \"http\"\nurl = \"http://a\"\nretries = 3", "r.toml:4"},
		{"bad selection", `selection_expression = "$request.header.x"`, "selection_expression"},
		{"empty path", `selection_expression = "$request.body."`, "empty field name"},
		{"bad auth", `auth = "none"`, `auth: "none"`},
		{"reserved stage", `stage = "ws"`, "Herald's own paths"},
		{"bad stage", `stage = "a/b"`, "stage"},
		{"unknown $ key", "[routes.\"$other\"]\nkind = \"http\"\nurl = \"http://a\"", "route keys starting with $"},
		{"no kind", "[routes.x]\nurl = \"http://a\"", "kind is required"},
		{"bad kind", "[routes.x]\nkind = \"sqs\"", `kind "sqs"`},
		{"bad url", "[routes.x]\nkind = \"http\"\nurl = \"ftp://a\"", "url"},
		{"http with command", "[routes.x]\nkind = \"http\"\nurl = \"http://a\"\ncommand = [\"x\"]", "not a function or command"},
		{"lambda with url", "[routes.x]\nkind = \"lambda\"\nurl = \"http://a\"", "not a url"},
		{"lambda without function", "[routes.x]\nkind = \"lambda\"", "needs function or command"},
		{"undefined function", "[routes.x]\nkind = \"lambda\"\nfunction = \"nope\"", `function "nope" is not defined`},
		{"both", "[routes.x]\nkind = \"lambda\"\nfunction = \"f\"\ncommand = [\"y\"]\n[functions.f]\ncommand = [\"z\"]", "not both"},
		{"inline clashes", "[routes.f]\nkind = \"lambda\"\ncommand = [\"y\"]\n[functions.f]\ncommand = [\"z\"]", "defines already"},
		{"response on $connect", "[routes.\"$connect\"]\nkind = \"http\"\nurl = \"http://a\"\nresponse = true", "no client sees"},
		{"integration auth needs $connect", `auth = "integration"`, "needs a $connect route"},
		{"function without command", "[functions.f]\nenv = {A = \"1\"}", "command is required"},
		{"bad function name", "[functions.\"a b\"]\ncommand = [\"x\"]", "function names"},
		{"timeout too long", "[functions.f]\ncommand = [\"x\"]\ntimeout = \"16m\"", "timeout"},
		{"bad duration", "[functions.f]\ncommand = [\"x\"]\ntimeout = \"soon\"", "duration"},
		{"concurrency", "[functions.f]\ncommand = [\"x\"]\nconcurrency = 1000", "concurrency"},
		{"memory", "[functions.f]\ncommand = [\"x\"]\nmemory_mb = 64", "memory_mb"},
		{"env name", "[functions.f]\ncommand = [\"x\"]\nenv = {\"A=B\" = \"1\"}", "env"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "toml", "r.toml", "/x")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSelectionKey(t *testing.T) {
	cases := []struct{ expr, body, want string }{
		{"$request.body.action", `{"action":"send"}`, "send"},
		{"${request.body.action}", `{"action":"send"}`, "send"},
		{"$request.body.action", ` {"x":1, "action" : "send" } `, "send"},
		{"$request.body.a.b", `{"a":{"b":"deep"}}`, "deep"},
		{"$request.body.a.b", `{"a":"flat"}`, ""},
		{"$request.body.action", `{"action":7}`, "7"},
		{"$request.body.action", `{"action":true}`, "true"},
		{"$request.body.action", `{"action":null}`, ""},
		{"$request.body.action", `{"action":{"x":1}}`, ""},
		{"$request.body.action", `{"action":["x"]}`, ""},
		{"$request.body.action", `{"other":"x"}`, ""},
		{"$request.body.action", `not json`, ""},
		{"$request.body.action", `{"action":"x"`, ""},
		{"$request.body.action", `"action"`, ""},
		{"$request.body.action", ``, ""},
	}
	for _, tc := range cases {
		sel, err := parseSelection(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sel.key([]byte(tc.body)); got != tc.want {
			t.Errorf("%s on %s: %q, want %q", tc.expr, tc.body, got, tc.want)
		}
	}
}

// FuzzSelectionKey: client messages are untrusted bytes; picking their
// route must never panic, and a key it returns is one the message holds.
func FuzzSelectionKey(f *testing.F) {
	for _, s := range []string{`{"action":"send"}`, `{"a":{"b":"c"}}`, `{"action":1e400}`, `[`, "\xff", `{"action":"\u0000"}`} {
		f.Add([]byte(s))
	}
	sel, _ := parseSelection("$request.body.action")
	deep, _ := parseSelection("$request.body.a.b")
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range []selection{sel, deep} {
			// Only text frames are selected on, and they are UTF-8 (the
			// assembler checks); JSON decoding replaces invalid bytes.
			if k := s.key(b); k != "" && utf8.Valid(b) && !strings.Contains(string(b), k) && !strings.Contains(string(b), `\`) {
				t.Fatalf("key %q not in %q", k, b)
			}
		}
	})
}
