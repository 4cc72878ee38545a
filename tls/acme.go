package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"hookrelay/relay"
)

// acmeSource obtains and renews one certificate per domain with
// certmagic, from its own Cache and Config (never certmagic's package
// defaults), stored under DataDir/tls.
type acmeSource struct {
	log     *slog.Logger
	domains []string
	cache   *certmagic.Cache
	magic   *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	// config is magic for the cache's maintenance goroutine, which starts
	// before magic can be made.
	config atomic.Pointer[certmagic.Config]

	mu     sync.Mutex
	status map[string]*acmeStatus // by domain
}

// acmeStatus is what certmagic's events told about one domain.
type acmeStatus struct {
	lastErr string // of the last failed attempt; "" once one succeeds
}

var _ source = (*acmeSource)(nil)

func newACME(cfg relay.TLSConfig, opts Options, log *slog.Logger) (*acmeSource, error) {
	dir := filepath.Join(opts.DataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: certificate storage: %w", err)
	}
	host, tlsPort, err := splitPort(cfg.Listen)
	if err != nil {
		return nil, err
	}
	httpPort := 0
	if cfg.HTTPListen != "" {
		if _, httpPort, err = splitPort(cfg.HTTPListen); err != nil {
			return nil, err
		}
	}

	a := &acmeSource{log: log, domains: cfg.Domains, status: map[string]*acmeStatus{}}
	for _, d := range cfg.Domains {
		a.status[d] = &acmeStatus{}
	}
	zl := newZapLogger(log.Handler())
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return a.config.Load(), nil },
		RenewCheckInterval: opts.RenewCheckInterval,
		Logger:             zl,
	})
	a.magic = certmagic.New(a.cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: dir},
		DefaultServerName: cfg.Domains[0],
		OnEvent:           a.onEvent,
		ShouldEmitFunc:    a.wants,
		Logger:            zl,
	})
	var roots *x509.CertPool
	if len(cfg.CARoots) > 0 {
		roots = x509.NewCertPool()
		for _, c := range cfg.CARoots {
			roots.AddCert(c)
		}
	}
	// The challenge solvers find our listeners already bound to these
	// addresses and leave the answering to them: HTTP-01 through
	// challenge() on the plain listener, TLS-ALPN-01 through
	// getCertificate on the HTTPS listener.
	a.issuer = certmagic.NewACMEIssuer(a.magic, certmagic.ACMEIssuer{
		CA:                   cfg.CA,
		Email:                cfg.Email,
		Agreed:               true,
		DisableHTTPChallenge: cfg.HTTPListen == "",
		ListenHost:           host,
		AltHTTPPort:          httpPort,
		AltTLSALPNPort:       tlsPort,
		TrustedRoots:         roots,
		Logger:               zl,
	})
	a.magic.Issuers = []certmagic.Issuer{a.issuer}
	a.config.Store(a.magic)
	return a, nil
}

func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("tls: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("tls: address %q: bad port", addr)
	}
	return host, port, nil
}

// tlsConfig is certmagic's: it serves the managed certificates and
// answers TLS-ALPN-01 challenges.
func (a *acmeSource) tlsConfig() *tls.Config { return a.magic.TLSConfig() }

// start loads stored certificates and obtains or renews the others in
// the background, retrying failures (after 1m, 2m, 2m, 5m, 10m... as
// certmagic schedules) until ctx ends.
func (a *acmeSource) start(ctx context.Context) {
	if err := a.magic.ManageAsync(ctx, a.domains); err != nil {
		a.log.Error("certificate management did not start", logKeyErr, err)
	}
}

func (a *acmeSource) stop() {
	a.cache.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	certmagic.CleanUpOwnLocks(ctx, a.magic.Logger)
}

func (a *acmeSource) challenge(h http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(h)
}

func (a *acmeSource) reload() error {
	a.log.Info("certificates are obtained and renewed automatically in acme mode: nothing to reload")
	return nil
}

func (a *acmeSource) wants(event string) bool {
	return event == "cert_obtained" || event == "cert_failed"
}

// onEvent records the outcome of each attempt, for health.
func (a *acmeSource) onEvent(_ context.Context, event string, data map[string]any) error {
	domain, _ := data["identifier"].(string)
	a.mu.Lock()
	defer a.mu.Unlock()
	st, ok := a.status[domain]
	if !ok {
		return nil
	}
	switch event {
	case "cert_obtained":
		st.lastErr = ""
	case "cert_failed":
		st.lastErr = fmt.Sprint(data["error"])
		msg := "could not obtain a certificate; retrying later"
		if renewal, _ := data["renewal"].(bool); renewal {
			msg = "could not renew the certificate; retrying later"
		}
		a.log.Error(msg, logKeyDomain, domain, logKeyErr, st.lastErr,
			"hint", "check that the domain's DNS points to this machine and that tls.listen and tls.http_listen are reachable from the internet; meanwhile events are still accepted on server.listen and delivered")
	}
	return nil
}

func (a *acmeSource) health() (report, bool) {
	r := report{Mode: relay.TLSACME}
	ok := true
	now := time.Now()
	for _, d := range a.domains {
		c := certReport{Names: []string{d}}
		a.mu.Lock()
		lastErr := a.status[d].lastErr
		a.mu.Unlock()
		leaf := a.served(d, now)
		switch {
		case leaf != nil && lastErr == "":
			c.State = stateValid
		case leaf != nil:
			c.State, c.Error = stateRenewFailing, lastErr
		case lastErr != "":
			c.State, c.Error = stateFailed, lastErr
		default:
			c.State = stateObtaining
		}
		if leaf != nil {
			c.NotAfter = &leaf.NotAfter
		}
		if c.State != stateValid {
			ok = false
		}
		r.Certificates = append(r.Certificates, c)
	}
	return r, ok
}

// served returns the leaf of the unexpired certificate in the cache for
// domain that expires last, or nil.
func (a *acmeSource) served(domain string, now time.Time) *x509.Certificate {
	var best *x509.Certificate
	for _, c := range a.cache.AllMatchingCertificates(domain) {
		if l := c.Leaf; l != nil && now.Before(l.NotAfter) && (best == nil || l.NotAfter.After(best.NotAfter)) {
			best = l
		}
	}
	return best
}
