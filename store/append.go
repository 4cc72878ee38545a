package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookrelay/relay"
)

// The append path: callers encode their event; the log writer goroutine
// takes every append waiting, decides duplicates, numbers the new events,
// writes them to the log with one fdatasync and answers them all; the
// bbolt writer then copies them into the database (events, due entries,
// dedup index) in its own group commits, and only from then on can they
// be claimed.

// logEntry is one new event on its way through the log into bbolt.
type logEntry struct {
	seq        uint64
	event      []byte // encoded event record, hooks included
	hooks      []string
	received   time.Time
	dedupKey   []byte
	dedupUntil time.Time
}

// appendCall is one Append waiting for the log writer.
type appendCall struct {
	entry logEntry
	id    string
	res   relay.AppendResult
	err   error
	dup   bool
	done  chan struct{}
}

// pendingDedup is a dedup entry written to the log and not yet to bbolt.
type pendingDedup struct {
	seq        uint64
	id         string
	deliveries int
	until      uint64
}

func newLogEntry(req *relay.AppendRequest) logEntry {
	e := logEntry{
		event:    encodeEvent(&req.Event, req.Hooks),
		hooks:    req.Hooks,
		received: req.Event.Received,
	}
	if req.DedupKey != "" {
		e.dedupKey = []byte(req.DedupKey)
		e.dedupUntil = req.DedupUntil
	}
	return e
}

// appendPayload encodes e as a log record's payload: the event record,
// then the dedup key and its expiry when there is one.
func (e *logEntry) appendPayload(b []byte) []byte {
	b = appendBytes(b, e.event)
	b = appendBytes(b, e.dedupKey)
	if e.dedupKey != nil {
		b = binary.AppendVarint(b, e.dedupUntil.UnixNano())
	}
	return b
}

// decodeLogEntry reverses appendPayload. The entry aliases payload.
func decodeLogEntry(seq uint64, payload []byte) (logEntry, error) {
	r := reader{b: payload}
	e := logEntry{seq: seq, event: r.bytes()}
	if key := r.bytes(); len(key) > 0 {
		e.dedupKey = key
		e.dedupUntil = time.Unix(0, r.varint())
	}
	if r.err != nil {
		return logEntry{}, fmt.Errorf("log record %d: %w", seq, r.err)
	}
	ev, hooks, err := decodeEvent(e.event, true)
	if err != nil {
		return logEntry{}, fmt.Errorf("log record %d: %w", seq, err)
	}
	e.hooks, e.received = hooks, ev.Received
	return e, nil
}

// Append implements relay.Store. It returns once the event is in the
// log (fsync'd); its deliveries become claimable when the bbolt writer
// has copied it, shortly after, and the function given to Notify is told.
func (s *Store) Append(ctx context.Context, req relay.AppendRequest) (relay.AppendResult, error) {
	if len(req.Hooks) > relay.MaxFanout {
		return relay.AppendResult{}, fmt.Errorf("append event: %d hooks, at most %d", len(req.Hooks), relay.MaxFanout)
	}
	c := &appendCall{entry: newLogEntry(&req), id: req.Event.ID, done: make(chan struct{})}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return relay.AppendResult{}, fmt.Errorf("append event: %w", relay.ErrClosed)
	}
	if err := s.failure(); err != nil {
		s.mu.RUnlock()
		return relay.AppendResult{}, fmt.Errorf("append event: %w", err)
	}
	s.appends <- c
	s.mu.RUnlock()
	select {
	case <-c.done:
		if c.err != nil {
			return relay.AppendResult{}, fmt.Errorf("append event: %w", c.err)
		}
		return c.res, nil
	case <-ctx.Done():
		return relay.AppendResult{}, ctx.Err()
	}
}

