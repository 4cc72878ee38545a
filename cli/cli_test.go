package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hookrelay/bench"
)

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[server]\nlisten = \"127.0.0.1:9999\"\n\n[[hook]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\nevents = [\"*\"]\n"), 0o600)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[server]\nlisten = \"nope\"\nextra = true\n"), 0o600)

	var out, errOut bytes.Buffer
	c := &CheckCommand{Stdout: &out, Stderr: &errOut}
	if err := c.Run(context.Background(), []string{"-config", good}); err != nil {
		t.Fatalf("good config: %v (%s)", err, errOut.String())
	}
	if !strings.Contains(out.String(), good+": ok: listen 127.0.0.1:9999") || !strings.Contains(out.String(), "0 source(s), 1 hook(s)") {
		t.Fatalf("summary = %q", out.String())
	}

	out.Reset()
	errOut.Reset()
	if err := c.Run(context.Background(), []string{"-config", bad}); !errors.Is(err, ErrReported) {
		t.Fatalf("bad config err = %v", err)
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], bad+":2: server.listen:") || !strings.HasPrefix(lines[1], bad+":3: server.extra:") {
		t.Fatalf("problems = %q", errOut.String())
	}

	if err := c.Run(context.Background(), nil); !errors.Is(err, ErrUsage) {
		t.Fatalf("no -config: %v", err)
	}
	if err := c.Run(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	if err := (&VersionCommand{Stdout: &out}).Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "hookrelay ") || len(strings.TrimSpace(out.String())) <= len("hookrelay ") {
		t.Fatalf("version = %q", out.String())
	}
	if err := (&VersionCommand{Stdout: &out}).Run(context.Background(), []string{"x"}); !errors.Is(err, ErrUsage) {
		t.Fatalf("extra argument: %v", err)
	}
}

func TestServeRefusesBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	s := &ServeCommand{Stdout: &out, Stderr: &errOut}
	for _, args := range [][]string{{"-log-level", "loud"}, {"-log-format", "xml"}, {"stray"}} {
		errOut.Reset()
		if err := s.Run(context.Background(), args); !errors.Is(err, ErrUsage) {
			t.Fatalf("%v: err = %v", args, err)
		}
		if !strings.Contains(errOut.String(), "usage: hookrelay") {
			t.Fatalf("%v: no usage printed: %q", args, errOut.String())
		}
	}
}

func TestBenchRefusesBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	b := &BenchCommand{Stdout: &out, Stderr: &errOut}
	for _, args := range [][]string{{"-size", "0"}, {"-publishers", "-1"}, {"-hooks", "0"}, {"-backlog", "-5"}, {"-rounds", "0"}, {"extra"}} {
		if err := b.Run(context.Background(), args); !errors.Is(err, ErrUsage) {
			t.Fatalf("%v: err = %v", args, err)
		}
	}
}

func TestPrintBench(t *testing.T) {
	r := &bench.Result{HTTPCeilingPerS: 20000, FsyncPerSec: 5000, BoltCommitsPerS: 900, IngestVsCeiling: 0.4}
	r.Config.Publishers, r.Config.Size, r.Config.Hooks = 64, 1024, 1
	r.Ingest.EventsPerSec = 8000
	r.Ingest.EventsPerCommit = 12.5
	r.Ingest.Ack = bench.Dist{P50: 5 * time.Millisecond, P99: 20 * time.Millisecond, Max: 30 * time.Millisecond}
	r.Backlog = &bench.Backlog{Queued: 1000000, MaxRSS: 150 << 20, MaxRSSAnon: 100 << 20, SmallQueue: 10000}
	r.IngestVsCeilingByRound = []float64{0.41, 0.38, 0.45}
	var out bytes.Buffer
	printBench(&out, r)
	for _, want := range []string{"20000 req/s", "8000 events/s", "0.40 x HTTP ceiling", "0.41 0.38 0.45 (0.38-0.45)", "p50 5ms", "12.5 events each", "1000000 deliveries queued", "150 MiB (anonymous 100 MiB)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
