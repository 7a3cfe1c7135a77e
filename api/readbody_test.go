package api

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-gw/herald"
)

// TestReadBodyLimit: the Content-Length only sizes the buffer; what is
// read, the limit and read errors decide.
func TestReadBodyLimit(t *testing.T) {
	const limit = 16
	for _, tc := range []struct {
		name   string
		body   io.Reader
		length int64
		want   string
		code   herald.ErrorCode
	}{
		{"exact length", strings.NewReader(`{"a":1}`), 7, `{"a":1}`, ""},
		{"no length", strings.NewReader(`{"a":1}`), -1, `{"a":1}`, ""},
		{"length too small", strings.NewReader(`{"a":12345}`), 3, `{"a":12345}`, ""},
		{"length too large", strings.NewReader(`{}`), 10, `{}`, ""},
		{"at the limit", strings.NewReader(strings.Repeat("x", limit)), limit, strings.Repeat("x", limit), ""},
		{"over the limit", strings.NewReader(strings.Repeat("x", limit+1)), limit + 1, "", herald.EPayloadTooLarge},
		{"over the limit, length small", strings.NewReader(strings.Repeat("x", 40)), 4, "", herald.EPayloadTooLarge},
		{"cut short", io.MultiReader(strings.NewReader(`{"a"`), errReader{io.ErrUnexpectedEOF}), 10, "", herald.EInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", tc.body)
			r.ContentLength = tc.length
			b, err := readBodyLimit(r, limit)
			if tc.code != "" {
				var he *herald.Error
				if !errors.As(err, &he) || he.Code != tc.code {
					t.Fatalf("err %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil || string(b) != tc.want {
				t.Fatalf("got %q, %v; want %q", b, err, tc.want)
			}
		})
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
