package gateway

import (
	"testing"
	"unsafe"

	"github.com/herald-gw/herald/session"
)

// TestIdleSizes holds the structs every idle connection carries to the
// sizes docs/benchmarks.md accounts for (issue 14): a field added here is
// multiplied by every connection a node holds, so growing past a size
// class should be a decision, not an accident. 64-bit platforms only.
func TestIdleSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are budgeted for 64-bit platforms")
	}
	for _, tc := range []struct {
		name      string
		size, max uintptr
	}{
		{"gateway.conn", unsafe.Sizeof(conn{}), 64},
		{"session.Session", unsafe.Sizeof(session.Session{}), 176},
	} {
		t.Logf("%s: %d bytes", tc.name, tc.size)
		if tc.size > tc.max {
			t.Errorf("%s is %d bytes, over its budget of %d (a size class of the allocator)", tc.name, tc.size, tc.max)
		}
	}
}
