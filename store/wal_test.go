package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookrelay/relay"
)

// holdWriter keeps the bbolt writer inside a transaction until release
// is called, so appends are logged (and acknowledged) but not copied into
// bbolt: the state a crash can leave behind.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	block := make(chan struct{})
	started := make(chan struct{})
	var startOnce, releaseOnce sync.Once
	go s.submit(op{fn: func(*bolt.Tx) error {
		startOnce.Do(func() { close(started) })
		<-block
		return nil
	}, done: func(error) {}})
	<-started
	release = func() { releaseOnce.Do(func() { close(block) }) }
	t.Cleanup(release)
	return release
}

// crashImage copies the data directory as it is on disk now, as if the
// machine had stopped at this instant, and returns the copy.
func crashImage(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy data dir: %v", err)
	}
	return dst
}

func appendN(t *testing.T, s *Store, n int, prefix string, hooks []string, body []byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("%s%d", prefix, i)
			ev := event(id, t0)
			if body != nil {
				ev.Body = body
			}
			_, err := s.Append(context.Background(), relay.AppendRequest{Event: ev, Hooks: hooks,
				DedupKey: "publisher:pos\x00" + id, DedupUntil: t0.Add(72 * 60 * 60 * 1e9)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("append: %v", err)
		}
	}
}

func TestLogRecoversAcknowledgedEvents(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	release := holdWriter(t, s)
	appendN(t, s, 50, "e", []string{"a", "b"}, nil)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Flush(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("flush with the writer held = %v; the events must not be in bbolt yet", err)
	}
	img := crashImage(t, dir)
	release()

	r := openTest(t, img)
	ctx := context.Background()
	c, err := r.Counts(ctx)
	if err != nil || c.Events != 50 || c.Pending != 100 {
		t.Fatalf("after recovery counts = %+v, %v; want 50 events, 100 deliveries", c, err)
	}
	got, _, err := r.Claim(ctx, "b", t0, 100, nil)
	if err != nil || len(got) != 50 {
		t.Fatalf("claim = %d, %v", len(got), err)
	}
	ids := map[string]bool{}
	for _, d := range got {
		if string(d.Event.Body) != `{"id":"`+d.Event.ID+`"}` {
			t.Fatalf("delivery %s body = %q", d.Event.ID, d.Event.Body)
		}
		ids[d.Event.ID] = true
	}
	if len(ids) != 50 {
		t.Fatalf("%d distinct events recovered, want 50", len(ids))
	}
	// The dedup entries came back with the events, and numbers go on.
	dup := mustAppend(t, r, relay.AppendRequest{Event: event("e7", t0), Hooks: []string{"a"},
		DedupKey: "publisher:pos\x00e7", DedupUntil: t0.Add(1e12)})
	if !dup.Duplicate || dup.EventID != "e7" {
		t.Fatalf("re-append of a recovered event = %+v, want duplicate", dup)
	}
	fresh := mustAppend(t, r, relay.AppendRequest{Event: event("new", t0), Hooks: []string{"a"}})
	if fresh.Seq != 51 {
		t.Fatalf("seq after recovery = %d, want 51", fresh.Seq)
	}
}

func TestLogIgnoresTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	release := holdWriter(t, s)
	appendN(t, s, 10, "e", []string{"a"}, nil)
	img := crashImage(t, dir)
	release()

	// A record cut short by the crash after the last acknowledged one.
	seg := onlySegment(t, img)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	_, last, _ := scanSegment(data, nil)
	end := validEnd(data)
	if last != 10 {
		t.Fatalf("segment holds records up to %d, want 10", last)
	}
	e := newAppendEntry(&relay.AppendRequest{Event: event("torn", t0), Hooks: []string{"a"}})
	rec := appendRecord(nil, 11, e.appendPayload)
	copy(data[end:], rec[:len(rec)/2])
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}

	r, err := Open(img, Options{})
	if err != nil {
		t.Fatalf("open with a torn tail: %v", err)
	}
	if c, _ := r.Counts(context.Background()); c.Events != 10 {
		t.Fatalf("events = %d, want 10", c.Events)
	}
	res := mustAppend(t, r, relay.AppendRequest{Event: event("after", t0), Hooks: []string{"a"}})
	if res.Seq != 11 {
		t.Fatalf("seq = %d, want 11", res.Seq)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openTest(t, img)
	got, _, err := r.Claim(context.Background(), "a", t0, 100, nil)
	if err != nil || len(got) != 11 || got[10].Event.ID != "after" && got[0].Event.ID != "after" {
		t.Fatalf("claim after reopen = %d, %v", len(got), err)
	}
}

