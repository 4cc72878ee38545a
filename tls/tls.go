// Package tls serves the relay's public HTTPS listener and the plain HTTP
// listener beside it. Certificates come from an ACME CA through certmagic,
// obtained and renewed in the background (acme mode), or from a
// certificate and key file, reloaded on request and when they change
// (files mode). certmagic, its cache and its zap logger stay inside this
// package.
//
// The HTTPS listener serves the relay's handler (and TLS-ALPN-01
// challenges); the plain listener serves HTTP-01 challenges, /healthz,
// and a redirect to HTTPS for everything else.
package tls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"hookrelay/relay"
)

// Log attribute keys.
const (
	logKeySubsystem = "subsystem"
	logKeyErr       = "err"
	logKeyDomain    = "domain"
)

// Options are the outside parts a Server is built from.
type Options struct {
	Logger *slog.Logger
	// DataDir is the relay's data directory. In acme mode the ACME
	// account, certificates and keys are kept under DataDir/tls
	// (directories 0700, keys 0600).
	DataDir string
	// RenewCheckInterval is how often managed certificates are checked
	// for renewal; 0 means certmagic's default, 10 minutes.
	RenewCheckInterval time.Duration
	// FileCheckInterval is how often files mode looks for changed
	// certificate or key files; 0 means 5 seconds. A change is loaded
	// once the files have stayed the same for one interval.
	FileCheckInterval time.Duration
}

// source is where the served certificate comes from.
type source interface {
	// tlsConfig is the TLS configuration serving the certificate (and
	// answering TLS-ALPN-01 challenges in acme mode).
	tlsConfig() *tls.Config
	// start begins obtaining, renewing or watching; it stops when ctx
	// ends, and stop waits for that.
	start(ctx context.Context)
	stop()
	// challenge wraps h to answer HTTP-01 challenges.
	challenge(h http.Handler) http.Handler
	reload() error
	health() (report, bool)
}

// Server is the public side of the relay: an HTTPS listener and an
// optional plain HTTP listener. Create it with New, bind with Listen,
// serve with Start, stop with Shutdown.
type Server struct {
	cfg  relay.TLSConfig
	log  *slog.Logger
	src  source
	acme bool

	tlsLn, httpLn   net.Listener
	tlsSrv, httpSrv *http.Server
	errc            chan error
	cancel          context.CancelFunc
	wg              sync.WaitGroup
}

// New prepares a Server for cfg, whose Mode must be acme or files. In
// files mode it loads the certificate files and fails if they cannot be
// used. It binds nothing; in acme mode it starts certmagic's certificate
// cache, which Shutdown stops, so once New succeeds Shutdown must be
// called.
func New(cfg relay.TLSConfig, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger.With(logKeySubsystem, "tls")
	s := &Server{cfg: cfg, log: log, errc: make(chan error, 2)}
	var err error
	switch cfg.Mode {
	case relay.TLSACME:
		s.src, err = newACME(cfg, opts, log)
		s.acme = true
	case relay.TLSFiles:
		s.src, err = newFiles(cfg, opts, log)
	default:
		return nil, fmt.Errorf("tls: mode %q has no server", cfg.Mode)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Listen binds the HTTPS listener and, unless HTTPListen is "", the plain
// one, so that a port in use or not permitted fails before the relay
// reports ready.
func (s *Server) Listen() error {
	ln, err := listen(s.cfg.Listen)
	if err != nil {
		return err
	}
	if s.cfg.HTTPListen != "" {
		hln, err := listen(s.cfg.HTTPListen)
		if err != nil {
			ln.Close()
			return err
		}
		s.httpLn = hln
	}
	s.tlsLn = ln
	return nil
}

func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("listen on %s: %w (ports below 1024 need CAP_NET_BIND_SERVICE: see systemd/hookrelay.service)", addr, err)
	}
	return nil, fmt.Errorf("listen on %s: %w", addr, err)
}

