package relay

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// whsec returns a Standard Webhooks secret for a key of n bytes.
func whsec(n int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(key(n))
}

func key(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// assertProblems checks that err is a *ConfigError whose lines start, in
// order, with the prefixes in want.
func assertProblems(t *testing.T, err error, want []string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got error %v (%T), want *ConfigError", err, err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(ce.Errors) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(ce.Errors))
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("problem %d:\n got  %s\n want %s...", i, lines[i], want[i])
		}
	}
}

func TestLoadBytesErrors(t *testing.T) {
	const unset = "HOOKRELAY_TEST_UNSET_VARIABLE"
	t.Setenv(unset, "") // restored after the test
	os.Unsetenv(unset)
	t.Setenv("HOOKRELAY_TEST_EMPTY", "")

	tests := []struct {
		name string
		toml string
		want []string
	}{
		{
			name: "syntax error",
			toml: `[server]
listen = "127.0.0.1:8080"
max_body =
`,
			want: []string{`hookrelay.toml:3: invalid TOML: expected value`},
		},
		{
			name: "unknown top-level table",
			toml: `[server]
listen = "127.0.0.1:8080"

[sink]
name = "x"
`,
			want: []string{`hookrelay.toml:4: sink: unknown key: valid keys here are server, tls, publisher, source, hook`},
		},
		{
			name: "unknown top-level key",
			toml: `hooks = []
`,
			want: []string{`hookrelay.toml:1: hooks: unknown key (did you mean "hook"?)`},
		},
		{
			name: "unknown key in server",
			toml: `[server]
listen = "127.0.0.1:8080"
max_bdy = "1MiB"
`,
			want: []string{`hookrelay.toml:3: server.max_bdy: unknown key (did you mean "max_body"?): valid keys here are listen, data_dir,`},
		},
		{
			name: "unknown key in second hook",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["payment.*"]

[[hook]]
name = "erp"
url = "https://erp.internal/webhooks"
events = ["*"]
timeot = "5s"
`,
			want: []string{`hookrelay.toml:10: hook[1].timeot: unknown key (did you mean "timeout"?)`},
		},
		{
			name: "unknown key in inline auth",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["payment.*"]
auth = { type = "bearer", token = "0123456789abcdef", realm = "x" }
`,
			want: []string{`hookrelay.toml:5: hook[0].auth.realm: unknown key: valid keys here are type, token`},
		},
		{
			name: "key of another auth type in multi-line inline table",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["payment.*"]
auth = {
  type = "basic",
  username = "u",
  password = "p",
  token = "t",
}
`,
			want: []string{`hookrelay.toml:9: hook[0].auth.token: not used by auth type "basic": basic auth uses username and password`},
		},
		{
			name: "auth sub-table missing password",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["payment.*"]

[hook.auth]
type = "basic"
username = "u"
`,
			want: []string{`hookrelay.toml:6: hook[0].auth.password: required for basic auth`},
		},
		{
			name: "concurrency not an integer",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["payment.*"]
concurrency = "eight"
`,
			want: []string{`hookrelay.toml:5: hook[0].concurrency: expected an integer from 1 to 256, got string "eight"`},
		},
		{
			name: "concurrency out of range",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["payment.*"]
concurrency = 0
`,
			want: []string{`hookrelay.toml:5: hook[0].concurrency: expected an integer from 1 to 256, got 0`},
		},
		{
			name: "events not an array",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = "x"
`,
			want: []string{`hookrelay.toml:4: hook[0].events: expected an array of event type globs such as ["payment.*"], got string "x"`},
		},
		{
			name: "empty events",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = []
`,
			want: []string{`hookrelay.toml:4: hook[0].events: empty: list at least one event type glob`},
		},
		{
			name: "bad and duplicate event globs",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = [
  "payment.*",
  "pay ment",
  "payment.*",
]
`,
			want: []string{
				`hookrelay.toml:6: hook[0].events[1]: invalid event glob "pay ment": use 1 to 200 characters`,
				`hookrelay.toml:7: hook[0].events[2]: duplicate event glob "payment.*" (also hook[0].events[0])`,
			},
		},
		{
			name: "missing required hook keys",
			toml: `# one hook
[[hook]]
name = "crm"
`,
			want: []string{
				`hookrelay.toml:2: hook[0].url: required: the http:// or https:// URL`,
				`hookrelay.toml:2: hook[0].events: required:`,
			},
		},
		{
			name: "invalid URL",
			toml: `[[hook]]
name = "crm"
url = "http://crm internal/webhooks"
events = ["*"]
`,
			want: []string{`hookrelay.toml:3: hook[0].url: invalid URL: invalid character " " in host name`},
		},
		{
			name: "ftp URL",
			toml: `[[hook]]
name = "crm"
url = "ftp://crm.internal/webhooks"
events = ["*"]
`,
			want: []string{`hookrelay.toml:3: hook[0].url: unsupported scheme "ftp": use an http:// or https:// URL`},
		},
		{
			name: "URL with userinfo",
			toml: `[[hook]]
name = "crm"
url = "https://admin:hunter2@crm.internal/webhooks"
events = ["*"]
`,
			want: []string{`hookrelay.toml:3: hook[0].url: credentials in the URL are not allowed: use auth`},
		},
		{
			name: "relative URL",
			toml: `[[hook]]
name = "crm"
url = "/webhooks"
events = ["*"]
`,
			want: []string{`hookrelay.toml:3: hook[0].url: "/webhooks" is not an absolute URL`},
		},
		{
			name: "URL with fragment",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks#x"
events = ["*"]
`,
			want: []string{`hookrelay.toml:3: hook[0].url: URL "https://crm.internal/webhooks#x" has a fragment`},
		},
		{
			name: "bad duration in multi-line retry",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["payment.*"]

[[hook]]
name = "erp"
url = "https://erp.internal/webhooks"
events = ["*"]
retry = [
  "5s",  # first retry
  "5m",
  "5x",
  "2h",
]
`,
			want: []string{`hookrelay.toml:13: hook[1].retry[2]: invalid duration "5x": use a number with a unit such as 500ms, 5s, 5m, 2h`},
		},
		{
			name: "retry out of range",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
retry = ["0s", "8d"]
`,
			want: []string{
				`hookrelay.toml:5: hook[0].retry[0]: duration "0s" is out of range: use more than 0 and at most 7d`,
				`hookrelay.toml:5: hook[0].retry[1]: duration "8d" is out of range`,
			},
		},
		{
			name: "integer duration",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
timeout = 10
`,
			want: []string{`hookrelay.toml:5: hook[0].timeout: integer 10 has no unit: write a string with a unit such as "10s"`},
		},
		{
			name: "duplicate hook names",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]

[[hook]]
url = "https://crm2.internal/webhooks"
name = "crm"
events = ["*"]
`,
			want: []string{`hookrelay.toml:8: hook[1].name: duplicate hook name "crm" (also hook[0])`},
		},
		{
			name: "invalid hook name",
			toml: `[[hook]]
name = "CRM"
url = "https://crm.internal/webhooks"
events = ["*"]
`,
			want: []string{`hookrelay.toml:2: hook[0].name: invalid name "CRM": use 1 to 64 lowercase letters`},
		},
		{
			name: "bad whsec base64",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
secret = "whsec_not*base64!"
`,
			want: []string{`hookrelay.toml:5: hook[0].secret: secret is not valid base64 after "whsec_"`},
		},
		{
			name: "whsec key too short in rotation list",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
secret = [
  "` + whsec(32) + `",
  "` + whsec(16) + `",
]
`,
			want: []string{`hookrelay.toml:7: hook[0].secret[1]: secret decodes to 16 bytes`},
		},
		{
			name: "hmac-sha256 with two secrets",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
signature = "hmac-sha256"
secret = ["0123456789abcdef", "fedcba9876543210"]
`,
			want: []string{`hookrelay.toml:6: hook[0].secret: hmac-sha256 takes exactly one secret, got 2`},
		},
		{
			name: "hmac-sha256 secret too short",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
signature = "hmac-sha256"
secret = "short"
`,
			want: []string{`hookrelay.toml:6: hook[0].secret: hmac-sha256 secret is 5 bytes long: use at least 16`},
		},
		{
			name: "signature without secret",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
signature = "standard-webhooks"
`,
			want: []string{`hookrelay.toml:5: hook[0].signature: signature "standard-webhooks" needs a secret`},
		},
		{
			name: "secret with signature none",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
secret = "` + whsec(32) + `"
signature = "none"
`,
			want: []string{`hookrelay.toml:6: hook[0].signature: signature "none" with a secret set`},
		},
		{
			name: "unknown signature",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
secret = "` + whsec(32) + `"
signature = "sha1"
`,
			want: []string{`hookrelay.toml:6: hook[0].signature: unknown signature "sha1": use "standard-webhooks", "hmac-sha256", "tilled", "stripe" or "none"`},
		},
		{
			name: "env secret unset",
			toml: `[[publisher]]
name = "pos"
token = "env:` + unset + `"
`,
			want: []string{`hookrelay.toml:3: publisher[0].token: environment variable ` + unset + ` is not set`},
		},
		{
			name: "env secret empty",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
auth = { type = "bearer", token = "env:HOOKRELAY_TEST_EMPTY" }
`,
			want: []string{`hookrelay.toml:5: hook[0].auth.token: environment variable HOOKRELAY_TEST_EMPTY is empty`},
		},
		{
			name: "file secret missing",
			toml: `[[publisher]]
name = "pos"
token = "file:/nonexistent/hookrelay/token"
`,
			want: []string{`hookrelay.toml:3: publisher[0].token: read secret file: open /nonexistent/hookrelay/token: no such file or directory`},
		},
		{
			name: "publisher token too short and duplicated",
			toml: `[[publisher]]
name = "pos"
token = "0123456789abcdef"

[[publisher]]
name = "shop"
token = "0123456789abcdef"

[[publisher]]
name = "pos"
token = "short"
`,
			want: []string{
				`hookrelay.toml:7: publisher[1].token: same token as publisher[0]: each publisher needs its own token`,
				`hookrelay.toml:10: publisher[2].name: duplicate publisher name "pos" (also publisher[0])`,
				`hookrelay.toml:11: publisher[2].token: token is 5 characters long: use at least 16`,
			},
		},
		{
			name: "publisher as a single table",
			toml: `[publisher]
name = "pos"
`,
			want: []string{`hookrelay.toml:1: publisher: expected an array of tables: write [[publisher]] (double brackets)`},
		},
		{
			name: "reserved and invalid headers",
			toml: `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]