func onlySegment(t *testing.T, dir string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, walDirName, "*"+walExt))
	if len(segs) != 1 {
		t.Fatalf("log segments = %v, want one", segs)
	}
	return segs[0]
}

// validEnd is the offset where a segment's valid records end.
func validEnd(data []byte) int {
	off := 0
	scanSegment(data, func(_ uint64, payload []byte) error {
		off += walHeaderSize + len(payload)
		return nil
	})
	return off
}

func TestLogSegmentsRotateAndRecycle(t *testing.T) {
	dir := t.TempDir()
	opts := Options{LogSegmentSize: 64 << 10}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte{'x'}, 1000)
	for round := range 10 {
		appendN(t, s, 100, fmt.Sprintf("r%d-", round), []string{"a"}, body)
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		// 1 MB goes through 64 KiB segments: only those not yet copied
		// when the log moves on may add to the one written and a spare.
		if segs, _ := filepath.Glob(filepath.Join(dir, walDirName, "*"+walExt)); len(segs) > 5 {
			t.Fatalf("round %d: %d log segments; copied ones must be recycled", round, len(segs))
		}
	}
	// Now several segments' worth logged and not applied, then a crash.
	release := holdWriter(t, s)
	appendN(t, s, 300, "held-", []string{"a"}, body)
	if segs, _ := filepath.Glob(filepath.Join(dir, walDirName, "*"+walExt)); len(segs) < 4 {
		t.Fatalf("%d log segments for 300 KiB unapplied in 64 KiB segments", len(segs))
	}
	img := crashImage(t, dir)
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := Open(img, opts)
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	defer r.Close()
	c, err := r.Counts(context.Background())
	if err != nil || c.Events != 1300 || c.Pending != 1300 {
		t.Fatalf("after recovery counts = %+v, %v; want 1300", c, err)
	}
	// Recovery leaves the log small again.
	if segs, _ := filepath.Glob(filepath.Join(img, walDirName, "*"+walExt)); len(segs) > 2 {
		t.Fatalf("%d log segments after recovery, want at most 2", len(segs))
	}
}

func TestLogMissingRecordsRefused(t *testing.T) {
	dir := t.TempDir()
	opts := Options{LogSegmentSize: 64 << 10}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	appendN(t, s, 200, "e", []string{"a"}, bytes.Repeat([]byte{'x'}, 1000))
	img := crashImage(t, dir)
	release()
	s.Close()

	segs, _ := filepath.Glob(filepath.Join(img, walDirName, "*"+walExt))
	slices.Sort(segs)
	if len(segs) < 2 {
		t.Fatalf("segments = %v", segs)
	}
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	_, err = Open(img, opts)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("open with a log segment gone = %v, want an error naming the missing records", err)
	}
}

