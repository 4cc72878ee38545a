// Package store keeps hookrelay's events and delivery queue in one bbolt
// file. It implements relay.Store.
//
// Appends and outcomes are durable once they are in a write-ahead log
// (wal.go, logwriter.go): one goroutine writes every one waiting with one
// fdatasync (group commit), so many concurrent requests share one sync,
// and each waits for at most the sync in progress and its own. A second
// goroutine, the bbolt writer, then copies logged changes into bbolt in
// transactions of up to 20 ms worth, with whatever else is waiting
// (sweeps); claims, Task and Counts see a change once it is copied. On
// Open, what the log holds beyond bbolt's copied position (after a crash)
// is copied before anything else runs. Reads use bbolt read transactions
// and copy bytes out before they end.
//
// Layout of the data directory: hookrelay.db (bbolt) and wal/ (the log's
// segment files). bbolt's buckets (key -> value):
//
//	meta:        "schema" -> version, "log-copied" -> last log record copied
//	events:      seq -> event record (id, source, type, received,
//	             forwarded headers, body)
//	tasks:       task id -> task record (hook, event seq, state, attempts),
//	             written at a delivery's first outcome; before it the
//	             delivery is its due entry and its event's hook list
//	due/<hook>:  next-attempt time + task id -> event seq + attempts
//	attempts:    task id + attempt number -> attempt record
//	dead:        dead-letter time + task id -> nil
//	dedup:       dedup key -> event seq + expiry
//	dedupexp:    expiry + dedup key -> nil
//
// The due index is what the scheduler reads: a cursor from the start of a
// hook's bucket finds the due deliveries in O(log n) without scanning the
// queue, and nothing about the queue is held in memory.
package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookrelay/relay"
)

var _ relay.Store = (*Store)(nil)

var (
	bMeta     = []byte("meta")
	bEvents   = []byte("events")
	bTasks    = []byte("tasks")
	bDue      = []byte("due")
	bAttempts = []byte("attempts")
	bDead     = []byte("dead")
	bDedup    = []byte("dedup")
	bDedupExp = []byte("dedupexp")

	kSchema = []byte("schema")
	// kLogCopied is the number of the last log record copied into bbolt.
	kLogCopied = []byte("log-copied")
)

const schemaVersion = 1

// FileName is the database file inside the data directory.
const FileName = "hookrelay.db"

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("database is in use by another process")

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger receives the store's own log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LockTimeout is how long Open waits for the file lock; default 1s.
	LockTimeout time.Duration
	// MaxBatch caps the appends logged with one sync, and the writes (an
	// event and each of its deliveries count one) committed in one bbolt
	// transaction; default 4096.
	MaxBatch int
	// LogSegmentSize is the size of one write-ahead log file; default
	// 32 MiB.
	LogSegmentSize int64
	// MaxLogLag bounds the bytes logged and not yet copied into bbolt;
	// appends wait beyond it. Default 8 MiB.
	MaxLogLag int64
	// CopyDelay is how long the bbolt writer waits for more logged
	// changes before it copies what it has, so that copies are few and
	// large; default 20ms, negative for none. Other writes (sweeps,
	// Flush) are committed at once and take what is waiting with them.
	CopyDelay time.Duration
	// SweepInterval is how often expired dedup entries are removed;
	// default one minute.
	SweepInterval time.Duration
	// ReleaseInterval is how often the pages of the file that reads have
	// mapped into memory are handed back to the kernel's cache, which
	// keeps resident memory flat however large the queue; default 2s,
	// negative to never release.
	ReleaseInterval time.Duration
}

// Store is a bbolt-backed relay.Store. Create it with Open and release it
// with Close.
type Store struct {
	db       *bolt.DB
	log      *slog.Logger
	now      func() time.Time
	maxBatch int

	// mu guards closed; submitters and appenders hold it shared while
	// they send so that Close can wait for them before it stops the
	// writers.
	mu       sync.RWMutex
	closed   bool
	ops      chan op
	logCalls chan *logCall

	quit    chan struct{} // stops the bbolt writer and the loops
	logQuit chan struct{} // stops the log writer
	logDone chan struct{}
	wg      sync.WaitGroup

	// wal and logBuf belong to the log writer goroutine.
	wal    *wal
	logBuf []byte

	// lastLSN is the last record logged durably (written only by the log
	// writer), copiedLSN the last one copied into bbolt and committed.
	lastLSN   atomic.Uint64
	copiedLSN atomic.Uint64
	notify    atomic.Pointer[func([]string)]
	copyDelay time.Duration

	// pending holds dedup entries logged but not yet in bbolt.
	pendMu  sync.Mutex
	pending map[string]pendingDedup

	// pendingOutcomes are deliveries whose outcome is logged but not yet
	// in bbolt; Claim skips them. claimMu orders claims with copies.
	claimMu         sync.RWMutex
	pendingOutcomes map[uint64]struct{}

	// lag is the bytes logged and not yet in bbolt; copiedSig is closed
	// (and replaced) each time some are copied. copyNow tells the bbolt
	// writer to stop gathering: the log is half as far ahead as allowed.
	lagMu     sync.Mutex
	lagCond   *sync.Cond
	lag       int64
	maxLag    int64
	copiedSig chan struct{}
	copyNow   chan struct{}

	failMu  sync.Mutex
	failErr error

	statsMu sync.Mutex
	stats   Stats

	// eventSeq is the last event number handed out by the log writer;
	// copying into bbolt raises the bucket's stored sequence to match, so
	// numbers are never reused after a restart.
	eventSeq atomic.Uint64
}

