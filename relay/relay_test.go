package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hookrelay/relay"
	"hookrelay/store"
)

const token = "test-publisher-token-0123456789"

// node is one running relay over a real bbolt file and a real HTTP server.
type node struct {
	t     *testing.T
	cfg   *relay.Config
	store *store.Store
	relay *relay.Relay
	srv   *httptest.Server
	once  sync.Once
}

// startRelay starts a relay on dir with the given hook tables (TOML).
func startRelay(t *testing.T, dir, hooks string) *node {
	t.Helper()
	toml := fmt.Sprintf(`
[server]
data_dir = %q
max_body = "4KiB"
shutdown_timeout = "5s"

[[publisher]]
name = "pos"
token = %q
%s`, dir, token, hooks)
	cfg, err := relay.LoadBytes("test.toml", []byte(toml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	r, err := relay.New(cfg, st, relay.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cfg: cfg, store: st, relay: r, srv: httptest.NewServer(r.Handler())}
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.once.Do(func() {
		n.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.relay.Shutdown(ctx); err != nil {
			n.t.Errorf("shutdown: %v", err)
		}
		if err := n.store.Close(); err != nil {
			n.t.Errorf("close store: %v", err)
		}
	})
}

func (n *node) post(auth, contentType, body string) (*http.Response, map[string]any) {
	n.t.Helper()
	req, _ := http.NewRequest("POST", n.srv.URL+"/v1/events", strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		n.t.Fatalf("response %d is not JSON: %q", resp.StatusCode, b)
	}
	return resp, out
}

func (n *node) publish(body string) map[string]any {
	n.t.Helper()
	resp, out := n.post("Bearer "+token, "application/json", body)
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		n.t.Fatalf("publish %s: %d %v", body, resp.StatusCode, out)
	}
	return out
}

// publishConcurrently publishes body(0) to body(count-1) from workers
// goroutines at once and returns when all are answered.
func (n *node) publishConcurrently(count, workers int, body func(i int) string) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += workers {
				n.publish(body(i))
			}
		}()
	}
	wg.Wait()
}

