package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-gw/herald/api"
)

// A setting of 0 (or a negative one) either means what docs/api.md says
// or is refused with the variable's name: never a silent default.
func TestConfigZeroAndNegative(t *testing.T) {
	cases := []struct {
		name, value string
		wantErr     bool
	}{
		{"HERALD_MAX_CONNS", "0", false}, // unbounded
		{"HERALD_MAX_CONNS", "-1", true},
		{"HERALD_MAX_CONNS_PER_USER", "0", false}, // unbounded
		{"HERALD_MAX_CONNS_PER_USER", "-5", true},
		{"HERALD_DRAIN_TIMEOUT", "0s", false}, // at once
		{"HERALD_DRAIN_TIMEOUT", "-1s", true},
		{"HERALD_RETENTION_COUNT", "-1", false}, // no count limit
		{"HERALD_RETENTION_COUNT", "0", true},
		{"HERALD_RETENTION_COUNT", "-2", true},
		{"HERALD_RETENTION_AGE", "-1s", false}, // no age limit
		{"HERALD_RETENTION_AGE", "0s", true},
		{"HERALD_RETENTION_AGE", "-5m", true},
		{"HERALD_PING_INTERVAL", "0s", true},
		{"HERALD_WRITE_TIMEOUT", "0s", true},
		{"HERALD_HANDSHAKE_TIMEOUT", "-1s", true},
		{"HERALD_RETENTION_INTERVAL", "0s", true},
		{"HERALD_SEND_QUEUE_FRAMES", "0", true},
		{"HERALD_SEND_QUEUE_BYTES", "0", true},
		{"HERALD_MAX_CLIENT_MESSAGE", "0", true},
		{"HERALD_PING_INTERVAL", "1s", false},
		{"HERALD_CLIENT_MESSAGE_RATE", "0", false}, // unlimited
		{"HERALD_CLIENT_MESSAGE_RATE", "-1", true},
		{"HERALD_CONNECT_RATE", "0", false}, // unlimited
		{"HERALD_CONNECT_BURST", "-1", true},
		{"HERALD_CONNECT_BURST", "0", false}, // one second's worth
		{"HERALD_JWKS_REFRESH", "1s", true},
		{"HERALD_KEY_RATE", "-0.5", true},
		{"HERALD_MAX_HEADER_BYTES", "100", true},
		{"HERALD_TOKEN_LEEWAY", "1h", true},
		{"HERALD_LOG_LEVEL", "loud", true},
		{"HERALD_ENV", "prod", true},
		{"HERALD_IO", "threads", true},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			env := map[string]string{tc.name: tc.value}
			_, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
			switch {
			case tc.wantErr && err == nil:
				t.Fatal("accepted")
			case !tc.wantErr && err != nil:
				t.Fatalf("refused: %v", err)
			case err != nil && !strings.Contains(err.Error(), tc.name):
				t.Fatalf("error %q does not name %s", err, tc.name)
			}
		})
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every mistake in a config file is refused with the file, the line and
// the key, and nothing in a file is ever silently ignored.
func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string // each must appear in the error
	}{
		{"unknown key", "addr = \"localhost:1\"\nmax_conn = 5\n", []string{":2: max_conn", "unknown setting", "did you mean max_conns"}},
		{"out of range", "\n\nmax_conns = -3\n", []string{":3: max_conns", "must not be negative"}},
		{"zero without meaning", "ping_interval = \"0s\"\n", []string{":1: ping_interval", "must be positive"}},
		{"wrong type", "max_conns = \"10\"\n", []string{":1: max_conns", "want an integer, got a string"}},
		{"bad duration", "write_timeout = \"ten seconds\"\n", []string{":1: write_timeout", "duration"}},
		{"duration as integer", "write_timeout = 10\n", []string{":1: write_timeout", "got a integer"}},
		{"secret in file", "# comment\ntoken_secret = \"abc\"\n", []string{":2: token_secret", "token_secret_file"}},
		{"unknown table", "[limits]\nmax_conns = 1\n", []string{":1:", "unknown table [limits]"}},
		{"dotted key", "limits.max_conns = 1\n", []string{":1: limits.max_conns", "unknown setting"}},
		{"twice", "addr = \"a:1\"\n\naddr = \"b:2\"\n", []string{":3: addr", "set twice", "line 1"}},
		{"syntax", "addr = \"unterminated\n", []string{":1:"}},
		{"float as int", "max_conns = 1.5\n", []string{":1: max_conns", "want an integer"}},
		{"inline table", "addr = {host = \"x\"}\n", []string{":1: addr"}},
		{"api key without secret", "[[api_keys]]\nname = \"b\"\nscopes = [\"publish\"]\n", []string{":2: api_keys[0]", "secret_env or secret_file"}},
		{"api key secret inline", "[[api_keys]]\nname = \"b\"\nsecret = \"s\"\n", []string{":3: api_keys[0].secret", "not written in config files"}},
		{"api key unknown field", "[[api_keys]]\nname = \"b\"\nscope = [\"publish\"]\n", []string{":3: api_keys[0].scope", "unknown key"}},
		{"api key bad scope", "[[api_keys]]\nname = \"b\"\nscopes = [\"write\"]\nsecret_env = \"HERALD_TEST_KEY_B\"\n", []string{`"b"`, `unknown scope "write"`}},
		{"api_keys as table", "[api_keys]\nname = \"b\"\n", []string{":1:", "[[api_keys]]"}},
	}
	t.Setenv("HERALD_TEST_KEY_B", "secret-b")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "herald.toml", tc.text)
			_, err := parseConfig([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.text)
			}
			for _, w := range append(tc.want, "herald.toml") {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Precedence: default < file < environment < flag; and the file's values,
// API keys and *_file secrets arrive where they should.
func TestConfigPrecedence(t *testing.T) {
	secretFile := writeFile(t, "token", "  file-secret-0123456789abcdef0123456789\n")
	t.Setenv("HERALD_TEST_KEY_OPS", "ops-secret")
	path := writeFile(t, "herald.toml", `
addr = "127.0.0.1:7001"
max_conns = 10
write_timeout = "3s"
allowed_origins = ["https://app.example.com", "https://admin.example.com"]
token_secret_file = "`+secretFile+`"
client_message_rate = 2.5

[[api_keys]]
name = "ops"
scopes = ["connections", "read"]
secret_env = "HERALD_TEST_KEY_OPS"
`)
	env := map[string]string{"HERALD_CONFIG": path, "HERALD_MAX_CONNS": "20", "HERALD_WRITE_TIMEOUT": "4s"}
	c, err := parseConfig([]string{"-write-timeout", "5s"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"addr from file", c.Addr, "127.0.0.1:7001"},
		{"max_conns: env over file", c.MaxConns, 20},
		{"write_timeout: flag over env", c.WriteTimeout, 5 * time.Second},
		{"default kept", c.PingInterval, 25 * time.Second},
		{"list", strings.Join(c.origins(), " "), "https://app.example.com https://admin.example.com"},
		{"secret file trimmed", c.TokenSecret, "file-secret-0123456789abcdef0123456789"},
		{"float", c.ClientMsgRate, 2.5},
		{"api key", len(c.APIKeys), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if k := c.APIKeys[0]; k.Name != "ops" || k.Secret != "ops-secret" || fmt.Sprint(k.Scopes) != "[connections read]" {
		t.Errorf("api key %+v", k)
	}
	if c.sources["addr"] != path+":2: addr" {
		t.Errorf("source of addr: %q", c.sources["addr"])
	}
}

func TestAPIKeysVariable(t *testing.T) {
	keys, err := api.ParseAPIKeys("backend:publish+read:s3cr:et, ops:admin:x")
	if err != nil || len(keys) != 2 || keys[0].Secret != "s3cr:et" || keys[1].Scopes[0] != "admin" {
		t.Fatalf("%+v %v", keys, err)
	}
	_, err = api.ParseAPIKeys("backend:publish:topsecretvalue,broken")
	if err == nil || strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "broken") {
		t.Fatalf("error %v (must not quote entries: they hold secrets)", err)
	}
}

// The example is a complete, valid config: every setting appears, and
// "herald config example | herald config check -" passes.
func TestConfigExampleChecks(t *testing.T) {
	var ex bytes.Buffer
	writeExample(&ex)
	for _, s := range settings() {
		if !s.secret && !strings.Contains(ex.String(), "\n"+s.name+" = ") {
			t.Errorf("example lacks %s", s.name)
		}
	}
	path := writeFile(t, "example.toml", ex.String())
	var out bytes.Buffer
	if err := run(t.Context(), []string{"herald", "config", "check", path}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("config check of the example: %v", err)
	}
	if !strings.Contains(out.String(), "ok") {
		t.Fatalf("output %q", out.String())
	}
	// Through stdin, as the README pipes it.
	r, w, _ := os.Pipe()
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old })
	go func() { w.Write(ex.Bytes()); w.Close() }()
	if err := run(t.Context(), []string{"herald", "config", "check", "-"}, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatalf("config check -: %v", err)
	}
}

