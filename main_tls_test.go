package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hookrelay/tls/acmetest"
)

// deliveries is a webhook receiver that records webhook-ids.
type deliveries struct {
	mu  sync.Mutex
	ids map[string]bool
}

func newDeliveries(t *testing.T) (*deliveries, string) {
	d := &deliveries{ids: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.ids[r.Header.Get("webhook-id")] = true
		d.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return d, srv.URL
}

func (d *deliveries) wait(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		ok := d.ids[id]
		d.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %s not delivered", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishTo POSTs an event and returns the status and the leaf certificate
// the server presented.
func publishTo(t *testing.T, client *http.Client, base, id string) (int, *x509.Certificate) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/events", strings.NewReader(`{"type":"payment.succeeded","id":"`+id+`"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var leaf *x509.Certificate
	if resp.TLS != nil {
		leaf = resp.TLS.PeerCertificates[0]
	}
	return resp.StatusCode, leaf
}

// tlsHealth reads /healthz on addr: the status and the tls report's first
// certificate state.
func tlsHealth(t *testing.T, addr string) (status, state string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		TLS    struct {
			Certificates []struct{ State string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || len(body.TLS.Certificates) != 1 {
		t.Fatalf("healthz: %d %+v %v", resp.StatusCode, body, err)
	}
	return body.Status, body.TLS.Certificates[0].State
}

func waitUntil(t *testing.T, p *proc, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stopProc(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", p.stderr.String())
	}
}

// TestACMEThroughTheBinary runs hookrelay serve against Pebble: the
// certificate is obtained through the ACME flow, a webhook posted over
// HTTPS is delivered, and after a restart the stored certificate is
// served again.
func TestACMEThroughTheBinary(t *testing.T) {
	binary(t)
	dir := t.TempDir()
	const domain = "binary.hooks.example.com"
	httpsAddr, plainAddr := freePort(t), freePort(t)
	port := func(a string) int { _, p, _ := net.SplitHostPort(a); var n int; fmt.Sscan(p, &n); return n }
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: port(plainAddr), TLSPort: port(httpsAddr)})
	dns := acmetest.DNS(t)
	dns.Map(domain, "127.0.0.1")
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca.DirectoryRootPEM, 0o600)
	got, hookURL := newDeliveries(t)
	local := freePort(t)
	cfg := writeConfig(t, dir, local, hookURL, fmt.Sprintf(`
[tls]
mode = "acme"
listen = %q
http_listen = %q
domains = [%q]
ca = %q
ca_root = "file:ca.pem"
`, httpsAddr, plainAddr, domain, ca.DirectoryURL))

	p := startProc(t, "serve", "-config", cfg)
	waitHealthy(t, p, local)
	waitUntil(t, p, "a valid certificate", func() bool {
		_, state := tlsHealth(t, local)
		return state == "valid"
	})
	client := dns.Client(ca.Roots())
	defer client.CloseIdleConnections()
	base := "https://" + domain + ":" + fmt.Sprint(port(httpsAddr))
	code, first := publishTo(t, client, base, "acme-1")
	if code != http.StatusAccepted {
		t.Fatalf("publish over HTTPS: %d", code)
	}
	got.wait(t, "acme-1")
	for _, want := range []string{`msg="obtaining certificate"`, `msg="certificate obtained successfully"`} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	client.CloseIdleConnections()
	stopProc(t, p)

	// The certificate is kept in data_dir and served at once after a
	// restart.
	p = startProc(t, "serve", "-config", cfg)
	waitHealthy(t, p, local)
	waitUntil(t, p, "the stored certificate", func() bool {
		_, state := tlsHealth(t, local)
		return state == "valid"
	})
	code, again := publishTo(t, client, base, "acme-2")
	if code != http.StatusAccepted || !again.Equal(first) {
		t.Fatalf("after restart: status %d, serial %v (first %v)", code, again.SerialNumber, first.SerialNumber)
	}
	got.wait(t, "acme-2")
	if strings.Contains(p.stderr.String(), `msg="obtaining certificate"`) {
		t.Errorf("a new certificate was obtained although one was stored")
	}
	client.CloseIdleConnections()
	stopProc(t, p)
}

// TestFilesModeThroughTheBinary serves a certificate from files, reloads
// it on SIGHUP, keeps it when the new key is broken, and redirects plain
// HTTP.
func TestFilesModeThroughTheBinary(t *testing.T) {
	binary(t)
	dir := t.TempDir()
	const domain = "files.hooks.example.com"
	ca := newFilesCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := ca.issue(t, domain, certFile, keyFile)
	got, hookURL := newDeliveries(t)
	local, httpsAddr, plainAddr := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, dir, local, hookURL, fmt.Sprintf(`
[tls]
mode = "files"
listen = %q
http_listen = %q
cert_file = "cert.pem"
key_file = "key.pem"
`, httpsAddr, plainAddr))

	p := startProc(t, "serve", "-config", cfg)
	waitHealthy(t, p, local)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	var d net.Dialer
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DialContext:       func(ctx context.Context, n, _ string) (net.Conn, error) { return d.DialContext(ctx, n, httpsAddr) },
		DisableKeepAlives: true,
	}}
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	base := "https://" + domain + ":" + httpsPort

	code, leaf := publishTo(t, client, base, "files-1")
	if code != http.StatusAccepted || !leaf.Equal(first) {
		t.Fatalf("publish over HTTPS: %d %v", code, leaf)
	}
	got.wait(t, "files-1")

	// Plain HTTP on the public side is redirected, /healthz is not.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Post("http://"+plainAddr+"/v1/events", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://127.0.0.1:"+httpsPort+"/v1/events" {
		t.Errorf("plain POST: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if status, state := tlsHealth(t, plainAddr); status != "ok" || state != "valid" {
		t.Errorf("healthz on the plain listener: %s %s", status, state)
	}

	// New files are served after SIGHUP.
	second := ca.issue(t, domain, certFile, keyFile)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, p, "the new certificate", func() bool {
		_, leaf := publishTo(t, client, base, "files-2")
		return leaf.Equal(second)
	})

	// A broken key is refused, logged, reported, and the certificate
	// stays.
	os.WriteFile(keyFile, []byte("not a key\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, p, "the refusal in the log", func() bool {
		return strings.Contains(p.stderr.String(), "certificate files not reloaded; still serving the previous certificate")
	})
	if !strings.Contains(p.stderr.String(), "key file "+keyFile) {
		t.Errorf("the log does not name the key file:\n%s", p.stderr.String())
	}
	code, leaf = publishTo(t, client, base, "files-3")
	if code != http.StatusAccepted || !leaf.Equal(second) {
		t.Fatalf("after a broken key: %d, serial %v, want %v", code, leaf.SerialNumber, second.SerialNumber)
	}
	got.wait(t, "files-3")
	if status, state := tlsHealth(t, local); status != "degraded" || state != "reload_failed" {
		t.Errorf("healthz after a broken key: %s %s", status, state)
	}
	stopProc(t, p)
}

// filesCA issues certificates for files mode.
type filesCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64
}

func newFilesCA(t *testing.T) *filesCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookrelay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &filesCA{cert: cert, key: key, serial: 100}
}

func (ca *filesCA) issue(t *testing.T, name, certFile, keyFile string) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert
}
