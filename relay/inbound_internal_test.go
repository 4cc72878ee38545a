package relay

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSourceAllowed(t *testing.T) {
	s := newSources([]SourceConfig{{Name: "s", AllowIPs: []netip.Prefix{
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"),
	}}})["s"]
	tests := map[string]bool{
		"203.0.113.9:443":          true,
		"[::ffff:203.0.113.9]:443": true, // IPv4 over an IPv6 socket
		"[2001:db8::7%eth0]:80":    true,
		"203.0.114.1:443":          false,
		"127.0.0.1:80":             false,
		"203.0.113.9":              true,
		"garbage":                  false,
		"":                         false,
	}
	for addr, want := range tests {
		if got := s.allowed(addr); got != want {
			t.Errorf("allowed(%q) = %v, want %v", addr, got, want)
		}
	}
	open := newSources([]SourceConfig{{Name: "o", Provider: ProviderTilled}})["o"]
	if !open.allowed("198.51.100.1:443") {
		t.Error("a signed source without allow_ips refused a peer")
	}
	// "none" without allow_ips: loopback peers only, whatever listener
	// the request came through.
	none := newSources([]SourceConfig{{Name: "n", Provider: ProviderNone}})["n"]
	for addr, want := range map[string]bool{"127.0.0.1:5000": true, "127.8.0.1:5000": true, "[::1]:5000": true, "[::ffff:127.0.0.1]:5000": true,
		"198.51.100.1:443": false, "[2001:db8::1]:443": false} {
		if got := none.allowed(addr); got != want {
			t.Errorf("none: allowed(%q) = %v, want %v", addr, got, want)
		}
	}
}

// FuzzCheckToken: the token header parser never panics and accepts only
// the configured token.
func FuzzCheckToken(f *testing.F) {
	f.Add("Bearer source-token-0123456789", "")
	f.Add("source-token-0123456789", "X-Token")
	f.Add("Bearer", "")
	f.Add(" bearer  x ", "")
	f.Fuzz(func(t *testing.T, value, header string) {
		if checkToken(value, header, "source-token-0123456789") != nil {
			return
		}
		if !strings.Contains(value, "source-token-0123456789") {
			t.Fatalf("accepted %q (header %q)", value, header)
		}
	})
}

// FuzzSourceVerify runs every provider's verification and parsing on
// arbitrary headers and bodies: nothing panics, and whatever is accepted
// is one or more events with a valid type and a JSON object body.
func FuzzSourceVerify(f *testing.F) {
	key := []byte(bcKey)
	cfgs := []SourceConfig{
		{Name: "tilled", Provider: ProviderTilled, Keys: [][]byte{key}, Tolerance: time.Hour},
		{Name: "stripe", Provider: ProviderStripe, Keys: [][]byte{key}, Tolerance: time.Hour},
		{Name: "sw", Provider: ProviderStandardWebhooks, Keys: [][]byte{key}, Tolerance: time.Hour},
		{Name: "usaepay", Provider: ProviderUSAePay, Keys: [][]byte{key}, Username: "u", Password: "p"},
		{Name: "github", Provider: ProviderGitHub, Keys: [][]byte{key}},
		{Name: "hmac", Provider: ProviderHMAC, Keys: [][]byte{key}, Header: "X-S", Algorithm: "sha1", Encoding: "base64", Prefix: "v=", TypePath: []string{"a", "t"}, IDPath: []string{"a", "i"}},
		{Name: "sfpy", Provider: ProviderSFPY, Keys: [][]byte{key}},
		{Name: "bc", Provider: ProviderBankingCircle, Keys: [][]byte{key}},
		{Name: "basic", Provider: ProviderBasic, Username: "u", Password: "p", TypePath: []string{"type"}, IDPath: []string{"id"}},
		{Name: "token", Provider: ProviderToken, Token: "source-token-0123456789", TypePath: []string{"type"}, IDPath: []string{"id"}},
		{Name: "none", Provider: ProviderNone, TypePath: []string{"type"}, IDPath: []string{"id"}},
	}
	sources := newSources(cfgs)
	h, body := bcMessage(f, key, utf16LE(bcSample), bcSample)
	f.Add(uint8(7), h.Get("Nonce"), h.Get("AuthenticationTag"), h.Get("Checksum"), body)
	f.Add(uint8(10), "", "", "", []byte(`{"type":"a.b","id":7}`))
	f.Add(uint8(10), "", "", "", []byte(` [1] `))
	f.Add(uint8(0), "t=1,v1=00", "", "", []byte(`{}`))
	f.Add(uint8(5), "v=AAAA", "", "", []byte(`{"a":{"t":"x"}}`))
	f.Fuzz(func(t *testing.T, which uint8, h1, h2, h3 string, body []byte) {
		if len(body) == 0 {
			return // the handler refuses an empty body first
		}
		c := &cfgs[int(which)%len(cfgs)]
		h := http.Header{}
		// The same values under every header a provider reads.
		for _, name := range []string{HeaderTilledSignature, HeaderStripeSignature, HeaderWebhookSignature, HeaderSignature,
			HeaderGitHubSignature, "X-S", HeaderSFPYSignature, HeaderBCNonce, "Authorization"} {
			h.Set(name, h1)
		}
		for _, name := range []string{HeaderWebhookID, HeaderBCAuthenticationTag, HeaderGitHubEvent} {
			h.Set(name, h2)
		}
		for _, name := range []string{HeaderWebhookTimestamp, HeaderBCChecksum, HeaderGitHubDelivery} {
			h.Set(name, h3)
		}
		events, rf := sources[c.Name].verify(h, body, time.Unix(1, 0))
		if rf != nil {
			if rf.status != http.StatusUnauthorized && rf.status != http.StatusBadRequest || rf.msg == "" {
				t.Fatalf("refusal %+v", rf)
			}
			return
		}
		for _, e := range events {
			if validInboundType(e.typ) != nil || !json.Valid(e.body) || e.body[0] != '{' && c.Provider == ProviderBankingCircle {
				t.Fatalf("%s accepted event %+v", c.Provider, e)
			}
		}
	})
}
