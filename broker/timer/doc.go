// Package timer is Strata's scheduled delivery: RocketMQ's delay levels (DELAY), delivery
// times (TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS, __STARTDELIVERTIME) and the
// backed-off retries of CONSUMER_SEND_MSG_BACK, at any horizon up to Config.MaxDelay (a
// year by default), never early, typically milliseconds late.
//
// Start reading at Service (service.go): the broker calls Intercept and Park on a send, and
// the service does the rest over a Log (log.go: the hot store, falling back to the cold
// tier). The byte formats are in FORMAT.md.
//
// # Design
//
// The commit log is the only truth. A scheduled message is appended, rewritten as RocketMQ
// does (REAL_TOPIC, REAL_QID, and TIMER_OUT_MS for the due time), to the system topic
// ParkTopic, and acknowledged like any message (after the fsync under sync flush). When it
// fires, its delivered copy is appended to the real topic and queue, and every
// CheckpointInterval a small fired-state record is appended to CheckpointTopic in the same
// append as the copies it covers: "every parked record below queue offset I that is due by
// D has been delivered, and so has every parked record below L". Pending timers are the
// parked records minus what the latest checkpoint covers. A replica that holds the same log
// bytes derives the same pending set, so timers move with a broker group's master.
//
// Everything else is a local index derived from the log, rebuilt from ParkTopic's queue
// (from L, hot tier or cold) when it is missing or damaged:
//
//   - An enqueuer tails ParkTopic's consume queue and turns each parked record into a
//     32-byte entry (due, commit-log position, queue offset, size).
//   - Entries collect in a memtable, flushed every FlushInterval into an immutable run: a
//     file of entries sorted by due time (one sequential write, one fsync). A manifest,
//     replaced atomically, lists the runs and the queue offset below which all parked
//     records are in them; recovery re-reads ParkTopic from there.
//   - Runs are merged by size class (fan-in 8), like an LSM tree, and the merge drops what
//     the checkpoint covers; a run whose entries have all fired is deleted whole. Disk per
//     pending timer is its 32-byte entry times a small write amplification, plus its record
//     in the commit log.
//   - Only the near window is in memory: a min-heap of the entries due before a frontier
//     that the loader keeps Lookahead ahead of the clock, reading each run from a cursor.
//     Ten million timers a year out cost their runs' metadata, not their entries.
//   - The fire loop sleeps on a timer set to the heap's next due time (not a tick), fires
//     each timer once the clock has reached its due millisecond, reads the parked record
//     from local disk or, when its segment was offloaded and deleted, from the bucket, and
//     appends the delivered copies in batches.
//
// Why not RocketMQ 5's timer log plus time wheel: its wheel is a fixed array of one-second
// slots for a fixed span (7 days), with the message's bytes pinned in the local commit log
// and longer delays re-appended ("rolled") each span; it fires a slot at a time (up to a
// second early or late). Sorted runs cost space only for what is pending, reach any
// horizon without rolling, keep nothing in memory beyond the near window, and let a
// far-future timer's record live only in the bucket: local retention never waits for
// timers, since firing reads through the tier. Without a cold tier nothing is deleted
// locally, so a pending timer's segment stays.
//
// Delivery is exactly once across a clean Close and the next Open (Close fires what is due,
// then checkpoints), and at least once across a crash: what fired after the last checkpoint
// fires again (at most CheckpointInterval of firing).
package timer
