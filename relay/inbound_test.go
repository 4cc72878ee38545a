package relay_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"hookrelay/relay"
)

const tilledSecret = "tilled-endpoint-secret-0123"

// hmacOf computes an HMAC here, apart from the code under test.
func hmacOf(h func() hash.Hash, key string, parts ...string) []byte {
	m := hmac.New(h, []byte(key))
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// tilledHeaders signs body as Tilled does, at now in milliseconds.
func tilledHeaders(secret string, body []byte, at time.Time) http.Header {
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	h := http.Header{}
	h.Set("tilled-signature", "t="+ts+",v1="+hex.EncodeToString(hmacOf(sha256.New, secret, ts, ".", string(body))))
	h.Set("Content-Type", "application/json")
	return h
}

// postIn posts body to /in/{source} and returns the status and the
// decoded answer.
func (n *node) postIn(source string, h http.Header, body []byte) (int, map[string]any) {
	n.t.Helper()
	req, _ := http.NewRequest("POST", n.srv.URL+"/in/"+source, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		n.t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

func TestInboundTilledDeliveredByteForByte(t *testing.T) {
	rc := newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[source]]
name = "tilled"
provider = "tilled"
secret = %q

[[hook]]
name = "crm"
url = %q
events = ["charge.*"]
secret = %q
`, tilledSecret, rc.srv.URL, testSecret))

	// Spacing, key order and the final newline are the provider's own.
	body := []byte("{\"id\":\"evt_3Kq1\", \"type\" : \"charge.succeeded\",\n \"account_id\":\"acct_1\",\"data\":{\"amount\": 1200.50,\"note\":\"caf\\u00e9\"}}\n")
	status, out := n.postIn("tilled", tilledHeaders(tilledSecret, body, time.Now()), body)
	if status != http.StatusOK || out["id"] != "evt_3Kq1" || out["deliveries"] != 1.0 {
		t.Fatalf("answer %d %v", status, out)
	}
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.delivered() == 1 })
	got := rc.requests()[0]
	if !bytes.Equal(got.body, body) {
		t.Fatalf("delivered body differs:\n got  %q\n want %q", got.body, body)
	}
	if got.header.Get("webhook-id") != "evt_3Kq1" {
		t.Errorf("webhook-id = %q", got.header.Get("webhook-id"))
	}
	if got.header.Get("tilled-signature") != "" {
		t.Error("the provider's signature header was forwarded")
	}
	key, _ := relay.DecodeStandardSecret(testSecret)
	if err := relay.VerifyStandard([][]byte{key}, got.header, got.body, time.Now(), time.Minute); err != nil {
		t.Errorf("the relay's own signature does not verify: %v", err)
	}
	if c := n.counts(); c.Events != 1 {
		t.Fatalf("events = %d", c.Events)
	}
}

func TestInboundRefusalsStoreNothing(t *testing.T) {
	rc := newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[source]]
name = "tilled"
provider = "tilled"
secret = %q

[[source]]
name = "fenced"
provider = "tilled"
secret = %q
allow_ips = ["203.0.113.0/24"]

[[hook]]
name = "all"
url = %q
events = ["*"]
`, tilledSecret, tilledSecret, rc.srv.URL))

	body := []byte(`{"id":"evt_1","type":"charge.succeeded"}`)
	now := time.Now()
	signed := tilledHeaders(tilledSecret, body, now)
	tests := []struct {
		name, source string
		h            http.Header
		body         []byte
		status       int
		msg          string
	}{
		{"no signature", "tilled", http.Header{}, body, 401, "signature headers missing"},
		{"wrong secret", "tilled", tilledHeaders("another-secret", body, now), body, 401, "no matching signature"},
		{"tampered body", "tilled", signed, []byte(`{"id":"evt_1","type":"charge.refunded"}`), 401, "no matching signature"},
		{"stale", "tilled", tilledHeaders(tilledSecret, body, now.Add(-6*time.Minute)), body, 401, "outside tolerance"},
		{"future", "tilled", tilledHeaders(tilledSecret, body, now.Add(6*time.Minute)), body, 401, "outside tolerance"},
		{"malformed header", "tilled", http.Header{"Tilled-Signature": {"t=x,v1=y"}}, body, 401, "malformed"},
		{"unknown source", "tiled", signed, body, 404, `unknown source "tiled"`},
		{"address refused", "fenced", signed, body, 403, "address not allowed"},
		{"not JSON", "tilled", tilledHeaders(tilledSecret, []byte("id=evt_1"), now), []byte("id=evt_1"), 400, "not valid JSON"},
		{"not an object", "tilled", tilledHeaders(tilledSecret, []byte(`["x"]`), now), []byte(`["x"]`), 400, "JSON object"},
		{"no type", "tilled", tilledHeaders(tilledSecret, []byte(`{"id":"e"}`), now), []byte(`{"id":"e"}`), 400, `"type" is missing`},
		{"empty", "tilled", signed, nil, 400, "empty"},
		{"too large", "tilled", signed, bytes.Repeat([]byte("x"), 5000), 413, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := n.postIn(tt.source, tt.h, tt.body)
			if status != tt.status {
				t.Fatalf("status = %d, want %d (%v)", status, tt.status, out)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, tt.msg) {
				t.Fatalf("error = %q, want it to mention %q", msg, tt.msg)
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if c := n.counts(); c.Events != 0 || c.Pending != 0 {
		t.Fatalf("refused requests left a trace: %+v", c)
	}
	if len(rc.requests()) != 0 {
		t.Fatal("a refused request was delivered")
	}
	// The same request, correctly signed, goes through.
	if status, out := n.postIn("tilled", signed, body); status != 200 {
		t.Fatalf("valid request after refusals: %d %v", status, out)
	}
}

func TestInboundDuplicateStoredOnceAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	rc := newReceiver(t, nil)
	cfg := fmt.Sprintf(`
[[source]]
name = "tilled"
provider = "tilled"
secret = %q

[[hook]]
name = "all"
url = %q
events = ["*"]
`, tilledSecret, rc.srv.URL)
	n := startRelay(t, dir, cfg)
	body := []byte(`{"id":"evt_dup","type":"charge.succeeded","account_id":"acct_1"}`)
	status, first := n.postIn("tilled", tilledHeaders(tilledSecret, body, time.Now()), body)
	if status != 200 || first["duplicate"] != nil {
		t.Fatalf("first: %d %v", status, first)
	}
	// Providers retry with a fresh signature.
	status, second := n.postIn("tilled", tilledHeaders(tilledSecret, body, time.Now().Add(time.Second)), body)
	if status != 200 || second["duplicate"] != true || second["id"] != "evt_dup" {
		t.Fatalf("second: %d %v", status, second)
	}
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.delivered() == 1 })
	n.stop()

	n = startRelay(t, dir, cfg)
	status, third := n.postIn("tilled", tilledHeaders(tilledSecret, body, time.Now()), body)
	if status != 200 || third["duplicate"] != true {
		t.Fatalf("after restart: %d %v", status, third)
	}
	time.Sleep(100 * time.Millisecond)
	if c := n.counts(); c.Events != 1 {
		t.Fatalf("events = %d, want 1", c.Events)
	}
	if got := len(rc.requests()); got != 1 {
		t.Fatalf("receiver got %d requests, want 1", got)
	}

	// A publisher's id of the same value is not a duplicate of it.
	if out := n.publish(`{"type":"charge.succeeded","id":"evt_dup"}`); out["duplicate"] != nil {
		t.Fatalf("publisher event taken for the source's: %v", out)
	}
}

