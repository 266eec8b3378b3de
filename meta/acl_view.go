package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ACLSnapshot is one consistent state of the access-control accounts and the whitelist. Do
// not modify it.
type ACLSnapshot struct {
	// Revision is the etcd revision the snapshot reflects.
	Revision  int64
	Accounts  map[string]ACLAccount // by access key
	Whitelist []string
	// Undecodable lists keys whose values do not decode; their accounts are absent (their
	// requests are refused as unknown), not guessed at.
	Undecodable []string
}

// ACLView is an in-memory copy of the ACL state kept current by an etcd watch, so a change
// made through any broker takes effect on every broker within the watch's latency (well
// under a second). During an etcd outage it keeps its last state and catches up after.
type ACLView struct {
	c      *Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	snap    *ACLSnapshot
	changed chan struct{}

	closeOnce sync.Once
}

const aclViewComponent = "acl view"

// NewACLView loads the ACL state and starts watching it. It fails if etcd cannot be read
// within ctx: a broker with ACL on must not start with an unknown account table.
func (c *Client) NewACLView(ctx context.Context) (*ACLView, error) {
	v := &ACLView{c: c, done: make(chan struct{}), changed: make(chan struct{})}
	snap, err := v.load(ctx)
	if err != nil {
		return nil, err
	}
	v.snap = snap
	runCtx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	go v.run(runCtx, snap.Revision)
	return v, nil
}

// Current returns the latest snapshot and a channel closed when a newer one replaces it.
func (v *ACLView) Current() (*ACLSnapshot, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.snap, v.changed
}

// WaitRevision waits until the view reflects etcd revision rev (a write this process just
// made), or ctx ends.
func (v *ACLView) WaitRevision(ctx context.Context, rev int64) error {
	for {
		snap, changed := v.Current()
		if snap.Revision >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the ACL view to reach revision %d (at %d): %w", rev, snap.Revision, ctx.Err())
		}
	}
}

// Close stops the watch; idempotent.
func (v *ACLView) Close() error {
	v.closeOnce.Do(func() {
		v.cancel()
		<-v.done
		v.c.clearFault(aclViewComponent)
	})
	return nil
}

func (v *ACLView) load(ctx context.Context) (*ACLSnapshot, error) {
	s := &ACLSnapshot{Accounts: map[string]ACLAccount{}}
	rev, err := v.c.scanAt(ctx, v.c.key(dirACL), 0, func(kv *mvccpb.KeyValue) error {
		v.apply(s, &clientv3.Event{Type: clientv3.EventTypePut, Kv: kv})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load ACL accounts: %w", err)
	}
	s.Revision = rev
	return s, nil
}

// apply folds one event into s, whose Accounts map the caller owns.
func (v *ACLView) apply(s *ACLSnapshot, ev *clientv3.Event) {
	key := string(ev.Kv.Key)
	del := ev.Type == clientv3.EventTypeDelete
	s.Undecodable = removeString(s.Undecodable, key)
	switch {
	case key == v.c.key(keyACLWhite):
		s.Whitelist = nil
		if !del {
			var w ACLWhitelist
			if err := json.Unmarshal(ev.Kv.Value, &w); err != nil {
				s.Undecodable = append(s.Undecodable, key)
				return
			}
			s.Whitelist = w.Addrs
		}
	case strings.HasPrefix(key, v.c.key(dirACLAccounts)):
		ak := strings.TrimPrefix(key, v.c.key(dirACLAccounts))
		delete(s.Accounts, ak)
		if del {
			return
		}
		var a ACLAccount
		if err := json.Unmarshal(ev.Kv.Value, &a); err != nil || a.AccessKey != ak {
			s.Undecodable = append(s.Undecodable, key)
			return
		}
		a.Revision = ev.Kv.ModRevision
		s.Accounts[ak] = a
	}
}

func removeString(list []string, s string) []string {
	for i, x := range list {
		if x == s {
			return append(list[:i:i], list[i+1:]...)
		}
	}
	return list
}

func (v *ACLView) publish(s *ACLSnapshot) {
	v.mu.Lock()
	v.snap = s
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
}

func (v *ACLView) run(ctx context.Context, rev int64) {
	defer close(v.done)
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for {
		err := v.watch(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		v.c.setFault(aclViewComponent, err)
		for {
			if !sleepCtx(ctx, bo.next()) {
				return
			}
			snap, lerr := v.load(ctx)
			if lerr == nil {
				v.publish(snap)
				rev = snap.Revision
				break
			}
			v.c.setFault(aclViewComponent, lerr)
		}
		bo.reset()
		v.c.clearFault(aclViewComponent)
	}
}

// watch follows acl/ from rev+1 until the watch fails.
func (v *ACLView) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := v.c.cli.Watch(wctx, v.c.key(dirACL), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok = <-wch:
		}
		if !ok {
			return fmt.Errorf("watch %s closed", dirACL)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", dirACL, err)
		}
		if len(resp.Events) == 0 {
			continue
		}
		old, _ := v.Current()
		next := *old
		next.Accounts = maps.Clone(old.Accounts)
		next.Undecodable = append([]string(nil), old.Undecodable...)
		for _, ev := range resp.Events {
			v.apply(&next, ev)
		}
		next.Revision = resp.Header.Revision
		v.publish(&next)
	}
}
