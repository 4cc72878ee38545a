package relay

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Limits of the [tls] table.
const (
	maxDomains     = 100
	maxPEMFileSize = 1 << 20
)

// tlsKeys are all keys of the [tls] table, in the order messages list them.
var tlsKeys = []string{"mode", "listen", "http_listen", "domains", "email", "ca", "ca_root", "cert_file", "key_file"}

// tlsConfig reads the optional [tls] table of the root table. local is the
// value of server.listen when it is valid, else "", to find listeners that
// would clash.
func (l *loader) tlsConfig(root *table, local string) TLSConfig {
	c := TLSConfig{Mode: TLSOff}
	v, field, ok := root.get("tls")
	if !ok {
		return c
	}
	m, ok := l.subtable(field, v, "a [tls] table")
	if !ok {
		return c
	}

	mode := TLSOff
	if mv, ok := m["mode"]; ok {
		f := joinField(field, "mode")
		s, ok := l.str(f, mv, `"acme", "files" or "off"`)
		switch {
		case !ok:
		case s == TLSOff || s == TLSACME || s == TLSFiles:
			mode = s
		default:
			l.fail(f, `unknown mode %q: use "acme" (certificates obtained and renewed automatically), "files" (cert_file and key_file) or "off"`, s)
		}
		if mode != s {
			// Only unknown keys can still be told apart.
			l.table(field, m, tlsKeys...).done()
			return c
		}
	}

	keys := map[string][]string{
		TLSOff:   {"mode"},
		TLSACME:  {"mode", "listen", "http_listen", "domains", "email", "ca", "ca_root"},
		TLSFiles: {"mode", "listen", "http_listen", "cert_file", "key_file"},
	}[mode]
	t := l.table(field, m, keys...)
	t.get("mode")
	for _, k := range tlsKeys {
		if _, present := m[k]; present && !slices.Contains(keys, k) {
			t.used[k] = true
			l.fail(joinField(field, k), "%s", tlsKeyHint(mode))
		}
	}
	if mode == TLSOff {
		t.done()
		return c
	}

	c.Mode = mode
	c.Listen, c.HTTPListen = DefaultTLSListen, DefaultHTTPListen
	// listeners holds the valid addresses, by field, to check for clashes.
	type listener struct {
		field, addr string
		isDefault   bool
	}
	var listeners []listener
	if local != "" {
		listeners = append(listeners, listener{"server.listen", local, false})
	}
	if v, f, ok := t.get("listen"); !ok {
		listeners = append(listeners, listener{f, c.Listen, true})
	} else if a, ok := l.str(f, v, `a host:port string such as ":443"`); ok && l.listen(f, a) {
		c.Listen = a
		listeners = append(listeners, listener{f, a, false})
	}
	if v, f, ok := t.get("http_listen"); !ok {
		listeners = append(listeners, listener{f, c.HTTPListen, true})
	} else if a, ok := l.str(f, v, `a host:port string such as ":80", or "" for no plain HTTP listener`); ok && (a == "" || l.listen(f, a)) {
		c.HTTPListen = a
		if a != "" {
			listeners = append(listeners, listener{f, a, false})
		}
	}
	for i, a := range listeners {
		for _, b := range listeners[:i] {
			if addrsClash(a.addr, b.addr) {
				what := fmt.Sprintf("%q", a.addr)
				if a.isDefault {
					what = fmt.Sprintf("the default %q", a.addr)
				}
				l.fail(a.field, "%s clashes with %s (%q): each listener needs its own port", what, b.field, b.addr)
				break
			}
		}
	}

	switch mode {
	case TLSACME:
		l.acme(t, &c)
	case TLSFiles:
		l.certFiles(t, &c)
	}
	t.done()
	return c
}

// validListen returns addr, the value of server.listen, or "" when it was
// reported as invalid.
func (l *loader) validListen(addr string) string {
	if slices.ContainsFunc(l.errs, func(e FieldError) bool { return e.Field == "server.listen" }) {
		return ""
	}
	return addr
}

