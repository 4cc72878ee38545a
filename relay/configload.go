package relay

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// FieldError is one problem in a configuration file.
type FieldError struct {
	File  string // the file name as given to Load, or "<config>"
	Line  int    // 1-based; 0 when unknown
	Field string // dotted path such as "hook[1].retry[2]"; "" for syntax errors
	Msg   string // what is wrong and what would be valid; one line
}

// Error formats e as "FILE:LINE: field: problem", leaving out LINE when it is
// unknown and field when there is none.
func (e FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ConfigError lists every problem found in a configuration file, in file
// order. Load and LoadBytes return it (as *ConfigError) for any problem in
// the content of the file.
type ConfigError struct {
	Errors []FieldError
}

// Error prints one line per problem.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads the TOML file at path and returns its configuration, as
// LoadBytes does. An unreadable file gives a wrapped *fs.PathError (so
// errors.Is(err, fs.ErrNotExist) works); problems in its content give a
// *ConfigError.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return LoadBytes(path, data)
}

// LoadBytes decodes and validates the TOML document data. path names the
// document in error messages and anchors relative paths (data_dir,
// cert_file, key_file and "file:" secrets) at its directory; with
// path == "" they are relative to the working directory. Defaults are
// applied and secrets are resolved, so LoadBytes reads the environment,
// secret files and certificate files but changes nothing.
//
// On success the *Config is complete and valid. Otherwise the error is a
// *ConfigError listing every problem found; a TOML syntax error is the only
// one that stops the checks early.
func LoadBytes(path string, data []byte) (*Config, error) {
	file := path
	if file == "" {
		file = "<config>"
	}
	l := &loader{file: file, lookupEnv: os.LookupEnv}
	if path != "" {
		l.dir = filepath.Dir(path)
	}

	var root map[string]any
	if _, err := toml.Decode(string(data), &root); err != nil {
		fe := FieldError{File: file, Msg: "invalid TOML: " + err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			fe.Line = pe.Position.Line
			fe.Msg = "invalid TOML: " + pe.Message
		}
		fe.Msg = oneLine(fe.Msg)
		return nil, &ConfigError{Errors: []FieldError{fe}}
	}
	l.lines = scanKeyLines(string(data))

	cfg := l.config(root)
	cfg.Path = path
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			a, b := l.errs[i].Line, l.errs[j].Line
			return a != 0 && (b == 0 || a < b)
		})
		return nil, &ConfigError{Errors: l.errs}
	}
	return cfg, nil
}

// Hook returns the hook named name, or nil if there is none.
func (c *Config) Hook(name string) *HookConfig {
	for i := range c.Hooks {
		if c.Hooks[i].Name == name {
			return &c.Hooks[i]
		}
	}
	return nil
}

// Limits enforced by validation.
const (
	minMaxBody         = 1 << 10
	maxMaxBody         = 64 << 20
	minDedupWindow     = time.Minute
	maxDedupWindow     = 90 * 24 * time.Hour
	minShutdownTimeout = time.Second
	maxShutdownTimeout = 10 * time.Minute
	minHookTimeout     = 100 * time.Millisecond
	maxHookTimeout     = 5 * time.Minute
	maxRetryDelay      = 7 * 24 * time.Hour
	maxRetries         = 50
	maxConcurrency     = 256
	minTokenLen        = 16
	minHMACSecretLen   = 16
	maxEventGlobLen    = 200
	maxSecretFileSize  = 64 << 10
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	globRE = regexp.MustCompile(`^[A-Za-z0-9._:/*-]+$`)
)

const nameRule = "use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"

// loader holds the state of one LoadBytes call.
type loader struct {
	file      string // for messages
	dir       string // relative paths are resolved against it
	lookupEnv func(string) (string, bool)
	lines     keyLines
	errs      []FieldError
	// origins are the Event.Source values of the configured sources and
	// publishers, which hooks' sources filters may name.
	origins map[string]bool
}

func (l *loader) fail(field, format string, args ...any) {
	l.errs = append(l.errs, FieldError{
		File:  l.file,
		Line:  l.lines.lineOf(field),
		Field: field,
		Msg:   oneLine(fmt.Sprintf(format, args...)),
	})
}

