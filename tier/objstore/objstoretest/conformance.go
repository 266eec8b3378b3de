// Package objstoretest holds the acceptance suite every objstore.Bucket
// provider must pass. It is a normal (non-test) package so that tests in
// other packages — integration/ runs it against S3 on MinIO — can call
// RunConformance.
package objstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/tier/objstore"
)

// LargeObjectBytes is the size of the suite's large object: a little over
// two parts of objstore.MinPartBytes, so that an S3 bucket configured with
// PartBytes = MinPartBytes and MultipartThresholdBytes <= MinPartBytes
// uploads it in three parts, the last one short.
const LargeObjectBytes = 2*objstore.MinPartBytes + 12345

// RunConformance runs the acceptance suite. newBucket must return an empty
// bucket (or an empty namespace, such as a fresh prefix of a shared S3
// bucket) each time it is called; the suite calls it once per subtest.
func RunConformance(t *testing.T, newBucket func(t *testing.T) objstore.Bucket) {
	t.Run("PutGetRoundTrip", func(t *testing.T) { testRoundTrip(t, newBucket(t)) })
	t.Run("OverwriteIdempotent", func(t *testing.T) { testOverwrite(t, newBucket(t)) })
	t.Run("EmptyObject", func(t *testing.T) { testEmpty(t, newBucket(t)) })
	t.Run("GetRange", func(t *testing.T) { testGetRange(t, newBucket(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newBucket(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newBucket(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newBucket(t)) })
	t.Run("InvalidNames", func(t *testing.T) { testInvalidNames(t, newBucket(t)) })
	t.Run("SizeMismatch", func(t *testing.T) { testSizeMismatch(t, newBucket(t)) })
	t.Run("LargeObject", func(t *testing.T) { testLarge(t, newBucket(t)) })
	t.Run("ConcurrentPuts", func(t *testing.T) { testConcurrent(t, newBucket(t)) })
	t.Run("ContextCancellation", func(t *testing.T) { testCancel(t, newBucket(t)) })
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// payload returns n deterministic pseudo-random bytes.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, b objstore.Bucket, name string, data []byte) {
	t.Helper()
	if err := b.Put(testCtx(t), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", name, len(data), err)
	}
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read object: %v", err)
	}
	return data
}

func get(t *testing.T, b objstore.Bucket, name string) []byte {
	t.Helper()
	rc, err := b.Get(testCtx(t), name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	return readAll(t, rc)
}

func equalBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		if len(got) > 64 || len(want) > 64 {
			t.Fatalf("%s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)", what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
		}
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func list(t *testing.T, b objstore.Bucket, prefix string) []string {
	t.Helper()
	names := []string{}
	if err := b.List(testCtx(t), prefix, func(name string) error {
		names = append(names, name)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return names
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("%s: got error %v, want ErrNotFound", what, err)
	}
}

func testRoundTrip(t *testing.T, b objstore.Bucket) {
	data := payload(1, 1000)
	before := time.Now().Add(-5 * time.Minute)
	put(t, b, "topic/0/00000000000000000000.seg", data)
	equalBytes(t, "Get", get(t, b, "topic/0/00000000000000000000.seg"), data)
	attrs, err := b.Attributes(testCtx(t), "topic/0/00000000000000000000.seg")
	if err != nil {
		t.Fatalf("Attributes: %v", err)
	}
	if attrs.Size != int64(len(data)) {
		t.Fatalf("Attributes.Size = %d, want %d", attrs.Size, len(data))
	}
	if attrs.LastModified.Before(before) || attrs.LastModified.After(time.Now().Add(5*time.Minute)) {
		t.Fatalf("Attributes.LastModified = %v, want close to now", attrs.LastModified)
	}
	// A single-segment name works too.
	put(t, b, "manifest.json", []byte(`{"v":1}`))
	equalBytes(t, "Get top-level", get(t, b, "manifest.json"), []byte(`{"v":1}`))
}

func testOverwrite(t *testing.T, b objstore.Bucket) {
	v1, v2 := payload(2, 300), payload(3, 200)
	put(t, b, "obj", v1)
	put(t, b, "obj", v1) // same name, same bytes: harmless
	equalBytes(t, "after idempotent re-put", get(t, b, "obj"), v1)
	put(t, b, "obj", v2)
	equalBytes(t, "after overwrite", get(t, b, "obj"), v2)
	attrs, err := b.Attributes(testCtx(t), "obj")
	if err != nil || attrs.Size != int64(len(v2)) {
		t.Fatalf("Attributes after overwrite = %+v, %v; want size %d", attrs, err, len(v2))
	}
	if got := list(t, b, ""); !slices.Equal(got, []string{"obj"}) {
		t.Fatalf("List after overwrites = %q, want [obj]", got)
	}
}

func testEmpty(t *testing.T, b objstore.Bucket) {
	put(t, b, "empty", nil)
	equalBytes(t, "Get empty", get(t, b, "empty"), nil)
	attrs, err := b.Attributes(testCtx(t), "empty")
	if err != nil || attrs.Size != 0 {
		t.Fatalf("Attributes(empty) = %+v, %v; want size 0", attrs, err)
	}
	for _, r := range [][2]int64{{0, -1}, {0, 10}, {0, 0}} {
		rc, err := b.GetRange(testCtx(t), "empty", r[0], r[1])
		if err != nil {
			t.Fatalf("GetRange(empty, %d, %d): %v", r[0], r[1], err)
		}
		equalBytes(t, fmt.Sprintf("GetRange(empty, %d, %d)", r[0], r[1]), readAll(t, rc), nil)
	}
	if _, err := b.GetRange(testCtx(t), "empty", 1, 1); !errors.Is(err, objstore.ErrInvalidRange) {
		t.Fatalf("GetRange(empty, 1, 1): got %v, want ErrInvalidRange", err)
	}
	// Unknown size works as well.
	if err := b.Put(testCtx(t), "empty2", bytes.NewReader(nil), -1); err != nil {
		t.Fatalf("Put(empty2, size -1): %v", err)
	}
	equalBytes(t, "Get empty2", get(t, b, "empty2"), nil)
}

func testGetRange(t *testing.T, b objstore.Bucket) {
	data := payload(4, 100)
	put(t, b, "r/obj", data)
	for _, tc := range []struct {
		name        string
		off, length int64
		want        []byte
	}{
		{"start", 0, 10, data[:10]},
		{"middle", 45, 10, data[45:55]},
		{"end exactly", 90, 10, data[90:]},
		{"past end truncated", 95, 10, data[95:]},
		{"whole object to end", 0, -1, data},
		{"middle to end", 50, -1, data[50:]},
		{"longer than object", 0, 1000, data},
		{"zero length", 10, 0, nil},
		{"at end", 100, 5, nil},
		{"at end to end", 100, -1, nil},
	} {
		rc, err := b.GetRange(testCtx(t), "r/obj", tc.off, tc.length)
		if err != nil {
			t.Fatalf("%s: GetRange(%d, %d): %v", tc.name, tc.off, tc.length, err)
		}
		equalBytes(t, tc.name, readAll(t, rc), tc.want)
	}
	for _, tc := range []struct {
		name        string
		off, length int64
	}{
		{"beyond end", 101, 1},
		{"beyond end to end", 200, -1},
		{"negative offset", -1, 5},
		{"negative length", 0, -2},
	} {
		rc, err := b.GetRange(testCtx(t), "r/obj", tc.off, tc.length)
		if !errors.Is(err, objstore.ErrInvalidRange) {
			if err == nil {
				rc.Close()
			}
			t.Fatalf("%s: GetRange(%d, %d): got %v, want ErrInvalidRange", tc.name, tc.off, tc.length, err)
		}
	}
	_, err := b.GetRange(testCtx(t), "r/missing", 0, 10)
	wantNotFound(t, "GetRange(missing)", err)
}

func testList(t *testing.T, b objstore.Bucket) {
	names := []string{
		"topic-b/0/00000000000000000000.seg",
		"topic-a/1/00000000000000000000.seg",
		"topic-a/0/00000000000000001024.seg",
		"topic-a/0/00000000000000000000.seg",
		"topic-a-x/0/00000000000000000000.seg",
		"z.idx",
		"0.idx",
	}
	for i, n := range names {
		put(t, b, n, payload(uint64(10+i), 10+i))
	}
	all := slices.Clone(names)
	slices.Sort(all)
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		// Byte order: '-' (0x2d) sorts before '/' (0x2f), so topic-a-x/
		// comes before topic-a/ although a directory walk would differ.
		{"", all},
		{"topic-a/", []string{
			"topic-a/0/00000000000000000000.seg",
			"topic-a/0/00000000000000001024.seg",
			"topic-a/1/00000000000000000000.seg",
		}},
		{"topic-a", []string{
			"topic-a-x/0/00000000000000000000.seg",
			"topic-a/0/00000000000000000000.seg",
			"topic-a/0/00000000000000001024.seg",
			"topic-a/1/00000000000000000000.seg",
		}},
		{"topic-a/0/000000000000000010", []string{"topic-a/0/00000000000000001024.seg"}},
		{"topic-a/0/00000000000000000000.seg", []string{"topic-a/0/00000000000000000000.seg"}},
		{"z", []string{"z.idx"}},
		{"nope", []string{}},
		{"nope/deeper/", []string{}},
	} {
		if got := list(t, b, tc.prefix); !slices.Equal(got, tc.want) {
			t.Fatalf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	// An error from fn stops the listing and comes back as is.
	stop := errors.New("stop here")
	calls := 0
	err := b.List(testCtx(t), "", func(string) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with failing fn: err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func testDelete(t *testing.T, b objstore.Bucket) {
	put(t, b, "dir/x", []byte("x"))
	put(t, b, "dir/y", []byte("y"))
	put(t, b, "deep/a/b/c", []byte("c"))
	ctx := testCtx(t)
	for _, n := range []string{"dir/x", "deep/a/b/c"} {
		if err := b.Delete(ctx, n); err != nil {
			t.Fatalf("Delete(%q): %v", n, err)
		}
		_, err := b.Get(ctx, n)
		wantNotFound(t, "Get after Delete", err)
		_, err = b.Attributes(ctx, n)
		wantNotFound(t, "Attributes after Delete", err)
	}
	if got := list(t, b, ""); !slices.Equal(got, []string{"dir/y"}) {
		t.Fatalf("List after Delete = %q, want [dir/y]", got)
	}
	equalBytes(t, "sibling survives", get(t, b, "dir/y"), []byte("y"))
	if err := b.Delete(ctx, "dir/x"); err != nil {
		t.Fatalf("second Delete of same object: %v, want nil", err)
	}
	if err := b.Delete(ctx, "never/existed"); err != nil {
		t.Fatalf("Delete of missing object: %v, want nil", err)
	}
	// The name can be reused after deletion.
	put(t, b, "deep/a/b/c", []byte("again"))
	equalBytes(t, "re-put after Delete", get(t, b, "deep/a/b/c"), []byte("again"))
}

func testMissing(t *testing.T, b objstore.Bucket) {
	ctx := testCtx(t)
	_, err := b.Get(ctx, "missing")
	wantNotFound(t, "Get(missing)", err)
	_, err = b.Get(ctx, "missing/nested/name")
	wantNotFound(t, "Get(missing/nested/name)", err)
	_, err = b.Attributes(ctx, "missing")
	wantNotFound(t, "Attributes(missing)", err)
	_, err = b.GetRange(ctx, "missing", 0, -1)
	wantNotFound(t, "GetRange(missing)", err)
	// A prefix of existing names is not an object.
	put(t, b, "parent/child", []byte("c"))
	_, err = b.Get(ctx, "parent")
	wantNotFound(t, "Get(prefix of an object)", err)
	_, err = b.Attributes(ctx, "parent")
	wantNotFound(t, "Attributes(prefix of an object)", err)
}

func testInvalidNames(t *testing.T, b objstore.Bucket) {
	ctx := testCtx(t)
	for _, n := range []string{"", "/abs", "a//b", "a/", "../escape", "a/../../b", "./a", "a\x00b"} {
		if err := b.Put(ctx, n, bytes.NewReader([]byte("x")), 1); !errors.Is(err, objstore.ErrInvalidName) {
			t.Fatalf("Put(%q): got %v, want ErrInvalidName", n, err)
		}
		if _, err := b.Get(ctx, n); !errors.Is(err, objstore.ErrInvalidName) {
			t.Fatalf("Get(%q): got %v, want ErrInvalidName", n, err)
		}
	}
	if got := list(t, b, ""); len(got) != 0 {
		t.Fatalf("List after rejected puts = %q, want none", got)
	}
}

func testSizeMismatch(t *testing.T, b objstore.Bucket) {
	ctx := testCtx(t)
	err := b.Put(ctx, "short", bytes.NewReader([]byte("12345")), 10)
	if !errors.Is(err, objstore.ErrSizeMismatch) {
		t.Fatalf("Put with announced size 10 of 5 bytes: got %v, want ErrSizeMismatch", err)
	}
	_, err = b.Get(ctx, "short")
	wantNotFound(t, "Get after failed Put", err)
	err = b.Put(ctx, "long", bytes.NewReader([]byte("1234567890")), 5)
	if !errors.Is(err, objstore.ErrSizeMismatch) {
		t.Fatalf("Put with announced size 5 of 10 bytes: got %v, want ErrSizeMismatch", err)
	}
	_, err = b.Get(ctx, "long")
	wantNotFound(t, "Get after failed Put", err)
}

func testLarge(t *testing.T, b objstore.Bucket) {
	data := payload(5, LargeObjectBytes)
	put(t, b, "large/known-size", data)
	equalBytes(t, "Get large", get(t, b, "large/known-size"), data)
	attrs, err := b.Attributes(testCtx(t), "large/known-size")
	if err != nil || attrs.Size != int64(len(data)) {
		t.Fatalf("Attributes(large) = %+v, %v; want size %d", attrs, err, len(data))
	}
	// A range across the first part boundary.
	off := int64(objstore.MinPartBytes - 10)
	rc, err := b.GetRange(testCtx(t), "large/known-size", off, 20)
	if err != nil {
		t.Fatalf("GetRange across part boundary: %v", err)
	}
	equalBytes(t, "GetRange across part boundary", readAll(t, rc), data[off:off+20])
	// Unknown size: the provider discovers the length while streaming.
	if err := b.Put(testCtx(t), "large/unknown-size", io.MultiReader(bytes.NewReader(data)), -1); err != nil {
		t.Fatalf("Put(large, size -1): %v", err)
	}
	equalBytes(t, "Get large unknown size", get(t, b, "large/unknown-size"), data)
	// Size mismatch on a large object fails and stores nothing.
	err = b.Put(testCtx(t), "large/mismatch", bytes.NewReader(data), int64(len(data))+1)
	if !errors.Is(err, objstore.ErrSizeMismatch) {
		t.Fatalf("large Put with wrong size: got %v, want ErrSizeMismatch", err)
	}
	_, err = b.Attributes(testCtx(t), "large/mismatch")
	wantNotFound(t, "Attributes after failed large Put", err)
}

func testConcurrent(t *testing.T, b objstore.Bucket) {
	const writers = 16
	same := payload(6, 4096)
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			data := payload(uint64(100+i), 1000+i)
			errs <- b.Put(testCtx(t), fmt.Sprintf("c/distinct/%02d", i), bytes.NewReader(data), int64(len(data)))
		}()
		go func() {
			defer wg.Done()
			errs <- b.Put(testCtx(t), "c/same", bytes.NewReader(same), int64(len(same)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	for i := range writers {
		equalBytes(t, fmt.Sprintf("distinct %d", i), get(t, b, fmt.Sprintf("c/distinct/%02d", i)), payload(uint64(100+i), 1000+i))
	}
	equalBytes(t, "same", get(t, b, "c/same"), same)
	if got := list(t, b, "c/"); len(got) != writers+1 {
		t.Fatalf("List after concurrent puts: %d names, want %d", len(got), writers+1)
	}
}

// cancellingReader yields data but cancels ctx once after bytes have been
// read, like a producer that goes away mid-upload.
type cancellingReader struct {
	r      io.Reader
	after  int
	read   int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.read >= c.after {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

func testCancel(t *testing.T, b objstore.Bucket) {
	old := payload(7, 500)
	put(t, b, "cancel/obj", old)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with cancelled context: got %v, want context.Canceled", op, err)
		}
	}
	check("Put", b.Put(cancelled, "cancel/new", bytes.NewReader([]byte("x")), 1))
	_, err := b.Get(cancelled, "cancel/obj")
	check("Get", err)
	_, err = b.GetRange(cancelled, "cancel/obj", 0, 10)
	check("GetRange", err)
	_, err = b.Attributes(cancelled, "cancel/obj")
	check("Attributes", err)
	check("List", b.List(cancelled, "", func(string) error { return nil }))
	check("Delete", b.Delete(cancelled, "cancel/obj"))

	// Cancelled in the middle of the upload, small and large: the previous
	// object stays as it was and nothing new appears.
	for _, n := range []int{1000, LargeObjectBytes} {
		ctx, cancel := context.WithCancel(context.Background())
		data := payload(8, n)
		cr := &cancellingReader{r: bytes.NewReader(data), after: n / 2, cancel: cancel}
		check(fmt.Sprintf("Put of %d bytes cancelled midway", n), b.Put(ctx, "cancel/obj", cr, int64(n)))
		cr = &cancellingReader{r: bytes.NewReader(data), after: n / 2, cancel: func() {}}
		ctx2, cancel2 := context.WithCancel(context.Background())
		cr.cancel = cancel2
		check(fmt.Sprintf("Put of new %d-byte object cancelled midway", n), b.Put(ctx2, "cancel/new", cr, int64(n)))
		cancel()
		cancel2()
		equalBytes(t, "object after cancelled overwrite", get(t, b, "cancel/obj"), old)
		_, err := b.Attributes(testCtx(t), "cancel/new")
		wantNotFound(t, "object after cancelled Put", err)
	}
	if got := list(t, b, "cancel/"); !slices.Equal(got, []string{"cancel/obj"}) {
		t.Fatalf("List after cancelled puts = %q, want [cancel/obj]", got)
	}
}
