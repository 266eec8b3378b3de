// Package store is Strata's hot tier: one commit log for all topics in fixed-size segment
// files, a consume queue per (topic, queue id), a key index, the flush policy (async or sync
// group commit), crash recovery, sealing of segments and local retention.
//
// Start reading at Store (store.go): Open recovers the directory, Append hands records to
// the single writer goroutine (writer.go), Read serves a queue's records as the stored bytes
// (read.go). The on-disk formats are described in FORMAT.md.
package store