// oneLine keeps each problem on its own line of ConfigError.Error.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// table walks one TOML table: get marks keys as used, done reports the
// others as unknown.
type table struct {
	l     *loader
	field string
	m     map[string]any
	keys  []string // the schema, for messages
	used  map[string]bool
}

func (l *loader) table(field string, m map[string]any, keys ...string) *table {
	return &table{l: l, field: field, m: m, keys: keys, used: map[string]bool{}}
}

// get returns the value of key and its field path; ok is false when the
// key is absent.
func (t *table) get(key string) (v any, field string, ok bool) {
	t.used[key] = true
	v, ok = t.m[key]
	return v, joinField(t.field, key), ok
}

// done reports every key outside the schema that has not been dealt with.
func (t *table) done() {
	var unknown []string
	for k := range t.m {
		if !t.used[k] && !slices.Contains(t.keys, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		msg := "unknown key"
		if s := closest(k, t.keys); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		t.l.fail(joinField(t.field, k), "%s: valid keys here are %s", msg, strings.Join(t.keys, ", "))
	}
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 100 || len(b) > 100 {
		return 100
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names a decoded TOML value for "got ..." in messages.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if utf8.RuneCountInString(v) > 40 {
			v = string([]rune(v)[:40]) + "..."
		}
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// str returns v as a string, or reports that want was expected.
func (l *loader) str(field string, v any, want string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		l.fail(field, "expected %s, got %s", want, describe(v))
	}
	return s, ok
}

// subtable returns v as a table, or reports that want was expected.
func (l *loader) subtable(field string, v any, want string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		l.fail(field, "expected %s, got %s", want, describe(v))
	}
	return m, ok
}

// array returns v as a list of values, or reports that want was expected.
func (l *loader) array(field string, v any, want string) ([]any, bool) {
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		out := make([]any, len(a))
		for i := range a {
			out[i] = a[i]
		}
		return out, true
	}
	l.fail(field, "expected %s, got %s", want, describe(v))
	return nil, false
}

// tables returns the elements of an array of tables such as [[hook]].
func (l *loader) tables(field string, v any) ([]map[string]any, bool) {
	if _, ok := v.(map[string]any); ok {
		l.fail(field, "expected an array of tables: write [[%s]] (double brackets) before each entry", field)
		return nil, false
	}
	a, ok := l.array(field, v, fmt.Sprintf("an array of tables written as [[%s]]", field))
	if !ok {
		return nil, false
	}
	out := make([]map[string]any, 0, len(a))
	for i, e := range a {
		if m, ok := l.subtable(indexField(field, i), e, "a table"); ok {
			out = append(out, m)
		}
	}
	return out, len(out) == len(a)
}

// integer returns v as an int within [lo, hi].
func (l *loader) integer(field string, v any, lo, hi int) (int, bool) {
	n, ok := v.(int64)
	if !ok || n < int64(lo) || n > int64(hi) {
		got := describe(v)
		if ok {
			got = strconv.FormatInt(n, 10)
		}
		l.fail(field, "expected an integer from %d to %d, got %s", lo, hi, got)
		return 0, false
	}
	return int(n), true
}

// duration returns v as a duration within [lo, hi]. v must be a string: Go
// duration syntax plus a leading whole number of days ("7d", "1d12h").
func (l *loader) duration(field string, v any, lo, hi time.Duration) (time.Duration, bool) {
	if n, ok := v.(int64); ok {
		l.fail(field, "integer %d has no unit: write a string with a unit such as \"%ds\" or \"%dms\"", n, n, n)
		return 0, false
	}
	s, ok := l.str(field, v, `a duration string such as "30s"`)
	if !ok {
		return 0, false
	}
	d, err := parseDuration(s)
	if err != nil {
		l.fail(field, "invalid duration %q: use a number with a unit such as 500ms, 5s, 5m, 2h, 7d", s)
		return 0, false
	}
	if d < lo || d > hi {
		want := fmtDuration(lo) + " to " + fmtDuration(hi)
		if lo <= 1 {
			want = "more than 0 and at most " + fmtDuration(hi)
		}
		l.fail(field, "duration %q is out of range: use %s", s, want)
		return 0, false
	}
	return d, true
}