func TestInboundSourcesAndMatchRouting(t *testing.T) {
	acct, sfpyOnly, posOnly, all := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[source]]
name = "tilled"
provider = "tilled"
secret = %q

[[source]]
name = "sfpy"
provider = "sfpy"
secret = "sfpy-secret"

[[hook]]
name = "acct"
url = %q
events = ["*"]
sources = ["tilled"]
match = { account_id = ["acct_1", "acct_2"] }

[[hook]]
name = "sfpy-only"
url = %q
events = ["payment:*"]
sources = ["sfpy"]

[[hook]]
name = "pos-only"
url = %q
events = ["*"]
sources = ["publisher:pos"]
match = { "data.account_id" = "acct_1" }

[[hook]]
name = "all"
url = %q
events = ["*"]
`, tilledSecret, acct.srv.URL, sfpyOnly.srv.URL, posOnly.srv.URL, all.srv.URL))

	post := func(body string) float64 {
		status, out := n.postIn("tilled", tilledHeaders(tilledSecret, []byte(body), time.Now()), []byte(body))
		if status != 200 {
			t.Fatalf("%s: %d %v", body, status, out)
		}
		return out["deliveries"].(float64)
	}
	if d := post(`{"id":"e1","type":"charge.succeeded","account_id":"acct_1"}`); d != 2 {
		t.Errorf("acct_1: %v deliveries, want 2 (acct, all)", d)
	}
	if d := post(`{"id":"e2","type":"charge.succeeded","account_id":"acct_9"}`); d != 1 {
		t.Errorf("acct_9: %v deliveries, want 1 (all)", d)
	}
	if d := post(`{"id":"e3","type":"payment:created","account_id":"acct_2"}`); d != 2 {
		t.Errorf("tilled payment:created: %v deliveries, want 2 (acct, all)", d)
	}
	data := `{"type":"payment:created","token":"trk_1","data":{"event_id":"sf_1"}}`
	sfpyBody := []byte(`{"data": ` + data + `}`)
	h := http.Header{"Sfpy-Signature": {hex.EncodeToString(hmacOf(sha512.New, "sfpy-secret", data))}}
	if status, out := n.postIn("sfpy", h, sfpyBody); status != 200 || out["deliveries"] != 2.0 {
		t.Errorf("sfpy: %d %v, want 2 deliveries (sfpy-only, all)", status, out)
	}
	if out := n.publish(`{"type":"order.paid","data":{"account_id":"acct_1"}}`); out["deliveries"] != 2.0 {
		t.Errorf("publish acct_1: %v, want 2 deliveries (pos-only, all)", out)
	}
	if out := n.publish(`{"type":"order.paid","data":{"account_id":"acct_2"}}`); out["deliveries"] != 1.0 {
		t.Errorf("publish acct_2: %v, want 1 delivery (all)", out)
	}

	waitFor(t, "deliveries", 10*time.Second, func() bool {
		return acct.delivered() == 2 && sfpyOnly.delivered() == 1 && posOnly.delivered() == 1 && all.delivered() == 6
	})
	time.Sleep(100 * time.Millisecond)
	ids := func(rc *receiver) string {
		var s []string
		for _, r := range rc.requests() {
			s = append(s, r.header.Get("webhook-id"))
		}
		return strings.Join(s, ",")
	}
	if got := ids(acct); got != "e1,e3" && got != "e3,e1" {
		t.Errorf("acct got %s", got)
	}
	if got := ids(sfpyOnly); got != "sf_1" {
		t.Errorf("sfpy-only got %s", got)
	}
	if got := len(all.requests()); got != 6 {
		t.Errorf("all got %d", got)
	}
}

// bcEncrypt encrypts text as Banking Circle does, with the standard
// library alone: UTF-16LE, AES-256-GCM, the tag in its own header.
func bcEncrypt(t *testing.T, key, text string) (http.Header, []byte) {
	t.Helper()
	units := utf16.Encode([]rune(text))
	plain := make([]byte, 0, 2*len(units))
	for _, u := range units {
		plain = append(plain, byte(u), byte(u>>8))
	}
	block, err := aes.NewCipher([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	sealed := gcm.Seal(nil, nonce, plain, nil)
	sum := sha256.Sum256([]byte(text))
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Nonce", base64.StdEncoding.EncodeToString(nonce))
	h.Set("AuthenticationTag", base64.StdEncoding.EncodeToString(sealed[len(sealed)-16:]))
	h.Set("Checksum", base64.StdEncoding.EncodeToString(sum[:]))
	h.Set("SubscriptionVersion", "1")
	return h, sealed[:len(sealed)-16]
}

func TestInboundBankingCircle(t *testing.T) {
	const key = "Kf8z2Qp0Lm4Xv7Rt1Ys9Bn3Cw6Hd5Ja0"
	company, sub := newReceiver(t, nil), newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[source]]
name = "bc"
provider = "bankingcircle"
secret = %q

[[hook]]
name = "company"
url = %q
events = ["*"]

[[hook]]
name = "sub-account"
url = %q
events = ["IncomingPaymentProcessed"]
match = { accountId = "acct_sub_2" }
`, key, company.srv.URL, sub.srv.URL))

	first := `{"notificationType":"IncomingPaymentProcessed","eventId":"11111111-aaaa-4bbb-8ccc-000000000001","accountId":"acct_sub_2","amount":{"value":99.5,"currency":"EUR"},"debtor":"Zoë Ærø"}`
	second := `{"notificationType":"OutgoingPaymentRejected","eventId":"11111111-aaaa-4bbb-8ccc-000000000002","accountId":"acct_company_1"}`
	text := "[" + first + ",\n" + second + "]"
	h, body := bcEncrypt(t, key, text)
	status, out := n.postIn("bc", h, body)
	if status != 200 {
		t.Fatalf("answer %d %v", status, out)
	}
	events, _ := out["events"].([]any)
	if len(events) != 2 || events[0].(map[string]any)["deliveries"] != 2.0 || events[1].(map[string]any)["deliveries"] != 1.0 {
		t.Fatalf("answer %v", out)
	}
	waitFor(t, "deliveries", 10*time.Second, func() bool { return company.delivered() == 2 && sub.delivered() == 1 })
	bodies := map[string]string{}
	for _, r := range company.requests() {
		bodies[r.header.Get("webhook-id")] = string(r.body)
	}
	if bodies["11111111-aaaa-4bbb-8ccc-000000000001"] != first || bodies["11111111-aaaa-4bbb-8ccc-000000000002"] != second {
		t.Fatalf("delivered %q", bodies)
	}
	if got := string(sub.requests()[0].body); got != first {
		t.Fatalf("sub-account got %q", got)
	}

	// Sent again (a new nonce, as a retry would be): stored once.
	h, body = bcEncrypt(t, key, text)
	status, out = n.postIn("bc", h, body)
	if status != 200 || !strings.Contains(fmt.Sprint(out), "duplicate:true") {
		t.Fatalf("resend: %d %v", status, out)
	}
	// A batch with one new notification stores only that one.
	// An incoming payment to another account: match keeps it from sub-account.
	third := `{"notificationType":"IncomingPaymentProcessed","eventId":"11111111-aaaa-4bbb-8ccc-000000000003","accountId":"acct_company_1"}`
	h, body = bcEncrypt(t, key, `{"notifications":[`+second+","+third+"]}")
	status, out = n.postIn("bc", h, body)
	if events, _ := out["events"].([]any); status != 200 || len(events) != 2 ||
		events[0].(map[string]any)["duplicate"] != true || events[1].(map[string]any)["deliveries"] != 1.0 {
		t.Fatalf("batch: %d %v; want the first a duplicate, the second for company only", status, out)
	}
	waitFor(t, "third", 10*time.Second, func() bool { return company.delivered() == 3 })
	if got := len(sub.requests()); got != 1 {
		t.Fatalf("sub-account got %d requests, want 1", got)
	}

	// Tampered or wrongly checksummed: refused, nothing stored.
	h, body = bcEncrypt(t, key, text)
	body[3] ^= 0x40
	if status, out = n.postIn("bc", h, body); status != 401 || !strings.Contains(out["error"].(string), "decrypt") {
		t.Fatalf("tampered: %d %v", status, out)
	}
	h, body = bcEncrypt(t, key, text)
	sum := sha256.Sum256([]byte(text + " "))
	h.Set("Checksum", base64.StdEncoding.EncodeToString(sum[:]))
	if status, out = n.postIn("bc", h, body); status != 401 || !strings.Contains(out["error"].(string), "checksum") {
		t.Fatalf("bad checksum: %d %v", status, out)
	}
	time.Sleep(100 * time.Millisecond)
	if c := n.counts(); c.Events != 3 {
		t.Fatalf("events = %d, want 3", c.Events)
	}
}

