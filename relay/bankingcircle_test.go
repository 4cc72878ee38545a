package relay

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// bcKey is a 32-character key used as its UTF-8 bytes, as Banking Circle
// hands it out.
const bcKey = "Kf8z2Qp0Lm4Xv7Rt1Ys9Bn3Cw6Hd5Ja0"

// bcSample is a message of two notifications with text outside ASCII and
// a character outside the Basic Multilingual Plane.
const (
	bcFirst  = `{"notificationType":"IncomingPaymentProcessed","eventId":"8d3c2a4e-1f7b-4f0e-9a55-0c6a3e1b9f10","accountId":"acct_company_1","payload":{"amount":1250.5,"currency":"EUR","debtorName":"Zürich Café €","ref":"🧾 INV-7"}}`
	bcSecond = `{"notificationType":"OutgoingPaymentRejected","eventId":"0e9a8b7c-6d5e-4f3a-8b2c-1d0e9f8a7b6c","accountId":"acct_sub_2","payload":{"reason":"MissingFunding"}}`
	bcSample = "[\n  " + bcFirst + ",\n  " + bcSecond + "\n]"
)

// utf16LE encodes s as UTF-16 little endian, as .NET's Encoding.Unicode.
func utf16LE(s string) []byte {
	units := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

// bcMessage encrypts plaintext as Banking Circle does, here with the
// standard library alone: AES-256-GCM, a random 12-byte nonce, no
// associated data, the 16-byte tag sent apart in a header, and the
// checksum of checksummed (the plaintext as UTF-8).
func bcMessage(t testing.TB, key, plaintext []byte, checksummed string) (http.Header, []byte) {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	sealed := gcm.Seal(nil, nonce, plaintext, nil)
	body, tag := sealed[:len(sealed)-16], sealed[len(sealed)-16:]
	sum := sha256.Sum256([]byte(checksummed))
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Nonce", base64.StdEncoding.EncodeToString(nonce))
	h.Set("AuthenticationTag", base64.StdEncoding.EncodeToString(tag))
	h.Set("Checksum", base64.StdEncoding.EncodeToString(sum[:]))
	h.Set("SubscriptionVersion", "1")
	return h, body
}

func TestDecryptBankingCircle(t *testing.T) {
	key := []byte(bcKey)
	tests := []struct {
		name        string
		plaintext   []byte
		checksummed string
	}{
		{"UTF-16LE", utf16LE(bcSample), bcSample},
		{"UTF-16LE with BOM, checksum with it", utf16LE("\uFEFF" + bcSample), "\uFEFF" + bcSample},
		{"UTF-16LE with BOM, checksum without it", utf16LE("\uFEFF" + bcSample), bcSample},
		{"UTF-8", []byte(bcSample), bcSample},
		{"UTF-8 with BOM", []byte("\uFEFF" + bcSample), "\uFEFF" + bcSample},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body := bcMessage(t, key, tt.plaintext, tt.checksummed)
			text, err := decryptBankingCircle([][]byte{key}, h, body)
			if err != nil {
				t.Fatal(err)
			}
			if string(text) != bcSample {
				t.Fatalf("text = %q", text)
			}
			events, err := splitNotifications(text)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 2 {
				t.Fatalf("%d events", len(events))
			}
			if e := events[0]; e.typ != "IncomingPaymentProcessed" || e.id != "8d3c2a4e-1f7b-4f0e-9a55-0c6a3e1b9f10" || string(e.body) != bcFirst {
				t.Errorf("first = %s %s %s", e.typ, e.id, e.body)
			}
			if e := events[1]; e.typ != "OutgoingPaymentRejected" || e.id != "0e9a8b7c-6d5e-4f3a-8b2c-1d0e9f8a7b6c" || string(e.body) != bcSecond {
				t.Errorf("second = %s %s %s", e.typ, e.id, e.body)
			}
		})
	}

	// Rotation: the second key opens it.
	h, body := bcMessage(t, key, utf16LE(bcSample), bcSample)
	if _, err := decryptBankingCircle([][]byte{[]byte(strings.Repeat("x", 32)), key}, h, body); err != nil {
		t.Fatalf("second key: %v", err)
	}
}

