package relay

import (
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadProviderStyleSignatures(t *testing.T) {
	const hook = "[[hook]]\nname = \"h\"\nurl = \"https://h.internal/x\"\nevents = [\"*\"]\n"
	cfg, err := LoadBytes("x.toml", []byte(hook+`signature = "tilled"
secret = ["tilled-secret-0123456789", "older-secret-0123456789"]
`))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Hooks[0]
	if h.Signature != SignatureTilled || !reflect.DeepEqual(h.SigningKeys, [][]byte{[]byte("tilled-secret-0123456789"), []byte("older-secret-0123456789")}) {
		t.Errorf("tilled: signature %q keys %q", h.Signature, h.SigningKeys)
	}
	// A stripe-style secret is the key as written, whsec_ prefix and all.
	cfg, err = LoadBytes("x.toml", []byte(hook+"signature = \"stripe\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Hooks[0]; h.Signature != SignatureStripe || string(h.SigningKeys[0]) != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
		t.Errorf("stripe: signature %q keys %q", h.Signature, h.SigningKeys)
	}

	_, err = LoadBytes("hookrelay.toml", []byte(hook+`signature = "stripe"
secret = ["whsec_long-enough-secret", "short"]
headers = { "Stripe-Signature" = "x", "tilled-signature" = "y" }
`))
	assertProblems(t, err, []string{
		`hookrelay.toml:6: hook[0].secret[1]: stripe secret is 5 bytes long: use at least 16`,
		`hookrelay.toml:7: hook[0].headers.Stripe-Signature: reserved header: hookrelay sets Stripe-Signature to sign deliveries`,
		`hookrelay.toml:7: hook[0].headers.tilled-signature: reserved header`,
	})
	_, err = LoadBytes("hookrelay.toml", []byte(hook+"signature = \"tilled\"\n"))
	assertProblems(t, err, []string{`hookrelay.toml:5: hook[0].signature: signature "tilled" needs a secret`})
}

func TestLoadSources(t *testing.T) {
	t.Setenv("HOOKRELAY_TEST_TILLED", "tilled-endpoint-secret")
	src := `[server]
listen = "0.0.0.0:8443"
dedup_window = "24h"

[[publisher]]
name = "pos"
token = "pos-token-0123456789"

[[source]]
name = "tilled"
provider = "tilled"
secret = "env:HOOKRELAY_TEST_TILLED"
allow_ips = ["203.0.113.0/24", "2001:db8::1", "::ffff:198.51.100.0/120"]

[[source]]
name = "usaepay"
provider = "usaepay"
secret = ["usaepay-new", "usaepay-old"]
username = "usaepay"
password = "basic-pass"

[[source]]
name = "sfpy"
provider = "sfpy"
secret = "sfpy-secret"

[[source]]
name = "bc"
provider = "bankingcircle"
secret = "` + bcKey + `"

[[source]]
name = "bc64"
provider = "bankingcircle"
secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
key_encoding = "base64"

[[source]]
name = "saas"
provider = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
tolerance = "2m"

[[source]]
name = "stripe"
provider = "stripe"
secret = "whsec_stripe-endpoint-secret"

[[source]]
name = "gh"
provider = "github"
secret = "It's a Secret to Everybody"

[[source]]
name = "other"
provider = "hmac"
secret = "generic-secret"
header = "X-Hub-Signature"
algorithm = "sha1"
encoding = "base64"
prefix = "sha1="
type_path = "meta.event"
id_path = "meta.delivery_id"

[[source]]
name = "forms"
provider = "basic"
username = "forms"
password = "forms-password"

[[source]]
name = "crm"
provider = "token"
token = "crm-token-0123456789"
header = "X-Webhook-Token"

[[source]]
name = "lan"
provider = "none"
allow_ips = ["10.0.0.0/8"]

[[hook]]
name = "acct"
url = "https://acct.internal/in"
events = ["charge.*", "IncomingPaymentProcessed"]
sources = ["tilled", "source:bc", "publisher:pos"]
match = { account_id = ["acct_1", "acct_2"], data.object = { livemode = true }, "payload.amount" = 12 }
`
	cfg, err := LoadBytes("hookrelay.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sources) != 12 {
		t.Fatalf("%d sources", len(cfg.Sources))
	}
	want := []SourceConfig{
		{Name: "tilled", Provider: "tilled", Secrets: []string{"tilled-endpoint-secret"}, Keys: [][]byte{[]byte("tilled-endpoint-secret")},
			Tolerance: DefaultTolerance, AllowIPs: []netip.Prefix{
				netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("198.51.100.0/24")}},
		{Name: "usaepay", Provider: "usaepay", Secrets: []string{"usaepay-new", "usaepay-old"}, Keys: [][]byte{[]byte("usaepay-new"), []byte("usaepay-old")},
			Username: "usaepay", Password: "basic-pass"},
		{Name: "sfpy", Provider: "sfpy", Secrets: []string{"sfpy-secret"}, Keys: [][]byte{[]byte("sfpy-secret")}},
		{Name: "bc", Provider: "bankingcircle", Secrets: []string{bcKey}, Keys: [][]byte{[]byte(bcKey)}, KeyEncoding: "utf8"},
		{Name: "bc64", Provider: "bankingcircle", Secrets: []string{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
			Keys: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}, KeyEncoding: "base64"},
		{Name: "saas", Provider: "standard-webhooks", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
			Keys: [][]byte{mustStandardKey(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}, Tolerance: 2 * time.Minute},
		{Name: "stripe", Provider: "stripe", Secrets: []string{"whsec_stripe-endpoint-secret"}, Keys: [][]byte{[]byte("whsec_stripe-endpoint-secret")}, Tolerance: DefaultTolerance},
		{Name: "gh", Provider: "github", Secrets: []string{"It's a Secret to Everybody"}, Keys: [][]byte{[]byte("It's a Secret to Everybody")}},
		{Name: "other", Provider: "hmac", Secrets: []string{"generic-secret"}, Keys: [][]byte{[]byte("generic-secret")},
			Header: "X-Hub-Signature", Algorithm: "sha1", Encoding: "base64", Prefix: "sha1=",
			TypePath: []string{"meta", "event"}, IDPath: []string{"meta", "delivery_id"}},
		{Name: "forms", Provider: "basic", Username: "forms", Password: "forms-password", TypePath: []string{"type"}, IDPath: []string{"id"}},
		{Name: "crm", Provider: "token", Token: "crm-token-0123456789", Header: "X-Webhook-Token", TypePath: []string{"type"}, IDPath: []string{"id"}},
		{Name: "lan", Provider: "none", AllowIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, TypePath: []string{"type"}, IDPath: []string{"id"}},
	}
	for i := range want {
		if !reflect.DeepEqual(cfg.Sources[i], want[i]) {
			t.Errorf("source %d:\n got  %+v\n want %+v", i, cfg.Sources[i], want[i])
		}
	}
	if s := cfg.Source("gh"); s != &cfg.Sources[7] {
		t.Errorf(`Source("gh") = %p`, s)
	}
	if cfg.Source("nope") != nil {
		t.Error(`Source("nope") found something`)
	}
	h := cfg.Hooks[0]
	if want := []string{"source:tilled", "source:bc", "publisher:pos"}; !reflect.DeepEqual(h.Sources, want) {
		t.Errorf("hook sources = %q, want %q", h.Sources, want)
	}
	wantMatch := []MatchRule{
		{Path: []string{"account_id"}, Values: []any{"acct_1", "acct_2"}},
		{Path: []string{"data", "object", "livemode"}, Values: []any{true}},
		{Path: []string{"payload", "amount"}, Values: []any{int64(12)}},
	}
	if !reflect.DeepEqual(h.Match, wantMatch) {
		t.Errorf("match = %+v, want %+v", h.Match, wantMatch)
	}
}

func mustStandardKey(t *testing.T, s string) []byte {
	t.Helper()
	k, err := DecodeStandardSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadSourceErrors(t *testing.T) {
	const unset = "HOOKRELAY_TEST_UNSET_SOURCE_SECRET"
	t.Setenv(unset, "")
	os.Unsetenv(unset)
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"single table", `[source]
name = "x"
`, []string{`hookrelay.toml:1: source: expected an array of tables: write [[source]] (double brackets)`}},
		{"no provider", `[[source]]
name = "tilled"
secret = "x"
`, []string{`hookrelay.toml:1: source[0].provider: required: "tilled", "usaepay", "sfpy", "bankingcircle", "standard-webhooks", "stripe", "github", "hmac", "basic", "token" or "none"`}},
		{"unknown provider", `[[source]]
name = "tilled"
provider = "tiled"
secret = "x"
bogus = 1
`, []string{
			`hookrelay.toml:3: source[0].provider: unknown provider "tiled" (did you mean "tilled"?)`,
			`hookrelay.toml:5: source[0].bogus: unknown key`,
		}},
		{"missing secret and bad name", `[[source]]
name = "Tilled"
provider = "tilled"
`, []string{
			`hookrelay.toml:1: source[0].secret: required: the webhook signing secret`,
			`hookrelay.toml:2: source[0].name: invalid name "Tilled"`,
		}},
		{"secret from an unset variable", `[[source]]
name = "tilled"
provider = "tilled"
secret = "env:` + unset + `"
`, []string{`hookrelay.toml:4: source[0].secret: environment variable ` + unset + ` is not set`}},
		{"keys of other providers and unknown keys", `[[source]]
name = "tilled"
provider = "tilled"
secret = "x"
header = "X-Signature"
key_encoding = "base64"
tolerence = "1m"
`, []string{
			`hookrelay.toml:5: source[0].header: not used by provider "tilled": it takes secret, tolerance, allow_ips`,
			`hookrelay.toml:6: source[0].key_encoding: not used by provider "tilled"`,
			`hookrelay.toml:7: source[0].tolerence: unknown key (did you mean "tolerance"?): valid keys here are name, provider, secret, tolerance, allow_ips`,
		}},
		{"duplicate names", `[[source]]
name = "gh"
provider = "github"
secret = "x"

[[source]]
name = "gh"
provider = "github"
secret = "y"
`, []string{`hookrelay.toml:7: source[1].name: duplicate source name "gh" (also source[0])`}},
		{"tolerance", `[server]
dedup_window = "2m"

[[source]]
name = "a"
provider = "stripe"
secret = "whsec_x"
tolerance = "3m"

[[source]]
name = "b"
provider = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
tolerance = "2h"
`, []string{
			`hookrelay.toml:8: source[0].tolerance: tolerance 3m is longer than server.dedup_window 2m`,
			`hookrelay.toml:14: source[1].tolerance: duration "2h" is out of range: use 1s to 1h`,
		}},
		{"provider secrets", `[[source]]
name = "saas"
provider = "standard-webhooks"
secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[source]]
name = "stripe"
provider = "stripe"
secret = ["whsec_ok", "sk_live_123"]

[[source]]
name = "bc"
provider = "bankingcircle"
secret = "too-short"

[[source]]
name = "bc64"
provider = "bankingcircle"
secret = "MDEy"
key_encoding = "base64"

[[source]]
name = "bc-enc"
provider = "bankingcircle"
secret = "` + bcKey + `"
key_encoding = "hex"
`, []string{
			`hookrelay.toml:4: source[0].secret: secret does not start with "whsec_"`,
			`hookrelay.toml:9: source[1].secret[1]: secret does not start with "whsec_": use the endpoint's signing secret from the Stripe dashboard (not an API key)`,
			`hookrelay.toml:14: source[2].secret: secret is 9 bytes long: the Banking Circle key is 32 characters; for a base64 key set key_encoding = "base64"`,
			`hookrelay.toml:19: source[3].secret: secret decodes to 3 bytes: AES-256 needs 32`,
			`hookrelay.toml:26: source[4].key_encoding: unknown key_encoding "hex": use "utf8", "base64"`,
		}},
		{"hmac", `[[source]]
name = "a"
provider = "hmac"
secret = "x"
algorithm = "md5"
encoding = "base32"
prefix = ""
type_path = "data..type"
id_path = 5

[[source]]
name = "b"
provider = "hmac"
secret = "x"
header = "X Sig"
`, []string{
			`hookrelay.toml:1: source[0].header: required: the request header that carries the signature`,
			`hookrelay.toml:5: source[0].algorithm: unknown algorithm "md5": use "sha1", "sha256", "sha512"`,
			`hookrelay.toml:6: source[0].encoding: unknown encoding "base32": use "hex", "base64"`,
			`hookrelay.toml:7: source[0].prefix: invalid prefix`,
			`hookrelay.toml:8: source[0].type_path: invalid path "data..type"`,
			`hookrelay.toml:9: source[0].id_path: expected a dotted path of JSON member names such as "data.type", got integer 5`,
			`hookrelay.toml:15: source[1].header: invalid header name "X Sig"`,
		}},
		{"credentials", `[[source]]
name = "a"
provider = "basic"
username = "u"

[[source]]
name = "b"
provider = "usaepay"
secret = "x"
password = "p"

[[source]]
name = "c"
provider = "token"
token = "short"

[[source]]
name = "d"
provider = "token"
`, []string{
			`hookrelay.toml:1: source[0].password: required with username`,
			`hookrelay.toml:6: source[1].username: required with password`,
			`hookrelay.toml:15: source[2].token: token is 5 characters long: use at least 16`,
			`hookrelay.toml:17: source[3].token: required: the token the provider sends`,
		}},
		{"none on a public listener", `[server]
listen = ":8080"

[[source]]
name = "open"
provider = "none"
`, []string{`hookrelay.toml:6: source[0].provider: provider "none" accepts anyone's requests: set allow_ips to the provider's addresses, or listen on a loopback address only (server.listen is ":8080")`}},
		{"allow_ips", `[[source]]
name = "a"
provider = "github"
secret = "x"
allow_ips = ["203.0.113.0/33", "example.com", 7]

[[source]]
name = "b"
provider = "github"
secret = "x"
allow_ips = []
`, []string{
			`hookrelay.toml:5: source[0].allow_ips[0]: invalid address "203.0.113.0/33"`,
			`hookrelay.toml:5: source[0].allow_ips[1]: invalid address "example.com"`,
			`hookrelay.toml:5: source[0].allow_ips[2]: expected an address or CIDR prefix string`,
			`hookrelay.toml:11: source[1].allow_ips: empty: list the provider's addresses`,
		}},
		{"hook filters", `[[publisher]]
name = "pos"
token = "pos-token-0123456789"

[[source]]
name = "tilled"
provider = "tilled"
secret = "x"

[[hook]]
name = "a"
url = "https://a.internal/"
events = ["*"]
sources = ["tilled", "sfpy", "publisher:shop", "source:tilled"]
match = { "account_id" = [], "amount" = 1.5, "a..b" = "x", data = { id = "x" }, "data.id" = "y", empty = {} }

[[hook]]
name = "b"
url = "https://b.internal/"
events = ["*"]
sources = []
match = {}
`, []string{
			`hookrelay.toml:14: hook[0].sources[1]: no [[source]] named "sfpy": name a [[source]] ("tilled") or a publisher as "publisher:NAME" ("publisher:pos")`,
			`hookrelay.toml:14: hook[0].sources[2]: no [[publisher]] named "shop"`,
			`hookrelay.toml:14: hook[0].sources[3]: duplicate source "source:tilled" (also hook[0].sources[0])`,
			`hookrelay.toml:15: hook[0].match."a..b": invalid path "a..b"`,
			`hookrelay.toml:15: hook[0].match.account_id: empty list: an event would never match`,
			`hookrelay.toml:15: hook[0].match.amount: expected a string, integer or boolean, or a list of them`,
			`hookrelay.toml:15: hook[0].match."data.id": path "data.id" is also written at hook[0].match.data.id`,
			`hookrelay.toml:15: hook[0].match.empty: empty table`,
			`hookrelay.toml:21: hook[1].sources: empty: list source names`,
			`hookrelay.toml:22: hook[1].match: empty: add a rule`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadBytes("hookrelay.toml", []byte(tt.toml))
			if cfg != nil {
				t.Error("got a config with an error")
			}
			assertProblems(t, err, tt.want)
		})
	}
}

func TestLoadNoneOnLoopback(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:8080", "127.0.0.2:80"} {
		src := "[server]\nlisten = \"" + listen + "\"\n[[source]]\nname = \"local\"\nprovider = \"none\"\n"
		if _, err := LoadBytes("x.toml", []byte(src)); err != nil {
			t.Errorf("listen %s: %v", listen, err)
		}
	}
}

// setExampleSourceEnv sets the secrets config.example.toml's sources and
// their hooks read.
func setExampleSourceEnv(t *testing.T) {
	for k, v := range map[string]string{
		"TILLED_WEBHOOK_SECRET":  "tilled-secret",
		"USAEPAY_WEBHOOK_SECRET": "usaepay-secret",
		"USAEPAY_BASIC_PASSWORD": "usaepay-password",
		"SFPY_WEBHOOK_SECRET":    "sfpy-secret",
		"BANKINGCIRCLE_KEY":      bcKey,
		"BILLING_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"STRIPE_WEBHOOK_SECRET":  "whsec_stripe-secret",
		"GITHUB_WEBHOOK_SECRET":  "github-secret",
		"PARTNER_WEBHOOK_SECRET": "partner-secret",
		"FORMS_WEBHOOK_TOKEN":    "forms-token-0123456789",
		"PARTNER_APP_SECRET":     "partner-app-secret-0123",
		"POS_TOKEN":              "pos-token-0123456789",
		"CRM_PASSWORD":           "crm-password",
		"INVENTORY_HMAC_SECRET":  "inventory-hmac-secret",
		"INVENTORY_API_KEY":      "inventory-api-key",
		"INVENTORY_TOKEN":        "inventory-token",
	} {
		t.Setenv(k, v)
	}
}

func TestLoadExampleSources(t *testing.T) {
	setExampleSourceEnv(t)
	cfg, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	var providers []string
	for _, s := range cfg.Sources {
		providers = append(providers, s.Provider)
	}
	want := []string{"tilled", "usaepay", "sfpy", "bankingcircle", "standard-webhooks", "stripe", "github", "hmac", "token", "none"}
	if !reflect.DeepEqual(providers, want) {
		t.Errorf("providers %q, want %q", providers, want)
	}
	if h := cfg.Hook("partner-app"); h == nil || h.Signature != SignatureTilled || len(h.Match) != 1 || !reflect.DeepEqual(h.Sources, []string{"source:tilled"}) {
		t.Errorf("partner-app: %+v", h)
	}
	if h := cfg.Hook("crm"); h == nil || !reflect.DeepEqual(h.Sources, []string{"source:billing", "publisher:pos"}) {
		t.Errorf("crm: %+v", h)
	}
}

func TestLoadForwardHeaders(t *testing.T) {
	head := `[server]
listen = "127.0.0.1:8080"

[[source]]
name = "tilled"
provider = "tilled"
secret = "tilled-endpoint-secret"

[[hook]]
name = "a"
url = "https://a.internal/"
events = ["*"]
`
	cfg, err := LoadBytes("hookrelay.toml", []byte(head+`secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
forward_headers = ["tilled-signature", "X-Request-Id", "x-tilled-account"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Hooks[0].ForwardHeaders, []string{"Tilled-Signature", "X-Request-Id", "X-Tilled-Account"}; !slices.Equal(got, want) {
		t.Fatalf("forward headers = %q, want %q", got, want)
	}

	_, err = LoadBytes("hookrelay.toml", []byte(head+`signature = "tilled"
secret = "outbound-secret-0123456789"
headers = { X-Tenant = "shop" }
forward_headers = ["Tilled-Signature", "x-tenant", "Authorization", "Connection", "Content-Length", "webhook-id", "bad name", 7, "X-A", "x-a"]
`))
	want := []string{
		`hookrelay.toml:16: hook[0].forward_headers[0]: hookrelay sets Tilled-Signature on this hook's deliveries`,
		`hookrelay.toml:16: hook[0].forward_headers[1]: hookrelay sets X-Tenant on this hook's deliveries`,
		`hookrelay.toml:16: hook[0].forward_headers[2]: Authorization carries the sender's credentials`,
		`hookrelay.toml:16: hook[0].forward_headers[3]: Connection describes the request`,
		`hookrelay.toml:16: hook[0].forward_headers[4]: Content-Length describes the request`,
		`hookrelay.toml:16: hook[0].forward_headers[5]: hookrelay sets the webhook-* headers`,
		`hookrelay.toml:16: hook[0].forward_headers[6]: invalid header name "bad name"`,
		`hookrelay.toml:16: hook[0].forward_headers[7]: expected a header name, got`,
		`hookrelay.toml:16: hook[0].forward_headers[9]: duplicate header X-A`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d = %q\nwant prefix %q", i, lines[i], w)
		}
	}
}