// Every provider accepts what it signs and refuses what it does not,
// finds the event type (the hook subscribes to that type only) and id
// (the webhook-id delivered).
func TestInboundProviders(t *testing.T) {
	now := time.Now()
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	type request struct {
		h    http.Header
		body string
	}
	tests := []struct {
		provider, toml, typ, id string
		good, bad               func() request
	}{
		{
			provider: "usaepay",
			toml:     "secret = \"usaepay-key\"\nusername = \"usaepay\"\npassword = \"basic-pass-0123\"",
			typ:      "transaction.sale.success", id: "ue_1",
			good: func() request {
				b := `{"event_type":"transaction.sale.success","event_id":"ue_1","data":{"amount":"10.00"}}`
				return request{http.Header{"X-Signature": {hex.EncodeToString(hmacOf(sha256.New, "usaepay-key", b))}, "Authorization": {basic("usaepay", "basic-pass-0123")}}, b}
			},
			bad: func() request {
				b := `{"event_type":"transaction.sale.success","event_id":"ue_1","data":{"amount":"10.00"}}`
				return request{http.Header{"X-Signature": {hex.EncodeToString(hmacOf(sha256.New, "usaepay-key", b))}, "Authorization": {basic("usaepay", "wrong")}}, b}
			},
		},
		{
			provider: "sfpy",
			toml:     `secret = "sfpy-secret"`,
			typ:      "refund:created", id: "trk_2", // no data.data.event_id: the token
			good: func() request {
				data := `{"type":"refund:created","token":"trk_2","data":{"amount":5}}`
				return request{http.Header{"X-Sfpy-Signature": {hex.EncodeToString(hmacOf(sha512.New, "sfpy-secret", data))}}, `{"data": {"type": "refund:created", "token": "trk_2", "data": {"amount": 5}}}`}
			},
			bad: func() request {
				data := `{"type":"refund:created","token":"trk_2","data":{"amount":5}}`
				return request{http.Header{"X-Sfpy-Signature": {hex.EncodeToString(hmacOf(sha512.New, "sfpy-secret", data))}}, `{"data": {"type": "refund:created", "token": "trk_2", "data": {"amount": 500}}}`}
			},
		},
		{
			provider: "standard-webhooks",
			toml:     `secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"`,
			typ:      "subscription.renewed", id: "msg_2Lx",
			good: func() request {
				b := `{"type":"subscription.renewed","timestamp":"2026-01-01T00:00:00Z","data":{"customer":"c_1"}}`
				key, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
				ts := strconv.FormatInt(now.Unix(), 10)
				sig := base64.StdEncoding.EncodeToString(hmacOf(sha256.New, string(key), "msg_2Lx.", ts, ".", b))
				return request{http.Header{"Webhook-Id": {"msg_2Lx"}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {"v1a,c29tZXRoaW5n v1," + sig}}, b}
			},
			bad: func() request {
				b := `{"type":"subscription.renewed"}`
				ts := strconv.FormatInt(now.Unix(), 10)
				sig := base64.StdEncoding.EncodeToString(hmacOf(sha256.New, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_2Lx.", ts, ".", b))
				return request{http.Header{"Webhook-Id": {"msg_2Lx"}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {"v1," + sig}}, b}
			},
		},
		{
			provider: "stripe",
			toml:     `secret = "whsec_stripe-endpoint-secret"`,
			typ:      "payment_intent.succeeded", id: "evt_1Stripe",
			good: func() request {
				b := `{"id":"evt_1Stripe","object":"event","type":"payment_intent.succeeded"}`
				ts := strconv.FormatInt(now.Unix(), 10)
				return request{http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + hex.EncodeToString(hmacOf(sha256.New, "whsec_stripe-endpoint-secret", ts, ".", b))}}, b}
			},
			bad: func() request {
				b := `{"id":"evt_1Stripe","object":"event","type":"payment_intent.succeeded"}`
				ts := strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)
				return request{http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + hex.EncodeToString(hmacOf(sha256.New, "whsec_stripe-endpoint-secret", ts, ".", b))}}, b}
			},
		},
		{
			provider: "github",
			toml:     `secret = "It's a Secret to Everybody"`,
			typ:      "push", id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			good: func() request {
				b := `{"ref":"refs/heads/main","after":"abc"}`
				return request{http.Header{
					"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(hmacOf(sha256.New, "It's a Secret to Everybody", b))},
					"X-Github-Event":      {"push"}, "X-Github-Delivery": {"72d3162e-cc78-11e3-81ab-4c9367dc0958"},
				}, b}
			},
			bad: func() request {
				b := `{"ref":"refs/heads/main","after":"abc"}`
				return request{http.Header{
					"X-Hub-Signature": {"sha1=" + hex.EncodeToString(hmacOf(sha256.New, "It's a Secret to Everybody", b))},
					"X-Github-Event":  {"push"}, "X-Github-Delivery": {"72d3162e-cc78-11e3-81ab-4c9367dc0958"},
				}, b}
			},
		},
		{
			provider: "hmac",
			toml:     "secret = \"generic-secret\"\nheader = \"X-Payload-Signature\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\nprefix = \"v1=\"\ntype_path = \"meta.event\"\nid_path = \"meta.id\"",
			typ:      "invoice.paid", id: "42",
			good: func() request {
				b := `{"meta":{"event":"invoice.paid","id":42},"invoice":{"total":10}}`
				return request{http.Header{"X-Payload-Signature": {"v1=" + base64.StdEncoding.EncodeToString(hmacOf(sha512.New, "generic-secret", b))}}, b}
			},
			bad: func() request {
				b := `{"meta":{"event":"invoice.paid","id":42},"invoice":{"total":10}}`
				return request{http.Header{"X-Payload-Signature": {"v1=" + base64.StdEncoding.EncodeToString(hmacOf(sha256.New, "generic-secret", b))}}, b}
			},
		},
		{
			provider: "basic",
			toml:     "username = \"forms\"\npassword = \"forms-password\"",
			typ:      "form.submitted", id: "f_1",
			good: func() request {
				return request{http.Header{"Authorization": {basic("forms", "forms-password")}}, `{"type":"form.submitted","id":"f_1"}`}
			},
			bad: func() request {
				return request{http.Header{"Authorization": {basic("forms", "forms-passwor")}}, `{"type":"form.submitted","id":"f_1"}`}
			},
		},
		{
			provider: "token",
			toml:     "token = \"crm-token-0123456789\"\nheader = \"X-Webhook-Token\"",
			typ:      "customer.updated", id: "cu_1",
			good: func() request {
				return request{http.Header{"X-Webhook-Token": {"crm-token-0123456789"}}, `{"type":"customer.updated","id":"cu_1"}`}
			},
			bad: func() request {
				return request{http.Header{"Authorization": {"Bearer crm-token-0123456789"}}, `{"type":"customer.updated","id":"cu_1"}`}
			},
		},
		{
			provider: "none", // allowed: the test relay listens on loopback
			typ:      "lan.ping",
			good:     func() request { return request{http.Header{}, `{"type":"lan.ping"}`} },
		},
	}
	var toml strings.Builder
	receivers := map[string]*receiver{}
	for _, tt := range tests {
		rc := newReceiver(t, nil)
		receivers[tt.provider] = rc
		fmt.Fprintf(&toml, "\n[[source]]\nname = %q\nprovider = %q\n%s\n", tt.provider, tt.provider, tt.toml)
		fmt.Fprintf(&toml, "\n[[hook]]\nname = %q\nurl = %q\nevents = [%q]\nsources = [%q]\n", tt.provider, rc.srv.URL, tt.typ, tt.provider)
	}
	n := startRelay(t, t.TempDir(), toml.String())
	for _, tt := range tests {
		t.Run(tt.provider, func(t *testing.T) {
			if tt.bad != nil {
				r := tt.bad()
				if status, out := n.postIn(tt.provider, r.h, []byte(r.body)); status != 401 {
					t.Fatalf("unsigned request: %d %v", status, out)
				}
			}
			r := tt.good()
			status, out := n.postIn(tt.provider, r.h, []byte(r.body))
			if status != 200 || out["deliveries"] != 1.0 {
				t.Fatalf("signed request: %d %v", status, out)
			}
			rc := receivers[tt.provider]
			waitFor(t, "delivery", 10*time.Second, func() bool { return rc.delivered() == 1 })
			got := rc.requests()[0]
			if string(got.body) != r.body {
				t.Errorf("body %q, want %q", got.body, r.body)
			}
			id := got.header.Get("webhook-id")
			if tt.id != "" && id != tt.id || tt.id == "" && !strings.HasPrefix(id, "evt_") {
				t.Errorf("webhook-id %q, want %q", id, tt.id)
			}
		})
	}
}

