package tls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hookrelay/relay"
)

const filesDomain = "files.hooks.example.com"

// filesClient trusts only ca and connects every host name to addr, so the
// certificate is checked against filesDomain.
func filesClient(ca *testCA, addr string) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool()},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			DisableKeepAlives: true,
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func filesTable(t *testing.T, httpListener bool) string {
	http := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if !httpListener {
		http = ""
	}
	return fmt.Sprintf(`[tls]
mode = "files"
listen = "127.0.0.1:%d"
http_listen = %q
cert_file = "tls/cert.pem"
key_file = "tls/key.pem"
`, freePort(t), http)
}

// TestFilesServeReloadAndRefuseBrokenKey serves given files, serves new
// ones after Reload, keeps the previous certificate when the key is
// broken, and picks up changed files by itself.
func TestFilesServeReloadAndRefuseBrokenKey(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem")
	os.Mkdir(filepath.Join(dir, "tls"), 0o700)
	ca := newTestCA(t)
	first := ca.issue(t, filesDomain, certFile, keyFile)
	rc := newReceiver(t)
	n := startNode(t, dir, filesTable(t, true), rc.srv.URL, Options{FileCheckInterval: 50 * time.Millisecond}, nil)
	client := filesClient(ca, n.pub.Addr().String())
	base := "https://" + filesDomain + ":" + n.httpsPort()
	serial := func() string {
		t.Helper()
		return servedCert(t, n.pub.Addr().String(), filesDomain).SerialNumber.String()
	}

	code, leaf := publish(t, client, base, "files-1")
	if code != http.StatusAccepted || !leaf.Equal(first) {
		t.Fatalf("publish: status %d, certificate %v", code, leaf.SerialNumber)
	}
	waitFor(t, "the delivery", 10*time.Second, func() bool { return rc.delivered("files-1") })
	if status, rep := n.health(); status != "ok" || rep.Mode != "files" || rep.Certificates[0].State != stateValid ||
		rep.Certificates[0].Names[0] != filesDomain || !rep.Certificates[0].NotAfter.Equal(first.NotAfter) {
		t.Fatalf("healthz: %q %+v", status, rep)
	}

	// Replaced files are served after Reload (what SIGHUP calls).
	second := ca.issue(t, filesDomain, certFile, keyFile)
	if err := n.pub.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != second.SerialNumber.String() {
		t.Fatalf("after reload: serial %s, want %s", got, second.SerialNumber)
	}

	// A broken key is refused with an error naming the file; the
	// previous certificate stays.
	writeFile(t, keyFile, []byte("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"))
	err := n.pub.Reload()
	var ke *relay.KeyPairError
	if !errors.As(err, &ke) || !ke.Key || !strings.Contains(err.Error(), "key file "+keyFile) {
		t.Fatalf("reload with a broken key: %v", err)
	}
	if got := serial(); got != second.SerialNumber.String() {
		t.Fatalf("after a failed reload: serial %s, want the previous %s", got, second.SerialNumber)
	}
	if code, _ := publish(t, client, base, "files-2"); code != http.StatusAccepted {
		t.Fatalf("publish after a failed reload: %d", code)
	}
	status, rep := n.health()
	if status != "degraded" || rep.Certificates[0].State != stateReloadFailed || !strings.Contains(rep.Certificates[0].Error, keyFile) {
		t.Fatalf("healthz after a failed reload: %q %+v", status, rep)
	}
	if !strings.Contains(n.logs.String(), `msg="certificate files not reloaded; still serving the previous certificate"`) {
		t.Errorf("failed reload not logged")
	}

	// Changed files are picked up without a signal.
	third := ca.issue(t, filesDomain, certFile, keyFile)
	waitFor(t, "the changed files to be served", 10*time.Second, func() bool { return serial() == third.SerialNumber.String() })
	if status, rep := n.health(); status != "ok" || rep.Certificates[0].State != stateValid {
		t.Fatalf("healthz after the fix: %q %+v", status, rep)
	}
}

// TestPlainListener checks the plain HTTP listener: /healthz is served,
// ACME paths are not redirected, everything else is redirected to the
// same URL on https, keeping the method.
func TestPlainListener(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "tls"), 0o700)
	ca := newTestCA(t)
	ca.issue(t, filesDomain, filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem"))
	n := startNode(t, dir, filesTable(t, true), "http://127.0.0.1:9/", Options{}, nil)
	plain := "http://" + n.pub.HTTPAddr().String()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	port := n.httpsPort()

	for _, tt := range []struct {
		method, path, host string
		status             int
		location           string
	}{
		{"GET", "/healthz", "", 200, ""},
		{"GET", "/.well-known/acme-challenge/token", "", 404, ""},
		{"POST", "/v1/events?x=1", filesDomain, 308, "https://" + filesDomain + ":" + port + "/v1/events?x=1"},
		{"GET", "/", filesDomain + ":80", 308, "https://" + filesDomain + ":" + port + "/"},
		{"GET", "/in/tilled", "[::1]", 308, "https://[::1]:" + port + "/in/tilled"},
		{"GET", "/", "bad_host", 400, ""},
	} {
		req, _ := http.NewRequest(tt.method, plain+tt.path, nil)
		if tt.host != "" {
			req.Host = tt.host
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
			t.Errorf("%s %s (Host %s): %d %q, want %d %q", tt.method, tt.path, tt.host, resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
		}
	}

	// The HTTPS listener serves the relay's API, over HTTP/2 when offered.
	resp, err := filesClient(ca, n.pub.Addr().String()).Get("https://" + filesDomain + ":" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.Version < tls.VersionTLS12 || resp.ProtoMajor != 2 {
		t.Fatalf("https healthz: %d, TLS version %x, %s", resp.StatusCode, resp.TLS.Version, resp.Proto)
	}
}

// TestNewRefusesBrokenFilesAndTakenPorts checks that files mode does not start with
// files it cannot use, and that a port already taken fails Listen.
func TestNewRefusesBrokenFilesAndTakenPorts(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, filesDomain, certFile, keyFile)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := relay.TLSConfig{Mode: relay.TLSFiles, Listen: taken.Addr().String(), CertFile: certFile, KeyFile: keyFile}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "listen on "+taken.Addr().String()) {
		t.Fatalf("listen on a taken port: %v", err)
	}
	s.Shutdown(context.Background())

	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "key file "+keyFile) {
		t.Fatalf("New with a broken key: %v", err)
	}
}
