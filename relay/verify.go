package relay

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the providers' signature schemes. Every check runs over
// the exact bytes received and compares in constant time; none of them
// decodes the body through reflection.

// More verification errors, beside ErrSignatureMissing, ErrSignatureStale
// and ErrSignatureMismatch.
var (
	ErrSignatureMalformed  = errors.New("signature header malformed")
	ErrCredentialsMissing  = errors.New("credentials missing")
	ErrCredentialsMismatch = errors.New("credentials do not match")
)

// Provider header names.
const (
	HeaderTilledSignature = "Tilled-Signature"
	HeaderStripeSignature = "Stripe-Signature"
	HeaderGitHubSignature = "X-Hub-Signature-256"
	HeaderGitHubEvent     = "X-GitHub-Event"
	HeaderGitHubDelivery  = "X-GitHub-Delivery"
	HeaderSFPYSignature   = "X-SFPY-Signature"
	HeaderSFPYSignature2  = "SFPY-Signature"
)

// millisThreshold tells a Tilled timestamp in milliseconds (13 digits
// today) from one in seconds (10 digits until the year 2286).
const millisThreshold = 1_000_000_000_000

// maxSignatures bounds the signatures read from one header.
const maxSignatures = 32

// timestampedSignature is a parsed "t=<ts>,v1=<hex>,v1=<hex>" header as
// Tilled and Stripe send it.
type timestampedSignature struct {
	ts   string // as sent: it is part of the signed payload
	at   time.Time
	sigs [][]byte // the decodable v1 values
}

// parseTimestampedSignature reads a Tilled or Stripe signature header.
// Elements other than t and v1 are ignored, as are v1 values that are not
// hex. With millis, a t of 1e12 or more is in milliseconds.
func parseTimestampedSignature(h string, millis bool) (timestampedSignature, error) {
	var s timestampedSignature
	if strings.TrimSpace(h) == "" {
		return s, ErrSignatureMissing
	}
	hasT := false
	for elem := range strings.SplitSeq(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(elem), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			if hasT {
				return s, ErrSignatureMalformed
			}
			hasT = true
			s.ts = v
		case "v1":
			if len(s.sigs) == maxSignatures {
				continue
			}
			if b, err := hex.DecodeString(v); err == nil && len(b) > 0 {
				s.sigs = append(s.sigs, b)
			}
		}
	}
	if !hasT || len(s.sigs) == 0 {
		return s, ErrSignatureMalformed
	}
	n, err := parseUnsigned(s.ts)
	if err != nil {
		return s, ErrSignatureMalformed
	}
	if millis && n >= millisThreshold {
		s.at = time.UnixMilli(n)
	} else {
		s.at = time.Unix(n, 0)
	}
	return s, nil
}