// logWriter is the goroutine that owns the log.
func (s *Store) logWriter() {
	defer close(s.logDone)
	batch := make([]*appendCall, 0, s.maxBatch)
	for {
		select {
		case c := <-s.appends:
			batch = append(batch, c)
		case <-s.logQuit:
			// Appenders are gone (Close waited for them): log what they
			// left, then stop.
			for {
				select {
				case c := <-s.appends:
					batch = append(batch, c)
					if len(batch) < s.maxBatch {
						continue
					}
				default:
				}
				if len(batch) == 0 {
					return
				}
				s.logBatch(batch)
				clear(batch)
				batch = batch[:0]
			}
		}
	fill:
		for len(batch) < s.maxBatch {
			select {
			case c := <-s.appends:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		s.logBatch(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// logBatch logs calls with one write and one fdatasync and answers them.
func (s *Store) logBatch(calls []*appendCall) {
	defer func() {
		for _, c := range calls {
			close(c.done)
		}
	}()
	if err := s.failure(); err != nil {
		for _, c := range calls {
			c.err = err
		}
		return
	}
	s.findDuplicates(calls)

	buf := s.logBuf[:0]
	entries := make([]logEntry, 0, len(calls))
	logged := make([]*appendCall, 0, len(calls))
	var inBatch map[string]*appendCall
	for _, c := range calls {
		if c.err != nil || c.dup {
			continue
		}
		e := &c.entry
		if e.dedupKey != nil {
			if first := inBatch[string(e.dedupKey)]; first != nil {
				c.res = first.res
				c.res.Duplicate = true
				c.dup = true
				continue
			}
			if inBatch == nil {
				inBatch = make(map[string]*appendCall)
			}
			inBatch[string(e.dedupKey)] = c
		}
		e.seq = s.eventSeq.Add(1)
		c.res = relay.AppendResult{Seq: e.seq, EventID: c.id, Deliveries: len(e.hooks)}
		buf = appendRecord(buf, e.seq, e.appendPayload)
		entries = append(entries, *e)
		logged = append(logged, c)
	}
	if cap(buf) <= 4<<20 {
		s.logBuf = buf[:0]
	}
	if len(entries) == 0 {
		return
	}
	if err := s.waitLag(int64(len(buf))); err != nil {
		for _, c := range calls {
			c.err = err
		}
		return
	}
	start := time.Now()
	first, last := entries[0].seq, entries[len(entries)-1].seq
	if err := s.wal.write(buf, first, last, s.appliedSeq.Load()); err != nil {
		// What was written may or may not be on disk: stop appending
		// until a restart has recovered the log.
		s.fail(err)
		for _, c := range calls {
			c.err = err
		}
		return
	}
	elapsed := time.Since(start)
	s.statsMu.Lock()
	s.stats.LogSyncs++
	s.stats.LogRecords += uint64(len(entries))
	s.stats.LogTime += elapsed
	s.statsMu.Unlock()

	if inBatch != nil {
		s.pendMu.Lock()
		for _, c := range logged {
			if e := &c.entry; e.dedupKey != nil {
				s.pending[string(e.dedupKey)] = pendingDedup{seq: e.seq, id: c.id, deliveries: len(e.hooks), until: timeKey(e.dedupUntil)}
			}
		}
		s.pendMu.Unlock()
	}
	s.lagAdd(int64(len(buf)))
	bytes := int64(len(buf))
	weight := 0
	for _, e := range entries {
		weight += 1 + len(e.hooks)
	}
	s.ops <- op{weight: weight, fn: applyEntries(entries), done: func(err error) { s.applied(entries, bytes, err) }}
	if err := s.wal.prepare(); err != nil {
		s.log.Warn("zero-filling ahead of the log failed", "err", err)
	}
}

// findDuplicates answers the calls whose dedup key is live, in the log
// (not yet copied) or in bbolt.
func (s *Store) findDuplicates(calls []*appendCall) {
	var lookups []*appendCall
	s.pendMu.Lock()
	for _, c := range calls {
		e := &c.entry
		if e.dedupKey == nil {
			continue
		}
		if p, ok := s.pending[string(e.dedupKey)]; ok && p.until > timeKey(e.received) {
			c.res = relay.AppendResult{Seq: p.seq, EventID: p.id, Deliveries: p.deliveries, Duplicate: true}
			c.dup = true
			continue
		}
		lookups = append(lookups, c)
	}
	s.pendMu.Unlock()
	if len(lookups) == 0 {
		return
	}
	// The read starts after the pending entries were checked: an entry
	// removed from pending in between was committed before, so it is seen.
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, c := range lookups {
			dup, err := lookupDedup(tx, c.entry.dedupKey, c.entry.received)
			if err != nil {
				c.err = err
				continue
			}
			if dup != nil {
				c.res = *dup
				c.dup = true
			}
		}
		return nil
	})
	if err != nil {
		for _, c := range lookups {
			c.err = err
		}
	}
}

// applied is called by the bbolt writer once entries are committed (or
// failed to be).
func (s *Store) applied(entries []logEntry, bytes int64, err error) {
	if err != nil {
		s.fail(fmt.Errorf("copy logged events into the database: %w", err))
		return
	}
	s.appliedSeq.Store(entries[len(entries)-1].seq)
	s.statsMu.Lock()
	s.stats.Copied += uint64(len(entries))
	s.statsMu.Unlock()
	s.pendMu.Lock()
	for _, e := range entries {
		if e.dedupKey != nil {
			if p, ok := s.pending[string(e.dedupKey)]; ok && p.seq == e.seq {
				delete(s.pending, string(e.dedupKey))
			}
		}
	}
	s.pendMu.Unlock()
	s.lagAdd(-bytes)
	if fn := s.notify.Load(); fn != nil {
		(*fn)(hooksOf(entries))
	}
}

// hooksOf lists the distinct hooks of entries.
func hooksOf(entries []logEntry) []string {
	var out []string
	for _, e := range entries {
	next:
		for _, h := range e.hooks {
			for _, o := range out {
				if o == h {
					continue next
				}
			}
			out = append(out, h)
		}
	}
	return out
}

// applyEntries returns the write that copies entries into bbolt. It is
// idempotent, as an op must be.
func applyEntries(entries []logEntry) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		events := appendBucket(tx, bEvents)
		dueRoot := tx.Bucket(bDue)
		for i := range entries {
			e := &entries[i]
			if err := events.Put(u64key(e.seq), e.event); err != nil {
				return fmt.Errorf("put event: %w", err)
			}
			due := dueValue(e.seq, 0)
			for j, hook := range e.hooks {
				hb, err := hookBucket(dueRoot, []byte(hook))
				if err != nil {
					return err
				}
				if err := hb.Put(dueKey(e.received, taskID(e.seq, j)), due); err != nil {
					return fmt.Errorf("put due: %w", err)
				}
			}
			if e.dedupKey != nil {
				if err := tx.Bucket(bDedup).Put(e.dedupKey, dedupValue(e.seq, e.dedupUntil)); err != nil {
					return fmt.Errorf("put dedup: %w", err)
				}
				exp := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(e.dedupKey)), timeKey(e.dedupUntil))
				if err := appendBucket(tx, bDedupExp).Put(append(exp, e.dedupKey...), nil); err != nil {
					return fmt.Errorf("put dedup expiry: %w", err)
				}
			}
		}
		if last := entries[len(entries)-1].seq; events.Sequence() < last {
			if err := events.SetSequence(last); err != nil {
				return fmt.Errorf("set event sequence: %w", err)
			}
		}
		return nil
	}
}