[hook.headers]
Authorization = "Bearer x"
"webhook-id" = "x"
"X Bad" = "x"
X-Ok = "fine"
`,
			want: []string{
				`hookrelay.toml:7: hook[0].headers.Authorization: reserved header: use auth`,
				`hookrelay.toml:8: hook[0].headers.webhook-id: reserved header`,
				`hookrelay.toml:9: hook[0].headers."X Bad": invalid header name`,
			},
		},
		{
			name: "server values out of range",
			toml: `[server]
listen = "127.0.0.1:0"
data_dir = ""
max_body = "65MiB"
dedup_window = "100d"
shutdown_timeout = "500ms"
`,
			want: []string{
				`hookrelay.toml:2: server.listen: invalid port "0" in "127.0.0.1:0": use a port number from 1 to 65535`,
				`hookrelay.toml:3: server.data_dir: empty path`,
				`hookrelay.toml:4: server.max_body: size 68157440 bytes is out of range: use 1KiB to 64MiB`,
				`hookrelay.toml:5: server.dedup_window: duration "100d" is out of range: use 1m to 90d`,
				`hookrelay.toml:6: server.shutdown_timeout: duration "500ms" is out of range: use 1s to 10m`,
			},
		},
		{
			name: "server values of wrong form",
			toml: `[server]
