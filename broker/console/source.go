package console

import (
	"context"
	"errors"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/query"
)

// Source is what the console shows: everything it reads or changes goes through these
// methods, which the broker implements over its metadata view, hot store, cold tier and
// client registry. Methods are called per request, on the request's goroutine; they must not
// block longer than ctx allows.
type Source interface {
	// Cluster is the broker groups registered in etcd, with their members and elected
	// masters, and this broker's cold tier.
	Cluster(ctx context.Context) Cluster
	// Topics lists every topic of the cluster with this broker group's share of it.
	Topics(ctx context.Context) []TopicSummary
	// Topic is one topic's queues; ErrNotFound when the cluster has no such topic.
	Topic(ctx context.Context, name string) (TopicDetail, error)
	// Groups lists the consumer groups known here: configured in etcd, holding offsets in
	// this broker group, or with a consumer connected to this broker.
	Groups(ctx context.Context) []GroupSummary
	// Group is one consumer group's offsets, lag and connected members; ErrNotFound when
	// nothing is known of it.
	Group(ctx context.Context, name string) (GroupDetail, error)
	// ResetGroup moves a group's offsets on a topic to a time or an offset, as
	// INVOKE_BROKER_TO_RESET_OFFSET does, telling connected consumers.
	ResetGroup(ctx context.Context, r ResetRequest) (ResetResult, error)
	// Search looks messages up by id, key or store time, in both tiers.
	Search(ctx context.Context, r SearchRequest) (SearchResult, error)
	// Trace returns the trace records (RMQ_SYS_TRACE_TOPIC) of a message id or of the
	// messages with a key.
	Trace(ctx context.Context, r TraceRequest) ([]query.TraceRecord, error)
	// PendingTransactions lists up to limit half messages without a decision, of group (""
	// for every producer group), oldest first.
	PendingTransactions(ctx context.Context, group string, limit int) (txn.PendingList, error)
	// Timers summarises scheduled delivery (broker/timer). Available is false while the
	// broker has no timer service.
	Timers(ctx context.Context) Timers
}

// ErrNotFound is returned by Source methods for a topic, group or message that does not
// exist; the console answers 404 with the error's text.
var ErrNotFound = errors.New("not found")

// ErrInvalid is wrapped by Source errors that blame the request (a bad queue id, a topic
// the group does not serve); the console answers 400 with the error's text.
var ErrInvalid = errors.New("invalid request")

// Cluster is the shape of the cluster as etcd holds it, seen from one broker.
type Cluster struct {
	Name string
	// Self and SelfGroup name this broker and its broker group.
	Self, SelfGroup string
	// Revision is the etcd revision of the view.
	Revision int64
	// Started is when this broker started.
	Started time.Time
	// MetaError says why etcd is not reachable now ("" while it is).
	MetaError string
	Groups    []BrokerGroup
	Tier      Tier
}

// BrokerGroup is one broker group: a log with its members (replication is a later issue:
// the members are what registered in etcd).
type BrokerGroup struct {
	Name string
	// Master is the elected master's member name, "" while none is elected.
	Master  string
	Members []BrokerMember
}

// BrokerMember is one registered broker process.
type BrokerMember struct {
	Name string
	// Role is the configured role (MASTER or SLAVE); Elected says whether it is the
	// group's elected master now.
	Role        string
	Elected     bool
	ID          int64
	BrokerAddr  string
	NamesrvAddr string
	// HTTPAddr is its HTTP listener, where its own console runs ("" when disabled).
	HTTPAddr string
	// Self marks the broker serving this console.
	Self bool
}

// Tier is this broker group's cold tier as this broker sees it.
type Tier struct {
	Enabled bool
	Prefix  string
	// OffloadWatermark: every commit-log byte below it is in the bucket.
	OffloadWatermark int64
	LocalMinOffset   int64
	LocalMaxOffset   int64
	// BacklogBytes is what is not offloaded yet; BacklogAge is the age of its oldest
	// message (0 when nothing waits).
	BacklogBytes int64
	BacklogAge   time.Duration
	Segments     int
	Objects      int
	Bytes        int64
	// Writer says whether this broker writes the tier (it is the elected master);
	// WriterEpoch is its election epoch then.
	Writer      bool
	WriterEpoch int64
	// Stall says what keeps offload from committing, "" when nothing does.
	Stall string
}

// TopicSummary is one topic in the topic list.
type TopicSummary struct {
	Name string
	// Perm is the topic's permission as RocketMQ writes it: "RW", "R-", "-W" or "--".
	Perm string
	// System marks broker-internal and RocketMQ system topics.
	System bool
	// Shares are the broker groups serving the topic with their queue counts.
	Shares []TopicShare
	// Local says whether this broker group serves the topic; the counts below are of
	// this broker group's queues.
	Local bool
	// Messages is how many messages this broker group holds (max − min offset summed over
	// its queues, both tiers).
	Messages int64
	// MessagesIn counts the messages appended to the topic since this broker started
	// (the broker's strata_broker_messages_in_total counter).
	MessagesIn int64
	// ProduceRate is messages per second appended over the console's rate window,
	// computed by the console from MessagesIn; until it has sampled long enough, the
	// average since the broker started (RateSinceStart).
	ProduceRate    float64
	RateSinceStart bool
}

// TopicShare is one broker group's share of a topic.
type TopicShare struct {
	Group       string
	ReadQueues  int
	WriteQueues int
	// ConsoleURL is the console of the group's master when it is another broker.
	ConsoleURL string
}

