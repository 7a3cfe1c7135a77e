package main

import (
	"io"
	"strings"
	"testing"
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