// parseDuration is time.ParseDuration plus a leading "<n>d" for days.
func parseDuration(s string) (time.Duration, error) {
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits == 0 || digits == len(s) || s[digits] != 'd' {
		return time.ParseDuration(s)
	}
	days, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil || days > int64(1<<63-1)/int64(24*time.Hour) {
		return 0, fmt.Errorf("duration %q out of range", s)
	}
	d := time.Duration(days) * 24 * time.Hour
	if rest := s[digits+1:]; rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 || d+r < d {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		d += r
	}
	return d, nil
}

// fmtDuration prints d in the largest whole unit: "7d", "5m", "100ms".
func fmtDuration(d time.Duration) string {
	units := []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}}
	for _, u := range units {
		if d != 0 && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

// size returns v as a byte count within [lo, hi]: an integer, or a string
// with an optional unit B, KB, KiB, MB or MiB.
func (l *loader) size(field string, v any, lo, hi int64) (int64, bool) {
	var n int64
	switch v := v.(type) {
	case int64:
		n = v
	case string:
		var err error
		if n, err = parseSize(v); err != nil {
			l.fail(field, "invalid size %q: use a whole number of bytes or a number with a unit B, KB, KiB, MB or MiB, such as \"512KiB\" or \"1MiB\"", v)
			return 0, false
		}
	default:
		l.fail(field, `expected a size such as "1MiB" or 1048576, got %s`, describe(v))
		return 0, false
	}
	if n < lo || n > hi {
		l.fail(field, "size %d bytes is out of range: use %s to %s", n, fmtSize(lo), fmtSize(hi))
		return 0, false
	}
	return n, true
}

func parseSize(s string) (int64, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1000}, {"mb", 1000 * 1000}, {"b", 1}} {
		if strings.HasSuffix(strings.ToLower(num), u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num[0] == '+' {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	if n > (1<<63-1)/mult {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return n * mult, nil
}

func fmtSize(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// secret returns v resolved as a secret value: a string used as written,
// "env:NAME" for an environment variable, or "file:PATH" for the content of
// a file without its final line ending. The result is never empty.
// Messages never include the secret itself.
func (l *loader) secret(field string, v any) (string, bool) {
	s, ok := l.str(field, v, `a string: the value, "env:NAME" or "file:/path"`)
	if !ok {
		return "", false
	}
	switch {
	case strings.HasPrefix(s, "env:"):
		name := strings.TrimPrefix(s, "env:")
		if name == "" {
			l.fail(field, `"env:" needs a variable name, such as "env:CRM_PASSWORD"`)
			return "", false
		}
		val, set := l.lookupEnv(name)
		switch {
		case !set:
			l.fail(field, "environment variable %s is not set: set it or write the value inline", name)
			return "", false
		case val == "":
			l.fail(field, "environment variable %s is empty: set it to the secret value", name)
			return "", false
		}
		return val, true
	case strings.HasPrefix(s, "file:"):
		p := strings.TrimPrefix(s, "file:")
		if p == "" {
			l.fail(field, `"file:" needs a path, such as "file:/etc/hookrelay/token"`)
			return "", false
		}
		val, err := readSecretFile(l.resolvePath(p))
		if err != nil {
			l.fail(field, "%v", err)
			return "", false
		}
		return val, true
	case s == "":
		l.fail(field, `empty value: write the secret, "env:NAME" or "file:/path"`)
		return "", false
	}
	return s, true
}

func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	if len(data) > maxSecretFileSize {
		return "", fmt.Errorf("secret file %s is larger than %s", path, fmtSize(maxSecretFileSize))
	}
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\r\n"); ok {
		s = t
	} else {
		s = strings.TrimSuffix(s, "\n")
	}
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

// resolvePath anchors a relative path at the config file's directory.
func (l *loader) resolvePath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

// hasControl reports whether s cannot be sent in an HTTP header value.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return r < ' ' && r != '\t' || r == 0x7f
	})
}

