package relay

import (
	"crypto/x509"
	"net/url"
	"time"
)

// Config is a loaded, validated relay configuration. Every field holds its
// final value: defaults are applied and secrets ("env:NAME", "file:/path")
// are resolved. Values of this type are produced by Load and LoadBytes and
// are not modified afterwards; the relay treats a Config as read-only.
type Config struct {
	// Path is the file the configuration was read from, or the name it
	// was loaded under (DemoConfigName for the embedded default).
	Path string

	Server     ServerConfig
	TLS        TLSConfig
	Publishers []PublisherConfig
	Hooks      []HookConfig
	// Sources are the providers that POST to /in/{name}.
	Sources []SourceConfig
}

// ServerConfig is the [server] table.
type ServerConfig struct {
	// Listen is the host:port of the HTTP listener for publishers,
	// sources and health checks.
	Listen string
	// DataDir holds the bbolt database. A relative path in a file is
	// resolved against the directory of that file.
	DataDir string
	// MaxBody is the largest request body accepted, in bytes.
	MaxBody int64
	// DedupWindow is how long a (publisher, id) or (source, provider
	// event id) pair is remembered.
	DedupWindow time.Duration
	// ShutdownTimeout bounds how long a stop waits for in-flight requests
	// and deliveries before it gives up on them. What is given up on is
	// retried after the next start: nothing is lost.
	ShutdownTimeout time.Duration
}

// PublisherConfig is one [[publisher]]: a local application allowed to
// publish events through POST /v1/events.
type PublisherConfig struct {
	Name  string
	Token string
}

// Signature schemes for outbound deliveries.
const (
	SignatureStandardWebhooks = "standard-webhooks"
	SignatureHMACSHA256       = "hmac-sha256"
	SignatureNone             = "none"
	// SignatureTilled sends tilled-signature: t=<unix ms>,v1=<hex
	// HMAC-SHA256(secret, t.body)>, one v1 per secret.
	SignatureTilled = "tilled"
	// SignatureStripe sends Stripe-Signature: t=<unix s>,v1=<hex
	// HMAC-SHA256(secret, t.body)>, one v1 per secret.
	SignatureStripe = "stripe"
)

// Outbound authentication types.
const (
	AuthNone   = "none"
	AuthBasic  = "basic"
	AuthBearer = "bearer"
)

// HookConfig is one [[hook]]: a subscriber that receives deliveries.
type HookConfig struct {
	// Name identifies the hook; queued deliveries are stored under it.
	Name string
	// URL is where deliveries are POSTed (http or https).
	URL *url.URL
	// Events are the event-type globs this hook subscribes to; "*" in a
	// glob matches any run of characters, "*" alone matches every type.
	Events []string
	// Secrets are the signing secrets, newest first. For
	// standard-webhooks each is a "whsec_" + base64 string and
	// SigningKeys holds the decoded keys; for hmac-sha256 there is one
	// secret and its key is the secret's bytes as written; for tilled and
	// stripe each key is its secret's bytes as written.
	Secrets     []string
	SigningKeys [][]byte
	// Signature is one of the Signature* constants.
	Signature string
	Auth      AuthConfig
	// Headers are added to every delivery (after resolution of secrets).
	Headers map[string]string
	// Retry holds the delays before each retry; len(Retry)+1 attempts in
	// all, after which the delivery is dead-lettered.
	Retry []time.Duration
	// Timeout bounds one whole attempt: connect, TLS, request and the
	// capped read of the response.
	Timeout time.Duration
	// Concurrency is the most attempts in flight to this hook at once.
	Concurrency int
	// Sources limits the hook to events from these origins, written as
	// Event.Source values ("source:tilled", "publisher:pos"); empty means
	// every source and publisher.
	Sources []string
	// Match holds payload filters: an event is delivered to the hook only
	// when every rule holds for its delivered body.
	Match []MatchRule
	// ForwardHeaders are the canonical names of a source's request
	// headers sent on with this hook's deliveries.
	ForwardHeaders []string
}

// AuthConfig is a hook's outbound authentication.
type AuthConfig struct {
	Type     string // one of the Auth* constants
	Username string // basic
	Password string // basic
	Token    string // bearer
}

// Defaults applied where the file is silent.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDataDir         = "./hookrelay-data"
	DefaultMaxBody         = 1 << 20
	DefaultDedupWindow     = 72 * time.Hour
	DefaultShutdownTimeout = 30 * time.Second
	DefaultHookTimeout     = 10 * time.Second
	DefaultConcurrency     = 8
)

// DefaultRetry is the retry schedule used when a hook sets none: about 27
// hours in all.
var DefaultRetry = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// TLS modes: where the public HTTPS listener gets its certificate.
const (
	TLSOff   = "off"   // no HTTPS listener
	TLSACME  = "acme"  // obtained and renewed from an ACME CA
	TLSFiles = "files" // read from cert_file and key_file
)

// TLSConfig is the [tls] table. With Mode TLSOff the other fields are
// empty and the relay serves plain HTTP on Server.Listen only.
type TLSConfig struct {
	// Mode is one of the TLS* constants.
	Mode string
	// Listen is the host:port of the public HTTPS listener, which serves
	// the whole relay API (and TLS-ALPN-01 challenges in acme mode).
	Listen string
	// HTTPListen is the host:port of the plain HTTP listener that serves
	// HTTP-01 challenges, /healthz and a redirect to HTTPS for everything
	// else; "" means none (acme mode then relies on TLS-ALPN-01).
	HTTPListen string

	// Domains are the names certificates are managed for (acme), in
	// lowercase, one certificate each.
	Domains []string
	// Email is the ACME account contact; "" for none.
	Email string
	// CA is the ACME directory URL.
	CA string
	// CARoots, when not empty, are the only roots trusted for the
	// connection to CA (a private ACME CA); otherwise the system roots.
	CARoots []*x509.Certificate

	// CertFile and KeyFile are the PEM files of files mode: the
	// certificate chain, leaf first, and its private key. A relative
	// path in a config file is resolved against its directory.
	CertFile string
	KeyFile  string
}

// Defaults of the [tls] table.
const (
	DefaultTLSListen  = ":443"
	DefaultHTTPListen = ":80"
	// DefaultACMECA is Let's Encrypt's production directory.
	DefaultACMECA = "https://acme-v02.api.letsencrypt.org/directory"
)
