package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
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
	mode := fs.String("mode", "produce", "produce (throughput), consume (pull throughput of --volume messages produced first), latency (publish-to-consume), "+
		"timer (scheduled delivery: insert rate, lateness, fire rate), "+
		"or suite (starts fresh servers itself, Strata and NATS, and prints msg/s and server CPU per message of every row, same run)")
	producers := fs.Int("producers", 16, "concurrent producers")
	topics := fs.Int("topics", 1, "topics to spread messages over")
	nQueues := fs.Int("queues", 1, "consume mode: queues (NATS: subjects) to spread the volume over, 1 or a multiple of 4")
	size := fs.Int("size", 1024, "message body bytes")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	window := fs.Int("window", 64, "async sends in flight per producer")
	rate := fs.Int("rate", 1000, "messages per second (latency mode)")
	prefix := fs.String("topic-prefix", fmt.Sprintf("bench-%d", time.Now().Unix()), "topic name prefix")
	target := fs.String("target", "strata", "system under test: strata, or nats (JetStream, file storage) as a same-run baseline")
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL for --target nats")
	clientKind := fs.String("client", "official", "producer client for --target strata: official (rocketmq-client-go) or raw (Strata's lean protocol client: asynchronous SEND_MESSAGE_V2 sends, --window in flight per producer)")
	timers := fs.Int("timers", 100000, "timers per phase (timer mode)")
	fireRate := fs.Int("fire-rate", 10000, "timers due per second in the steady phase (timer mode)")
	var so suiteOpts
	fs.StringVar(&so.strataBin, "strata-bin", "", "suite: the strata binary to run as `strata dev` (default: this one)")
	fs.StringVar(&so.natsBin, "nats-bin", findNATS(), "suite: nats-server binary (make nats; or Debian's nats-server)")
	fs.StringVar(&so.rows, "rows", "", "suite: comma-separated rows to run (default all; a wrong name lists them)")
	fs.IntVar(&so.rounds, "rounds", 1, "suite: rounds; each runs every row once, in turn, on fresh servers")
	fs.IntVar(&so.volume, "volume", 200000, "consume mode and suite rows: messages produced first, then consumed (measured)")
	fs.IntVar(&so.consumers, "consumers", 16, "consume mode and suite rows: concurrent pullers (at most one per queue)")
	fs.IntVar(&so.consumeBatch, "pull-batch", 32, "consume mode and suite rows: messages per pull (the official client's default)")
	fs.DurationVar(&so.latencyDuration, "latency-duration", 10*time.Second, "suite latency rows: how long to publish at --rate")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this client process to `file` (the server has its own, --pprof)")
	memProfile := fs.String("memprofile", "", "write an allocation profile of this client process to `file` at the end")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stopProfiles, err := startProfiles(*cpuProfile, *memProfile)
	if err != nil {
		return err
	}
	defer stopProfiles()
	if *mode == "suite" {
		rlog.SetLogLevel("error")
		if so.strataBin == "" {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			so.strataBin = exe
		}
		if !isFlagSet(fs, "rate") {
			*rate = 10000
		}
		so.producers, so.size, so.window, so.duration, so.rate, so.discard = *producers, *size, *window, *duration, *rate, io.Discard
		return runSuite(ctx, stdout, so)
	}
	if *mode == "timer" {
		return benchTimer(ctx, stdout, *namesrv, *prefix, *timers, *fireRate, *producers, *window)
	}
	if *target == "nats" {
		switch *mode {
		case "produce":
			_, err := benchNATSProduce(ctx, stdout, *natsURL, *prefix, *topics, *producers, *size, *window, *duration, nil)
			return err
		case "latency":
			_, err := benchNATSLatency(ctx, stdout, *natsURL, *prefix, *size, *rate, *duration, nil)
			return err
		case "consume":
			r, err := benchNATSConsume(ctx, *natsURL, *prefix, *nQueues, so.volume, *size, *producers, *window, nil)
			printConsume(stdout, "nats consume", r, *nQueues, 0)
			return err
		}
		return fmt.Errorf("--mode %q: want produce, consume or latency", *mode)
	}
	if *target != "strata" {
		return fmt.Errorf("--target %q: want strata or nats", *target)
	}
	rlog.SetLogLevel("error")
	if *mode == "consume" {
		r, err := benchConsumeStrata(ctx, *namesrv, *prefix, *nQueues, so.volume, *size, *producers, *window, so.consumers, so.consumeBatch, nil)
		printConsume(stdout, "consume (raw client)", r, *nQueues, so.consumeBatch)
		return err
	}
	if *mode == "latency" && *clientKind == "raw" {
		_, err := benchLatencyRaw(ctx, stdout, *namesrv, *prefix, *size, *rate, *duration, nil)
		return err
	}
	names, queues, err := benchTopics(ctx, *namesrv, *prefix, *topics, 4, *clientKind == "raw")
	if err != nil {
		return err
	}
	switch *mode {
	case "produce":
		if *clientKind == "raw" {
			_, err = benchProduceRaw(ctx, stdout, *namesrv, queues, len(names), *producers, *size, *window, *duration, nil)
			return err
		}
		_, err = benchProduce(ctx, stdout, *namesrv, names, *producers, *size, *window, *duration, nil)
		return err
	case "latency":
		return benchLatency(ctx, stdout, *namesrv, names[0], *size, *rate, *duration)
	}
	return fmt.Errorf("--mode %q: want produce, consume, latency, timer or suite", *mode)
}

