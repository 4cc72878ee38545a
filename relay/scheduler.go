package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// scheduler owns one runner per configured hook.
type scheduler struct {
	runners map[string]*hookRunner
	order   []*hookRunner

	// claimCtx stops the runners from claiming; attemptCtx aborts attempts
	// in flight when a drain runs out of time.
	claimCtx      context.Context
	stopClaiming  context.CancelFunc
	attemptCtx    context.Context
	abortAttempts context.CancelFunc
	wg            sync.WaitGroup
}

func newScheduler(hooks []HookConfig, st Store, ua string, log *slog.Logger, now func() time.Time) (*scheduler, error) {
	s := &scheduler{runners: make(map[string]*hookRunner, len(hooks))}
	s.claimCtx, s.stopClaiming = context.WithCancel(context.Background())
	s.attemptCtx, s.abortAttempts = context.WithCancel(context.Background())
	for i := range hooks {
		h := &hooks[i]
		d, err := newDeliverer(h, ua)
		if err != nil {
			return nil, fmt.Errorf("hook %q: %w", h.Name, err)
		}
		r := &hookRunner{
			hook:     h,
			store:    st,
			deliver:  d,
			log:      log.With(logKeyHook, h.Name),
			now:      now,
			buffer:   2 * h.Concurrency,
			wake:     make(chan struct{}, 1),
			inflight: make(map[uint64]struct{}),
			work:     make(chan Delivery, 2*h.Concurrency),
		}
		s.runners[h.Name] = r
		s.order = append(s.order, r)
	}
	return s, nil
}

func (s *scheduler) start() {
	for _, r := range s.order {
		s.wg.Add(1 + r.hook.Concurrency)
		go func() {
			defer s.wg.Done()
			r.run(s.claimCtx)
		}()
		for range r.hook.Concurrency {
			go func() {
				defer s.wg.Done()
				r.work1(s.claimCtx, s.attemptCtx)
			}()
		}
	}
}

// stop stops claiming, lets attempts in flight finish until ctx is done,
// then aborts the rest. Abandoned attempts are not recorded, so they are
// made again after the next start.
func (s *scheduler) stop(ctx context.Context) error {
	s.stopClaiming()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer func() {
		s.abortAttempts()
		for _, r := range s.order {
			r.deliver.client.CloseIdleConnections()
		}
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.abortAttempts()
		<-done
		return fmt.Errorf("deliveries still in flight at the shutdown deadline were abandoned; they will be retried after restart: %w", ctx.Err())
	}
}

// notify wakes the runners of hooks that have new deliveries.
func (s *scheduler) notify(hooks []string) {
	for _, name := range hooks {
		if r := s.runners[name]; r != nil {
			r.poke()
		}
	}
}

// hookRunner claims due deliveries of one hook and feeds its workers.
//
// The in-flight set holds every delivery claimed and not yet completed
// durably; Claim skips them. Completions are handed back through done and
// removed from the set only by the runner goroutine, before its next
// claim, so a claim never sees a delivery whose outcome is committed but
// whose removal raced with the read.
type hookRunner struct {
	hook    *HookConfig
	store   Store
	deliver *deliverer
	log     *slog.Logger
	now     func() time.Time
	buffer  int // deliveries claimed ahead of the workers

	wake chan struct{}
	work chan Delivery

	inflight map[uint64]struct{} // runner goroutine only

	mu   sync.Mutex
	done []uint64 // completed durably (or failed to), not yet removed from inflight
}

func (r *hookRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *hookRunner) completed(taskID uint64) {
	r.mu.Lock()
	r.done = append(r.done, taskID)
	r.mu.Unlock()
	r.poke()
}

