package embedded

import (
	"context"
	"fmt"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that hands etcd's log entries to a
// *slog.Logger, so the embedded server logs where the rest of Tabby does
// (and nothing reaches stderr behind the caller's back). Its level is an
// AtomicLevel so Stop can mute the errors etcd logs while closing.
type slogCore struct {
	lg    *slog.Logger
	level zap.AtomicLevel
	attrs []slog.Attr
}

func newZapLogger(lg *slog.Logger, level zap.AtomicLevel) *zap.Logger {
	return zap.New(&slogCore{lg: lg, level: level})
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return c.level.Enabled(l) }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	n := &slogCore{lg: c.lg, level: c.level}
	n.attrs = append(append(n.attrs, c.attrs...), toAttrs(fields)...)
	return n
}

// noise are etcd warnings that say nothing to a Tabby operator: the
// embedded server serves gRPC and HTTP on one port on purpose, and keeps
// etcd's auth disabled (so its simple tokens are never issued).
var noise = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) && !noise[e.Message] {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	attrs := append(append([]slog.Attr(nil), c.attrs...), toAttrs(fields)...)
	c.lg.LogAttrs(context.Background(), slogLevel(e.Level), e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// toAttrs renders zap fields through zap's own map encoder, so every field
// type (errors, durations, arrays, objects) keeps a readable value.
func toAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for _, f := range fields {
		v, ok := enc.Fields[f.Key]
		if !ok {
			continue
		}
		delete(enc.Fields, f.Key)
		switch v := v.(type) {
		case string:
			out = append(out, slog.String(f.Key, v))
		case fmt.Stringer:
			out = append(out, slog.String(f.Key, v.String()))
		default:
			out = append(out, slog.Any(f.Key, v))
		}
	}
	return out
}