listen = "localhost"
max_body = "1.5MiB"
dedup_window = 72
`,
			want: []string{
				`hookrelay.toml:2: server.listen: invalid address "localhost": use host:port`,
				`hookrelay.toml:3: server.max_body: invalid size "1.5MiB"`,
				`hookrelay.toml:4: server.dedup_window: integer 72 has no unit`,
			},
		},
		{
			name: "many problems reported in file order",
			toml: `[[hook]]
name = "Bad Name"
url = "ftp://crm.internal/"
events = []

[server]
listen = "nohost"
bogus = true
`,
			want: []string{
				`hookrelay.toml:2: hook[0].name: invalid name "Bad Name"`,
				`hookrelay.toml:3: hook[0].url: unsupported scheme "ftp"`,
				`hookrelay.toml:4: hook[0].events: empty`,
				`hookrelay.toml:7: server.listen: invalid address "nohost"`,
				`hookrelay.toml:8: server.bogus: unknown key`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadBytes("hookrelay.toml", []byte(tt.toml))
			if cfg != nil {
				t.Errorf("got a config with an error")
			}
			assertProblems(t, err, tt.want)
		})
	}
}

func TestLoadBytesDefaults(t *testing.T) {
	const src = `[[hook]]
name = "crm"
url = "https://crm.internal/webhooks"
events = ["*"]
`
	cfg, err := LoadBytes("/etc/hookrelay/hookrelay.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := ServerConfig{
		Listen:          DefaultListen,
		DataDir:         "/etc/hookrelay/hookrelay-data",
		MaxBody:         DefaultMaxBody,
		DedupWindow:     DefaultDedupWindow,
		ShutdownTimeout: DefaultShutdownTimeout,
	}
	if cfg.Server != want {
		t.Errorf("server:\n got  %+v\n want %+v", cfg.Server, want)
	}
	if len(cfg.Publishers) != 0 {
		t.Errorf("publishers: got %v, want none", cfg.Publishers)
	}
	if len(cfg.Hooks) != 1 {
		t.Fatalf("got %d hooks, want 1", len(cfg.Hooks))
	}
	h := cfg.Hooks[0]
	if !reflect.DeepEqual(h.Retry, DefaultRetry) {
		t.Errorf("retry: got %v, want %v", h.Retry, DefaultRetry)
	}
	if &h.Retry[0] == &DefaultRetry[0] {
		t.Errorf("retry shares DefaultRetry's array; want a copy")
	}
	if h.Timeout != DefaultHookTimeout {
		t.Errorf("timeout: got %v, want %v", h.Timeout, DefaultHookTimeout)
	}
	if h.Concurrency != DefaultConcurrency {
		t.Errorf("concurrency: got %d, want %d", h.Concurrency, DefaultConcurrency)
	}
	if h.Signature != SignatureNone || h.Secrets != nil || h.SigningKeys != nil {
		t.Errorf("signing: got %q %v %v, want none and no secrets", h.Signature, h.Secrets, h.SigningKeys)
	}
	if h.Auth != (AuthConfig{Type: AuthNone}) {
		t.Errorf("auth: got %+v, want type none", h.Auth)
	}
	if h.Headers != nil {
		t.Errorf("headers: got %v, want none", h.Headers)
	}

	// Without a path, relative paths stay relative to the working directory.
	cfg, err = LoadBytes("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.DataDir != "hookrelay-data" || cfg.Server.Listen != DefaultListen || len(cfg.Hooks) != 0 {
		t.Errorf("empty document: got %+v", cfg)
	}

	// A secret defaults the signature to standard-webhooks.
	cfg, err = LoadBytes("x.toml", []byte(src+`secret = "`+whsec(24)+`"`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Hooks[0]; got.Signature != SignatureStandardWebhooks || !reflect.DeepEqual(got.SigningKeys, [][]byte{key(24)}) {
		t.Errorf("with a secret: got signature %q keys %q", got.Signature, got.SigningKeys)
	}
}

func TestLoadFullConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "shop.token"), []byte("shop-token-from-a-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOOKRELAY_TEST_CRM_PASSWORD", "crm-pass")
	t.Setenv("HOOKRELAY_TEST_POS_TOKEN", "pos-token-0123456789")
	newKey, oldKey := whsec(32), whsec(24)

	src := `# every option
