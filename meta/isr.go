package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrInSyncSetConflict is returned by SetInSyncSet when the stored set is no longer the one
// the caller loaded (its mod revision moved).
var ErrInSyncSetConflict = errors.New("meta: in-sync set changed since it was loaded")

// ErrNotInSync is returned by CampaignInSync when this member won a term but is not in the
// group's in-sync set: it resigned at once, since its log may lack acknowledged messages.
var ErrNotInSync = errors.New("meta: not in the broker group's in-sync set")

// InSyncSet is a broker group's in-sync replica set, stored at groups/<group>/isr: the members
// (by member name, the election value) that hold every message the group acknowledged under
// sync replication. Only its elected master writes it (SetInSyncSet, fenced by its term), and
// only its members may become master (CampaignInSync), so a failover loses no acknowledged
// message.
//
// Value: JSON {"v":1,"members":["g-0","g-1"],"epoch":E}.
type InSyncSet struct {
	// Members are member names, sorted.
	Members []string `json:"members"`
	// Epoch is the election epoch of the master that stored the set.
	Epoch int64 `json:"epoch"`
	// Revision is the etcd mod revision of the stored value (0: none stored); it is not part
	// of the value. SetInSyncSet compares it.
	Revision int64 `json:"-"`
}

// Has reports whether member is in the set.
func (s InSyncSet) Has(member string) bool { return slices.Contains(s.Members, member) }

const isrVersion = 1

type isrValue struct {
	Version int `json:"v"`
	InSyncSet
}

// DecodeInSyncSet decodes a stored in-sync set value (without its Revision).
func DecodeInSyncSet(b []byte) (InSyncSet, error) {
	var v isrValue
	if err := json.Unmarshal(b, &v); err != nil {
		return InSyncSet{}, fmt.Errorf("decode in-sync set: %w", err)
	}
	if v.Version != isrVersion {
		return InSyncSet{}, fmt.Errorf("decode in-sync set: value version %d; this build reads version %d", v.Version, isrVersion)
	}
	if v.Epoch < 0 || len(v.Members) == 0 {
		return InSyncSet{}, fmt.Errorf("decode in-sync set: epoch %d, %d members: a stored set has a master", v.Epoch, len(v.Members))
	}
	for _, m := range v.Members {
		if err := validateName("member", m); err != nil {
			return InSyncSet{}, fmt.Errorf("decode in-sync set: %w", err)
		}
	}
	v.Members = normMembers(v.Members)
	v.Revision = 0
	return v.InSyncSet, nil
}

func normMembers(m []string) []string {
	out := slices.Clone(m)
	slices.Sort(out)
	return slices.Compact(out)
}

func encodeInSyncSet(s InSyncSet) string {
	val, _ := json.Marshal(isrValue{Version: isrVersion, InSyncSet: s})
	return string(val)
}

func (c *Client) isrKey(group string) string { return c.key(dirGroups, group, "/isr") }

// GetInSyncSet reads a group's in-sync set with its Revision; ErrNotFound if none was stored
// yet (the group never had a master with replication).
func (c *Client) GetInSyncSet(ctx context.Context, group string) (InSyncSet, error) {
	if err := validateName("broker group", group); err != nil {
		return InSyncSet{}, err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.isrKey(group))
	if err != nil {
		return InSyncSet{}, fmt.Errorf("get in-sync set of %s: %w", group, err)
	}
	if len(resp.Kvs) == 0 {
		return InSyncSet{}, fmt.Errorf("in-sync set of %s: %w", group, ErrNotFound)
	}
	s, err := DecodeInSyncSet(resp.Kvs[0].Value)
	if err != nil {
		return InSyncSet{}, fmt.Errorf("in-sync set of %s: %w", group, err)
	}
	s.Revision = resp.Kvs[0].ModRevision
	return s, nil
}

