package tier

import "math"

// StoreTimeEstimate estimates the store time (ms) of a queue's message at offset from the cold
// index alone, with no bucket request, for callers that must stay cheap (the consumer-lag
// metrics read it at every scrape). The run that holds offset gives its first and last offsets
// and store times; the estimate interpolates between them, which is exact at a run's ends and
// within the run's time range everywhere. ok is false when no run of the tier holds offset.
func (t *Tier) StoreTimeEstimate(topic string, queueID int32, offset int64) (ms int64, ok bool) {
	for _, sp := range t.cat.Load().queues[queueKey{topic, queueID}] {
		q := sp.q
		if q.Dropped || offset < q.FirstOffset || offset > q.LastOffset {
			continue
		}
		if q.LastOffset == q.FirstOffset || q.LastTime <= q.FirstTime {
			return q.FirstTime, true
		}
		// In floating point: the product of an offset span and a time span can overflow int64.
		frac := float64(offset-q.FirstOffset) / float64(q.LastOffset-q.FirstOffset)
		return q.FirstTime + int64(math.Round(frac*float64(q.LastTime-q.FirstTime))), true
	}
	return 0, false
}
