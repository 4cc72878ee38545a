package tls

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger returns a zap logger, as certmagic needs, that writes into
// h: levels map onto slog's, fields become attributes (certmagic's
// "error" becomes "err", as elsewhere in hookrelay) and the zap logger's
// name is the "logger" attribute.
func newZapLogger(h slog.Handler) *zap.Logger {
	return zap.New(&slogCore{h: h}).Named("certmagic")
}

// slogCore is a zapcore.Core writing to a slog.Handler.
type slogCore struct {
	h     slog.Handler
	attrs []slog.Attr // from With, written before each entry's own fields
}

var _ zapcore.Core = (*slogCore)(nil)

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h, attrs: append(slices.Clip(c.attrs), fieldAttrs(fields)...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(c.attrs...)
	r.AddAttrs(fieldAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

// fieldAttrs converts zap fields to attributes, in order.
func fieldAttrs(fields []zapcore.Field) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		// A field usually encodes to one key; a namespace or an inline
		// object may give several, in no particular order.
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		keys := slices.Sorted(maps.Keys(enc.Fields))
		for _, k := range keys {
			v := enc.Fields[k]
			if k == "error" {
				k = logKeyErr
			}
			attrs = append(attrs, slog.Any(k, v))
		}
	}
	return attrs
}
