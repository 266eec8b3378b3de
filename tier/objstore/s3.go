package objstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3 limits and defaults.
const (
	// MinPartBytes is the smallest part S3 accepts in a multipart upload
	// (except the last part).
	MinPartBytes = 5 << 20
	// DefaultPartBytes is the part size of multipart uploads.
	DefaultPartBytes = 16 << 20
	// maxParts is S3's limit on the parts of one upload.
	maxParts = 10000
)

// S3Options configures an S3Bucket. Zero values take the defaults noted.
type S3Options struct {
	// Bucket is the S3 bucket name; required.
	Bucket string
	// Prefix is prepended to every object name ("strata/" → names are
	// stored as "strata/<name>"); a missing trailing '/' is added.
	Prefix string
	// Endpoint is the service URL, e.g. "http://127.0.0.1:9000" for MinIO;
	// empty means AWS.
	Endpoint string
	// Region defaults to the AWS configuration (AWS_REGION, profile) and
	// then to "us-east-1".
	Region string
	// UsePathStyle addresses buckets as <endpoint>/<bucket> instead of
	// <bucket>.<endpoint>; MinIO and most S3-compatible stores need it.
	UsePathStyle bool
	// AccessKeyID and SecretAccessKey (and optional SessionToken) are static
	// credentials; when empty the standard AWS chain is used (environment,
	// shared files, instance or task role).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// CABundleFile is a PEM file of CA certificates trusted for an https:// Endpoint's
	// certificate besides the system's: a private MinIO or Ceph with its own CA.
	CABundleFile string
	// MaxAttempts bounds the attempts of one request, first included, with
	// exponential backoff and jitter between them (default 5).
	MaxAttempts int
	// MaxBackoff caps the delay between attempts (default 5s).
	MaxBackoff time.Duration
	// RequestTimeout bounds the wait for the response headers of one
	// attempt (default 30s).
	RequestTimeout time.Duration
	// OperationTimeout bounds one call other than reading a Get body,
	// retries included: PutObject, one UploadPart, HeadObject, one list
	// page, DeleteObject (default 5m).
	OperationTimeout time.Duration
	// PartBytes is the part size of multipart uploads (default 16 MiB,
	// at least MinPartBytes).
	PartBytes int64
	// MultipartThresholdBytes: objects larger than this are uploaded in
	// parts (default PartBytes).
	MultipartThresholdBytes int64
}

func (o *S3Options) setDefaults() {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.OperationTimeout == 0 {
		o.OperationTimeout = 5 * time.Minute
	}
	if o.PartBytes == 0 {
		o.PartBytes = DefaultPartBytes
	}
	if o.MultipartThresholdBytes == 0 {
		o.MultipartThresholdBytes = o.PartBytes
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
}

// Validate checks the options after defaults are applied.
func (o S3Options) Validate() error {
	switch {
	case o.Bucket == "":
		return errors.New("s3: bucket name is empty (set --s3-bucket or use s3://bucket/prefix)")
	case o.PartBytes < MinPartBytes:
		return fmt.Errorf("s3: part size %d below the S3 minimum of %d bytes", o.PartBytes, MinPartBytes)
	case o.MultipartThresholdBytes < 1:
		return fmt.Errorf("s3: multipart threshold %d must be positive", o.MultipartThresholdBytes)
	case o.MaxAttempts < 1:
		return fmt.Errorf("s3: max attempts %d must be at least 1", o.MaxAttempts)
	case (o.AccessKeyID == "") != (o.SecretAccessKey == ""):
		return errors.New("s3: set both access key id and secret access key, or neither to use the AWS credential chain")
	case strings.HasPrefix(o.Prefix, "/"):
		return fmt.Errorf("s3: prefix %q must not start with '/'", o.Prefix)
	}
	if o.Endpoint != "" && !strings.HasPrefix(o.Endpoint, "http://") && !strings.HasPrefix(o.Endpoint, "https://") {
		return fmt.Errorf("s3: endpoint %q must start with http:// or https://", o.Endpoint)
	}
	return nil
}

// caBundle is the system's roots plus the CAs of path, or nil when path is empty.
func caBundle(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("s3: CA bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("s3: CA bundle %s holds no PEM certificate", path)
	}
	return pool, nil
}

// S3Bucket is a Bucket on an S3-compatible object store.
type S3Bucket struct {
	client   *s3.Client
	opts     S3Options
	endpoint string // for error messages
}

var _ Bucket = (*S3Bucket)(nil)

// NewS3 returns a bucket on S3. It does not contact the service; use Ping to
// check the endpoint, credentials and bucket at startup.
func NewS3(ctx context.Context, opts S3Options) (*S3Bucket, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	roots, err := caBundle(opts.CABundleFile)
	if err != nil {
		return nil, err
	}
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 10 * time.Second }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = opts.RequestTimeout
			if roots != nil {
				tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
			}
		})
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opts.MaxAttempts
				o.MaxBackoff = opts.MaxBackoff
				// The client-side retry quota turns a long outage into
				// "quota exceeded" errors that outlive it; backoff and
				// MaxAttempts bound the load instead.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	if opts.AccessKeyID != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.UsePathStyle
		// Checksums only where S3 requires them: S3-compatible stores do not
		// all accept the newer trailing checksums; the SigV4 payload hash
		// still covers every byte sent.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = fmt.Sprintf("https://s3.%s.amazonaws.com", cfg.Region)
	}
	return &S3Bucket{client: client, opts: opts, endpoint: endpoint}, nil
}

