package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
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

func benchNATSProduce(ctx context.Context, w io.Writer, url, prefix string, topics, producers, size, window int, d time.Duration) error {
	body := make([]byte, size)
	var sent, failed atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < producers; i++ {
		nc, js, err := natsStream(context.Background(), url, prefix)
		if err != nil {
			return err
		}
		defer nc.Close()
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
	n := sent.Load()
	fmt.Fprintf(w, "nats produce: %d producers, %d subjects, %d-byte messages: %d acked in %.1fs = %.0f msg/s, %.1f MB/s (%d failed)\n",
		producers, topics, size, n, el, float64(n)/el, float64(n)*float64(size)/el/1e6, failed.Load())
	return nil
}

func benchNATSLatency(ctx context.Context, w io.Writer, url, prefix string, size, rate int, d time.Duration) error {
	nc, js, err := natsStream(ctx, url, prefix)
	if err != nil {
		return err
	}
	defer nc.Close()
	cons, err := js.OrderedConsumer(ctx, prefix, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var lat []time.Duration
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now().UnixNano()
		if b := m.Data(); len(b) >= 8 {
			mu.Lock()
			lat = append(lat, time.Duration(now-int64(binary.BigEndian.Uint64(b))))
			mu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	end := time.Now().Add(d)
	body := make([]byte, max(size, 8))
	sentN := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		<-tick.C
		binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
		if _, err := js.Publish(ctx, prefix+".0", body); err == nil {
			sentN++
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= sentN {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		return fmt.Errorf("no message came back from NATS within 10s")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Fprintf(w, "nats latency: %d of %d messages, publish-to-consume p50 %v p99 %v max %v\n",
		len(lat), sentN, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	return nil
}
