package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TierPointer is a broker group's cold-tier state, stored at tier/<group>: everything in the
// group's commit log below OffloadWatermark is in the bucket, and ManifestKey names the object
// holding the current cold index. Value: JSON {"v":1,"watermark":N,"manifest":"..."}.
type TierPointer struct {
	OffloadWatermark int64  `json:"watermark"`
	ManifestKey      string `json:"manifest"`
}

type tierPointerValue struct {
	Version int `json:"v"`
	TierPointer
}

// GetTierPointer reads a group's tier pointer; ErrNotFound if none was written yet.
func (c *Client) GetTierPointer(ctx context.Context, group string) (TierPointer, error) {
	tp, _, err := c.getTierPointer(ctx, group)
	return tp, err
}

func (c *Client) getTierPointer(ctx context.Context, group string) (TierPointer, int64, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.key(dirTier, group))
	if err != nil {
		return TierPointer{}, 0, fmt.Errorf("get tier pointer of %s: %w", group, err)
	}
	if len(resp.Kvs) == 0 {
		return TierPointer{}, 0, fmt.Errorf("tier pointer of %s: %w", group, ErrNotFound)
	}
	var v tierPointerValue
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return TierPointer{}, 0, fmt.Errorf("tier pointer of %s: decode: %w", group, err)
	}
	return v.TierPointer, resp.Kvs[0].ModRevision, nil
}

// PutTierPointer stores tp for group if it does not move the watermark backwards (equal is
// allowed, to change the manifest); otherwise it returns ErrTierPointerBackwards. The check and
// the write are one compare-and-swap, so concurrent writers cannot regress it.
func (c *Client) PutTierPointer(ctx context.Context, group string, tp TierPointer) error {
	if err := validateName("broker group", group); err != nil {
		return err
	}
	key := c.key(dirTier, group)
	val, _ := json.Marshal(tierPointerValue{Version: 1, TierPointer: tp})
	for {
		cur, rev, err := c.getTierPointer(ctx, group)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if rev > 0 && tp.OffloadWatermark < cur.OffloadWatermark {
			return fmt.Errorf("tier pointer of %s: watermark %d < stored %d: %w", group, tp.OffloadWatermark, cur.OffloadWatermark, ErrTierPointerBackwards)
		}
		rctx, cancel := c.reqCtx(ctx)
		resp, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("put tier pointer of %s: %w", group, err)
		}
		if resp.Succeeded {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