// TopicDetail is one topic with this broker group's queues.
type TopicDetail struct {
	TopicSummary
	RetentionMs int64
	Queues      []QueueBounds
	// ConsumerGroups are the groups with offsets on the topic here or a connected consumer
	// subscribed to it.
	ConsumerGroups []string
}

// QueueBounds is one queue's offsets in each tier.
type QueueBounds struct {
	Group   string
	QueueID int32
	// Min and Max bound the queue across both tiers (Max is one past the newest).
	Min, Max int64
	// HotMin and HotMax bound the local store; HotKnown is false when it holds none.
	HotMin, HotMax int64
	HotKnown       bool
	// ColdFirst and ColdLast bound the tier's range (inclusive), when InCold.
	ColdFirst, ColdLast int64
	InCold              bool
	// LastStored is the store time of the newest message, zero when unknown (only in the
	// bucket, or none).
	LastStored time.Time
}

// HotMessages is how many offsets the local store holds.
func (q QueueBounds) HotMessages() int64 {
	if !q.HotKnown {
		return 0
	}
	return q.HotMax - q.HotMin
}

// ColdMessages is how many offsets the cold tier holds.
func (q QueueBounds) ColdMessages() int64 {
	if !q.InCold {
		return 0
	}
	return q.ColdLast - q.ColdFirst + 1
}

// GroupSummary is one consumer group in the group list.
type GroupSummary struct {
	Name string
	// Configured says whether etcd holds the group's subscription config.
	Configured bool
	// Clients counts the group's consumer connections to this broker.
	Clients int
	Topics  []string
	// Lag is the messages behind summed over the queues with a committed offset; HasOffsets
	// is false when the group has none here.
	Lag        int64
	HasOffsets bool
}

// GroupDetail is one consumer group's state in this broker group.
type GroupDetail struct {
	Name       string
	Configured bool
	// ConsumeEnable, Broadcast and MaxReconsumeTimes are its etcd config (when Configured).
	ConsumeEnable     bool
	Broadcast         bool
	MaxReconsumeTimes int
	Queues            []GroupQueue
	Members           []GroupMember
}

// Lag sums the lag of the queues with a committed offset.
func (g GroupDetail) Lag() int64 {
	var n int64
	for _, q := range g.Queues {
		if q.Offset >= 0 {
			n += q.Lag
		}
	}
	return n
}

// Topics lists the topics of the group's queues, in order, once each.
func (g GroupDetail) Topics() []string {
	var out []string
	for _, q := range g.Queues {
		if len(out) == 0 || out[len(out)-1] != q.Topic {
			out = append(out, q.Topic)
		}
	}
	return out
}

// GroupQueue is one queue of a group's topic.
type GroupQueue struct {
	Topic   string
	Group   string // broker group
	QueueID int32
	Min     int64
	HotMin  int64
	Max     int64
	// Offset is the committed offset, -1 without one; Lag is Max − Offset then.
	Offset int64
	Lag    int64
	// Tier is where Offset lies: "hot", "cold" or "—".
	Tier string
}

// GroupMember is one connected consumer of a group.
type GroupMember struct {
	ClientID      string
	Addr          string
	Language      string
	Version       int
	ConsumeType   string
	MessageModel  string
	FromWhere     string
	LastHeartbeat time.Time
	// Subscriptions are "topic: expression" as the consumer registered them.
	Subscriptions []string
}

// ResetRequest moves a group's committed offsets on a topic.
type ResetRequest struct {
	Group, Topic string
	// ToTime moves each queue to its first message stored at or after it, when ToOffset
	// is negative.
	ToTime time.Time
	// ToOffset moves each queue to this offset, clamped into what the queue holds; -1
	// means ToTime is used.
	ToOffset int64
	// QueueID limits the reset to one queue; -1 resets every queue.
	QueueID int32
	// KeepNewer leaves a queue alone when its offset is already older than the target.
	KeepNewer bool
}

// ResetResult is what a reset did.
type ResetResult struct {
	Queues []ResetQueue
	// Clients counts the connected consumers told to restart from the new offsets.
	Clients int
}

// ResetQueue is one queue's offset before and after a reset (Before -1: none).
type ResetQueue struct {
	QueueID       int32
	Before, After int64
}

// Search kinds.
const (
	SearchByID   = "id"
	SearchByKey  = "key"
	SearchByTime = "time"
)

// SearchRequest looks messages up. By id: ID is an offset message id or a unique key
// (Topic optional). By key: Topic and Key, stored within From..To (zero: unbounded). By
// time: Topic, stored from From (zero: the oldest held) until To (zero: unbounded).
type SearchRequest struct {
	Kind     string
	Topic    string
	ID       string
	Key      string
	From, To time.Time
	Limit    int
}

// SearchResult is what a search found.
type SearchResult struct {
	Messages []FoundMessage
	// Note tells where else to look when this broker could not answer (an offset message
	// id of another broker group, say); NoteURL links there.
	Note, NoteURL string
}

// FoundMessage is a message with the tier it was read from.
type FoundMessage struct {
	*message.Message
	// Tier is "hot" or "cold".
	Tier string
}

// TraceRequest asks for a message's trace by its message id (unique key) or by key.
type TraceRequest struct {
	ID, Key string
}

// Timers summarises scheduled delivery.
type Timers struct {
	// Available is false while the broker has no timer service; Note says why.
	Available bool
	Note      string
	Pending   int64
	NextDue   time.Time
	ByHorizon []TimerHorizon
	// Scheduled, Fired and Dropped count since the broker started.
	Scheduled, Fired, Dropped int64
}

// TimerHorizon counts the timers due within one horizon.
type TimerHorizon struct {
	Horizon string
	Count   int64
}
