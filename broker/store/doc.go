// Package store is Strata's hot tier: one commit log for all topics in fixed-size segment
// files, a consume queue per (topic, queue id), a key index, the flush policy (async or sync
// group commit), crash recovery, sealing of segments and local retention.
//
// Start reading at Store (store.go): Open recovers the directory (recover.go), Append hands
// records to the single writer goroutine (writer.go), which assigns offsets and writes them;
// a completer goroutine fsyncs what was written (FlushSync: one fsync for everything written
// while the previous one ran), feeds it to the index writer (index.go) — which makes it
// visible — and answers the producers, while the writer goes on writing. Read serves a
// queue's records as the stored bytes (read.go). The on-disk formats are in FORMAT.md.
//
// # Memory does not grow with the data
//
// Consume queues and the key index are files; the Go heap holds only what is proportional
// to the number of queues, plus bounded caches:
//
//   - A consume queue is 28-byte entries (position, size, tag code, store time) in 4 KiB pages
//     of 145 entries of one queue. A queue keeps in memory its offset bounds, its unfinished
//     last page, and a page table of 16 bytes per full page (where the page is, and its first
//     store time, so that time lookup binary-searches memory and reads one page): about 0.1
//     byte per message. Offset lookup is arithmetic on the page table plus one page read.
//   - The key index is RocketMQ's IndexFile: files of KeyIndexFileKeys fixed 32-byte entries
//     chained by hash slot. Only the active file's slot table (4 bytes per 4 keys) is in
//     memory; sealed files are read from disk.
//   - Pages and key-index blocks are read with pread through a cache of our own of
//     ConsumeQueueCacheBytes and KeyIndexCacheBytes (CLOCK eviction, a pointer-free arena the
//     garbage collector does not scan). pread rather than mmap: the heap bound is exact and
//     visible in Go, a truncated or failing file gives an error instead of SIGBUS, and no
//     vm.max_map_count limit applies to thousands of queues; the kernel's page cache still
//     holds the files, so a cache miss is a copy, not a disk read, while memory lasts.
//
// # File layout: few files, sequential writes, one fsync per file per checkpoint
//
// Pages are not per-queue files. Every full page is appended to <segment>.cqp, the pages
// file of the newest commit-log segment, and recorded in <segment>.cqm, its page map; so with
// 10,000 queues a checkpoint still fsyncs a handful of sequentially written files, as the
// previous one-index-file-per-segment design did. A page holds only entries of records
// already stored, so the files of segment k describe records in segments ≤ k and are deleted
// with segment k by retention. The unfinished pages stay in memory; a queue whose unfinished
// page holds entries older than half of RecoveryReplayBytes has them appended to the page map
// as a fragment at the next checkpoint, which bounds the log tail a restart replays without
// rewriting pages.
//
// # Checkpoint and recovery
//
// index/checkpoint names a commit-log position from which Open replays the log, the
// position below which everything is indexed, and the durable lengths of the files then being
// appended. Open reads the queue table, the page maps (32 bytes per 145 messages) and the key
// files' footers, rebuilds the active key file's slot table (at most KeyIndexFileKeys
// entries), and replays the tail — it never reads every entry. A clean Close writes out every
// unfinished page, so a clean restart replays nothing. Index files that do not match their
// checkpoint, a log shorter than what the checkpoint covers, or a page that fails its
// checksum at read time make the next Open rebuild every index file from the log. A data
// directory of the previous format (per-segment .idx files) is converted that way: its .idx
// files are deleted and the index is rebuilt from the commit log, whose format is unchanged.
//
// # One index writer, fed in commit-log order
//
// indexRecord derives a record's consume-queue entry and keys from its header and its
// commit-log position only, and every record reaches it in commit-log order: local appends
// after the writer has written them (and fsynced them under FlushSync), recovery from the log
// tail, and — for replication — records a slave writes at the master's positions. An entry
// for an offset below the queue's end is ignored and one above it restarts the queue, so
// replaying records the index already holds is harmless. A replica appending already-encoded
// records at given positions writes the frames, then hands the same (position, header)
// pairs to indexRecords; it needs no second code path.
//
// # Replication (replicate.go, epochs.go, truncate.go, readlimit.go)
//
// A master's log is shipped as stored (ReadLog, woken by WaitLogEnd) and a follower writes it
// at the same positions (AppendReplicated), segment headers included, so that its segments
// roll where the master's did; it is a writeOp like an append, so it meets the flush policy
// and is indexed by the completer. SetFollower makes the writer refuse local appends (the
// store, not the broker, enforces it) and stops sealing by age. The epoch history records
// which epoch wrote which part of the log; TruncateTo drops a divergent tail by recovering
// from a checkpoint below the cut. FORMAT.md gives the order of its steps. A follower's read
// limit (SetReadLimit: its master's high watermark) hides from queue reads the records the
// in-sync set may not hold yet, which a failover could truncate away.
package store
