package engine

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
)

// newActorSystem makes an actor system that logs to log. Its own
// Prometheus provider stays off (it would listen on all interfaces), and a
// dead letter is logged by the message's type only: a chunk sent to a
// stage that has just stopped would otherwise be printed whole, 256 KiB as
// decimal text in one log line.
func newActorSystem(log *slog.Logger) *actor.ActorSystem {
	log = slog.New(deadLetterHandler{log.Handler()})
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))
}

// deadLetterHandler replaces the message of protoactor's "[DeadLetter]"
// records with its type.
type deadLetterHandler struct{ slog.Handler }

func (h deadLetterHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "[DeadLetter]" {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "message" {
			a = slog.String("message", fmt.Sprintf("%T", a.Value.Any()))
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h deadLetterHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return deadLetterHandler{h.Handler.WithAttrs(as)}
}

func (h deadLetterHandler) WithGroup(name string) slog.Handler {
	return deadLetterHandler{h.Handler.WithGroup(name)}
}