// Half a configuration is an error, not dev mode; production needs both.
func TestModes(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want mode
		err  string
	}{
		{map[string]string{}, modeDev, ""},
		{map[string]string{"HERALD_DEV": "true", "HERALD_API_KEY": "k"}, modeDev, ""},
		{map[string]string{"HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k"}, modeConfigured, ""},
		{map[string]string{"HERALD_API_KEY": "k"}, "", "client tokens cannot be checked"},
		{map[string]string{"HERALD_TOKEN_SECRET": testSecret}, "", "server API has no key"},
		{map[string]string{"HERALD_JWKS_URL": "https://idp.example/jwks", "HERALD_API_KEYS": "b:publish:x"}, modeConfigured, ""},
		{map[string]string{"HERALD_ENV": "production"}, "", "HERALD_ENV=production"},
		{map[string]string{"HERALD_ENV": "production", "HERALD_TOKEN_SECRET": testSecret}, "", "no key"},
		{map[string]string{"HERALD_ENV": "production", "HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k"}, modeProduction, ""},
		{map[string]string{"HERALD_ENV": "production", "HERALD_DEV": "1", "HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k"}, "", "exclude"},
	}
	for _, tc := range cases {
		c, err := parseConfig(nil, func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		m, err := resolveMode(c)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: got %v, %v; want error %q", tc.env, m, err, tc.err)
			}
			continue
		}
		if err != nil || m != tc.want {
			t.Errorf("%v: got %v, %v; want %v", tc.env, m, err, tc.want)
		}
	}
}

