package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hookrelay/relay"
)

// BenchmarkAppendConcurrent measures durable appends from many goroutines
// sharing the writer (group commit), 1 KiB events, one hook.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			body := bytes.Repeat([]byte{'x'}, 1024)
			var n atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n.Add(1) <= int64(b.N) {
						ev := relay.Event{ID: "evt", Source: "publisher:bench", Type: "bench.event", Received: time.Now(), Body: body}
						if _, err := s.Append(context.Background(), relay.AppendRequest{Event: ev, Hooks: []string{"h"}}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.Ops)/float64(max(st.Commits, 1)), "events/commit")
			b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(max(st.Commits, 1)), "µs/commit")
		})
	}
}
