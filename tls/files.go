package tls

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"hookrelay/relay"
)

// defaultFileCheckInterval: a change is loaded after one or two of these.
const defaultFileCheckInterval = 5 * time.Second

// fileSource serves the certificate of cert_file and key_file. A reload
// that fails keeps the certificate served before.
type fileSource struct {
	log               *slog.Logger
	certFile, keyFile string
	interval          time.Duration

	cert atomic.Pointer[tls.Certificate]

	mu      sync.Mutex
	lastErr string     // of the last failed reload; "" after a good one
	stamp   [2]fileTag // of the files as last read (or tried)

	wg sync.WaitGroup
}

// fileTag tells whether a file changed: modification time and size.
type fileTag struct {
	mod  time.Time
	size int64
}

var _ source = (*fileSource)(nil)

func newFiles(cfg relay.TLSConfig, opts Options, log *slog.Logger) (*fileSource, error) {
	f := &fileSource{log: log, certFile: cfg.CertFile, keyFile: cfg.KeyFile, interval: opts.FileCheckInterval}
	if f.interval <= 0 {
		f.interval = defaultFileCheckInterval
	}
	f.stamp = f.tags()
	pair, err := relay.LoadKeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	f.cert.Store(pair)
	return f, nil
}

func (f *fileSource) tags() [2]fileTag {
	var t [2]fileTag
	for i, p := range []string{f.certFile, f.keyFile} {
		if fi, err := os.Stat(p); err == nil {
			t[i] = fileTag{fi.ModTime(), fi.Size()}
		}
	}
	return t
}

func (f *fileSource) tlsConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return f.cert.Load(), nil },
	}
}

// start watches the files and reloads them when they have changed and
// then stayed the same for one interval, so that a certificate and key
// written one after the other are loaded together.
func (f *fileSource) start(ctx context.Context) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		t := time.NewTicker(f.interval)
		defer t.Stop()
		var seen [2]fileTag
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := f.tags()
			f.mu.Lock()
			changed := now != f.stamp
			f.mu.Unlock()
			if changed && now == seen {
				f.reload()
			}
			seen = now
		}
	}()
}

func (f *fileSource) stop() { f.wg.Wait() }

func (f *fileSource) challenge(h http.Handler) http.Handler { return h }

// reload reads the files; each change is logged once, whether it could be
// used or not.
func (f *fileSource) reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stamp = f.tags()
	pair, err := relay.LoadKeyPair(f.certFile, f.keyFile)
	if err != nil {
		f.lastErr = err.Error()
		f.log.Error("certificate files not reloaded; still serving the previous certificate", logKeyErr, err)
		return err
	}
	f.lastErr = ""
	f.cert.Store(pair)
	f.log.Info("certificate files reloaded", "names", pair.Leaf.DNSNames, "not_after", pair.Leaf.NotAfter)
	return nil
}

func (f *fileSource) health() (report, bool) {
	leaf := f.cert.Load().Leaf
	names := leaf.DNSNames
	if len(names) == 0 {
		names = []string{leaf.Subject.CommonName}
	}
	c := certReport{Names: names, State: stateValid, NotAfter: &leaf.NotAfter}
	f.mu.Lock()
	c.Error = f.lastErr
	f.mu.Unlock()
	switch {
	case time.Now().After(leaf.NotAfter):
		c.State = stateExpired
	case c.Error != "":
		c.State = stateReloadFailed
	}
	return report{Mode: relay.TLSFiles, Certificates: []certReport{c}}, c.State == stateValid
}