[server]
listen = ":8443"
data_dir = "data"
max_body = "512KiB"
dedup_window = "7d"
shutdown_timeout = "1m"

[[publisher]]
name = "pos"
token = "env:HOOKRELAY_TEST_POS_TOKEN"

[[publisher]]
name = "shop"
token = "file:secrets/shop.token"

[[hook]]
name = "crm"
url = "https://crm.internal:8443/webhooks?src=relay"
events = ["payment.*", "refund.initiated"]
secret = ["` + newKey + `", "` + oldKey + `"]
signature = "standard-webhooks"
auth = { type = "basic", username = "relay", password = "env:HOOKRELAY_TEST_CRM_PASSWORD" }
retry = []
timeout = "100ms"
concurrency = 256

[[hook]]
name = "erp"
url = "http://127.0.0.1:9002/in"
events = ["*"]
secret = "0123456789abcdef0123"
signature = "hmac-sha256"
headers = { "X-Api-Key" = "api-key", X-Tenant = "t1" }
retry = ["1s", "1d12h"]
timeout = "5m"
concurrency = 1

[hook.auth]
type = "bearer"
token = "erp-token"
`
	path := filepath.Join(dir, "hookrelay.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: path,
		Server: ServerConfig{
			Listen:          ":8443",
			DataDir:         filepath.Join(dir, "data"),
			MaxBody:         512 << 10,
			DedupWindow:     7 * 24 * time.Hour,
			ShutdownTimeout: time.Minute,
		},
		TLS: TLSConfig{Mode: TLSOff},
		Publishers: []PublisherConfig{
			{Name: "pos", Token: "pos-token-0123456789"},
			{Name: "shop", Token: "shop-token-from-a-file"},
		},
		Hooks: []HookConfig{
			{
				Name:        "crm",
				URL:         &url.URL{Scheme: "https", Host: "crm.internal:8443", Path: "/webhooks", RawQuery: "src=relay"},
				Events:      []string{"payment.*", "refund.initiated"},
				Secrets:     []string{newKey, oldKey},
				SigningKeys: [][]byte{key(32), key(24)},
				Signature:   SignatureStandardWebhooks,
				Auth:        AuthConfig{Type: AuthBasic, Username: "relay", Password: "crm-pass"},
				Retry:       []time.Duration{},
				Timeout:     100 * time.Millisecond,
				Concurrency: 256,
			},
			{
				Name:        "erp",
				URL:         &url.URL{Scheme: "http", Host: "127.0.0.1:9002", Path: "/in"},
				Events:      []string{"*"},
				Secrets:     []string{"0123456789abcdef0123"},
				SigningKeys: [][]byte{[]byte("0123456789abcdef0123")},
				Signature:   SignatureHMACSHA256,
				Auth:        AuthConfig{Type: AuthBearer, Token: "erp-token"},
				Headers:     map[string]string{"X-Api-Key": "api-key", "X-Tenant": "t1"},
				Retry:       []time.Duration{time.Second, 36 * time.Hour},
				Timeout:     5 * time.Minute,
				Concurrency: 1,
			},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
	}

	if h := cfg.Hook("erp"); h != &cfg.Hooks[1] {
		t.Errorf(`Hook("erp") = %p, want %p`, h, &cfg.Hooks[1])
	}
	if h := cfg.Hook("nope"); h != nil {
		t.Errorf(`Hook("nope") = %+v, want nil`, h)
	}
}

func TestLoadFileSecretRelativePath(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "pos.token")
	if err := os.WriteFile(tokenFile, []byte("pos-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := "[[publisher]]\nname = \"pos\"\ntoken = \"file:pos.token\"\n"
	cfg, err := LoadBytes(filepath.Join(dir, "hookrelay.toml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Publishers[0].Token; got != "pos-token-0123456789" {
		t.Errorf("token: got %q, want the file content without its newline", got)
	}

	// An empty file is an error, resolved against the same directory.
	if err := os.WriteFile(tokenFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadBytes(filepath.Join(dir, "hookrelay.toml"), []byte(src))
	assertProblems(t, err, []string{filepath.Join(dir, "hookrelay.toml") + ":3: publisher[0].token: secret file " + tokenFile + " is empty"})
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want an error matching fs.ErrNotExist", err)
	}
}

func TestLoadExampleConfig(t *testing.T) {
	t.Setenv("POS_TOKEN", "pos-token-0123456789")
	t.Setenv("CRM_PASSWORD", "crm-password")
	t.Setenv("INVENTORY_HMAC_SECRET", "inventory-hmac-secret")
	t.Setenv("INVENTORY_API_KEY", "inventory-api-key")
	t.Setenv("INVENTORY_TOKEN", "inventory-token")
	setExampleSourceEnv(t)

	cfg, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Server.DataDir; got != filepath.Join("..", "hookrelay-data") {
		t.Errorf("data_dir: got %q, want it next to the config file", got)
	}
	if len(cfg.Publishers) != 1 || cfg.Publishers[0].Token != "pos-token-0123456789" {
		t.Errorf("publishers: got %+v", cfg.Publishers)
	}
	crm, inv := cfg.Hook("crm"), cfg.Hook("inventory")
	if crm == nil || inv == nil || len(cfg.Hooks) != 4 {
		t.Fatalf("hooks: got %+v, want crm, inventory, partner-app and treasury", cfg.Hooks)
	}
	if crm.Signature != SignatureStandardWebhooks || crm.Auth != (AuthConfig{Type: AuthBasic, Username: "hookrelay", Password: "crm-password"}) {
		t.Errorf("crm: got signature %q auth %+v", crm.Signature, crm.Auth)
	}
	if inv.Signature != SignatureHMACSHA256 || inv.Auth != (AuthConfig{Type: AuthBearer, Token: "inventory-token"}) ||
		inv.Headers["X-Api-Key"] != "inventory-api-key" {
		t.Errorf("inventory: got signature %q auth %+v headers %v", inv.Signature, inv.Auth, inv.Headers)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  FieldError
		want string
	}{
		{"line and field", FieldError{"a.toml", 3, "server.listen", "bad"}, "a.toml:3: server.listen: bad"},
		{"no line", FieldError{"a.toml", 0, "hook[0].url", "bad"}, "a.toml: hook[0].url: bad"},
		{"no field", FieldError{"a.toml", 7, "", "invalid TOML: x"}, "a.toml:7: invalid TOML: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTOMLKeyLines(t *testing.T) {
	const src = `# comment [not.a.table]
