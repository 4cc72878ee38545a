package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookrelay/relay"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func event(id string, at time.Time) relay.Event {
	return relay.Event{ID: id, Source: "publisher:pos", Type: "payment.succeeded", Received: at, Body: []byte(`{"id":"` + id + `"}`)}
}

func mustAppend(t *testing.T, s *Store, req relay.AppendRequest) relay.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), req)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	// Claimable from here on.
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return res
}

func complete(t *testing.T, s *Store, o relay.Outcome) {
	t.Helper()
	ch := make(chan error, 1)
	s.Complete(o, func(err error) { ch <- err })
	if err := <-ch; err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func TestAppendClaimComplete(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	res := mustAppend(t, s, relay.AppendRequest{Event: event("e1", t0), Hooks: []string{"a", "b"}})
	if res.Duplicate || res.Deliveries != 2 || res.EventID != "e1" || res.Seq == 0 {
		t.Fatalf("append result = %+v", res)
	}

	got, next, err := s.Claim(ctx, "a", t0, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !next.IsZero() {
		t.Fatalf("claim = %d deliveries, next %v; want 1, zero", len(got), next)
	}
	d := got[0]
	if d.Event.ID != "e1" || string(d.Event.Body) != `{"id":"e1"}` || d.Event.Type != "payment.succeeded" || d.Attempts != 0 || !d.DueAt.Equal(t0) {
		t.Fatalf("delivery = %+v", d)
	}
	// Not due before its time.
	if got, next, _ := s.Claim(ctx, "a", t0.Add(-time.Second), 10, nil); len(got) != 0 || !next.Equal(t0) {
		t.Fatalf("early claim = %d, next %v", len(got), next)
	}

	// Failed attempt: rescheduled.
	retryAt := t0.Add(5 * time.Second)
	complete(t, s, relay.Outcome{Delivery: d, State: relay.StatePending, Next: retryAt,
		Attempt: relay.Attempt{N: 1, At: t0, Status: 500, Latency: time.Millisecond, Error: "status 500", Excerpt: "boom"}})
	if got, next, _ := s.Claim(ctx, "a", t0.Add(time.Second), 10, nil); len(got) != 0 || !next.Equal(retryAt) {
		t.Fatalf("claim after retry = %d, next %v; want 0, %v", len(got), next, retryAt)
	}
	got, _, _ = s.Claim(ctx, "a", retryAt, 10, nil)
	if len(got) != 1 || got[0].Attempts != 1 {
		t.Fatalf("retry claim = %+v", got)
	}
	complete(t, s, relay.Outcome{Delivery: got[0], State: relay.StateDelivered,
		Attempt: relay.Attempt{N: 2, At: retryAt, Status: 204, Latency: 2 * time.Millisecond}})
	// A repeated completion of the same claim changes nothing.
	complete(t, s, relay.Outcome{Delivery: got[0], State: relay.StateDead, Attempt: relay.Attempt{N: 2, At: retryAt}})

	if got, next, _ := s.Claim(ctx, "a", t0.Add(time.Hour), 10, nil); len(got) != 0 || !next.IsZero() {
		t.Fatalf("claim after delivery = %d, next %v", len(got), next)
	}
	info, attempts, err := s.Task(ctx, d.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != relay.StateDelivered || info.Attempts != 2 || info.Hook != "a" || info.EventSeq != res.Seq {
		t.Fatalf("task = %+v", info)
	}
	if len(attempts) != 2 || attempts[0].Status != 500 || attempts[0].Excerpt != "boom" || attempts[0].Error != "status 500" || attempts[1].Status != 204 {
		t.Fatalf("attempts = %+v", attempts)
	}
	// Hook b still has its delivery.
	if got, _, _ := s.Claim(ctx, "b", t0, 10, nil); len(got) != 1 {
		t.Fatalf("hook b claim = %d", len(got))
	}
	if _, _, err := s.Task(ctx, 999); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("missing task err = %v", err)
	}
}

func TestClaimOrderLimitSkip(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	// Appended out of time order; claims come back in time order.
	for i, off := range []int{3, 1, 2, 0, 4} {
		mustAppend(t, s, relay.AppendRequest{Event: event(fmt.Sprint("e", i), t0.Add(time.Duration(off)*time.Second)), Hooks: []string{"h"}})
	}
	got, next, err := s.Claim(ctx, "h", t0.Add(10*time.Second), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Event.ID != "e3" || got[1].Event.ID != "e1" {
		t.Fatalf("first two = %v", ids(got))
	}
	if !next.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("next = %v, want the third due time", next)
	}
	skip := map[uint64]bool{got[0].TaskID: true, got[1].TaskID: true}
	got, _, _ = s.Claim(ctx, "h", t0.Add(10*time.Second), 10, func(id uint64) bool { return skip[id] })
	if fmt.Sprint(ids(got)) != "[e2 e0 e4]" {
		t.Fatalf("after skip = %v", ids(got))
	}
}

func ids(ds []relay.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Event.ID)
	}
	return out
}