// Client returns the underlying S3 client, for tools and tests.
func (b *S3Bucket) Client() *s3.Client { return b.client }

func (b *S3Bucket) key(name string) string { return b.opts.Prefix + name }

func (b *S3Bucket) where(name string) string {
	return "s3://" + b.opts.Bucket + "/" + b.key(name)
}

// Ping checks that the endpoint answers, the credentials are accepted and
// the bucket exists.
func (b *S3Bucket) Ping(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, b.opts.OperationTimeout)
	defer cancel()
	_, err := b.client.HeadBucket(octx, &s3.HeadBucketInput{Bucket: aws.String(b.opts.Bucket)})
	if err != nil {
		if isS3NotFound(err) {
			return fmt.Errorf("s3 bucket %q does not exist at %s: create it or check --s3-bucket", b.opts.Bucket, b.endpoint)
		}
		return b.mapErr(ctx, octx, "ping bucket", "", err)
	}
	return nil
}

// mapErr turns an SDK error into one that says what failed and what to do,
// with ErrNotFound, ErrAccessDenied or the context's error to act on.
func (b *S3Bucket) mapErr(ctx, octx context.Context, op, name string, err error) error {
	what := fmt.Sprintf("s3 %s %s", op, b.where(name))
	if name == "" {
		what = fmt.Sprintf("s3 %s s3://%s/%s", op, b.opts.Bucket, b.opts.Prefix)
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w: %w", what, cerr, err)
	}
	if octx != nil && errors.Is(octx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: timed out after %s: %w", what, b.opts.OperationTimeout, err)
	}
	var noBucket *types.NoSuchBucket
	if errors.As(err, &noBucket) || apiCode(err) == "NoSuchBucket" {
		return fmt.Errorf("%s: bucket %q does not exist: create it or check --s3-bucket: %w", what, b.opts.Bucket, err)
	}
	if isS3NotFound(err) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	switch apiCode(err) {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AllAccessDisabled":
		return fmt.Errorf("%s: %w: check the S3 access key and secret (--s3-access-key/--s3-secret-key, or the AWS credential chain): %w", what, ErrAccessDenied, err)
	}
	if httpStatus(err) == http.StatusForbidden {
		return fmt.Errorf("%s: %w: check the S3 access key and secret (--s3-access-key/--s3-secret-key, or the AWS credential chain): %w", what, ErrAccessDenied, err)
	}
	if isUnreachable(err) {
		return fmt.Errorf("%s: S3 endpoint %s unreachable: %w; check --s3-endpoint", what, b.endpoint, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isS3NotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	switch apiCode(err) {
	case "NoSuchKey", "NotFound":
		return true
	case "NoSuchBucket":
		return false
	}
	return httpStatus(err) == http.StatusNotFound
}

func isUnreachable(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// Put implements Bucket. Objects up to MultipartThresholdBytes go up in one
// PutObject; larger ones in a multipart upload of PartBytes parts, aborted
// if anything fails so that no parts linger. Parts are buffered in memory
// one at a time (the SDK needs a seekable body to sign and to retry).
func (b *S3Bucket) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("s3 put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3 put %s: %w", b.where(name), err)
	}
	cr := ctxReader{ctx, r}
	threshold := b.opts.MultipartThresholdBytes
	var head bytes.Buffer
	if size >= 0 && size <= threshold {
		head.Grow(int(size) + 1)
	}
	n, err := io.CopyN(&head, cr, threshold+1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("s3 put %s: read content: %w", b.where(name), err)
	}
	if n <= threshold {
		if size >= 0 && n != size {
			return fmt.Errorf("s3 put %s: read %d bytes, expected %d: %w", b.where(name), n, size, ErrSizeMismatch)
		}
		octx, cancel := context.WithTimeout(ctx, b.opts.OperationTimeout)
		defer cancel()
		_, err := b.client.PutObject(octx, &s3.PutObjectInput{
			Bucket:        aws.String(b.opts.Bucket),
			Key:           aws.String(b.key(name)),
			Body:          bytes.NewReader(head.Bytes()),
			ContentLength: aws.Int64(n),
		})
		if err != nil {
			return b.mapErr(ctx, octx, "put", name, err)
		}
		return nil
	}
	if size >= 0 && (size+b.opts.PartBytes-1)/b.opts.PartBytes > maxParts {
		return fmt.Errorf("s3 put %s: %d bytes need more than %d parts of %d bytes: raise the part size", b.where(name), size, maxParts, b.opts.PartBytes)
	}
	return b.putMultipart(ctx, name, io.MultiReader(&head, cr), size)
}

func (b *S3Bucket) putMultipart(ctx context.Context, name string, r io.Reader, size int64) (err error) {
	octx, cancel := context.WithTimeout(ctx, b.opts.OperationTimeout)
	created, err := b.client.CreateMultipartUpload(octx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(b.opts.Bucket),
		Key:    aws.String(b.key(name)),
	})
	cancel()
	if err != nil {
		return b.mapErr(ctx, octx, "create multipart upload", name, err)
	}
	uploadID := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx is cancelled: parts of an unfinished upload
		// are stored (and billed) until aborted.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.OperationTimeout)
		defer cancel()
		if _, aerr := b.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(b.opts.Bucket),
			Key:      aws.String(b.key(name)),
			UploadId: uploadID,
		}); aerr != nil {
			err = fmt.Errorf("%w (abort multipart upload %s also failed: %v; a bucket lifecycle rule for incomplete uploads will clean it)", err, aws.ToString(uploadID), aerr)
		}
	}()

	buf := make([]byte, b.opts.PartBytes)
	var parts []types.CompletedPart
	var total int64
	for partNum := int32(1); ; partNum++ {
		n, rerr := io.ReadFull(r, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return fmt.Errorf("s3 put %s: read content: %w", b.where(name), rerr)
		}
		if n == 0 {
			break
		}
		if partNum > maxParts {
			return fmt.Errorf("s3 put %s: more than %d parts of %d bytes: raise the part size", b.where(name), maxParts, b.opts.PartBytes)
		}
		total += int64(n)
		octx, cancel := context.WithTimeout(ctx, b.opts.OperationTimeout)
		out, err := b.client.UploadPart(octx, &s3.UploadPartInput{
			Bucket:        aws.String(b.opts.Bucket),
			Key:           aws.String(b.key(name)),
			UploadId:      uploadID,
			PartNumber:    aws.Int32(partNum),
			Body:          bytes.NewReader(buf[:n]),
			ContentLength: aws.Int64(int64(n)),
		})
		cancel()
		if err != nil {
			return b.mapErr(ctx, octx, fmt.Sprintf("upload part %d", partNum), name, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(partNum)})
		if rerr != nil { // short read: that was the last part
			break
		}
	}
	if size >= 0 && total != size {
		return fmt.Errorf("s3 put %s: read %d bytes, expected %d: %w", b.where(name), total, size, ErrSizeMismatch)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3 put %s: %w", b.where(name), err)
	}
	octx, cancel = context.WithTimeout(ctx, b.opts.OperationTimeout)
	defer cancel()
	_, err = b.client.CompleteMultipartUpload(octx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(b.opts.Bucket),
		Key:             aws.String(b.key(name)),
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return b.mapErr(ctx, octx, "complete multipart upload", name, err)
	}
	return nil
}