title = "x" # trailing comment
text = """
fake = "not a key"
[not.a.table]
"""
raw = '''
other = 1 '''
a.b . "c.d" = 1

[server]
listen = ":8080"

[[hook]]
name = "one"
events = [
  "a", # first
  # a comment line
  "b",
]

[[hook]]
'quoted key' = 1
"esc\u0041ped" = 2
auth = { type = "basic",
  password = "p" }

[hook.headers]
"X-Api-Key" = "k"

[[hook.nested]]
x = 1

[[hook.nested]]
x = 2

[[list]]
[[list]]
inline = [{ a = 1 }, { b = [1, 2] }]
date = 1979-05-27 07:32:00Z
`
	kl := scanKeyLines(src)
	want := map[string]int{
		"title":                     2,
		"text":                      3,
		"raw":                       7,
		"a":                         9,
		"a.b":                       9,
		`a.b."c.d"`:                 9,
		"server":                    11,
		"server.listen":             12,
		"hook":                      14,
		"hook[0]":                   14,
		"hook[0].name":              15,
		"hook[0].events":            16,
		"hook[0].events[0]":         17,
		"hook[0].events[1]":         19,
		"hook[1]":                   22,
		`hook[1]."quoted key"`:      23,
		"hook[1].escAped":           24,
		"hook[1].auth":              25,
		"hook[1].auth.type":         25,
		"hook[1].auth.password":     26,
		"hook[1].headers":           28,
		"hook[1].headers.X-Api-Key": 29,
		"hook[1].nested[0]":         31,
		"hook[1].nested[0].x":       32,
		"hook[1].nested[1].x":       35,
		"list[1]":                   38,
		"list[1].inline[0].a":       39,
		"list[1].inline[1].b[1]":    39,
		"list[1].date":              40,
	}
	for field, line := range want {
		if got := kl[field]; got != line {
			t.Errorf("%s: got line %d, want %d", field, got, line)
		}
	}
	for _, notKey := range []string{"fake", "not", "other", "hook[0].events[2]"} {
		if n, ok := kl[notKey]; ok {
			t.Errorf("%s: recorded at line %d, but it is not a key", notKey, n)
		}
	}

	lookups := []struct {
		field string
		want  int
	}{
		{"hook[0].events[1]", 19},
		{"hook[0].retry[3]", 14},
		{"hook[1].headers.X-Other", 28},
		{`hook[1]."quoted key".x`, 23},
		{"nothing.here", 0},
	}
	for _, lk := range lookups {
		if got := kl.lineOf(lk.field); got != lk.want {
			t.Errorf("lineOf(%s): got %d, want %d", lk.field, got, lk.want)
		}
	}
}

func FuzzLoadBytes(f *testing.F) {
	// Seeds stay small: the fuzzer minimizes every new input it finds, and
	// minimizing a copy of the whole example file takes most of a short run.
	f.Add([]byte(`[server]
