package relay_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkTimestamped verifies a "t=<ts>,v1=<hex>,..." header the way a
// receiver would, with crypto/hmac alone: every secret must have its v1.
func checkTimestamped(t *testing.T, header string, body []byte, secrets []string, digits int, unit time.Duration) {
	t.Helper()
	var ts string
	var v1 []string
	for _, elem := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(elem, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = append(v1, v)
		}
	}
	if len(ts) != digits {
		t.Fatalf("t = %q, want %d digits", ts, digits)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(time.Unix(0, n*int64(unit))); d < 0 || d > time.Minute {
		t.Fatalf("t = %s is %v from now", ts, d)
	}
	if len(v1) != len(secrets) {
		t.Fatalf("%d v1 values for %d secrets: %s", len(v1), len(secrets), header)
	}
	for i, secret := range secrets {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(ts + "."))
		m.Write(body)
		if want := hex.EncodeToString(m.Sum(nil)); v1[i] != want {
			t.Errorf("v1 #%d = %s, want %s", i, v1[i], want)
		}
	}
}

func TestTilledAndStripeStyleSignatures(t *testing.T) {
	tilled, stripe := newReceiver(t, nil), newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "tilled-style"
url = %q
events = ["*"]
signature = "tilled"
secret = "tilled-style-secret-0123"

[[hook]]
name = "stripe-style"
url = %q
events = ["*"]
signature = "stripe"
secret = ["whsec_new-stripe-style-secret", "whsec_old-stripe-style-secret"]
`, tilled.srv.URL, stripe.srv.URL))
	n.publish(`{"type":"charge.succeeded","id":"ch_1","data":{"amount":500}}`)
	waitFor(t, "deliveries", 10*time.Second, func() bool { return tilled.delivered() == 1 && stripe.delivered() == 1 })

	got := tilled.requests()[0]
	checkTimestamped(t, got.header.Get("tilled-signature"), got.body, []string{"tilled-style-secret-0123"}, 13, time.Millisecond)
	if got.header.Get("Stripe-Signature") != "" || got.header.Get("webhook-signature") != "" {
		t.Errorf("other signature headers sent: %v", got.header)
	}
	got = stripe.requests()[0]
	checkTimestamped(t, got.header.Get("Stripe-Signature"), got.body, []string{"whsec_new-stripe-style-secret", "whsec_old-stripe-style-secret"}, 10, time.Second)
	if got.header.Get("webhook-id") != "ch_1" {
		t.Errorf("webhook-id = %q", got.header.Get("webhook-id"))
	}
}
