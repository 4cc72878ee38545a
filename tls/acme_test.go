package tls

import (
	"crypto/tls"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hookrelay/tls/acmetest"
)

// acmeSetup starts Pebble validating on two free ports of 127.0.0.1, maps
// domain to ip, and returns the [tls] table of a relay using them.
func acmeSetup(t *testing.T, dir, domain, ip string, validity time.Duration, httpListener bool) (*acmetest.CA, string, *syncBuffer) {
	t.Helper()
	httpPort, tlsPort := freePort(t), freePort(t)
	pebbleLog := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", pebbleLog.String())
		}
	})
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: httpPort, TLSPort: tlsPort, Validity: validity, Log: pebbleLog})
	acmetest.DNS(t).Map(domain, ip)
	if err := os.WriteFile(filepath.Join(dir, "pebble-ca.pem"), ca.DirectoryRootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	httpListen := fmt.Sprintf("127.0.0.1:%d", httpPort)
	if !httpListener {
		httpListen = ""
	}
	table := fmt.Sprintf(`[tls]
mode = "acme"
listen = "127.0.0.1:%d"
http_listen = %q
domains = [%q]
email = "ops@example.com"
ca = %q
ca_root = "file:pebble-ca.pem"
`, tlsPort, httpListen, domain, ca.DirectoryURL)
	return ca, table, pebbleLog
}

// TestACMEObtainsCertificateAndServesWebhooks obtains a certificate from
// Pebble through the real ACME flow, once with each challenge type, then
// posts a webhook over HTTPS with a client that trusts only Pebble's root
// and checks the host name.
func TestACMEObtainsCertificateAndServesWebhooks(t *testing.T) {
	for _, tt := range []struct {
		name, challenge, served string
		httpListener            bool
	}{
		// Without a plain listener only TLS-ALPN-01 can be solved.
		{"tls-alpn-01", "tls-alpn-01", "served key authentication certificate", false},
		// With TLS-ALPN-01 switched off only HTTP-01 is left.
		{"http-01", "http-01", "served key authentication\"", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			domain := tt.name + ".hooks.example.com"
			ca, table, _ := acmeSetup(t, dir, domain, "127.0.0.1", 0, tt.httpListener)
			rc := newReceiver(t)
			start := time.Now()
			n := startNode(t, dir, table, rc.srv.URL, Options{}, func(s *Server) {
				if tt.challenge == "http-01" {
					s.src.(*acmeSource).issuer.DisableTLSALPNChallenge = true
				}
			})
			waitValid(t, n)
			t.Logf("certificate obtained in %v", time.Since(start).Round(time.Millisecond))
			logs := n.logs.String()
			if !strings.Contains(logs, "challenge_type="+tt.challenge) || !strings.Contains(logs, tt.served) {
				t.Errorf("the relay did not solve a %s challenge itself; log:\n%s", tt.challenge, logs)
			}

			client := acmetest.DNS(t).Client(ca.Roots())
			// Idle HTTP/2 connections would hold up the shutdown for the
			// server's GOAWAY grace period.
			defer client.CloseIdleConnections()
			base := "https://" + domain + ":" + n.httpsPort()
			code, leaf := publish(t, client, base, "evt-"+tt.name)
			if code != http.StatusAccepted {
				t.Fatalf("publish over HTTPS: status %d", code)
			}
			if leaf.Subject.CommonName != domain && (len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != domain) {
				t.Errorf("served certificate names %v", leaf.DNSNames)
			}
			waitFor(t, "the delivery", 10*time.Second, func() bool { return rc.delivered("evt-" + tt.name) })

			if tt.httpListener {
				status, rep := n.health()
				if status != "ok" || rep.Mode != "acme" || rep.Certificates[0].State != stateValid ||
					rep.Certificates[0].NotAfter == nil || !rep.Certificates[0].NotAfter.Equal(leaf.NotAfter) {
					t.Errorf("healthz: status %q, tls %+v", status, rep)
				}
				// An unknown challenge token is not redirected.
				resp, err := http.Get("http://" + n.pub.HTTPAddr().String() + "/.well-known/acme-challenge/unknown")
				if err != nil || resp.StatusCode != http.StatusNotFound {
					t.Errorf("unknown challenge: %v %v", resp, err)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}

			// TLS below 1.2 is refused.
			old := client.Transport.(*http.Transport).Clone()
			old.TLSClientConfig.MaxVersion = tls.VersionTLS11
			if _, err := (&http.Client{Transport: old, Timeout: 5 * time.Second}).Get(base + "/healthz"); err == nil {
				t.Error("a TLS 1.1 client was served")
			}

			// Keys and accounts are private to the relay.
			checkStoragePerms(t, filepath.Join(n.cfg.Server.DataDir, "tls"))
		})
	}
}