// Addr is the address of the HTTPS listener; nil before Listen.
func (s *Server) Addr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// HTTPAddr is the address of the plain listener; nil before Listen or
// when there is none.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// Start serves h over HTTPS (TLS 1.2 or later) and starts the plain
// listener, then begins obtaining, renewing or watching certificates
// until ctx ends or Shutdown. It returns at once; a listener that fails
// reports on Err. Listen must have succeeded.
func (s *Server) Start(ctx context.Context, h http.Handler) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.tlsSrv = s.newHTTPServer(h, "https")
	s.tlsSrv.TLSConfig = s.src.tlsConfig()
	s.tlsSrv.TLSConfig.MinVersion = tls.VersionTLS12
	// HTTP/2 and HTTP/1.1 first: acme-tls/1 is only for the CA.
	s.tlsSrv.TLSConfig.NextProtos = append([]string{"h2", "http/1.1"}, s.tlsSrv.TLSConfig.NextProtos...)
	s.serve(func() error { return s.tlsSrv.ServeTLS(s.tlsLn, "", "") })
	if s.httpLn != nil {
		s.httpSrv = s.newHTTPServer(s.plainHandler(h), "http")
		s.serve(func() error { return s.httpSrv.Serve(s.httpLn) })
	}
	s.src.start(ctx)
	s.log.Info("public listeners ready", "mode", s.cfg.Mode, "https", s.tlsLn.Addr().String(), "http", addrString(s.httpLn))
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return "none"
	}
	return ln.Addr().String()
}

func (s *Server) serve(run func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	}()
}

// Err receives the error of a listener that stopped on its own.
func (s *Server) Err() <-chan error { return s.errc }

func (s *Server) newHTTPServer(h http.Handler, name string) *http.Server {
	return relay.NewHTTPServer(h, log.New(serverLog{s.log.With("listener", name)}, "", 0))
}

// serverLog takes http.Server's error log. Failed TLS handshakes are
// routine on a public port (scanners, clients without SNI) and go to
// debug; anything else is a warning.
type serverLog struct{ log *slog.Logger }

func (w serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// Shutdown stops certificate management, stops both listeners accepting,
// waits for requests in flight until ctx ends (then closes them), and
// stops the certificate cache. It is safe to call without Start.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.cancel == nil {
		for _, ln := range []net.Listener{s.tlsLn, s.httpLn} {
			if ln != nil {
				ln.Close()
			}
		}
		s.src.stop()
		return nil
	}
	s.cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for _, srv := range []*http.Server{s.tlsSrv, s.httpSrv} {
		if srv == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.wg.Wait()
	s.src.stop()
	return first
}

// Reload re-reads the certificate files in files mode and serves them
// from the next handshake on; if they cannot be used it logs why, keeps
// serving the previous certificate and returns the error. In acme mode
// certificates are renewed automatically and Reload does nothing.
func (s *Server) Reload() error { return s.src.reload() }

// Health reports the state of the served certificates, for
// relay.HealthCheck: ok is false while a certificate is missing,
// expired, failing to renew, or its files failed to reload.
func (s *Server) Health() (any, bool) { return s.src.health() }

// report is the JSON form of Health.
type report struct {
	Mode         string       `json:"mode"`
	Certificates []certReport `json:"certificates"`
}

// Certificate states in reports.
const (
	stateValid        = "valid"         // served and current
	stateObtaining    = "obtaining"     // none yet; the first attempt is running
	stateFailed       = "failed"        // none; the last attempt failed and is retried
	stateRenewFailing = "renew_failing" // served, but the last renewal failed and is retried
	stateExpired      = "expired"       // served, but expired
	stateReloadFailed = "reload_failed" // served, but the files changed and cannot be used
)

type certReport struct {
	Names    []string   `json:"names"`
	State    string     `json:"state"`
	NotAfter *time.Time `json:"not_after,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// plainHandler serves the plain HTTP listener: ACME HTTP-01 challenges,
// the relay's /healthz, and a redirect to HTTPS for everything else.
func (s *Server) plainHandler(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", h)
	mux.Handle("/.well-known/acme-challenge/", s.src.challenge(http.NotFoundHandler()))
	mux.HandleFunc("/", s.redirect)
	return mux
}

// redirect answers 308 (which keeps the method and body) with the same
// URL on https. In acme mode a host that is not one of the domains is
// replaced by the first domain.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if s.acme && !slices.Contains(s.cfg.Domains, host) {
		host = s.cfg.Domains[0]
	}
	if !validHost(host) {
		http.Error(w, "bad Host header: use https://", http.StatusBadRequest)
		return
	}
	port := "443"
	if _, p, err := net.SplitHostPort(s.cfg.Listen); err == nil {
		port = p
	}
	if port != "443" || strings.Contains(host, ":") {
		host = net.JoinHostPort(host, port)
	}
	u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
}

// validHost accepts a DNS name or an IP address.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
