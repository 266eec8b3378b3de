package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

// ErrTopicNotFound is returned when the name server knows no such topic.
var ErrTopicNotFound = errors.New("topic not found")

// Client talks to one name server and, through the routes it serves, to brokers.
type Client struct {
	namesrv string
	dial    remoting.ClientConfig
	mu      sync.Mutex
	conns   map[string]*remoting.Client
}

// Option adjusts how a Client connects.
type Option func(*remoting.ClientConfig)

// WithCredentials signs every request with an ACL account's keys (bound to its request code
// and time, which Strata brokers check).
func WithCredentials(accessKey, secretKey string) Option {
	return func(c *remoting.ClientConfig) {
		c.Credentials = remoting.Credentials{AccessKey: accessKey, SecretKey: secretKey, BindRequest: true}
	}
}

// WithTLS dials every connection, to the name server and to brokers, over TLS.
func WithTLS(conf *tls.Config) Option {
	return func(c *remoting.ClientConfig) { c.TLS = conf }
}

// Dial connects to a name server address ("ip:port").
func Dial(ctx context.Context, namesrv string, opts ...Option) (*Client, error) {
	c := &Client{namesrv: namesrv, conns: map[string]*remoting.Client{}}
	for _, o := range opts {
		o(&c.dial)
	}
	if _, err := c.conn(ctx, namesrv); err != nil {
		return nil, fmt.Errorf("name server %s unreachable (is strata running? set --namesrv): %w", namesrv, err)
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, conn := range c.conns {
		_ = conn.Close()
		delete(c.conns, addr)
	}
	return nil
}

func (c *Client) conn(ctx context.Context, addr string) (*remoting.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.conns[addr]; ok {
		select {
		case <-cl.Done():
		default:
			return cl, nil
		}
	}
	cl, err := remoting.Dial(ctx, addr, c.dial)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cl
	return cl, nil
}

// invoke sends a request and returns the response, turning non-success codes not listed in ok
// into errors that carry the remark.
func (c *Client) invoke(ctx context.Context, addr string, req *remoting.Command, ok ...int16) (*remoting.Command, error) {
	cl, err := c.conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Invoke(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return resp, answerError(addr, resp, ok...)
}

// answerError is the error of addr's answer resp: nil for SUCCESS and the codes in ok, else
// one that carries the remark.
func answerError(addr string, resp *remoting.Command, ok ...int16) error {
	if resp.Code == remoting.RespSuccess {
		return nil
	}
	for _, code := range ok {
		if resp.Code == code {
			return nil
		}
	}
	return fmt.Errorf("%s answered code %d: %s", addr, resp.Code, resp.Remark)
}

// QueueData is one broker group's share of a topic.
type QueueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
}

// BrokerData is one broker group's addresses, by broker id (0 is the master).
type BrokerData struct {
	Cluster     string            `json:"cluster"`
	BrokerName  string            `json:"brokerName"`
	BrokerAddrs map[string]string `json:"brokerAddrs"`
}

// Route is a topic's route as the name server serves it.
type Route struct {
	QueueDatas  []QueueData  `json:"queueDatas"`
	BrokerDatas []BrokerData `json:"brokerDatas"`
}

// Queue is one consumable queue of a topic.
type Queue struct {
	Topic      string
	BrokerName string
	QueueID    int32
	// Addr is the master's address.
	Addr string
}

// Queues lists the readable queues of the route, sorted by broker and id.
func (r Route) Queues(topic string) []Queue {
	addrs := map[string]string{}
	for _, b := range r.BrokerDatas {
		addrs[b.BrokerName] = b.BrokerAddrs["0"]
	}
	var out []Queue
	for _, q := range r.QueueDatas {
		for i := 0; i < q.ReadQueueNums; i++ {
			out = append(out, Queue{Topic: topic, BrokerName: q.BrokerName, QueueID: int32(i), Addr: addrs[q.BrokerName]})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].BrokerName != out[j].BrokerName {
			return out[i].BrokerName < out[j].BrokerName
		}
		return out[i].QueueID < out[j].QueueID
	})
	return out
}