// "herald config check" refuses what "herald serve" would refuse, not only
// what the file's syntax allows.
func TestConfigCheckValidatesLikeServe(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		file string
		want string
	}{
		{map[string]string{"HERALD_TOKEN_SECRET": "short", "HERALD_API_KEY": "k"}, "", "at least 32 bytes"},
		{map[string]string{"HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k"}, `allowed_origins = ["https://app.example/path"]`, "app.example/path"},
		{map[string]string{"HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k"}, `trusted_proxies = ["notanip"]`, "notanip"},
		{map[string]string{"HERALD_ENV": "production", "HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k"}, "", "at least 16 bytes"},
		// The route set is checked too, with its own error's place.
		{map[string]string{"HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k", "HERALD_ROUTES": `{"auth":"integration"}`}, "", "needs a $connect route"},
		{map[string]string{"HERALD_TOKEN_SECRET": testSecret, "HERALD_API_KEY": "k"}, `routes_file = "/nonexistent/routes.toml"`, "routes.toml"},
	} {
		path := writeFile(t, "herald.toml", tc.file+"\n")
		err := run(t.Context(), []string{"herald", "config", "check", path}, func(k string) string { return tc.env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v + %q: %v, want an error saying %q", tc.env, tc.file, err, tc.want)
		}
	}
}
