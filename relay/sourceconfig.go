package relay

import (
	"net/netip"
	"time"
)

// Providers a [[source]] can name. Each sets how requests are verified
// and where the event type and id are found.
const (
	ProviderTilled           = "tilled"
	ProviderUSAePay          = "usaepay"
	ProviderSFPY             = "sfpy"
	ProviderBankingCircle    = "bankingcircle"
	ProviderStandardWebhooks = "standard-webhooks"
	ProviderStripe           = "stripe"
	ProviderGitHub           = "github"
	ProviderHMAC             = "hmac"
	ProviderBasic            = "basic"
	ProviderToken            = "token"
	ProviderNone             = "none"
)

// Providers lists every provider name, in the order documentation shows
// them.
var Providers = []string{
	ProviderTilled, ProviderUSAePay, ProviderSFPY, ProviderBankingCircle,
	ProviderStandardWebhooks, ProviderStripe, ProviderGitHub,
	ProviderHMAC, ProviderBasic, ProviderToken, ProviderNone,
}

// Defaults for sources.
const (
	DefaultTolerance = 5 * time.Minute
)

// SourceConfig is one [[source]]: a provider that POSTs its webhooks to
// /in/{Name}. Only the fields its provider uses are set.
type SourceConfig struct {
	// Name is the last path segment of the source's URL and names it in
	// hooks' sources filters; stored events carry Source "source:"+Name.
	Name string
	// Provider is one of the Provider* constants.
	Provider string
	// Secrets are the verification secrets as resolved, newest first;
	// a request verified by any of them is accepted. Keys holds the key
	// each one gives: the secret's bytes as written, except for
	// standard-webhooks (the base64 after "whsec_") and bankingcircle
	// with KeyEncoding "base64".
	Secrets []string
	Keys    [][]byte
	// Tolerance is how far a signed timestamp may be from now, either
	// way (tilled, stripe, standard-webhooks).
	Tolerance time.Duration
	// AllowIPs, when not empty, refuses requests from any other peer
	// address.
	AllowIPs []netip.Prefix
	// Username and Password are the Basic credentials the provider must
	// send (basic; optional for usaepay).
	Username, Password string
	// Token is the token the provider must send (token).
	Token string
	// Header is where the signature is (hmac) or where the token is
	// (token; "" means "Authorization: Bearer <token>").
	Header string
	// Algorithm ("sha1", "sha256", "sha512"), Encoding ("hex",
	// "base64") and Prefix describe the signature header (hmac).
	Algorithm string
	Encoding  string
	Prefix    string
	// TypePath and IDPath are member names leading from the top of the
	// body to the event type and id (hmac, basic, token, none).
	TypePath []string
	IDPath   []string
	// KeyEncoding says how the secret gives the AES-256 key
	// (bankingcircle): "utf8" (its 32 bytes as written) or "base64".
	KeyEncoding string
}

// MatchRule is one payload filter of a hook: the member at Path must equal
// one of Values.
type MatchRule struct {
	// Path is the member names from the top of the delivered body, such
	// as ["data", "account_id"]. Arrays are not indexed.
	Path []string
	// Values are strings, int64s or bools. A string matches a JSON
	// string, an int64 a JSON number of the same value, a bool true or
	// false.
	Values []any
}

// Source returns the source named name, or nil if there is none.
func (c *Config) Source(name string) *SourceConfig {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i]
		}
	}
	return nil
}

// Event.Source prefixes of the two kinds of origin.
const (
	sourcePrefix    = "source:"
	publisherPrefix = "publisher:"
)
