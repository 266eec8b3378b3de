package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stratamq/strata/meta"
)

// The master election of the broker group (meta.Election under election/<group>):
//
//   - every broker campaigns at Start, as its member name (<group>-<brokerId>); routes report
//     the winner as brokerId 0 (meta's View);
//   - while it leads, the broker's tier writes: Lead hands it the term, and every tier
//     pointer update it makes is fenced by that term, so a deposed master's update fails;
//   - when the term ends (resigned at Close, session lost because etcd was out of reach
//     longer than ElectionTTL, lease revoked) the tier stops offload, compaction and
//     retention, the loss is logged once, and the broker campaigns again. A member that does
//     not lead keeps its sealed segments on disk (none is below the watermark it knows) and
//     submits them again when it wins.

// electionRetryMax bounds the wait between failed campaigns.
const electionRetryMax = 5 * time.Second

// memberName is this broker's name in its group: its registration and election value.
func (b *Broker) memberName() string { return fmt.Sprintf("%s-%d", b.cfg.BrokerName, b.cfg.BrokerID) }

// startElection joins the group's election and returns once this broker leads, or has seen
// another member lead, or one ElectionTTL has passed (a crashed predecessor's key can hold
// the election that long); the campaign goes on in the background until Close.
func (b *Broker) startElection(ctx context.Context) error {
	el, err := b.mc.NewElection(ctx, b.cfg.BrokerName, b.cfg.ElectionTTL)
	if err != nil {
		return fmt.Errorf("broker: join the master election of group %s: %w", b.cfg.BrokerName, err)
	}
	b.election = el
	first := make(chan struct{})
	var once sync.Once
	b.wg.Add(1)
	go b.runElection(func() { once.Do(func() { close(first) }) })

	ttl := b.cfg.ElectionTTL
	if ttl <= 0 {
		ttl = meta.DefaultBrokerTTL
	}
	octx, cancel := context.WithTimeout(ctx, ttl)
	defer cancel()
	leaders := el.Observe(octx)
	for {
		select {
		case <-first:
			return nil
		case name, ok := <-leaders:
			if !ok {
				b.log.Warn("not the master of its broker group yet; starting anyway, the campaign goes on",
					"group", b.cfg.BrokerName, "waited", ttl)
				return nil
			}
			if name != b.memberName() {
				b.log.Info("another member is the master of this broker group; this broker stands by and does no tier work",
					"group", b.cfg.BrokerName, "master", name)
				return nil
			}
		}
	}
}

// runElection campaigns until the broker closes; while it leads, the tier writes.
// won is called after each won term.
func (b *Broker) runElection(won func()) {
	defer b.wg.Done()
	me := b.memberName()
	wait := 100 * time.Millisecond
	retry := func() bool {
		ok := sleepCtx(b.ctx, wait)
		wait = min(2*wait, electionRetryMax)
		return ok
	}
	for b.ctx.Err() == nil {
		lead, set, err := b.campaign(me)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.log.Warn("master election: campaign failed; retrying", "group", b.cfg.BrokerName, "err", err, "backoff", wait)
			if !retry() {
				return
			}
			continue
		}
		// Consumer commits went to the last master meanwhile: answer offset queries from
		// etcd's, not from what this member loaded when it started.
		if err := b.meta.offsets.Refresh(b.ctx); err != nil {
			b.log.Warn("elected master, but the consumer offsets cannot be read from etcd; resigning and campaigning again",
				"group", b.cfg.BrokerName, "epoch", lead.Epoch, "err", err)
			b.resign()
			if !retry() {
				return
			}
			continue
		}
		if b.repl != nil {
			if err := b.repl.becomeMaster(b.ctx, lead, set); err != nil {
				b.log.Warn("elected master, but replication cannot start; resigning and campaigning again",
					"group", b.cfg.BrokerName, "epoch", lead.Epoch, "err", err)
				b.resign()
				if !retry() {
					return
				}
				continue
			}
		}
		var stopped <-chan struct{}
		if b.tier != nil {
			if stopped, err = b.tier.Lead(b.ctx, lead); err != nil {
				b.log.Warn("elected master, but the cold tier cannot start writing; resigning and campaigning again",
					"group", b.cfg.BrokerName, "epoch", lead.Epoch, "err", err)
				b.stepDown()
				b.resign()
				if !retry() {
					return
				}
				continue
			}
		}
		wait = 100 * time.Millisecond
		b.log.Info("elected master of the broker group; this broker offloads, compacts and applies tier retention",
			"group", b.cfg.BrokerName, "epoch", lead.Epoch)
		won()
		var reason string
		select {
		case <-b.ctx.Done():
			return
		case <-lead.Lost:
			reason = "the election term ended: the etcd session was lost (etcd out of reach longer than the election TTL) or its lease was revoked"
		case <-stopped:
			reason = "a tier pointer update was fenced: another member was elected"
			b.resign()
		}
		if stopped != nil {
			select {
			case <-stopped:
			case <-b.ctx.Done():
				return
			}
		}
		b.stepDown()
		b.log.Warn("no longer the master of the broker group: offload, compaction and tier retention stopped until re-elected",
			"group", b.cfg.BrokerName, "epoch", lead.Epoch, "reason", reason)
	}
}

// campaign waits for a term: from the in-sync set when the broker replicates.
func (b *Broker) campaign(me string) (meta.Leadership, meta.InSyncSet, error) {
	if b.repl == nil {
		lead, err := b.election.Campaign(b.ctx, me)
		return lead, meta.InSyncSet{}, err
	}
	lead, set, err := b.election.CampaignInSync(b.ctx, me, b.cfg.Replication.UncleanElection)
	if err != nil {
		return lead, set, err
	}
	if set.Revision != 0 && !set.Has(me) {
		b.log.Warn("replication: UNCLEAN election: this member became master although it is not in the in-sync set; messages only the set held may be lost",
			"group", b.cfg.BrokerName, "epoch", lead.Epoch, "in_sync", set.Members)
	}
	return lead, set, nil
}

// stepDown ends the replicating master's term, if any.
func (b *Broker) stepDown() {
	if b.repl != nil {
		b.repl.stepDown()
	}
}

func (b *Broker) resign() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 5*time.Second)
	defer cancel()
	if err := b.election.Resign(ctx); err != nil && !errors.Is(err, context.Canceled) {
		b.log.Warn("master election: resign failed; the term ends when its lease expires", "group", b.cfg.BrokerName, "err", err)
	}
}

// sleepCtx waits d or until ctx ends; it reports whether the full wait happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