// SetInSyncSet stores members as group's in-sync set, stamped with lead's epoch, in one etcd
// transaction that commits only if the stored set is still prev (same mod revision; 0: none
// stored) and lead's term still holds (Leadership.Fence). members must include the master
// itself. It returns the stored set with its new Revision.
//
// It fails with ErrNotLeader when the term has ended, and with ErrInSyncSetConflict when the
// set moved since prev was loaded.
func (c *Client) SetInSyncSet(ctx context.Context, group string, prev InSyncSet, members []string, lead Leadership) (InSyncSet, error) {
	if err := validateName("broker group", group); err != nil {
		return InSyncSet{}, err
	}
	if lead.Group != group || lead.Key == "" || lead.Epoch <= 0 {
		return InSyncSet{}, fmt.Errorf("in-sync set of %s: leadership of %q (epoch %d) does not fence this group: %w", group, lead.Group, lead.Epoch, ErrNotLeader)
	}
	if len(members) == 0 {
		return InSyncSet{}, fmt.Errorf("in-sync set of %s: no members; the master is always in sync with itself", group)
	}
	for _, m := range members {
		if err := validateName("member", m); err != nil {
			return InSyncSet{}, err
		}
	}
	next := InSyncSet{Members: normMembers(members), Epoch: lead.Epoch}
	key := c.isrKey(group)
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", prev.Revision), lead.Fence()).
		Then(clientv3.OpPut(key, encodeInSyncSet(next))).
		Else(clientv3.OpGet(key), clientv3.OpGet(lead.Key)).
		Commit()
	if err != nil {
		return InSyncSet{}, fmt.Errorf("compare-and-swap in-sync set of %s: %w", group, err)
	}
	if resp.Succeeded {
		next.Revision = resp.Header.Revision
		return next, nil
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != lead.Epoch {
		return InSyncSet{}, fmt.Errorf("in-sync set of %s: the term of epoch %d has ended: %w", group, lead.Epoch, ErrNotLeader)
	}
	cur := "none"
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		cur = fmt.Sprintf("revision %d (%s)", kvs[0].ModRevision, kvs[0].Value)
	}
	return InSyncSet{}, fmt.Errorf("in-sync set of %s is at %s, expected revision %d: %w", group, cur, prev.Revision, ErrInSyncSetConflict)
}

// Eligible reports whether member may become master of group: the group has no in-sync set
// yet (it never replicated), or member is in it. The set is returned as read (zero when none).
func (c *Client) Eligible(ctx context.Context, group, member string) (bool, InSyncSet, error) {
	s, err := c.GetInSyncSet(ctx, group)
	if errors.Is(err, ErrNotFound) {
		return true, InSyncSet{}, nil
	}
	if err != nil {
		return false, InSyncSet{}, err
	}
	return s.Has(member), s, nil
}

// WaitEligible returns once member may become master of group (Eligible), watching the set;
// it returns ctx's error if that does not happen first.
func (c *Client) WaitEligible(ctx context.Context, group, member string) (InSyncSet, error) {
	for {
		ok, s, err := c.Eligible(ctx, group, member)
		if err == nil && ok {
			return s, nil
		}
		if ctx.Err() != nil {
			return InSyncSet{}, ctx.Err()
		}
		if err != nil {
			if !sleepCtx(ctx, 500*time.Millisecond) {
				return InSyncSet{}, ctx.Err()
			}
			continue
		}
		// Wait for the next change of the set after the revision read.
		wctx, cancel := context.WithCancel(ctx)
		wch := c.cli.Watch(wctx, c.isrKey(group), clientv3.WithRev(s.Revision+1))
		select {
		case <-wch:
		case <-ctx.Done():
		}
		cancel()
	}
}

// CampaignInSync is Campaign restricted to members of the group's in-sync set: it waits until
// this member is eligible (WaitEligible), campaigns, and on winning reads the set again. A
// member that lost its place while it waited resigns at once and gets ErrNotInSync; the
// caller campaigns again. The check after winning is exact: once this term holds, the
// previous master's fenced writes fail, so the set read is the one that term left.
//
// With unclean true the set is not consulted (the operator's override of an outage in which
// no in-sync member survives); set is then what was stored, for the caller's log line.
func (e *Election) CampaignInSync(ctx context.Context, member string, unclean bool) (lead Leadership, set InSyncSet, err error) {
	if !unclean {
		if _, err := e.c.WaitEligible(ctx, e.group, member); err != nil {
			return Leadership{}, InSyncSet{}, fmt.Errorf("campaign for master of %s: wait to be in sync: %w", e.group, err)
		}
	}
	if lead, err = e.Campaign(ctx, member); err != nil {
		return Leadership{}, InSyncSet{}, err
	}
	ok, set, err := e.c.Eligible(ctx, e.group, member)
	if err != nil {
		_ = e.Resign(context.WithoutCancel(ctx))
		return Leadership{}, InSyncSet{}, fmt.Errorf("campaign for master of %s: read the in-sync set after winning: %w", e.group, err)
	}
	if !ok && !unclean {
		_ = e.Resign(context.WithoutCancel(ctx))
		return Leadership{}, set, fmt.Errorf("campaign for master of %s: won epoch %d, but %s is not in the in-sync set %v (epoch %d): resigned: %w",
			e.group, lead.Epoch, member, set.Members, set.Epoch, ErrNotInSync)
	}
	return lead, set, nil
}
