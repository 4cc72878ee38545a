package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"

	"hookrelay/store"
)

// The loopback ceilings, ingest and end to end are measured in slices,
// interleaved round by round, each round in a rotated order, so that the
// ratios compare figures taken under the same conditions: on a shared
// machine the ceiling alone moves by a third between one minute and the
// next. Each kind's figures are summed over its slices.

// DefaultRounds is how many slices each interleaved phase is cut into.
const DefaultRounds = 5

// Names of the interleaved phases; CPU profiles carry them as the label
// "phase".
const (
	phaseCeiling = "ceiling"
	phaseAnswer  = "ceiling answering like the relay"
	phaseIngest  = "ingest"
	phaseE2E     = "end to end"
)

// tally sums one kind's slices.
type tally struct {
	ok, failed int
	elapsed    time.Duration
	cpu        time.Duration
	lats       []time.Duration
	rates      []float64 // per slice, in round order
}

func (t *tally) add(r loadResult, elapsed, cpu time.Duration) {
	t.ok += r.OK
	t.failed += r.Failed
	t.elapsed += elapsed
	t.cpu += cpu
	t.lats = append(t.lats, r.Latencies...)
	t.rates = append(t.rates, ratio(float64(r.OK), elapsed.Seconds()))
}

func (t *tally) perSec() float64 { return ratio(float64(t.ok), t.elapsed.Seconds()) }

func (t *tally) cpuPer() time.Duration {
	if t.ok == 0 {
		return 0
	}
	return t.cpu / time.Duration(t.ok)
}

// sliceLoad is the load of slice i of rounds: cfg's duration or event
// count divided among the rounds (the counts add up to cfg.Events when
// it is at least rounds; each slice sends one at least).
func sliceLoad(cfg Config, i, rounds int) *load {
	l := &load{token: benchToken, publishers: cfg.Publishers, size: cfg.Size}
	if cfg.Events > 0 {
		l.events = max(cfg.Events*(i+1)/rounds-cfg.Events*i/rounds, 1)
	} else {
		l.duration = cfg.Duration / time.Duration(rounds)
	}
	return l
}

// bare is a bare handler on a loopback listener, with its own client.
type bare struct {
	srv    *http.Server
	client *http.Client
	url    string
}

// relayAnswer is shaped like the relay's answer to a published event.
var relayAnswer = []byte(`{"id":"b1000000","deliveries":1}` + "\n")

// startBare serves a handler that reads the body and answers 204, or
// with answer set 202 with a JSON body and headers as the relay answers
// (which costs the client and the server more).
func startBare(cfg Config, answer bool) (*bare, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("http ceiling: %w", err)
	}
	contentLength := []string{strconv.Itoa(len(relayAnswer))}
	srv := newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if !answer {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = contentLength
		w.WriteHeader(http.StatusAccepted)
		w.Write(relayAnswer)
	}))
	go srv.Serve(ln)
	return &bare{srv: srv, client: newClient(cfg.Publishers), url: "http://" + ln.Addr().String() + "/"}, nil
}

func (b *bare) close() {
	b.client.CloseIdleConnections()
	b.srv.Close()
}

func (b *bare) slice(ctx context.Context, l *load, t *tally) error {
	l.url = b.url
	cpu0 := cpuTime()
	r := l.run(ctx, b.client, 0)
	t.add(r, r.Elapsed, cpuTime()-cpu0)
	if r.OK == 0 {
		return errors.New("http ceiling: no request succeeded")
	}
	return nil
}

// ingestRun is a relay whose hooks are down: deliveries are queued, not
// attempted, so its slices measure the acknowledgement path alone.
type ingestRun struct {
	in     *instance
	client *http.Client
	next   int         // the next event number
	stats  store.Stats // summed over the slices
	t      tally
}

func startIngest(ctx context.Context, cfg Config, dir string) (*ingestRun, error) {
	in, err := startInstance(ctx, dir, deadHookURLs(cfg.Hooks), cfg, false)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return &ingestRun{in: in, client: newClient(cfg.Publishers)}, nil
}

func (ir *ingestRun) close() error {
	ir.client.CloseIdleConnections()
	return ir.in.stop()
}