func TestDedup(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	req := relay.AppendRequest{Event: event("x", t0), DedupKey: "publisher:pos\x00x", DedupUntil: t0.Add(time.Hour), Hooks: []string{"h"}}
	first := mustAppend(t, s, req)
	req.Event.ID = "other"
	req.Event.Received = t0.Add(time.Minute)
	dup := mustAppend(t, s, req)
	if !dup.Duplicate || dup.Seq != first.Seq || dup.EventID != "x" || dup.Deliveries != 1 {
		t.Fatalf("dup = %+v, first %+v", dup, first)
	}
	// Survives a restart.
	s.Close()
	s = openTest(t, dir)
	if dup := mustAppend(t, s, req); !dup.Duplicate {
		t.Fatalf("after reopen not a duplicate: %+v", dup)
	}
	// Expired: stored anew.
	req.Event.Received = t0.Add(2 * time.Hour)
	req.DedupUntil = t0.Add(3 * time.Hour)
	again := mustAppend(t, s, req)
	if again.Duplicate || again.Seq == first.Seq {
		t.Fatalf("after expiry = %+v", again)
	}
	if got, _, _ := s.Claim(context.Background(), "h", t0.Add(3*time.Hour), 10, nil); len(got) != 2 {
		t.Fatalf("deliveries = %d, want 2 (one per stored event)", len(got))
	}
}