// Get implements Bucket. The body is streamed; RequestTimeout bounds the
// wait for its first byte, ctx its whole read.
func (b *S3Bucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.opts.Bucket),
		Key:    aws.String(b.key(name)),
	})
	if err != nil {
		return nil, b.mapErr(ctx, nil, "get", name, err)
	}
	return out.Body, nil
}

// GetRange implements Bucket.
func (b *S3Bucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("s3 get range: %w", err)
	}
	if err := checkRange(name, off, length); err != nil {
		return nil, err
	}
	if length == 0 {
		return b.emptyRange(ctx, name, off)
	}
	rng := fmt.Sprintf("bytes=%d-", off)
	if length > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", off, off+length-1)
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.opts.Bucket),
		Key:    aws.String(b.key(name)),
		Range:  aws.String(rng),
	})
	if err != nil {
		if ctx.Err() == nil && (apiCode(err) == "InvalidRange" || httpStatus(err) == http.StatusRequestedRangeNotSatisfiable) {
			// S3 refuses a range starting at the end; the contract serves
			// it as empty, and any start beyond as ErrInvalidRange.
			return b.emptyRange(ctx, name, off)
		}
		return nil, b.mapErr(ctx, nil, "get range", name, err)
	}
	return out.Body, nil
}

// emptyRange serves a zero-length read at off after checking, like every
// ranged read, that the object exists and off is not beyond its end.
func (b *S3Bucket) emptyRange(ctx context.Context, name string, off int64) (io.ReadCloser, error) {
	attrs, err := b.Attributes(ctx, name)
	if err != nil {
		return nil, err
	}
	if _, _, err := clampRange(b.where(name), attrs.Size, off, 0); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
}

