// Package tier is Strata's cold tier: it turns sealed commit-log segments into immutable
// segment objects in a bucket (records regrouped by queue, snappy blocks with CRC32C, an
// index and a footer; FORMAT.md), keeps a manifest of them in the bucket with a tiny pointer
// in etcd, serves cold reads by queue offset, time and key, and deletes objects whose
// contents have expired.
//
// Start reading at Tier (tier.go): Open loads the pointer and manifest, Lead (leader.go)
// makes the tier its broker group's writer for one election term, Submit offloads a sealed
// Segment (offload.go), Read, QueueRange, OffsetForTime and Lookup serve cold data
// (reader.go), EnforceRetention applies tier retention (retention.go), Compact merges a
// queue's small runs from many segments into per-queue compacted objects (compact.go).
// SegmentEncoder and DecodeIndex (format.go) are the segment-object codec; Manifest and
// RebuildManifest (manifest.go) the cold index; PointerStore (pointer.go) the pointer, with
// MetaPointers on etcd and MemoryPointers for tests; names.go the object names.
//
// # One writer per group
//
// Everything a group's tier writes — segment objects, manifests, the pointer, compaction,
// retention, tombstones — has one writer: the group's elected master (meta.Election). The
// broker hands each won term to Lead; the term's epoch (the election key's create revision,
// strictly increasing from term to term) fences every pointer update: the compare-and-swap
// is one etcd transaction that also checks that the term still holds, and the pointer
// records the epoch that wrote it. A deposed writer's update fails with ErrFenced and it
// stops all writer work until it leads again, when it reloads pointer and manifest first.
// Objects carry the writer's epoch in their names, so a deposed writer still uploading and
// its successor never overwrite each other's objects.
//
// The manifests the pointer has named form one linear chain: each was published by a swap
// from its predecessor, fenced by the term of its writer, and the epochs along the chain
// never decrease. A writer names, in the manifest it publishes, only objects its
// predecessor named and objects of its own epoch.
//
// Deleting follows from that. Objects are deleted only after a fenced publish of a manifest
// that no longer names them (the runs compaction merged, what retention expired, the
// manifest two versions back). The orphan sweep (sweepOrphans, run with each compaction
// pass) also deletes objects no manifest names — leftovers of a crashed pass, of a term that
// ended before committing, of a deposed writer whose late PUTs landed — but only those the
// current manifest does not name AND whose epoch is older than the sweeper's own, and only
// while its term holds. That is safe: the sweeper, at epoch e, loaded the manifest after
// winning, and every later manifest descends from the ones it has seen (its own publishes,
// then its successors', who loaded the chain after it lost). By the rule above, a later
// manifest can name an object of epoch below e only if its predecessor did, so every such
// object any later manifest can name is already in the sweeper's current manifest; one that
// is not there will never be named again. Objects of the sweeper's own epoch are never swept,
// so it needs no lock against its own offload and compaction, and an object of a newer
// epoch belongs to a successor it must not touch. Before deleting, the sweeper also reads
// the pointer: if anyone published since its manifest, it leaves the sweep to a later pass.
// Readers holding an older manifest that find an object gone retry on a fresh pointer
// (retryStale).
//
// The argument needs the chain intact. RebuildManifest (the pointer names a manifest object
// that is lost) names what the bucket holds, leftovers included; a deposed writer that has
// not noticed yet could still sweep such a leftover in the moment between its successor's
// rebuild and first publish. Manifest loss is a recovery path, and that window is bounded
// by how late a deposed writer notices (its session's TTL, or a revoked lease at once).
package tier
