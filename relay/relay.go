// Package relay is hookrelay's domain: configuration, events, routing,
// signing, the delivery scheduler and the HTTP handlers. It declares the
// Store it needs and leaves storage to another package.
package relay

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// Log attribute keys shared by the package's log lines.
const (
	logKeySubsystem = "subsystem"
	logKeyHook      = "hook"
	logKeyEvent     = "event"
	logKeyTask      = "task"
	logKeyErr       = "err"
)

// Options are the outside parts a Relay is built from.
type Options struct {
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Version is sent in the User-Agent of deliveries.
	Version string
	// Health adds parts the relay depends on but does not own, such as
	// the public certificate, to GET /healthz.
	Health []HealthCheck
}

// HealthCheck is one part reported by GET /healthz under Name. Check
// returns a JSON-encodable report and whether the part is healthy; it is
// called on every request, concurrently, and must be fast. An unhealthy
// part makes the status "degraded" but the answer stays 200: the relay
// still accepts, stores and delivers events.
type HealthCheck struct {
	Name  string
	Check func() (report any, ok bool)
}

// Relay accepts events, stores them and delivers them. Create it with New,
// serve Handler, call Start to begin delivering and Shutdown to stop.
type Relay struct {
	cfg   *Config
	store Store
	log   *slog.Logger
	now   func() time.Time
	ua    string

	router     *router
	publishers map[[sha256.Size]byte]string
	sources    map[string]*source
	// forward are the request headers some hook forwards: the ones kept
	// with inbound events.
	forward []string
	sched   *scheduler
	health  []HealthCheck

	ready    atomic.Bool
	stopping atomic.Bool
}

// New builds a relay for cfg on st. It does not start anything.
func New(cfg *Config, st Store, opts Options) (*Relay, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("relay: config and store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	r := &Relay{
		cfg:        cfg,
		store:      st,
		log:        opts.Logger,
		now:        opts.Now,
		ua:         "hookrelay/" + opts.Version,
		router:     newRouter(cfg.Hooks),
		publishers: make(map[[sha256.Size]byte]string, len(cfg.Publishers)),
		health:     opts.Health,
		sources:    newSources(cfg.Sources),
	}
	for _, h := range cfg.Hooks {
		for _, name := range h.ForwardHeaders {
			if !slices.Contains(r.forward, name) {
				r.forward = append(r.forward, name)
			}
		}
	}
	for _, p := range cfg.Publishers {
		// Tokens are looked up by digest so that the lookup's timing says
		// nothing useful about the token.
		r.publishers[sha256.Sum256([]byte(p.Token))] = p.Name
	}
	sched, err := newScheduler(cfg.Hooks, st, r.ua, opts.Logger.With(logKeySubsystem, "delivery"), opts.Now)
	if err != nil {
		return nil, err
	}
	r.sched = sched
	st.Notify(sched.notify)
	return r, nil
}

// Start begins delivering queued and new events. It reports hooks that
// have queued deliveries but are no longer configured: their deliveries
// are kept, not dropped.
func (r *Relay) Start(ctx context.Context) error {
	unconfigured, err := r.QueuedUnconfigured(ctx)
	if err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	for _, name := range unconfigured {
		r.log.Warn("hook is no longer configured but has queued deliveries; they are kept until it is configured again",
			logKeyHook, name)
	}
	r.sched.start()
	r.ready.Store(true)
	return nil
}

// Shutdown stops claiming deliveries and waits for attempts in flight,
// up to ctx's deadline; attempts still running then are abandoned and
// retried after the next start. It does not close the store.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.stopping.Store(true)
	return r.sched.stop(ctx)
}

// QueuedUnconfigured lists hooks with queued deliveries that are not in
// the configuration.
func (r *Relay) QueuedUnconfigured(ctx context.Context) ([]string, error) {
	queued, err := r.store.QueuedHooks(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(queued, func(n string) bool { return r.cfg.Hook(n) != nil }), nil
}

// HTTP server limits of every listener that serves the relay. Bodies are
// capped by the handlers themselves (max_body).
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// NewHTTPServer returns a server for h with the limits every listener of
// the relay uses: all four timeouts and a cap on header size. errorLog
// receives net/http's own errors.
func NewHTTPServer(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errorLog,
	}
}

// Handler returns the relay's HTTP API.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", r.handlePublish)
	mux.HandleFunc("POST /in/{source}", r.handleInbound)
	mux.HandleFunc("GET /healthz", r.handleHealth)
	mux.HandleFunc("/v1/events", methodNotAllowed("POST"))
	mux.HandleFunc("/in/{source}", methodNotAllowed("POST"))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	return mux
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
	}
}

func (r *Relay) handleHealth(w http.ResponseWriter, _ *http.Request) {
	switch {
	case r.stopping.Load():
		writeError(w, http.StatusServiceUnavailable, "shutting down")
	case !r.ready.Load():
		writeError(w, http.StatusServiceUnavailable, "starting")
	case len(r.health) == 0:
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	default:
		body := map[string]any{"status": "ok"}
		for _, h := range r.health {
			report, ok := h.Check()
			if !ok {
				body["status"] = "degraded"
			}
			body[h.Name] = report
		}
		writeJSON(w, http.StatusOK, body)
	}
}
