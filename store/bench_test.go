package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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
			b.ReportMetric(float64(st.LogRecords)/float64(max(st.LogSyncs, 1)), "events/sync")
			b.ReportMetric(float64(st.LogTime.Microseconds())/float64(max(st.LogSyncs, 1)), "µs/sync")
		})
	}
}

// applyOne returns the bbolt write that copies req into the database, as
// the bbolt writer does for a logged event, numbered like one.
func (s *Store) applyOne(req relay.AppendRequest) func(*bolt.Tx) error {
	e := newAppendEntry(&req)
	e.seq = s.eventSeq.Add(1)
	e.lsn = e.seq
	return copyEntries([]logEntry{e})
}

// BenchmarkLogBatch writes batches of 1 KiB events to the write-ahead log
// with one fdatasync each, back to back, as the log writer does under load.
func BenchmarkLogBatch(b *testing.B) {
	for _, batch := range []int{1, 4, 16, 64, 256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			c, err := newLogCommitter(b.TempDir(), 1024, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer c.w.close()
			syncs := 0
			start := time.Now()
			b.ResetTimer()
			for n := 0; n < b.N; n += batch {
				syncs++
				if err := c.commit(batch); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(syncs*batch), "ns/event")
			b.ReportMetric(float64(elapsed.Microseconds())/float64(syncs), "µs/sync")
		})
	}
}

func benchEvent(size int) relay.Event {
	return relay.Event{ID: "evt_bench", Source: "publisher:bench", Type: "bench.event", Received: time.Now(), Body: bytes.Repeat([]byte{'x'}, size)}
}

// BenchmarkCommitBatch commits batches of B appends (1 KiB events, one
// hook) through the writer's commit path, as under load. ns/op counts
// b.N events rounded up to whole batches; ns/event is exact.
func BenchmarkCommitBatch(b *testing.B) {
	for _, batch := range []int{1, 4, 16, 64, 256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			// The writer goroutine stays idle: nothing is submitted, so
			// calling commit here is the only writer.
			ev := benchEvent(1024)
			req := relay.AppendRequest{Event: ev, Hooks: []string{"h"}}
			var failed error
			done := func(err error) {
				if err != nil {
					failed = err
				}
			}
			commits := 0
			start := time.Now()
			b.ResetTimer()
			for n := 0; n < b.N; n += batch {
				commits++
				entries := make([]logEntry, batch)
				for i := range entries {
					entries[i] = newAppendEntry(&req)
					entries[i].seq = s.eventSeq.Add(1)
					entries[i].lsn = entries[i].seq
				}
				s.commit([]op{{fn: copyEntries(entries), done: done, weight: 2 * batch}})
				if failed != nil {
					b.Fatal(failed)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(commits*batch), "ns/event")
			b.ReportMetric(float64(elapsed.Microseconds())/float64(commits), "µs/commit")
		})
	}
}

// BenchmarkAppendFanout100 prepares and commits one event routed to 100
// hooks: the store's share of fan-out cost.
func BenchmarkAppendFanout100(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	hooks := make([]string, 100)
	for i := range hooks {
		hooks[i] = fmt.Sprintf("hook-%03d", i)
	}
	ev := benchEvent(1024)
	const perCommit = 64
	b.ResetTimer()
	for done := 0; done < b.N; done += perCommit {
		if err := s.db.Update(func(tx *bolt.Tx) error {
			for range perCommit {
				if err := s.applyOne(relay.AppendRequest{Event: ev, Hooks: hooks})(tx); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// claimFixture is a store holding n due deliveries of hook "h" (small
// events: the claim cost is in the index, not the bodies), built once.
var claimFixture struct {
	once sync.Once
	dir  string
	err  error
}

func claimStore(b *testing.B, n int) *Store {
	claimFixture.once.Do(func() {
		claimFixture.dir, claimFixture.err = os.MkdirTemp("", "hookrelay-claim-bench-")
		if claimFixture.err != nil {
			return
		}
		s, err := Open(claimFixture.dir, Options{})
		if err != nil {
			claimFixture.err = err
			return
		}
		defer s.Close()
		ev := benchEvent(64)
		const perTx = 50000
		for done := 0; done < n && claimFixture.err == nil; done += perTx {
			claimFixture.err = s.db.Update(func(tx *bolt.Tx) error {
				for i := 0; i < perTx && done+i < n; i++ {
					ev.Received = t0.Add(time.Duration(done+i) * time.Millisecond)
					if err := s.applyOne(relay.AppendRequest{Event: ev, Hooks: []string{"h"}})(tx); err != nil {
						return err
					}
				}
				return nil
			})
		}
	})
	if claimFixture.err != nil {
		b.Fatal(claimFixture.err)
	}
	s, err := Open(claimFixture.dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// claimTasks is the queue size for BenchmarkClaim; HOOKRELAY_BENCH_TASKS
// overrides the default of one million.
func claimTasks() int {
	if v, err := strconv.Atoi(os.Getenv("HOOKRELAY_BENCH_TASKS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}

// BenchmarkClaim claims 64 due deliveries from the head of a queue of a
// million, skipping 64 in flight, as a hook runner does.
func BenchmarkClaim(b *testing.B) {
	n := claimTasks()
	s := claimStore(b, n)
	inflight := map[uint64]bool{}
	head, _, err := s.Claim(context.Background(), "h", t0.Add(time.Hour*24*365), 64, nil)
	if err != nil || len(head) != 64 {
		b.Fatalf("claim head: %d, %v", len(head), err)
	}
	for _, d := range head {
		inflight[d.TaskID] = true
	}
	skip := func(id uint64) bool { return inflight[id] }
	now := t0.Add(time.Duration(n) * time.Millisecond)
	b.ResetTimer()
	for range b.N {
		got, _, err := s.Claim(context.Background(), "h", now, 64, skip)
		if err != nil || len(got) != 64 {
			b.Fatalf("claim: %d, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(n), "queued")
}

// BenchmarkComplete records attempt outcomes (a retry each), 64 per
// commit, as the writer batches them.
func BenchmarkComplete(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ev := benchEvent(256)
	for range b.N {
		if _, err := s.Append(context.Background(), relay.AppendRequest{Event: ev, Hooks: []string{"h"}}); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	ds, _, err := s.Claim(context.Background(), "h", time.Now().Add(time.Hour), b.N, nil)
	if err != nil || len(ds) != b.N {
		b.Fatalf("claim: %d, %v", len(ds), err)
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, d := range ds {
		sem <- struct{}{}
		wg.Add(1)
		s.Complete(relay.Outcome{Delivery: d, State: relay.StatePending, Next: d.DueAt.Add(time.Hour),
			Attempt: relay.Attempt{N: 1, At: time.Now(), Status: 500, Error: "receiver answered 500", Excerpt: "oops"}},
			func(err error) {
				if err != nil {
					b.Error(err)
				}
				<-sem
				wg.Done()
			})
	}
	wg.Wait()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if claimFixture.dir != "" {
		os.RemoveAll(claimFixture.dir)
	}
	os.Exit(code)
}