func (l *loader) config(root map[string]any) *Config {
	cfg := &Config{Server: ServerConfig{
		Listen:          DefaultListen,
		DataDir:         l.resolvePath(DefaultDataDir),
		MaxBody:         DefaultMaxBody,
		DedupWindow:     DefaultDedupWindow,
		ShutdownTimeout: DefaultShutdownTimeout,
	}}
	t := l.table("", root, "server", "tls", "publisher", "source", "hook")
	if v, f, ok := t.get("server"); ok {
		if m, ok := l.subtable(f, v, "a [server] table"); ok {
			l.server(f, m, &cfg.Server)
		}
	}
	cfg.TLS = l.tlsConfig(t, l.validListen(cfg.Server.Listen))
	if v, f, ok := t.get("publisher"); ok {
		ms, _ := l.tables(f, v)
		l.publishers(f, ms, cfg)
	}
	if v, f, ok := t.get("source"); ok {
		ms, _ := l.tables(f, v)
		l.sources(f, ms, cfg)
	}
	l.origins = origins(cfg)
	if v, f, ok := t.get("hook"); ok {
		ms, _ := l.tables(f, v)
		seen := map[string]int{}
		for i, m := range ms {
			field := indexField(f, i)
			if i == MaxFanout {
				l.fail(field, "too many hooks: at most %d, since an event can be delivered to every hook", MaxFanout)
			}
			h := l.hook(field, m)
			if h.Name != "" {
				if j, dup := seen[h.Name]; dup {
					l.fail(joinField(field, "name"), "duplicate hook name %q (also %s): hook names must be unique", h.Name, indexField(f, j))
				} else {
					seen[h.Name] = i
				}
			}
			cfg.Hooks = append(cfg.Hooks, h)
		}
	}
	t.done()
	return cfg
}

func (l *loader) server(field string, m map[string]any, s *ServerConfig) {
	t := l.table(field, m, "listen", "data_dir", "max_body", "dedup_window", "shutdown_timeout")
	if v, f, ok := t.get("listen"); ok {
		if a, ok := l.str(f, v, `a host:port string such as "127.0.0.1:8080"`); ok && l.listen(f, a) {
			s.Listen = a
		}
	}
	if v, f, ok := t.get("data_dir"); ok {
		if d, ok := l.str(f, v, "a directory path"); ok {
			if d == "" {
				l.fail(f, `empty path: write a directory such as "/var/lib/hookrelay"`)
			} else {
				s.DataDir = l.resolvePath(d)
			}
		}
	}
	if v, f, ok := t.get("max_body"); ok {
		if n, ok := l.size(f, v, minMaxBody, maxMaxBody); ok {
			s.MaxBody = n
		}
	}
	if v, f, ok := t.get("dedup_window"); ok {
		if d, ok := l.duration(f, v, minDedupWindow, maxDedupWindow); ok {
			s.DedupWindow = d
		}
	}
	if v, f, ok := t.get("shutdown_timeout"); ok {
		if d, ok := l.duration(f, v, minShutdownTimeout, maxShutdownTimeout); ok {
			s.ShutdownTimeout = d
		}
	}
	t.done()
}

func (l *loader) listen(field, addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		l.fail(field, `invalid address %q: use host:port such as "127.0.0.1:8080", or ":8080" for all interfaces`, addr)
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		l.fail(field, "invalid port %q in %q: use a port number from 1 to 65535", port, addr)
		return false
	}
	return true
}

func (l *loader) publishers(field string, ms []map[string]any, cfg *Config) {
	names := map[string]int{}
	tokens := map[string]int{}
	for i, m := range ms {
		pf := indexField(field, i)
		t := l.table(pf, m, "name", "token")
		var p PublisherConfig
		if name, ok := l.name(t, pf); ok {
			if j, dup := names[name]; dup {
				l.fail(joinField(pf, "name"), "duplicate publisher name %q (also %s): publisher names must be unique", name, indexField(field, j))
			} else {
				names[name] = i
			}
			p.Name = name
		}
		if v, f, ok := t.get("token"); !ok {
			l.fail(f, `required: the bearer token this publisher sends, at least %d characters (inline, "env:NAME" or "file:/path")`, minTokenLen)
		} else if tok, ok := l.secret(f, v); ok {
			switch j, dup := tokens[tok]; {
			case utf8.RuneCountInString(tok) < minTokenLen:
				l.fail(f, "token is %d characters long: use at least %d", utf8.RuneCountInString(tok), minTokenLen)
			case dup:
				l.fail(f, "same token as %s: each publisher needs its own token", indexField(field, j))
			default:
				tokens[tok] = i
				p.Token = tok
			}
		}
		t.done()
		cfg.Publishers = append(cfg.Publishers, p)
	}
}