// parseUnsigned accepts only decimal digits: no sign, no spaces.
func parseUnsigned(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// verifyTimestamped checks a Tilled or Stripe signature header: a v1 must
// be the hex HMAC-SHA256 under one of keys of t + "." + body, and t must
// be within tolerance of now, either way.
func verifyTimestamped(keys [][]byte, header string, body []byte, now time.Time, tolerance time.Duration, millis bool) error {
	sig, err := parseTimestampedSignature(header, millis)
	if err != nil {
		return err
	}
	if d := now.Sub(sig.at); d > tolerance || d < -tolerance {
		return ErrSignatureStale
	}
	for _, key := range keys {
		want := timestampedMAC(key, sig.ts, body)
		for _, got := range sig.sigs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrSignatureMismatch
}

func timestampedMAC(key []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// SignTimestamped returns a Tilled- or Stripe-style signature header
// value: "t=<ts>,v1=<hex HMAC-SHA256(key, ts.body)>", with one v1 per key.
func SignTimestamped(keys [][]byte, ts int64, body []byte) string {
	t := strconv.FormatInt(ts, 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(t)
	for _, key := range keys {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(timestampedMAC(key, t, body)))
	}
	return b.String()
}

// hashFor returns the hash of a generic hmac source's algorithm.
func hashFor(algorithm string) func() hash.Hash {
	switch algorithm {
	case "sha1":
		return sha1.New
	case "sha512":
		return sha512.New
	}
	return sha256.New
}

// decodeSignature reads a signature header value: optional prefix (any
// case, such as "sha256="), then hex or base64 (padded or not).
func decodeSignature(v, prefix, encoding string) ([]byte, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, ErrSignatureMissing
	}
	if prefix != "" {
		if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
			return nil, ErrSignatureMalformed
		}
		v = v[len(prefix):]
	}
	var (
		b   []byte
		err error
	)
	if encoding == "base64" {
		if b, err = base64.StdEncoding.DecodeString(v); err != nil {
			b, err = base64.RawStdEncoding.DecodeString(v)
		}
	} else {
		b, err = hex.DecodeString(v)
	}
	if err != nil || len(b) == 0 {
		return nil, ErrSignatureMalformed
	}
	return b, nil
}

// verifyMAC checks that sig is the HMAC under one of keys of msg.
func verifyMAC(newHash func() hash.Hash, keys [][]byte, sig, msg []byte) error {
	for _, key := range keys {
		m := hmac.New(newHash, key)
		m.Write(msg)
		if hmac.Equal(sig, m.Sum(nil)) {
			return nil
		}
	}
	return ErrSignatureMismatch
}

// verifySFPY checks SFPY's signature: the hex HMAC-SHA512 of the top-level
// "data" member as the sender serialised it. SFPY's SDK signs its own
// compact encoding of that member, so the member's bytes are tried as
// received and then compacted (member order kept). body must be valid
// JSON.
func verifySFPY(keys [][]byte, header string, body []byte) error {
	sig, err := decodeSignature(header, "", "hex")
	if err != nil {
		return err
	}
	data, ok := objectMember(body, "data")
	if !ok {
		return ErrSignatureMismatch
	}
	if verifyMAC(sha512.New, keys, sig, data) == nil {
		return nil
	}
	var compact bytes.Buffer
	compact.Grow(len(data))
	if json.Compact(&compact, data) != nil || bytes.Equal(compact.Bytes(), data) {
		return ErrSignatureMismatch
	}
	return verifyMAC(sha512.New, keys, sig, compact.Bytes())
}

// equalSecret compares a received credential with the configured one in
// constant time, lengths included.
func equalSecret(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// checkBasic checks HTTP Basic credentials.
func checkBasic(authorization, user, pass string) error {
	scheme, cred, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return ErrCredentialsMissing
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return ErrCredentialsMissing
	}
	u, p, ok := strings.Cut(string(raw), ":")
	if !ok {
		return ErrCredentialsMissing
	}
	// Both are compared whatever the first gives, so timing says nothing.
	uOK, pOK := equalSecret(u, user), equalSecret(p, pass)
	if !uOK || !pOK {
		return ErrCredentialsMismatch
	}
	return nil
}

// checkToken checks a token sent as "Authorization: Bearer <token>" when
// header is "", else as the whole value of header.
func checkToken(value, header, token string) error {
	got := strings.TrimSpace(value)
	if header == "" {
		scheme, t, ok := strings.Cut(got, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ErrCredentialsMissing
		}
		got = strings.TrimSpace(t)
	}
	if got == "" {
		return ErrCredentialsMissing
	}
	if !equalSecret(got, token) {
		return ErrCredentialsMismatch
	}
	return nil
}

// Event type and id.

// inboundEvent is one event found in a verified request.
type inboundEvent struct {
	typ  string
	id   string // the provider's event id; "" when it gave none
	body []byte // delivered byte for byte
}

var sha256Hash = hashFor("sha256")

// Where the named providers keep the event type and id.
var (
	pathType        = []string{"type"}
	pathID          = []string{"id"}
	pathEventType   = []string{"event_type"}
	pathEventID     = []string{"event_id"}
	pathSFPYType    = []string{"data", "type"}
	pathSFPYEventID = []string{"data", "data", "event_id"}
	pathSFPYToken   = []string{"data", "token"}
)

// verifyBody checks a signature header that carries the HMAC of the body.
func verifyBody(newHash func() hash.Hash, keys [][]byte, header, prefix, encoding string, body []byte) error {
	sig, err := decodeSignature(header, prefix, encoding)
	if err != nil {
		return err
	}
	return verifyMAC(newHash, keys, sig, body)
}

// eventType reads the event type at path of the JSON object doc.
func eventType(doc []byte, path []string) (string, error) {
	raw, ok := lookupPath(doc, path)
	if !ok {
		return "", fmt.Errorf("no event type: %q is missing", strings.Join(path, "."))
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", fmt.Errorf("event type %q is not a string", strings.Join(path, "."))
	}
	return s, validInboundType(s)
}

// eventID reads the event id at path of the JSON object doc: a string or
// a number's text. ok is false when there is none.
func eventID(doc []byte, path []string) (string, bool) {
	raw, ok := lookupPath(doc, path)
	if !ok {
		return "", false
	}
	s, ok := scalarText(raw)
	return s, ok && s != ""
}

// validInboundType accepts what providers send as event types: 1 to 200
// bytes of UTF-8 text without control characters.
func validInboundType(t string) error {
	switch {
	case t == "":
		return errors.New("event type is empty")
	case len(t) > maxTypeLen:
		return fmt.Errorf("event type is longer than %d bytes", maxTypeLen)
	case !utf8.ValidString(t) || hasControl(t) || strings.ContainsRune(t, '\t'):
		return errors.New("event type has control characters or invalid UTF-8")
	}
	return nil
}