// printConsume prints a consume run's figures: what was pulled (in pulls of batch, when not
// 0) and at what rate.
func printConsume(w io.Writer, label string, r benchResult, queues, batch int) {
	if r.secs == 0 {
		return
	}
	pulls := ""
	if batch > 0 {
		pulls = fmt.Sprintf(", pulls of %d", batch)
	}
	fmt.Fprintf(w, "%s: %d messages from %d queues%s in %.2fs = %.0f msg/s\n", label, r.n, queues, pulls, r.secs, float64(r.n)/r.secs)
}

// startProfiles starts a CPU profile to cpuFile and returns what ends it and writes the
// allocation profile to memFile; an empty name skips that profile.
func startProfiles(cpuFile, memFile string) (stop func(), err error) {
	var cpu *os.File
	if cpuFile != "" {
		if cpu, err = os.Create(cpuFile); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, err
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if memFile == "" {
			return
		}
		f, err := os.Create(memFile)
		if err == nil {
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "strata bench: memprofile: %v\n", err)
		}
	}, nil
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
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

func benchProduce(ctx context.Context, w io.Writer, namesrv string, topics []string, producers, size, window int, d time.Duration, m *cpuMeter) (benchResult, error) {
	body := make([]byte, size)
	var sent, failed atomic.Int64
	ps := make([]interface {
		SendAsync(context.Context, func(context.Context, *primitive.SendResult, error), ...*primitive.Message) error
		Shutdown() error
	}, producers)
	for i := range ps {
		p, err := newBenchProducer(namesrv, i)
		if err != nil {
			return benchResult{}, err
		}
		defer func() { _ = p.Shutdown() }()
		ps[i] = p
		// The first send of each topic fetches its route; do it before the clock starts.
		for _, t := range topics[i%len(topics) : min(len(topics), i%len(topics)+1)] {
			if _, err := p.SendSync(ctx, primitive.NewMessage(t, body)); err != nil {
				return benchResult{}, fmt.Errorf("warm-up send to %s: %w", t, err)
			}
		}
	}
	m.start()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, p := range ps {
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
	m.stop()
	n := sent.Load()
	fmt.Fprintf(w, "produce: %d producers, %d topics, %d-byte messages: %d acked in %.1fs = %.0f msg/s, %.1f MB/s (%d failed)\n",
		producers, len(topics), size, n, el, float64(n)/el, float64(n)*float64(size)/el/1e6, failed.Load())
	return m.result(n, el)
}

// benchProduceRaw sends with broker/client's asynchronous send: one connection and one
// goroutine per producer, each keeping window requests in flight, queues chosen round-robin
// over every topic's queues.
func benchProduceRaw(ctx context.Context, w io.Writer, namesrv string, queues []client.Queue, topics, producers, size, window int, d time.Duration, m *cpuMeter) (benchResult, error) {
	body := make([]byte, size)
	var sent, failed atomic.Int64
	cs := make([]*client.Client, producers)
	for i := range cs {
		c, err := dialClient(ctx, namesrv)
		if err != nil {
			return benchResult{}, err
		}
		defer c.Close()
		cs[i] = c
	}
	m.start()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots := make(chan struct{}, window) // a slot per request in flight
			answered := func(_ client.SendResult, err error) {
				if err != nil {
					failed.Add(1)
				} else {
					sent.Add(1)
				}
				<-slots
			}
			for n := i; ctx.Err() == nil; n += producers {
				slots <- struct{}{}
				if err := c.SendAsync(context.Background(), "strata-bench", queues[n%len(queues)], body, nil, answered); err != nil {
					failed.Add(1)
					<-slots
				}
			}
			for range window { // every answer is in
				slots <- struct{}{}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	m.stop()
	n := sent.Load()
	fmt.Fprintf(w, "produce (raw client): %d producers x %d in flight, %d topics, %d-byte messages: %d acked in %.1fs = %.0f msg/s, %.1f MB/s (%d failed)\n",
		producers, window, topics, size, n, el, float64(n)/el, float64(n)*float64(size)/el/1e6, failed.Load())
	return m.result(n, el)
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
	_, err = rec.run(ctx, w, "latency", rate, size, d, nil, func(body []byte) error {
		_, err := p.SendSync(ctx, primitive.NewMessage(topic, body))
		return err
	})
	return err
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
// up to 10 s for the consumer to record them all, and prints the percentiles. Sends are paced
// by the clock (a tick that comes late sends what fell due meanwhile) and go out from 256
// goroutines, so one slow acknowledgement does not hold back the rate; each body is stamped
// just before its send.
func (r *latencyRecorder) run(ctx context.Context, w io.Writer, label string, rate, size int, d time.Duration, m *cpuMeter, send func(body []byte) error) (benchResult, error) {
	rate = max(rate, 1)
	tick := time.NewTicker(max(time.Second/time.Duration(rate), 100*time.Microsecond))
	defer tick.Stop()
	due := make(chan struct{}, 4096)
	var sentN atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range due {
				body := make([]byte, max(size, 8))
				binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
				if send(body) == nil {
					sentN.Add(1)
				}
			}
		}()
	}
	m.start()
	start := time.Now()
	queued := int64(0)
	for now := start; now.Sub(start) < d && ctx.Err() == nil; now = <-tick.C {
		for n := int64(now.Sub(start).Seconds() * float64(rate)); queued < n; queued++ {
			due <- struct{}{}
		}
	}
	close(due)
	wg.Wait()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && int64(r.count()) < sentN.Load(); {
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start).Seconds()
	m.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := r.lat
	if len(lat) == 0 {
		return benchResult{}, fmt.Errorf("%s: no message came back within 10s of the last send", label)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	note := fmt.Sprintf("  p50 %v p99 %v max %v (%d of %d back)", lat[len(lat)/2].Round(time.Microsecond),
		lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), len(lat), sentN.Load())
	fmt.Fprintf(w, "%s: %d of %d messages at %d msg/s, publish-to-consume%s\n", label, len(lat), sentN.Load(), rate, note)
	res, err := m.result(int64(len(lat)), el)
	res.note = note
	return res, err
}
