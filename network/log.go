package network

import (
	"context"
	"log/slog"

	alog "github.com/anacrolix/log"
)

// dhtLogger bridges the DHT library's logger to the node's slog.Logger. The
// library's filter level is set from what the slog handler enables, so a
// silent node formats nothing.
func dhtLogger(l *slog.Logger) alog.Logger {
	var out alog.Logger
	out.SetHandlers(slogHandler{l})
	ctx := context.Background()
	switch {
	case l.Enabled(ctx, slog.LevelDebug):
		out = out.WithFilterLevel(alog.Debug)
	case l.Enabled(ctx, slog.LevelInfo):
		out = out.WithFilterLevel(alog.Info)
	case l.Enabled(ctx, slog.LevelWarn):
		out = out.WithFilterLevel(alog.Warning)
	case l.Enabled(ctx, slog.LevelError):
		out = out.WithFilterLevel(alog.Error)
	default:
		out = out.WithFilterLevel(alog.Critical) // the handler still drops it
	}
	return out.WithNames("dht")
}

type slogHandler struct{ l *slog.Logger }

func (h slogHandler) Handle(r alog.Record) {
	lvl := slog.LevelDebug
	switch {
	case r.Level == alog.Info:
		lvl = slog.LevelInfo
	case r.Level == alog.Warning:
		lvl = slog.LevelWarn
	case r.Level == alog.Error || r.Level == alog.Critical:
		lvl = slog.LevelError
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	h.l.Log(ctx, lvl, r.Msg.String(), "component", "dht")
}
