package awsapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
)

var testCreds = Credentials{AccessKeyID: "AKIDHERALDTEST", SecretAccessKey: "s3cr3t/Key+With=Odd/Chars"}

// verifyLog remembers what the management-API stand-in saw, so a test can
// tell "the SDK call failed" apart from "Herald rejected it, and why".
type verifyLog struct {
	mu    sync.Mutex
	paths []string
	errs  []error
}

func (l *verifyLog) add(path string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, path)
	l.errs = append(l.errs, err)
}

func (l *verifyLog) last() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.paths) == 0 {
		return "", errors.New("handler never called")
	}
	return l.paths[len(l.paths)-1], l.errs[len(l.errs)-1]
}

// newManagementServer answers like API Gateway's management API would, just
// enough for the SDK to deserialize, after checking the signature.
func newManagementServer(t *testing.T, creds Credentials) (*httptest.Server, *verifyLog) {
	t.Helper()
	log := &verifyLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		err = VerifySigV4(r, body, creds, time.Now())
		log.add(r.URL.Path, err)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.Header().Set("X-Amzn-ErrorType", "ForbiddenException")
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
			return
		}
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, `{"connectedAt":"2026-01-01T00:00:00Z","identity":{"sourceIp":"127.0.0.1","userAgent":"test"},"lastActiveAt":"2026-01-01T00:00:01Z"}`)
			return
		}
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	return srv, log
}

func newClient(endpoint string, creds Credentials) *apigatewaymanagementapi.Client {
	return apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "eu-west-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, Source: "test"}, nil
		}),
	})
}

func TestVerifySigV4_SDKRoundTrip(t *testing.T) {
	srv, log := newManagementServer(t, testCreds)
	ctx := context.Background()

	for _, stage := range []string{"", "/prod"} {
		client := newClient(srv.URL+stage, testCreds)
		for _, id := range []string{"abc", "L0SM9cOFvHcCIhw=", "a+b/c"} {
			ops := []struct {
				name string
				call func() error
			}{
				{"PostToConnection", func() error {
					_, err := client.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
						ConnectionId: aws.String(id),
						Data:         []byte(`{"hello":"wörld","n":1}`),
					})
					return err
				}},
				{"GetConnection", func() error {
					out, err := client.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
					if err == nil && (out.ConnectedAt == nil || out.Identity == nil) {
						err = errors.New("GetConnection output not deserialized")
					}
					return err
				}},
				{"DeleteConnection", func() error {
					_, err := client.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)})
					return err
				}},
			}
			for _, op := range ops {
				t.Run("stage="+stage+"/"+op.name+"/"+id, func(t *testing.T) {
					if err := op.call(); err != nil {
						_, verr := log.last()
						t.Fatalf("SDK call failed: %v (handler: %v)", err, verr)
					}
					path, verr := log.last()
					if verr != nil {
						t.Fatalf("handler rejected: %v", verr)
					}
					// The id must also survive routing intact, "/" and "=" included.
					if want := stage + "/@connections/" + id; path != want {
						t.Errorf("handler saw path %q, want %q", path, want)
					}
				})
			}
		}
	}
}

func TestVerifySigV4_SDKWrongSecretRejected(t *testing.T) {
	srv, log := newManagementServer(t, testCreds)
	bad := testCreds
	bad.SecretAccessKey = "not-the-secret"
	client := newClient(srv.URL+"/prod", bad)

	_, err := client.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String("L0SM9cOFvHcCIhw="),
		Data:         []byte("hi"),
	})
	var forbidden *types.ForbiddenException
	if !errors.As(err, &forbidden) {
		t.Fatalf("want ForbiddenException, got %v", err)
	}
	_, verr := log.last()
	if verr == nil || !strings.Contains(verr.Error(), "signature mismatch") {
		t.Fatalf("handler error = %v, want a signature mismatch", verr)
	}
	// The reason names the canonical URI Herald used: execute-api escapes
	// the already-escaped path once more. (The SDK's ForbiddenException has
	// no members, so it drops the body's message: the reason only reaches
	// whoever reads the server's logs.)
	if !strings.Contains(verr.Error(), `"/prod/%40connections/L0SM9cOFvHcCIhw%253D"`) {
		t.Errorf("handler error %q lacks the canonical URI", verr)
	}
	if strings.Contains(verr.Error(), testCreds.SecretAccessKey) {
		t.Errorf("error leaks the secret: %v", verr)
	}
}

