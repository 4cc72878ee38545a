// Command hookrelay is a self-hosted webhook relay. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"hookrelay/cli"
)

// gcPercent replaces Go's default GOGC of 100 unless GOGC is set. The
// relay holds little live memory (the queue is on disk) but allocates fast
// per request, so with the default the collector runs back to back and its
// assists slow every request; measured with hookrelay bench, 400 cuts CPU
// per event by about a fifth. No memory limit is set by default: a soft
// limit below the live heap (many hooks with high concurrency) makes the
// collector run continuously; operators of small boxes can set GOMEMLIMIT.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	// One P more than Go's default (the usable CPUs), unless GOMAXPROCS is
	// set. The store's writer spends most of its time in fdatasync; when it
	// returns, every P is busy with HTTP work and it waits behind the run
	// queue before it can start the next commit. With a spare P it
	// continues at once and the kernel shares the cores. Measured with
	// hookrelay bench on 2 cores: ingest +15-35%, p99 acknowledgement from
	// 14-18 to about 7 commit cycles; two spare Ps lowered the loopback
	// ceiling itself.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	os.Exit(run(os.Args[1:]))
}

// run picks the command and maps its error to an exit code: 0 success,
// 1 failure, 2 usage error.
func run(args []string) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	var cmd cli.Command
	switch name {
	case "serve":
		cmd = &cli.ServeCommand{Stdout: os.Stdout, Stderr: os.Stderr}
	case "check":
		cmd = &cli.CheckCommand{Stdout: os.Stdout, Stderr: os.Stderr}
	case "bench":
		cmd = &cli.BenchCommand{Stdout: os.Stdout, Stderr: os.Stderr}
	case "version":
		cmd = &cli.VersionCommand{Stdout: os.Stdout}
	case "help":
		cli.PrintUsage(os.Stdout)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "hookrelay: unknown command %q\n\n", name)
		cli.PrintUsage(os.Stderr)
		return 2
	}
	err := cmd.Run(context.Background(), args)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, cli.ErrUsage):
		return 2
	case errors.Is(err, cli.ErrReported):
		return 1
	default:
		fmt.Fprintf(os.Stderr, "hookrelay: %v\n", err)
		return 1
	}
}
