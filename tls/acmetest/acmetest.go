// Package acmetest runs a real ACME CA (Pebble) and a DNS server
// (challtestsrv) inside a test process, on 127.0.0.1, so that certificates
// are obtained through the whole ACME flow with no network: Pebble's
// validation authority resolves names through the DNS server and connects
// to the ports the test gives it, where the relay must answer the
// challenges itself. It is for tests only.
package acmetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// CA is a running Pebble.
type CA struct {
	// DirectoryURL is the ACME directory (https, on 127.0.0.1).
	DirectoryURL string
	// DirectoryRootPEM is the certificate to trust for the directory's
	// HTTPS connection: what a client sets as its private CA root.
	DirectoryRootPEM []byte

	ca *ca.CAImpl
}

// Options of a CA.
type Options struct {
	// HTTPPort and TLSPort are where the validation authority connects
	// on 127.0.0.1 for HTTP-01 and TLS-ALPN-01 challenges.
	HTTPPort, TLSPort int
	// Validity of issued certificates; 0 means 90 days.
	Validity time.Duration
	// Log receives Pebble's log; nil discards it.
	Log io.Writer
}

var envOnce sync.Once

// Start runs a Pebble until the test ends. Its validation resolves names
// with the DNS server of this package (see DNS). Validation is real: it
// is neither skipped nor delayed.
func Start(t testing.TB, opts Options) *CA {
	t.Helper()
	envOnce.Do(func() {
		// Pebble reads these when its parts are created: validate at once
		// rather than after a random sleep, accept every good nonce, and
		// never reuse an authorization, so every order is validated.
		os.Setenv("PEBBLE_VA_NOSLEEP", "1")
		os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
		os.Setenv("PEBBLE_AUTHZREUSE", "0")
	})
	dns := DNS(t)
	w := opts.Log
	if w == nil {
		w = io.Discard
	}
	logger := log.New(w, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{
		"default": {Description: "test profile", ValidityPeriod: uint64(opts.Validity / time.Second)},
	}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, dns.Addr, store)
	frontEnd := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	srv := httptest.NewUnstartedServer(frontEnd.Handler())
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &CA{
		DirectoryURL:     srv.URL + wfe.DirectoryPath,
		DirectoryRootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
		ca:               authority,
	}
}

// Roots is a pool holding only Pebble's root, which issued every
// certificate this CA signs.
func (c *CA) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.GetRootCert(0).Cert)
	return pool
}

// DNSServer answers A queries for the names mapped with Map and nothing
// else: an unmapped name does not resolve.
type DNSServer struct {
	// Addr is the host:port of the server, over UDP and TCP.
	Addr string
	srv  *challtestsrv.ChallSrv
}

var (
	dnsOnce sync.Once
	dnsSrv  *DNSServer
	dnsErr  error
)

// DNS returns the process's DNS server, starting it on first use. There is
// one per process (challtestsrv registers its handler globally); it runs
// until the process exits.
func DNS(t testing.TB) *DNSServer {
	t.Helper()
	dnsOnce.Do(func() { dnsSrv, dnsErr = startDNS() })
	if dnsErr != nil {
		t.Fatalf("acmetest: DNS server: %v", dnsErr)
	}
	return dnsSrv
}

func startDNS() (*DNSServer, error) {
	var lastErr error
	for range 10 {
		addr, err := freeUDPAndTCPPort()
		if err != nil {
			lastErr = err
			continue
		}
		srv, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{addr}, Log: log.New(io.Discard, "", 0)})
		if err != nil {
			return nil, err
		}
		// Unmapped names get no answer instead of 127.0.0.1 and ::1.
		srv.SetDefaultDNSIPv4("")
		srv.SetDefaultDNSIPv6("")
		srv.Run()
		if err := waitTCP(addr); err != nil {
			srv.Shutdown()
			lastErr = err
			continue
		}
		return &DNSServer{Addr: addr, srv: srv}, nil
	}
	return nil, lastErr
}

// FreePort returns a loopback port nothing listens on and that no earlier
// call returned, for the relay's listeners and the ports the CA validates
// challenges on: the kernel may hand out a port again as soon as it is
// closed, and two listeners of one relay must differ.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port
		}
	}
	t.Fatal("no fresh port")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func freeUDPAndTCPPort() (string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := pc.LocalAddr().String()
	ln, err := net.Listen("tcp", addr)
	pc.Close()
	if err != nil {
		return "", err
	}
	ln.Close()
	return addr, nil
}

func waitTCP(addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Map makes name resolve to the IPv4 address ip.
func (d *DNSServer) Map(name, ip string) { d.srv.AddDNSARecord(name, []string{ip}) }

// Resolver resolves names with this server only.
func (d *DNSServer) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, network, d.Addr)
		},
	}
}

// Client returns an HTTP client that resolves names with this server,
// trusts only roots for HTTPS, verifies host names, and does not follow
// redirects.
func (d *DNSServer) Client(roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Resolver: d.Resolver()}
	tr := &http.Transport{
		DialContext:       dialer.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