// name reads the required "name" key of t.
func (l *loader) name(t *table, field string) (string, bool) {
	v, f, ok := t.get("name")
	if !ok {
		l.fail(f, "required: %s", nameRule)
		return "", false
	}
	s, ok := l.str(f, v, "a name string")
	if !ok {
		return "", false
	}
	if !nameRE.MatchString(s) {
		l.fail(f, "invalid name %q: %s", s, nameRule)
		return "", false
	}
	return s, true
}

func (l *loader) hook(field string, m map[string]any) HookConfig {
	h := HookConfig{
		Retry:       slices.Clone(DefaultRetry),
		Timeout:     DefaultHookTimeout,
		Concurrency: DefaultConcurrency,
		Auth:        AuthConfig{Type: AuthNone},
	}
	t := l.table(field, m, "name", "url", "events", "secret", "signature", "auth", "headers", "retry", "timeout", "concurrency",
		"sources", "match", "forward_headers")
	h.Name, _ = l.name(t, field)

	if v, f, ok := t.get("url"); !ok {
		l.fail(f, `required: the http:// or https:// URL deliveries are POSTed to`)
	} else if s, ok := l.str(f, v, "a URL string"); ok {
		h.URL = l.hookURL(f, s)
	}

	if v, f, ok := t.get("events"); !ok {
		l.fail(f, `required: a list of event type globs such as ["payment.*"], or ["*"] for all`)
	} else {
		h.Events = l.events(f, v)
	}

	l.signing(t, &h)

	if v, f, ok := t.get("auth"); ok {
		if am, ok := l.subtable(f, v, `a table such as { type = "bearer", token = "env:TOKEN" }`); ok {
			h.Auth = l.auth(f, am)
		}
	}

	if v, f, ok := t.get("headers"); ok {
		if hm, ok := l.subtable(f, v, `a table of header names to values such as { "X-Api-Key" = "env:API_KEY" }`); ok {
			h.Headers = l.headers(f, hm)
		}
	}

	if v, f, ok := t.get("retry"); ok {
		if a, ok := l.array(f, v, `an array of durations such as ["5s", "5m", "30m"]`); ok {
			h.Retry = l.retry(f, a)
		}
	}

	if v, f, ok := t.get("timeout"); ok {
		if d, ok := l.duration(f, v, minHookTimeout, maxHookTimeout); ok {
			h.Timeout = d
		}
	}

	if v, f, ok := t.get("concurrency"); ok {
		if n, ok := l.integer(f, v, 1, maxConcurrency); ok {
			h.Concurrency = n
		}
	}
	l.hookFilters(t, &h)
	t.done()
	return h
}

func (l *loader) hookURL(field, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the URL, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		l.fail(field, "invalid URL: %v", err)
		return nil
	}
	switch {
	case u.Scheme == "":
		l.fail(field, "%q is not an absolute URL: use http://host/path or https://host/path", u.Redacted())
	case u.Scheme != "http" && u.Scheme != "https":
		l.fail(field, "unsupported scheme %q: use an http:// or https:// URL", u.Scheme)
	case u.User != nil:
		l.fail(field, "credentials in the URL are not allowed: use auth")
	case u.Host == "" || u.Hostname() == "":
		l.fail(field, "URL %q has no host: use http://host/path or https://host/path", u.Redacted())
	case u.Fragment != "" || strings.Contains(s, "#"):
		l.fail(field, "URL %q has a fragment (#...): remove it, it is never sent", u.Redacted())
	default:
		return u
	}
	return nil
}