func TestDedupWhileLogged(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	req := relay.AppendRequest{Event: event("k", t0), Hooks: []string{"a"}, DedupKey: "publisher:pos\x00k", DedupUntil: t0.Add(1e12)}
	release := holdWriter(t, s)
	first, err := s.Append(ctx, req)
	if err != nil || first.Duplicate {
		t.Fatalf("first append = %+v, %v", first, err)
	}
	// Not in bbolt yet: the log writer must still know it.
	again, err := s.Append(ctx, req)
	if err != nil || !again.Duplicate || again.Seq != first.Seq || again.EventID != "k" || again.Deliveries != 1 {
		t.Fatalf("append while logged = %+v, %v; want duplicate of %+v", again, err, first)
	}
	// Two of the same key in one batch: one event.
	var wg sync.WaitGroup
	results := make([]relay.AppendResult, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := req
			r.Event.ID, r.DedupKey = "same", "publisher:pos\x00same"
			results[i], _ = s.Append(ctx, r)
		}()
	}
	wg.Wait()
	originals := 0
	for _, r := range results {
		if !r.Duplicate {
			originals++
		}
	}
	if originals != 1 {
		t.Fatalf("%d originals among concurrent appends of one key, want 1: %+v", originals, results)
	}
	release()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if after := mustAppend(t, s, req); !after.Duplicate || after.Seq != first.Seq {
		t.Fatalf("append after copy = %+v, want duplicate of seq %d", after, first.Seq)
	}
	if c, _ := s.Counts(ctx); c.Events != 2 {
		t.Fatalf("events = %d, want 2", c.Events)
	}
}

func TestCloseCopiesLoggedEvents(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	appendN(t, s, 20, "e", []string{"a"}, nil)
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// bbolt alone, without the log, has them all.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bEvents).Stats().KeyN; n != 20 {
			t.Errorf("events in bbolt after Close = %d, want 20", n)
		}
		return nil
	})
}

func TestNotifyAfterCopy(t *testing.T) {
	s := openTest(t, t.TempDir())
	got := make(chan []string, 16)
	s.Notify(func(hooks []string) { got <- hooks })
	release := holdWriter(t, s)
	mustLog := func(hooks ...string) {
		if _, err := s.Append(context.Background(), relay.AppendRequest{Event: event("n", t0), Hooks: hooks}); err != nil {
			t.Fatal(err)
		}
	}
	mustLog("a", "b")
	select {
	case h := <-got:
		t.Fatalf("notified of %v before the deliveries were claimable", h)
	default:
	}
	release()
	hooks := <-got
	slices.Sort(hooks)
	if !slices.Equal(hooks, []string{"a", "b"}) {
		t.Fatalf("notified hooks = %v", hooks)
	}
	if ds, _, err := s.Claim(context.Background(), "a", t0, 10, nil); err != nil || len(ds) != 1 {
		t.Fatalf("claim after notify = %d, %v", len(ds), err)
	}
}

func FuzzLogSegment(f *testing.F) {
	e := newAppendEntry(&relay.AppendRequest{Event: event("f", t0), Hooks: []string{"a"}, DedupKey: "k", DedupUntil: t0})
	valid := appendRecord(nil, 1, e.appendPayload)
	valid = appendRecord(valid, 2, e.appendPayload)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(make([]byte, 64))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var prev uint64
		first, last, err := scanSegment(data, func(seq uint64, payload []byte) error {
			if prev != 0 && seq != prev+1 {
				t.Fatalf("seq %d after %d", seq, prev)
			}
			prev = seq
			// Any payload that passes the checksum must decode or fail
			// cleanly, never panic.
			decodeLogEntry(seq, payload)
			return nil
		})
		if err != nil || last < first || (first == 0) != (last == 0) {
			t.Fatalf("scan = %d..%d, %v", first, last, err)
		}
	})
}

