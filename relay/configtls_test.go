package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writeKeyPair writes a self-signed certificate for name and its key as
// PEM files in dir and returns their paths and the certificate.
func writeKeyPair(t *testing.T, dir, prefix, name string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, prefix+"cert.pem")
	keyFile = filepath.Join(dir, prefix+"key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func TestLoadTLSErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeKeyPair(t, dir, "a-", "hooks.example.com")
	_, otherKey, _ := writeKeyPair(t, dir, "b-", "other.example.com")
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem\n"), 0o600)
	r := strings.NewReplacer("CERT", certFile, "KEY", keyFile, "OTHERKEY", otherKey, "GARBAGE", garbage, "DIR", dir)

	tests := []struct {
		name string
		toml string
		want []string
	}{
		{
			name: "unknown mode",
			toml: `[tls]
mode = "auto"
domains = ["hooks.example.com"]
bogus = 1
`,
			want: []string{
				`hookrelay.toml:2: tls.mode: unknown mode "auto": use "acme" (certificates obtained and renewed automatically), "files" (cert_file and key_file) or "off"`,
				`hookrelay.toml:4: tls.bogus: unknown key: valid keys here are mode, listen, http_listen, domains, email, ca, ca_root, cert_file, key_file`,
			},
		},
		{
			name: "mode not a string",
			toml: `[tls]
mode = true
`,
			want: []string{`hookrelay.toml:2: tls.mode: expected "acme", "files" or "off", got boolean true`},
		},
		{
			name: "keys without a mode",
			toml: `[tls]
domains = ["hooks.example.com"]
`,
			want: []string{`hookrelay.toml:2: tls.domains: not used while mode is "off" (the default): set mode = "acme" or mode = "files"`},
		},
		{
			name: "tls as a value",
			toml: `tls = "acme"
`,
			want: []string{`hookrelay.toml:1: tls: expected a [tls] table, got string "acme"`},
		},
		{
			name: "acme without domains",
			toml: `[tls]
mode = "acme"
email = "ops@example.com"
`,
			want: []string{`hookrelay.toml:1: tls.domains: required in acme mode: the names providers reach this relay by, such as ["hooks.example.com"]`},
		},
		{
			name: "acme with bad values",
			toml: `[tls]
mode = "acme"
domains = [
  "hooks.example.com",
  "*.example.com",
  "203.0.113.7",
  "localhost",
  "bad_name.example.com",
  "HOOKS.example.com",
  "-x.example.com",
  "example.com.",
  7,
]
email = "Ops <ops@example.com>"
ca = "http://acme.example.com/directory"
ca_root = "/etc/ssl/ca.pem"
cert_file = "cert.pem"
`,
			want: []string{
				`hookrelay.toml:5: tls.domains[1]: invalid domain "*.example.com": wildcard names need the DNS-01 challenge`,
				`hookrelay.toml:6: tls.domains[2]: invalid domain "203.0.113.7": an IP address`,
				`hookrelay.toml:7: tls.domains[3]: invalid domain "localhost": not a public domain name`,
				`hookrelay.toml:8: tls.domains[4]: invalid domain "bad_name.example.com": use letters, digits and '-'`,
				`hookrelay.toml:9: tls.domains[5]: duplicate domain "HOOKS.example.com" (also tls.domains[0]): remove one`,
				`hookrelay.toml:10: tls.domains[6]: invalid domain "-x.example.com": use letters, digits and '-'`,
				`hookrelay.toml:11: tls.domains[7]: invalid domain "example.com.": remove the final dot`,
				`hookrelay.toml:12: tls.domains[8]: expected a domain name string such as "hooks.example.com", got integer 7`,
				`hookrelay.toml:14: tls.email: invalid e-mail address "Ops <ops@example.com>": write a plain address such as "ops@example.com"`,
				`hookrelay.toml:15: tls.ca: plain http is allowed only for a CA on this machine (localhost, 127.0.0.1, ::1)`,
				`hookrelay.toml:16: tls.ca_root: no PEM certificate found`,
				`hookrelay.toml:17: tls.cert_file: not used in acme mode, where certificates are obtained automatically: to serve your own files use mode = "files"`,
			},
		},
		{
			name: "acme with empty domains and bad CA URLs",
			toml: `[tls]
mode = "acme"
domains = []
ca = "acme.example.com/directory"
ca_root = "file:DIR/missing.pem"
`,
			want: []string{
				`hookrelay.toml:3: tls.domains: empty: list the names providers reach this relay by`,
				`hookrelay.toml:4: tls.ca: "acme.example.com/directory" is not an absolute URL: use the https:// URL of the CA's ACME directory`,
				`hookrelay.toml:5: tls.ca_root: read secret file: open DIR/missing.pem: no such file or directory`,
			},
		},
		{
			name: "acme CA with credentials",
			toml: `[tls]
mode = "acme"
domains = ["hooks.example.com"]
ca = "https://user:secret@acme.example.com/directory"
`,
			want: []string{`hookrelay.toml:4: tls.ca: credentials in the URL are not allowed`},
		},
		{
			name: "acme CA of another scheme",
			toml: `[tls]
mode = "acme"
domains = ["hooks.example.com"]
ca = "ftp://acme.example.com/directory"
`,
			want: []string{`hookrelay.toml:4: tls.ca: unsupported scheme "ftp": use the https:// URL of the CA's ACME directory, such as "https://acme-v02.api.letsencrypt.org/directory"`},
		},
		{
			name: "listeners that clash",
			toml: `[server]
listen = "127.0.0.1:443"

[tls]
mode = "acme"
domains = ["hooks.example.com"]
http_listen = "0.0.0.0:443"
`,
			want: []string{
				`hookrelay.toml:4: tls.listen: the default ":443" clashes with server.listen ("127.0.0.1:443"): each listener needs its own port`,
				`hookrelay.toml:7: tls.http_listen: "0.0.0.0:443" clashes with server.listen ("127.0.0.1:443")`,
			},
		},
		{
			name: "invalid listeners",
			toml: `[tls]
mode = "acme"
domains = ["hooks.example.com"]
listen = "443"
http_listen = ":0"
`,
			want: []string{
				`hookrelay.toml:4: tls.listen: invalid address "443": use host:port`,
				`hookrelay.toml:5: tls.http_listen: invalid port "0" in ":0"`,
			},
		},
		{
			name: "files without files",
			toml: `[tls]
mode = "files"
key_file = ""
domains = ["hooks.example.com"]
`,
			want: []string{
				`hookrelay.toml:1: tls.cert_file: required in files mode: the path of the PEM certificate chain`,
				`hookrelay.toml:3: tls.key_file: empty path: write the path of the PEM private key`,
				`hookrelay.toml:4: tls.domains: used only with mode = "acme"`,
			},
		},
		{
			name: "files: key of another certificate",
			toml: `[tls]
mode = "files"
cert_file = "CERT"
key_file = "OTHERKEY"
`,
			want: []string{`hookrelay.toml:4: tls.key_file: key file OTHERKEY: private key does not match public key`},
		},
		{
			name: "files: certificate file not PEM",
			toml: `[tls]
mode = "files"
cert_file = "GARBAGE"
key_file = "KEY"
`,
			want: []string{`hookrelay.toml:3: tls.cert_file: certificate file GARBAGE: no PEM certificate found`},
		},
		{
			name: "files: key file missing",
			toml: `[tls]
mode = "files"
cert_file = "CERT"
key_file = "DIR/nokey.pem"
`,
			want: []string{`hookrelay.toml:4: tls.key_file: key file DIR/nokey.pem: open DIR/nokey.pem: no such file or directory`},
		},
		{
			name: "files: the key given as certificate",
			toml: `[tls]
mode = "files"
cert_file = "KEY"
key_file = "KEY"
`,
			want: []string{`hookrelay.toml:3: tls.cert_file: certificate file KEY: no PEM certificate found`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadBytes("hookrelay.toml", []byte(r.Replace(tt.toml)))
			if cfg != nil {
				t.Errorf("got a config with an error")
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = r.Replace(w)
			}
			assertProblems(t, err, want)
		})
	}
}

