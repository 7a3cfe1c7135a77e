package gateway

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/herald-gw/herald"
)

// checkHandshake validates a WebSocket opening handshake (RFC 6455 §4.2.1)
// completely, before anything is taken over from net/http or any
// connection slot is reserved, and returns the client's key. What it
// refuses is a *herald.Error the API answers as JSON on a connection that
// net/http still owns and closes: a refused handshake never leaves a
// socket behind. A version Herald does not speak gets 426 with
// Sec-WebSocket-Version: 13, the one it does (§4.4); the header is set on
// w, where the API's error writer keeps it.
func checkHandshake(w http.ResponseWriter, r *http.Request) (key string, err error) {
	key, err = handshakeKey(r)
	if herald.ErrorCodeOf(err) == herald.EUpgradeRequired {
		w.Header().Set("Sec-WebSocket-Version", wsVersion)
	}
	return key, err
}

// wsVersion is the only WebSocket protocol version there is (RFC 6455).
const wsVersion = "13"

func handshakeKey(r *http.Request) (string, error) {
	invalid := func(msg string) (string, error) { return "", herald.Errorf(herald.EInvalidRequest, "%s", msg) }
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return invalid("expected a WebSocket upgrade request (Upgrade: websocket)")
	}
	if r.Method != http.MethodGet {
		return invalid("a WebSocket upgrade must be a GET request")
	}
	// HTTP/2 and later carry WebSocket only through extended CONNECT
	// (RFC 8441), which Herald does not offer; HTTP/1.0 has no upgrade.
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return invalid("a WebSocket upgrade needs HTTP/1.1")
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return invalid("a WebSocket upgrade needs Connection: Upgrade")
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return invalid("a WebSocket upgrade needs one Sec-WebSocket-Key")
	}
	// The key is a base64-encoded 16-byte nonce (§4.1): 24 characters
	// with padding, and nothing else decodes to exactly 16 bytes.
	if nonce, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(nonce) != 16 {
		return invalid("Sec-WebSocket-Key must be a base64-encoded 16-byte nonce")
	}
	switch v := r.Header.Values("Sec-WebSocket-Version"); {
	case len(v) == 0 || len(v) == 1 && v[0] == "":
		return invalid("a WebSocket upgrade needs Sec-WebSocket-Version")
	case len(v) != 1 || v[0] != wsVersion:
		return "", herald.Errorf(herald.EUpgradeRequired, "WebSocket version %q is not supported; Herald speaks version %s", strings.Join(v, ", "), wsVersion)
	}
	// The subprotocol Herald selects is echoed in the answer's header, so
	// every offered one must be a token (§4.1): nothing else can reach
	// the answer.
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			if p = strings.Trim(p, " \t"); p != "" && !isToken(p) {
				return invalid("Sec-WebSocket-Protocol must be a comma-separated list of tokens")
			}
		}
	}
	return keys[0], nil
}

// headerHasToken reports whether any of the header's comma-separated
// elements, in any of its lines, is token (ASCII case-insensitive):
// Firefox, for one, sends "Connection: keep-alive, Upgrade".
func headerHasToken(h http.Header, name, token string) bool {
	for _, line := range h.Values(name) {
		for el := range strings.SplitSeq(line, ",") {
			if strings.EqualFold(strings.Trim(el, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// isToken reports whether s is an RFC 9110 token: visible ASCII other
// than delimiters.
func isToken(s string) bool {
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// acceptKey is the Sec-WebSocket-Accept answer to key (§4.2.2): the
// base64 SHA-1 of the key and the protocol's GUID.
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// upgradeResponse is the handshake's answer: 101, the accept key and the
// selected subprotocol, if any (a token, checked by checkHandshake).
func upgradeResponse(key, protocol string) []byte {
	b := make([]byte, 0, 160+len(protocol))
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = append(b, acceptKey(key)...)
	b = append(b, "\r\n"...)
	if protocol != "" {
		b = append(b, "Sec-WebSocket-Protocol: "...)
		b = append(b, protocol...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}
