package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratamq/strata/broker/client"
)

// The consume and latency rows of `strata bench --mode suite`, with Strata's raw client: pulls
// as the official client issues them (one pull in flight per queue, --pull-batch messages
// each), and long-polling pulls for publish-to-consume latency.

// produceCount sends n messages with producers x window sends in flight, message i to queue
// i mod len(queues); it is the set-up of the consume rows, not measured.
func produceCount(ctx context.Context, namesrv string, queues []client.Queue, n, size, producers, window int) error {
	body := make([]byte, size)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, producers*window)
	for i := 0; i < producers; i++ {
		c, err := dialClient(ctx, namesrv)
		if err != nil {
			return err
		}
		defer c.Close()
		for j := 0; j < window; j++ {
			wg.Add(1)
			go func(slot int) {
				defer wg.Done()
				for k := next.Add(1) - 1; k < int64(n); k = next.Add(1) - 1 {
					if _, err := c.Send(ctx, "strata-bench", queues[k%int64(len(queues))], body, nil); err != nil {
						errs[slot] = err
						return
					}
				}
			}(i*window + j)
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// consumeQueues creates the topics of a consume row: one topic of one queue, or topics of 4
// queues adding up to queues.
func consumeQueues(ctx context.Context, namesrv, prefix string, queues int) ([]client.Queue, error) {
	if queues == 1 {
		_, qs, err := benchTopics(ctx, namesrv, prefix, 1, 1, true)
		return qs, err
	}
	if queues%4 != 0 {
		return nil, fmt.Errorf("%d queues: want 1 or a multiple of 4", queues)
	}
	_, qs, err := benchTopics(ctx, namesrv, prefix, queues/4, 4, true)
	return qs, err
}

// benchConsumeStrata produces volume messages over queues queues, then measures pulling all
// of them back with up to consumers pullers, each owning every consumers-th queue.
func benchConsumeStrata(ctx context.Context, namesrv, prefix string, queues, volume, size, producers, window, consumers, batch int, m *cpuMeter) (benchResult, error) {
	qs, err := consumeQueues(ctx, namesrv, prefix, queues)
	if err != nil {
		return benchResult{}, err
	}
	if err := produceCount(ctx, namesrv, qs, volume, size, producers, window); err != nil {
		return benchResult{}, fmt.Errorf("produce the volume: %w", err)
	}
	consumers = min(consumers, len(qs))
	var got atomic.Int64
	errs := make([]error, consumers)
	cs := make([]*client.Client, consumers)
	for i := range cs {
		if cs[i], err = dialClient(ctx, namesrv); err != nil {
			return benchResult{}, err
		}
		defer cs[i].Close()
	}
	var wg sync.WaitGroup
	m.start()
	start := time.Now()
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []client.Queue
			for j := i; j < len(qs); j += consumers {
				mine = append(mine, qs[j])
			}
			offsets := make([]int64, len(mine))
			for len(mine) > 0 {
				for j := 0; j < len(mine); j++ {
					pr, err := c.Pull(ctx, "strata-bench-consume", mine[j], offsets[j], batch, 0, "*")
					if err != nil {
						errs[i] = err
						return
					}
					if !pr.Found { // everything was produced before: this queue is drained
						mine[j], offsets[j] = mine[len(mine)-1], offsets[len(mine)-1]
						mine, offsets = mine[:len(mine)-1], offsets[:len(mine)-1]
						j--
						continue
					}
					got.Add(int64(len(pr.Messages)))
					offsets[j] = pr.NextOffset
					pr.Release()
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	m.stop()
	if err := errors.Join(errs...); err != nil {
		return benchResult{}, err
	}
	if n := got.Load(); n != int64(volume) {
		return benchResult{}, fmt.Errorf("consumed %d of %d messages", n, volume)
	}
	return m.result(got.Load(), el)
}

// benchNATSConsume publishes volume messages over subjects subjects of one stream, then
// measures an ordered consumer reading all of them back.
func benchNATSConsume(ctx context.Context, url, prefix string, subjects, volume, size, producers, window int, m *cpuMeter) (benchResult, error) {
	nc, js, err := natsStream(ctx, url, prefix)
	if err != nil {
		return benchResult{}, err
	}
	defer nc.Close()
	body := make([]byte, size)
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make([]error, producers)
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var fs []jetstream.PubAckFuture
			for k := next.Add(1) - 1; k < int64(volume); k = next.Add(1) - 1 {
				f, err := js.PublishAsync(fmt.Sprintf("%s.%d", prefix, k%int64(subjects)), body)
				if err != nil {
					errs[i] = err
					return
				}
				if fs = append(fs, f); len(fs) == window {
					for _, f := range fs {
						select {
						case <-f.Ok():
						case err := <-f.Err():
							errs[i] = err
							return
						}
					}
					fs = fs[:0]
				}
			}
			for _, f := range fs {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return benchResult{}, fmt.Errorf("publish the volume: %w", err)
	}
	m.start()
	start := time.Now()
	cons, err := js.OrderedConsumer(ctx, prefix, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return benchResult{}, err
	}
	var got atomic.Int64
	done := make(chan struct{})
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if got.Add(1) == int64(volume) {
			close(done)
		}
	})
	if err != nil {
		return benchResult{}, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		return benchResult{}, fmt.Errorf("nats consumed %d of %d messages in 5 minutes", got.Load(), volume)
	}
	el := time.Since(start).Seconds()
	m.stop()
	return m.result(got.Load(), el)
}

// benchLatencyRaw publishes rate messages a second with the raw client over a topic of four
// queues while four long-polling pullers, one per queue, record each message's
// publish-to-consume time.
func benchLatencyRaw(ctx context.Context, w io.Writer, namesrv, prefix string, size, rate int, d time.Duration, m *cpuMeter) (benchResult, error) {
	_, qs, err := benchTopics(ctx, namesrv, prefix, 1, 4, true)
	if err != nil {
		return benchResult{}, err
	}
	pc, err := dialClient(ctx, namesrv)
	if err != nil {
		return benchResult{}, err
	}
	defer pc.Close()
	sc, err := dialClient(ctx, namesrv)
	if err != nil {
		return benchResult{}, err
	}
	defer sc.Close()
	var rec latencyRecorder
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for _, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := int64(0); pctx.Err() == nil; {
				pr, err := pc.Pull(pctx, "strata-bench-latency", q, off, 32, 5000, "*")
				if err != nil {
					return // the run's end (a held pull is cancelled); else fewer come back, as reported
				}
				for _, msg := range pr.Messages {
					rec.record(msg.Body)
				}
				off = pr.NextOffset
				pr.Release()
			}
		}()
	}
	var n atomic.Int64
	return rec.run(ctx, w, "latency", rate, size, d, m, func(body []byte) error {
		_, err := sc.Send(ctx, "strata-bench", qs[n.Add(1)%int64(len(qs))], body, nil)
		return err
	})
}
