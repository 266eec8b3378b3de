// Package meta keeps the cluster's shape in etcd: broker membership, topics, routes,
// subscription groups, consumer offsets, tier pointers and the master election of each broker
// group. Strata writes no consensus of its own; everything here is etcd leases, transactions,
// watches and concurrency.Election.
//
// Start reading at Client (New, NewFromEtcd; New dials lazily, Ping finds out within the dial
// timeout whether etcd answers). Long-lived workers hang off it: Registration
// (membership under a lease, re-registered after loss), View (watched in-memory Snapshot with
// change notification and TopicRoute), OffsetStore (batched offset commits), Election (master
// of a group). Routes change only through CreateTopic, UpdateQueues, AddGroup and
// LowerReadQueues (route.go).
// Package meta/etcdembed starts an in-process etcd for `strata dev` and tests.
//
// # Key schema
//
// Every key lives under /strata/<cluster>/. Values are small JSON documents.
//
//	brokers/<group>/<broker>                 BrokerInfo, under the broker's lease (TTL 10s)
//	topics/<topic>                           TopicConfig
//	routes/<topic>                           Route {"v":1,"topic","queues":[{"group","read","write"}]}
//	subgroups/<group>                        SubscriptionGroup
//	offsets/<brokerGroup>/<group>/<topic>/<queueId>   {"v":1,"offset":N,"gen":G}
//	tier/<brokerGroup>                       TierPointer {"v":2,"watermark":N,"manifest":"key","epoch":E}
//	election/<brokerGroup>/<lease hex>       concurrency.Election of the group's master; value = broker name
//	groups/<brokerGroup>/isr                 InSyncSet {"v":1,"members":[...],"epoch":E} (isr.go)
//	acl/accounts/<accessKey>                 ACLAccount {"v":1,"accessKey","secretKey","admin",...} (acl.go)
//	acl/whitelist                            ACLWhitelist {"v":1,"addrs":[...]}
//
// ACL secret keys are stored as given (an HMAC signature cannot be verified against a
// hash): etcd must require authentication and TLS wherever ACL is on (Config.TLS,
// Username, Password). ACLView watches acl/ apart from View.
//
// Queue ids are local to a broker group: a route gives each group a count of read and write
// queues, numbered 0..n-1 in that group, which is exactly RocketMQ's QueueData (brokerName =
// broker group, readQueueNums, writeQueueNums). A queue is (topic, broker group, queue id) and
// keeps its group for life, as in RocketMQ:
//
//   - CreateTopic places TopicConfig's ReadQueues and WriteQueues on each named group, or on
//     every live group (N queues per group, as RocketMQ's updateTopic over a cluster does).
//   - Membership changes never touch a route. A group whose brokers are all gone (their leases
//     expired, within DefaultBrokerTTL) drops out of the TopicRoute the name servers answer, so
//     producers skip it and consumers rebalance without it; when it registers again it comes
//     back with the same queues, and its consumer offsets (keyed by broker group) are still
//     there.
//   - UpdateQueues grows a group's queues, or shrinks its write queues; the read count of a
//     shrunk group is lowered by its own broker (LowerReadQueues) only once every consumer
//     group has drained the removed queues, so ReadQueues ≥ WriteQueues always holds.
//   - AddGroup gives a group that joined later its share of group-local system topics
//     (%RETRY%<group>, %DLQ%<group>), which every broker group must be able to write.
//
// A topic's incarnation is the create revision of its topics/ key: deleting a topic and
// creating it again makes a new incarnation whose queues start at offset 0; brokers drop the
// local data and consumer offsets of the old one.
//
// Offsets are keyed by broker group, so that a broker loads its own offsets with one prefix
// read.
//
// # Masters, epochs and fenced writes
//
// Each broker campaigns in its group's election (Election.Campaign) as its member name; a won
// campaign is a term, a Leadership whose Epoch is the create revision of the winning key.
// Epochs strictly increase from term to term of a group, so they order masters. Writes only
// the master may make are one transaction guarded by Leadership.Fence (the key still exists
// with that create revision): the tier pointer is moved only by CompareAndSwapTierPointer,
// which also compares the pointer key's mod revision with the one the writer loaded, and
// stores the writer's epoch in the value ("epoch"; version 1 values, written before fencing,
// have none and read as epoch 0). A deposed master's write fails with ErrNotLeader, a moved
// pointer with ErrTierPointerConflict, a watermark moving back with ErrTierPointerBackwards.
//
// A group whose master dies but whose slave lives keeps its queues; the slave wins the group's
// election and is reported as brokerId 0.
//
// # Offsets
//
// OffsetStore.Commit only updates memory, and sets the offset as RocketMQ's broker does: a
// lower commit (a pull consumer that seeks back) moves the offset back. Every FlushInterval (1s) the changed offsets are
// written in transactions of at most 128 puts (etcd's default --max-txn-ops), each guarded by
// the key's mod revision; a conflict (a reset, or another writer) is resolved by gen, then by
// the higher offset, so offsets never move backwards except through Reset, which bumps gen.
// While etcd is down, commits accumulate in memory and the flush is retried with backoff (1s
// up to 10s); Client.Health reports the store as degraded until a flush succeeds.
//
// # Outage behaviour
//
// View keeps serving its last snapshot while etcd is unreachable and reloads when a watch
// breaks; Registration re-registers under a new lease after losing its lease; OffsetStore keeps
// everything. Client.Health / Healthy give /readyz the degraded state and its reasons.
//
// # Sizes, for 10,000 queues and 1,000 consumer groups
//
// Keys: topics and routes are one key each per topic (say 1,000 topics of 10 queues: 2,000 keys
// of under 300 bytes; a route value grows about 40 bytes per broker group). Brokers, groups'
// elections and tier pointers are a few keys per broker group. Subscription groups: 1,000 keys.
// Offsets are one key per (consumer group, queue it consumes): if each group consumes one
// topic of 10 queues that is 10,000 keys; the worst case, every group on every queue, is
// 10,000,000 keys, about 1.5 GB with etcd's per-key overhead, which is past a comfortable etcd
// (default quota 2 GiB, 8 GiB suggested maximum) — deployments that large must keep groups on
// the topics they read, as RocketMQ does. The realistic case stays at a few MB.
//
// Writes: offsets are the only steady writes. Each broker group writes at most once a second,
// one transaction per 128 changed offsets: 10,000 actively consumed queue positions cost at most
// 79 transactions (10,000 key puts) per second across the cluster, within a single etcd's
// several thousand transactions per second and 1.5 MiB request limit (a 128-put transaction is
// about 15 KiB). Idle queues cost nothing: unchanged offsets are not rewritten. Membership costs
// one lease keep-alive per broker per ~3s; routes change only when topics are created or
// their queue counts change. Watches stream changes; nothing polls etcd. Revisions grow with offset writes,
// so etcd must run with auto-compaction (e.g. --auto-compaction-retention=1h) and periodic
// defragmentation.
package meta
