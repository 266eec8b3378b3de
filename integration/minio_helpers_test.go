package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/stratamq/strata/broker/remoting/tlstest"
	"github.com/stratamq/strata/tier/objstore"
)

const (
	minioUser     = "strata-test"
	minioPassword = "strata-test-secret"
	minioBucket   = "strata"
	// minioReadyTimeout is generous: MinIO takes a few seconds to start on
	// a loaded 2-core machine.
	minioReadyTimeout = 90 * time.Second
)

// minioServer is a MinIO server process owned by one test. Stop and Start
// take it down and bring it back on the same address and data directory,
// for fault tests; t.Cleanup stops it for good.
type minioServer struct {
	t       testing.TB
	bin     string
	dataDir string
	// Addr is host:port of the S3 API; Endpoint is its http:// URL.
	Addr     string
	Endpoint string
	console  string
	// Bucket exists when startMinIO returns.
	Bucket string
	// Client is an independent minio-go client to check what is stored.
	Client *minio.Client
	// httpClient polls readiness (it trusts the server's CA under TLS).
	httpClient *http.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    *lockedBuffer
}

// minioBinary finds the MinIO server: $STRATA_MINIO_BIN, else
// <repo>/.tools/bin/minio, installed by `make tools`.
func minioBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("STRATA_MINIO_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("MinIO not found at STRATA_MINIO_BIN=%s: %v", bin, err)
		}
		return bin
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(repo, ".tools", "bin", "minio")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("MinIO not installed: run `make tools` (looked for %s, or set STRATA_MINIO_BIN)", bin)
	}
	return bin
}

// startMinIO starts a MinIO server on free loopback ports with a temporary
// data directory, waits until it is ready and creates the bucket
// minioBucket. The server is stopped when the test ends.
func startMinIO(t testing.TB) *minioServer {
	t.Helper()
	return startMinIOWith(t, nil)
}

// startMinIOWith is startMinIO serving https with a certificate of ca when ca is not nil.
func startMinIOWith(t testing.TB, ca *tlstest.CA) *minioServer {
	t.Helper()
	m := &minioServer{
		t:       t,
		bin:     minioBinary(t),
		dataDir: t.TempDir(),
		Addr:    freeAddr(t),
		console: freeAddr(t),
		Bucket:  minioBucket,
	}
	m.Endpoint = "http://" + m.Addr
	m.httpClient = &http.Client{Timeout: 2 * time.Second}
	var transport http.RoundTripper
	if ca != nil {
		// MinIO serves TLS when its certs directory holds public.crt and private.key.
		certs := filepath.Join(m.dataDir, ".certs")
		if err := os.MkdirAll(certs, 0o700); err != nil {
			t.Fatal(err)
		}
		ca.Server("minio").CopyTo(t, filepath.Join(certs, "public.crt"), filepath.Join(certs, "private.key"))
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(ca.CertFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("CA %s: %v", ca.CertFile, err)
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		m.Endpoint, m.httpClient.Transport, transport = "https://"+m.Addr, tr, tr
	}
	t.Cleanup(m.Stop)
	m.Start()

	client, err := minio.New(m.Addr, &minio.Options{
		Creds:     credentials.NewStaticV4(minioUser, minioPassword, ""),
		Secure:    ca != nil,
		Region:    "us-east-1",
		Transport: transport,
	})
	if err != nil {
		t.Fatalf("minio-go client: %v", err)
	}
	m.Client = client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, m.Bucket, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("create bucket %q: %v\nMinIO output:\n%s", m.Bucket, err, m.log.String())
	}
	return m
}

// Start starts the server (again) on its address and data directory and
// waits until it reports ready. It does nothing if the server runs.
func (m *minioServer) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	m.log = &lockedBuffer{}
	cmd := exec.Command(m.bin, "server",
		"--address", m.Addr,
		"--console-address", m.console,
		"--certs-dir", filepath.Join(m.dataDir, ".certs"),
		"--quiet",
		filepath.Join(m.dataDir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+minioUser,
		"MINIO_ROOT_PASSWORD="+minioPassword,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start MinIO %s: %v", m.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited

	// Poll the readiness endpoint: an eventually-true condition, with a
	// deadline, failing fast if the process dies.
	url := m.Endpoint + "/minio/health/ready"
	httpClient := m.httpClient
	deadline := time.Now().Add(minioReadyTimeout)
	for {
		resp, err := httpClient.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			m.cmd = nil
			m.t.Fatalf("MinIO exited before it was ready (%v)\nMinIO output:\n%s", cmd.ProcessState, m.log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("MinIO not ready at %s after %s (last error %v)\nMinIO output:\n%s", url, minioReadyTimeout, err, m.log.String())
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after a grace period) and
// waits for it to exit. It is idempotent.
func (m *minioServer) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// S3Options returns options for an objstore S3 bucket on this server under
// prefix, with small multipart parts so that tests exercise multipart
// uploads without large objects.
func (m *minioServer) S3Options(prefix string) objstore.S3Options {
	return objstore.S3Options{
		Bucket:                  m.Bucket,
		Prefix:                  prefix,
		Endpoint:                m.Endpoint,
		Region:                  "us-east-1",
		UsePathStyle:            true,
		AccessKeyID:             minioUser,
		SecretAccessKey:         minioPassword,
		MaxAttempts:             3,
		MaxBackoff:              200 * time.Millisecond,
		RequestTimeout:          30 * time.Second,
		PartBytes:               objstore.MinPartBytes,
		MultipartThresholdBytes: objstore.MinPartBytes,
	}
}

// minioS3Bucket returns an objstore S3 bucket on m under prefix.
func minioS3Bucket(t testing.TB, m *minioServer, prefix string) *objstore.S3Bucket {
	t.Helper()
	b, err := objstore.NewS3(context.Background(), m.S3Options(prefix))
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return b
}

// minioObject reads an object straight from MinIO with minio-go,
// independently of the code under test.
func minioObject(t testing.TB, m *minioServer, key string) ([]byte, minio.ObjectInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	obj, err := m.Client.GetObject(ctx, m.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("minio-go GetObject(%s): %v", key, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if err != nil {
		t.Fatalf("minio-go Stat(%s): %v", key, err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(obj); err != nil {
		t.Fatalf("minio-go read %s: %v", key, err)
	}
	return buf.Bytes(), info
}

// minioIncompleteUploads lists the multipart uploads of key that were
// neither completed nor aborted. MinIO answers for one exact key, not for a
// prefix.
func minioIncompleteUploads(t testing.TB, m *minioServer, key string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	for u := range m.Client.ListIncompleteUploads(ctx, m.Bucket, key, false) {
		if u.Err != nil {
			t.Fatalf("minio-go ListIncompleteUploads: %v", u.Err)
		}
		keys = append(keys, fmt.Sprintf("%s (upload %s)", u.Key, u.UploadID))
	}
	return keys
}
