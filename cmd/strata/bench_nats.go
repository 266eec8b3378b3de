package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS JetStream side of `strata bench --target nats`: the same workloads against a
// JetStream stream with file storage and async publishes with acks, so a run can put Strata's
// figures beside a peer measured on the same machine at the same time. A "topic" is a subject
// of one stream.

func natsStream(ctx context.Context, url, prefix string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: prefix, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("create JetStream stream %s: %w", prefix, err)
	}
	return nc, js, nil
}

func benchNATSProduce(ctx context.Context, w io.Writer, url, prefix string, topics, producers, size, window int, d time.Duration, m *cpuMeter) (benchResult, error) {
	body := make([]byte, size)
	var sent, failed atomic.Int64
	jss := make([]jetstream.JetStream, producers)
	for i := range jss {
		nc, js, err := natsStream(context.Background(), url, prefix)
		if err != nil {
			return benchResult{}, err
		}
		defer nc.Close()
		jss[i] = js
	}
	m.start()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, js := range jss {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem := make(chan struct{}, window)
			var inflight sync.WaitGroup
			for n := i; ctx.Err() == nil; n += producers {
				sem <- struct{}{}
				f, err := js.PublishAsync(fmt.Sprintf("%s.%d", prefix, n%topics), body)
				if err != nil {
					failed.Add(1)
					<-sem
					continue
				}
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					select {
					case <-f.Ok():
						sent.Add(1)
					case <-f.Err():
						failed.Add(1)
					}
					<-sem
				}()
			}
			inflight.Wait()
		}(i)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	m.stop()
	n := sent.Load()
	fmt.Fprintf(w, "nats produce: %d producers, %d subjects, %d-byte messages: %d acked in %.1fs = %.0f msg/s, %.1f MB/s (%d failed)\n",
		producers, topics, size, n, el, float64(n)/el, float64(n)*float64(size)/el/1e6, failed.Load())
	return m.result(n, el)
}

func benchNATSLatency(ctx context.Context, w io.Writer, url, prefix string, size, rate int, d time.Duration, m *cpuMeter) (benchResult, error) {
	nc, js, err := natsStream(ctx, url, prefix)
	if err != nil {
		return benchResult{}, err
	}
	defer nc.Close()
	cons, err := js.OrderedConsumer(ctx, prefix, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return benchResult{}, err
	}
	var rec latencyRecorder
	cc, err := cons.Consume(func(m jetstream.Msg) { rec.record(m.Data()) })
	if err != nil {
		return benchResult{}, err
	}
	defer cc.Stop()
	return rec.run(ctx, w, "nats latency", rate, size, d, m, func(body []byte) error {
		_, err := js.PublishAsync(prefix+".0", body)
		return err
	})
}
