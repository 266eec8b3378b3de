package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/query"
)

// CodeGetTierLocation is a Strata-private request code of the broker role: it answers the
// group's cold-tier location (TierLocation as the JSON body), so `strata export` can read
// cold ranges straight from the bucket knowing only the name server. Credentials are never
// sent: the reader uses its own (the standard AWS chain). Java and Go clients never send it.
const CodeGetTierLocation int16 = 9100

// TierLocation is where a broker group's cold tier lives: the body of CodeGetTierLocation.
type TierLocation struct {
	Enabled bool   `json:"enabled"`
	Cluster string `json:"cluster"`
	Group   string `json:"group"`
	// Bucket is the bucket URL (file:///dir or s3://bucket/prefix), "" when the broker was
	// given a bucket object rather than a URL.
	Bucket string `json:"bucket,omitempty"`
	// S3Endpoint, S3Region and S3PathStyle complete an s3:// Bucket.
	S3Endpoint  string `json:"s3Endpoint,omitempty"`
	S3Region    string `json:"s3Region,omitempty"`
	S3PathStyle bool   `json:"s3PathStyle,omitempty"`
	// Prefix names the group in the bucket (cluster/group).
	Prefix string `json:"prefix,omitempty"`
	// OffloadWatermark and Manifest are the group's current tier pointer.
	OffloadWatermark int64  `json:"offloadWatermark"`
	Manifest         string `json:"manifest,omitempty"`
}

// finder looks messages up in both tiers.
func (b *Broker) finder() *query.Finder { return &query.Finder{Store: b.store, Tier: b.tier} }

// handleQueryMessage serves QUERY_MESSAGE (12, PROTOCOL.md §10): messages of a topic by key
// or, with _UNIQUE_KEY_QUERY=true, by unique key, in a store-time window, from both tiers.
func (b *Broker) handleQueryMessage(ctx context.Context, req *remoting.Command) *remoting.Command {
	ext := req.ExtFields
	topic, err := ext.String("topic")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	key, err := ext.String("key")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	maxNum, err := ext.Int64Or("maxNum", query.DefaultMaxResults)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	begin, err := ext.Int64Or("beginTimestamp", 0)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	end, err := ext.Int64Or("endTimestamp", 0)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	uniq, err := ext.BoolOr("_UNIQUE_KEY_QUERY", false)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if uniq || maxNum <= 0 || maxNum > 1000 {
		maxNum = query.DefaultMaxResults
	}
	recs, err := b.finder().ByKey(ctx, query.KeyQuery{Topic: topic, Key: key, Uniq: uniq,
		BeginMs: begin, EndMs: end, MaxResults: int(maxNum)})
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
	}
	if len(recs) == 0 {
		return remoting.NewResponse(req, remoting.RespQueryNotFound,
			fmt.Sprintf("no message of topic %s with key %q stored in [%d, %d]", topic, key, begin, end))
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.ExtFields.SetInt64("indexLastUpdateTimestamp", time.Now().UnixMilli())
	resp.ExtFields.SetInt64("indexLastUpdatePhyoffset", b.store.MaxCommitLogOffset())
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	body := make([]byte, 0, n)
	for _, r := range recs {
		body = append(body, r...)
	}
	resp.Body = body
	return resp
}

// handleViewMessageByID serves VIEW_MESSAGE_BY_ID (33): the record at the commit-log offset
// of an offset message id, from local disk or the bucket.
func (b *Broker) handleViewMessageByID(ctx context.Context, req *remoting.Command) *remoting.Command {
	off, err := req.ExtFields.Int64("offset")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	rec, err := b.finder().ByCommitLogOffset(ctx, off)
	if err != nil {
		// Java answers SYSTEM_ERROR for an offset that is not a message (§10).
		return remoting.NewResponse(req, remoting.RespSystemError,
			fmt.Sprintf("no message at commit-log offset %d of broker group %s: %v", off, b.cfg.BrokerName, err))
	}
	if deny := b.authorizeRecord(ctx, req, rec); deny != nil {
		return deny
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = rec
	return resp
}

// TierLocation reports where the group's cold tier lives (Enabled false without one).
func (b *Broker) TierLocation() TierLocation {
	loc := TierLocation{Cluster: b.cfg.ClusterName, Group: b.cfg.BrokerName}
	if b.tier == nil {
		return loc
	}
	loc.Enabled, loc.Prefix, loc.Bucket = true, b.tierPrefix(), b.cfg.BucketURL
	loc.S3Endpoint, loc.S3Region, loc.S3PathStyle = b.cfg.S3.Endpoint, b.cfg.S3.Region, b.cfg.S3.UsePathStyle
	ptr := b.tier.Pointer()
	loc.OffloadWatermark, loc.Manifest = ptr.OffloadWatermark, ptr.Manifest
	return loc
}

func (b *Broker) handleGetTierLocation(req *remoting.Command) *remoting.Command {
	body, err := json.Marshal(b.TierLocation())
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, errors.New("encode tier location"))
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// serveQuery dispatches the query requests of the broker role.
func (b *Broker) serveQuery(ctx context.Context, req *remoting.Command) *remoting.Command {
	switch req.Code {
	case remoting.CodeQueryMessage:
		return b.handleQueryMessage(ctx, req)
	case remoting.CodeViewMessageByID:
		return b.handleViewMessageByID(ctx, req)
	default:
		return b.handleGetTierLocation(req)
	}
}
