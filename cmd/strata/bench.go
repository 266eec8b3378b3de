package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"

	"github.com/stratamq/strata/broker/client"
)

// runBench drives a running Strata with the official client: produce throughput from
// concurrent producers over one or many topics, and publish-to-consume latency of a tailing
// consumer. Figures go to stdout; compare them with a baseline measured in the same run.
func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	namesrv := fs.String("namesrv", defaultNamesrv, "name-server address")
	mode := fs.String("mode", "produce", "produce (throughput), latency (publish-to-consume) or timer (scheduled delivery: insert rate, lateness, fire rate)")
	producers := fs.Int("producers", 16, "concurrent producers")
	topics := fs.Int("topics", 1, "topics to spread messages over")
	size := fs.Int("size", 1024, "message body bytes")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	window := fs.Int("window", 64, "async sends in flight per producer")
	rate := fs.Int("rate", 1000, "messages per second (latency mode)")
	prefix := fs.String("topic-prefix", fmt.Sprintf("bench-%d", time.Now().Unix()), "topic name prefix")
	target := fs.String("target", "strata", "system under test: strata, or nats (JetStream, file storage) as a same-run baseline")
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL for --target nats")
	clientKind := fs.String("client", "official", "producer client for --target strata: official (rocketmq-client-go) or raw (Strata's lean protocol client, pipelined)")
	timers := fs.Int("timers", 100000, "timers per phase (timer mode)")
	fireRate := fs.Int("fire-rate", 10000, "timers due per second in the steady phase (timer mode)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mode == "timer" {
		return benchTimer(ctx, stdout, *namesrv, *prefix, *timers, *fireRate, *producers, *window)
	}
	if *target == "nats" {
		switch *mode {
		case "produce":
			return benchNATSProduce(ctx, stdout, *natsURL, *prefix, *topics, *producers, *size, *window, *duration)
		case "latency":
			return benchNATSLatency(ctx, stdout, *natsURL, *prefix, *size, *rate, *duration)
		}
		return fmt.Errorf("--mode %q: want produce or latency", *mode)
	}
	if *target != "strata" {
		return fmt.Errorf("--target %q: want strata or nats", *target)
	}
	rlog.SetLogLevel("error")
	names := make([]string, *topics)
	c, err := dialClient(ctx, *namesrv)
	if err != nil {
		return err
	}
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", *prefix, i)
		if err := c.CreateTopic(ctx, names[i], 4); err != nil {
			c.Close()
			return fmt.Errorf("create %s: %w", names[i], err)
		}
	}
	c.Close()
	switch *mode {
	case "produce":
		if *clientKind == "raw" {
			return benchProduceRaw(ctx, stdout, *namesrv, names, *producers, *size, *window, *duration)
		}
		return benchProduce(ctx, stdout, *namesrv, names, *producers, *size, *window, *duration)
	case "latency":
		return benchLatency(ctx, stdout, *namesrv, names[0], *size, *rate, *duration)
	}
	return fmt.Errorf("--mode %q: want produce or latency", *mode)
}

func newBenchProducer(namesrv string, i int) (interface {
	SendAsync(context.Context, func(context.Context, *primitive.SendResult, error), ...*primitive.Message) error
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
	Shutdown() error
}, error) {
	p, err := producer.NewDefaultProducer(append([]producer.Option{
		producer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		producer.WithGroupName(fmt.Sprintf("strata-bench-%d", i)),
		producer.WithInstanceName(fmt.Sprintf("bench-%d", i)),
		producer.WithCompressMsgBodyOverHowmuch(1 << 30),
	}, cliSecurity.producerOptions()...)...)
	if err != nil {
		return nil, err
	}
	return p, p.Start()
}

func benchProduce(ctx context.Context, w io.Writer, namesrv string, topics []string, producers, size, window int, d time.Duration) error {
	body := make([]byte, size)
	var sent, failed atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < producers; i++ {
		p, err := newBenchProducer(namesrv, i)
		if err != nil {
			return err
		}
		defer func() { _ = p.Shutdown() }()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem := make(chan struct{}, window)
			var inflight sync.WaitGroup
			for n := i; ctx.Err() == nil; n += producers {
				sem <- struct{}{}
				inflight.Add(1)
				msg := primitive.NewMessage(topics[n%len(topics)], body)
				err := p.SendAsync(context.Background(), func(_ context.Context, _ *primitive.SendResult, err error) {
					if err != nil {
						failed.Add(1)
					} else {
						sent.Add(1)
					}
					<-sem
					inflight.Done()
				}, msg)
				if err != nil {
					failed.Add(1)
					<-sem
					inflight.Done()
				}
			}
			inflight.Wait()
		}(i)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	n := sent.Load()
	fmt.Fprintf(w, "produce: %d producers, %d topics, %d-byte messages: %d acked in %.1fs = %.0f msg/s, %.1f MB/s (%d failed)\n",
		producers, len(topics), size, n, el, float64(n)/el, float64(n)*float64(size)/el/1e6, failed.Load())
	return nil
}

