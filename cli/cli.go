// Package cli holds hookrelay's subcommands, one file each. Every command
// parses its own flags and returns an error; main maps errors to exit
// codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// Command is one subcommand.
type Command interface {
	// Run executes the command with its arguments (without its name).
	Run(ctx context.Context, args []string) error
}

// ErrUsage marks a command line that could not be understood; the usage
// has already been printed.
var ErrUsage = errors.New("usage error")

// ErrReported marks a failure whose details the command already printed.
var ErrReported = errors.New("failed")

// Version is the version of this build: set with
// -ldflags "-X hookrelay/cli.Version=v1.2.3", else taken from the module
// build information.
var Version = ""

// BuildVersion returns Version, or the module version or VCS revision the
// binary was built from, or "dev".
func BuildVersion() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}

// Usage is the top-level help.
const Usage = `hookrelay is a self-hosted webhook relay: it accepts events, stores them
durably and delivers them, signed and retried, to the configured hooks.

Usage:
  hookrelay [serve] [-config FILE]   run the relay (the embedded demo without -config)
  hookrelay check -config FILE       validate a configuration and run nothing
  hookrelay bench [flags]            measure the relay against this machine's limits
  hookrelay version                  print the version

Run "hookrelay COMMAND -h" for a command's flags.
`

// PrintUsage writes the top-level help to w.
func PrintUsage(w io.Writer) { fmt.Fprint(w, Usage) }

// VersionCommand prints the version.
type VersionCommand struct{ Stdout io.Writer }

// Run implements Command.
func (c *VersionCommand) Run(_ context.Context, args []string) error {
	if len(args) > 0 {
		fmt.Fprintln(c.Stdout, "usage: hookrelay version")
		return ErrUsage
	}
	fmt.Fprintf(c.Stdout, "hookrelay %s\n", BuildVersion())
	return nil
}
