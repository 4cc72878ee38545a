package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hookrelay/store"
	"hookrelay/tls/acmetest"
)

// These tests run the real binary as a subprocess.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short mode")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hookrelay-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hookrelay")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// freePort returns a loopback address no listener has and no earlier
// call returned.
func freePort(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", acmetest.FreePort(t))
}

const testToken = "kill-test-publisher-token-0123"

func writeConfig(t *testing.T, dir, listen, hookURL, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
[server]
listen = %q
data_dir = "data"
shutdown_timeout = "10s"

[[publisher]]
name = "pos"
token = %q

[[hook]]
name = "sink"
url = %q
events = ["*"]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
concurrency = 8
retry = ["50ms", "100ms", "200ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s"]
%s`, listen, testToken, hookURL, extra)
	path := filepath.Join(dir, "hookrelay.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a running relay subprocess.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("relay output:\n%s", p.stderr.String())
		}
	})
	return p
}

func waitHealthy(t *testing.T, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("relay exited before becoming healthy: %v\n%s", err, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("relay not healthy after 20s\n%s", p.stderr.String())
}

// ledger records what the relay acknowledged and what the receiver got.
type ledger struct {
	mu       sync.Mutex
	acked    map[string]bool
	received map[string]int
}

func (l *ledger) ack(id string) {
	l.mu.Lock()
	l.acked[id] = true
	l.mu.Unlock()
}

func (l *ledger) missing() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.acked {
		if l.received[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestKill9LosesNothing publishes under load, SIGKILLs the relay at random
// moments several times, restarts it, and checks that every acknowledged
// event reached the receiver.
func TestKill9LosesNothing(t *testing.T) {
	dir := t.TempDir()
	l := &ledger{acked: map[string]bool{}, received: map[string]int{}}
	var slow atomic.Bool
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if slow.Load() && rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		}
		l.mu.Lock()
		l.received[r.Header.Get("webhook-id")]++
		l.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rc.Close()
	addr := freePort(t)
	cfg := writeConfig(t, dir, addr, rc.URL, "")
	client := &http.Client{Timeout: 5 * time.Second}

	const rounds = 5
	var seq atomic.Int64
	for round := range rounds {
		slow.Store(round%2 == 1)
		p := startProc(t, "serve", "-config", cfg, "-log-level", "warn")
		waitHealthy(t, p, addr)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					id := fmt.Sprintf("k%d", seq.Add(1))
					req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/events",
						strings.NewReader(`{"type":"payment.succeeded","id":"`+id+`","data":{"n":1}}`))
					req.Header.Set("Authorization", "Bearer "+testToken)
					resp, err := client.Do(req)
					if err != nil {
						if ctx.Err() != nil {
							return
						}
						time.Sleep(10 * time.Millisecond) // the relay is down
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK {
						l.ack(id)
					}
				}
			}()
		}
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.done <- nil
		cancel()
		wg.Wait()
	}

	p := startProc(t, "serve", "-config", cfg, "-log-level", "warn")
	waitHealthy(t, p, addr)
	deadline := time.Now().Add(60 * time.Second)
	for len(l.missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	missing := l.missing()
	l.mu.Lock()
	acked, dups := len(l.acked), 0
	for _, n := range l.received {
		if n > 1 {
			dups++
		}
	}
	l.mu.Unlock()
	t.Logf("%d kills, %d events acknowledged, %d lost, %d delivered more than once", rounds, acked, len(missing), dups)
	if acked < 100 {
		t.Fatalf("only %d events acknowledged: the load did not run", acked)
	}
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged events never delivered, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	p.done <- nil
}

// TestSIGTERMDrainsInFlight checks that a delivery in flight when SIGTERM
// arrives completes and is recorded, and the store is closed cleanly.
func TestSIGTERMDrainsInFlight(t *testing.T) {
	dir := t.TempDir()
	arrived := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(arrived)
			<-release
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer rc.Close()
	addr := freePort(t)
	cfg := writeConfig(t, dir, addr, rc.URL, "")
	p := startProc(t, "serve", "-config", cfg)
	waitHealthy(t, p, addr)

	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/events", strings.NewReader(`{"type":"a","id":"drain-1"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery never arrived")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-p.done:
		t.Fatalf("relay exited with a delivery in flight: %v", err)
	default:
	}
	close(release)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("relay did not exit after the drain")
	}
	// The store was closed cleanly (the lock is free) and the delivery
	// is recorded as done.
	st, err := store.Open(filepath.Join(dir, "data"), store.Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	c, err := st.Counts(context.Background())
	if err != nil || c.Events != 1 || c.Pending != 0 {
		t.Fatalf("after drain: %+v, %v; want 1 event, 0 pending", c, err)
	}
	if calls.Load() != 1 {
		t.Fatalf("receiver called %d times", calls.Load())
	}
}

// TestSecondInstanceFailsFast checks that a second relay on the same data
// directory exits at once with a clear message instead of hanging.
func TestSecondInstanceFailsFast(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	cfg := writeConfig(t, dir, addr, "http://127.0.0.1:9/", "")
	first := startProc(t, "serve", "-config", cfg)
	waitHealthy(t, first, addr)

	start := time.Now()
	second := startProc(t, "serve", "-config", cfg)
	select {
	case err := <-second.done:
		second.done <- err
		if err == nil {
			t.Fatal("second instance exited 0")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second instance is hanging")
	}
	if !strings.Contains(second.stderr.String(), "in use by another process") {
		t.Fatalf("second instance said: %s", second.stderr.String())
	}
	t.Logf("second instance refused in %v", time.Since(start).Round(time.Millisecond))
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, dir, "127.0.0.1:8080", "http://127.0.0.1:9/", "")
	out, err := exec.Command(binary(t), "check", "-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("check good config: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[server]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n\n[[hook]]\nname = \"x\"\nurl = \"ftp://example.com\"\nevents = []\n"), 0o600)
	cmd := exec.Command(binary(t), "check", "-config", bad)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check bad config: err %v\n%s", err, out)
	}
	for _, want := range []string{bad + ":3: server.bogus:", bad + ":7: hook[0].url:", bad + ":8: hook[0].events:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// serve refuses the same file the same way, without starting.
	out, err = exec.Command(binary(t), "serve", "-config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), bad+":3: server.bogus:") {
		t.Fatalf("serve bad config: err %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Fatalf("serve with a bad config created the data dir: %v", err)
	}
}

// TestDemoDefault runs the binary with no config, as the README does, and
// checks that a published event is delivered to the demo receiver and
// verified.
func TestDemoDefault(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary(t))
	cmd.Dir = dir
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if ln, err := net.Listen("tcp", "127.0.0.1:8080"); err != nil {
		t.Skipf("port 8080 is taken on this machine: %v", err)
	} else {
		ln.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
	}()
	waitHealthy(t, p, "127.0.0.1:8080")
	req, _ := http.NewRequest("POST", "http://127.0.0.1:8080/v1/events", strings.NewReader(`{"type":"payment.succeeded","data":{"amount":1200}}`))
	req.Header.Set("Authorization", "Bearer hookrelay-demo-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish to demo: %v %v", resp, err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "demo receiver got a verified delivery") {
		if time.Now().After(deadline) {
			t.Fatalf("no verified delivery logged:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "hookrelay-data", store.FileName)); err != nil {
		t.Fatalf("demo data dir: %v", err)
	}
}
