package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"text/tabwriter"
	"time"

	"hookrelay/bench"
)

// BenchCommand measures an in-process relay on this machine against the
// machine's own limits.
type BenchCommand struct {
	Stdout, Stderr io.Writer
}

const benchUsage = `usage: hookrelay bench [flags]

Starts a relay in-process on a temporary data dir, with hooks delivering to
in-process receivers over loopback HTTP, drives it with concurrent
publishers and prints what it reached, beside the limits measured in the
same run: the loopback HTTP ceiling (a bare handler answering 204 with the
same client, body size and concurrency; and the same handler answering 202
with a short JSON body, as the relay does), the disk's fdatasync rate and
the back-to-back rates of log commits and bbolt transactions.

Phases: ingest (every 202 after fsync, deliveries queued but not yet
attempted), end to end (publish and delivery together), and with -backlog
a queue of N deliveries built while delivery is paused, a restart on it,
and its drain. The two ceilings, ingest and end to end are cut into
-rounds slices taken in turn, so that their ratios compare figures taken
under the same conditions; the ratio of each round is printed beside the
whole run's.

Examples:
  hookrelay bench
  hookrelay bench -publishers 256 -size 4096 -duration 10s
  hookrelay bench -backlog 1000000 -json > bench.json

Flags:
`

// Run implements Command.
func (c *BenchCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() {
		fmt.Fprint(c.Stderr, benchUsage)
		fs.PrintDefaults()
	}
	var cfg bench.Config
	fs.IntVar(&cfg.Events, "events", 0, "events per phase (0: run each phase for -duration)")
	fs.IntVar(&cfg.Size, "size", 1024, "bytes per published event")
	fs.IntVar(&cfg.Publishers, "publishers", 64, "concurrent publishers")
	fs.IntVar(&cfg.Hooks, "hooks", 1, "hooks each event is delivered to")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each phase when -events is 0")
	fs.IntVar(&cfg.Rounds, "rounds", bench.DefaultRounds, "slices each of the ceilings, ingest and end to end is cut into, taken in turn")
	fs.IntVar(&cfg.Backlog, "backlog", 0, "deliveries to queue, restart on and drain (0: skip)")
	fs.StringVar(&cfg.Dir, "dir", "", "where the temporary data dirs go (default: the system temp dir)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	traceFile := fs.String("trace", "", "write a Go execution trace of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 || cfg.Size < 1 || cfg.Publishers < 1 || cfg.Hooks < 1 || cfg.Events < 0 || cfg.Backlog < 0 || cfg.Rounds < 1 {
		fs.Usage()
		return ErrUsage
	}
	if f, ok := c.Stderr.(*os.File); ok && isTerminal(f) {
		cfg.Progress = f
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		defer trace.Stop()
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return fmt.Errorf("memory profile: %w", err)
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return fmt.Errorf("memory profile: %w", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printBench(c.Stdout, res)
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ratios formats per-round ratios: "0.41 0.44 0.39 (0.39-0.44)".
func ratios(rs []float64) string {
	if len(rs) == 0 {
		return "-"
	}
	var b strings.Builder
	lo, hi := rs[0], rs[0]
	for _, r := range rs {
		fmt.Fprintf(&b, "%.2f ", r)
		lo, hi = min(lo, r), max(hi, r)
	}
	fmt.Fprintf(&b, "(%.2f-%.2f)", lo, hi)
	return b.String()
}

func printBench(w io.Writer, r *bench.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	m := r.Machine
	fmt.Fprintf(tw, "machine\t%s/%s, %d CPUs, %s, data in %s\n", m.OS, m.Arch, m.CPUs, m.Go, m.DataDir)
	fmt.Fprintf(tw, "load\t%d publishers, %d-byte events, %d hook(s)\n", r.Config.Publishers, r.Config.Size, r.Config.Hooks)
	fmt.Fprintln(tw, "\t")
	fmt.Fprintf(tw, "ceiling: loopback HTTP\t%.0f req/s\t%v CPU per request (all cores)\n", r.HTTPCeilingPerS, r.HTTPCeilingCPU.Round(time.Microsecond))
	fmt.Fprintf(tw, "  answering like the relay\t%.0f req/s\t%v CPU per request (202 and a JSON body)\n", r.HTTPAnswerPerS, r.HTTPAnswerCPU.Round(time.Microsecond))
	fmt.Fprintf(tw, "ceiling: disk fdatasync\t%.0f /s\n", r.FsyncPerSec)
	fmt.Fprintf(tw, "ceiling: log commits back to back\t%.0f /s (%.1f events each)\n", r.LogCommitsPerS, r.Ingest.EventsPerCommit)
	fmt.Fprintf(tw, "ceiling: bbolt commits back to back\t%.0f /s (%.1f events each)\n", r.BoltCommitsPerS, r.Ingest.EventsPerCopy)
	fmt.Fprintln(tw, "\t")
	in := r.Ingest
	fmt.Fprintf(tw, "ingest (durable 202)\t%.0f events/s\t%.2f x HTTP ceiling (%.2f x answering like the relay)\n", in.EventsPerSec, r.IngestVsCeiling, r.IngestVsAnswer)
	fmt.Fprintf(tw, "  by round\t%s\n", ratios(r.IngestVsCeilingByRound))
	fmt.Fprintf(tw, "ack latency\t%s\tp99 = %.1f commit cycles (%v)\n", in.Ack, r.AckP99InCommits, in.CommitCycle.Round(time.Microsecond))
	fmt.Fprintf(tw, "commits (log)\t%.0f /s, %.1f events each\t%.2f x fdatasync, %.2f x log commits back to back\n", in.CommitsPerSec, in.EventsPerCommit, r.CommitsVsFsync, r.CommitsVsLog)
	fmt.Fprintf(tw, "log writer\twriting %.0f%%, other work %.0f%%, held back by bbolt %.0f%%\tidle with nothing queued %.0f%%\n",
		100*in.WriterBusy, 100*max(in.WriterActive-in.WriterBusy-in.WriterHeld, 0), 100*in.WriterHeld, 100*max(1-in.WriterActive, 0))
	if r.LogCommitsPerS > 0 {
		fmt.Fprintf(tw, "log commit\t%v under load\t%v back to back\n", in.CommitCycle.Round(time.Microsecond), time.Duration(float64(time.Second)/r.LogCommitsPerS).Round(time.Microsecond))
	}
	fmt.Fprintf(tw, "cost\t%v CPU per event (all cores)\n", in.CPUPerEvent.Round(time.Microsecond))
	fmt.Fprintf(tw, "copies into bbolt\t%.0f /s, %.1f events each\t%.2f x bbolt back to back, bbolt writer busy %.0f%%\n", in.CopyCommitsPerSec, in.EventsPerCopy, r.CopiesVsBolt, 100*in.CopyBusy)
	if in.Failed > 0 {
		fmt.Fprintf(tw, "failed requests\t%d\n", in.Failed)
	}
	fmt.Fprintln(tw, "\t")
	e := r.EndToEnd
	fmt.Fprintf(tw, "end to end: delivered\t%.0f deliveries/s\t%.2f x HTTP ceiling (per hook)\n", e.DeliveredPerSec, r.E2EVsCeiling)
	fmt.Fprintf(tw, "  by round\t%s\n", ratios(r.E2EVsCeilingByRound))
	fmt.Fprintf(tw, "end to end: ingest\t%.0f events/s\t%v CPU per delivery (all cores)\n", e.IngestPerSec, e.CPUPerDelivery.Round(time.Microsecond))
	fmt.Fprintf(tw, "publish to delivery\t%s\n", e.Latency)
	if b := r.Backlog; b != nil {
		fmt.Fprintln(tw, "\t")
		fmt.Fprintf(tw, "backlog\t%d deliveries queued at %.0f events/s\n", b.Queued, b.QueuePerSec)
		fmt.Fprintf(tw, "backlog: file\t%.1f MiB, %.0f bytes per delivery\n", float64(b.FileBytes)/(1<<20), b.BytesPerDelivery)
		fmt.Fprintf(tw, "backlog: restart to ready\t%v\n", b.Ready.Round(time.Millisecond))
		fmt.Fprintf(tw, "backlog: drain\t%.0f deliveries/s\t%.2f x the drain of %d (%.0f/s)\n", b.DrainPerSec, b.DrainVsSmall, b.SmallQueue, b.SmallDrainPerSec)
		fmt.Fprintf(tw, "backlog: max RSS\t%.0f MiB (anonymous %.0f MiB)\n", float64(b.MaxRSS)/(1<<20), float64(b.MaxRSSAnon)/(1<<20))
	}
	tw.Flush()
}
