package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/tier/objstore"
	"github.com/stratamq/strata/tier/objstore/objstoretest"
)

func TestMemoryConformance(t *testing.T) {
	objstoretest.RunConformance(t, func(t *testing.T) objstore.Bucket { return objstore.NewMemory() })
}

func TestFilesystemConformance(t *testing.T) {
	objstoretest.RunConformance(t, func(t *testing.T) objstore.Bucket {
		b, err := objstore.NewFilesystem(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestMetricsWrapperConformance(t *testing.T) {
	reg := prometheus.NewRegistry()
	objstoretest.RunConformance(t, func(t *testing.T) objstore.Bucket {
		return objstore.WithMetrics(objstore.NewMemory(), reg)
	})
}

func TestFilesystemLayoutAndAtomicity(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	b, err := objstore.NewFilesystem(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "t/0/seg", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "t", "0", "seg"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("file on disk = %q, %v; want hello", got, err)
	}
	// A failed Put leaves no temporary file behind and the old content.
	err = b.Put(ctx, "t/0/seg", io.MultiReader(strings.NewReader("par"), errReader{}), 10)
	if err == nil {
		t.Fatal("Put with failing reader succeeded")
	}
	got, _ = os.ReadFile(filepath.Join(root, "t", "0", "seg"))
	if string(got) != "hello" {
		t.Fatalf("after failed Put file = %q, want hello", got)
	}
	tmp, err := os.ReadDir(filepath.Join(root, ".strata-tmp"))
	if err != nil || len(tmp) != 0 {
		t.Fatalf("temporary dir holds %v (%v), want empty", tmp, err)
	}
	// The staging directory is reserved and never listed.
	if err := b.Put(ctx, ".strata-tmp/x", strings.NewReader("x"), 1); !errors.Is(err, objstore.ErrInvalidName) {
		t.Fatalf("Put into staging dir: %v, want ErrInvalidName", err)
	}
	// A name cannot be both an object and a prefix of objects on disk.
	if err := b.Put(ctx, "t/0", strings.NewReader("x"), 1); !errors.Is(err, objstore.ErrInvalidName) {
		t.Fatalf("Put(t/0) over directory: %v, want ErrInvalidName", err)
	}
	if err := b.Put(ctx, "t/0/seg/child", strings.NewReader("x"), 1); err == nil {
		t.Fatal("Put(t/0/seg/child) under a file succeeded")
	}
	// Deleting the last object removes its now empty directories.
	if err := b.Delete(ctx, "t/0/seg"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "t")); !os.IsNotExist(err) {
		t.Fatalf("empty directory t/ left after Delete: %v", err)
	}
	// Prefixes that climb out of the root match nothing.
	if err := b.List(ctx, "../", func(n string) error { return errors.New("listed " + n) }); err != nil {
		t.Fatal(err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := objstore.Open(ctx, "file://"+dir, objstore.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fb, ok := b.(*objstore.FSBucket); !ok || fb.Root() != dir {
		t.Fatalf("Open(file://%s) = %T %v", dir, b, b)
	}
	t.Chdir(dir)
	b, err = objstore.Open(ctx, "file://rel/data", objstore.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fb := b.(*objstore.FSBucket); fb.Root() != filepath.Join(dir, "rel", "data") {
		t.Fatalf("Open(file://rel/data) root = %s", fb.Root())
	}
	if b, err := objstore.Open(ctx, "mem://", objstore.S3Options{}); err != nil {
		t.Fatal(err)
	} else if _, ok := b.(*objstore.MemBucket); !ok {
		t.Fatalf("Open(mem://) = %T", b)
	}
	for _, bad := range []string{"ftp://x", "s3://", "file://", "://"} {
		if _, err := objstore.Open(ctx, bad, objstore.S3Options{}); err == nil {
			t.Fatalf("Open(%q) succeeded", bad)
		}
	}
	// s3://bucket/prefix applies the prefix to every name: check through the
	// error message of a request to a closed port, which names the key.
	endpoint := closedEndpoint(t)
	b, err = objstore.Open(ctx, "s3://bkt/some/prefix", objstore.S3Options{
		Endpoint: endpoint, UsePathStyle: true, AccessKeyID: "a", SecretAccessKey: "b", MaxAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Attributes(ctx, "obj")
	if err == nil || !strings.Contains(err.Error(), "s3://bkt/some/prefix/obj") {
		t.Fatalf("Attributes error %v does not name s3://bkt/some/prefix/obj", err)
	}
}

// closedEndpoint returns an http URL on which nothing listens.
func closedEndpoint(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestS3UnreachableEndpoint(t *testing.T) {
	endpoint := closedEndpoint(t)
	b, err := objstore.NewS3(context.Background(), objstore.S3Options{
		Bucket: "b", Endpoint: endpoint, UsePathStyle: true,
		AccessKeyID: "k", SecretAccessKey: "s", MaxAttempts: 3, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Put(context.Background(), "x", bytes.NewReader([]byte("x")), 1)
	if err == nil {
		t.Fatal("Put to closed endpoint succeeded")
	}
	for _, want := range []string{"S3 endpoint " + endpoint + " unreachable", "check --s3-endpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not contain %q", err, want)
		}
	}
	if err := b.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Ping error %v, want unreachable", err)
	}
}

func TestS3OptionsValidate(t *testing.T) {
	for _, o := range []objstore.S3Options{
		{},                                 // no bucket
		{Bucket: "b", PartBytes: 1 << 20},  // part below S3 minimum
		{Bucket: "b", AccessKeyID: "only"}, // half the credentials
		{Bucket: "b", Endpoint: "127.0.0.1:9000"},
	} {
		if _, err := objstore.NewS3(context.Background(), o); err == nil {
			t.Fatalf("NewS3(%+v) succeeded", o)
		}
	}
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b := objstore.WithMetrics(objstore.NewMemory(), reg)
	_ = objstore.WithMetrics(objstore.NewMemory(), reg) // shares the series, no panic
	if err := b.Put(ctx, "a", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	rc, err := b.GetRange(ctx, "a", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(rc)
	rc.Close()
	_, _ = b.Get(ctx, "missing")
	_ = b.Put(ctx, "../bad", strings.NewReader("x"), 1)

	for _, tc := range []struct {
		metric, op string
		want       float64
	}{
		{"strata_objstore_requests_total", "put", 2},
		{"strata_objstore_requests_total", "get", 1},
		{"strata_objstore_requests_total", "get_range", 1},
		{"strata_objstore_requests_total", "delete", 0},
		{"strata_objstore_request_bytes_total", "put", 5},
		{"strata_objstore_request_bytes_total", "get_range", 3},
		// The missing object is not a failure; the invalid name is.
		{"strata_objstore_request_failures_total", "get", 0},
		{"strata_objstore_request_failures_total", "put", 1},
		{"strata_objstore_request_duration_seconds", "put", 2}, // sample count
	} {
		if got := gathered(t, reg, tc.metric, tc.op); got != tc.want {
			t.Fatalf("%s{op=%q} = %v, want %v", tc.metric, tc.op, got, tc.want)
		}
	}
}

// gathered returns the value of a counter series, or the sample count of a
// histogram series, labelled op.
func gathered(t *testing.T, reg *prometheus.Registry, name, op string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == op {
					if h := m.GetHistogram(); h != nil {
						return float64(h.GetSampleCount())
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{op=%q}", name, op)
	return 0
}
