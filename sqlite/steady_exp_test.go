package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

func TestExpSteady(t *testing.T) {
	if os.Getenv("EXPSTEADY") == "" {
		t.Skip()
	}
	path := filepath.Join(t.TempDir(), "w.db")
	s := openTest(t, path)
	var n atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				u := herald.UserID(fmt.Sprintf("user-%d", (n.Add(1)*7919)%10000))
				s.Append(context.Background(), []*herald.Message{{User: u, Data: benchPayload()}}, nil)
			}
		})
	}
	var prev uint64
	for i := range 24 {
		time.Sleep(time.Second)
		cur := n.Load()
		if i%4 == 3 {
			t.Logf("%ds: %d msgs, %d/s", i+1, cur, cur-prev)
		}
		prev = cur
	}
	close(stop)
	wg.Wait()
}