// Route fetches a topic's route.
func (c *Client) Route(ctx context.Context, topic string) (Route, error) {
	req := remoting.NewRequest(remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": topic}, nil)
	resp, err := c.invoke(ctx, c.namesrv, req, remoting.RespTopicNotExist)
	if err != nil {
		return Route{}, err
	}
	if resp.Code == remoting.RespTopicNotExist {
		return Route{}, fmt.Errorf("%w: %s", ErrTopicNotFound, topic)
	}
	var r Route
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return Route{}, fmt.Errorf("route of %s: bad JSON from %s: %w", topic, c.namesrv, err)
	}
	return r, nil
}

// CreateTopic creates a topic with queues queues on each of groups (every live broker group
// when none are named), or sets an existing topic's queue count to queues on those groups
// (every group of its route when none are named), through the name server, which writes it
// to the cluster metadata. A shrink lowers write queues at once and read queues once drained.
func (c *Client) CreateTopic(ctx context.Context, topic string, queues int, groups ...string) error {
	ext := remoting.ExtFields{
		"topic": topic, "defaultTopic": "TBW102", "readQueueNums": strconv.Itoa(queues),
		"writeQueueNums": strconv.Itoa(queues), "perm": "6", "topicFilterType": "SINGLE_TAG",
		"topicSysFlag": "0", "order": "false",
	}
	if len(groups) > 0 {
		ext["brokerGroups"] = strings.Join(groups, ",")
	}
	_, err := c.invoke(ctx, c.namesrv, remoting.NewRequest(remoting.CodeUpdateAndCreateTopic, ext, nil))
	return err
}

// BrokerGroups maps every live broker group to its master's address, from the name server's
// GET_BROKER_CLUSTER_INFO.
func (c *Client) BrokerGroups(ctx context.Context) (map[string]string, error) {
	resp, err := c.invoke(ctx, c.namesrv, remoting.NewRequest(remoting.CodeGetBrokerClusterInfo, nil, nil))
	if err != nil {
		return nil, err
	}
	var info struct {
		BrokerAddrTable map[string]struct {
			BrokerAddrs map[string]string `json:"brokerAddrs"`
		} `json:"brokerAddrTable"`
	}
	if err := json.Unmarshal(resp.Body, &info); err != nil {
		return nil, fmt.Errorf("cluster info: bad JSON from %s: %w", c.namesrv, err)
	}
	out := make(map[string]string, len(info.BrokerAddrTable))
	for name, bd := range info.BrokerAddrTable {
		out[name] = bd.BrokerAddrs["0"]
	}
	return out, nil
}

// Topics lists every topic the cluster knows.
func (c *Client) Topics(ctx context.Context) ([]string, error) {
	resp, err := c.invoke(ctx, c.namesrv, remoting.NewRequest(remoting.CodeGetAllTopicListFromNameServer, nil, nil))
	if err != nil {
		return nil, err
	}
	var list struct {
		TopicList []string `json:"topicList"`
	}
	if err := json.Unmarshal(resp.Body, &list); err != nil {
		return nil, fmt.Errorf("topic list: bad JSON: %w", err)
	}
	sort.Strings(list.TopicList)
	return list.TopicList, nil
}

func (c *Client) offsetQuery(ctx context.Context, q Queue, code int16, extra remoting.ExtFields, field string) (int64, error) {
	ext := remoting.ExtFields{"topic": q.Topic, "queueId": strconv.Itoa(int(q.QueueID))}
	for k, v := range extra {
		ext[k] = v
	}
	resp, err := c.invoke(ctx, q.Addr, remoting.NewRequest(code, ext, nil))
	if err != nil {
		return 0, err
	}
	return remoting.ExtFields(resp.ExtFields).Int64(field)
}

// MinOffset is the oldest offset the queue still holds.
func (c *Client) MinOffset(ctx context.Context, q Queue) (int64, error) {
	return c.offsetQuery(ctx, q, remoting.CodeGetMinOffset, nil, "offset")
}

// MaxOffset is one past the queue's newest offset.
func (c *Client) MaxOffset(ctx context.Context, q Queue) (int64, error) {
	return c.offsetQuery(ctx, q, remoting.CodeGetMaxOffset, nil, "offset")
}

// OffsetForTime is the first offset whose store time is at or after tsMillis.
func (c *Client) OffsetForTime(ctx context.Context, q Queue, tsMillis int64) (int64, error) {
	return c.offsetQuery(ctx, q, remoting.CodeSearchOffsetByTimestamp,
		remoting.ExtFields{"timestamp": strconv.FormatInt(tsMillis, 10)}, "offset")
}

