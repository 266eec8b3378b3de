// Package objstore is Strata's view of an object store: a small Bucket of six
// operations (Put, Get, GetRange, Attributes, List, Delete) that the cold tier
// needs, with three providers that all meet the same contract:
//
//   - S3Bucket (NewS3): any S3-compatible service through aws-sdk-go-v2, with
//     path-style addressing for MinIO, multipart upload for large objects,
//     retries with backoff and per-request timeouts;
//   - FSBucket (NewFilesystem): a directory on local disk, the embedded
//     default, with atomic writes by rename;
//   - MemBucket (NewMemory): a map, for unit tests only.
//
// Open builds a provider from a URL (file://, s3://, mem://). WithMetrics adds
// Prometheus metrics around any Bucket once, instead of inside each provider.
// The shared acceptance suite lives in the objstoretest subpackage and runs
// against every provider (against S3 on MinIO, from integration/).
//
// Start reading at Bucket in bucket.go.
package objstore
