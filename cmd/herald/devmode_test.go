package main

import (
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
