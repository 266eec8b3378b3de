package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrTierPointerConflict is returned by CompareAndSwapTierPointer when the stored pointer is
// no longer the one the caller loaded (its mod revision moved).
var ErrTierPointerConflict = errors.New("meta: tier pointer changed since it was loaded")

// TierPointer is a broker group's cold-tier state, stored at tier/<group>: everything in the
// group's commit log below OffloadWatermark is in the bucket, ManifestKey names the object
// holding the current cold index, and Epoch is the election epoch (Leadership.Epoch) of the
// master that stored it.
//
// Value: JSON {"v":2,"watermark":N,"manifest":"...","epoch":E}. Version 1 values (written
// before writes were fenced) have no epoch and read as epoch 0.
type TierPointer struct {
	OffloadWatermark int64  `json:"watermark"`
	ManifestKey      string `json:"manifest"`
	Epoch            int64  `json:"epoch,omitempty"`
	// Revision is the etcd mod revision of the stored value (0: no pointer stored); it is
	// not part of the value. CompareAndSwapTierPointer compares it.
	Revision int64 `json:"-"`
}

// tierPointerVersion is the "v" this build writes; it reads 1 and 2.
const tierPointerVersion = 2

type tierPointerValue struct {
	Version int `json:"v"`
	TierPointer
}

// DecodeTierPointer decodes a stored tier pointer value (without its Revision).
func DecodeTierPointer(b []byte) (TierPointer, error) {
	var v tierPointerValue
	if err := json.Unmarshal(b, &v); err != nil {
		return TierPointer{}, fmt.Errorf("decode tier pointer: %w", err)
	}
	if v.Version != 1 && v.Version != tierPointerVersion {
		return TierPointer{}, fmt.Errorf("decode tier pointer: value version %d; this build reads versions 1 and %d", v.Version, tierPointerVersion)
	}
	if v.OffloadWatermark < 0 || v.Epoch < 0 || (v.Version == 1 && v.Epoch != 0) {
		return TierPointer{}, fmt.Errorf("decode tier pointer: watermark %d, epoch %d out of range", v.OffloadWatermark, v.Epoch)
	}
	v.Revision = 0
	return v.TierPointer, nil
}

func encodeTierPointer(tp TierPointer) string {
	val, _ := json.Marshal(tierPointerValue{Version: tierPointerVersion, TierPointer: tp})
	return string(val)
}

// GetTierPointer reads a group's tier pointer, with its Revision; ErrNotFound if none was
// written yet.
func (c *Client) GetTierPointer(ctx context.Context, group string) (TierPointer, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.key(dirTier, group))
	if err != nil {
		return TierPointer{}, fmt.Errorf("get tier pointer of %s: %w", group, err)
	}
	if len(resp.Kvs) == 0 {
		return TierPointer{}, fmt.Errorf("tier pointer of %s: %w", group, ErrNotFound)
	}
	tp, err := DecodeTierPointer(resp.Kvs[0].Value)
	if err != nil {
		return TierPointer{}, fmt.Errorf("tier pointer of %s: %w", group, err)
	}
	tp.Revision = resp.Kvs[0].ModRevision
	return tp, nil
}

// CompareAndSwapTierPointer stores next as group's tier pointer, stamped with lead's epoch,
// in one etcd transaction that commits only if the stored pointer is still prev (same mod
// revision; prev.Revision 0 means "none stored") and lead's term still holds
// (Leadership.Fence). It returns the stored pointer with its new Revision.
//
// It fails with ErrNotLeader when the term has ended (another master, or none, leads the
// group), with ErrTierPointerConflict when the pointer moved since prev was loaded, and with
// ErrTierPointerBackwards when next would move the watermark below prev's (equal is allowed,
// to change the manifest). prev must be a value GetTierPointer (or an earlier swap) returned:
// the transaction compares its revision, so prev's fields are exactly what is stored.
func (c *Client) CompareAndSwapTierPointer(ctx context.Context, group string, prev, next TierPointer, lead Leadership) (TierPointer, error) {
	if err := validateName("broker group", group); err != nil {
		return TierPointer{}, err
	}
	if lead.Group != group || lead.Key == "" || lead.Epoch <= 0 {
		return TierPointer{}, fmt.Errorf("tier pointer of %s: leadership of %q (epoch %d) does not fence this group: %w", group, lead.Group, lead.Epoch, ErrNotLeader)
	}
	if next.OffloadWatermark < prev.OffloadWatermark {
		return TierPointer{}, fmt.Errorf("tier pointer of %s: watermark %d < stored %d: %w", group, next.OffloadWatermark, prev.OffloadWatermark, ErrTierPointerBackwards)
	}
	if prev.Epoch > lead.Epoch {
		return TierPointer{}, fmt.Errorf("tier pointer of %s: stored by epoch %d, newer than ours (%d): %w", group, prev.Epoch, lead.Epoch, ErrNotLeader)
	}
	next.Epoch, next.Revision = lead.Epoch, 0
	key := c.key(dirTier, group)
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", prev.Revision), lead.Fence()).
		Then(clientv3.OpPut(key, encodeTierPointer(next))).
		Else(clientv3.OpGet(key), clientv3.OpGet(lead.Key)).
		Commit()
	if err != nil {
		return TierPointer{}, fmt.Errorf("compare-and-swap tier pointer of %s: %w", group, err)
	}
	if resp.Succeeded {
		next.Revision = resp.Header.Revision
		return next, nil
	}
	// Tell the two failed comparisons apart: a lost term wins over a moved pointer, since the
	// caller must stop writing either way but only the former means "stop for good".
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != lead.Epoch {
		return TierPointer{}, fmt.Errorf("tier pointer of %s: the term of epoch %d has ended: %w", group, lead.Epoch, ErrNotLeader)
	}
	cur := "none"
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		cur = fmt.Sprintf("revision %d (%s)", kvs[0].ModRevision, kvs[0].Value)
	}
	return TierPointer{}, fmt.Errorf("tier pointer of %s is at %s, expected revision %d: %w", group, cur, prev.Revision, ErrTierPointerConflict)
}