func TestInboundStoreFailureAnswers503(t *testing.T) {
	n := startRelay(t, t.TempDir(), fmt.Sprintf("[[source]]\nname = \"tilled\"\nprovider = \"tilled\"\nsecret = %q\n", tilledSecret))
	if err := n.store.Close(); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"evt_1","type":"charge.succeeded"}`)
	status, out := n.postIn("tilled", tilledHeaders(tilledSecret, body, time.Now()), body)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("closed store: %d %v", status, out)
	}
}

func TestInboundForwardHeaders(t *testing.T) {
	dir := t.TempDir()
	// The first attempt to "app" fails, so its retry is made after a
	// restart, from what the store kept.
	app := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	})
	other := newReceiver(t, nil)
	cfg := fmt.Sprintf(`
[[source]]
name = "tilled"
provider = "tilled"
secret = %q

[[hook]]
name = "app"
url = %q
events = ["*"]
secret = %q
forward_headers = ["Tilled-Signature", "X-Request-Id"]
retry = ["500ms"]

[[hook]]
name = "other"
url = %q
events = ["*"]
`, tilledSecret, app.srv.URL, testSecret, other.srv.URL)
	n := startRelay(t, dir, cfg)
	body := []byte(`{"id":"evt_fwd","type":"charge.succeeded","account_id":"acct_1"}`)
	h := tilledHeaders(tilledSecret, body, time.Now())
	h.Add("X-Request-Id", "req-1")
	h.Add("X-Request-Id", "req-2")
	h.Set("X-Not-Asked", "secret-ish")
	if status, out := n.postIn("tilled", h, body); status != http.StatusOK {
		t.Fatalf("answer %d %v", status, out)
	}
	waitFor(t, "first attempt", 10*time.Second, func() bool { return len(app.requests()) == 1 && other.delivered() == 1 })
	n.stop()
	n = startRelay(t, dir, cfg)
	waitFor(t, "retry after restart", 10*time.Second, func() bool { return app.delivered() == 1 })

	for i, got := range app.requests() {
		if v := got.header.Get("Tilled-Signature"); v != h.Get("Tilled-Signature") {
			t.Errorf("attempt %d: Tilled-Signature = %q, want the provider's %q", i+1, v, h.Get("Tilled-Signature"))
		}
		if v := got.header.Values("X-Request-Id"); !slices.Equal(v, []string{"req-1", "req-2"}) {
			t.Errorf("attempt %d: X-Request-Id = %q", i+1, v)
		}
		if v := got.header.Get("X-Not-Asked"); v != "" {
			t.Errorf("attempt %d: a header not in forward_headers was forwarded", i+1)
		}
		key, _ := relay.DecodeStandardSecret(testSecret)
		if err := relay.VerifyStandard([][]byte{key}, got.header, got.body, time.Now(), time.Minute); err != nil {
			t.Errorf("attempt %d: the relay's own signature does not verify: %v", i+1, err)
		}
	}
	if got := other.requests()[0].header; got.Get("Tilled-Signature") != "" || got.Get("X-Request-Id") != "" {
		t.Errorf("a hook without forward_headers got the provider's headers: %v", got)
	}
}