func tlsKeyHint(mode string) string {
	switch mode {
	case TLSACME:
		return `not used in acme mode, where certificates are obtained automatically: to serve your own files use mode = "files"`
	case TLSFiles:
		return `used only with mode = "acme"`
	}
	return `not used while mode is "off" (the default): set mode = "acme" or mode = "files"`
}

// addrsClash reports whether two valid host:port listen addresses cannot
// both be bound: the same port on the same or a wildcard host.
func addrsClash(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	if na != nb {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

func (l *loader) acme(t *table, c *TLSConfig) {
	c.CA = DefaultACMECA
	if v, f, ok := t.get("domains"); !ok {
		l.fail(f, `required in acme mode: the names providers reach this relay by, such as ["hooks.example.com"]`)
	} else {
		c.Domains = l.domains(f, v)
	}
	if v, f, ok := t.get("email"); ok {
		if s, ok := l.str(f, v, `an e-mail address string such as "ops@example.com"`); ok {
			a, err := mail.ParseAddress(s)
			_, domain, _ := strings.Cut(s, "@")
			if err != nil || a.Address != s || a.Name != "" || !strings.Contains(domain, ".") {
				l.fail(f, `invalid e-mail address %q: write a plain address such as "ops@example.com"`, s)
			} else {
				c.Email = s
			}
		}
	}
	if v, f, ok := t.get("ca"); ok {
		if s, ok := l.str(f, v, "an ACME directory URL string"); ok {
			if u, ok := l.acmeCA(f, s); ok {
				c.CA = u
			}
		}
	}
	if v, f, ok := t.get("ca_root"); ok {
		if s, ok := l.secret(f, v); ok {
			roots, err := parseCertsPEM([]byte(s))
			if err != nil {
				l.fail(f, `%v: write "file:/path/to/ca.pem", "env:NAME" or the PEM text of the CA's root certificate`, err)
			} else {
				c.CARoots = roots
			}
		}
	}
}

func (l *loader) domains(field string, v any) []string {
	a, ok := l.array(field, v, `an array of domain names such as ["hooks.example.com"]`)
	if !ok {
		return nil
	}
	switch {
	case len(a) == 0:
		l.fail(field, `empty: list the names providers reach this relay by, such as ["hooks.example.com"]`)
		return nil
	case len(a) > maxDomains:
		l.fail(field, "%d domains: use at most %d", len(a), maxDomains)
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, e := range a {
		f := indexField(field, i)
		s, ok := l.str(f, e, `a domain name string such as "hooks.example.com"`)
		if !ok {
			continue
		}
		d := strings.ToLower(s)
		if msg := checkDomain(d); msg != "" {
			l.fail(f, "invalid domain %q: %s", s, msg)
			continue
		}
		if j, dup := seen[d]; dup {
			l.fail(f, "duplicate domain %q (also %s): remove one", s, indexField(field, j))
			continue
		}
		seen[d] = i
		out = append(out, d)
	}
	return out
}

// checkDomain returns what is wrong with the lowercase name d as the
// subject of a certificate obtained with HTTP-01 or TLS-ALPN-01, or "".
func checkDomain(d string) string {
	const rule = "use letters, digits and '-' in dot-separated labels of 1 to 63 characters that do not start or end with '-'"
	switch {
	case strings.Contains(d, "*"):
		return "wildcard names need the DNS-01 challenge, which hookrelay does not use: list each name"
	case net.ParseIP(d) != nil:
		return "an IP address: certificates are obtained for domain names; use a name whose DNS record points to this machine"
	case strings.HasSuffix(d, "."):
		return "remove the final dot"
	case len(d) > 253:
		return "longer than 253 characters"
	case !strings.Contains(d, "."):
		return `not a public domain name: use a fully qualified name such as "hooks.example.com"`
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return rule
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return rule
			}
		}
	}
	return ""
}

// acmeCA checks an ACME directory URL: https, or http for a CA on this
// machine only (a test or development CA).
func (l *loader) acmeCA(field, s string) (string, bool) {
	const example = `use the https:// URL of the CA's ACME directory, such as "` + DefaultACMECA + `"`
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the URL, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		l.fail(field, "invalid URL: %v: %s", err, example)
		return "", false
	}
	switch {
	case u.Scheme == "" || u.Host == "" || u.Hostname() == "":
		l.fail(field, "%q is not an absolute URL: %s", u.Redacted(), example)
	case u.User != nil:
		l.fail(field, "credentials in the URL are not allowed: %s", example)
	case u.Scheme == "https":
		return s, true
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return s, true
	case u.Scheme == "http":
		l.fail(field, "plain http is allowed only for a CA on this machine (localhost, 127.0.0.1, ::1): %s", example)
	default:
		l.fail(field, "unsupported scheme %q: %s", u.Scheme, example)
	}
	return "", false
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (l *loader) certFiles(t *table, c *TLSConfig) {
	path := func(key, what string) (string, bool) {
		v, f, ok := t.get(key)
		if !ok {
			l.fail(f, "required in files mode: the path of %s", what)
			return "", false
		}
		s, ok := l.str(f, v, "a file path")
		if !ok {
			return "", false
		}
		if s == "" {
			l.fail(f, "empty path: write the path of %s", what)
			return "", false
		}
		return l.resolvePath(s), true
	}
	certFile, certOK := path("cert_file", `the PEM certificate chain, leaf first, such as "/etc/hookrelay/tls/fullchain.pem"`)
	keyFile, keyOK := path("key_file", `the PEM private key, such as "/etc/hookrelay/tls/privkey.pem"`)
	if !certOK || !keyOK {
		return
	}
	if _, err := LoadKeyPair(certFile, keyFile); err != nil {
		f := joinField(t.field, "cert_file")
		var ke *KeyPairError
		if errors.As(err, &ke) && ke.Key {
			f = joinField(t.field, "key_file")
		}
		l.fail(f, "%v", err)
		return
	}
	c.CertFile, c.KeyFile = certFile, keyFile
}

// KeyPairError is a problem with the certificate or the key file of files
// mode.
type KeyPairError struct {
	Key  bool   // the problem is in the key file, else in the certificate file
	Path string // the file
	Err  error
}

func (e *KeyPairError) Error() string {
	what := "certificate file"
	if e.Key {
		what = "key file"
	}
	return fmt.Sprintf("%s %s: %v", what, e.Path, e.Err)
}

func (e *KeyPairError) Unwrap() error { return e.Err }

// LoadKeyPair reads a PEM certificate chain (leaf first) and the PEM
// private key of its leaf, as files mode serves them. Any problem is
// returned as a *KeyPairError that names the file at fault. The
// certificate's validity dates are not checked.
func LoadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return nil, &KeyPairError{Path: certFile, Err: err}
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return nil, &KeyPairError{Key: true, Path: keyFile, Err: err}
	}
	if _, err := parseCertsPEM(certPEM); err != nil {
		return nil, &KeyPairError{Path: certFile, Err: err}
	}
	// The certificates parse, so what X509KeyPair refuses is the key.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &KeyPairError{Key: true, Path: keyFile, Err: errors.New(strings.TrimPrefix(err.Error(), "tls: "))}
	}
	return &pair, nil
}

func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	switch {
	case err != nil:
		return nil, err
	case len(data) > maxPEMFileSize:
		return nil, fmt.Errorf("larger than %s: not a PEM file", fmtSize(maxPEMFileSize))
	case len(data) == 0:
		return nil, errors.New("empty file")
	}
	return data, nil
}

// parseCertsPEM parses every CERTIFICATE block of data, skipping blocks
// of other types; it fails when there is none.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found (a block starting with -----BEGIN CERTIFICATE-----)")
	}
	return certs, nil
}