func (n *node) counts() store.Counts {
	n.t.Helper()
	c, err := n.store.Counts(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

// receiver records deliveries; respond decides each answer.
type receiver struct {
	mu      sync.Mutex
	got     []received
	byID    map[string]int
	respond func(w http.ResponseWriter, r *http.Request, n int) bool // true: counted as delivered
	srv     *httptest.Server
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

func newReceiver(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, n int) bool) *receiver {
	rc := &receiver{byID: map[string]int{}, respond: respond}
	var calls atomic.Int64
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ok := true
		if rc.respond != nil {
			ok = rc.respond(w, r, int(calls.Add(1)))
		} else {
			w.WriteHeader(http.StatusNoContent)
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body, at: time.Now()})
		if ok {
			rc.byID[r.Header.Get("webhook-id")]++
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.byID)
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestPublishDeliversSignedEvent(t *testing.T) {
	rc := newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "crm"
url = %q
events = ["payment.*"]
secret = %q
auth = { type = "basic", username = "relay", password = "pw-0123456789" }
headers = { "X-Tenant" = "shop-1" }

[[hook]]
name = "refunds-only"
url = %q
events = ["refund.*"]
`, rc.srv.URL+"/hooks", testSecret, rc.srv.URL+"/refunds"))

	out := n.publish(`{"type":"payment.succeeded","id":"pay_123","data":{"amount": 1200, "currency":"EUR"}}`)
	if out["id"] != "pay_123" || out["deliveries"] != 1.0 {
		t.Fatalf("response = %v", out)
	}
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.delivered() == 1 })

	got := rc.requests()[0]
	h := got.header
	if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "hookrelay/test" {
		t.Errorf("content-type %q user-agent %q", h.Get("Content-Type"), h.Get("User-Agent"))
	}
	if h.Get("webhook-id") != "pay_123" || h.Get("X-Tenant") != "shop-1" {
		t.Errorf("webhook-id %q x-tenant %q", h.Get("webhook-id"), h.Get("X-Tenant"))
	}
	if u, p, ok := (&http.Request{Header: h}).BasicAuth(); !ok || u != "relay" || p != "pw-0123456789" {
		t.Errorf("basic auth = %q %q %v", u, p, ok)
	}
	key, _ := relay.DecodeStandardSecret(testSecret)
	if err := relay.VerifyStandard([][]byte{key}, h, got.body, time.Now(), time.Minute); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	var body struct {
		ID, Type, Timestamp string
		Data                map[string]any
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.ID != "pay_123" || body.Type != "payment.succeeded" || body.Data["amount"] != 1200.0 || body.Data["currency"] != "EUR" {
		t.Errorf("body = %s", got.body)
	}
	if ts, err := time.Parse(time.RFC3339Nano, body.Timestamp); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("timestamp %q: %v", body.Timestamp, err)
	}

	// No id given: one is generated and used as webhook-id.
	out = n.publish(`{"type":"payment.failed"}`)
	id, _ := out["id"].(string)
	if !strings.HasPrefix(id, "evt_") {
		t.Fatalf("generated id = %q", id)
	}
	waitFor(t, "second delivery", 10*time.Second, func() bool { return rc.delivered() == 2 })
	if rc.requests()[1].header.Get("webhook-id") != id {
		t.Errorf("webhook-id %q, want %q", rc.requests()[1].header.Get("webhook-id"), id)
	}
	// An event no hook subscribes to is accepted with no deliveries.
	if out := n.publish(`{"type":"customer.updated"}`); out["deliveries"] != 0.0 {
		t.Fatalf("unrouted event = %v", out)
	}
}

func TestHMACSignatureAndBearer(t *testing.T) {
	rc := newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "legacy"
url = %q
events = ["*"]
signature = "hmac-sha256"
secret = "usaepay-style-secret-0123"
auth = { type = "bearer", token = "bearer-token-xyz" }
`, rc.srv.URL))
	n.publish(`{"type":"transaction.sale.success","data":{"amount":"10.00"}}`)
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.delivered() == 1 })
	got := rc.requests()[0]
	if want := relay.SignHMACSHA256([]byte("usaepay-style-secret-0123"), got.body); got.header.Get("X-Signature") != want {
		t.Errorf("X-Signature = %q, want %q", got.header.Get("X-Signature"), want)
	}
	if got.header.Get("Authorization") != "Bearer bearer-token-xyz" || got.header.Get("webhook-signature") != "" {
		t.Errorf("headers = %v", got.header)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	rc := newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "all"
url = %q
events = ["*"]
`, rc.srv.URL))
	bearer := "Bearer " + token
	tests := []struct {
		name, auth, body string
		status           int
		msg              string
	}{
		{"no token", "", `{"type":"a"}`, 401, "token"},
		{"wrong token", "Bearer nope-nope-nope-nope", `{"type":"a"}`, 401, "token"},
		{"basic instead of bearer", "Basic cG9zOnBvcw==", `{"type":"a"}`, 401, "token"},
		{"malformed JSON", bearer, `{"type":"a"`, 400, "malformed JSON"},
		{"not an object", bearer, `["type","a"]`, 400, "JSON object"},
		{"string", bearer, `"a"`, 400, "JSON object"},
		{"empty", bearer, ``, 400, "empty"},
		{"missing type", bearer, `{"data":{}}`, 400, `missing "type"`},
		{"type not a string", bearer, `{"type":5}`, 400, `"type" must be a string`},
		{"type null", bearer, `{"type":null}`, 400, `"type" must be a string`},
		{"type twice", bearer, `{"type":"a","type":"b"}`, 400, "twice"},
		{"empty type", bearer, `{"type":""}`, 400, "empty"},
		{"type with space", bearer, `{"type":"payment succeeded"}`, 400, "character"},
		{"type too long", bearer, `{"type":"` + strings.Repeat("a", 201) + `"}`, 400, "longer"},
		{"id not a string", bearer, `{"type":"a","id":7}`, 400, `"id" must be a string`},
		{"id with space", bearer, `{"type":"a","id":"a b"}`, 400, "printable"},
		{"unknown field", bearer, `{"type":"a","extra":1}`, 400, "unknown field"},
		{"trailing data", bearer, `{"type":"a"} {"type":"b"}`, 400, "malformed JSON"},
		{"invalid UTF-8", bearer, "{\"type\":\"a\",\"data\":\"\xff\xfe\"}", 400, "UTF-8"},
		{"too large", bearer, `{"type":"a","data":"` + strings.Repeat("x", 5000) + `"}`, 413, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := n.post(tt.auth, "application/json", tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%v)", resp.StatusCode, tt.status, out)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, tt.msg) {
				t.Fatalf("error = %q, want it to mention %q", msg, tt.msg)
			}
		})
	}
	// Chunked body over the limit (no Content-Length): refused while reading.
	req, _ := http.NewRequest("POST", n.srv.URL+"/v1/events", io.MultiReader(strings.NewReader(`{"type":"a","data":"`), strings.NewReader(strings.Repeat("x", 8000)+`"}`)))
	req.Header.Set("Authorization", bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversize = %d", resp.StatusCode)
	}
	if c := n.counts(); c.Events != 0 || c.Pending != 0 {
		t.Fatalf("refused requests left a trace: %+v", c)
	}
	// And the relay keeps serving.
	n.publish(`{"type":"ok"}`)
	waitFor(t, "delivery after refusals", 10*time.Second, func() bool { return rc.delivered() == 1 })
	if c := n.counts(); c.Events != 1 {
		t.Fatalf("events = %d, want 1", c.Events)
	}
}

func TestRoutesAndMethods(t *testing.T) {
	n := startRelay(t, t.TempDir(), "")
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/healthz", 200},
		{"POST", "/in/tilled", 404},
		{"GET", "/v1/events", 405},
		{"GET", "/nope", 404},
	} {
		req, _ := http.NewRequest(tt.method, n.srv.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
}

func TestDuplicateIDStoredOnce(t *testing.T) {
	rc := newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "all"
url = %q
events = ["*"]
`, rc.srv.URL))
	first := n.publish(`{"type":"payment.succeeded","id":"dup-1"}`)
	resp, second := n.post("Bearer "+token, "", `{"type":"payment.succeeded","id":"dup-1"}`)
	if resp.StatusCode != 200 || second["duplicate"] != true || second["id"] != "dup-1" || first["duplicate"] != nil {
		t.Fatalf("first %v, second %d %v", first, resp.StatusCode, second)
	}
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.delivered() == 1 })
	time.Sleep(100 * time.Millisecond)
	if got := len(rc.requests()); got != 1 {
		t.Fatalf("receiver got %d requests, want 1", got)
	}
	if c := n.counts(); c.Events != 1 {
		t.Fatalf("events stored = %d", c.Events)
	}
}

