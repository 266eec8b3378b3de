package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/stratamq/strata/broker/timer"
)

// Scheduled delivery (broker/timer), wired into the broker:
//
//   - startTimer (Start, after the tier, before serving) opens the timer service over the
//     store and the tier: it recovers its index and fired state from the commit log.
//   - handleSend and handleSendBack route a message with a delay level or a delivery time
//     through Intercept and Park: it is appended to timer.ParkTopic and delivered to its
//     real topic when due, from local disk or from the bucket.
//   - /timer/status (HTTP) and `strata timer status` report what is pending.

// startTimer opens scheduled delivery.
func (b *Broker) startTimer(ctx context.Context) error {
	tc := b.cfg.Timer
	tc.Dir = b.cfg.Store.Dir + "/timer"
	tc.DelayLevels = b.cfg.MessageDelayLevel
	tc.MaxDelay = b.cfg.TimerMaxDelay
	tc.StoreHost = b.storeHost
	// A batch of delivered copies is one append, which must fit in a segment.
	tc.MaxAppendBytes = int(max(4<<10, min(1<<20, b.cfg.Store.SegmentBytes/4)))
	tc.Registerer = b.metrics.reg
	tc.Logger = b.log
	s, err := timer.Open(ctx, tc, timer.StoreLog{Store: b.store, Tier: b.tier})
	if err != nil {
		return fmt.Errorf("broker: scheduled delivery: %w", err)
	}
	b.timerP.Store(s)
	return nil
}

// TimerStatus reports scheduled delivery: pending timers by horizon, index and checkpoint.
func (b *Broker) TimerStatus() timer.Status {
	if b.timerService() == nil {
		return timer.Status{}
	}
	return b.timerService().Status()
}

func (b *Broker) serveTimerStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(b.TimerStatus())
}

// timerService is the open timer service, nil before Start opened it.
func (b *Broker) timerService() *timer.Service { return b.timerP.Load() }