// Stats are counters of the writers since Open.
type Stats struct {
	LogSyncs   uint64 // log writes, each with its fdatasync
	LogRecords uint64 // events logged
	// LogTime is the log writer's time in writes and their fdatasyncs;
	// LogBusy all of its time with calls in hand (deciding duplicates,
	// encoding, writing, answering), LogHeld the part of that it was
	// held back because bbolt lagged too far behind. The rest of the
	// time it waited with no call queued.
	LogTime    time.Duration
	LogBusy    time.Duration
	LogHeld    time.Duration
	Commits    uint64 // bbolt transactions committed
	Ops        uint64 // bbolt writes committed (a batch of logged events counts one)
	Copied     uint64 // logged events copied into bbolt
	CommitTime time.Duration
}

// Open opens (creating if needed) the database in dir. It fails with an
// error wrapping ErrLocked, instead of waiting forever, when another
// process has the database open.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 4096
	}
	if opts.LogSegmentSize <= 0 {
		opts.LogSegmentSize = 32 << 20
	}
	if opts.MaxLogLag <= 0 {
		opts.MaxLogLag = 8 << 20
	}
	if opts.CopyDelay == 0 {
		opts.CopyDelay = 20 * time.Millisecond
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.ReleaseInterval == 0 {
		opts.ReleaseInterval = 2 * time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.LockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (is another hookrelay running with this data_dir?)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := initSchema(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{
		db:              db,
		log:             opts.Logger,
		now:             opts.Now,
		maxBatch:        opts.MaxBatch,
		ops:             make(chan op, opts.MaxBatch),
		logCalls:        make(chan *logCall, opts.MaxBatch),
		quit:            make(chan struct{}),
		logQuit:         make(chan struct{}),
		logDone:         make(chan struct{}),
		pending:         make(map[string]pendingDedup),
		pendingOutcomes: make(map[uint64]struct{}),
		maxLag:          opts.MaxLogLag,
		copyDelay:       opts.CopyDelay,
		copiedSig:       make(chan struct{}),
		copyNow:         make(chan struct{}, 1),
	}
	s.lagCond = sync.NewCond(&s.lagMu)
	if s.wal, err = s.recover(filepath.Join(dir, walDirName), opts.LogSegmentSize); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		s.eventSeq.Store(tx.Bucket(bEvents).Sequence())
		return nil
	}); err != nil {
		s.wal.close()
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	go s.logWriter()
	s.wg.Add(2)
	go s.writer()
	go s.every(opts.SweepInterval, s.sweep)
	if opts.ReleaseInterval > 0 {
		s.wg.Add(1)
		go s.every(opts.ReleaseInterval, s.release)
	}
	return s, nil
}

func initSchema(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bMeta, bEvents, bTasks, bDue, bAttempts, bDead, bDedup, bDedupExp} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kSchema); v != nil {
			if len(v) != 1 || v[0] != schemaVersion {
				return fmt.Errorf("database schema version %v is not supported by this hookrelay (want %d)", v, schemaVersion)
			}
			return nil
		}
		return meta.Put(kSchema, []byte{schemaVersion})
	})
}

// Close stops accepting writes, commits what is already queued, and closes
// the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// The log writer first: what it logs last goes to the bbolt writer,
	// which is stopped after it.
	close(s.logQuit)
	<-s.logDone
	close(s.quit)
	s.wg.Wait()
	errs := []error{s.wal.close()}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close database: %w", err))
	}
	return errors.Join(errs...)
}

