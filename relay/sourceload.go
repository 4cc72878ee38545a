package relay

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on sources.
const (
	minTolerance        = time.Second
	maxTolerance        = time.Hour
	bankingCircleKeyLen = 32
	maxPathDepth        = 16
)

// sourceKeys is the schema of a [[source]] for each provider.
var sourceKeys = map[string][]string{
	ProviderTilled:           {"name", "provider", "secret", "tolerance", "allow_ips"},
	ProviderStripe:           {"name", "provider", "secret", "tolerance", "allow_ips"},
	ProviderStandardWebhooks: {"name", "provider", "secret", "tolerance", "allow_ips"},
	ProviderUSAePay:          {"name", "provider", "secret", "username", "password", "allow_ips"},
	ProviderSFPY:             {"name", "provider", "secret", "allow_ips"},
	ProviderGitHub:           {"name", "provider", "secret", "allow_ips"},
	ProviderBankingCircle:    {"name", "provider", "secret", "key_encoding", "allow_ips"},
	ProviderHMAC:             {"name", "provider", "secret", "header", "algorithm", "encoding", "prefix", "type_path", "id_path", "allow_ips"},
	ProviderBasic:            {"name", "provider", "username", "password", "type_path", "id_path", "allow_ips"},
	ProviderToken:            {"name", "provider", "token", "header", "type_path", "id_path", "allow_ips"},
	ProviderNone:             {"name", "provider", "type_path", "id_path", "allow_ips"},
}

// allSourceKeys is every key any provider uses.
var allSourceKeys = []string{
	"name", "provider", "secret", "tolerance", "allow_ips", "username", "password",
	"token", "header", "algorithm", "encoding", "prefix", "type_path", "id_path", "key_encoding",
}

