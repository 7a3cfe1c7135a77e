package lambdahost

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPostedDoc(t *testing.T) {
	tests := []struct {
		name, body, header string
		wantType, wantBody string
	}{
		{"document kept as posted", `{"errorMessage":"m","errorType":"T","stackTrace":[]}`, "H",
			"T", `{"errorMessage":"m","errorType":"T","stackTrace":[]}`},
		{"type from the header", `{"errorMessage":"m"}`, "H", "H", `{"errorMessage":"m"}`},
		{"not JSON: wrapped", `boom`, "H", "H", `{"errorMessage":"boom","errorType":"H"}`},
		{"a JSON string: wrapped", `"boom"`, "", "Runtime.Unknown", `{"errorMessage":"\"boom\"","errorType":"Runtime.Unknown"}`},
		{"empty", ``, "", "Runtime.Unknown", `{"errorMessage":"","errorType":"Runtime.Unknown"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := postedDoc([]byte(tt.body), tt.header)
			if doc.Type != tt.wantType || string(doc.payload()) != tt.wantBody {
				t.Errorf("postedDoc = %s %s, want %s %s", doc.Type, doc.payload(), tt.wantType, tt.wantBody)
			}
		})
	}
}

// TestRuntimeAPIRefusals: posts the Runtime API must refuse, as Lambda
// does, without disturbing the process's state.
func TestRuntimeAPIRefusals(t *testing.T) {
	h, err := New(Options{}, Function{Name: "f", Command: []string{"unused"}})
	if err != nil {
		t.Fatal(err)
	}
	p := newProcess(h.fns["f"], 1)
	api := p.routes()
	post := func(path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set(headerErrorType, "Runtime.Custom")
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		return w
	}
	for _, path := range []string{
		"/2018-06-01/runtime/invocation/no-such-id/response",
		"/2018-06-01/runtime/invocation/no-such-id/error",
	} {
		if w := post(path, `{}`); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"errorType":"InvalidRequestID"`) {
			t.Errorf("POST %s: %d %s, want 400 InvalidRequestID", path, w.Code, w.Body)
		}
	}

	if w := post("/2018-06-01/runtime/init/error", "cannot start"); w.Code != http.StatusAccepted {
		t.Fatalf("init error: %d %s", w.Code, w.Body)
	}
	select {
	case <-p.initFailed:
	default:
		t.Fatal("an accepted init error did not signal the invoker")
	}
	if got := string(p.initError().payload()); got != `{"errorMessage":"cannot start","errorType":"Runtime.Custom"}` {
		t.Errorf("init error document %s", got)
	}
	if w := post("/2018-06-01/runtime/init/error", "again"); w.Code != http.StatusForbidden {
		t.Errorf("a second init error: %d %s, want 403", w.Code, w.Body)
	}
}