func (l *loader) events(field string, v any) []string {
	a, ok := l.array(field, v, `an array of event type globs such as ["payment.*"]`)
	if !ok {
		return nil
	}
	if len(a) == 0 {
		l.fail(field, `empty: list at least one event type glob such as "payment.*", or "*" for all`)
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, e := range a {
		f := indexField(field, i)
		s, ok := l.str(f, e, `an event type glob string such as "payment.*"`)
		if !ok {
			continue
		}
		if j, dup := seen[s]; dup {
			l.fail(f, "duplicate event glob %q (also %s): remove one", s, indexField(field, j))
			continue
		}
		seen[s] = i
		if len(s) > maxEventGlobLen || !globRE.MatchString(s) {
			l.fail(f, "invalid event glob %q: use 1 to %d characters: letters, digits and . _ : / * -", s, maxEventGlobLen)
			continue
		}
		out = append(out, s)
	}
	return out
}

// signatureChoices lists the outbound signature schemes for messages.
const signatureChoices = `"standard-webhooks", "hmac-sha256", "tilled", "stripe" or "none"`

// signing reads "secret" and "signature" and checks that they fit together.
func (l *loader) signing(t *table, h *HookConfig) {
	// secrets[i] is "" where resolution failed (already reported).
	var secrets, fields []string
	sv, sf, hasSecret := t.get("secret")
	if hasSecret {
		switch v := sv.(type) {
		case []any:
			if len(v) == 0 {
				l.fail(sf, "empty: list at least one secret, newest first, or remove the key")
			}
			for i, e := range v {
				f := indexField(sf, i)
				s, _ := l.secret(f, e)
				secrets, fields = append(secrets, s), append(fields, f)
			}
		default:
			s, _ := l.secret(sf, sv)
			secrets, fields = append(secrets, s), append(fields, sf)
		}
	}

	sig := SignatureNone
	if hasSecret {
		sig = SignatureStandardWebhooks
	}
	gv, gf, hasSig := t.get("signature")
	if hasSig {
		s, ok := l.str(gf, gv, signatureChoices)
		if !ok {
			return
		}
		switch s {
		case SignatureStandardWebhooks, SignatureHMACSHA256, SignatureTilled, SignatureStripe, SignatureNone:
			sig = s
		default:
			l.fail(gf, `unknown signature %q: use %s`, s, signatureChoices)
			return
		}
	}
	h.Signature = sig

	switch {
	case sig == SignatureNone && hasSecret:
		l.fail(gf, `signature "none" with a secret set: remove the secret, or use "standard-webhooks" or "hmac-sha256"`)
		return
	case sig != SignatureNone && !hasSecret:
		l.fail(gf, `signature %q needs a secret: add secret = "..." to this hook, or use signature = "none"`, sig)
		return
	case !hasSecret:
		return
	}

	ok := !slices.Contains(secrets, "") && len(secrets) > 0
	switch sig {
	case SignatureStandardWebhooks:
		for i, s := range secrets {
			if s == "" {
				continue
			}
			key, err := whsecKey(s)
			if err != nil {
				l.fail(fields[i], "%v", err)
				ok = false
				continue
			}
			h.SigningKeys = append(h.SigningKeys, key)
		}
	case SignatureHMACSHA256:
		if len(secrets) != 1 {
			l.fail(sf, `hmac-sha256 takes exactly one secret, got %d: write secret = "..."`, len(secrets))
			ok = false
		} else if s := secrets[0]; s != "" && len(s) < minHMACSecretLen {
			l.fail(fields[0], "hmac-sha256 secret is %d bytes long: use at least %d", len(s), minHMACSecretLen)
			ok = false
		} else {
			h.SigningKeys = [][]byte{[]byte(s)}
		}
	case SignatureTilled, SignatureStripe:
		// The receiver's library uses the secret string as the key.
		for i, s := range secrets {
			if s != "" && len(s) < minHMACSecretLen {
				l.fail(fields[i], "%s secret is %d bytes long: use at least %d", sig, len(s), minHMACSecretLen)
				ok = false
				continue
			}
			h.SigningKeys = append(h.SigningKeys, []byte(s))
		}
	}
	if ok {
		h.Secrets = secrets
	} else {
		h.SigningKeys = nil
	}
}

// whsecKey decodes a Standard Webhooks secret, "whsec_" + base64(key).
func whsecKey(s string) ([]byte, error) {
	const rule = `a standard-webhooks secret is "whsec_" followed by the standard base64 of 24 to 64 random bytes`
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, fmt.Errorf("secret does not start with \"whsec_\": %s", rule)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("secret is not valid base64 after \"whsec_\": %s", rule)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("secret decodes to %d bytes: %s", len(key), rule)
	}
	return key, nil
}