func TestLoggedOutcomeHidesDeliveryUntilCopied(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	mustAppend(t, s, relay.AppendRequest{Event: event("e1", t0), Hooks: []string{"a"}})
	got, _, err := s.Claim(ctx, "a", t0, 10, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim = %d, %v", len(got), err)
	}
	release := holdWriter(t, s)
	retryAt := t0.Add(time.Minute)
	done := make(chan error, 1)
	s.Complete(relay.Outcome{Delivery: got[0], State: relay.StatePending, Next: retryAt,
		Attempt: relay.Attempt{N: 1, At: t0, Status: 503}}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Durable in the log, not in bbolt: the old due entry is still there
	// and must not be handed out again.
	if again, _, err := s.Claim(ctx, "a", t0.Add(time.Hour), 10, nil); err != nil || len(again) != 0 {
		t.Fatalf("claim while the outcome is only logged = %d, %v; want none", len(again), err)
	}
	release()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	again, _, err := s.Claim(ctx, "a", retryAt, 10, nil)
	if err != nil || len(again) != 1 || again[0].Attempts != 1 || !again[0].DueAt.Equal(retryAt) {
		t.Fatalf("claim after copy = %+v, %v; want the retry", again, err)
	}
}

func TestLogRecoversOutcomes(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := context.Background()
	for _, id := range []string{"ok", "retry", "dead"} {
		mustAppend(t, s, relay.AppendRequest{Event: event(id, t0), Hooks: []string{"a"}})
	}
	got, _, err := s.Claim(ctx, "a", t0, 10, nil)
	if err != nil || len(got) != 3 {
		t.Fatalf("claim = %d, %v", len(got), err)
	}
	release := holdWriter(t, s)
	states := map[string]relay.OutcomeState{"ok": relay.StateDelivered, "retry": relay.StatePending, "dead": relay.StateDead}
	var wg sync.WaitGroup
	for _, d := range got {
		wg.Add(1)
		s.Complete(relay.Outcome{Delivery: d, State: states[d.Event.ID], Next: t0.Add(time.Minute),
			Attempt: relay.Attempt{N: 1, At: t0, Status: 500, Error: "status 500"}}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	img := crashImage(t, dir)
	release()

	r := openTest(t, img)
	c, err := r.Counts(ctx)
	if err != nil || c.Pending != 1 || c.Dead != 1 {
		t.Fatalf("after recovery counts = %+v, %v; want 1 pending (the retry), 1 dead", c, err)
	}
	left, _, err := r.Claim(ctx, "a", t0.Add(time.Hour), 10, nil)
	if err != nil || len(left) != 1 || left[0].Event.ID != "retry" || left[0].Attempts != 1 {
		t.Fatalf("claim after recovery = %+v, %v; want the retry with 1 attempt", left, err)
	}
	info, attempts, err := r.Task(ctx, left[0].TaskID)
	if err != nil || info.Attempts != 1 || len(attempts) != 1 || attempts[0].Status != 500 {
		t.Fatalf("task after recovery = %+v, %+v, %v", info, attempts, err)
	}
}

// A segment left with a torn first record carries the name of the record
// it was to hold; the log must replace it, not keep a handle to it (and
// write there once the file's name belongs to another segment).
func TestLogReplacesSegmentWithTornFirstRecord(t *testing.T) {
	dir := t.TempDir()
	opts := Options{LogSegmentSize: 64 << 10}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 10, "a", []string{"h"}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The next record is number 11: a crash during the first write to a
	// new segment for it left half a record.
	e := newAppendEntry(&relay.AppendRequest{Event: event("torn", t0), Hooks: []string{"h"}})
	rec := appendRecord(nil, 11, e.appendPayload)
	torn := filepath.Join(dir, walDirName, segmentName(11))
	if err := os.WriteFile(torn, rec[:len(rec)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	if s, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Several segments' worth, acknowledged from the log alone, then a
	// crash: every one must come back.
	release := holdWriter(t, s)
	appendN(t, s, 200, "b", []string{"h"}, bytes.Repeat([]byte{'x'}, 1000))
	img := crashImage(t, dir)
	release()
	r, err := Open(img, opts)
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	defer r.Close()
	if c, err := r.Counts(context.Background()); err != nil || c.Events != 210 {
		t.Fatalf("after recovery counts = %+v, %v; want 210 events", c, err)
	}
}
