package relay

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Banking Circle sends each notification message encrypted with AES-256-GCM
// under a pre-shared key, with no associated data. The body is the
// ciphertext; the nonce, the authentication tag (sent apart from the
// ciphertext) and a SHA-256 checksum of the plaintext re-encoded as UTF-8
// are in headers, each base64.
const (
	HeaderBCNonce               = "Nonce"
	HeaderBCAuthenticationTag   = "AuthenticationTag"
	HeaderBCChecksum            = "Checksum"
	HeaderBCSubscriptionVersion = "SubscriptionVersion"
)

// Errors of the Banking Circle path. None of them carries plaintext.
var (
	ErrDecrypt         = errors.New("message does not decrypt and authenticate under the key")
	ErrChecksum        = errors.New("checksum does not match the decrypted message")
	errBCHeaderMissing = errors.New("Nonce, AuthenticationTag or Checksum header missing")
)

const (
	gcmNonceLen = 12
	gcmTagLen   = 16
)

// bcHeaders are the decoded crypto headers of one message.
type bcHeaders struct {
	nonce, tag, checksum []byte
}

// parseBCHeaders decodes and checks the lengths of the crypto headers.
func parseBCHeaders(h http.Header) (bcHeaders, error) {
	n, t, c := h.Get(HeaderBCNonce), h.Get(HeaderBCAuthenticationTag), h.Get(HeaderBCChecksum)
	if n == "" || t == "" || c == "" {
		return bcHeaders{}, errBCHeaderMissing
	}
	var out bcHeaders
	var err error
	if out.nonce, err = decodeB64(n, gcmNonceLen); err != nil {
		return bcHeaders{}, fmt.Errorf("%w: Nonce: %v", ErrSignatureMalformed, err)
	}
	if out.tag, err = decodeB64(t, gcmTagLen); err != nil {
		return bcHeaders{}, fmt.Errorf("%w: AuthenticationTag: %v", ErrSignatureMalformed, err)
	}
	if out.checksum, err = decodeB64(c, sha256.Size); err != nil {
		return bcHeaders{}, fmt.Errorf("%w: Checksum: %v", ErrSignatureMalformed, err)
	}
	return out, nil
}

// decodeB64 decodes standard base64 (padded or not) of exactly n bytes.
func decodeB64(s string, n int) ([]byte, error) {
	s = strings.TrimSpace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return nil, errors.New("not base64")
		}
	}
	if len(b) != n {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), n)
	}
	return b, nil
}

// decryptBankingCircle opens one message with the first of keys that
// authenticates it, checks the checksum and returns the plaintext as
// UTF-8 without a byte order mark.
func decryptBankingCircle(keys [][]byte, h http.Header, body []byte) ([]byte, error) {
	hd, err := parseBCHeaders(h)
	if err != nil {
		return nil, err
	}
	sealed := make([]byte, 0, len(body)+gcmTagLen)
	sealed = append(append(sealed, body...), hd.tag...)
	var plain []byte
	opened := false
	for _, key := range keys {
		block, err := aes.NewCipher(key)
		if err != nil {
			continue // keys are checked at load; a bad one cannot open anything
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			continue
		}
		if plain, err = gcm.Open(nil, hd.nonce, sealed, nil); err == nil {
			opened = true
			break
		}
	}
	if !opened {
		return nil, ErrDecrypt
	}
	text, bom, err := decodeText(plain)
	if err != nil {
		return nil, err
	}
	// The sender hashes its decoded string, which keeps a byte order mark
	// as U+FEFF; a checksum taken without it is accepted too.
	sum := sha256.Sum256(text)
	if subtle.ConstantTimeCompare(sum[:], hd.checksum) == 1 {
		return text[bom:], nil
	}
	if bom > 0 {
		sum = sha256.Sum256(text[bom:])
		if subtle.ConstantTimeCompare(sum[:], hd.checksum) == 1 {
			return text[bom:], nil
		}
	}
	return nil, ErrChecksum
}

// errNotText is returned for a plaintext that is neither UTF-16LE nor
// UTF-8.
var errNotText = errors.New("decrypted message is neither UTF-16LE nor UTF-8 text")

// decodeText returns b as UTF-8: b is UTF-16LE (with or without a byte
// order mark) or UTF-8 (with or without one). bom is the length of the
// UTF-8 byte order mark at the start of text, 0 or 3. JSON text starts
// with an ASCII character, so its UTF-16LE encoding has a zero second
// byte, which UTF-8 JSON never has.
func decodeText(b []byte) (text []byte, bom int, err error) {
	switch {
	case len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE, len(b) >= 2 && b[1] == 0:
		if len(b)%2 != 0 {
			return nil, 0, errNotText
		}
		units := make([]uint16, len(b)/2)
		for i := range units {
			units[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		}
		text = make([]byte, 0, len(units))
		for i := 0; i < len(units); i++ {
			r := rune(units[i])
			if utf16.IsSurrogate(r) {
				if i+1 >= len(units) {
					return nil, 0, errNotText
				}
				if r = utf16.DecodeRune(r, rune(units[i+1])); r == utf8.RuneError {
					return nil, 0, errNotText
				}
				i++
			}
			text = utf8.AppendRune(text, r)
		}
	default:
		if !utf8.Valid(b) {
			return nil, 0, errNotText
		}
		text = b
	}
	if len(text) >= 3 && text[0] == 0xEF && text[1] == 0xBB && text[2] == 0xBF {
		bom = 3
	}
	return text, bom, nil
}

// splitNotifications returns the notifications of a decrypted message: a
// JSON array of them, or an object with a "notifications" array. Each one
// is returned as its raw JSON, with its notificationType and eventId.
func splitNotifications(text []byte) ([]inboundEvent, error) {
	if !validJSON(text) {
		return nil, errors.New("decrypted message is not JSON")
	}
	i := skipSpace(text, 0)
	list := text[i:]
	if list[0] == '{' {
		var ok bool
		if list, ok = objectMember(list, "notifications"); !ok {
			return nil, errors.New(`decrypted message is an object without "notifications"`)
		}
	}
	if list[0] != '[' {
		return nil, errors.New("decrypted message is not a list of notifications")
	}
	var out []inboundEvent
	err := arrayElements(list, func(v []byte) error {
		n := len(out)
		if v[0] != '{' {
			return fmt.Errorf("notification %d is not an object", n)
		}
		typ, err := eventType(v, []string{"notificationType"})
		if err != nil {
			return fmt.Errorf("notification %d: %w", n, err)
		}
		id, _ := eventID(v, []string{"eventId"})
		out = append(out, inboundEvent{typ: typ, id: id, body: v})
		return nil
	})
	return out, err
}
