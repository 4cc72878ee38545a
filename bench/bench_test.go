package bench

import (
	"context"
	"encoding/json"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"
)

// A small run of every phase: the figures are not judged (timing belongs
// to the bench itself), only that each phase ran and counted correctly.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every phase against real disks and sockets")
	}
	res, err := Run(context.Background(), Config{Events: 300, Size: 512, Publishers: 8, Hooks: 2, Backlog: 2400, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.FsyncPerSec <= 0 || res.HTTPCeilingPerS <= 0 || res.HTTPAnswerPerS <= 0 || res.HTTPAnswerCPU <= 0 || res.BoltCommitsPerS <= 0 {
		t.Fatalf("ceilings not measured: %+v", res)
	}
	in := res.Ingest
	if in.EventsPerSec <= 0 || in.Failed != 0 || in.EventsPerCommit < 1 || in.Ack.P50 <= 0 || in.Ack.P99 < in.Ack.P50 || in.Ack.Max < in.Ack.P99 {
		t.Fatalf("ingest = %+v", in)
	}
	// The log writer's time: writing is part of having calls in hand.
	if in.WriterBusy <= 0 || in.WriterActive < in.WriterBusy || in.WriterActive > 1.01 || in.WriterHeld < 0 || in.WriterHeld > in.WriterActive {
		t.Fatalf("log writer shares: writing %.3f, active %.3f, held %.3f", in.WriterBusy, in.WriterActive, in.WriterHeld)
	}
	if e := res.EndToEnd; e.Delivered != 300*2 || e.DeliveredPerSec <= 0 || e.Latency.P50 <= 0 || e.CPUPerDelivery <= 0 {
		t.Fatalf("end to end = %+v", e)
	}
	b := res.Backlog
	if b == nil || b.Queued != 2400 || b.FileBytes <= 0 || b.DrainPerSec <= 0 || b.SmallQueue != 2000 || b.Ready <= 0 || b.MaxRSS <= 0 {
		t.Fatalf("backlog = %+v", b)
	}
	// Every round has its ratios, and the event counts of the slices add
	// up to the phase's.
	if res.Config.Rounds != DefaultRounds || len(res.IngestVsCeilingByRound) != DefaultRounds || len(res.E2EVsCeilingByRound) != DefaultRounds {
		t.Fatalf("rounds %d, ratios by round %v and %v", res.Config.Rounds, res.IngestVsCeilingByRound, res.E2EVsCeilingByRound)
	}
	for i, r := range res.IngestVsCeilingByRound {
		if r <= 0 || res.E2EVsCeilingByRound[i] <= 0 {
			t.Fatalf("round %d: ratios %v and %v", i, res.IngestVsCeilingByRound, res.E2EVsCeilingByRound)
		}
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatal(err)
	}
}

// Slices of a phase given in events share them out exactly; given in
// time, each gets its part.
func TestSliceLoad(t *testing.T) {
	for _, tc := range []struct{ events, rounds int }{{300, 5}, {7, 3}, {1000, 7}} {
		sum := 0
		for i := range tc.rounds {
			l := sliceLoad(Config{Events: tc.events, Publishers: 1, Size: 64}, i, tc.rounds)
			if l.duration != 0 {
				t.Fatalf("%d events: slice %d has a duration", tc.events, i)
			}
			sum += l.events
		}
		if sum != tc.events {
			t.Fatalf("%d events in %d rounds: slices hold %d", tc.events, tc.rounds, sum)
		}
	}
	if l := sliceLoad(Config{Duration: 5 * time.Second}, 0, 5); l.duration != time.Second || l.events != 0 {
		t.Fatalf("5s in 5 rounds: slice of %v, %d events", l.duration, l.events)
	}
}

func TestEventBodySize(t *testing.T) {
	for _, size := range []int{256, 1024, 4096} {
		b := eventBody(12345, size)
		if len(b) != size || !json.Valid(b) {
			t.Fatalf("size %d: got %d bytes, valid %v", size, len(b), json.Valid(b))
		}
	}
}

func TestDist(t *testing.T) {
	if got := distOf(nil); got != (Dist{}) {
		t.Fatalf("empty dist = %+v", got)
	}
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond
	}
	got := distOf(ds)
	if got.P50 != 51*time.Millisecond || got.P99 != 100*time.Millisecond || got.Max != 100*time.Millisecond {
		t.Fatalf("dist = %+v", got)
	}
}

// The goroutines each kind's servers and relays start carry its label,
// so a CPU profile of a run splits by kind, the relay's own work
// included.
func TestKindsStartUnderTheirLabels(t *testing.T) {
	cfg := Config{Size: 256, Publishers: 2, Hooks: 1, Rounds: 1}
	k, err := startKinds(context.Background(), cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	// debug=1 groups goroutines by stack and labels; a group's labels
	// come before its frames. A goroutine that has not run yet shows no
	// frames, so the profile is read again until both log writers and the
	// delivery goroutines have.
	var b strings.Builder
	labelOf := func(frame string) []string {
		var found []string
		for _, group := range strings.Split(b.String(), "\n\n") {
			if strings.Contains(group, frame) {
				label := "none"
				if _, rest, ok := strings.Cut(group, `# labels: {"phase":"`); ok {
					label, _, _ = strings.Cut(rest, `"`)
				}
				found = append(found, label)
			}
		}
		return found
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b.Reset()
		if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
			t.Fatal(err)
		}
		if len(labelOf("store.(*Store).logWriter")) >= 2 && len(labelOf("relay.(*scheduler).start.func")) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if got := labelOf("relay.(*scheduler).start.func"); len(got) == 0 || slices.ContainsFunc(got, func(l string) bool { return l != phaseE2E }) {
		t.Errorf("delivery goroutines under labels %v, want all %q", got, phaseE2E)
	}
	got := labelOf("store.(*Store).logWriter")
	slices.Sort(got)
	if want := []string{phaseE2E, phaseIngest}; !slices.Equal(got, want) {
		t.Errorf("log writers under labels %q, want %q\n%s", got, want, b.String())
	}
}