func TestLoadTLSDefaults(t *testing.T) {
	cfg, err := LoadBytes("hookrelay.toml", []byte("[server]\nlisten = \"127.0.0.1:8080\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.TLS, TLSConfig{Mode: TLSOff}) {
		t.Errorf("no [tls]: got %+v, want mode off and nothing else", cfg.TLS)
	}
	cfg, err = LoadBytes("hookrelay.toml", []byte("[tls]\nmode = \"off\"\n"))
	if err != nil || cfg.TLS.Mode != TLSOff {
		t.Fatalf("mode off: %+v, %v", cfg, err)
	}

	cfg, err = LoadBytes("hookrelay.toml", []byte("[tls]\nmode = \"acme\"\ndomains = [\"Hooks.Example.com\", \"b.example.com\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := TLSConfig{
		Mode:       TLSACME,
		Listen:     DefaultTLSListen,
		HTTPListen: DefaultHTTPListen,
		Domains:    []string{"hooks.example.com", "b.example.com"},
		CA:         DefaultACMECA,
	}
	if !reflect.DeepEqual(cfg.TLS, want) {
		t.Errorf("acme defaults:\n got  %+v\n want %+v", cfg.TLS, want)
	}
}

func TestLoadTLSFull(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := writeKeyPair(t, dir, "", "hooks.example.com")
	os.Mkdir(filepath.Join(dir, "tls"), 0o700)
	os.Rename(certFile, filepath.Join(dir, "tls", "cert.pem"))
	os.Rename(keyFile, filepath.Join(dir, "tls", "key.pem"))
	t.Setenv("HOOKRELAY_TEST_CA_ROOT", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})))
	path := filepath.Join(dir, "hookrelay.toml")

	cfg, err := LoadBytes(path, []byte(`
[server]
listen = "127.0.0.1:8080"

[tls]
mode = "acme"
listen = "203.0.113.7:8443"
http_listen = "203.0.113.7:8080"
domains = ["hooks.example.com"]
email = "ops@example.com"
ca = "http://127.0.0.1:14000/dir"
ca_root = "env:HOOKRELAY_TEST_CA_ROOT"
`))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.TLS
	if got.Listen != "203.0.113.7:8443" || got.HTTPListen != "203.0.113.7:8080" || got.Email != "ops@example.com" ||
		got.CA != "http://127.0.0.1:14000/dir" || len(got.CARoots) != 1 || !got.CARoots[0].Equal(cert) {
		t.Errorf("acme: got %+v", got)
	}

	cfg, err = LoadBytes(path, []byte(`
[tls]
mode = "files"
http_listen = ""
cert_file = "tls/cert.pem"
key_file = "tls/key.pem"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := TLSConfig{
		Mode:     TLSFiles,
		Listen:   DefaultTLSListen,
		CertFile: filepath.Join(dir, "tls", "cert.pem"),
		KeyFile:  filepath.Join(dir, "tls", "key.pem"),
	}
	if !reflect.DeepEqual(cfg.TLS, want) {
		t.Errorf("files:\n got  %+v\n want %+v", cfg.TLS, want)
	}
}

func TestLoadKeyPair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := writeKeyPair(t, dir, "", "hooks.example.com")
	pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf == nil || !pair.Leaf.Equal(cert) {
		t.Fatalf("leaf = %v, want the certificate written", pair.Leaf)
	}

	// Certificate and key in one file, as some tools write them.
	both := filepath.Join(dir, "both.pem")
	c, _ := os.ReadFile(certFile)
	k, _ := os.ReadFile(keyFile)
	os.WriteFile(both, append(k, c...), 0o600)
	if _, err := LoadKeyPair(both, both); err != nil {
		t.Fatalf("combined file: %v", err)
	}

	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, nil, 0o600)
	_, err = LoadKeyPair(certFile, empty)
	var ke *KeyPairError
	if !errors.As(err, &ke) || !ke.Key || ke.Path != empty || err.Error() != "key file "+empty+": empty file" {
		t.Fatalf("empty key: %v", err)
	}
}

// TestExampleConfigTLS loads config.example.toml with its commented [tls]
// section switched on, as its comment says to do.
func TestExampleConfigTLS(t *testing.T) {
	setExampleSourceEnv(t)
	t.Setenv("POS_TOKEN", "pos-token-0123456789")
	t.Setenv("CRM_PASSWORD", "crm-password")
	t.Setenv("INVENTORY_HMAC_SECRET", "inventory-hmac-secret")
	t.Setenv("INVENTORY_API_KEY", "inventory-api-key")
	t.Setenv("INVENTORY_TOKEN", "inventory-token")
	data, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`^# (\[tls\]|[a-z_]+ = .*)$`)
	lines := strings.Split(string(data), "\n")
	on := 0
	for i, line := range lines {
		// ca_root names a file of the operator's private CA.
		if setting.MatchString(line) && !strings.HasPrefix(line, "# ca_root") {
			lines[i] = strings.TrimPrefix(line, "# ")
			on++
		}
	}
	cfg, err := LoadBytes("../config.example.toml", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := TLSConfig{
		Mode:       TLSACME,
		Listen:     ":443",
		HTTPListen: ":80",
		Domains:    []string{"hooks.example.com"},
		Email:      "ops@example.com",
		CA:         DefaultACMECA,
	}
	if on != 7 || !reflect.DeepEqual(cfg.TLS, want) {
		t.Errorf("%d lines switched on; tls:\n got  %+v\n want %+v", on, cfg.TLS, want)
	}
}
