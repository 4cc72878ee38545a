package tls

import (
	"bytes"
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
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hookrelay/relay"
	"hookrelay/store"
	"hookrelay/tls/acmetest"
)

const testToken = "tls-test-publisher-token-0123"

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int { return acmetest.FreePort(t) }

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// receiver is a webhook receiver counting deliveries by webhook-id.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]int
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{got: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rc.mu.Lock()
		rc.got[r.Header.Get("webhook-id")]++
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) delivered(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got[id] > 0
}

// node is a relay (real bbolt store, real delivery) with its public
// Server and a local plain listener, as hookrelay serve runs them.
type node struct {
	t      *testing.T
	cfg    *relay.Config
	pub    *Server
	local  *httptest.Server
	logs   *syncBuffer
	cancel context.CancelFunc
	once   sync.Once
	stopFn func()
}

// startNode loads tlsTable as the [tls] table of a relay delivering
// everything to hookURL, and starts it. prepare, if not nil, sees the
// Server before it starts.
func startNode(t *testing.T, dir, tlsTable, hookURL string, opts Options, prepare func(*Server)) *node {
	t.Helper()
	src := fmt.Sprintf(`
[server]
listen = "127.0.0.1:%d"
data_dir = "data"
shutdown_timeout = "5s"

[[publisher]]
name = "provider"
token = %q

[[hook]]
name = "app"
url = %q
events = ["*"]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
retry = ["100ms", "100ms"]

%s`, freePort(t), testToken, hookURL, tlsTable)
	cfg, err := relay.LoadBytes(filepath.Join(dir, "hookrelay.toml"), []byte(src))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := &node{t: t, cfg: cfg, logs: logs}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	})

	st, err := store.Open(cfg.Server.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger, opts.DataDir = log, cfg.Server.DataDir
	pub, err := New(cfg.TLS, opts)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(pub)
	}
	if err := pub.Listen(); err != nil {
		st.Close()
		t.Fatal(err)
	}
	r, err := relay.New(cfg, st, relay.Options{Logger: log, Health: []relay.HealthCheck{{Name: "tls", Check: pub.Health}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	n.local = httptest.NewServer(r.Handler())
	pub.Start(ctx, r.Handler())
	n.pub = pub
	n.stopFn = func() {
		cancel()
		sctx, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		n.local.Close()
		if err := pub.Shutdown(sctx); err != nil {
			t.Errorf("public shutdown: %v", err)
		}
		if err := r.Shutdown(sctx); err != nil {
			t.Errorf("relay shutdown: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
		select {
		case err := <-pub.Err():
			t.Errorf("public listener failed: %v", err)
		default:
		}
	}
	return n
}

func (n *node) stop() {
	n.once.Do(func() {
		if n.stopFn != nil {
			n.stopFn()
		}
	})
}

func (n *node) httpsPort() string { return strconv.Itoa(n.pub.Addr().(*net.TCPAddr).Port) }

// health GETs /healthz on the plain listener and returns the tls report.
func (n *node) health() (status string, tls report) {
	n.t.Helper()
	resp, err := http.Get("http://" + n.pub.HTTPAddr().String() + "/healthz")
	if err != nil {
		n.t.Fatalf("healthz: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		TLS    report `json:"tls"`
	}
	if resp.StatusCode != 200 {
		n.t.Fatalf("healthz answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		n.t.Fatalf("healthz: %v", err)
	}
	return body.Status, body.TLS
}

// publish POSTs an event with id through client to baseURL and returns the
// status code and the certificate the server presented (if any).
func publish(t *testing.T, client *http.Client, baseURL, id string) (int, *x509.Certificate) {
	t.Helper()
	req, _ := http.NewRequest("POST", baseURL+"/v1/events", strings.NewReader(`{"type":"payment.succeeded","id":"`+id+`","data":{"amount":1200}}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var leaf *x509.Certificate
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		leaf = resp.TLS.PeerCertificates[0]
	}
	return resp.StatusCode, leaf
}

// servedCert connects to addr with server name and returns the leaf the
// server presents, without verifying it.
func servedCert(t *testing.T, addr, name string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// testCA issues server certificates for files mode.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    atomic.Int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hookrelay test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue writes a certificate for name and its key to certFile and keyFile
// and returns the certificate.
func (ca *testCA) issue(t *testing.T, name, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + ca.n.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// writeFile replaces path's content and moves its modification time
// forward, so that a change is seen even on coarse file system clocks.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	var mod time.Time
	if fi, err := os.Stat(path); err == nil {
		mod = fi.ModTime()
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if next := mod.Add(time.Second); !mod.IsZero() {
		os.Chtimes(path, next, next)
	}
}
