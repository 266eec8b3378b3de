package replica

import (
	"sort"

	"github.com/stratamq/strata/broker/store"
)

// DivergencePoint is the commit-log position from which a follower's log may differ from the
// master's: the first position at or after followerFrom (where the follower's oldest local
// record may start) at which the epoch histories name different epochs, capped by both log
// ends. One master writes each epoch, so below that position the two logs hold the same bytes;
// the follower truncates to it and copies from there (Kafka's leader-epoch rule, computed from
// both whole histories). Records before a history's first entry are of epoch 0.
func DivergencePoint(master []store.EpochStart, masterEnd int64, follower []store.EpochStart, followerFrom, followerEnd int64) int64 {
	limit := min(masterEnd, followerEnd)
	bounds := make([]int64, 0, 1+len(master)+len(follower))
	bounds = append(bounds, followerFrom)
	for _, e := range master {
		bounds = append(bounds, e.StartOffset)
	}
	for _, e := range follower {
		bounds = append(bounds, e.StartOffset)
	}
	sort.Slice(bounds, func(i, j int) bool { return bounds[i] < bounds[j] })
	for _, b := range bounds {
		if b < followerFrom {
			continue
		}
		if b >= limit {
			break
		}
		if store.EpochAt(master, b) != store.EpochAt(follower, b) {
			return b
		}
	}
	return limit
}
