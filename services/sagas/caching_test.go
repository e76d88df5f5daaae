package sagas_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestSagaCaching: a saga answers an ETag from its stream's version and
// If-None-Match with 304 until the coordinator records more of it. The
// saga list is not to be stored.
func TestSagaCaching(t *testing.T) {
	env := servetest.Start(t, "sagas")
	sg := startSaga(t, time.Now().UTC().Add(-time.Hour).Truncate(time.Second))
	coordinatortest.Append(t, env.Store, sg)
	recorded := int64(len(sg.Events))
	path := "/api/sagas/" + sg.State.ID()
	env.WantVersioned(t, path, recorded)

	// The step's deadline passes: the coordinator records the timeout and
	// the compensation it starts.
	sagatest.Expire()(sg)
	more := coordinatortest.Envelopes(t, sg)[recorded:]
	if len(more) == 0 {
		t.Fatal("the expired deadline recorded nothing")
	}
	if _, err := env.Store.Append(t.Context(), engine.Stream(sg.State.ID()), domain.ExactVersion(recorded), more); err != nil {
		t.Fatal(err)
	}
	env.WantVersioned(t, path, recorded+int64(len(more)))

	env.Get(t, "/api/sagas/"+uuid.NewString(), "If-None-Match", "*").WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
	env.Eventually(t, 30*time.Second, "/api/sagas", func(r servetest.Response) bool {
		var p httpx.Page[listedSaga]
		r.JSON(t, &p)
		return len(p.Items) == 1
	})
	for _, list := range []string{"/api/sagas", "/api/sagas?status=compensating&limit=1"} {
		env.WantNoStore(t, list)
	}
}