// A router that strips the stage before Herald's handler sees the request
// must not break verification: the client signed the path it sent.
func TestVerifySigV4_StrippedStagePrefix(t *testing.T) {
	log := &verifyLog{}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := VerifySigV4(r, body, testCreds, time.Now())
		log.add(r.URL.Path, err)
		if err != nil {
			w.Header().Set("X-Amzn-ErrorType", "ForbiddenException")
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, `{}`)
	})
	srv := httptest.NewServer(http.StripPrefix("/prod", inner))
	t.Cleanup(srv.Close)

	_, err := newClient(srv.URL+"/prod", testCreds).PostToConnection(context.Background(),
		&apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String("a+b/c="), Data: []byte("x")})
	path, verr := log.last()
	if err != nil || verr != nil {
		t.Fatalf("SDK error %v, handler error %v", err, verr)
	}
	if path != "/@connections/a+b/c=" {
		t.Errorf("handler saw %q", path)
	}
}

// sign builds a client-side request as the SDK would hand it to the HTTP
// transport, signed with the SDK signer.
func sign(t *testing.T, method, target string, body []byte, hdr http.Header, creds Credentials, service, region string, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://herald.example:8080"+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = append([]string(nil), v...)
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(context.Background(),
		aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), service, region, at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// overTheWire serializes a client request and parses it back the way a
// server does, so both request shapes are exercised: client-side (no
// RequestURI, length only in ContentLength) and server-side.
func overTheWire(t *testing.T, req *http.Request) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func setAuthPart(t *testing.T, req *http.Request, key, val string) {
	t.Helper()
	auth := req.Header.Get("Authorization")
	parts := strings.Split(auth, ", ")
	for i, p := range parts {
		if k, _, _ := strings.Cut(p, "="); strings.HasSuffix(k, key) {
			prefix, _, _ := strings.Cut(p, "=")
			parts[i] = prefix + "=" + val
			req.Header.Set("Authorization", strings.Join(parts, ", "))
			return
		}
	}
	t.Fatalf("no %s in %q", key, auth)
}

func TestVerifySigV4_Direct(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	body := []byte(`{"msg":"hello"}`)
	jsonHdr := http.Header{"Content-Type": {"application/json"}}

	wrongKey := testCreds
	wrongKey.AccessKeyID = "AKIDSOMEONEELSE"
	wrongSecret := testCreds
	wrongSecret.SecretAccessKey = "wrong-secret"

	type tc struct {
		name    string
		method  string
		target  string
		hdr     http.Header
		creds   Credentials // signing credentials; testCreds when zero
		service string      // execute-api when empty
		region  string      // eu-west-1 when empty
		signAt  time.Duration
		body    []byte                     // defaults to body
		mutate  func(*http.Request)        // applied after signing
		verify  func(*http.Request) []byte // body handed to VerifySigV4; the signed body when nil
		server  *Credentials               // server's credentials; testCreds when nil
		wantErr string                     // "" means valid
		wantIs  error
	}
	cases := []tc{
		{name: "valid us-east-1", region: "us-east-1"},
		{name: "valid ap-south-1", region: "ap-south-1"},
		{name: "valid GET no body", method: http.MethodGet, body: []byte{}},
		{name: "valid DELETE escaped id", method: http.MethodDelete, target: "/prod/@connections/L0SM9cOFvHcCIhw%3D", body: []byte{}},
		{name: "valid id with slash and plus", target: "/@connections/a%2Bb%2Fc"},
		{name: "valid with query", target: "/@connections/abc?b=2&a=1&a=0"},
		{name: "valid 4m59s ahead", signAt: 4*time.Minute + 59*time.Second},
		{name: "valid 5m behind", signAt: -5 * time.Minute},
		{name: "valid content sha256 header", hdr: http.Header{"X-Amz-Content-Sha256": {sha256Hex(body)}}},
		{name: "valid multi-value and spaced header", hdr: http.Header{"X-Herald-Trace": {"  one   two ", "three"}}},
		{name: "valid unsigned extra header", mutate: func(r *http.Request) { r.Header.Set("X-Added-Later", "1") }},

		{name: "missing authorization", mutate: func(r *http.Request) { r.Header.Del("Authorization") },
			wantErr: "missing Authorization", wantIs: ErrMissingAuthorization},
		{name: "two authorization headers", mutate: func(r *http.Request) { r.Header.Add("Authorization", r.Header.Get("Authorization")) },
			wantErr: "more than one Authorization"},
		{name: "malformed: other scheme", mutate: func(r *http.Request) { r.Header.Set("Authorization", "Bearer abc") },
			wantErr: `algorithm "Bearer"`},
		{name: "malformed: sigv4a", mutate: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1))
		}, wantErr: `algorithm "AWS4-ECDSA-P256-SHA256"`},
		{name: "malformed: no signature", mutate: func(r *http.Request) {
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:strings.Index(a, ", Signature=")])
		}, wantErr: "missing Signature"},
		{name: "malformed: signature not hex", mutate: func(r *http.Request) { setAuthPart(t, r, "Signature", strings.Repeat("zz", 32)) },
			wantErr: "Signature is not hex"},
		{name: "malformed: short signature", mutate: func(r *http.Request) { setAuthPart(t, r, "Signature", "abcd") },
			wantErr: "Signature has 4 hex digits"},
		{name: "malformed: short credential", mutate: func(r *http.Request) {
			setAuthPart(t, r, "Credential", testCreds.AccessKeyID+"/20260314/eu-west-1/execute-api")
		},
			wantErr: "Credential must be"},
		{name: "malformed: bad terminal", mutate: func(r *http.Request) {
			setAuthPart(t, r, "Credential", testCreds.AccessKeyID+"/20260314/eu-west-1/execute-api/aws4_reqest")
		}, wantErr: `ends in "aws4_reqest"`},
		{name: "malformed: junk component", mutate: func(r *http.Request) { r.Header.Set("Authorization", r.Header.Get("Authorization")+", Foo") },
			wantErr: `component "Foo"`},

		{name: "wrong access key", creds: wrongKey, wantErr: `unknown access key id "AKIDSOMEONEELSE"`, wantIs: ErrUnknownAccessKey},
		{name: "wrong secret", creds: wrongSecret, wantErr: "signature mismatch"},
		{name: "service s3", service: "s3", wantErr: `service "s3"`},
		{name: "skew 6m future", signAt: 6 * time.Minute, wantErr: "6m0s ahead of server time"},
		{name: "skew 6m past", signAt: -6 * time.Minute, wantErr: "6m0s behind server time"},
		{name: "x-amz-date missing", mutate: func(r *http.Request) { r.Header.Del("X-Amz-Date") },
			wantErr: "missing X-Amz-Date"},
		{name: "x-amz-date not signed", mutate: func(r *http.Request) { setAuthPart(t, r, "SignedHeaders", "content-length;content-type;host") },
			wantErr: `must include "x-amz-date"`},
		{name: "host not signed", mutate: func(r *http.Request) { setAuthPart(t, r, "SignedHeaders", "content-length;content-type;x-amz-date") },
			wantErr: `must include "host"`},
		{name: "x-amz-date garbage", mutate: func(r *http.Request) { r.Header.Set("X-Amz-Date", "2026-03-14T15:09:26Z") },
			wantErr: "not in the form"},
		{name: "scope date differs from x-amz-date", signAt: -16 * time.Hour, mutate: func(r *http.Request) {
			r.Header.Set("X-Amz-Date", now.Format(amzDateLayout))
		}, wantErr: "credential scope date 20260313 does not match X-Amz-Date day 20260314"},
		{name: "tampered body", verify: func(*http.Request) []byte { return []byte(`{"msg":"HELLO"}`) },
			wantErr: "signature mismatch"},
		{name: "tampered body with content sha256", hdr: http.Header{"X-Amz-Content-Sha256": {sha256Hex(body)}},
			verify:  func(*http.Request) []byte { return []byte(`{"msg":"HELLO"}`) },
			wantErr: "body does not match X-Amz-Content-Sha256"},
		{name: "unsigned payload", hdr: http.Header{"X-Amz-Content-Sha256": {"UNSIGNED-PAYLOAD"}},
			wantErr: `"UNSIGNED-PAYLOAD" is not accepted`},
		{name: "tampered path", target: "/@connections/abc", mutate: func(r *http.Request) {
			r.URL.Path, r.URL.RawPath = "/@connections/abd", ""
		}, wantErr: "signature mismatch"},
		{name: "tampered signed header", mutate: func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") },
			wantErr: "signature mismatch"},
		{name: "signed header removed", mutate: func(r *http.Request) { r.Header.Del("Content-Type") },
			wantErr: `signed header "content-type" is missing`},
		{name: "tampered method", mutate: func(r *http.Request) { r.Method = http.MethodPut },
			wantErr: "signature mismatch"},
		{name: "presigned", mutate: func(r *http.Request) {
			r.Header.Del("Authorization")
			r.URL.RawQuery = "X-Amz-Signature=abc"
		}, wantErr: "presigned"},
		{name: "server has no credentials", server: &Credentials{}, wantErr: "no credentials are configured"},
	}

	for _, shape := range []string{"client", "wire"} {
		seen := map[string]string{}
		for _, c := range cases {
			t.Run(shape+"/"+c.name, func(t *testing.T) {
				method := c.method
				if method == "" {
					method = http.MethodPost
				}
				target := c.target
				if target == "" {
					target = "/@connections/abc"
				}
				hdr := jsonHdr.Clone()
				for k, v := range c.hdr {
					hdr[k] = v
				}
				creds := c.creds
				if creds == (Credentials{}) {
					creds = testCreds
				}
				service := c.service
				if service == "" {
					service = "execute-api"
				}
				region := c.region
				if region == "" {
					region = "eu-west-1"
				}
				b := body
				if c.body != nil {
					b = c.body
				}
				server := testCreds
				if c.server != nil {
					server = *c.server
				}

				req := sign(t, method, target, b, hdr, creds, service, region, now.Add(c.signAt))
				if c.mutate != nil {
					c.mutate(req)
				}
				if shape == "wire" {
					req = overTheWire(t, req)
				}
				got := b
				if c.verify != nil {
					got = c.verify(req)
				}

				err := VerifySigV4(req, got, server, now)
				if c.wantErr == "" {
					if err != nil {
						t.Fatalf("want valid, got %v", err)
					}
					return
				}
				if err == nil {
					t.Fatalf("want error containing %q, got nil", c.wantErr)
				}
				msg := err.Error()
				t.Log(msg)
				if !strings.Contains(msg, c.wantErr) {
					t.Errorf("error %q does not contain %q", msg, c.wantErr)
				}
				if c.wantIs != nil && !errors.Is(err, c.wantIs) {
					t.Errorf("errors.Is(%v, %v) = false", err, c.wantIs)
				}
				if strings.Contains(msg, testCreds.SecretAccessKey) || strings.Contains(msg, creds.SecretAccessKey) {
					t.Errorf("error leaks a secret: %q", msg)
				}
				// The signature the server expected would let a client forge
				// this exact request; it must never be echoed.
				ref := sign(t, method, target, b, hdr, testCreds, service, region, now.Add(c.signAt))
				if _, wantSig, ok := strings.Cut(ref.Header.Get("Authorization"), "Signature="); ok && strings.Contains(msg, wantSig) {
					t.Errorf("error leaks the expected signature: %q", msg)
				}
				if prev, dup := seen[msg]; dup {
					t.Errorf("same message as case %q: %q", prev, msg)
				}
				seen[msg] = c.name
			})
		}
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// VerifySigV4For checks the signing name it is given, so that a request
// signed for one of Herald's AWS APIs cannot be replayed against another;
// VerifySigV4 stays execute-api's.
func TestVerifySigV4For(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	body := []byte(`{"n":1}`)
	const target = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Asend/invocations"
	for _, c := range []struct {
		name              string
		signedFor, verify string // verify "" is VerifySigV4
		wantErr           string
	}{
		{"lambda for lambda", ServiceLambda, ServiceLambda, ""},
		{"execute-api for execute-api", ServiceExecuteAPI, ServiceExecuteAPI, ""},
		{"execute-api by VerifySigV4", ServiceExecuteAPI, "", ""},
		{"lambda by VerifySigV4", ServiceLambda, "", `service "lambda", want "execute-api"`},
		{"execute-api for lambda", ServiceExecuteAPI, ServiceLambda, `service "execute-api", want "lambda"`},
		{"no service", ServiceLambda, "-", "no service to verify for"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, shape := range []string{"client", "wire"} {
				req := sign(t, http.MethodPost, target, body, http.Header{"X-Amz-Invocation-Type": {"Event"}}, testCreds, c.signedFor, "us-east-1", now)
				if shape == "wire" {
					req = overTheWire(t, req)
				}
				var err error
				switch c.verify {
				case "":
					err = VerifySigV4(req, body, testCreds, now)
				case "-":
					err = VerifySigV4For(req, body, testCreds, "", now)
				default:
					err = VerifySigV4For(req, body, testCreds, c.verify, now)
				}
				switch {
				case c.wantErr == "" && err != nil:
					t.Errorf("%s: want valid, got %v", shape, err)
				case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
					t.Errorf("%s: error %v, want one containing %q", shape, err, c.wantErr)
				}
			}
		})
	}
}
