package broker

import (
	"slices"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
)

// Reads from slaves (replication.slave_read_enable), RocketMQ's rule from
// PullMessageProcessor and DefaultMessageStore.getMessage: a pull answer names in
// suggestWhichBrokerId the member the consumer should pull that queue from next, and the
// official clients follow it (Go: processPullResult → updatePullFromWhichNode, then
// FindBrokerAddressInSubscribe(brokerName, id, false)). RocketMQ sends a consumer to a slave
// once the distance from the pulled message to the commit log's end exceeds a share of RAM;
// Strata uses a bound in bytes of commit log (SlaveReadLagBytes).
//
//   - The master suggests an in-sync slave for a pull whose first record lies more than the
//     bound behind its log end: that consumer is replaying a backlog, whose disk reads are
//     better spent on a slave than next to the producers. It spreads queues over the in-sync
//     slaves by queue id, and suggests 0 when none is in sync: a slave outside the set may
//     lack the records or serve none (its read limit stays at the last watermark it heard).
//   - A slave keeps suggesting itself while the consumer is still behind by the bound, and
//     suggests 0 once it is within it, once a pull reaches the end of what the slave may serve
//     (its read limit, the in-sync set's watermark), or finds nothing: fresh data is the
//     master's to serve, with long polling on its appends.
//   - Pulls served from the cold tier stay on (or go back to) the master. Only the master
//     follows the tier's manifest as it offloads (it writes it); another member loads it at
//     start and reloads it only when an object it names is gone, so it may not know ranges
//     offloaded since and would answer such a pull with OFFSET_MOVED. Cold reads also cost
//     the bucket and the network, not the disk the producers write to.
//   - A slave with slave reads on answers what would be PULL_OFFSET_MOVED (the offset is
//     below its log or past its end) with PULL_RETRY_IMMEDIATELY at the same offset and
//     suggests 0, as RocketMQ's slave does without offsetCheckInSlave: only the master may
//     tell a consumer to move its offset, so a slave that lags or holds less never makes a
//     consumer skip or repeat messages.
//
// Offsets need nothing here: the Go client commits them to brokerId 0 (FindBrokerAddrByName)
// and clears the commit-offset flag of a pull that goes to a slave; etcd holds them either way.

// pullPlacement is what the slave-read rule looks at in one pull answer.
type pullPlacement struct {
	enabled  bool
	master   bool  // this member is the group's acting master
	found    bool  // the answer carries records
	cold     bool  // its first record came from the cold tier
	behind   int64 // commit-log bytes from the first record to this member's log end
	atEnd    bool  // the answer reached the last record this member may serve in the queue
	lagBytes int64 // SlaveReadLagBytes
	queueID  int32
}

// suggestBrokerID applies the rule: the brokerId the consumer should pull from next. slaves
// lists the route ids of the in-sync slaves (asked of a master only, and only when the pull
// is far behind); self is this slave's own route id (0 when the route does not list it).
func suggestBrokerID(p pullPlacement, slaves func() []int64, self func() int64) int64 {
	if !p.enabled || !p.found || p.cold || p.behind <= p.lagBytes {
		return 0
	}
	if p.master {
		ids := slaves()
		if len(ids) == 0 {
			return 0
		}
		return ids[int(p.queueID)%len(ids)]
	}
	if p.atEnd {
		return 0
	}
	return self()
}

// offsetMovedOnSlave reports whether an OFFSET_MOVED answer is a slave's to withhold: slave
// reads are on and this member is not the master.
func (b *Broker) offsetMovedOnSlave(code int16) bool {
	r := b.repl
	return code == remoting.RespPullOffsetMoved && r != nil && r.cfg.SlaveReadEnable && !r.leading.Load()
}

// pullSuggestion fills in the suggestWhichBrokerId of a pull answer and counts slave reads.
func (b *Broker) pullSuggestion(resp *remoting.Command, queueID int32, res store.ReadResult) {
	r := b.repl
	if r == nil {
		resp.ExtFields["suggestWhichBrokerId"] = "0"
		return
	}
	master := r.leading.Load()
	found := resp.Code == remoting.RespSuccess && len(res.Entries) > 0
	if found && !master {
		b.metrics.slaveReadMessages.Add(float64(len(res.Entries)))
	}
	p := pullPlacement{enabled: r.cfg.SlaveReadEnable, master: master, found: found,
		lagBytes: r.cfg.SlaveReadLagBytes, queueID: queueID}
	if found {
		first := res.Entries[0].CommitLogOffset
		p.cold = first < b.store.MinCommitLogOffset()
		p.behind = b.store.EndOffset() - first
		p.atEnd = res.NextOffset >= res.MaxOffset
	}
	id := suggestBrokerID(p, r.inSyncSlaveIDs, r.selfRouteID)
	if id != 0 {
		if master {
			b.metrics.slaveSuggestions.WithLabelValues("master").Inc()
		} else {
			b.metrics.slaveSuggestions.WithLabelValues("slave").Inc()
		}
	}
	resp.ExtFields.SetInt64("suggestWhichBrokerId", id)
}

// inSyncSlaveIDs lists the route brokerIds of the in-sync set's members other than this
// master, ascending; none while this member is not the master.
func (r *replication) inSyncSlaveIDs() []int64 {
	r.mu.Lock()
	t := r.term
	var members []string
	if t != nil && t.server != nil {
		members = slices.Clone(t.isr.Members)
	}
	r.mu.Unlock()
	if len(members) == 0 {
		return nil
	}
	ids := r.routeIDs()
	var out []int64
	for _, m := range members {
		if id, ok := ids[m]; ok && m != r.me && id != 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// selfRouteID is this member's brokerId in the group's route, 0 when it is not listed as a
// slave.
func (r *replication) selfRouteID() int64 { return r.routeIDs()[r.me] }

// routeIDs maps the group's live members to their brokerIds as routes report them
// (meta.Snapshot.BrokerGroup: the master 0, the others by configured id or in name order).
func (r *replication) routeIDs() map[string]int64 {
	b := r.b
	snap := b.meta.view.Snapshot()
	bd := snap.BrokerGroup(b.cfg.ClusterName, b.cfg.BrokerName)
	byAddr := make(map[string]int64, len(bd.Addrs))
	for id, addr := range bd.Addrs {
		byAddr[addr] = id
	}
	out := map[string]int64{}
	for _, info := range snap.Brokers {
		if info.Group != b.cfg.BrokerName {
			continue
		}
		if id, ok := byAddr[info.BrokerAddr]; ok {
			out[info.Name] = id
		}
	}
	return out
}