func TestSweepRemovesOnlyExpired(t *testing.T) {
	now := t0
	s, err := Open(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5 {
		mustAppend(t, s, relay.AppendRequest{Event: event(fmt.Sprint(i), t0), DedupKey: fmt.Sprint("k", i), DedupUntil: t0.Add(time.Duration(i+1) * time.Minute)})
	}
	now = t0.Add(3*time.Minute + time.Second)
	n, err := s.sweepOnce(context.Background(), 2)
	if err != nil || n != 2 {
		t.Fatalf("sweep = %d, %v; want 2 (capped)", n, err)
	}
	if n, _ := s.sweepOnce(context.Background(), 100); n != 1 {
		t.Fatalf("second sweep = %d, want 1", n)
	}
	var left []string
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bDedup).ForEach(func(k, _ []byte) error { left = append(left, string(k)); return nil })
	})
	if fmt.Sprint(left) != "[k3 k4]" {
		t.Fatalf("left = %v", left)
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	for i := range 100 {
		mustAppend(t, s, relay.AppendRequest{Event: event(fmt.Sprint(i), t0), Hooks: []string{"h", "gone"}})
	}
	s.Close()
	s = openTest(t, dir)
	got, _, err := s.Claim(context.Background(), "h", t0, 1000, nil)
	if err != nil || len(got) != 100 {
		t.Fatalf("after reopen: %d, %v", len(got), err)
	}
	hooks, err := s.QueuedHooks(context.Background())
	if err != nil || fmt.Sprint(hooks) != "[gone h]" {
		t.Fatalf("queued hooks = %v, %v", hooks, err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	start := time.Now()
	_, err := Open(dir, Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open err = %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("second open took %v", time.Since(start))
	}
}

func TestGroupCommitSharesTransactions(t *testing.T) {
	s := openTest(t, t.TempDir())
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(context.Background(), relay.AppendRequest{Event: event(fmt.Sprint(i), t0), Hooks: []string{"h"}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.LogRecords != n {
		t.Fatalf("logged = %d, want %d", st.LogRecords, n)
	}
	if st.LogSyncs >= n {
		t.Fatalf("log syncs = %d for %d concurrent appends: no batching", st.LogSyncs, n)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Counts(context.Background()); err != nil || c.Events != n || c.Pending != n {
		t.Fatalf("counts = %+v, %v; want %d events and deliveries", c, err, n)
	}
}

func TestFailingOpDoesNotFailBatch(t *testing.T) {
	s := openTest(t, t.TempDir())
	// Stop the writer from draining while the batch is assembled.
	block := make(chan struct{})
	started := make(chan struct{})
	go s.submit(op{fn: func(*bolt.Tx) error { close(started); <-block; return nil }, done: func(error) {}})
	<-started
	results := make([]chan error, 3)
	for i := range results {
		results[i] = make(chan error, 1)
		fail := i == 1
		ch := results[i]
		s.submit(op{fn: func(tx *bolt.Tx) error {
			if fail {
				return errors.New("bad op")
			}
			return tx.Bucket(bMeta).Put([]byte(fmt.Sprint("k", len(results))), []byte("v"))
		}, done: func(err error) { ch <- err }})
	}
	close(block)
	for i, ch := range results {
		err := <-ch
		if (i == 1) != (err != nil) {
			t.Fatalf("op %d err = %v", i, err)
		}
	}
}

func TestClosedStoreRefuses(t *testing.T) {
	s := openTest(t, t.TempDir())
	s.Close()
	if _, err := s.Append(context.Background(), relay.AppendRequest{Event: event("x", t0)}); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("append after close = %v", err)
	}
}

// Releasing mapped pages must leave every read intact.
func TestReleaseMappedKeepsData(t *testing.T) {
	s := openTest(t, t.TempDir())
	for i := range 200 {
		mustAppend(t, s, relay.AppendRequest{Event: event(fmt.Sprint(i), t0), Hooks: []string{"h"}})
	}
	before, _, err := s.Claim(context.Background(), "h", t0, 1000, nil)
	if err != nil || len(before) != 200 {
		t.Fatalf("claim: %d, %v", len(before), err)
	}
	if err := s.releaseMapped(); err != nil {
		t.Fatal(err)
	}
	after, _, err := s.Claim(context.Background(), "h", t0, 1000, nil)
	if err != nil || len(after) != 200 {
		t.Fatalf("claim after release: %d, %v", len(after), err)
	}
	for i := range after {
		if string(after[i].Event.Body) != string(before[i].Event.Body) {
			t.Fatalf("event %d changed: %q vs %q", i, after[i].Event.Body, before[i].Event.Body)
		}
	}
	mustAppend(t, s, relay.AppendRequest{Event: event("after", t0), Hooks: []string{"h"}})
}

// A delivery that has had no attempt yet is described from its event.
func TestTaskBeforeFirstAttempt(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	res := mustAppend(t, s, relay.AppendRequest{Event: event("e", t0), Hooks: []string{"a", "b", "c"}})
	got, _, err := s.Claim(ctx, "c", t0, 10, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", got, err)
	}
	info, attempts, err := s.Task(ctx, got[0].TaskID)
	if err != nil {
		t.Fatal(err)
	}
	want := relay.TaskInfo{TaskID: got[0].TaskID, Hook: "c", EventSeq: res.Seq, State: relay.StatePending, Created: t0, NextAt: t0}
	if !info.Created.Equal(want.Created) || !info.NextAt.Equal(want.NextAt) {
		t.Fatalf("times = %v %v", info.Created, info.NextAt)
	}
	info.Created, info.NextAt, want.Created, want.NextAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if info != want || len(attempts) != 0 {
		t.Fatalf("task = %+v (%d attempts), want %+v", info, len(attempts), want)
	}
	// Ids past the event's hooks do not exist.
	if _, _, err := s.Task(ctx, got[0].TaskID+1); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("task past the hooks: %v", err)
	}
}

func TestAppendRefusesOversizedFanout(t *testing.T) {
	s := openTest(t, t.TempDir())
	hooks := make([]string, relay.MaxFanout+1)
	for i := range hooks {
		hooks[i] = fmt.Sprint("h", i)
	}
	if _, err := s.Append(context.Background(), relay.AppendRequest{Event: event("x", t0), Hooks: hooks}); err == nil {
		t.Fatal("append with too many hooks accepted")
	}
	c, err := s.Counts(context.Background())
	if err != nil || c.Events != 0 {
		t.Fatalf("counts after refusal = %+v, %v", c, err)
	}
}

// The publish handler reuses its buffers once Append has returned: what
// was stored must not change when they are overwritten, in the log or
// after the copy into bbolt, nor across a reopen.
func TestAppendKeepsNoReferenceToTheRequest(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	body := []byte(`{"id":"e1","data":"original"}`)
	ev := event("e1", t0)
	ev.Body = body
	ev.Headers = []relay.Header{{Name: "X-Request-Id", Value: "r1"}}
	if _, err := s.Append(context.Background(), relay.AppendRequest{Event: ev, Hooks: []string{"h"}}); err != nil {
		t.Fatal(err)
	}
	copy(body, bytes.Repeat([]byte{'#'}, len(body)))
	check := func(when string) {
		t.Helper()
		got, _, err := s.Claim(context.Background(), "h", t0, 10, nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: claim = %d, %v", when, len(got), err)
		}
		if b := string(got[0].Event.Body); b != `{"id":"e1","data":"original"}` {
			t.Fatalf("%s: body = %s", when, b)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after the copy")
	s.Close()
	s = openTest(t, dir)
	check("after a reopen")
}

// When the log is as far ahead of bbolt as allowed, the bbolt writer
// copies at once instead of gathering for CopyDelay: otherwise both
// writers would wait for the delay each time the limit is reached.
func TestLogAtItsLagLimitIsCopiedAtOnce(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MaxLogLag: 64 << 10, CopyDelay: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := bytes.Repeat([]byte{'x'}, 16<<10)
	for i := range 40 { // ten times the limit
		ev := event(fmt.Sprint(i), t0)
		ev.Body = body
		if _, err := s.Append(ctx, relay.AppendRequest{Event: ev, Hooks: []string{"h"}}); err != nil {
			t.Fatalf("append %d: %v (the log writer waited for a copy that waited for the delay)", i, err)
		}
	}
}