// waitValid waits until n serves a valid certificate, and fails at once
// if obtaining it fails.
func waitValid(t *testing.T, n *node) {
	t.Helper()
	waitFor(t, "a valid certificate", 30*time.Second, func() bool {
		h, _ := n.pub.Health()
		c := h.(report).Certificates[0]
		if c.State == stateFailed {
			t.Fatalf("obtaining the certificate failed: %s", c.Error)
		}
		return c.State == stateValid
	})
}

// checkStoragePerms checks that certmagic's storage has 0700 directories
// and 0600 key files, and holds at least one private key.
func checkStoragePerms(t *testing.T, root string) {
	t.Helper()
	keys := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir() && fi.Mode().Perm() != 0o700:
			t.Errorf("%s: mode %v, want 0700", path, fi.Mode().Perm())
		case !d.IsDir() && strings.HasSuffix(path, ".key"):
			keys++
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys < 2 { // the account key and the certificate key
		t.Errorf("%d private keys under %s, want at least 2", keys, root)
	}
}

// TestACMERenewsWithoutRestart gets short-lived certificates and checks
// that the served certificate is replaced by a renewed one while running.
func TestACMERenewsWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	const domain = "renew.hooks.example.com"
	ca, table, _ := acmeSetup(t, dir, domain, "127.0.0.1", 10*time.Second, true)
	rc := newReceiver(t)
	n := startNode(t, dir, table, rc.srv.URL, Options{RenewCheckInterval: time.Second}, nil)
	waitValid(t, n)
	client := acmetest.DNS(t).Client(ca.Roots())
	defer client.CloseIdleConnections()
	base := "https://" + domain + ":" + n.httpsPort()
	code, first := publish(t, client, base, "before-renewal")
	if code != http.StatusAccepted {
		t.Fatalf("publish: %d", code)
	}

	start := time.Now()
	var renewed string
	waitFor(t, "a renewed certificate", 30*time.Second, func() bool {
		c := servedCert(t, n.pub.Addr().String(), domain)
		renewed = c.SerialNumber.String()
		return c.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	t.Logf("served certificate %s replaced by %s after %v", first.SerialNumber, renewed, time.Since(start).Round(time.Millisecond))

	// The renewed certificate verifies and the relay still takes events.
	client.CloseIdleConnections()
	code, second := publish(t, client, base, "after-renewal")
	if code != http.StatusAccepted || second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("after renewal: status %d, serial %s (first %s)", code, second.SerialNumber, first.SerialNumber)
	}
	if !strings.Contains(n.logs.String(), "certificate renewed successfully") {
		t.Errorf("no renewal in the log")
	}
	waitFor(t, "both deliveries", 10*time.Second, func() bool {
		return rc.delivered("before-renewal") && rc.delivered("after-renewal")
	})
}

// TestACMEFailureIsReportedAndDeliveryGoesOn points the relay at a domain
// whose DNS does not lead to it: the failure is logged with its reason and
// reported by /healthz, while events published locally are still stored
// and delivered.
func TestACMEFailureIsReportedAndDeliveryGoesOn(t *testing.T) {
	dir := t.TempDir()
	const domain = "elsewhere.hooks.example.com"
	_, table, _ := acmeSetup(t, dir, domain, "127.0.0.2", 0, true) // where nothing listens
	rc := newReceiver(t)
	n := startNode(t, dir, table, rc.srv.URL, Options{}, nil)

	var rep report
	var status string
	waitFor(t, "the failure to be reported", 30*time.Second, func() bool {
		status, rep = n.health()
		return rep.Certificates[0].State == stateFailed
	})
	if status != "degraded" || rep.Certificates[0].Error == "" || rep.Certificates[0].NotAfter != nil {
		t.Errorf("healthz: status %q, tls %+v", status, rep)
	}
	logs := n.logs.String()
	if !strings.Contains(logs, `msg="could not obtain a certificate; retrying later" subsystem=tls domain=`+domain) ||
		!strings.Contains(logs, "will retry") {
		t.Errorf("the failure and the retry are not logged:\n%s", logs)
	}

	code, _ := publish(t, http.DefaultClient, n.local.URL, "local-1")
	if code != http.StatusAccepted {
		t.Fatalf("local publish: %d", code)
	}
	waitFor(t, "the delivery", 10*time.Second, func() bool { return rc.delivered("local-1") })
}
