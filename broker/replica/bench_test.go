package replica

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

// BenchmarkCatchUp measures a new follower copying a master's whole log over loopback TCP
// (MB/s of log), beside the same-run baseline "copy-MB/s": the master's segment files copied
// to another directory of the same disk with read and write calls and an fsync per file, as
// a follower fsyncs each segment when it seals. "vs-copy" is the ratio of the two.
func BenchmarkCatchUp(b *testing.B) {
	const total = 32 << 20
	cfg := func(dir string) store.Config {
		return store.Config{Dir: dir, SegmentBytes: 8 << 20, CheckpointInterval: time.Hour}
	}
	mdir := b.TempDir()
	master, err := store.Open(cfg(mdir))
	if err != nil {
		b.Fatal(err)
	}
	defer master.Close()
	if err := master.BeginEpoch(1); err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Repeat("x", 1024))
	ctx := context.Background()
	for i := 0; master.EndOffset() < total; i++ {
		recs := make([][]byte, 64)
		for j := range recs {
			m := &message.Message{Topic: "bench", QueueID: int32(j % 8), BornTimestamp: 1700000000000, Body: body,
				Properties: map[string]string{"UNIQ_KEY": strings.Repeat("k", 8) + string(rune('a'+j%26))}}
			if recs[j], err = m.AppendEncoded(nil); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := master.Append(ctx, recs...); err != nil {
			b.Fatal(err)
		}
	}
	end := master.EndOffset()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(ServerConfig{Store: master, Epoch: 1, Logger: quiet})
	go srv.Serve(ln)
	defer srv.Close()
	segs, err := filepath.Glob(filepath.Join(mdir, "commitlog", "*.log"))
	if err != nil || len(segs) == 0 {
		b.Fatalf("master segments: %v %v", segs, err)
	}

	var copyTime, replTime time.Duration
	b.SetBytes(end)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst := b.TempDir()
		start := time.Now()
		for _, p := range segs {
			copyFile(b, p, filepath.Join(dst, filepath.Base(p)))
		}
		copyTime += time.Since(start)
		fdir := b.TempDir()
		fs, err := store.Open(cfg(fdir))
		if err != nil {
			b.Fatal(err)
		}
		f := NewFollower(FollowerConfig{Store: fs, Member: "bench", Logger: quiet})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.StartTimer()
		start = time.Now()
		go func() { done <- f.Run(rctx, ln.Addr().String(), 1) }()
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
		err = srv.WaitReplicated(wctx, end, 1)
		wcancel()
		replTime += time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		cancel()
		<-done
		fs.Close()
		srv.Forget("bench") // the next iteration's follower starts from nothing
		b.StartTimer()
	}
	b.StopTimer()
	mb := float64(end) * float64(b.N) / 1e6
	b.ReportMetric(mb/copyTime.Seconds(), "copy-MB/s")
	b.ReportMetric(copyTime.Seconds()/replTime.Seconds(), "vs-copy")
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// copyFile copies with plain read and write calls (no copy_file_range or sendfile), then
// fsyncs.
func copyFile(b *testing.B, from, to string) {
	in, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
}