// waitLag holds the log writer while the bytes logged and not yet in
// bbolt exceed the limit, so memory stays bounded when bbolt falls behind.
func (s *Store) waitLag(n int64) error {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	for s.lag > 0 && s.lag+n > s.maxLag {
		if err := s.failure(); err != nil {
			return err
		}
		s.lagCond.Wait()
	}
	return s.failure()
}

func (s *Store) lagAdd(n int64) {
	s.lagMu.Lock()
	s.lag += n
	if n < 0 {
		close(s.appliedSig)
		s.appliedSig = make(chan struct{})
		s.lagCond.Broadcast()
	}
	s.lagMu.Unlock()
}

// fail puts the store in a failed state: appends are refused until a
// restart recovers from the log.
func (s *Store) fail(err error) {
	s.failMu.Lock()
	if s.failErr == nil {
		s.failErr = fmt.Errorf("store failed, restart hookrelay to recover: %w", err)
		s.log.Error("store failed; appends are refused until a restart", "err", err)
	}
	s.failMu.Unlock()
	s.lagMu.Lock()
	s.lagCond.Broadcast()
	s.lagMu.Unlock()
}

func (s *Store) failure() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failErr
}

// Notify sets fn to be called, from the store's writer goroutine, with the
// hooks that have newly claimable deliveries each time appended events
// have been copied into bbolt. fn must not block. Set it before the first
// Append.
func (s *Store) Notify(fn func(hooks []string)) {
	s.notify.Store(&fn)
}

// Flush waits until every event appended before the call is claimable.
func (s *Store) Flush(ctx context.Context) error {
	target := s.eventSeq.Load()
	for {
		s.lagMu.Lock()
		sig := s.appliedSig
		s.lagMu.Unlock()
		if s.appliedSeq.Load() >= target {
			return nil
		}
		if err := s.failure(); err != nil {
			return err
		}
		select {
		case <-sig:
		case <-s.quit:
			return relay.ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
