package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The test vector published with the Standard Webhooks specification.
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignStandardVector(t *testing.T) {
	key, err := DecodeStandardSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := SignStandard([][]byte{key}, vectorID, vectorTS, []byte(vectorBody)); got != vectorSig {
		t.Fatalf("signature = %q, want %q", got, vectorSig)
	}
}

func TestSignStandardRotation(t *testing.T) {
	key, _ := DecodeStandardSecret(vectorSecret)
	other := []byte("another-key-another-key!")
	got := SignStandard([][]byte{other, key}, vectorID, vectorTS, []byte(vectorBody))
	if got[len(got)-len(vectorSig):] != vectorSig || got[:3] != "v1," {
		t.Fatalf("rotated signature header = %q", got)
	}
	h := http.Header{}
	h.Set(HeaderWebhookID, vectorID)
	h.Set(HeaderWebhookTimestamp, strconv.Itoa(vectorTS))
	h.Set(HeaderWebhookSignature, got)
	// A receiver holding only the old key still verifies.
	if err := VerifyStandard([][]byte{key}, h, []byte(vectorBody), time.Unix(vectorTS, 0), time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyStandard(t *testing.T) {
	key, _ := DecodeStandardSecret(vectorSecret)
	at := time.Unix(vectorTS, 0)
	headers := func(id, ts, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, ts)
		h.Set(HeaderWebhookSignature, sig)
		return h
	}
	ts := strconv.Itoa(vectorTS)
	tests := []struct {
		name string
		h    http.Header
		body string
		now  time.Time
		want error
	}{
		{"valid", headers(vectorID, ts, vectorSig), vectorBody, at, nil},
		{"valid among others", headers(vectorID, ts, "v1a,xxxx v1,bm9wZQ== "+vectorSig), vectorBody, at, nil},
		{"body changed", headers(vectorID, ts, vectorSig), `{"test": 2432232315}`, at, ErrSignatureMismatch},
		{"id changed", headers("msg_other", ts, vectorSig), vectorBody, at, ErrSignatureMismatch},
		{"only v1a", headers(vectorID, ts, "v1a,"+vectorSig[3:]), vectorBody, at, ErrSignatureMismatch},
		{"stale", headers(vectorID, ts, vectorSig), vectorBody, at.Add(6 * time.Minute), ErrSignatureStale},
		{"future", headers(vectorID, ts, vectorSig), vectorBody, at.Add(-6 * time.Minute), ErrSignatureStale},
		{"missing", headers(vectorID, "", vectorSig), vectorBody, at, ErrSignatureMissing},
		{"bad timestamp", headers(vectorID, "12x", vectorSig), vectorBody, at, ErrSignatureMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyStandard([][]byte{key}, tt.h, []byte(tt.body), tt.now, 5*time.Minute)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignHMACSHA256(t *testing.T) {
	// Expected value computed here with crypto/hmac directly.
	key, body := []byte("usaepay-style-secret"), []byte(`{"event":"sale"}`)
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if got, want := SignHMACSHA256(key, body), hex.EncodeToString(m.Sum(nil)); got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func TestDecodeStandardSecret(t *testing.T) {
	if _, err := DecodeStandardSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err == nil {
		t.Fatal("secret without prefix accepted")
	}
	if _, err := DecodeStandardSecret("whsec_!!!"); err == nil {
		t.Fatal("bad base64 accepted")
	}
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "payment.succeeded", true},
		{"*", "", true},
		{"payment.*", "payment.succeeded", true},
		{"payment.*", "payment.a.b", true},
		{"payment.*", "payment", false},
		{"payment.*", "refund.initiated", false},
		{"refund.initiated", "refund.initiated", true},
		{"refund.initiated", "refund.initiated2", false},
		{"*.failed", "charge.failed", true},
		{"*.failed", "charge.failed.x", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"payment:*", "payment:created", true},
		{"**", "x", true},
	}
	for _, tt := range tests {
		if got := matchGlob(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestRouter(t *testing.T) {
	r := newRouter([]HookConfig{
		{Name: "crm", Events: []string{"payment.*", "refund.initiated"}},
		{Name: "all", Events: []string{"*"}},
		{Name: "none", Events: []string{"customer.updated"}},
	})
	for range 2 { // second round from the cache
		if got := r.route("payment.succeeded"); len(got) != 2 || got[0] != "crm" || got[1] != "all" {
			t.Fatalf("route = %v", got)
		}
		if got := r.route("refund.failed"); len(got) != 1 || got[0] != "all" {
			t.Fatalf("route = %v", got)
		}
	}
}

func TestNewEventID(t *testing.T) {
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	a, b := newEventID(now), newEventID(now.Add(time.Millisecond))
	if len(a) != 30 || a[:4] != "evt_" || a == b || a >= b {
		t.Fatalf("ids %q %q: want evt_ + 26 chars, distinct, time-ordered", a, b)
	}
}

func TestRetryDelay(t *testing.T) {
	schedule := []time.Duration{time.Second, time.Minute}
	for range 100 {
		if d := retryDelay(schedule, 0, 0); d < time.Second || d > 1200*time.Millisecond {
			t.Fatalf("delay %v outside [1s, 1.2s]", d)
		}
	}
	if d := retryDelay(schedule, 0, 30*time.Second); d != 30*time.Second {
		t.Fatalf("Retry-After not honoured: %v", d)
	}
	if d := retryDelay(schedule, 0, time.Hour); d != time.Minute {
		t.Fatalf("Retry-After not capped at the longest step: %v", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"-1":                            0,
		"soon":                          0,
		"Wed, 25 Nov 2026 12:01:00 GMT": time.Minute,
		"Wed, 25 Nov 2026 11:00:00 GMT": 0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