func (ir *ingestRun) slice(ctx context.Context, l *load) error {
	l.url = ir.in.url
	before := ir.in.st.Stats()
	start := time.Now()
	cpu0 := cpuTime()
	r := l.run(ctx, ir.client, ir.next)
	// The slice lasts until bbolt has caught up: where copying is the
	// bottleneck (many hooks, large events) the rate is then the one
	// ingest could keep up, and the next slice, of whatever kind, does
	// not pay for this one's copies.
	if err := ir.in.st.Flush(ctx); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	addStats(&ir.stats, before, ir.in.st.Stats())
	ir.next = r.Next
	ir.t.add(r, elapsed, cpu)
	if r.OK == 0 {
		return errors.New("ingest: no event was accepted")
	}
	return nil
}

// addStats adds the counters' growth from a to b to sum.
func addStats(sum *store.Stats, a, b store.Stats) {
	sum.LogSyncs += b.LogSyncs - a.LogSyncs
	sum.LogRecords += b.LogRecords - a.LogRecords
	sum.LogTime += b.LogTime - a.LogTime
	sum.LogBusy += b.LogBusy - a.LogBusy
	sum.LogHeld += b.LogHeld - a.LogHeld
	sum.Commits += b.Commits - a.Commits
	sum.Ops += b.Ops - a.Ops
	sum.Copied += b.Copied - a.Copied
	sum.CommitTime += b.CommitTime - a.CommitTime
}

func (ir *ingestRun) result() Ingest {
	t, st := &ir.t, &ir.stats
	secs := t.elapsed.Seconds()
	out := Ingest{EventsPerSec: t.perSec(), Ack: distOf(t.lats), Failed: t.failed, CPUPerEvent: t.cpuPer()}
	if syncs := float64(st.LogSyncs); syncs > 0 {
		out.EventsPerCommit = float64(st.LogRecords) / syncs
		out.CommitsPerSec = syncs / secs
		out.CommitCycle = st.LogTime / time.Duration(st.LogSyncs)
		out.WriterBusy = st.LogTime.Seconds() / secs
		out.WriterActive = st.LogBusy.Seconds() / secs
		out.WriterHeld = st.LogHeld.Seconds() / secs
	}
	if commits := float64(st.Commits); commits > 0 {
		out.CopyCommitsPerSec = commits / secs
		out.EventsPerCopy = float64(st.Copied) / commits
		out.CopyBusy = st.CommitTime.Seconds() / secs
	}
	return out
}

// e2eRun is a relay delivering to in-process receivers; a slice lasts
// until every event it published has been delivered to every hook.
type e2eRun struct {
	rc     *receivers
	in     *instance
	client *http.Client
	hooks  int
	next   int   // the next event number
	want   int64 // deliveries expected so far
	t      tally
}

func startE2E(ctx context.Context, cfg Config, dir string) (*e2eRun, error) {
	rc, err := startReceivers(cfg.Hooks)
	if err != nil {
		return nil, fmt.Errorf("end to end: %w", err)
	}
	in, err := startInstance(ctx, dir, rc.urls, cfg, true)
	if err != nil {
		rc.close()
		return nil, fmt.Errorf("end to end: %w", err)
	}
	return &e2eRun{rc: rc, in: in, client: newClient(cfg.Publishers), hooks: cfg.Hooks}, nil
}

func (er *e2eRun) close() error {
	er.client.CloseIdleConnections()
	err := er.in.stop()
	er.rc.close()
	return err
}

