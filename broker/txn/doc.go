// Package txn is Strata's transactional messages (PROTOCOL.md §5.7): half messages a producer
// stores before its local transaction, the commit or rollback that ends each one, check-backs
// to the producer group for those left without a decision, and recovery of all of it from the
// commit log.
//
// Start reading at Service (service.go): Open recovers (recover.go), Prepare stores a half
// message, End applies END_TRANSACTION, the check loop asks producers (check.go). The broker
// gives it three small things (Deps): the log (an appender and readers by position and by
// queue, StoreLog), a Checker that sends CHECK_TRANSACTION_STATE to a producer of a group,
// and a Router through which committed messages are routed like any send. Record formats
// are in FORMAT.md.
//
// # State lives in the log
//
// Half messages are records of RMQ_SYS_TRANS_HALF_TOPIC, decisions are op records of
// RMQ_SYS_TRANS_OP_HALF_TOPIC, and a checkpoint record says where recovery starts reading
// them. Open replays the two topics from the checkpoint, in commit-log order, so the pending
// state is a function of the log's bytes: a replica that stores the same bytes derives the
// same state when it runs Open (at promotion).
//
// # A commit cannot be split by a crash
//
// A commit is one Append of two records: the op record, then the committed copy (the half
// message rebuilt for its real topic and queue, its PREPAREDTRANSACTIONOFFSET naming the half
// message). One Append is one write into one segment, the second record right after the
// first (store.NextRecordPos). Store recovery keeps a prefix of the log's frames and cuts at
// the first bad one, so after any crash either both records are there, or neither, or the op
// record alone as the very last record of the log. Open checks exactly that last op record:
// if its copy is missing the commit is made again (the decision was taken; nothing was
// visible), in one append led by a void op record that cancels the cut one. With neither, the half message is pending again and the next check-back asks the
// producer. So a commit whose op record survived is delivered, and a half message is never
// delivered twice: a repeated END_TRANSACTION, a check-back answer after a commit, or a
// commit replayed after a restart finds the half message decided and does nothing. Parking a
// half message after CheckMax check-backs works the same way.
//
// Limits of the guarantee: it is as durable as the store's flush policy. Under sync flush a
// decision is on disk before End returns. Under async flush a power loss (not a process
// crash) can lose a decision a consumer already read; the half message is then checked back
// and committed again, a second delivery. Check-back counts are written after each round's
// check-backs, so a crash can let a message be checked once more than CheckMax. A half
// message that was stored while its Prepare failed (the store errored after writing) is
// found at the next Open and checked back then.
//
// # Memory
//
// Each pending half message costs one 32-byte entry (position, op-queue lower bound, next
// check time, producer group id, check count, state) in a slice sorted by position, and the
// store's own consume-queue entry; the message itself stays in the log and is read when it
// is checked back or decided. Decided entries are dropped by amortised compaction, so
// memory follows the number pending: a thousand cost 32 KB, the default MaxPending of two
// million about 64 MiB, and a half message beyond MaxPending is refused with an error that
// says so. A cursor over the half topic with a window of decisions (RocketMQ's design) would
// hold less, but it must re-read every half message each round and rewrite one for every
// check-back to keep its count, and a late END_TRANSACTION for the first copy then decides a
// message that the rewritten copy still offers for check-back — the duplicate this package
// exists to rule out.
//
// # Check-backs
//
// A half message with no decision is checked back once it is Timeout old (measured from its
// store time; the property CHECK_IMMUNITY_TIME_IN_SECONDS overrides it), then every
// CheckInterval, at most CheckMax times; at the next due time it is parked in
// TRANS_CHECK_MAX_TIME_TOPIC and logged. A round with no producer of the group connected
// counts, as in RocketMQ. Answers come back as END_TRANSACTION with fromTransactionCheck.
// Committed messages go through the Router, so a delayed one (DELAY, TIMER_*) is delayed
// from its commit. A round before the earliest due time costs nothing; one with something
// due scans the table (about 4 ms per million pending) in chunks of 4096 entries per hold
// of its lock, so sends and decisions wait microseconds for it.
package txn