// A receiver failing 30% of requests with 500, 503 or a dropped connection
// still gets every event.
func TestFlakyReceiverGetsEverything(t *testing.T) {
	var failures atomic.Int64
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if rand.Float64() >= 0.3 {
			w.WriteHeader(http.StatusOK)
			return true
		}
		failures.Add(1)
		switch rand.IntN(3) {
		case 0:
			w.WriteHeader(http.StatusInternalServerError)
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}
		return false
	})
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "flaky"
url = %q
events = ["*"]
secret = %q
concurrency = 4
retry = ["10ms", "20ms", "40ms", "80ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms"]
`, rc.srv.URL, testSecret))
	const events = 300
	n.publishConcurrently(events, 8, func(i int) string { return fmt.Sprintf(`{"type":"payment.succeeded","id":"e%d"}`, i) })
	waitFor(t, "all events delivered", 60*time.Second, func() bool { return rc.delivered() == events })
	for i := range events {
		if rc.byID[fmt.Sprintf("e%d", i)] == 0 {
			t.Fatalf("event e%d never delivered", i)
		}
	}
	if failures.Load() == 0 {
		t.Fatal("receiver never failed: the test did not exercise retries")
	}
	waitFor(t, "queue empty", 10*time.Second, func() bool { return n.counts().Pending == 0 })
	if c := n.counts(); c.Dead != 0 {
		t.Fatalf("dead letters = %d", c.Dead)
	}
	t.Logf("%d events, %d failed requests, %d requests in all", events, failures.Load(), len(rc.requests()))
}

func TestRetryAfterIsHonoured(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, call int) bool {
		if call == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return false
		}
		w.WriteHeader(http.StatusOK)
		return true
	})
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "limited"
url = %q
events = ["*"]
retry = ["10ms", "3s"]
`, rc.srv.URL))
	n.publish(`{"type":"a"}`)
	waitFor(t, "delivery", 10*time.Second, func() bool { return rc.delivered() == 1 })
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d, want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < time.Second {
		t.Fatalf("retry came %v after a 429 with Retry-After: 1", gap)
	}
	if reqs[0].header.Get("webhook-id") != reqs[1].header.Get("webhook-id") {
		t.Fatal("webhook-id changed between attempts")
	}
}

