package tls

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestZapLoggerWritesToSlog(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	zl := newZapLogger(slog.New(h).With("subsystem", "tls").Handler())

	zl.Debug("hidden")
	zl.Named("obtain").With(zap.String("identifier", "hooks.example.com")).
		Info("obtaining certificate", zap.Duration("wait", 2*time.Second), zap.Strings("names", []string{"a", "b"}))
	zl.Warn("careful", zap.Int("attempt", 3))
	zl.Error("could not get certificate", zap.Error(errors.New("connection refused")))

	want := []string{
		`level=INFO msg="obtaining certificate" subsystem=tls logger=certmagic.obtain identifier=hooks.example.com wait=2s names="[a b]"`,
		`level=WARN msg=careful subsystem=tls logger=certmagic attempt=3`,
		`level=ERROR msg="could not get certificate" subsystem=tls logger=certmagic err="connection refused"`,
	}
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got  %s\n want %s", i, got[i], want[i])
		}
	}
}
