package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stratamq/strata/tier"
)

const tierPrefix = "DefaultCluster/broker-a"

// The official Go client consumes from offset 0 after every local segment is gone: every
// message arrives, in order, with its offsets and ids; tag filtering works on cold reads.
func TestTierColdConsumeWithGoClient(t *testing.T) {
	data := t.TempDir()
	p := startDev(t, data, tierDevArgs...)
	runCLI(t, "", "topic", "create", "--namesrv", p.Namesrv, "--topic", "ColdT", "--queues", "1")
	sent := tierProduceTagged(t, p.Namesrv, "ColdT", "cold", 0, 400, 300) // ~160 KiB: 3+ segments
	st := tierWaitOffloaded(t, p, sent[len(sent)-1].commitLogOffset, 20*time.Second)
	if st.Segments < 2 || st.Objects < st.Segments || st.Bytes == 0 {
		t.Fatalf("tier status after offload: %+v", st)
	}
	// The bucket holds them as files under <data>/bucket.
	segs, _ := filepath.Glob(filepath.Join(data, "bucket", tierPrefix, "segments", "*.seg"))
	if len(segs) != st.Segments {
		t.Fatalf("%d segment objects on disk, status says %d", len(segs), st.Segments)
	}

	tierCheckReceived(t, tierConsumeAll(t, p.Namesrv, "cold-all", "ColdT", "*", len(sent), 20*time.Second), sent)
	var as []tierSent
	for _, m := range sent {
		if m.tag == "A" {
			as = append(as, m)
		}
	}
	tierCheckReceived(t, tierConsumeAll(t, p.Namesrv, "cold-a", "ColdT", "A", len(as), 20*time.Second), as)

	out := runCLI(t, "", "tier", "status", "--http", p.HTTP)
	if !strings.Contains(out, "broker-a") || !strings.Contains(out, fmt.Sprint(tierStatus(t, p).OffloadWatermark)) {
		t.Fatalf("strata tier status:\n%s", out)
	}
	resp, err := tierHTTPGet("http://" + p.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"strata_tier_offloaded_bytes_total", "strata_tier_cold_read_bytes_total", "strata_objstore_requests_total", "strata_tier_offload_lag_bytes"} {
		if !strings.Contains(resp, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

func tierHTTPGet(url string) (string, error) {
	resp, err := tierHTTP.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// A broker whose data directory is wiped serves every offloaded message from the bucket
// and continues the queue and the commit log after them.
func TestTierWipedDataDir(t *testing.T) {
	data := t.TempDir()
	p := startDev(t, data, tierDevArgs...)
	runCLI(t, "", "topic", "create", "--namesrv", p.Namesrv, "--topic", "WipeT", "--queues", "1")
	sent := tierProduceTagged(t, p.Namesrv, "WipeT", "wipe", 0, 300, 300)
	tierWaitOffloaded(t, p, sent[len(sent)-1].commitLogOffset, 20*time.Second)
	p.Stop()
	if err := os.RemoveAll(filepath.Join(data, "broker")); err != nil {
		t.Fatal(err)
	}
	p.start()
	more := tierProduceTagged(t, p.Namesrv, "WipeT", "wipe", 300, 5, 10)
	if more[0].queueOffset != 300 || more[0].commitLogOffset <= sent[len(sent)-1].commitLogOffset {
		t.Fatalf("after the wipe the first send got queue offset %d at commit log %d", more[0].queueOffset, more[0].commitLogOffset)
	}
	tierCheckReceived(t, tierConsumeAll(t, p.Namesrv, "wipe-all", "WipeT", "*", len(sent)+len(more), 20*time.Second), append(sent, more...))
}

// A broker killed while segments are being offloaded completes the offload after restart
// with no gap and no duplicate.
func TestTierBrokerKilledMidUpload(t *testing.T) {
	data := t.TempDir()
	p := startDev(t, data, append(tierDevArgs, "--seal-after", "100ms")...)
	runCLI(t, "", "topic", "create", "--namesrv", p.Namesrv, "--topic", "KillT", "--queues", "1")
	sent := tierProduceTagged(t, p.Namesrv, "KillT", "kill", 0, 300, 300)
	p.Kill() // segments are sealing and uploading every 100ms
	p.start()
	sent = append(sent, tierProduceTagged(t, p.Namesrv, "KillT", "kill", 300, 100, 300)...)
	tierWaitOffloaded(t, p, sent[len(sent)-1].commitLogOffset, 20*time.Second)

	// The manifest covers the commit log without gap or overlap.
	m := tierFSManifest(t, data)
	for i := 1; i < len(m.Segments); i++ {
		if m.Segments[i].Base != m.Segments[i-1].End {
			t.Fatalf("manifest segment %d starts at %d, previous ends at %d", i, m.Segments[i].Base, m.Segments[i-1].End)
		}
	}
	tierCheckReceived(t, tierConsumeAll(t, p.Namesrv, "kill-all", "KillT", "*", len(sent), 20*time.Second), sent)
}

func tierFSManifest(t testing.TB, data string) *tier.Manifest {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(data, "bucket", tierPrefix, "manifest", "*.json"))
	if len(names) == 0 {
		t.Fatal("no manifest in the bucket")
	}
	sort.Strings(names)
	b, err := os.ReadFile(names[len(names)-1])
	if err != nil {
		t.Fatal(err)
	}
	m, err := tier.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A corrupted block is detected by its checksum and reported; its bytes are never served.
func TestTierCorruptBlockReported(t *testing.T) {
	data := t.TempDir()
	p := startDev(t, data, tierDevArgs...)
	runCLI(t, "", "topic", "create", "--namesrv", p.Namesrv, "--topic", "RotT", "--queues", "1")
	sent := tierProduceTagged(t, p.Namesrv, "RotT", "rot", 0, 200, 300)
	tierWaitOffloaded(t, p, sent[len(sent)-1].commitLogOffset, 20*time.Second)
	m := tierFSManifest(t, data)
	obj := filepath.Join(data, "bucket", m.Segments[0].Object)
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0xff // inside the first block frame
	if err := os.WriteFile(obj, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs, err := tierPullAllFrom(ctx, p.Namesrv, "RotT")
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("pull over a corrupt block: %d messages, err %v", len(msgs), err)
	}
	if len(msgs) != 0 {
		t.Fatalf("%d messages served from before the corrupt block", len(msgs))
	}
	// The process's output reaches the test through a pipe, a moment after the response.
	tierWait(t, 10*time.Second, "the broker to log the corruption", func() bool {
		return strings.Contains(p.output.String(), "corrupt tier object")
	})
}

// On MinIO: offload writes objects the bucket really holds; with MinIO stopped writes
// continue until the disk's high watermark, then are refused with a clear error; offload
// resumes when MinIO returns and nothing is lost.
func TestTierMinIOOutage(t *testing.T) {
	mio := startMinIO(t)
	data := t.TempDir()
	p := startDev(t, data, append(tierDevArgs,
		"--bucket", "s3://"+mio.Bucket+"/tiered", "--s3-endpoint", mio.Endpoint, "--s3-path-style",
		"--s3-region", "us-east-1", "--s3-access-key", minioUser, "--s3-secret-key", minioPassword,
		"--max-local-bytes", "512KiB")...)
	runCLI(t, "", "topic", "create", "--namesrv", p.Namesrv, "--topic", "S3T", "--queues", "1")
	sent := tierProduceTagged(t, p.Namesrv, "S3T", "s3", 0, 200, 300)
	st := tierWaitOffloaded(t, p, sent[len(sent)-1].commitLogOffset, 20*time.Second)

	// Independently of the code under test: the objects are in MinIO.
	ctx := context.Background()
	var names []string
	for o := range mio.Client.ListObjects(ctx, mio.Bucket, minio.ListObjectsOptions{Prefix: "tiered/" + tierPrefix + "/segments/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		names = append(names, o.Key)
	}
	if len(names) != st.Segments {
		t.Fatalf("MinIO holds %d segment objects, the tier status says %d", len(names), st.Segments)
	}
	obj, _ := minioObject(t, mio, names[0])
	if idx, _, err := tier.DecodeSegmentObject(obj); err != nil || len(idx.Queues) == 0 {
		t.Fatalf("segment object %s does not decode: %v", names[0], err)
	}

	mio.Stop()
	wm := tierStatus(t, p).OffloadWatermark
	pr := newProducer(t, p.Namesrv)
	var refusal error
	n := len(sent)
	for i := 0; i < 5000 && refusal == nil; i++ {
		body := fmt.Sprintf("s3-%04d", n)
		msg := tierTaggedMessage("S3T", body, n, 300)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := pr.SendSync(sctx, msg)
		cancel()
		if err != nil {
			refusal = err
			break
		}
		sent = append(sent, tierSentFrom(t, body, msg.GetTags(), r))
		n++
	}
	if refusal == nil || !strings.Contains(refusal.Error(), "high watermark") {
		t.Fatalf("with MinIO down, %d sends went through and then: %v", n-200, refusal)
	}
	if got := tierStatus(t, p).OffloadWatermark; got != wm {
		t.Fatalf("watermark moved from %d to %d with MinIO down", wm, got)
	}
	mio.Start()
	tierWaitOffloaded(t, p, sent[len(sent)-1].commitLogOffset, 30*time.Second)
	more := tierProduceTagged(t, p.Namesrv, "S3T", "s3", n, 3, 10)
	tierCheckReceived(t, tierConsumeAll(t, p.Namesrv, "s3-all", "S3T", "*", len(sent)+len(more), 20*time.Second), append(sent, more...))
}