func providerList() string {
	q := make([]string, len(Providers))
	for i, p := range Providers {
		q[i] = fmt.Sprintf("%q", p)
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// sources reads the [[source]] array into cfg.Sources and records the
// origins hooks may name in their sources filter.
func (l *loader) sources(field string, ms []map[string]any, cfg *Config) {
	seen := map[string]int{}
	for i, m := range ms {
		sf := indexField(field, i)
		s := l.source(sf, m, &cfg.Server)
		if s.Name != "" {
			if j, dup := seen[s.Name]; dup {
				l.fail(joinField(sf, "name"), "duplicate source name %q (also %s): source names must be unique", s.Name, indexField(field, j))
			} else {
				seen[s.Name] = i
			}
		}
		cfg.Sources = append(cfg.Sources, s)
	}
}

func (l *loader) source(field string, m map[string]any, server *ServerConfig) SourceConfig {
	var s SourceConfig
	pf := joinField(field, "provider")
	pv, ok := m["provider"]
	if !ok {
		l.fail(pf, "required: %s", providerList())
	} else if p, ok := l.str(pf, pv, providerList()); ok {
		if sourceKeys[p] == nil {
			msg := fmt.Sprintf("unknown provider %q", p)
			if c := closest(p, Providers); c != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", c)
			}
			l.fail(pf, "%s: use %s", msg, providerList())
		} else {
			s.Provider = p
		}
	}
	if s.Provider == "" {
		// Only the name and unknown keys can still be checked.
		t := l.table(field, m, allSourceKeys...)
		t.get("provider")
		s.Name, _ = l.name(t, field)
		t.done()
		return s
	}

	keys := sourceKeys[s.Provider]
	t := l.table(field, m, keys...)
	t.get("provider")
	for _, k := range allSourceKeys {
		if _, present := m[k]; present && !slices.Contains(keys, k) {
			t.used[k] = true
			l.fail(joinField(field, k), "not used by provider %q: it takes %s", s.Provider, strings.Join(keys[2:], ", "))
		}
	}
	s.Name, _ = l.name(t, field)

	if slices.Contains(keys, "secret") {
		l.sourceSecrets(t, field, &s)
	}
	if slices.Contains(keys, "tolerance") {
		s.Tolerance = DefaultTolerance
		valid := true
		v, f, ok := t.get("tolerance")
		if ok {
			var d time.Duration
			if d, valid = l.duration(f, v, minTolerance, maxTolerance); valid {
				s.Tolerance = d
			}
		}
		if valid && s.Tolerance > server.DedupWindow {
			l.fail(f, "tolerance %s is longer than server.dedup_window %s: a replay after its dedup entry expired would be stored again; shorten it or lengthen dedup_window",
				fmtDuration(s.Tolerance), fmtDuration(server.DedupWindow))
		}
	}
	if v, f, ok := t.get("allow_ips"); ok {
		s.AllowIPs = l.allowIPs(f, v)
	}
	if slices.Contains(keys, "username") {
		l.sourceBasic(t, field, &s, s.Provider == ProviderBasic)
	}
	if slices.Contains(keys, "token") {
		if v, f, ok := t.get("token"); !ok {
			l.fail(f, `required: the token the provider sends, at least %d characters (inline, "env:NAME" or "file:/path")`, minTokenLen)
		} else if tok, ok := l.secret(f, v); ok {
			switch {
			case utf8.RuneCountInString(tok) < minTokenLen:
				l.fail(f, "token is %d characters long: use at least %d", utf8.RuneCountInString(tok), minTokenLen)
			case hasControl(tok):
				l.fail(f, "invalid token: it may not contain control characters")
			default:
				s.Token = tok
			}
		}
	}
	if slices.Contains(keys, "header") {
		v, f, ok := t.get("header")
		switch {
		case !ok && s.Provider == ProviderHMAC:
			l.fail(f, `required: the request header that carries the signature, such as "X-Signature"`)
		case ok:
			if h, ok := l.str(f, v, "a header name"); ok {
				if validHeaderName(h) {
					s.Header = h
				} else {
					l.fail(f, "invalid header name %q: use letters, digits and !#$%%&'*+-.^_`|~", h)
				}
			}
		}
	}
	if s.Provider == ProviderHMAC {
		s.Algorithm = l.choice(t, "algorithm", "sha256", "sha1", "sha256", "sha512")
		s.Encoding = l.choice(t, "encoding", "hex", "hex", "base64")
		if v, f, ok := t.get("prefix"); ok {
			if p, ok := l.str(f, v, `a string such as "sha256="`); ok {
				if p == "" || hasControl(p) {
					l.fail(f, `invalid prefix: write the text before the signature, such as "sha256=", or remove the key`)
				} else {
					s.Prefix = p
				}
			}
		}
	}
	if slices.Contains(keys, "type_path") {
		s.TypePath = l.sourcePath(t, "type_path", "type")
		s.IDPath = l.sourcePath(t, "id_path", "id")
	}
	if s.Provider == ProviderNone && len(s.AllowIPs) == 0 && !loopbackListen(server.Listen) {
		l.fail(pf, `provider "none" accepts anyone's requests: set allow_ips to the provider's addresses, or listen on a loopback address only (server.listen is %q)`, server.Listen)
	}
	t.done()
	return s
}

// sourceSecrets reads the required "secret" (one, or several for
// rotation) and derives the provider's keys.
func (l *loader) sourceSecrets(t *table, field string, s *SourceConfig) {
	keyEncoding := ""
	if s.Provider == ProviderBankingCircle {
		keyEncoding = l.choice(t, "key_encoding", "utf8", "utf8", "base64")
		s.KeyEncoding = keyEncoding
	}
	sv, sf, ok := t.get("secret")
	if !ok {
		l.fail(sf, "required: %s", secretHint(s.Provider))
		return
	}
	var secrets, fields []string
	if a, isList := sv.([]any); isList {
		if len(a) == 0 {
			l.fail(sf, "empty: list at least one secret, newest first")
			return
		}
		for i, e := range a {
			f := indexField(sf, i)
			v, _ := l.secret(f, e)
			secrets, fields = append(secrets, v), append(fields, f)
		}
	} else {
		v, _ := l.secret(sf, sv)
		secrets, fields = append(secrets, v), append(fields, sf)
	}
	ok = true
	var keys [][]byte
	for i, sec := range secrets {
		if sec == "" {
			ok = false // already reported
			continue
		}
		key, err := sourceKey(s.Provider, keyEncoding, sec)
		if err != nil {
			l.fail(fields[i], "%v", err)
			ok = false
			continue
		}
		keys = append(keys, key)
	}
	if ok {
		s.Secrets, s.Keys = secrets, keys
	}
}

func secretHint(provider string) string {
	switch provider {
	case ProviderStandardWebhooks:
		return `the endpoint's signing secret, "whsec_" + base64 (inline, "env:NAME" or "file:/path")`
	case ProviderStripe:
		return `the endpoint's signing secret, starting with "whsec_" (inline, "env:NAME" or "file:/path")`
	case ProviderBankingCircle:
		return `the 32-character encryption key agreed with Banking Circle (inline, "env:NAME" or "file:/path")`
	}
	return `the webhook signing secret from the provider's dashboard (inline, "env:NAME" or "file:/path")`
}

// sourceKey derives the verification key of one secret.
func sourceKey(provider, keyEncoding, secret string) ([]byte, error) {
	switch provider {
	case ProviderStandardWebhooks:
		return whsecKey(secret)
	case ProviderStripe:
		if !strings.HasPrefix(secret, "whsec_") {
			return nil, fmt.Errorf(`secret does not start with "whsec_": use the endpoint's signing secret from the Stripe dashboard (not an API key)`)
		}
	case ProviderBankingCircle:
		if keyEncoding == "base64" {
			key, err := base64.StdEncoding.DecodeString(secret)
			if err != nil {
				return nil, fmt.Errorf(`secret is not valid base64 (key_encoding = "base64"): write the base64 of the 32-byte key`)
			}
			if len(key) != bankingCircleKeyLen {
				return nil, fmt.Errorf("secret decodes to %d bytes: AES-256 needs %d", len(key), bankingCircleKeyLen)
			}
			return key, nil
		}
		if len(secret) != bankingCircleKeyLen {
			return nil, fmt.Errorf(`secret is %d bytes long: the Banking Circle key is %d characters; for a base64 key set key_encoding = "base64"`, len(secret), bankingCircleKeyLen)
		}
	}
	return []byte(secret), nil
}

// sourceBasic reads username and password: required together for basic,
// optional together for usaepay.
func (l *loader) sourceBasic(t *table, field string, s *SourceConfig, required bool) {
	uv, uf, hasUser := t.get("username")
	pv, pfield, hasPass := t.get("password")
	switch {
	case !hasUser && !hasPass && !required:
		return
	case !hasUser:
		l.fail(uf, "required with password: the user name the provider sends")
		return
	case !hasPass:
		l.fail(pfield, `required with username: the password the provider sends ("env:NAME" or "file:/path")`)
		return
	}
	if u, ok := l.str(uf, uv, "a user name string"); ok {
		switch {
		case u == "":
			l.fail(uf, "empty: basic auth needs a user name")
		case strings.Contains(u, ":") || hasControl(u):
			l.fail(uf, "invalid user name: it may not contain ':' or control characters")
		default:
			s.Username = u
		}
	}
	if p, ok := l.secret(pfield, pv); ok {
		s.Password = p
	}
}

// choice reads an optional string key that must be one of choices.
func (l *loader) choice(t *table, key, def string, choices ...string) string {
	v, f, ok := t.get(key)
	if !ok {
		return def
	}
	q := make([]string, len(choices))
	for i, c := range choices {
		q[i] = fmt.Sprintf("%q", c)
	}
	want := strings.Join(q, ", ")
	s, ok := l.str(f, v, "one of "+want)
	if !ok {
		return def
	}
	if !slices.Contains(choices, s) {
		l.fail(f, "unknown %s %q: use %s", key, s, want)
		return def
	}
	return s
}

// sourcePath reads a dotted path of member names such as "data.type".
func (l *loader) sourcePath(t *table, key, def string) []string {
	v, f, ok := t.get(key)
	if !ok {
		return []string{def}
	}
	s, ok := l.str(f, v, `a dotted path of JSON member names such as "data.type"`)
	if !ok {
		return []string{def}
	}
	path, err := splitPath(s)
	if err != nil {
		l.fail(f, "%v", err)
		return []string{def}
	}
	return path
}

func splitPath(s string) ([]string, error) {
	path := strings.Split(s, ".")
	if len(path) > maxPathDepth {
		return nil, fmt.Errorf("path %q is %d members deep: at most %d", s, len(path), maxPathDepth)
	}
	if slices.Contains(path, "") {
		return nil, fmt.Errorf(`invalid path %q: write JSON member names separated by dots, such as "data.account_id"`, s)
	}
	return path, nil
}

// allowIPs reads a list of addresses and CIDR prefixes.
func (l *loader) allowIPs(field string, v any) []netip.Prefix {
	a, ok := l.array(field, v, `an array of addresses or CIDR prefixes such as ["203.0.113.0/24"]`)
	if !ok {
		return nil
	}
	if len(a) == 0 {
		l.fail(field, "empty: list the provider's addresses, or remove the key to accept any address")
		return nil
	}
	var out []netip.Prefix
	for i, e := range a {
		f := indexField(field, i)
		s, ok := l.str(f, e, `an address or CIDR prefix string such as "203.0.113.0/24"`)
		if !ok {
			continue
		}
		p, err := parseAllowIP(s)
		if err != nil {
			l.fail(f, "invalid address %q: write an IP address such as \"203.0.113.7\" or a CIDR prefix such as \"203.0.113.0/24\"", s)
			continue
		}
		out = append(out, p)
	}
	return out
}

func parseAllowIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() {
			// Peers are compared unmapped, so the prefix is too.
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("prefix %s mixes IPv4 and IPv6", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// loopbackListen reports whether addr (host:port) only listens on a
// loopback interface.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// origins returns the Event.Source values hooks may name: every
// configured source and publisher.
func origins(cfg *Config) map[string]bool {
	m := make(map[string]bool, len(cfg.Sources)+len(cfg.Publishers))
	for _, s := range cfg.Sources {
		if s.Name != "" {
			m[sourcePrefix+s.Name] = true
		}
	}
	for _, p := range cfg.Publishers {
		if p.Name != "" {
			m[publisherPrefix+p.Name] = true
		}
	}
	return m
}

// hookFilters reads a hook's sources and match filters.
func (l *loader) hookFilters(t *table, h *HookConfig) {
	if v, f, ok := t.get("sources"); ok {
		h.Sources = l.hookSources(f, v)
	}
	if v, f, ok := t.get("match"); ok {
		if m, ok := l.subtable(f, v, `a table of payload paths to values such as { "account_id" = ["acct_1", "acct_2"] }`); ok {
			h.Match = l.matchRules(f, m)
		}
	}
	if v, f, ok := t.get("forward_headers"); ok {
		h.ForwardHeaders = l.forwardHeaders(f, v, h)
	}
}

// forwardHeaders reads the names of a source's request headers that a
// hook's deliveries carry on. Headers that describe the request itself,
// carry the sender's credentials, or that the relay sets for this hook
// are refused.
func (l *loader) forwardHeaders(field string, v any, h *HookConfig) []string {
	a, ok := l.array(field, v, `an array of header names such as ["Tilled-Signature"]`)
	if !ok {
		return nil
	}
	own := map[string]bool{}
	switch h.Signature {
	case SignatureStandardWebhooks:
		own[HeaderWebhookSignature] = true
	case SignatureHMACSHA256:
		own[HeaderSignature] = true
	case SignatureTilled:
		own[HeaderTilledSignature] = true
	case SignatureStripe:
		own[HeaderStripeSignature] = true
	}
	for name := range h.Headers {
		own[name] = true
	}
	var out []string
	seen := map[string]bool{}
	for i, e := range a {
		f := indexField(field, i)
		name, ok := l.str(f, e, "a header name")
		if !ok {
			continue
		}
		if !validHeaderName(name) {
			l.fail(f, "invalid header name %q: use letters, digits and !#$%%&'*+-.^_`|~", name)
			continue
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		lower := strings.ToLower(name)
		switch {
		case hopByHop[lower] || lower == "content-length" || lower == "content-type" || lower == "content-encoding" ||
			lower == "host" || lower == "user-agent":
			l.fail(f, "%s describes the request it came with and is not forwarded", canon)
			continue
		case lower == "authorization" || lower == "cookie" || lower == "proxy-authorization":
			l.fail(f, "%s carries the sender's credentials for hookrelay and is never forwarded", canon)
			continue
		case strings.HasPrefix(lower, "webhook-"):
			l.fail(f, "hookrelay sets the webhook-* headers of every delivery itself; a receiver finds the provider's id in webhook-id")
			continue
		case ownHeader(own, canon):
			l.fail(f, "hookrelay sets %s on this hook's deliveries (its signature or headers); forward another header or change those", canon)
			continue
		case seen[canon]:
			l.fail(f, "duplicate header %s: header names are case-insensitive", canon)
			continue
		}
		seen[canon] = true
		out = append(out, canon)
	}
	return out
}

func ownHeader(own map[string]bool, canon string) bool {
	for name := range own {
		if strings.EqualFold(name, canon) {
			return true
		}
	}
	return false
}

// hopByHop are the headers of one connection, never forwarded
// (RFC 9110, 7.6.1).
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true,
	"trailer": true, "transfer-encoding": true, "upgrade": true,
}

// hookSources reads a hook's sources filter: source names, or
// "publisher:NAME" for a publisher. It returns Event.Source values.
func (l *loader) hookSources(field string, v any) []string {
	a, ok := l.array(field, v, `an array of source names such as ["tilled"], with "publisher:NAME" for a publisher`)
	if !ok {
		return nil
	}
	if len(a) == 0 {
		l.fail(field, "empty: list source names (\"publisher:NAME\" for a publisher), or remove the key to receive from every source and publisher")
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, e := range a {
		f := indexField(field, i)
		s, ok := l.str(f, e, `a source name string such as "tilled", or "publisher:NAME"`)
		if !ok {
			continue
		}
		origin := s
		if !strings.HasPrefix(s, publisherPrefix) && !strings.HasPrefix(s, sourcePrefix) {
			origin = sourcePrefix + s
		}
		if j, dup := seen[origin]; dup {
			l.fail(f, "duplicate source %q (also %s): remove one", s, indexField(field, j))
			continue
		}
		seen[origin] = i
		if !l.origins[origin] {
			l.fail(f, "no %s: %s", describeOrigin(origin), l.originHint())
			continue
		}
		out = append(out, origin)
	}
	return out
}

func describeOrigin(origin string) string {
	if name, ok := strings.CutPrefix(origin, publisherPrefix); ok {
		return fmt.Sprintf("[[publisher]] named %q", name)
	}
	return fmt.Sprintf("[[source]] named %q", strings.TrimPrefix(origin, sourcePrefix))
}

func (l *loader) originHint() string {
	var srcs, pubs []string
	for o := range l.origins {
		if name, ok := strings.CutPrefix(o, sourcePrefix); ok {
			srcs = append(srcs, fmt.Sprintf("%q", name))
		} else {
			pubs = append(pubs, fmt.Sprintf("%q", o))
		}
	}
	sort.Strings(srcs)
	sort.Strings(pubs)
	hint := "name a [[source]]"
	if len(srcs) > 0 {
		hint += " (" + strings.Join(srcs, ", ") + ")"
	}
	hint += ` or a publisher as "publisher:NAME"`
	if len(pubs) > 0 {
		hint += " (" + strings.Join(pubs, ", ") + ")"
	}
	return hint
}

// matchRules reads a hook's match table. Keys are dotted paths or nested
// tables; values are a string, integer or boolean, or a list of them.
func (l *loader) matchRules(field string, m map[string]any) []MatchRule {
	var rules []MatchRule
	seen := map[string]string{}
	l.matchTable(field, nil, m, &rules, seen)
	if len(rules) == 0 && len(m) == 0 {
		l.fail(field, `empty: add a rule such as { "account_id" = ["acct_1"] }, or remove the key`)
	}
	return rules
}

func (l *loader) matchTable(field string, prefix []string, m map[string]any, out *[]MatchRule, seen map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := joinField(field, k)
		segs, err := splitPath(k)
		if err != nil {
			l.fail(f, "%v", err)
			continue
		}
		path := append(slices.Clone(prefix), segs...)
		if len(path) > maxPathDepth {
			l.fail(f, "path is %d members deep: at most %d", len(path), maxPathDepth)
			continue
		}
		if sub, ok := m[k].(map[string]any); ok {
			if len(sub) == 0 {
				l.fail(f, "empty table: give the member a value to match")
			}
			l.matchTable(f, path, sub, out, seen)
			continue
		}
		joined := strings.Join(path, ".")
		if other, dup := seen[joined]; dup {
			l.fail(f, "path %q is also written at %s: list every accepted value in one rule", joined, other)
			continue
		}
		seen[joined] = f
		if values := l.matchValues(f, m[k]); values != nil {
			*out = append(*out, MatchRule{Path: path, Values: values})
		}
	}
}

func (l *loader) matchValues(field string, v any) []any {
	const want = `a string, integer or boolean, or a list of them, such as ["acct_1", "acct_2"]`
	scalar := func(f string, v any) (any, bool) {
		switch v.(type) {
		case string, int64, bool:
			return v, true
		}
		l.fail(f, "expected %s, got %s", want, describe(v))
		return nil, false
	}
	a, isList := v.([]any)
	if !isList {
		if s, ok := scalar(field, v); ok {
			return []any{s}
		}
		return nil
	}
	if len(a) == 0 {
		l.fail(field, "empty list: an event would never match; list at least one value")
		return nil
	}
	out := make([]any, 0, len(a))
	for i, e := range a {
		if s, ok := scalar(indexField(field, i), e); ok {
			out = append(out, s)
		}
	}
	if len(out) != len(a) {
		return nil
	}
	return out
}
