package relay_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"hookrelay/relay"
	"hookrelay/store"
)

// TestHealthReportsChecks checks that a failing health check turns the
// status to "degraded" with its report, while /healthz stays 200.
func TestHealthReportsChecks(t *testing.T) {
	dir := t.TempDir()
	cfg, err := relay.LoadBytes("", []byte("[server]\ndata_dir = \""+dir+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var healthy atomic.Bool
	check := func() (any, bool) {
		if healthy.Load() {
			return map[string]string{"state": "valid"}, true
		}
		return map[string]string{"state": "failed", "error": "no certificate"}, false
	}
	r, err := relay.New(cfg, st, relay.Options{Health: []relay.HealthCheck{{Name: "tls", Check: check}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	get := func() (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	code, body := get()
	tls, _ := body["tls"].(map[string]any)
	if code != 200 || body["status"] != "degraded" || tls["state"] != "failed" || tls["error"] != "no certificate" {
		t.Fatalf("failing check: %d %v", code, body)
	}
	healthy.Store(true)
	code, body = get()
	tls, _ = body["tls"].(map[string]any)
	if code != 200 || body["status"] != "ok" || tls["state"] != "valid" {
		t.Fatalf("passing check: %d %v", code, body)
	}
}