// Attributes implements Bucket.
func (b *S3Bucket) Attributes(ctx context.Context, name string) (Attrs, error) {
	if err := ValidateName(name); err != nil {
		return Attrs{}, fmt.Errorf("s3 attributes: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, b.opts.OperationTimeout)
	defer cancel()
	out, err := b.client.HeadObject(octx, &s3.HeadObjectInput{
		Bucket: aws.String(b.opts.Bucket),
		Key:    aws.String(b.key(name)),
	})
	if err != nil {
		return Attrs{}, b.mapErr(ctx, octx, "attributes", name, err)
	}
	return Attrs{Size: aws.ToInt64(out.ContentLength), LastModified: aws.ToTime(out.LastModified)}, nil
}

// List implements Bucket. S3 lists keys in ascending UTF-8 byte order,
// which is the order the contract promises.
func (b *S3Bucket) List(ctx context.Context, prefix string, fn func(name string) error) error {
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(b.opts.Bucket),
		Prefix: aws.String(b.opts.Prefix + prefix),
	})
	for p.HasMorePages() {
		octx, cancel := context.WithTimeout(ctx, b.opts.OperationTimeout)
		page, err := p.NextPage(octx)
		cancel()
		if err != nil {
			return b.mapErr(ctx, octx, "list", prefix, err)
		}
		for _, obj := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(obj.Key), b.opts.Prefix)
			if err := fn(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements Bucket.
func (b *S3Bucket) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("s3 delete: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, b.opts.OperationTimeout)
	defer cancel()
	_, err := b.client.DeleteObject(octx, &s3.DeleteObjectInput{
		Bucket: aws.String(b.opts.Bucket),
		Key:    aws.String(b.key(name)),
	})
	if err != nil {
		if isS3NotFound(err) && ctx.Err() == nil {
			return nil
		}
		return b.mapErr(ctx, octx, "delete", name, err)
	}
	return nil
}
