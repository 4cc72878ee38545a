package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"hookrelay/relay"
)

// CheckCommand validates a configuration exactly as serve would load it,
// and runs nothing.
type CheckCommand struct {
	Stdout, Stderr io.Writer
}

const checkUsage = `usage: hookrelay check -config FILE

Loads and validates FILE exactly as "hookrelay serve" would: TOML syntax,
unknown keys, values, and secrets given as env:NAME or file:/path. Prints
every problem as FILE:LINE: field: problem and exits 1, or prints a summary
and exits 0. Nothing is started and nothing is written.

Example:
  hookrelay check -config /etc/hookrelay/hookrelay.toml
`

// Run implements Command.
func (c *CheckCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() { fmt.Fprint(c.Stderr, checkUsage) }
	path := fs.String("config", "", "configuration file to check")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 || *path == "" {
		fs.Usage()
		return ErrUsage
	}
	cfg, err := relay.Load(*path)
	if err != nil {
		fmt.Fprintln(c.Stderr, err)
		return ErrReported
	}
	fmt.Fprintf(c.Stdout, "%s: ok: listen %s, data_dir %s, %d publisher(s), %d source(s), %d hook(s), %s\n",
		*path, cfg.Server.Listen, cfg.Server.DataDir, len(cfg.Publishers), len(cfg.Sources), len(cfg.Hooks), tlsSummary(cfg.TLS))
	return nil
}

func tlsSummary(t relay.TLSConfig) string {
	switch t.Mode {
	case relay.TLSACME:
		return fmt.Sprintf("https on %s for %s (acme, %s)", t.Listen, strings.Join(t.Domains, ", "), t.CA)
	case relay.TLSFiles:
		return fmt.Sprintf("https on %s (files %s)", t.Listen, t.CertFile)
	}
	return "tls off"
}

// usageErr keeps -h a success and turns other flag errors into ErrUsage
// (the flag package has printed them).
func usageErr(err error) error {
	if err == flag.ErrHelp {
		return err
	}
	return ErrUsage
}
