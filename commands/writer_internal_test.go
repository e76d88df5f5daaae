package commands

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
)

// oneStream is the least store the writer needs: one stream, appended at
// its exact version. (The package's other tests use commandstest, which
// this internal test cannot import.)
type oneStream struct {
	mu  sync.Mutex
	evs []domain.Envelope
}

func (s *oneStream) Append(_ context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int64(expected) != int64(len(s.evs)) {
		return domain.AppendResult{}, domain.ErrVersionConflict
	}
	for _, e := range evs {
		e.Stream, e.Version = stream, int64(len(s.evs)+1)
		s.evs = append(s.evs, e)
	}
	return domain.AppendResult{NextVersion: int64(len(s.evs))}, nil
}

func (s *oneStream) ReadStream(_ context.Context, _ string, from int64, max int) ([]domain.Envelope, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from > int64(len(s.evs)) {
		return nil, nil
	}
	out := s.evs[from-1:]
	return append([]domain.Envelope(nil), out[:min(len(out), max)]...), nil
}

// TestDecisionPanicReachesItsCaller: a decision that panics panics in its
// caller's goroutine, with the value and the writer's stack, and leaves
// the writer able to run the next command.
func TestDecisionPanicReachesItsCaller(t *testing.T) {
	ctx := context.Background()
	x := newExecutor(&oneStream{}, Config{})
	m := Meta{CommandID: uuid.NewString()}
	func() {
		defer func() {
			p := recover()
			if p == nil || !strings.Contains(fmt.Sprint(p), "decision bug") || !strings.Contains(fmt.Sprint(p), "writer goroutine") {
				t.Errorf("recovered %v, want the decision's panic and the writer's stack", p)
			}
		}()
		_, _ = execute(ctx, x, m, "stock-A", func(*inventory.Stock) ([]any, error) { panic("decision bug") })
		t.Error("execute returned")
	}()
	out, err := execute(ctx, x, Meta{CommandID: uuid.NewString()}, "stock-A", func(s *inventory.Stock) ([]any, error) {
		return s.Restock("A", 3)
	})
	if err != nil || out.Version != 1 || !out.appended {
		t.Fatalf("next command: %+v %v", out, err)
	}
	if q := x.stats.Snapshot().Queued; q != 0 {
		t.Errorf("%d commands queued", q)
	}
}
