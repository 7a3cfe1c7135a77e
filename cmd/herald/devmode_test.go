package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The quick start: with no secrets set Herald prints a token for "demo"
// and a curl command; running that exact command delivers to a client
// connected with that exact token.
func TestDevModeBannerWorks(t *testing.T) {
	h := startHerald(t, map[string]string{
		"HERALD_ADDR": "127.0.0.1:0", "HERALD_DB": filepath.Join(t.TempDir(), "herald.db"), "HERALD_LOG_LEVEL": "warn",
	})
	// startHerald returns at the "listening on" line; the rest of the
	// banner is a later write.
	banner := h.stdout.String()
	for deadline := time.Now().Add(testTimeout); !strings.Contains(banner, "Docs: docs/api.md") && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		banner = h.stdout.String()
	}
	wsURL := regexp.MustCompile(`new WebSocket\("([^"]+)"\)`).FindStringSubmatch(banner)
	curl := regexp.MustCompile(`(?m)^\s*(curl .*)$`).FindStringSubmatch(banner)
	if wsURL == nil || curl == nil {
		t.Fatalf("banner lacks the WebSocket URL or curl command:\n%s", banner)
	}
	for _, want := range []string{"export HERALD_TOKEN_SECRET=", "export HERALD_API_KEY="} {
		if !strings.Contains(banner, want) {
			t.Fatalf("banner lacks %q", want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed; the printed command cannot be run as written")
	}
	for i := 0; ; i++ { // wait for the connection to be registered
		out, err := exec.CommandContext(ctx, "sh", "-c", curl[1]).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", curl[1], err, out)
		}
		if strings.Contains(string(out), `"connections":1`) {
			break
		}
		if i > 100 {
			t.Fatalf("curl printed %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != `{"message":"hello"}` {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TLS served by Herald itself takes the goroutine-per-connection path.
func TestTLSGoroutinePath(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	h := startHerald(t, testEnv(t, "HERALD_TLS_CERT", certFile, "HERALD_TLS_KEY", keyFile))
	if !strings.HasPrefix(h.URL, "https://") {
		t.Fatalf("url %s", h.URL)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(h.URL, "https")+"/ws?token="+h.token(t, "t"), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// Registered first, then one message and one bounded read: a read
	// that times out would close the client's connection.
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(10 * time.Millisecond) {
		req, _ := http.NewRequest("GET", h.URL+"/v1/users/t/connections", nil)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `"protocol":"raw"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the TLS connection never registered: %s", b)
		}
	}
	req, _ := http.NewRequest("POST", h.URL+"/v1/users/t/messages", strings.NewReader(`{"secure":true}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, got := read(t, c); string(got) != `{"secure":true}` {
		t.Fatalf("got %s", got)
	}
}

func writeSelfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// waitBanner waits for the whole dev-mode banner to be written.
func waitBanner(t *testing.T, h *server) string {
	t.Helper()
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(5 * time.Millisecond) {
		if b := h.stdout.String(); strings.Contains(b, "Docs: docs/api.md") {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s", h.stdout.String())
		}
	}
}

// Dev mode keeps its generated secrets beside the database (mode 0600),
// so a token minted before a restart still connects after it.
func TestDevModeSecretsSurviveRestart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "herald.db")
	env := map[string]string{"HERALD_ADDR": "127.0.0.1:0", "HERALD_DB": db, "HERALD_LOG_LEVEL": "warn"}
	first := startHerald(t, env)
	banner := waitBanner(t, first)
	if !strings.Contains(banner, "kept in "+db+".dev-secrets") {
		t.Fatalf("banner does not say where the secrets are kept:\n%s", banner)
	}
	tok := regexp.MustCompile(`ws\?token=([^"]+)"`).FindStringSubmatch(banner)[1]
	first.stop()
	if err := <-first.done; err != nil {
		t.Fatal(err)
	}
	first.done <- nil // for its cleanup
	fi, err := os.Stat(db + ".dev-secrets")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v, mode %v", err, fi.Mode())
	}

	second := startHerald(t, env)
	if b := waitBanner(t, second); !strings.Contains(b, "Secrets from "+db+".dev-secrets") {
		t.Fatalf("second banner:\n%s", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, second.WSURL+"/ws?token="+tok, nil)
	if err != nil {
		t.Fatalf("the token from before the restart is refused: %v", err)
	}
	c.CloseNow()
}

// A secret the operator configured never appears in the banner or the
// log, even in dev mode; dev mode refuses to listen beyond loopback.
func TestConfiguredSecretsNeverPrinted(t *testing.T) {
	const key = "operator-configured-key-7f3a"
	const secret = "operator-configured-secret-0123456789abcdef"
	for _, env := range []map[string]string{
		{"HERALD_DEV": "true", "HERALD_API_KEY": key, "HERALD_LOG_LEVEL": "debug"},
		{"HERALD_DEV": "true", "HERALD_TOKEN_SECRET": secret, "HERALD_LOG_LEVEL": "debug"},
		{"HERALD_TOKEN_SECRET": secret, "HERALD_API_KEY": key, "HERALD_LOG_LEVEL": "debug"},
	} {
		env["HERALD_ADDR"] = "127.0.0.1:0"
		env["HERALD_DB"] = filepath.Join(t.TempDir(), "h.db")
		h := startHerald(t, env)
		out := h.stdout.String()
		if env["HERALD_DEV"] != "" {
			out = waitBanner(t, h)
		}
		// One request that fails auth, so the log has something to say.
		http.Get(h.URL + "/v1/users/x/connections")
		for _, s := range []string{key, secret} {
			if strings.Contains(out, s) || strings.Contains(h.stderr.String(), s) {
				t.Fatalf("a configured secret was printed:\nstdout:\n%s\nstderr:\n%s", out, h.stderr.String())
			}
		}
	}
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0"} {
		err := run(t.Context(), []string{"herald", "dev", "-addr", addr, "-db", ":memory:"}, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("dev mode on %s: %v", addr, err)
		}
	}
}

// Listening beyond loopback is said in the banner and logged.
func TestBindBeyondLoopbackIsLogged(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_ADDR", "0.0.0.0:0", "HERALD_LOG_LEVEL", "info"))
	if !strings.Contains(h.stdout.String(), "every network interface") {
		t.Fatalf("banner: %s", h.stdout.String())
	}
	for deadline := time.Now().Add(testTimeout); !strings.Contains(h.stderr.String(), "beyond loopback"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("log: %s", h.stderr.String())
		}
	}
}

// --help, -h and --version answer and exit 0, as every command line tool
// does; the help lists the commands and the secret variables.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}} {
		var out bytes.Buffer
		if err := run(t.Context(), append([]string{"herald"}, args...), func(string) string { return "" }, &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range []string{"herald dev", "herald config check", "HERALD_TOKEN_SECRET", "HERALD_API_KEY", "HERALD_ENV=production"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("%v: output lacks %q:\n%s", args, want, out.String())
			}
		}
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		var out bytes.Buffer
		if err := run(t.Context(), append([]string{"herald"}, args...), func(string) string { return "" }, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "herald ") {
			t.Fatalf("%v: %q %v", args, out.String(), err)
		}
	}
	var errOut bytes.Buffer
	if err := run(t.Context(), []string{"herald", "serve", "-h"}, func(string) string { return "" }, io.Discard, &errOut); err != nil {
		t.Fatalf("serve -h: %v", err)
	}
	if !strings.Contains(errOut.String(), "HERALD_MAX_CONNS") {
		t.Fatalf("serve -h lacks the settings:\n%s", errOut.String())
	}
}