func TestDecryptBankingCircleRefusals(t *testing.T) {
	key := []byte(bcKey)
	good := func() (http.Header, []byte) { return bcMessage(t, key, utf16LE(bcSample), bcSample) }
	tests := []struct {
		name   string
		change func(h http.Header, body []byte) []byte
		want   error
	}{
		{"checksum of other text", func(h http.Header, b []byte) []byte {
			sum := sha256.Sum256([]byte(bcSample + " "))
			h.Set("Checksum", base64.StdEncoding.EncodeToString(sum[:]))
			return b
		}, ErrChecksum},
		{"checksum of the UTF-16 bytes", func(h http.Header, b []byte) []byte {
			sum := sha256.Sum256(utf16LE(bcSample))
			h.Set("Checksum", base64.StdEncoding.EncodeToString(sum[:]))
			return b
		}, ErrChecksum},
		{"ciphertext tampered", func(h http.Header, b []byte) []byte { b[10] ^= 1; return b }, ErrDecrypt},
		{"tag tampered", func(h http.Header, b []byte) []byte {
			tag, _ := base64.StdEncoding.DecodeString(h.Get("AuthenticationTag"))
			tag[0] ^= 1
			h.Set("AuthenticationTag", base64.StdEncoding.EncodeToString(tag))
			return b
		}, ErrDecrypt},
		{"tag also appended to the body", func(h http.Header, b []byte) []byte {
			tag, _ := base64.StdEncoding.DecodeString(h.Get("AuthenticationTag"))
			return append(b, tag...)
		}, ErrDecrypt},
		{"other nonce", func(h http.Header, b []byte) []byte {
			h.Set("Nonce", base64.StdEncoding.EncodeToString(make([]byte, 12)))
			return b
		}, ErrDecrypt},
		{"body cut", func(h http.Header, b []byte) []byte { return b[:len(b)-1] }, ErrDecrypt},
		{"nonce missing", func(h http.Header, b []byte) []byte { h.Del("Nonce"); return b }, errBCHeaderMissing},
		{"checksum missing", func(h http.Header, b []byte) []byte { h.Del("Checksum"); return b }, errBCHeaderMissing},
		{"nonce of 16 bytes", func(h http.Header, b []byte) []byte {
			h.Set("Nonce", base64.StdEncoding.EncodeToString(make([]byte, 16)))
			return b
		}, ErrSignatureMalformed},
		{"tag not base64", func(h http.Header, b []byte) []byte { h.Set("AuthenticationTag", "!!!"); return b }, ErrSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body := good()
			body = tt.change(h, body)
			text, err := decryptBankingCircle([][]byte{key}, h, body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if text != nil {
				t.Fatal("text returned with an error")
			}
		})
	}
	h, body := good()
	if _, err := decryptBankingCircle([][]byte{[]byte(strings.Repeat("k", 32))}, h, body); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestSplitNotifications(t *testing.T) {
	tests := []struct {
		name, text string
		n          int
		err        string
	}{
		{"array", bcSample, 2, ""},
		{"object", `{"subscriptionVersion":1,"notifications":[` + bcFirst + `]}`, 1, ""},
		{"empty array", `[]`, 0, ""},
		{"no eventId", `[{"notificationType":"MissingFunding"}]`, 1, ""},
		{"not JSON", `[{"notificationType":`, 0, "not JSON"},
		{"object without notifications", `{"items":[]}`, 0, `without "notifications"`},
		{"notifications not a list", `{"notifications":{}}`, 0, "not a list"},
		{"element not an object", `[1]`, 0, "not an object"},
		{"no type", `[{"eventId":"x"}]`, 0, "notificationType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitNotifications([]byte(tt.text))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(got) != tt.n {
				t.Fatalf("got %d, %v; want %d", len(got), err, tt.n)
			}
		})
	}
}

