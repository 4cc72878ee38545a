// Package bench measures a relay on the machine it runs on, against that
// machine's own limits measured in the same run: the loopback HTTP
// ceiling (a bare handler with the same client, body size and
// concurrency), the disk's fdatasync rate and the back-to-back rates of
// the store's log commits and bbolt transactions. It is what `hookrelay bench` runs.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hookrelay/relay"
	"hookrelay/store"
)

// Config is one benchmark run.
type Config struct {
	Events     int           // events per phase; 0 means run for Duration
	Size       int           // bytes per published event body
	Publishers int           // concurrent publishers
	Hooks      int           // hooks every event is delivered to
	Duration   time.Duration // per phase, when Events is 0
	// Rounds cuts the ceilings, ingest and end to end into slices taken
	// in turn (see interleaved); 0 means DefaultRounds.
	Rounds  int
	Backlog int    // deliveries to queue in the backlog phase; 0 skips it
	Dir     string // parent of the temporary data dirs; "" for the system's
	// Progress receives one-line progress updates (a terminal); nil for none.
	Progress io.Writer
}

// Result is everything a run measured. Rates are per second.
type Result struct {
	Machine Machine `json:"machine"`
	Config  struct {
		Events, Size, Publishers, Hooks, Backlog, Rounds int
		Duration                                         string
	} `json:"config"`

	FsyncPerSec     float64       `json:"fsync_per_sec"`
	HTTPCeilingPerS float64       `json:"http_ceiling_per_sec"`
	HTTPCeilingCPU  time.Duration `json:"http_ceiling_cpu_per_req_ns"`
	// The same bare handler answering as the relay does (202 and a
	// short JSON body): what the answer alone costs.
	HTTPAnswerPerS float64       `json:"http_answer_ceiling_per_sec"`
	HTTPAnswerCPU  time.Duration `json:"http_answer_ceiling_cpu_per_req_ns"`
	// Back-to-back rates of the store's two kinds of commit, at the
	// batch sizes ingest saw: log commits (write + fdatasync, what an
	// acknowledgement waits for) and bbolt transactions (the copies).
	LogCommitsPerS  float64  `json:"log_commits_per_sec"`
	BoltCommitsPerS float64  `json:"bolt_commits_per_sec"`
	Ingest          Ingest   `json:"ingest"`
	EndToEnd        E2E      `json:"end_to_end"`
	Backlog         *Backlog `json:"backlog,omitempty"`
	IngestVsCeiling float64  `json:"ingest_vs_http_ceiling"`
	IngestVsAnswer  float64  `json:"ingest_vs_http_answer_ceiling"`
	CommitsVsFsync  float64  `json:"commits_vs_fsync"`
	CommitsVsLog    float64  `json:"commits_vs_log_back_to_back"`
	CopiesVsBolt    float64  `json:"copies_vs_bolt_back_to_back"`
	E2EVsCeiling    float64  `json:"end_to_end_vs_http_ceiling"`
	AckP99InCommits float64  `json:"ack_p99_in_commit_cycles"`
	// The ratios of each round's slices (Config.Rounds of them): how far
	// the conditions moved.
	IngestVsCeilingByRound []float64 `json:"ingest_vs_http_ceiling_by_round"`
	E2EVsCeilingByRound    []float64 `json:"end_to_end_vs_http_ceiling_by_round"`
}

// Machine describes where the run happened.
type Machine struct {
	OS, Arch, Go string
	CPUs         int
	DataDir      string
}

// Ingest is the durable acknowledgement path alone: deliveries are queued
// but not attempted during it.
type Ingest struct {
	EventsPerSec float64 `json:"events_per_sec"`
	Ack          Dist    `json:"ack"`
	// Commits are the acknowledging ones: writes of the log, each with
	// its fdatasync. WriterBusy is the share of the time the log writer
	// spent in them, WriterActive the share it had calls in hand (busy,
	// plus deciding duplicates, encoding and answering), WriterHeld the
	// share of that it was held back because bbolt lagged. For the rest
	// of the time no call was queued.
	EventsPerCommit float64       `json:"events_per_commit"`
	CommitsPerSec   float64       `json:"commits_per_sec"`
	CommitCycle     time.Duration `json:"commit_cycle_ns"`
	WriterBusy      float64       `json:"writer_busy"`
	WriterActive    float64       `json:"writer_active"`
	WriterHeld      float64       `json:"writer_held"`
	// Copies are the bbolt transactions that copy logged events into the
	// database, off the acknowledgement path; CopyBusy is the share of
	// the time the bbolt writer spent in transactions.
	CopyCommitsPerSec float64 `json:"copy_commits_per_sec"`
	EventsPerCopy     float64 `json:"events_per_copy"`
	CopyBusy          float64 `json:"copy_busy"`
	// CPUPerEvent is process CPU time (all cores) per event.
	CPUPerEvent time.Duration `json:"cpu_per_event_ns"`
	Failed      int           `json:"failed"`
}

