package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookrelay/relay"
)

// appendFill packs pages of buckets whose keys grow monotonically: with
// bbolt's default of 0.5 every page of an append-only bucket stays half
// empty, doubling the file and the pages written per commit.
const appendFill = 0.9

func appendBucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	b := tx.Bucket(name)
	b.FillPercent = appendFill
	return b
}

func hookBucket(due *bolt.Bucket, hook []byte) (*bolt.Bucket, error) {
	if b := due.Bucket(hook); b != nil {
		return b, nil
	}
	b, err := due.CreateBucket(hook)
	if err != nil {
		return nil, fmt.Errorf("create queue for hook %q: %w", hook, err)
	}
	return b, nil
}

// lookupDedup returns the original event when key is live at now.
func lookupDedup(tx *bolt.Tx, key []byte, now time.Time) (*relay.AppendResult, error) {
	v := tx.Bucket(bDedup).Get(key)
	if v == nil {
		return nil, nil
	}
	seq, until, ok := parseDedupValue(v)
	if !ok {
		return nil, fmt.Errorf("dedup entry %q: %w", key, errCorrupt)
	}
	if until <= timeKey(now) {
		return nil, nil // expired; the sweeper has not reached it yet
	}
	ev := tx.Bucket(bEvents).Get(u64key(seq))
	if ev == nil {
		return nil, nil // the event is gone (retention): treat as new
	}
	id, n, err := eventID(ev)
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", seq, err)
	}
	return &relay.AppendResult{Seq: seq, EventID: id, Deliveries: n, Duplicate: true}, nil
}

// Claim implements relay.Store.
func (s *Store) Claim(ctx context.Context, hook string, now time.Time, limit int, skip func(uint64) bool) ([]relay.Delivery, time.Time, error) {
	var (
		out  []relay.Delivery
		next time.Time
	)
	if err := ctx.Err(); err != nil {
		return nil, next, err
	}
	nowKey := timeKey(now)
	// Held from before the read until the last pendingOutcomes check: a
	// copy that commits an outcome removes it from there only after.
	s.claimMu.RLock()
	defer s.claimMu.RUnlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		hb := tx.Bucket(bDue).Bucket([]byte(hook))
		if hb == nil {
			return nil
		}
		events := tx.Bucket(bEvents)
		c := hb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			at, id, ok := parseDueKey(k)
			if !ok {
				return fmt.Errorf("due key %x of hook %q: %w", k, hook, errCorrupt)
			}
			if at > nowKey {
				next = keyTime(at)
				return nil
			}
			if skip != nil && skip(id) {
				continue
			}
			if _, ok := s.pendingOutcomes[id]; ok {
				continue // attempted; its outcome is not copied yet
			}
			if len(out) >= limit {
				next = keyTime(at)
				return nil
			}
			seq, attempts, err := parseDueValue(v)
			if err != nil {
				return fmt.Errorf("due entry of task %d: %w", id, err)
			}
			raw := events.Get(u64key(seq))
			if raw == nil {
				return fmt.Errorf("task %d: event %d is missing: %w", id, seq, errCorrupt)
			}
			ev, _, err := decodeEvent(raw, false)
			if err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			out = append(out, relay.Delivery{TaskID: id, Hook: hook, DueAt: keyTime(at), Attempts: attempts, Event: ev})
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("claim deliveries of %q: %w", hook, err)
	}
	return out, next, nil
}

