package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"hookrelay/relay"
)

// Record layouts. Every value starts with a one-byte format version so the
// schema can evolve in place. Integers are big-endian in keys (so cursor
// order is numeric order) and varints in values (so values stay small).

const (
	recordV1 = 1
	// recordV2 is an event record with the sender's forwarded headers;
	// events written before it are read as having none.
	recordV2 = 2
)

var errCorrupt = errors.New("corrupt record")

func u64key(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// dueKey orders deliveries of one hook by next-attempt time, then task id.
func dueKey(at time.Time, taskID uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], timeKey(at))
	binary.BigEndian.PutUint64(b[8:], taskID)
	return b[:]
}

func parseDueKey(k []byte) (at uint64, taskID uint64, ok bool) {
	if len(k) != 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint64(k[8:]), true
}

// timeKey maps a time to an unsigned, order-preserving key. Times before
// 1970 (never produced by the relay) sort first.
func timeKey(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}

func keyTime(v uint64) time.Time { return time.Unix(0, int64(v)) }

// dueValue carries what a claim needs without a second lookup.
func dueValue(eventSeq uint64, attempts int) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64)
	b = binary.AppendUvarint(b, eventSeq)
	b = binary.AppendUvarint(b, uint64(attempts))
	return b
}

func parseDueValue(v []byte) (eventSeq uint64, attempts int, err error) {
	var r reader
	r.b = v
	eventSeq = r.uvarint()
	attempts = int(r.uvarint())
	return eventSeq, attempts, r.err
}

// attemptKey orders the attempts of one task.
func attemptKey(taskID uint64, n int) []byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], taskID)
	binary.BigEndian.PutUint32(b[8:], uint32(n))
	return b[:]
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns a length-prefixed field; the result aliases the input.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// eventRecord: version, received, hooks (count, then each name), id,
// source, type, headers (count, then name and value of each; version 2
// only), body. The hooks are the event's deliveries in order: the
// delivery to hooks[i] has task id taskID(seq, i).
func encodeEvent(e *relay.Event, hooks []string) []byte {
	size := 1 + 4*binary.MaxVarintLen64 + len(e.ID) + len(e.Source) + len(e.Type) + len(e.Body) + 8
	for _, h := range hooks {
		size += len(h) + 2
	}
	for _, h := range e.Headers {
		size += len(h.Name) + len(h.Value) + 4
	}
	b := make([]byte, 0, size)
	b = append(b, recordV2)
	b = binary.AppendVarint(b, e.Received.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(hooks)))
	for _, h := range hooks {
		b = appendString(b, h)
	}
	b = appendString(b, e.ID)
	b = appendString(b, e.Source)
	b = appendString(b, e.Type)
	b = binary.AppendUvarint(b, uint64(len(e.Headers)))
	for _, h := range e.Headers {
		b = appendString(b, h.Name)
		b = appendString(b, h.Value)
	}
	return append(b, e.Body...)
}

// maxHeaders bounds the header count of an event record, so a corrupt
// count is recognised before allocating.
const maxHeaders = 1 << 12

// decodeEvent copies everything out of v, which may be bbolt memory. The
// hook names are decoded only when wantHooks is set.
func decodeEvent(v []byte, wantHooks bool) (e relay.Event, hooks []string, err error) {
	r := reader{b: v}
	ver := r.byte()
	if r.err == nil && ver != recordV1 && ver != recordV2 {
		return e, nil, fmt.Errorf("event record version %d: %w", ver, errCorrupt)
	}
	e.Received = time.Unix(0, r.varint())
	n := r.uvarint()
	if n > relay.MaxFanout {
		return e, nil, fmt.Errorf("event record with %d hooks: %w", n, errCorrupt)
	}
	if wantHooks {
		hooks = make([]string, 0, n)
	}
	for range n {
		h := r.bytes()
		if wantHooks {
			hooks = append(hooks, string(h))
		}
	}
	e.ID = r.string()
	e.Source = r.string()
	e.Type = r.string()
	if ver == recordV2 {
		n := r.uvarint()
		if n > maxHeaders {
			return relay.Event{}, nil, fmt.Errorf("event record with %d headers: %w", n, errCorrupt)
		}
		for range n {
			e.Headers = append(e.Headers, relay.Header{Name: r.string(), Value: r.string()})
		}
	}
	if r.err != nil {
		return relay.Event{}, nil, r.err
	}
	e.Body = append([]byte(nil), r.b...)
	return e, hooks, nil
}