// E2E is publish and delivery running together.
type E2E struct {
	IngestPerSec    float64 `json:"ingest_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	Latency         Dist    `json:"publish_to_delivery"`
	Delivered       int     `json:"delivered"`
	// CPUPerDelivery is process CPU time (all cores) per delivery, the
	// publishing, the receivers and the load generator included.
	CPUPerDelivery time.Duration `json:"cpu_per_delivery_ns"`
}

// Backlog is the large-queue phase.
type Backlog struct {
	Queued           int           `json:"queued"`
	QueuePerSec      float64       `json:"queue_per_sec"`
	FileBytes        int64         `json:"file_bytes"`
	BytesPerDelivery float64       `json:"bytes_per_delivery"`
	Ready            time.Duration `json:"ready_ns"` // store open to healthz 200
	DrainPerSec      float64       `json:"drain_per_sec"`
	// SmallDrainPerSec is the drain rate of a queue of SmallQueue
	// deliveries (a hundredth, at least 2000) in the same run; DrainVsSmall
	// compares the two.
	SmallQueue       int     `json:"small_queue"`
	SmallDrainPerSec float64 `json:"small_drain_per_sec"`
	DrainVsSmall     float64 `json:"drain_vs_small_queue"`
	MaxRSS           int64   `json:"max_rss_bytes"`
	MaxRSSAnon       int64   `json:"max_rss_anon_bytes"`
}

const benchToken = "bench-publisher-token-000000000"

// Run performs the benchmark. It uses temporary directories under
// cfg.Dir and removes them.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Size <= 0 || cfg.Publishers <= 0 || cfg.Hooks <= 0 || (cfg.Events <= 0 && cfg.Duration <= 0) {
		return nil, errors.New("bench: size, publishers, hooks and events or duration must be positive")
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = DefaultRounds
	}
	root, err := os.MkdirTemp(cfg.Dir, "hookrelay-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)

	res := &Result{Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version(), CPUs: runtime.NumCPU(), DataDir: root}}
	res.Config.Events, res.Config.Size, res.Config.Publishers, res.Config.Hooks, res.Config.Backlog, res.Config.Rounds = cfg.Events, cfg.Size, cfg.Publishers, cfg.Hooks, cfg.Backlog, cfg.Rounds
	res.Config.Duration = cfg.Duration.String()
	p := progress{w: cfg.Progress}
	defer p.done()

	// Each phase runs under a pprof label, so a CPU profile of the run
	// splits by phase: go tool pprof -tagfocus=phase=ingest.
	phase := func(name string, fn func(ctx context.Context) error) error {
		p.say(name)
		var err error
		pprof.Do(ctx, pprof.Labels("phase", name), func(ctx context.Context) { err = fn(ctx) })
		return err
	}
	if err := phase("fdatasync", func(context.Context) (err error) {
		res.FsyncPerSec, err = fsyncRate(root, 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	if err := interleaved(ctx, cfg, root, &p, res); err != nil {
		return nil, err
	}
	if err := phase("log commits back to back", func(context.Context) (err error) {
		batch := max(int(res.Ingest.EventsPerCommit+0.5), 1)
		res.LogCommitsPerS, err = store.LogCommitRate(filepath.Join(root, "log"), batch, cfg.Size, cfg.Hooks, 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	if err := phase("bbolt commits back to back", func(context.Context) (err error) {
		batch := max(int(res.Ingest.EventsPerCopy+0.5), 1)
		res.BoltCommitsPerS, err = boltCommitRate(filepath.Join(root, "bolt"), batch, cfg.Size, cfg.Hooks, 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	if cfg.Backlog > 0 {
		if err := phase("backlog", func(ctx context.Context) error {
			// The baseline is the same drain on a queue a hundredth the size.
			small := cfg
			small.Backlog = max(cfg.Backlog/100, 2000)
			base, err := backlog(ctx, small, filepath.Join(root, "backlog-small"), 0, &p)
			if err != nil {
				return err
			}
			b, err := backlog(ctx, cfg, filepath.Join(root, "backlog"), base.DrainPerSec, &p)
			if err != nil {
				return err
			}
			b.SmallQueue = base.Queued
			b.SmallDrainPerSec = base.DrainPerSec
			res.Backlog = b
			return nil
		}); err != nil {
			return nil, err
		}
	}
	res.IngestVsCeiling = ratio(res.Ingest.EventsPerSec, res.HTTPCeilingPerS)
	res.IngestVsAnswer = ratio(res.Ingest.EventsPerSec, res.HTTPAnswerPerS)
	res.CommitsVsFsync = ratio(res.Ingest.CommitsPerSec, res.FsyncPerSec)
	res.CommitsVsLog = ratio(res.Ingest.CommitsPerSec, res.LogCommitsPerS)
	res.CopiesVsBolt = ratio(res.Ingest.CopyCommitsPerSec, res.BoltCommitsPerS)
	res.E2EVsCeiling = ratio(res.EndToEnd.DeliveredPerSec/float64(cfg.Hooks), res.HTTPCeilingPerS)
	res.AckP99InCommits = ratio(float64(res.Ingest.Ack.P99), float64(res.Ingest.CommitCycle))
	return res, nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// fsyncRate measures write+fdatasync of one 4 KiB block in dir.
func fsyncRate(dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, fmt.Errorf("fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if _, err := f.WriteAt(block, int64(n%256)*4096); err != nil {
			return 0, fmt.Errorf("fsync probe: %w", err)
		}
		if err := fdatasync(f); err != nil {
			return 0, fmt.Errorf("fsync probe: %w", err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// newServer is configured like the relay's own servers.
func newServer(h http.Handler) *http.Server { return relay.NewHTTPServer(h, nil) }

// instance is an in-process relay on a real listener.
type instance struct {
	st   *store.Store
	r    *relay.Relay
	srv  *http.Server
	url  string
	addr string
}

// relayConfig is the bench's configuration: one publisher, and hooks
// that deliver with as many connections as there are publishers (8 to
// 256), so that deliveries can keep up with publishing.
func relayConfig(dir string, hookURLs []string, maxBody, publishers int) (*relay.Config, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\ndata_dir = %q\nmax_body = %d\n\n[[publisher]]\nname = \"bench\"\ntoken = %q\n", dir, max(maxBody, 1024), benchToken)
	for i, u := range hookURLs {
		fmt.Fprintf(&b, "\n[[hook]]\nname = \"h%d\"\nurl = %q\nevents = [\"*\"]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nconcurrency = %d\nretry = [\"1s\", \"5s\", \"30s\"]\n",
			i, u, min(max(publishers, 8), 256))
	}
	return relay.LoadBytes(filepath.Join(dir, "bench.toml"), []byte(b.String()))
}

// startInstance opens the store and serves the relay; deliveries run only
// if deliver is set.
func startInstance(ctx context.Context, dir string, hookURLs []string, cfg Config, deliver bool) (*instance, error) {
	rcfg, err := relayConfig(dir, hookURLs, 2*cfg.Size+1024, cfg.Publishers)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return nil, err
	}
	// Logs go through a real handler, at the level serve uses, so their
	// cost is in the figures; the output is dropped.
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := relay.New(rcfg, st, relay.Options{Logger: logger, Version: "bench"})
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		return nil, err
	}
	in := &instance{st: st, r: r, srv: newServer(r.Handler()), addr: ln.Addr().String()}
	in.url = "http://" + in.addr + "/v1/events"
	if deliver {
		if err := r.Start(ctx); err != nil {
			ln.Close()
			st.Close()
			return nil, err
		}
	}
	go in.srv.Serve(ln)
	return in, nil
}

func (in *instance) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in.srv.Shutdown(ctx)
	in.r.Shutdown(ctx)
	return in.st.Close()
}

// deadHookURLs point at a port nothing listens on; ingest never delivers.
func deadHookURLs(n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = "http://127.0.0.1:9/h" + strconv.Itoa(i)
	}
	return urls
}

// receivers are in-process webhook receivers that record when each
// event number arrived.
type receivers struct {
	servers []*http.Server
	urls    []string
	count   atomic.Int64
	mu      sync.Mutex
	lat     []time.Duration
	sentAt  sync.Map // event number -> time.Time
}

func startReceivers(n int) (*receivers, error) {
	rc := &receivers{}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			rc.close()
			return nil, err
		}
		srv := newServer(http.HandlerFunc(rc.handle))
		go srv.Serve(ln)
		rc.servers = append(rc.servers, srv)
		rc.urls = append(rc.urls, "http://"+ln.Addr().String()+"/h"+strconv.Itoa(i))
	}
	return rc, nil
}

func (rc *receivers) handle(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	now := time.Now()
	if id := r.Header.Get("webhook-id"); len(id) > 1 {
		if n, err := strconv.Atoi(id[1:]); err == nil {
			if t, ok := rc.sentAt.Load(n); ok {
				rc.mu.Lock()
				rc.lat = append(rc.lat, now.Sub(t.(time.Time)))
				rc.mu.Unlock()
			}
		}
	}
	rc.count.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receivers) close() {
	for _, s := range rc.servers {
		s.Close()
	}
}

func (rc *receivers) waitFor(ctx context.Context, n int64, timeout time.Duration, p func(int)) error {
	deadline := time.Now().Add(timeout)
	for rc.count.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d deliveries arrived within %v", rc.count.Load(), n, timeout)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != nil {
			p(int(rc.count.Load()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// backlog queues cfg.Backlog deliveries with delivery paused (as when the
// receiver is down), restarts the relay on them, then drains them.
func backlog(ctx context.Context, cfg Config, dir string, baseRate float64, p *progress) (*Backlog, error) {
	out := &Backlog{}
	rss := startRSSSampler()
	defer rss.stop()

	p.say("backlog: queueing")
	in, err := startInstance(ctx, dir, deadHookURLs(cfg.Hooks), cfg, false)
	if err != nil {
		return nil, fmt.Errorf("backlog: %w", err)
	}
	client := newClient(cfg.Publishers)
	events := (cfg.Backlog + cfg.Hooks - 1) / cfg.Hooks
	l := &load{url: in.url, token: benchToken, publishers: cfg.Publishers, size: cfg.Size, events: events, progress: p.count("backlog queue")}
	r := l.run(ctx, client, 0)
	client.CloseIdleConnections()
	if err := in.stop(); err != nil {
		return nil, fmt.Errorf("backlog: %w", err)
	}
	if r.OK != events {
		return nil, fmt.Errorf("backlog: %d of %d events accepted", r.OK, events)
	}
	out.Queued = events * cfg.Hooks
	out.QueuePerSec = r.perSec()
	if fi, err := os.Stat(filepath.Join(dir, store.FileName)); err == nil {
		out.FileBytes = fi.Size()
		out.BytesPerDelivery = float64(fi.Size()) / float64(out.Queued)
	}

	p.say("backlog: restart")
	rc, err := startReceivers(cfg.Hooks)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	// The receivers are up under the old URLs' names only after the
	// restart: the config now points at them.
	start := time.Now()
	in, err = startInstance(ctx, dir, rc.urls, cfg, false)
	if err != nil {
		return nil, fmt.Errorf("backlog restart: %w", err)
	}
	defer in.stop()
	if err := in.r.Start(ctx); err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, in.addr, time.Minute); err != nil {
		return nil, err
	}
	out.Ready = time.Since(start)

	p.say("backlog: draining")
	start = time.Now()
	if err := rc.waitFor(ctx, int64(out.Queued), 30*time.Minute, p.count("backlog drain")); err != nil {
		return nil, fmt.Errorf("backlog drain: %w", err)
	}
	out.DrainPerSec = float64(out.Queued) / time.Since(start).Seconds()
	out.DrainVsSmall = ratio(out.DrainPerSec, baseRate)
	out.MaxRSS, out.MaxRSSAnon = rss.max()
	return out, nil
}

func waitHealthy(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("relay not healthy within %v", timeout)
}
