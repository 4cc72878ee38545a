package relay

import (
	"context"
	"errors"
	"time"
)

// Store is what the relay needs from durable storage. It is deliberately
// narrow and free of storage types so that another backend can implement
// it. Implementations must be safe for concurrent use.
//
// Durability contract: when Append or Complete returns nil (or calls its
// callback with nil), the change is on stable storage (fsync'd). It may
// become visible to Claim, QueuedHooks and Task only a little later; a
// delivery whose outcome is durable is never claimed again for the same
// attempt in between.
type Store interface {
	// Append stores an event together with one pending delivery per hook
	// in req.Hooks, atomically, and returns once they are durable. When
	// req.DedupKey is set and a live entry for it exists, nothing is
	// written and the result reports the original event with Duplicate
	// set. The deliveries may become claimable only after Append
	// returns; the store then calls the function set with Notify.
	// Append keeps no reference to req.Event's byte slices once it has
	// returned, whatever the outcome, so callers may reuse them;
	// req.Hooks may be kept and must not be modified.
	Append(ctx context.Context, req AppendRequest) (AppendResult, error)

	// Notify sets fn to be called with the hooks that have newly
	// claimable deliveries, each time appended deliveries become
	// claimable. fn is called from a store goroutine and must not block.
	// It is set once, before the first Append.
	Notify(fn func(hooks []string))

	// Claim returns up to limit deliveries of hook that are due at now, in
	// next-attempt order, skipping those for which skip returns true (the
	// caller's in-flight set). Claiming writes nothing: a claimed
	// delivery stays queued until Complete records its outcome, so a
	// crash in between delivers it again. next is the due time of the
	// first queued delivery after the ones returned that is not yet due,
	// or the zero time when there is none.
	Claim(ctx context.Context, hook string, now time.Time, limit int, skip func(taskID uint64) bool) (claimed []Delivery, next time.Time, err error)

	// Complete records the outcome of one attempt and moves the delivery
	// on (delivered, rescheduled or dead-lettered). It returns at once and
	// calls done, from another goroutine, once the outcome is durable or
	// has failed. done must not block.
	Complete(o Outcome, done func(error))

	// QueuedHooks returns the names of all hooks that have deliveries
	// waiting, including hooks no longer in the configuration.
	QueuedHooks(ctx context.Context) ([]string, error)

	// Task returns the current state of one delivery and its attempts.
	// It returns ErrNotFound when there is no such delivery.
	Task(ctx context.Context, taskID uint64) (TaskInfo, []Attempt, error)
}

// MaxFanout is the most hooks one event may be delivered to.
const MaxFanout = 1024

// ErrNotFound is returned by lookups of things that do not exist.
var ErrNotFound = errors.New("not found")

// ErrClosed is returned by a Store after Close has begun.
var ErrClosed = errors.New("store closed")

// Event is an accepted event as stored.
type Event struct {
	// ID is the event id sent to receivers (webhook-id): the publisher's
	// idempotency id when it gave one, else a generated one.
	ID string
	// Source names where the event came from, e.g. "publisher:pos".
	Source   string
	Type     string
	Received time.Time
	// Headers are the sender's request headers kept for hooks that
	// forward them (forward_headers), in the order received; names are
	// canonical (textproto.CanonicalMIMEHeaderKey).
	Headers []Header
	// Body is the exact payload delivered to every hook.
	Body []byte
}

// Header is one request header kept with an event.
type Header struct {
	Name, Value string
}

// AppendRequest is one event to store with its deliveries.
type AppendRequest struct {
	Event Event
	// DedupKey, when not empty, identifies the event for deduplication
	// (source and external id). DedupUntil is when the entry expires.
	DedupKey   string
	DedupUntil time.Time
	// Hooks receive one delivery each, first due at Event.Received; at
	// most MaxFanout.
	Hooks []string
}

// AppendResult reports what Append did.
type AppendResult struct {
	Seq        uint64 // the event's sequence number in the store
	EventID    string // the stored event's ID (the original one for a duplicate)
	Deliveries int    // deliveries created (for a duplicate: created originally)
	Duplicate  bool
}

// Delivery is one claimed delivery of an event to a hook.
type Delivery struct {
	TaskID   uint64
	Hook     string
	DueAt    time.Time // the due time it was claimed at
	Attempts int       // attempts already made before this one
	Event    Event
}

// OutcomeState is where a delivery goes after an attempt.
type OutcomeState uint8

// Delivery states. Pending deliveries are queued for an attempt.
const (
	StatePending OutcomeState = iota + 1
	StateDelivered
	StateDead
)

func (s OutcomeState) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateDelivered:
		return "delivered"
	case StateDead:
		return "dead"
	}
	return "unknown"
}

// Outcome is the result of one attempt of a claimed delivery.
type Outcome struct {
	Delivery Delivery
	Attempt  Attempt
	// State is StateDelivered, StateDead, or StatePending with Next set
	// to the time of the next attempt.
	State OutcomeState
	Next  time.Time
}

// Attempt is the record of one delivery attempt.
type Attempt struct {
	N       int // 1 for the first attempt
	At      time.Time
	Status  int // HTTP status, 0 when no response was received
	Latency time.Duration
	Error   string // transport error or failure reason, "" on success
	Excerpt string // start of the response body, capped
}

// TaskInfo is the state of one delivery.
type TaskInfo struct {
	TaskID   uint64
	Hook     string
	EventSeq uint64
	State    OutcomeState
	Attempts int
	NextAt   time.Time // for pending deliveries
	Created  time.Time
}
