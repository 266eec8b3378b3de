// Package replica streams a broker group's commit log from its master to its followers
// (DESIGN.md "Replication"). A follower stores the same bytes at the same commit-log offsets
// (store.AppendReplicated) and builds its own consume queues and key index from them; it acks
// its durable end, and the master's WaitReplicated answers a sync-mode send once enough
// followers hold it.
//
// # Protocol (frame.go)
//
// One TCP connection per follower. The follower opens with Hello: its member name, its oldest
// local segment and log end, the highest master epoch it has seen and its epoch history. The
// master answers Welcome with its epoch, its oldest local segment and the divergence point
// (DivergencePoint: the first offset at which the two histories disagree, Kafka's leader-epoch
// rule, capped by both ends). If the master no longer holds the bytes from there it closes,
// and the follower restarts its log at the master's oldest segment (store.ResetTo: older
// records are the cold tier's) and connects again; catching up from the bucket itself is not
// implemented. Otherwise the follower truncates its log to the divergence point and the master
// streams Data frames from there: whole stored frames as store.ReadLog returns them, never
// crossing a point where the master's epoch history changes, each labelled with the epoch that
// wrote them (the follower begins that epoch in its own history as the label changes). The
// master wakes on append (store.WaitLogEnd); when idle it sends a Heartbeat. The follower
// answers Data and Heartbeat with an Ack of its durable log end. As the acks of the members
// named by Server.SetInSync (the in-sync set and its candidates) move the master's high
// watermark (Server.Committed: the position they all hold), the master sends a Watermark
// frame, which the follower does not ack; the follower raises its store's read limit to it
// (store.SetReadLimit), so that a consumer reading from it never sees a record a failover
// could truncate away. Every master frame carries the master's epoch, and the follower refuses
// a master whose epoch is older than one it has seen (fencing a deposed master). A follower
// closes the connection after three heartbeat intervals without a frame, a master after ten
// without an ack (an ack waits for the follower's write, which an fsync can hold up).
//
// Protocol version 2 (the Hello's version byte) added the Watermark frame; a master refuses a
// Hello of another version, so both ends of a group run the same version.
//
// Electing the master is not this package's job: the broker (meta/election.go) runs a Server
// while it leads with the election's epoch and a Follower while it does not, and tells the
// Follower about a new master by cancelling Run and calling it again.
package replica