// FuzzDecryptBankingCircle: the header parsers and the decryption path
// never panic, and what they accept is authentic: its checksum is the
// SHA-256 of the text returned.
func FuzzDecryptBankingCircle(f *testing.F) {
	key := []byte(bcKey)
	h, body := bcMessage(f, key, utf16LE(bcSample), bcSample)
	f.Add(h.Get("Nonce"), h.Get("AuthenticationTag"), h.Get("Checksum"), body)
	h, body = bcMessage(f, key, []byte(`[]`), `[]`)
	f.Add(h.Get("Nonce"), h.Get("AuthenticationTag"), h.Get("Checksum"), body)
	f.Add("AAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAA==", "", []byte{})
	f.Add("", "=", "AAAA", []byte("x"))
	f.Fuzz(func(t *testing.T, nonce, tag, checksum string, body []byte) {
		h := http.Header{}
		h.Set("Nonce", nonce)
		h.Set("AuthenticationTag", tag)
		h.Set("Checksum", checksum)
		text, err := decryptBankingCircle([][]byte{key}, h, body)
		if err != nil {
			return
		}
		want, _ := decodeB64(checksum, sha256.Size)
		sum := sha256.Sum256(text)
		bom := sha256.Sum256(append([]byte("\uFEFF"), text...))
		if string(want) != string(sum[:]) && string(want) != string(bom[:]) {
			t.Fatalf("accepted a message whose checksum does not match")
		}
		if !utf8.Valid(text) {
			t.Fatalf("text is not UTF-8")
		}
	})
}

// FuzzBankingCircleRoundTrip: any JSON-like text encrypted here, as
// UTF-16LE or UTF-8, with or without a byte order mark, decrypts to the
// same text.
func FuzzBankingCircleRoundTrip(f *testing.F) {
	f.Add(bcSample, true, false)
	f.Add(bcSample, false, true)
	f.Add("[]", true, true)
	f.Add("{\"a\":\"\U0001F9FE\"}", true, false)
	f.Fuzz(func(t *testing.T, text string, asUTF16, withBOM bool) {
		// JSON text starts with an ASCII character other than NUL;
		// that is what tells the two encodings apart.
		if !utf8.ValidString(text) || text == "" || text[0] == 0 || text[0] >= 0x80 || len(text) > 1 && text[1] == 0 {
			return
		}
		s := text
		if withBOM {
			s = "\uFEFF" + s
		}
		plain := []byte(s)
		if asUTF16 {
			plain = utf16LE(s)
		}
		h, body := bcMessage(t, []byte(bcKey), plain, s)
		got, err := decryptBankingCircle([][]byte{[]byte(bcKey)}, h, body)
		if err != nil {
			t.Fatalf("%q (utf16 %v, bom %v): %v", text, asUTF16, withBOM, err)
		}
		if string(got) != text {
			t.Fatalf("got %q, want %q", got, text)
		}
	})
}

// FuzzDecodeText: any bytes decode to valid UTF-8 or fail.
func FuzzDecodeText(f *testing.F) {
	f.Add(utf16LE("[1]"))
	f.Add(utf16LE("\uFEFF\U0001F9FE"))
	f.Add([]byte("\xEF\xBB\xBF[]"))
	f.Add([]byte{0xFF, 0xFE, 0x00, 0xD8})
	f.Add([]byte{'[', 0, 0x00, 0xDC})
	f.Fuzz(func(t *testing.T, b []byte) {
		text, bom, err := decodeText(b)
		if err != nil {
			return
		}
		if !utf8.Valid(text) || bom != 0 && bom != 3 || bom > len(text) {
			t.Fatalf("decodeText(%q) = %q, %d", b, text, bom)
		}
	})
}

// FuzzSplitNotifications: any text splits into JSON objects with a type,
// or fails.
func FuzzSplitNotifications(f *testing.F) {
	f.Add([]byte(bcSample))
	f.Add([]byte(`{"notifications":[{"notificationType":"A","eventId":1}]}`))
	f.Add([]byte(`[{"notificationType":"A"},2]`))
	f.Add([]byte(` [ ] `))
	f.Fuzz(func(t *testing.T, text []byte) {
		events, err := splitNotifications(text)
		if err != nil {
			return
		}
		for _, e := range events {
			if !json.Valid(e.body) || e.body[0] != '{' || validInboundType(e.typ) != nil {
				t.Fatalf("event %+v from %q", e, text)
			}
		}
	})
}
