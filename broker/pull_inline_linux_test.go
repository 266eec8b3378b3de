package broker

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store/pagecachetest"
)

// A pull whose records are in the page cache is answered on the read goroutine; once they
// are evicted, the same pull waits for the disk on a worker. Both answer the same.
func TestPullAnswersTheSameFromPageCacheAndFromDisk(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "Evict", 1)
	var want []string
	for i := range 40 {
		want = append(want, fmt.Sprintf("body-%d", i))
		wantCode(t, send(t, env, "Evict", 0, "", want[i]), remoting.RespSuccess)
	}
	pull := func(label string) {
		t.Helper()
		got, next, resp := pullBodies(t, env.bk, pullExt("Evict", 0, 0, "*", 0))
		if resp.Code != remoting.RespSuccess || next != 32 || !slices.Equal(got, want[:32]) {
			t.Fatalf("%s: code %d, next %d, bodies %v", label, resp.Code, next, got)
		}
	}
	pull("pull from the page cache")
	pagecachetest.Drop(t, env.b.cfg.DataDir)
	pull("pull after the page cache was dropped")
}