data_dir = "d"
dedup_window = "7d"
[[publisher]]
name = "p"
token = "env:T"
[[hook]]
name = "h"
url = "https://h/x"
events = ["a.*"]
secret = ["whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz"]
auth = { type = "bearer", token = "file:t" }
headers = { "X-K" = "v" }
retry = ["1s"]
timeout = 10
concurrency = 2
`))
	f.Add([]byte("[server]\nlisten = \":8080\"\nmax_body = \"2MiB\"\n"))
	f.Add([]byte("[[hook]]\nname = \"a\"\nurl = \"https://x/\"\nevents = [\"*\"]\nretry = [\n\"5s\",\n\"5x\"]\n[hook.auth]\ntype = \"basic\"\n"))
	f.Add([]byte("x = \"\"\"\na = 1\n\"\"\"\n[a.\"b.c\"]\nd = { e = [1, { f = 2 }] }\n"))
	f.Add([]byte("[[hook]]\n[[hook.x]]\n[hook.x.y]\n[[hook]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		scanKeyLines(string(data)) // must not panic on any input
		cfg, err := LoadBytes("fuzz.toml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without an error")
			}
			return
		}
		if cfg != nil {
			t.Fatal("config returned with an error")
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || len(ce.Errors) == 0 {
			t.Fatalf("got %T %v, want a non-empty *ConfigError", err, err)
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(ce.Errors) {
			t.Fatalf("%d problems printed on %d lines:\n%s", len(ce.Errors), len(lines), err)
		}
		for _, line := range lines {
			if !strings.HasPrefix(line, "fuzz.toml:") {
				t.Fatalf("line does not start with the file name: %q", line)
			}
		}
	})
}