// PullResult is the outcome of one pull.
type PullResult struct {
	// Found is false when nothing new was there (or all was filtered out).
	Found bool
	// Messages and their Bodies (which alias the response's frame) are recycled by Release.
	Messages   []*message.Message
	NextOffset int64
	MinOffset  int64
	MaxOffset  int64

	resp *remoting.Command
	dec  *message.Decoder
}

// decoders holds the message arrays of released pulls (*message.Decoder).
var decoders sync.Pool

// Release declares that the caller is done with the pull's messages and their bodies, so
// that a later pull may decode into the same messages and read its response into the same
// buffer; Messages is nil afterwards. Calling it is optional — without it both are left to
// the garbage collector — and a second call does nothing. A consumer that keeps a message,
// or a body, past Release copies it first.
func (r *PullResult) Release() {
	if r.resp != nil {
		r.resp.Release()
		r.resp = nil
	}
	if r.dec != nil {
		decoders.Put(r.dec)
		r.dec = nil
	}
	r.Messages = nil
}

// Pull reads up to max messages of q from offset. suspendMillis > 0 lets the broker hold the
// pull until a message arrives; tagExpr filters by tag ("" or "*" for all).
func (c *Client) Pull(ctx context.Context, group string, q Queue, offset int64, max int, suspendMillis int64, tagExpr string) (PullResult, error) {
	return c.PullFilter(ctx, group, q, offset, max, suspendMillis, filter.TypeTag, tagExpr)
}

// PullFilter is Pull with a subscription of either type: exprType TAG (tagExpr as in Pull)
// or SQL92 (a property filter the broker evaluates, such as "a > 5 AND color = 'red'").
func (c *Client) PullFilter(ctx context.Context, group string, q Queue, offset int64, max int, suspendMillis int64, exprType, expr string) (PullResult, error) {
	sysFlag := 4 // subscription in the request
	if suspendMillis > 0 {
		sysFlag |= 2
	}
	if exprType == "" {
		exprType = filter.TypeTag
	}
	tags := filter.ParseTags(expr)
	if strings.EqualFold(exprType, filter.TypeTag) {
		expr = tags.String() // "*" for everything
	}
	ext := remoting.PooledExtFields(16) // free again once invoke returns: the frame is encoded
	defer remoting.ReleaseExtFields(ext)
	ext["consumerGroup"], ext["topic"], ext["queueId"] = group, q.Topic, strconv.Itoa(int(q.QueueID))
	ext["queueOffset"], ext["maxMsgNums"] = strconv.FormatInt(offset, 10), strconv.Itoa(max)
	ext["sysFlag"], ext["commitOffset"] = strconv.Itoa(sysFlag), "0"
	ext["suspendTimeoutMillis"] = strconv.FormatInt(suspendMillis, 10)
	ext["subscription"], ext["subVersion"], ext["expressionType"] = expr, "0", exprType
	resp, err := c.invoke(ctx, q.Addr, remoting.NewRequest(remoting.CodePullMessage, ext, nil),
		remoting.RespPullNotFound, remoting.RespPullRetryImmediately, remoting.RespPullOffsetMoved)
	if err != nil {
		return PullResult{}, err
	}
	var r PullResult
	r.NextOffset, err = resp.ExtFields.Int64("nextBeginOffset")
	r.MinOffset, _ = resp.ExtFields.Int64Or("minOffset", 0)
	r.MaxOffset, _ = resp.ExtFields.Int64Or("maxOffset", 0)
	resp.ReleaseExtFields()
	if err != nil {
		return r, err
	}
	if resp.Code != remoting.RespSuccess {
		resp.Release() // the answer has no records
		return r, nil
	}
	r.dec, _ = decoders.Get().(*message.Decoder)
	if r.dec == nil {
		r.dec = new(message.Decoder)
	}
	r.Found, r.resp = true, resp
	r.Messages, err = r.dec.DecodeAll(resp.Body)
	if err != nil {
		return r, fmt.Errorf("pull %s/%d@%d: %w", q.Topic, q.QueueID, offset, err)
	}
	if strings.EqualFold(exprType, filter.TypeTag) && !tags.All() {
		// The exact tag check the official clients do after the broker's hash filter.
		out := r.Messages[:0]
		for _, m := range r.Messages {
			if tags.Match(m.Tags()) {
				out = append(out, m)
			}
		}
		r.Messages = out
	}
	return r, nil
}
