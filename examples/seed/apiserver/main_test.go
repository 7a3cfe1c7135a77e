package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer run's output can be written to while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeLambda is the Lambda Invoke API (POST
// /2015-03-31/functions/{name}/invocations) with two functions:
// "notification" answers with its result, "failing" with a function
// error. Any other name is not found.
type fakeLambda struct {
	t  *testing.T
	mu sync.Mutex
	in []string // the payloads invoked, in order
}

func (f *fakeLambda) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDAPI/") || !strings.Contains(auth, "/us-east-1/lambda/aws4_request") {
		f.t.Errorf("request not signed for lambda in us-east-1: %q", auth)
	}
	if it := r.Header.Get("X-Amz-Invocation-Type"); it != "" && it != "RequestResponse" {
		f.t.Errorf("invocation type %q, want a synchronous invoke", it)
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.in = append(f.in, string(body))
	f.mu.Unlock()
	switch r.PathValue("name") {
	case "notification":
		io.WriteString(w, `{"sent":2,"gone":1}`)
	case "failing":
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		io.WriteString(w, `{"errorMessage":"notification: user 42: sent 0, gone 0, failed 1","errorType":"wrapError"}`)
	default:
		w.Header().Set("X-Amzn-ErrorType", "ResourceNotFoundException")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"Type":"User","message":"Function not found"}`)
	}
}

var listenRE = regexp.MustCompile(`apiserver listening on (http://\S+)`)

// start runs the API server in-process against the fake Lambda API and
// returns its URL; the test's cleanup stops it and checks it stopped
// cleanly.
func start(t *testing.T, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"apiserver"}, func(k string) string { return env[k] }, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the API server did not stop")
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if m := listenRE.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v; output:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server did not listen; output:\n%s", out.String())
		}
	}
}

// POST /notify passes the body unchanged to the configured function and
// answers with what it returned: its result (200), its error document
// (502), or an error of the invocation itself (502); a body that is not a
// notification never reaches the function.
func TestNotify(t *testing.T) {
	f := &fakeLambda{t: t}
	mux := http.NewServeMux()
	mux.Handle("POST /2015-03-31/functions/{name}/invocations", f)
	lambdaAPI := httptest.NewServer(mux)
	defer lambdaAPI.Close()

	const body = `{"user_id":42,"json":"{\"text\":\"hi\"}"}`
	for _, c := range []struct {
		name     string
		function string // NOTIFY_FUNCTION; "" is the default
		body     string
		status   int
		want     string // in the answer
		invoked  bool
	}{
		{"result", "", body, 200, `{"sent":2,"gone":1}`, true},
		{"function error", "failing", body, 502, `"errorMessage":"notification: user 42`, true},
		{"no such function", "nope", body, 502, "ResourceNotFoundException", true},
		{"not JSON", "", `user_id=42`, 400, "user_id", false},
		{"no user", "", `{"json":"x"}`, 400, "user_id", false},
		{"no json", "", `{"user_id":42}`, 400, "user_id", false},
		{"too large", "", `{"user_id":42,"json":"` + strings.Repeat("x", maxBody) + `"}`, 413, "body over", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			url := start(t, map[string]string{
				"ADDR": "127.0.0.1:0", "NOTIFY_FUNCTION": c.function, "LAMBDA_ENDPOINT": lambdaAPI.URL,
				"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDAPI", "AWS_SECRET_ACCESS_KEY": "api-secret",
			})
			f.mu.Lock()
			f.in = nil
			f.mu.Unlock()
			resp, err := http.Post(url+"/notify", "application/json", strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(got), c.want) {
				t.Fatalf("got %d %s, want %d with %s", resp.StatusCode, got, c.status, c.want)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			switch {
			case c.invoked && (len(f.in) != 1 || f.in[0] != c.body):
				t.Fatalf("invoked with %q, want the body once", f.in)
			case !c.invoked && len(f.in) != 0:
				t.Fatalf("invoked with %q, want no invocation", f.in)
			}
		})
	}
}

func TestNotifyMethod(t *testing.T) {
	url := start(t, map[string]string{"ADDR": "127.0.0.1:0", "LAMBDA_ENDPOINT": "http://127.0.0.1:1", "AWS_REGION": "us-east-1"})
	resp, err := http.Get(url + "/notify")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /notify: %d", resp.StatusCode)
	}
}