func (r *hookRunner) run(ctx context.Context) {
	defer close(r.work)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	backoff := 100 * time.Millisecond
	for {
		r.mu.Lock()
		for _, id := range r.done {
			delete(r.inflight, id)
		}
		r.done = r.done[:0]
		r.mu.Unlock()

		wait := time.Duration(-1) // until poked
		if free := r.buffer - len(r.inflight); free > 0 {
			claimed, next, err := r.store.Claim(ctx, r.hook.Name, r.now(), free, r.isInflight)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				r.log.Error("claim failed; retrying", logKeyErr, err, "in", backoff)
				wait = backoff
				backoff = min(2*backoff, 10*time.Second)
			default:
				backoff = 100 * time.Millisecond
				for _, d := range claimed {
					r.inflight[d.TaskID] = struct{}{}
					r.work <- d // never blocks: len(inflight) <= buffer = cap(work)
				}
				if !next.IsZero() {
					wait = max(next.Sub(r.now()), 0)
					if len(claimed) == free {
						// Full: more may be due; a completion will poke.
						wait = -1
					}
				}
			}
		}
		if wait == 0 {
			continue
		}
		var tc <-chan time.Time
		if wait > 0 {
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-tc:
		}
	}
}

func (r *hookRunner) isInflight(id uint64) bool {
	_, ok := r.inflight[id]
	return ok
}

// work1 is one worker: it makes attempts until claiming stops. A delivery
// taken from the queue after that is left for the next start.
func (r *hookRunner) work1(claimCtx, attemptCtx context.Context) {
	for {
		select {
		case <-claimCtx.Done():
			return
		default:
		}
		select {
		case <-claimCtx.Done():
			return
		case d, ok := <-r.work:
			if !ok {
				return
			}
			r.attempt(attemptCtx, d)
		}
	}
}

// attempt makes one attempt and records its outcome.
func (r *hookRunner) attempt(ctx context.Context, d Delivery) {
	res := r.deliver.do(ctx, d, r.now)
	if ctx.Err() != nil {
		// Aborted by shutdown: not the receiver's fault, not recorded.
		r.completed(d.TaskID)
		return
	}
	o := r.outcome(d, res)
	// Attributes are passed per call, not with log.With: a logger built
	// for every attempt would format them even when Debug is off.
	switch o.State {
	case StateDelivered:
		r.log.Debug("delivered", logKeyEvent, d.Event.ID, logKeyTask, d.TaskID, "attempt", o.Attempt.N,
			"status", o.Attempt.Status, "latency", o.Attempt.Latency)
	case StatePending:
		r.log.Warn("attempt failed; will retry", logKeyEvent, d.Event.ID, logKeyTask, d.TaskID, "attempt", o.Attempt.N,
			"status", o.Attempt.Status, logKeyErr, o.Attempt.Error, "next", o.Next)
	case StateDead:
		r.log.Error("attempts exhausted; dead-lettered", logKeyEvent, d.Event.ID, logKeyTask, d.TaskID, "attempt", o.Attempt.N,
			"status", o.Attempt.Status, logKeyErr, o.Attempt.Error)
	}
	r.store.Complete(o, func(err error) {
		if err != nil && !errors.Is(err, ErrClosed) {
			r.log.Error("outcome not recorded; the delivery will be attempted again", logKeyTask, d.TaskID, logKeyErr, err)
		}
		r.completed(d.TaskID)
	})
}

// outcome decides where a delivery goes after an attempt.
func (r *hookRunner) outcome(d Delivery, res attemptResult) Outcome {
	o := Outcome{Delivery: d, Attempt: res.Attempt}
	if res.ok {
		o.State = StateDelivered
		return o
	}
	step := d.Attempts // index of the retry delay after this attempt
	if step >= len(r.hook.Retry) {
		o.State = StateDead
		return o
	}
	o.State = StatePending
	// Delays count from the end of the attempt: Retry-After is relative
	// to the response.
	o.Next = res.Attempt.At.Add(res.Attempt.Latency).Add(retryDelay(r.hook.Retry, step, res.retryAfter))
	return o
}

// retryDelay is the schedule's delay for step plus up to 20% jitter, or
// the receiver's Retry-After when that is longer, capped at the longest
// step of the schedule.
func retryDelay(schedule []time.Duration, step int, retryAfter time.Duration) time.Duration {
	d := schedule[step]
	if d > 0 {
		d += rand.N(d/5 + 1)
	}
	if ra := min(retryAfter, slices.Max(schedule)); ra > d {
		d = ra
	}
	return d
}
