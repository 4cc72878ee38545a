package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookrelay/relay"
)

// The write path. Appends and outcomes are encoded by their callers; the
// log writer goroutine takes every one waiting, decides duplicates,
// numbers new events, writes them all to the log with one fdatasync and
// answers them. The bbolt writer then copies logged changes into the
// database (events, due entries, dedup index, attempts, task records) in
// its own, larger transactions: only from then on do claims see them.
// Until a logged outcome is copied, Claim skips its delivery, so a
// delivery is never handed out twice for one attempt.

// Kinds of log records.
const (
	recAppend  = 'a'
	recOutcome = 'o'
)

// logEntry is one change on its way through the log into bbolt.
type logEntry struct {
	lsn  uint64 // its record number in the log
	kind byte

	// recAppend
	seq        uint64
	event      []byte // encoded event record, hooks included
	hooks      []string
	received   time.Time
	dedupKey   []byte
	dedupUntil time.Time

	// recOutcome
	out *outcomeRecord
}

// outcomeRecord is what copying an outcome needs.
type outcomeRecord struct {
	taskID   uint64
	hook     string
	dueAt    time.Time // the due entry the delivery was claimed at
	attempts int       // attempts made before this one
	created  time.Time
	state    relay.OutcomeState
	next     time.Time
	n        int    // this attempt's number
	attempt  []byte // encoded attempt record
}

// logCall is one Append or Complete waiting for the log writer.
type logCall struct {
	entry logEntry
	id    string // the event id, for appends
	res   relay.AppendResult
	err   error
	dup   bool
	done  chan struct{} // appends: closed once answered
	cb    func(error)   // outcomes: called once durable
}

func (c *logCall) answer() {
	if c.cb != nil {
		c.cb(c.err)
		return
	}
	close(c.done)
}

// pendingDedup is a dedup entry logged and not yet copied into bbolt.
type pendingDedup struct {
	seq        uint64
	id         string
	deliveries int
	until      uint64
}