// recover opens the log and copies into bbolt whatever it holds that
// bbolt does not (the events acknowledged before a crash), in
// transactions of at most MaxBatch events.
func (s *Store) recover(dir string, segmentSize int64) (*wal, error) {
	var applied uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kLogCopied); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var batch []logEntry
	var replayed int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.db.Update(copyEntries(batch)); err != nil {
			return fmt.Errorf("copy logged changes into the database: %w", err)
		}
		replayed += len(batch)
		batch = batch[:0]
		return nil
	}
	w, lsn, err := openWAL(dir, segmentSize, applied, func(lsn uint64, payload []byte) error {
		// The payload is the scanner's buffer; entries keep slices of it.
		e, err := decodeLogEntry(lsn, bytes.Clone(payload))
		if err != nil {
			return err
		}
		batch = append(batch, e)
		if len(batch) >= s.maxBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		if w != nil {
			w.close()
		}
		return nil, fmt.Errorf("recover write-ahead log: %w", err)
	}
	if replayed > 0 {
		s.log.Info("recovered changes from the write-ahead log", "records", replayed)
	}
	w.trim()
	s.lastLSN.Store(lsn)
	s.copiedLSN.Store(lsn)
	return w, nil
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// Path is the database file.
func (s *Store) Path() string { return s.db.Path() }

// op is one write. fn runs inside the shared transaction and must only
// fail for storage errors; it may run more than once if another op of the
// same batch fails, so it must not have effects outside the transaction
// other than setting its own results. done is called exactly once.
type op struct {
	fn   func(tx *bolt.Tx) error
	done func(error)
	// weight is the number of writes fn makes, for the batch limit; 0
	// counts as 1.
	weight int
	// copy marks the copy of logged changes, which may wait for more.
	copy bool
}

func (s *Store) submit(o op) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		o.done(relay.ErrClosed)
		return
	}
	s.ops <- o
	s.mu.RUnlock()
}

// submitWait submits fn and waits for its commit or for ctx.
func (s *Store) submitWait(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	ch := make(chan error, 1)
	s.submit(op{fn: fn, done: func(err error) { ch <- err }})
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]op, 0, s.maxBatch)
	weight := 0
	onlyCopies := true
	add := func(o op) {
		batch = append(batch, o)
		weight += max(o.weight, 1)
		onlyCopies = onlyCopies && o.copy
	}
	flush := func() {
		s.commit(batch)
		clear(batch)
		batch = batch[:0]
		weight = 0
		onlyCopies = true
	}
	var delay *time.Timer
	if s.copyDelay > 0 {
		delay = time.NewTimer(s.copyDelay)
		delay.Stop()
		defer delay.Stop()
	}
	for {
		select {
		case o := <-s.ops:
			add(o)
		case <-s.quit:
			// Submitters are gone (Close waited for them): commit what
			// they left and stop.
			for {
				select {
				case o := <-s.ops:
					add(o)
					if weight >= s.maxBatch {
						flush()
					}
					continue
				default:
				}
				break
			}
			flush()
			return
		}
	fill:
		for weight < s.maxBatch {
			select {
			case o := <-s.ops:
				add(o)
			default:
				break fill
			}
		}
		if onlyCopies && delay != nil {
			// Nobody waits for a copy: gather more, so copies are large.
			delay.Reset(s.copyDelay)
		gather:
			for onlyCopies && weight < s.maxBatch {
				select {
				case o := <-s.ops:
					add(o)
				case <-delay.C:
					break gather
				case <-s.copyNow:
					break gather
				case <-s.quit:
					break gather
				}
			}
			delay.Stop()
		}
		flush()
	}
}

// opError marks the failure of one op, as opposed to the commit.
type opError struct {
	index int
	err   error
}

func (e *opError) Error() string { return e.err.Error() }

// commit runs batch in one transaction. An op that fails is answered with
// its error and the rest are committed without it.
func (s *Store) commit(batch []op) {
	for len(batch) > 0 {
		start := time.Now()
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := range batch {
				if err := batch[i].fn(tx); err != nil {
					return &opError{index: i, err: err}
				}
			}
			return nil
		})
		var oe *opError
		if errors.As(err, &oe) {
			s.log.Error("store write failed", "err", oe.err)
			batch[oe.index].done(oe.err)
			batch = append(batch[:oe.index:oe.index], batch[oe.index+1:]...)
			continue
		}
		if err != nil {
			s.log.Error("store commit failed", "ops", len(batch), "err", err)
			err = fmt.Errorf("commit: %w", err)
		} else {
			s.statsMu.Lock()
			s.stats.Commits++
			s.stats.Ops += uint64(len(batch))
			s.stats.CommitTime += time.Since(start)
			s.statsMu.Unlock()
		}
		for i := range batch {
			batch[i].done(err)
		}
		return
	}
}

// Ping commits an empty write transaction through the writer, proving
// that the writer is running and the file accepts commits.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.failure(); err != nil {
		return fmt.Errorf("store ping: %w", err)
	}
	if err := s.submitWait(ctx, func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("store ping: %w", err)
	}
	return nil
}

// every runs fn every interval until Close.
func (s *Store) every(interval time.Duration, fn func()) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			fn()
		}
	}
}

// release hands mapped pages back to the kernel's cache.
func (s *Store) release() {
	if err := s.releaseMapped(); err != nil {
		s.log.Warn("releasing mapped pages failed", "err", err)
	}
}