// QueuedHooks implements relay.Store.
func (s *Store) QueuedHooks(ctx context.Context) ([]string, error) {
	var names []string
	err := s.db.View(func(tx *bolt.Tx) error {
		due := tx.Bucket(bDue)
		return due.ForEachBucket(func(name []byte) error {
			if first, _ := due.Bucket(name).Cursor().First(); first != nil {
				names = append(names, string(name))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list queued hooks: %w", err)
	}
	return names, ctx.Err()
}

// Task implements relay.Store.
func (s *Store) Task(ctx context.Context, taskID uint64) (relay.TaskInfo, []relay.Attempt, error) {
	var (
		info     relay.TaskInfo
		attempts []relay.Attempt
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if raw := tx.Bucket(bTasks).Get(u64key(taskID)); raw != nil {
			if info, err = decodeTask(taskID, raw); err != nil {
				return err
			}
		} else if info, err = unattempted(tx, taskID); err != nil {
			return err
		}
		prefix := u64key(taskID)
		c := tx.Bucket(bAttempts).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			a, err := decodeAttempt(v)
			if err != nil {
				return fmt.Errorf("attempt %x: %w", k, err)
			}
			attempts = append(attempts, a)
		}
		return nil
	})
	if err != nil {
		return relay.TaskInfo{}, nil, fmt.Errorf("task %d: %w", taskID, err)
	}
	return info, attempts, ctx.Err()
}

// unattempted describes a delivery that has no outcome yet from its event.
func unattempted(tx *bolt.Tx, id uint64) (relay.TaskInfo, error) {
	seq, i := splitTaskID(id)
	raw := tx.Bucket(bEvents).Get(u64key(seq))
	if raw == nil {
		return relay.TaskInfo{}, relay.ErrNotFound
	}
	ev, hooks, err := decodeEvent(raw, true)
	if err != nil {
		return relay.TaskInfo{}, fmt.Errorf("event %d: %w", seq, err)
	}
	if i >= len(hooks) {
		return relay.TaskInfo{}, relay.ErrNotFound
	}
	return relay.TaskInfo{TaskID: id, Hook: hooks[i], EventSeq: seq, State: relay.StatePending,
		Created: ev.Received, NextAt: ev.Received}, nil
}

// sweep removes expired dedup entries in small batches, reading the
// expiry index from its start: it never scans live entries.
func (s *Store) sweep() {
	for {
		n, err := s.sweepOnce(context.Background(), 1000)
		if err != nil {
			if !errors.Is(err, relay.ErrClosed) {
				s.log.Error("dedup sweep failed", "err", err)
			}
			return
		}
		if n < 1000 {
			return
		}
	}
}

// sweepOnce deletes up to max expired dedup entries and reports how many.
func (s *Store) sweepOnce(ctx context.Context, max int) (int, error) {
	nowKey := timeKey(s.now())
	var n int
	err := s.submitWait(ctx, func(tx *bolt.Tx) error {
		n = 0
		exp := tx.Bucket(bDedupExp)
		dedup := tx.Bucket(bDedup)
		// Collect first: deleting under a moving cursor can skip keys.
		var expired [][]byte
		c := exp.Cursor()
		for k, _ := c.First(); k != nil && len(expired) < max; k, _ = c.Next() {
			if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > nowKey {
				break
			}
			expired = append(expired, bytes.Clone(k))
		}
		for _, k := range expired {
			key := k[8:]
			// The key may have been reused with a later expiry.
			if _, until, ok := parseDedupValue(dedup.Get(key)); ok && until <= nowKey {
				if err := dedup.Delete(key); err != nil {
					return err
				}
			}
			if err := exp.Delete(k); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweep dedup: %w", err)
	}
	return n, nil
}

// Counts are totals over the store, for status and tests.
type Counts struct {
	Events  int // events stored
	Pending int // deliveries waiting for an attempt
	Dead    int // dead-lettered deliveries
}

// Counts returns the totals. It reads bucket statistics, which costs time
// proportional to the number of pages, so it is for status and tests, not
// for the hot path.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.db.View(func(tx *bolt.Tx) error {
		c.Events = tx.Bucket(bEvents).Stats().KeyN
		c.Dead = tx.Bucket(bDead).Stats().KeyN
		due := tx.Bucket(bDue)
		return due.ForEachBucket(func(name []byte) error {
			c.Pending += due.Bucket(name).Stats().KeyN
			return nil
		})
	})
	if err != nil {
		return Counts{}, fmt.Errorf("count: %w", err)
	}
	return c, ctx.Err()
}

// Dead returns up to limit dead-lettered deliveries, oldest first.
func (s *Store) Dead(ctx context.Context, limit int) ([]relay.TaskInfo, error) {
	var out []relay.TaskInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		tasks := tx.Bucket(bTasks)
		c := tx.Bucket(bDead).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			_, id, ok := parseDueKey(k)
			if !ok {
				return fmt.Errorf("dead key %x: %w", k, errCorrupt)
			}
			t, err := decodeTask(id, tasks.Get(u64key(id)))
			if err != nil {
				return fmt.Errorf("task %d: %w", id, err)
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, ctx.Err()
}