func newAppendEntry(req *relay.AppendRequest) logEntry {
	e := logEntry{
		kind:     recAppend,
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

func newOutcomeEntry(o *relay.Outcome) logEntry {
	d := &o.Delivery
	return logEntry{kind: recOutcome, out: &outcomeRecord{
		taskID: d.TaskID, hook: d.Hook, dueAt: d.DueAt, attempts: d.Attempts, created: d.Event.Received,
		state: o.State, next: o.Next, n: o.Attempt.N, attempt: encodeAttempt(&o.Attempt),
	}}
}

// appendPayload encodes e as a log record's payload.
func (e *logEntry) appendPayload(b []byte) []byte {
	b = append(b, e.kind)
	switch e.kind {
	case recAppend:
		b = binary.AppendUvarint(b, e.seq)
		b = appendBytes(b, e.event)
		b = appendBytes(b, e.dedupKey)
		if e.dedupKey != nil {
			b = binary.AppendVarint(b, e.dedupUntil.UnixNano())
		}
	case recOutcome:
		o := e.out
		b = binary.AppendUvarint(b, o.taskID)
		b = appendString(b, o.hook)
		b = binary.AppendVarint(b, o.dueAt.UnixNano())
		b = binary.AppendUvarint(b, uint64(o.attempts))
		b = binary.AppendVarint(b, o.created.UnixNano())
		b = append(b, byte(o.state))
		b = binary.AppendVarint(b, o.next.UnixNano())
		b = binary.AppendUvarint(b, uint64(o.n))
		b = appendBytes(b, o.attempt)
	}
	return b
}

// decodeLogEntry reverses appendPayload. The entry aliases payload.
func decodeLogEntry(lsn uint64, payload []byte) (logEntry, error) {
	r := reader{b: payload}
	e := logEntry{lsn: lsn, kind: r.byte()}
	switch e.kind {
	case recAppend:
		e.seq = r.uvarint()
		e.event = r.bytes()
		if key := r.bytes(); len(key) > 0 {
			e.dedupKey = key
			e.dedupUntil = time.Unix(0, r.varint())
		}
		if r.err != nil {
			break
		}
		ev, hooks, err := decodeEvent(e.event, true)
		if err != nil {
			return logEntry{}, fmt.Errorf("log record %d: %w", lsn, err)
		}
		e.hooks, e.received = hooks, ev.Received
	case recOutcome:
		o := &outcomeRecord{}
		o.taskID = r.uvarint()
		o.hook = r.string()
		o.dueAt = time.Unix(0, r.varint())
		o.attempts = int(r.uvarint())
		o.created = time.Unix(0, r.varint())
		o.state = relay.OutcomeState(r.byte())
		o.next = time.Unix(0, r.varint())
		o.n = int(r.uvarint())
		o.attempt = r.bytes()
		e.out = o
	default:
		if r.err == nil {
			return logEntry{}, fmt.Errorf("log record %d of kind %q: %w", lsn, e.kind, errCorrupt)
		}
	}
	if r.err != nil {
		return logEntry{}, fmt.Errorf("log record %d: %w", lsn, r.err)
	}
	return e, nil
}

// Append implements relay.Store. It returns once the event is in the
// log (fsync'd); its deliveries become claimable when the bbolt writer
// has copied it, shortly after, and the function given to Notify is told.
func (s *Store) Append(ctx context.Context, req relay.AppendRequest) (relay.AppendResult, error) {
	if len(req.Hooks) > relay.MaxFanout {
		return relay.AppendResult{}, fmt.Errorf("append event: %d hooks, at most %d", len(req.Hooks), relay.MaxFanout)
	}
	c := &logCall{entry: newAppendEntry(&req), id: req.Event.ID, done: make(chan struct{})}
	if err := s.sendLog(c); err != nil {
		return relay.AppendResult{}, fmt.Errorf("append event: %w", err)
	}
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

// Complete implements relay.Store. done is called once the outcome is in
// the log; until it is copied into bbolt, Claim skips the delivery.
func (s *Store) Complete(o relay.Outcome, done func(error)) {
	switch o.State {
	case relay.StatePending, relay.StateDelivered, relay.StateDead:
	default:
		done(fmt.Errorf("complete task %d: invalid state %d", o.Delivery.TaskID, o.State))
		return
	}
	c := &logCall{entry: newOutcomeEntry(&o), cb: done}
	if err := s.sendLog(c); err != nil {
		done(fmt.Errorf("record outcome of task %d: %w", o.Delivery.TaskID, err))
	}
}

func (s *Store) sendLog(c *logCall) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return relay.ErrClosed
	}
	if err := s.failure(); err != nil {
		return err
	}
	s.logCalls <- c
	return nil
}

// logWriter is the goroutine that owns the log.
func (s *Store) logWriter() {
	defer close(s.logDone)
	batch := make([]*logCall, 0, s.maxBatch)
	for {
		select {
		case c := <-s.logCalls:
			batch = append(batch, c)
		case <-s.logQuit:
			// Callers are gone (Close waited for them): log what they
			// left, then stop.
			for {
				select {
				case c := <-s.logCalls:
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
			case c := <-s.logCalls:
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
func (s *Store) logBatch(calls []*logCall) {
	begin := time.Now()
	var held time.Duration // in waitLag
	defer func() {
		s.statsMu.Lock()
		s.stats.LogBusy += time.Since(begin)
		s.stats.LogHeld += held
		s.statsMu.Unlock()
	}()
	answered := false
	answer := func() {
		if !answered {
			answered = true
			for _, c := range calls {
				c.answer()
			}
		}
	}
	defer answer()
	if err := s.failure(); err != nil {
		for _, c := range calls {
			c.err = err
		}
		return
	}
	s.findDuplicates(calls)

	buf := s.logBuf[:0]
	entries := make([]logEntry, 0, len(calls))
	logged := make([]*logCall, 0, len(calls))
	var inBatch map[string]*logCall
	lsn := s.lastLSN.Load()
	for _, c := range calls {
		if c.err != nil || c.dup {
			continue
		}
		e := &c.entry
		if e.kind == recAppend {
			if e.dedupKey != nil {
				if first := inBatch[string(e.dedupKey)]; first != nil {
					c.res = first.res
					c.res.Duplicate = true
					c.dup = true
					continue
				}
				if inBatch == nil {
					inBatch = make(map[string]*logCall)
				}
				inBatch[string(e.dedupKey)] = c
			}
			e.seq = s.eventSeq.Add(1)
			c.res = relay.AppendResult{Seq: e.seq, EventID: c.id, Deliveries: len(e.hooks)}
		}
		lsn++
		e.lsn = lsn
		buf = appendRecord(buf, lsn, e.appendPayload)
		entries = append(entries, *e)
		logged = append(logged, c)
	}
	if cap(buf) <= 4<<20 {
		s.logBuf = buf[:0]
	}
	if len(entries) == 0 {
		return
	}
	fail := func(err error) {
		for _, c := range logged {
			c.err = err
		}
	}
	var err error
	held, err = s.waitLag(int64(len(buf)))
	if err != nil {
		fail(err)
		return
	}
	start := time.Now()
	if err := s.wal.write(buf, entries[0].lsn, lsn, s.copiedLSN.Load()); err != nil {
		// What was written may or may not be on disk: stop writing until
		// a restart has recovered the log.
		s.fail(err)
		fail(err)
		return
	}
	s.lastLSN.Store(lsn)
	elapsed := time.Since(start)
	s.statsMu.Lock()
	s.stats.LogSyncs++
	s.stats.LogRecords += uint64(len(entries))
	s.stats.LogTime += elapsed
	s.statsMu.Unlock()

	// Before anyone is answered: a duplicate or a claim that follows the
	// answer must see what was logged.
	s.pendMu.Lock()
	for _, c := range logged {
		if e := &c.entry; e.kind == recAppend && e.dedupKey != nil {
			s.pending[string(e.dedupKey)] = pendingDedup{seq: e.seq, id: c.id, deliveries: len(e.hooks), until: timeKey(e.dedupUntil)}
		}
	}
	s.pendMu.Unlock()
	s.claimMu.Lock()
	for i := range entries {
		if o := entries[i].out; o != nil {
			s.pendingOutcomes[o.taskID] = struct{}{}
		}
	}
	s.claimMu.Unlock()
	// Answer before the hand-off to bbolt (which may wait for room) and
	// the zero-filling ahead: neither is the callers' business.
	answer()

	s.lagAdd(int64(len(buf)))
	bytes := int64(len(buf))
	weight := 0
	for i := range entries {
		weight += 1 + len(entries[i].hooks)
	}
	s.ops <- op{weight: weight, copy: true, fn: copyEntries(entries), done: func(err error) { s.copied(entries, bytes, err) }}
	if err := s.wal.prepare(); err != nil {
		s.log.Warn("zero-filling ahead of the log failed", "err", err)
	}
}

// findDuplicates answers the appends whose dedup key is live, in the log
// (not yet copied) or in bbolt.
func (s *Store) findDuplicates(calls []*logCall) {
	var lookups []*logCall
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

// copied is called by the bbolt writer once entries are committed (or
// failed to be).
func (s *Store) copied(entries []logEntry, bytes int64, err error) {
	if err != nil {
		s.fail(fmt.Errorf("copy logged changes into the database: %w", err))
		return
	}
	s.copiedLSN.Store(entries[len(entries)-1].lsn)
	events := 0
	var hooks []string
	s.pendMu.Lock()
	for i := range entries {
		e := &entries[i]
		switch {
		case e.kind == recAppend:
			events++
			hooks = addHooks(hooks, e.hooks...)
			if e.dedupKey != nil {
				if p, ok := s.pending[string(e.dedupKey)]; ok && p.seq == e.seq {
					delete(s.pending, string(e.dedupKey))
				}
			}
		case e.out.state == relay.StatePending:
			hooks = addHooks(hooks, e.out.hook)
		}
	}
	s.pendMu.Unlock()
	// A claim holds claimMu shared from its read until it has checked
	// pendingOutcomes, so it either saw the commit or sees the entry.
	s.claimMu.Lock()
	for i := range entries {
		if o := entries[i].out; o != nil {
			delete(s.pendingOutcomes, o.taskID)
		}
	}
	s.claimMu.Unlock()
	s.statsMu.Lock()
	s.stats.Copied += uint64(events)
	s.statsMu.Unlock()
	s.lagAdd(-bytes)
	if fn := s.notify.Load(); fn != nil && len(hooks) > 0 {
		(*fn)(hooks)
	}
}

// addHooks adds the names not yet in out.
func addHooks(out []string, names ...string) []string {
next:
	for _, h := range names {
		for _, o := range out {
			if o == h {
				continue next
			}
		}
		out = append(out, h)
	}
	return out
}

// copyEntries returns the write that copies entries into bbolt and
// records the last one's number. It is idempotent, as an op must be.
func copyEntries(entries []logEntry) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		events := appendBucket(tx, bEvents)
		var maxSeq uint64
		for i := range entries {
			e := &entries[i]
			var err error
			if e.kind == recAppend {
				err = copyAppend(tx, events, e)
				maxSeq = max(maxSeq, e.seq)
			} else {
				err = copyOutcome(tx, e.out)
			}
			if err != nil {
				return err
			}
		}
		if events.Sequence() < maxSeq {
			if err := events.SetSequence(maxSeq); err != nil {
				return fmt.Errorf("set event sequence: %w", err)
			}
		}
		if err := tx.Bucket(bMeta).Put(kLogCopied, u64key(entries[len(entries)-1].lsn)); err != nil {
			return fmt.Errorf("put log position: %w", err)
		}
		return nil
	}
}

func copyAppend(tx *bolt.Tx, events *bolt.Bucket, e *logEntry) error {
	if err := events.Put(u64key(e.seq), e.event); err != nil {
		return fmt.Errorf("put event: %w", err)
	}
	dueRoot := tx.Bucket(bDue)
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
	return nil
}

// copyOutcome records an attempt and moves its delivery on: delivered,
// rescheduled or dead-lettered.
func copyOutcome(tx *bolt.Tx, o *outcomeRecord) error {
	tasks := tx.Bucket(bTasks)
	var t relay.TaskInfo
	if raw := tasks.Get(u64key(o.taskID)); raw != nil {
		var err error
		if t, err = decodeTask(o.taskID, raw); err != nil {
			return fmt.Errorf("task %d: %w", o.taskID, err)
		}
	} else {
		// First outcome: until now the delivery was only its due entry.
		seq, _ := splitTaskID(o.taskID)
		t = relay.TaskInfo{TaskID: o.taskID, Hook: o.hook, EventSeq: seq, State: relay.StatePending, Created: o.created}
	}
	if t.State != relay.StatePending || t.Attempts != o.attempts {
		// Already moved on by another completion of the same claim;
		// recording it twice would corrupt the attempt count.
		return nil
	}
	hb := tx.Bucket(bDue).Bucket([]byte(o.hook))
	if hb != nil {
		if err := hb.Delete(dueKey(o.dueAt, o.taskID)); err != nil {
			return fmt.Errorf("delete due entry: %w", err)
		}
	}
	if err := appendBucket(tx, bAttempts).Put(attemptKey(o.taskID, o.n), o.attempt); err != nil {
		return fmt.Errorf("put attempt: %w", err)
	}
	t.Attempts = o.attempts + 1
	t.State = o.state
	t.NextAt = time.Time{}
	switch o.state {
	case relay.StatePending:
		t.NextAt = o.next
		if hb == nil {
			var err error
			if hb, err = hookBucket(tx.Bucket(bDue), []byte(o.hook)); err != nil {
				return err
			}
		}
		if err := hb.Put(dueKey(o.next, o.taskID), dueValue(t.EventSeq, t.Attempts)); err != nil {
			return fmt.Errorf("put due entry: %w", err)
		}
	case relay.StateDead:
		if err := appendBucket(tx, bDead).Put(dueKey(time.Unix(0, attemptAt(o.attempt)), o.taskID), nil); err != nil {
			return fmt.Errorf("put dead letter: %w", err)
		}
	case relay.StateDelivered:
	default:
		return fmt.Errorf("complete task %d: invalid state %d", o.taskID, o.state)
	}
	if err := appendBucket(tx, bTasks).Put(u64key(o.taskID), encodeTask(&t)); err != nil {
		return fmt.Errorf("put task: %w", err)
	}
	return nil
}

// attemptAt reads the time of an encoded attempt record.
func attemptAt(rec []byte) int64 {
	r := reader{b: rec}
	r.byte()
	r.uvarint()
	return r.varint()
}

// waitLag holds the log writer while the bytes logged and not yet in
// bbolt exceed the limit, so memory stays bounded when bbolt falls behind.
// It returns how long it held it.
func (s *Store) waitLag(n int64) (held time.Duration, err error) {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	var start time.Time
	for s.lag > 0 && s.lag+n > s.maxLag {
		if err := s.failure(); err != nil {
			return held, err
		}
		if start.IsZero() {
			start = time.Now()
		}
		s.lagCond.Wait()
		held = time.Since(start)
	}
	return held, s.failure()
}

// lagAdd counts n bytes more (or, negative, fewer) logged and not yet in
// bbolt. From half the limit on, the bbolt writer is told to copy at once
// instead of gathering: the log can then go on writing the other half
// while the copy commits, rather than both writers taking turns.
func (s *Store) lagAdd(n int64) {
	s.lagMu.Lock()
	s.lag += n
	if n < 0 {
		close(s.copiedSig)
		s.copiedSig = make(chan struct{})
		s.lagCond.Broadcast()
	} else if s.lag >= s.maxLag/2 {
		select {
		case s.copyNow <- struct{}{}:
		default:
		}
	}
	s.lagMu.Unlock()
}

// fail puts the store in a failed state: writes are refused until a
// restart recovers from the log.
func (s *Store) fail(err error) {
	s.failMu.Lock()
	if s.failErr == nil {
		s.failErr = fmt.Errorf("store failed, restart hookrelay to recover: %w", err)
		s.log.Error("store failed; writes are refused until a restart", "err", err)
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

// Notify implements relay.Store: fn is called from the bbolt writer
// goroutine after each copy, with the hooks it gave claimable deliveries.
func (s *Store) Notify(fn func(hooks []string)) {
	s.notify.Store(&fn)
}

// Flush waits until everything logged before the call is copied into
// bbolt, and so visible to Claim, Task and Counts.
func (s *Store) Flush(ctx context.Context) error {
	target := s.lastLSN.Load()
	for {
		s.lagMu.Lock()
		sig := s.copiedSig
		s.lagMu.Unlock()
		if s.copiedLSN.Load() >= target {
			return nil
		}
		if err := s.failure(); err != nil {
			return err
		}
		// An op that is not a copy makes the writer commit at once.
		if err := s.submitWait(ctx, func(*bolt.Tx) error { return nil }); err != nil {
			return err
		}
		if s.copiedLSN.Load() >= target {
			return nil
		}
		select {
		case <-sig:
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