func TestRedirectIsAFailureAndDeadLetters(t *testing.T) {
	var followed atomic.Bool
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return true
		}
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(http.StatusFound)
		io.WriteString(w, "moved")
		return false
	})
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "moved"
url = %q
events = ["*"]
retry = ["10ms", "10ms"]
`, rc.srv.URL+"/hook"))
	n.publish(`{"type":"a"}`)
	waitFor(t, "dead letter", 10*time.Second, func() bool { return n.counts().Dead == 1 })
	if followed.Load() {
		t.Fatal("redirect was followed")
	}
	dead, err := n.store.Dead(context.Background(), 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead = %v, %v", dead, err)
	}
	info, attempts, err := n.store.Task(context.Background(), dead[0].TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != relay.StateDead || info.Attempts != 3 || len(attempts) != 3 {
		t.Fatalf("task %+v with %d attempts, want dead after 3", info, len(attempts))
	}
	for i, a := range attempts {
		if a.N != i+1 || a.Status != 302 || !strings.Contains(a.Error, "redirect") || !strings.Contains(a.Error, "/elsewhere") || a.Excerpt != "moved" {
			t.Errorf("attempt %d = %+v", i, a)
		}
	}
	if c := n.counts(); c.Pending != 0 || c.Events != 1 {
		t.Fatalf("counts = %+v; the dead letter's event must be kept", c)
	}
}

func TestSlowReceiverTimesOut(t *testing.T) {
	release := make(chan struct{})
	stall := func() {
		select { // far longer than the hook's timeout
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 1 {
			stall() // no answer at all
			return false
		}
		// An answer whose body never ends: the attempt's deadline cuts it.
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "accepted; and then")
		w.(http.Flusher).Flush()
		stall()
		return true
	})
	t.Cleanup(func() { close(release) }) // before the receiver's Close
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "slow"
url = %q
events = ["*"]
timeout = "300ms"
retry = ["10ms"]
`, rc.srv.URL))
	n.publish(`{"type":"a"}`)
	var info relay.TaskInfo
	var attempts []relay.Attempt
	waitFor(t, "the outcome of the retry", 5*time.Second, func() bool {
		var err error
		// The store numbers the first event's delivery to its only hook 1<<10.
		info, attempts, err = n.store.Task(context.Background(), 1<<10)
		return err == nil && info.State == relay.StateDelivered
	})
	if len(attempts) != 2 {
		t.Fatalf("attempts = %+v, want a timed-out one and a delivered one", attempts)
	}
	if a := attempts[0]; a.Status != 0 || !strings.Contains(a.Error, "timeout") || a.Latency < 300*time.Millisecond || a.Latency > 3*time.Second {
		t.Errorf("first attempt = %+v, want a timeout after about 300ms", a)
	}
	// A 2xx counts even if its body is cut: the receiver said yes.
	if a := attempts[1]; a.Status != http.StatusOK || a.Error != "" || a.Excerpt != "accepted; and then" || a.Latency > 3*time.Second {
		t.Errorf("second attempt = %+v, want 200 cut after about 300ms", a)
	}
}

