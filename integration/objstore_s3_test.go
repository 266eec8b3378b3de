package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/minio/minio-go/v7"

	"github.com/stratamq/strata/tier/objstore"
	"github.com/stratamq/strata/tier/objstore/objstoretest"
)

// TestObjstoreS3Conformance runs the Bucket acceptance suite against the S3
// provider on a real MinIO server, each subtest under its own prefix.
func TestObjstoreS3Conformance(t *testing.T) {
	m := startMinIO(t)
	var (
		mu       sync.Mutex
		prefixes []string
	)
	objstoretest.RunConformance(t, func(t *testing.T) objstore.Bucket {
		mu.Lock()
		defer mu.Unlock()
		prefixes = append(prefixes, fmt.Sprintf("conformance-%d/", len(prefixes)+1))
		return minioS3Bucket(t, m, prefixes[len(prefixes)-1])
	})
	// Failed and cancelled multipart uploads of the suite were aborted.
	// (MinIO lists unfinished uploads of one exact key only.)
	for _, p := range prefixes {
		for _, name := range []string{"cancel/obj", "cancel/new", "large/mismatch"} {
			if left := minioIncompleteUploads(t, m, p+name); len(left) != 0 {
				t.Fatalf("multipart uploads left behind: %q", left)
			}
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestObjstoreS3ObjectsAsMinIOSeesThem checks with minio-go, not with the
// code under test, what our S3 bucket stored.
func TestObjstoreS3ObjectsAsMinIOSeesThem(t *testing.T) {
	m := startMinIO(t)
	b := minioS3Bucket(t, m, "seen/")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	small := randomBytes(t, 4321)
	if err := b.Put(ctx, "t/0/small.seg", bytes.NewReader(small), int64(len(small))); err != nil {
		t.Fatal(err)
	}
	got, info := minioObject(t, m, "seen/t/0/small.seg")
	if !bytes.Equal(got, small) || info.Size != int64(len(small)) {
		t.Fatalf("small object in MinIO: %d bytes (size %d), want %d bytes as put", len(got), info.Size, len(small))
	}
	if strings.Contains(info.ETag, "-") {
		t.Fatalf("small object ETag %q looks multipart; want a single PutObject", info.ETag)
	}

	// Above the threshold: three parts of MinPartBytes, the last short.
	large := randomBytes(t, 2*objstore.MinPartBytes+777)
	if err := b.Put(ctx, "t/0/large.seg", bytes.NewReader(large), -1); err != nil {
		t.Fatal(err)
	}
	got, info = minioObject(t, m, "seen/t/0/large.seg")
	if !bytes.Equal(got, large) || info.Size != int64(len(large)) {
		t.Fatalf("large object in MinIO: %d bytes (size %d), want %d bytes as put", len(got), info.Size, len(large))
	}
	// S3 marks the ETag of a multipart object with "-<parts>".
	if !strings.HasSuffix(strings.Trim(info.ETag, `"`), "-3") {
		t.Fatalf("large object ETag %q, want a multipart ETag of 3 parts", info.ETag)
	}
	if left := minioIncompleteUploads(t, m, "seen/t/0/large.seg"); len(left) != 0 {
		t.Fatalf("multipart uploads left behind: %q", left)
	}
	// The check above can see an unfinished upload.
	if _, err := b.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(m.Bucket), Key: aws.String("probe/unfinished"),
	}); err != nil {
		t.Fatal(err)
	}
	if left := minioIncompleteUploads(t, m, "probe/unfinished"); len(left) != 1 {
		t.Fatalf("incomplete uploads of probe/unfinished = %q, want the one just created", left)
	}

	// The other way round: what minio-go wrote, our bucket reads.
	if _, err := m.Client.PutObject(ctx, m.Bucket, "seen/from-minio", bytes.NewReader([]byte("hello")), 5, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := b.GetRange(ctx, "from-minio", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "ell" {
		t.Fatalf("GetRange of an object written by minio-go = %q, %v; want ell", data, err)
	}
	var names []string
	if err := b.List(ctx, "", func(n string) error { names = append(names, n); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"from-minio", "t/0/large.seg", "t/0/small.seg"}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("List under prefix = %q, want %q (prefix stripped)", names, want)
	}

	// Delete removes the object in MinIO.
	if err := b.Delete(ctx, "t/0/small.seg"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Client.StatObject(ctx, m.Bucket, "seen/t/0/small.seg", minio.StatObjectOptions{}); err == nil {
		t.Fatal("object still in MinIO after Delete")
	}
}

// TestObjstoreS3ClearErrors checks the messages an operator sees for wrong
// credentials, a missing bucket and a stopped server, and that the bucket
// works again once the server is back.
func TestObjstoreS3ClearErrors(t *testing.T) {
	m := startMinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	opts := m.S3Options("")
	opts.SecretAccessKey = "wrong-secret"
	bad, err := objstore.NewS3(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = bad.Put(ctx, "x", strings.NewReader("x"), 1)
	if !errors.Is(err, objstore.ErrAccessDenied) || !strings.Contains(err.Error(), "check the S3 access key") {
		t.Fatalf("Put with wrong secret: %v; want ErrAccessDenied with a hint", err)
	}

	opts = m.S3Options("")
	opts.Bucket = "no-such-bucket"
	missing, err := objstore.NewS3(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.Ping(ctx); err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Fatalf("Ping of missing bucket: %v", err)
	}
	err = missing.Put(ctx, "x", strings.NewReader("x"), 1)
	if err == nil || errors.Is(err, objstore.ErrNotFound) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Put into missing bucket: %v; want a missing-bucket error that is not ErrNotFound", err)
	}

	b := minioS3Bucket(t, m, "fault/")
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := b.Put(ctx, "before", strings.NewReader("1"), 1); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	err = b.Put(ctx, "during", strings.NewReader("2"), 1)
	if err == nil || !strings.Contains(err.Error(), "S3 endpoint "+m.Endpoint+" unreachable") || !strings.Contains(err.Error(), "check --s3-endpoint") {
		t.Fatalf("Put while MinIO is down: %v; want an unreachable-endpoint error", err)
	}
	m.Start()
	if err := b.Put(ctx, "after", strings.NewReader("3"), 1); err != nil {
		t.Fatalf("Put after MinIO restart: %v", err)
	}
	got, _ := minioObject(t, m, "fault/before")
	if string(got) != "1" {
		t.Fatalf("object written before the restart = %q, want 1", got)
	}
}
