package objstore

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// Open returns the bucket a URL names:
//
//	file:///abs/dir       filesystem bucket rooted at /abs/dir
//	file://relative/dir   filesystem bucket rooted at ./relative/dir
//	s3://bucket/prefix    S3 bucket; prefix (optional) is prepended to every
//	                      name; opts supplies endpoint, region, credentials
//	mem://                in-memory bucket (tests only)
//
// For s3:// the bucket and prefix of the URL override opts.Bucket and
// opts.Prefix; the other schemes ignore opts.
func Open(ctx context.Context, rawURL string, opts S3Options) (Bucket, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open bucket %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		dir := u.Host + u.Path
		if dir == "" {
			return nil, fmt.Errorf("open bucket %q: no directory (use file:///abs/dir or file://relative/dir)", rawURL)
		}
		return NewFilesystem(dir)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("open bucket %q: no bucket name (use s3://bucket/prefix)", rawURL)
		}
		opts.Bucket = u.Host
		opts.Prefix = strings.TrimPrefix(u.Path, "/")
		b, err := NewS3(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("open bucket %q: %w", rawURL, err)
		}
		return b, nil
	case "mem":
		return NewMemory(), nil
	default:
		return nil, fmt.Errorf("open bucket %q: unsupported scheme %q (want file://, s3:// or mem://)", rawURL, u.Scheme)
	}
}