// eventID reads the id and the number of deliveries of an event record.
func eventID(v []byte) (string, int, error) {
	r := reader{b: v}
	r.byte()
	r.varint()
	n := r.uvarint()
	if n > relay.MaxFanout {
		return "", 0, fmt.Errorf("event record with %d hooks: %w", n, errCorrupt)
	}
	for range n {
		r.bytes()
	}
	id := r.string()
	return id, int(n), r.err
}

// Task ids are derived from the event: taskID(seq, i) is the delivery of
// event seq to its i-th hook, so a delivery needs no record of its own
// until its first outcome.
const fanoutBits = 10

func taskID(seq uint64, i int) uint64 { return seq<<fanoutBits | uint64(i) }

func splitTaskID(id uint64) (seq uint64, i int) {
	return id >> fanoutBits, int(id & (1<<fanoutBits - 1))
}

// taskRecord: version, state, attempts, event seq, created, next, hook.
func encodeTask(t *relay.TaskInfo) []byte {
	b := make([]byte, 0, 2+4*binary.MaxVarintLen64+len(t.Hook))
	b = append(b, recordV1, byte(t.State))
	b = binary.AppendUvarint(b, uint64(t.Attempts))
	b = binary.AppendUvarint(b, t.EventSeq)
	b = binary.AppendVarint(b, t.Created.UnixNano())
	var next int64
	if !t.NextAt.IsZero() {
		next = t.NextAt.UnixNano()
	}
	b = binary.AppendVarint(b, next)
	return append(b, t.Hook...)
}

func decodeTask(id uint64, v []byte) (relay.TaskInfo, error) {
	r := reader{b: v}
	if ver := r.byte(); r.err == nil && ver != recordV1 {
		return relay.TaskInfo{}, fmt.Errorf("task record version %d: %w", ver, errCorrupt)
	}
	t := relay.TaskInfo{TaskID: id}
	t.State = relay.OutcomeState(r.byte())
	t.Attempts = int(r.uvarint())
	t.EventSeq = r.uvarint()
	t.Created = time.Unix(0, r.varint())
	if next := r.varint(); next != 0 {
		t.NextAt = time.Unix(0, next)
	}
	if r.err != nil {
		return relay.TaskInfo{}, r.err
	}
	t.Hook = string(r.b)
	return t, nil
}

// attemptRecord: version, n, at, status, latency, error, excerpt.
func encodeAttempt(a *relay.Attempt) []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64+len(a.Error)+len(a.Excerpt)+2)
	b = append(b, recordV1)
	b = binary.AppendUvarint(b, uint64(a.N))
	b = binary.AppendVarint(b, a.At.UnixNano())
	b = binary.AppendUvarint(b, uint64(a.Status))
	b = binary.AppendUvarint(b, uint64(a.Latency))
	b = appendString(b, a.Error)
	return append(b, a.Excerpt...)
}

func decodeAttempt(v []byte) (relay.Attempt, error) {
	r := reader{b: v}
	if ver := r.byte(); r.err == nil && ver != recordV1 {
		return relay.Attempt{}, fmt.Errorf("attempt record version %d: %w", ver, errCorrupt)
	}
	var a relay.Attempt
	a.N = int(r.uvarint())
	a.At = time.Unix(0, r.varint())
	a.Status = int(r.uvarint())
	a.Latency = time.Duration(r.uvarint())
	a.Error = r.string()
	if r.err != nil {
		return relay.Attempt{}, r.err
	}
	a.Excerpt = string(r.b)
	return a, nil
}

// dedupValue: event seq and expiry.
func dedupValue(seq uint64, until time.Time) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	binary.BigEndian.PutUint64(b[8:], timeKey(until))
	return b[:]
}

func parseDedupValue(v []byte) (seq uint64, until uint64, ok bool) {
	if len(v) != 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(v[:8]), binary.BigEndian.Uint64(v[8:]), true
}
