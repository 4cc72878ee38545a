package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names (https://www.standardwebhooks.com).
const (
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
	// HeaderSignature carries the hex HMAC-SHA256 of the body for the
	// hmac-sha256 scheme.
	HeaderSignature = "X-Signature"
)

// SignStandard returns the Standard Webhooks signature header value for one
// message: "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" for each key,
// separated by spaces.
func SignStandard(keys [][]byte, id string, ts int64, body []byte) string {
	var b strings.Builder
	tsStr := strconv.FormatInt(ts, 10)
	for i, key := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(standardMAC(key, id, tsStr, body)))
	}
	return b.String()
}

func standardMAC(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// SignHMACSHA256 returns the lowercase hex HMAC-SHA256 of body.
func SignHMACSHA256(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Errors returned by VerifyStandard.
var (
	ErrSignatureMissing  = errors.New("signature headers missing")
	ErrSignatureStale    = errors.New("signature timestamp outside tolerance")
	ErrSignatureMismatch = errors.New("no matching signature")
)

// VerifyStandard checks a Standard Webhooks signed message against any of
// keys: headers webhook-id, webhook-timestamp (seconds) and
// webhook-signature (space-separated "v1,<base64>" entries; other
// versions are ignored). The timestamp must be within tolerance of now,
// in both directions. Comparison is constant-time.
func VerifyStandard(keys [][]byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, tsStr, sigs := h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp), h.Get(HeaderWebhookSignature)
	if id == "" || tsStr == "" || sigs == "" {
		return ErrSignatureMissing
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return ErrSignatureMissing
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrSignatureStale
	}
	for _, key := range keys {
		want := standardMAC(key, id, tsStr, body)
		for _, sig := range strings.Fields(sigs) {
			v, enc, ok := strings.Cut(sig, ",")
			if !ok || v != "v1" {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				continue
			}
			if subtle.ConstantTimeCompare(got, want) == 1 {
				return nil
			}
		}
	}
	return ErrSignatureMismatch
}

// DecodeStandardSecret decodes a "whsec_" + base64 secret into its key.
func DecodeStandardSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New(`secret must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New(`secret after "whsec_" is not valid base64`)
	}
	return key, nil
}