func (er *e2eRun) slice(ctx context.Context, l *load, p *progress) error {
	l.url = er.in.url
	l.sent = func(n int, at time.Time) { er.rc.sentAt.Store(n, at) }
	start := time.Now()
	cpu0 := cpuTime()
	r := l.run(ctx, er.client, er.next)
	er.next = r.Next
	// The receivers' count runs over the whole run; progress shows this
	// slice's part of it.
	before := er.want
	er.want += int64(r.OK) * int64(er.hooks)
	var progress func(int)
	if show := p.of("end to end, last deliveries", int(er.want-before)); show != nil {
		progress = func(n int) { show(n - int(before)) }
	}
	if err := er.rc.waitFor(ctx, er.want, 5*time.Minute, progress); err != nil {
		return fmt.Errorf("end to end: %w", err)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	// Deliveries, not publishes, are what this slice counts.
	d := r
	d.OK, d.Latencies = r.OK*er.hooks, nil
	er.t.add(d, elapsed, cpu)
	if r.OK == 0 {
		return errors.New("end to end: no event was accepted")
	}
	return nil
}

func (er *e2eRun) result() E2E {
	t := &er.t
	er.rc.mu.Lock()
	lat := distOf(er.rc.lat)
	er.rc.mu.Unlock()
	out := E2E{DeliveredPerSec: t.perSec(), Latency: lat, Delivered: t.ok, CPUPerDelivery: t.cpuPer()}
	out.IngestPerSec = out.DeliveredPerSec / float64(er.hooks)
	return out
}

// labeled runs fn under the pprof label phase=kind; goroutines started
// in fn carry it too.
func labeled(ctx context.Context, kind string, fn func(ctx context.Context) error) error {
	var err error
	pprof.Do(ctx, pprof.Labels("phase", kind), func(ctx context.Context) { err = fn(ctx) })
	return err
}

// kinds are the servers and relays of the interleaved phases.
type kinds struct {
	ceiling, answer *bare
	ingest          *ingestRun
	e2e             *e2eRun
}

// startKinds starts each kind's servers and relays under its label, so
// that every goroutine they run (handlers, log and bbolt writers,
// deliveries) carries it and a CPU profile splits by kind. On error
// what was started is stopped.
func startKinds(ctx context.Context, cfg Config, root string) (*kinds, error) {
	k := &kinds{}
	starts := []struct {
		kind  string
		start func(ctx context.Context) error
	}{
		{phaseCeiling, func(context.Context) (err error) {
			k.ceiling, err = startBare(cfg, false)
			return err
		}},
		{phaseAnswer, func(context.Context) (err error) {
			k.answer, err = startBare(cfg, true)
			return err
		}},
		{phaseIngest, func(ctx context.Context) (err error) {
			k.ingest, err = startIngest(ctx, cfg, filepath.Join(root, "ingest"))
			return err
		}},
		{phaseE2E, func(ctx context.Context) (err error) {
			k.e2e, err = startE2E(ctx, cfg, filepath.Join(root, "e2e"))
			return err
		}},
	}
	for _, s := range starts {
		if err := labeled(ctx, s.kind, s.start); err != nil {
			k.close()
			return nil, err
		}
	}
	return k, nil
}

func (k *kinds) close() {
	if k.ceiling != nil {
		k.ceiling.close()
	}
	if k.answer != nil {
		k.answer.close()
	}
	if k.ingest != nil {
		k.ingest.close()
	}
	if k.e2e != nil {
		k.e2e.close()
	}
}

// interleaved measures the two ceilings, ingest and end to end in
// cfg.Rounds (at least 1) rounds of one slice of each, and fills in
// their figures.
func interleaved(ctx context.Context, cfg Config, root string, p *progress, res *Result) error {
	rounds := cfg.Rounds
	k, err := startKinds(ctx, cfg, root)
	if err != nil {
		return err
	}
	defer k.close()
	ceiling, answer, ir, er := k.ceiling, k.answer, k.ingest, k.e2e

	var ceilT, answerT tally
	kinds := []string{phaseCeiling, phaseAnswer, phaseIngest, phaseE2E}
	for i := range rounds {
		for k := range kinds {
			kind := kinds[(i+k)%len(kinds)]
			l := sliceLoad(cfg, i, rounds)
			l.progress = p.count(fmt.Sprintf("%s, round %d of %d", kind, i+1, rounds))
			err := labeled(ctx, kind, func(ctx context.Context) error {
				switch kind {
				case phaseCeiling:
					return ceiling.slice(ctx, l, &ceilT)
				case phaseAnswer:
					return answer.slice(ctx, l, &answerT)
				case phaseIngest:
					return ir.slice(ctx, l)
				default:
					return er.slice(ctx, l, p)
				}
			})
			if err != nil {
				return err
			}
		}
	}
	res.HTTPCeilingPerS, res.HTTPCeilingCPU = ceilT.perSec(), ceilT.cpuPer()
	res.HTTPAnswerPerS, res.HTTPAnswerCPU = answerT.perSec(), answerT.cpuPer()
	res.Ingest = ir.result()
	res.EndToEnd = er.result()
	for i := range rounds {
		res.IngestVsCeilingByRound = append(res.IngestVsCeilingByRound, ratio(ir.t.rates[i], ceilT.rates[i]))
		res.E2EVsCeilingByRound = append(res.E2EVsCeilingByRound, ratio(er.t.rates[i]/float64(cfg.Hooks), ceilT.rates[i]))
	}
	return nil
}