// benchProduceRaw sends with broker/client: one connection per producer, window requests in
// flight each, queues chosen round-robin over every topic's queues.
func benchProduceRaw(ctx context.Context, w io.Writer, namesrv string, topics []string, producers, size, window int, d time.Duration) error {
	var queues []client.Queue
	probe, err := dialClient(ctx, namesrv)
	if err != nil {
		return err
	}
	for _, t := range topics {
		r, err := probe.Route(ctx, t)
		if err != nil {
			probe.Close()
			return err
		}
		queues = append(queues, r.Queues(t)...)
	}
	probe.Close()
	body := make([]byte, size)
	var sent, failed atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < producers; i++ {
		c, err := dialClient(ctx, namesrv)
		if err != nil {
			return err
		}
		defer c.Close()
		for j := 0; j < window; j++ {
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				for ; ctx.Err() == nil; n += producers * window {
					if _, err := c.Send(context.Background(), "strata-bench", queues[n%len(queues)], body, nil); err != nil {
						failed.Add(1)
					} else {
						sent.Add(1)
					}
				}
			}(i*window + j)
		}
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	n := sent.Load()
	fmt.Fprintf(w, "produce (raw client): %d producers x %d in flight, %d topics, %d-byte messages: %d acked in %.1fs = %.0f msg/s, %.1f MB/s (%d failed)\n",
		producers, window, len(topics), size, n, el, float64(n)/el, float64(n)*float64(size)/el/1e6, failed.Load())
	return nil
}

func benchLatency(ctx context.Context, w io.Writer, namesrv, topic string, size, rate int, d time.Duration) error {
	var rec latencyRecorder
	c, err := consumer.NewPushConsumer(append([]consumer.Option{
		consumer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		consumer.WithGroupName("strata-bench-latency"),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset),
	}, cliSecurity.consumerOptions()...)...)
	if err != nil {
		return err
	}
	err = c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			for _, m := range msgs {
				rec.record(m.Body)
			}
			return consumer.ConsumeSuccess, nil
		})
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer func() { _ = c.Shutdown() }()
	p, err := newBenchProducer(namesrv, 0)
	if err != nil {
		return err
	}
	defer func() { _ = p.Shutdown() }()
	// Measure only once the consumer holds its queues.
	for waited := time.Duration(0); len(c.GetConsumerRunningInfo(false).MQTable) == 0; waited += 50 * time.Millisecond {
		if waited > 30*time.Second {
			return fmt.Errorf("consumer got no queue of %s within 30s", topic)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return rec.run(ctx, w, "latency", rate, size, d, func(body []byte) error {
		_, err := p.SendSync(ctx, primitive.NewMessage(topic, append([]byte(nil), body...)))
		return err
	})
}

// latencyRecorder collects publish-to-consume latencies from bodies that begin with their
// send time in Unix nanoseconds; both --target strata and --target nats use it.
type latencyRecorder struct {
	mu  sync.Mutex
	lat []time.Duration
}

func (r *latencyRecorder) record(body []byte) {
	now := time.Now().UnixNano()
	if len(body) < 8 {
		return
	}
	r.mu.Lock()
	r.lat = append(r.lat, time.Duration(now-int64(binary.BigEndian.Uint64(body))))
	r.mu.Unlock()
}

func (r *latencyRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lat)
}

// run sends rate messages a second for d through send, each stamped with its send time, waits
// up to 10 s for the consumer to record them all, and prints the percentiles.
func (r *latencyRecorder) run(ctx context.Context, w io.Writer, label string, rate, size int, d time.Duration, send func(body []byte) error) error {
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	end := time.Now().Add(d)
	body := make([]byte, max(size, 8))
	sentN := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		<-tick.C
		binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
		if send(body) == nil {
			sentN++
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && r.count() < sentN; {
		time.Sleep(100 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := r.lat
	if len(lat) == 0 {
		return fmt.Errorf("%s: no message came back within 10s of the last send", label)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Fprintf(w, "%s: %d of %d messages, publish-to-consume p50 %v p99 %v max %v\n",
		label, len(lat), sentN, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	return nil
}
