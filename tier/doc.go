// Package tier is Strata's cold tier: it turns sealed commit-log segments into immutable,
// deterministically named segment objects in a bucket (records regrouped by queue, snappy
// blocks with CRC32C, an index and a footer; FORMAT.md), keeps a manifest of them in the
// bucket with a tiny pointer in etcd, serves cold reads by queue offset, time and key, and
// deletes objects whose contents have expired.
//
// Start reading at Tier (tier.go): Open loads the pointer and manifest, Submit offloads a
// sealed Segment (offload.go), Read, QueueRange, OffsetForTime and Lookup serve cold data
// (reader.go), EnforceRetention applies tier retention (retention.go), Compact merges a
// queue's small runs from many segments into per-queue compacted objects (compact.go). SegmentEncoder and
// DecodeIndex (format.go) are the segment-object codec; Manifest and RebuildManifest
// (manifest.go) the cold index.
package tier
