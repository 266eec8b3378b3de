package broker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
)

// BenchmarkReplicatedSend sends 1 KiB messages one at a time to a group of one member (the
// same-run baseline), and to a group of three in async and in sync mode; each reports ack
// latency p50 and p99 besides ns/op. Compare them as ratios to "one-member".
func BenchmarkReplicatedSend(b *testing.B) {
	body := strings.Repeat("x", 1024)
	for _, mode := range []string{"one-member", ReplicationAsync, ReplicationSync} {
		b.Run(mode, func(b *testing.B) {
			srv := startEtcd(b, b.TempDir())
			var logs [3]syncBuffer
			n := 3
			if mode == "one-member" {
				n = 1
			}
			var master *testEnv
			var mcs []*meta.Client
			for id := 0; id < n; id++ {
				cfg := memberConfig(b, int64(id), nil, &logs[id])
				cfg.ElectionTTL = 2 * time.Second
				cfg.Store.SegmentBytes = 64 << 20
				cfg.Store.MaxMessageBytes = 1 << 20
				cfg.MaxMessageBytes = 64 << 10
				if n > 1 {
					cfg.Replication = ReplicationConfig{Listen: "127.0.0.1:0", Mode: mode, MinInSyncReplicas: 2}
				}
				mc := newMetaClient(b, srv.Endpoints(), time.Second)
				mcs = append(mcs, mc)
				env := startMember(b, cfg, mc)
				if id == 0 {
					master = env
				}
			}
			if n > 1 {
				waitFor(b, "all three in sync", func() bool {
					s, err := mcs[0].GetInSyncSet(b.Context(), "g")
					return err == nil && len(s.Members) == 3 && refusal(master) == remoting.RespSuccess
				})
			}
			createTopic(b, master, "B", 1)
			lat := make([]time.Duration, 0, b.N)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				resp := send(b, master, "B", 0, "", body)
				lat = append(lat, time.Since(start))
				if resp.Code != remoting.RespSuccess {
					b.Fatalf("send %d: %d %s", i, resp.Code, resp.Remark)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
