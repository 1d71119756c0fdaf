package engine

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type bigMessage struct{ Data []byte }

// lockedBuffer is a bytes.Buffer safe for the actor system's goroutines.
type lockedBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // signalled after each write
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDeadLetterLogsType: a chunk sent to a stage that has stopped is
// logged (with -v) by its type, not dumped as 256 KiB of decimal text.
func TestDeadLetterLogsType(t *testing.T) {
	buf := &lockedBuffer{wrote: make(chan struct{}, 1)}
	sys := newActorSystem(slog.New(slog.NewTextHandler(buf, nil)))
	defer sys.Shutdown()
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	sys.Root.Send(pid, &bigMessage{Data: make([]byte, 256<<10)})
	deadline := time.After(10 * time.Second)
	for !strings.Contains(buf.String(), "[DeadLetter]") {
		select {
		case <-buf.wrote:
		case <-deadline:
			t.Fatalf("no dead letter logged:\n%s", buf.String())
		}
	}
	line := buf.String()
	if !strings.Contains(line, "*engine.bigMessage") || len(line) > 2000 {
		t.Fatalf("dead letter logged as %d bytes: %.300s", len(line), line)
	}
}
