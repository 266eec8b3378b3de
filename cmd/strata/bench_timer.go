package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/timer"
)

// benchTimer measures scheduled delivery with Strata's raw pipelined client:
//
//   - insert: timers parked per second (delivery times an hour out, so none fires);
//   - steady: timers due at fireRate a second, and how late each is stored on its topic
//     (its store time minus TIMER_DELIVER_MS; the broker's clock, millisecond resolution);
//   - burst: timers all due at the same millisecond, and how fast they fire.
//
// Each phase uses a topic of its own under prefix.
func benchTimer(ctx context.Context, w io.Writer, namesrv, prefix string, n, fireRate, producers, window int) error {
	c, err := client.Dial(ctx, namesrv)
	if err != nil {
		return err
	}
	defer c.Close()
	queuesOf := func(topic string) ([]client.Queue, error) {
		if err := c.CreateTopic(ctx, topic, 4); err != nil {
			return nil, fmt.Errorf("create %s: %w", topic, err)
		}
		r, err := c.Route(ctx, topic)
		if err != nil {
			return nil, err
		}
		return r.Queues(topic), nil
	}

	// Baseline: the same sends with a property of the same size that schedules nothing.
	plain, err := queuesOf(prefix + "-plain")
	if err != nil {
		return err
	}
	hour := time.Now().Add(time.Hour).UnixMilli()
	took, err := sendTimed(ctx, namesrv, plain, n, producers, window, "X_DELIVER_MS", func(int) int64 { return hour })
	if err != nil {
		return err
	}
	plainRate := float64(n) / took.Seconds()

	// Insert rate, with nothing firing meanwhile.
	far, err := queuesOf(prefix + "-insert")
	if err != nil {
		return err
	}
	took, err = parkTimers(ctx, namesrv, far, n, producers, window, func(int) int64 { return hour })
	if err != nil {
		return err
	}
	insertTook := took
	insertRate := float64(n) / took.Seconds()
	// The baseline again, so warm-up favours neither side.
	if took, err = sendTimed(ctx, namesrv, plain, n, producers, window, "X_DELIVER_MS", func(int) int64 { return hour }); err != nil {
		return err
	}
	plainRate = (plainRate + float64(n)/took.Seconds()) / 2
	fmt.Fprintf(w, "baseline produce: %.0f msg/s (%d messages with a property of the same size that schedules nothing, before and after)\n", plainRate, n)
	fmt.Fprintf(w, "timer insert: %d timers parked in %.1fs = %.0f timers/s = %.2fx the baseline (%d producers x %d in flight)\n",
		n, insertTook.Seconds(), insertRate, insertRate/plainRate, producers, window)

	// Steady firing at fireRate.
	steady, err := queuesOf(prefix + "-steady")
	if err != nil {
		return err
	}
	lead := time.Duration(float64(n)/insertRate*float64(time.Second)*1.5) + 2*time.Second
	start := time.Now().Add(lead)
	dueOf := func(i int) int64 {
		return start.Add(time.Duration(i) * time.Second / time.Duration(fireRate)).UnixMilli()
	}
	if _, err := parkTimers(ctx, namesrv, steady, n, producers, window, dueOf); err != nil {
		return err
	}
	if time.Now().After(start) {
		return fmt.Errorf("parking the steady timers took longer than the %v lead; lower --timers", lead)
	}
	late, span, err := collectFired(ctx, c, steady, n, start.Add(time.Duration(n)*time.Second/time.Duration(fireRate)+30*time.Second))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "timer steady: %d timers due at %d/s fired at %.0f/s; lateness (store time - due) p50 %dms p99 %dms max %dms\n",
		n, fireRate, float64(n)/max(span.Seconds(), 1e-3), late[len(late)/2], late[len(late)*99/100], late[len(late)-1])

	// A burst: all due at once.
	burst, err := queuesOf(prefix + "-burst")
	if err != nil {
		return err
	}
	at := time.Now().Add(lead).UnixMilli()
	if _, err := parkTimers(ctx, namesrv, burst, n, producers, window, func(int) int64 { return at }); err != nil {
		return err
	}
	late, span, err = collectFired(ctx, c, burst, n, time.UnixMilli(at).Add(120*time.Second))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "timer burst: %d timers due at the same millisecond fired in %.2fs = %.0f timers/s; lateness p50 %dms p99 %dms max %dms\n",
		n, span.Seconds(), float64(n)/max(span.Seconds(), 1e-3), late[len(late)/2], late[len(late)*99/100], late[len(late)-1])
	return nil
}

// parkTimers sends n messages with TIMER_DELIVER_MS dueOf(i), round-robin over queues.
func parkTimers(ctx context.Context, namesrv string, queues []client.Queue, n, producers, window int, dueOf func(int) int64) (time.Duration, error) {
	return sendTimed(ctx, namesrv, queues, n, producers, window, timer.PropertyTimerDeliverMs, dueOf)
}

// sendTimed sends n messages with property key = dueOf(i).
func sendTimed(ctx context.Context, namesrv string, queues []client.Queue, n, producers, window int, key string, dueOf func(int) int64) (time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range producers {
		c, err := client.Dial(ctx, namesrv)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		for range window {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					props := map[string]string{key: strconv.FormatInt(dueOf(i), 10)}
					if _, err := c.Send(ctx, "strata-bench-timer", queues[i%len(queues)], []byte(strconv.Itoa(i)), props); err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						next.Store(int64(n))
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// collectFired pulls n delivered messages and returns their lateness (store time minus
// TIMER_DELIVER_MS, sorted, ms) and the span of their store times.
func collectFired(ctx context.Context, c *client.Client, queues []client.Queue, n int, deadline time.Time) ([]int64, time.Duration, error) {
	offsets := make([]int64, len(queues))
	late := make([]int64, 0, n)
	first, last := int64(1<<62), int64(0)
	for len(late) < n {
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("only %d of %d timers fired by %s", len(late), n, deadline.Format(time.TimeOnly))
		}
		for qi, q := range queues {
			pr, err := c.Pull(ctx, "strata-bench-timer", q, offsets[qi], 256, 200, "")
			if err != nil {
				return nil, 0, err
			}
			offsets[qi] = pr.NextOffset
			for _, m := range pr.Messages {
				due, err := strconv.ParseInt(m.Properties[timer.PropertyTimerDeliverMs], 10, 64)
				if err != nil {
					return nil, 0, fmt.Errorf("delivered message without %s", timer.PropertyTimerDeliverMs)
				}
				late = append(late, m.StoreTimestamp-due)
				first, last = min(first, m.StoreTimestamp), max(last, m.StoreTimestamp)
			}
			pr.Release()
		}
	}
	slices.Sort(late)
	return late, time.Duration(last-first) * time.Millisecond, nil
}