func TestQueueSurvivesRestartAndUnconfiguredHookIsKept(t *testing.T) {
	dir := t.TempDir()
	rc, rcERP := newReceiver(t, nil), newReceiver(t, nil)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connection refused from now on

	hook := func(name, url string) string {
		return fmt.Sprintf("\n[[hook]]\nname = %q\nurl = %q\nevents = [\"*\"]\nretry = [\"300ms\", \"300ms\", \"300ms\"]\n", name, url)
	}
	n := startRelay(t, dir, hook("crm", downURL)+hook("erp", downURL))
	for i := range 20 {
		n.publish(fmt.Sprintf(`{"type":"a","id":"q%d"}`, i))
	}
	n.stop()

	// erp removed: its deliveries are kept and reported; crm's arrive.
	n = startRelay(t, dir, hook("crm", rc.srv.URL))
	gone, err := n.relay.QueuedUnconfigured(context.Background())
	if err != nil || fmt.Sprint(gone) != "[erp]" {
		t.Fatalf("unconfigured queued hooks = %v, %v", gone, err)
	}
	waitFor(t, "crm deliveries after restart", 10*time.Second, func() bool { return rc.delivered() == 20 })
	// What stays queued is erp's 20, once crm's outcomes are committed.
	waitFor(t, "crm outcomes recorded", 10*time.Second, func() bool { return n.counts().Pending == 20 })
	time.Sleep(200 * time.Millisecond)
	if c := n.counts(); c.Pending != 20 {
		t.Fatalf("pending = %d, want erp's 20 kept", c.Pending)
	}
	n.stop()

	// erp configured again: its deliveries arrive too.
	n = startRelay(t, dir, hook("crm", rc.srv.URL)+hook("erp", rcERP.srv.URL))
	waitFor(t, "erp deliveries", 10*time.Second, func() bool { return n.counts().Pending == 0 })
	if c := n.counts(); c.Events != 20 || c.Dead != 0 {
		t.Fatalf("counts = %+v", c)
	}
	if got := rcERP.delivered(); got != 20 {
		t.Fatalf("erp got %d events, want 20", got)
	}
}

func TestStoreFailureAnswers503(t *testing.T) {
	n := startRelay(t, t.TempDir(), "")
	if err := n.store.Close(); err != nil {
		t.Fatal(err)
	}
	resp, out := n.post("Bearer "+token, "", `{"type":"a"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("publish with a closed store = %d %v (Retry-After %q)", resp.StatusCode, out, resp.Header.Get("Retry-After"))
	}
}

// A drain that runs out of time abandons the attempt in flight without
// recording it: the delivery stays queued as it was, for the next start.
func TestShutdownDeadlineAbandonsWithoutRecording(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) bool {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	})
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "stuck"
url = %q
events = ["*"]
timeout = "1m"
`, rc.srv.URL))
	n.publish(`{"type":"a","id":"stuck-1"}`)
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery never arrived")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := n.relay.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("shutdown = %v, want an abandoned-deliveries error", err)
	}
	c := n.counts()
	if c.Pending != 1 || c.Dead != 0 {
		t.Fatalf("counts = %+v, want the delivery still pending", c)
	}
	dead, _ := n.store.Dead(context.Background(), 10)
	if len(dead) != 0 {
		t.Fatalf("dead letters: %v", dead)
	}
	got, _, err := n.store.Claim(context.Background(), "stuck", time.Now().Add(time.Hour), 10, nil)
	if err != nil || len(got) != 1 || got[0].Attempts != 0 {
		t.Fatalf("queued = %+v, %v; want one delivery with no attempt recorded", got, err)
	}
}

// Publish requests are read and built in recycled buffers: many
// concurrent publishers with bodies of different sizes and contents must
// each get exactly their own data delivered.
func TestConcurrentPublishersGetTheirOwnBodies(t *testing.T) {
	rc := newReceiver(t, nil)
	n := startRelay(t, t.TempDir(), fmt.Sprintf(`
[[hook]]
name = "all"
url = %q
events = ["*"]
secret = %q
concurrency = 8
`, rc.srv.URL, testSecret))
	const events = 200
	data := func(i int) string {
		return fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat(string(rune('a'+i%26)), (i*37)%3000))
	}
	n.publishConcurrently(events, 8, func(i int) string { return fmt.Sprintf(`{"type":"t.x","id":"e%d","data":%s}`, i, data(i)) })
	waitFor(t, "all events delivered", 30*time.Second, func() bool { return rc.delivered() == events })
	for _, r := range rc.requests() {
		var got struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatalf("delivery %q is not JSON: %v", r.body, err)
		}
		var i int
		if _, err := fmt.Sscanf(got.ID, "e%d", &i); err != nil || got.ID != r.header.Get("webhook-id") {
			t.Fatalf("delivery id %q, webhook-id %q", got.ID, r.header.Get("webhook-id"))
		}
		if string(got.Data) != data(i) {
			t.Fatalf("event %s delivered with data of %d bytes, want its own %d", got.ID, len(got.Data), len(data(i)))
		}
	}
}