func (l *loader) auth(field string, m map[string]any) AuthConfig {
	a := AuthConfig{Type: AuthNone}
	if v, ok := m["type"]; ok {
		f := joinField(field, "type")
		s, ok := l.str(f, v, `"none", "basic" or "bearer"`)
		switch {
		case !ok:
		case s == AuthNone || s == AuthBasic || s == AuthBearer:
			a.Type = s
		default:
			l.fail(f, `unknown auth type %q: use "none", "basic" or "bearer"`, s)
		}
		if a.Type != s {
			// Only unknown keys can still be told apart.
			l.table(field, m, "type", "username", "password", "token").done()
			return AuthConfig{Type: AuthNone}
		}
	}

	keys := map[string][]string{
		AuthNone:   {"type"},
		AuthBasic:  {"type", "username", "password"},
		AuthBearer: {"type", "token"},
	}[a.Type]
	t := l.table(field, m, keys...)
	t.get("type")
	for _, k := range []string{"username", "password", "token"} {
		if _, present := m[k]; present && !slices.Contains(keys, k) {
			t.used[k] = true
			l.fail(joinField(field, k), "not used by auth type %q: %s", a.Type, authKeysHint(a.Type))
		}
	}

	switch a.Type {
	case AuthBasic:
		if v, f, ok := t.get("username"); !ok {
			l.fail(f, "required for basic auth")
		} else if s, ok := l.str(f, v, "a user name string"); ok {
			switch {
			case s == "":
				l.fail(f, "empty: basic auth needs a user name")
			case strings.Contains(s, ":") || hasControl(s):
				l.fail(f, "invalid user name: it may not contain ':' or control characters")
			default:
				a.Username = s
			}
		}
		if v, f, ok := t.get("password"); !ok {
			l.fail(f, `required for basic auth: the password, "env:NAME" or "file:/path"`)
		} else if s, ok := l.secret(f, v); ok {
			a.Password = s
		}
	case AuthBearer:
		if v, f, ok := t.get("token"); !ok {
			l.fail(f, `required for bearer auth: the token, "env:NAME" or "file:/path"`)
		} else if s, ok := l.secret(f, v); ok {
			if hasControl(s) {
				l.fail(f, "invalid token: it may not contain control characters")
			} else {
				a.Token = s
			}
		}
	}
	t.done()
	return a
}

func authKeysHint(typ string) string {
	switch typ {
	case AuthBasic:
		return "basic auth uses username and password"
	case AuthBearer:
		return "bearer auth uses token"
	}
	return `set type = "basic" (username, password) or type = "bearer" (token)`
}

func (l *loader) headers(field string, m map[string]any) map[string]string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := map[string]string{}
	seen := map[string]string{}
	for _, name := range names {
		f := joinField(field, name)
		lower := strings.ToLower(name)
		switch {
		case !validHeaderName(name):
			l.fail(f, "invalid header name: use letters, digits and !#$%%&'*+-.^_`|~")
			continue
		case lower == "authorization":
			l.fail(f, "reserved header: use auth for the Authorization header")
			continue
		case lower == "content-type" || lower == "content-length" || lower == "host" || lower == "user-agent":
			l.fail(f, "reserved header: hookrelay sets %s itself", name)
			continue
		case strings.HasPrefix(lower, "webhook-") || lower == "x-signature" || lower == "tilled-signature" || lower == "stripe-signature":
			l.fail(f, "reserved header: hookrelay sets %s to sign deliveries; choose another name", name)
			continue
		}
		if other, dup := seen[lower]; dup {
			l.fail(f, "duplicate header (also %q): header names are case-insensitive", other)
			continue
		}
		seen[lower] = name
		s, ok := l.secret(f, m[name])
		if !ok {
			continue
		}
		if hasControl(s) {
			l.fail(f, "invalid header value: it may not contain control characters")
			continue
		}
		out[name] = s
	}
	return out
}

// validHeaderName reports whether s is an HTTP token (RFC 9110, 5.6.2).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (l *loader) retry(field string, a []any) []time.Duration {
	if len(a) > maxRetries {
		l.fail(field, "%d retries: use at most %d", len(a), maxRetries)
		return nil
	}
	out := make([]time.Duration, 0, len(a))
	for i, e := range a {
		if d, ok := l.duration(indexField(field, i), e, 1, maxRetryDelay); ok {
			out = append(out, d)
		}
	}
	return out
}
