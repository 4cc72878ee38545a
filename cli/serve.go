package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"hookrelay/relay"
	"hookrelay/store"
	"hookrelay/systemd"
	"hookrelay/tls"
)

// ServeCommand runs the relay until it receives SIGINT or SIGTERM.
type ServeCommand struct {
	Stdout, Stderr io.Writer
}

const serveUsage = `usage: hookrelay [serve] [-config FILE] [-log-level LEVEL] [-log-format FORMAT]

Runs the relay. Without -config it runs the embedded demo: plain HTTP on
127.0.0.1:8080, data in ./hookrelay-data, and a hook delivering to a
built-in receiver at /demo/receiver that verifies each signature.

The first SIGINT or SIGTERM stops accepting, lets deliveries in flight
finish (up to server.shutdown_timeout) and closes the store; a second one
abandons the deliveries still in flight (they are retried after restart).

With a [tls] table it also serves HTTPS on tls.listen and redirects plain
HTTP on tls.http_listen; server.listen stays a plain local listener. In
files mode SIGHUP reloads tls.cert_file and tls.key_file.

Examples:
  hookrelay
  hookrelay serve -config /etc/hookrelay/hookrelay.toml
  curl -X POST http://127.0.0.1:8080/v1/events \
    -H 'Authorization: Bearer hookrelay-demo-token' \
    -d '{"type":"payment.succeeded","data":{"amount":1200}}'

Flags:
`

// Run implements Command.
func (c *ServeCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() {
		fmt.Fprint(c.Stderr, serveUsage)
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "configuration file (default: the embedded demo)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return ErrUsage
	}
	log, err := newLogger(c.Stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(c.Stderr, err)
		fs.Usage()
		return ErrUsage
	}

	demo := *path == ""
	var cfg *relay.Config
	if demo {
		cfg, err = relay.LoadBytes(relay.DemoConfigName, relay.DemoConfig)
	} else {
		cfg, err = relay.Load(*path)
	}
	if err != nil {
		fmt.Fprintln(c.Stderr, err)
		return ErrReported
	}
	return serve(ctx, cfg, log, demo)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid -log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid -log-format %q: use text or json", format)
}

// serve runs the relay for cfg until ctx ends or a signal arrives.
func serve(ctx context.Context, cfg *relay.Config, log *slog.Logger, demo bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first signal starts a graceful stop, a second one cuts the
	// drain short.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	drainCtx, abortDrain := context.WithCancel(context.Background())
	defer abortDrain()
	go func() {
		select {
		case sig := <-sigs:
			log.Info("stopping: draining deliveries in flight; signal again to abandon them", "signal", sig.String())
			cancel()
		case <-ctx.Done():
			return
		}
		select {
		case <-sigs:
			log.Warn("second signal: abandoning deliveries in flight; they will be retried after restart")
			abortDrain()
		case <-drainCtx.Done():
		}
	}()

	st, err := store.Open(cfg.Server.DataDir, store.Options{Logger: log.With("subsystem", "store")})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store failed", "err", err)
		}
	}()

	// The public HTTPS side, when configured. Its certificate state is
	// part of /healthz.
	var pub *tls.Server
	var health []relay.HealthCheck
	if cfg.TLS.Mode != relay.TLSOff {
		pub, err = tls.New(cfg.TLS, tls.Options{Logger: log, DataDir: cfg.Server.DataDir})
		if err != nil {
			return err
		}
		health = append(health, relay.HealthCheck{Name: "tls", Check: pub.Health})
	}
	stopPub := func(ctx context.Context) {
		if pub == nil {
			return
		}
		if err := pub.Shutdown(ctx); err != nil {
			log.Warn("public listeners shutdown incomplete", "err", err)
		}
	}

	version := BuildVersion()
	r, err := relay.New(cfg, st, relay.Options{Logger: log, Version: version, Health: health})
	if err != nil {
		stopPub(context.Background())
		return err
	}
	handler := r.Handler()
	if demo {
		hook := cfg.Hook("demo")
		mux := http.NewServeMux()
		mux.Handle(relay.DemoReceiverPath, relay.DemoReceiver(hook.SigningKeys, log.With("subsystem", "demo-receiver"), time.Now))
		mux.Handle("/", handler)
		handler = mux
	}

	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		stopPub(context.Background())
		return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
	}
	if pub != nil {
		if err := pub.Listen(); err != nil {
			ln.Close()
			stopPub(context.Background())
			return err
		}
	}
	srv := relay.NewHTTPServer(handler, slog.NewLogLogger(log.With("subsystem", "http").Handler(), slog.LevelWarn))
	if err := r.Start(ctx); err != nil {
		ln.Close()
		stopPub(context.Background())
		return err
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	var pubErr <-chan error
	var hup chan os.Signal
	if pub != nil {
		pub.Start(ctx, handler)
		pubErr = pub.Err()
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}

	log.Info("hookrelay ready", "version", version, "config", cfg.Path, "listen", ln.Addr().String(),
		"data_dir", cfg.Server.DataDir, "publishers", len(cfg.Publishers), "hooks", len(cfg.Hooks), "tls", cfg.TLS.Mode)
	if demo {
		log.Info("demo mode: publish an event with: curl -X POST http://" + ln.Addr().String() +
			"/v1/events -H 'Authorization: Bearer " + relay.DemoToken + "' -d '{\"type\":\"payment.succeeded\",\"data\":{\"amount\":1200}}'")
	}
	if _, err := systemd.Notify(systemd.Ready); err != nil {
		log.Warn("systemd readiness notification failed", "err", err)
	}
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		watchdog(ctx, st, log)
	}()

	var runErr error
run:
	for {
		select {
		case <-ctx.Done():
			break run
		case err := <-srvErr:
			runErr = fmt.Errorf("http server: %w", err)
			cancel()
			break run
		case err := <-pubErr:
			runErr = fmt.Errorf("public listener: %w", err)
			cancel()
			break run
		case <-hup:
			// Reload logs the outcome; a failure keeps the previous
			// certificate.
			pub.Reload()
		}
	}
	<-watchdogDone
	systemd.Notify(systemd.Stopping)

	// Stop accepting, then drain deliveries, then (deferred) close the
	// store: in that order nothing accepted is left unwritten.
	shutdownCtx, cancelShutdown := context.WithTimeout(drainCtx, cfg.Server.ShutdownTimeout)
	defer cancelShutdown()
	pubStopped := make(chan struct{})
	go func() {
		defer close(pubStopped)
		stopPub(shutdownCtx)
	}()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http shutdown incomplete", "err", err)
		srv.Close()
	}
	<-pubStopped
	if err := r.Shutdown(shutdownCtx); err != nil {
		log.Warn("delivery drain incomplete", "err", err)
	}
	log.Info("hookrelay stopped")
	return runErr
}

// watchdog pings systemd's watchdog only while the store commits.
func watchdog(ctx context.Context, st *store.Store, log *slog.Logger) {
	every, ok := systemd.WatchdogInterval()
	if !ok {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pingCtx, cancel := context.WithTimeout(ctx, every)
		err := st.Ping(pingCtx)
		cancel()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				log.Error("store unhealthy; not pinging the watchdog", "err", err)
			}
			continue
		}
		systemd.Notify(systemd.Watchdog)
	}
}
