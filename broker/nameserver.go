package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/remoting"
)

// autoCreateTopicKey is the topic whose route producers fall back to for a topic that does
// not exist yet (PROTOCOL.md §3.5).
const autoCreateTopicKey = "TBW102"

// serveNameServer answers the name-server role from the metadata view.
func (b *Broker) serveNameServer(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	start := time.Now()
	ctx, deny := b.checkACL(ctx, acl.RoleNameServer, conn, req)
	if deny != nil {
		b.metrics.request(roleNamesrv, req.Code, deny.Code, start)
		return deny
	}
	var resp *remoting.Command
	switch req.Code {
	case remoting.CodeGetRouteInfoByTopic:
		resp = b.handleGetRoute(req)
	case remoting.CodeGetAllTopicListFromNameServer:
		resp = b.handleTopicList(req)
	case remoting.CodeGetBrokerClusterInfo:
		resp = b.handleClusterInfo(req)
	case remoting.CodeDeleteTopicInNameSrv:
		resp = b.handleDeleteTopic(ctx, req, false)
	case remoting.CodeUpdateAndCreateTopic:
		var groups []string
		if list := req.ExtFields.StringOr("brokerGroups", ""); list != "" {
			groups = strings.Split(list, ",")
		}
		resp = b.handleCreateTopic(ctx, req, groups)
	case remoting.CodeUpdateAndCreateACLConfig, remoting.CodeDeleteACLConfig, remoting.CodeGetBrokerClusterACLInfo,
		remoting.CodeUpdateGlobalWhiteAddrsConfig, remoting.CodeGetBrokerClusterACLConfig, remoting.CodeACLGrant, remoting.CodeACLRevoke:
		resp = b.serveACLAdmin(ctx, req)
	default:
		resp = remoting.NewResponse(req, remoting.RespRequestCodeNotSupported,
			fmt.Sprintf("request code %d is not served by the name-server role; send it to the broker address from the route", req.Code))
	}
	b.metrics.request(roleNamesrv, req.Code, resp.Code, start)
	return resp
}

// topicRouteData is TopicRouteData JSON (§3.2). Field order and names match what the Go
// client parses; brokerAddrs is rendered by hand so it is compact and never empty.
type topicRouteData struct {
	OrderTopicConf string       `json:"orderTopicConf"`
	QueueDatas     []queueData  `json:"queueDatas"`
	BrokerDatas    []brokerData `json:"brokerDatas"`
}

type queueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	TopicSysFlag   int    `json:"topicSysFlag"`
}

type brokerData struct {
	Cluster     string      `json:"cluster"`
	BrokerName  string      `json:"brokerName"`
	BrokerAddrs brokerAddrs `json:"brokerAddrs"`
}

// brokerAddrs maps broker id to "ip:port"; it marshals as {"0":"ip:port",...} sorted by id.
type brokerAddrs map[int64]string

func (a brokerAddrs) MarshalJSON() ([]byte, error) {
	ids := make([]int64, 0, len(a))
	for id := range a {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var sb strings.Builder
	sb.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			sb.WriteByte(',')
		}
		v, _ := json.Marshal(a[id])
		fmt.Fprintf(&sb, "\"%d\":%s", id, v)
	}
	sb.WriteByte('}')
	return []byte(sb.String()), nil
}

// brokersByGroup returns the live brokers' addresses per broker group.
func (b *Broker) brokersByGroup() map[string]brokerInfo {
	out := make(map[string]brokerInfo)
	for _, bi := range b.meta.brokers() {
		addrs := make(brokerAddrs, len(bi.Addrs))
		for id, a := range bi.Addrs {
			if a != "" && !strings.ContainsAny(a, " \t") {
				addrs[id] = a
			}
		}
		if len(addrs) > 0 {
			bi.Addr, bi.Addrs = addrs[0], addrs
			out[bi.BrokerName] = bi
		}
	}
	// This broker is live by definition, even before its registration is seen in the view;
	// it is the master too unless it replicates (then the election says who is).
	if _, ok := out[b.cfg.BrokerName]; !ok && b.advertised != "" && b.repl == nil {
		out[b.cfg.BrokerName] = brokerInfo{Cluster: b.cfg.ClusterName, BrokerName: b.cfg.BrokerName, Addr: b.advertised,
			Addrs: map[int64]string{0: b.advertised}}
	}
	return out
}

// routeFor builds the route of topic; ok is false when the topic is unknown or no live
// broker serves it.
func (b *Broker) routeFor(topic string) (topicRouteData, bool) {
	live := b.brokersByGroup()
	rd := topicRouteData{QueueDatas: []queueData{}, BrokerDatas: []brokerData{}}
	add := func(group string, read, write, perm int) {
		bi, ok := live[group]
		if !ok {
			return
		}
		if bi.Addr == "" {
			// No master (a failover under way): slaves serve reads, producers skip the group.
			perm &^= permWrite
		}
		rd.QueueDatas = append(rd.QueueDatas, queueData{BrokerName: group, ReadQueueNums: read, WriteQueueNums: write, Perm: perm})
		rd.BrokerDatas = append(rd.BrokerDatas, brokerData{Cluster: bi.Cluster, BrokerName: group, BrokerAddrs: bi.Addrs})
	}
	if t, ok := b.meta.topic(topic); ok {
		for _, q := range t.Queues {
			add(q.BrokerName, q.ReadQueueNums, q.WriteQueueNums, t.Perm)
		}
	} else if topic == autoCreateTopicKey && b.cfg.AutoCreateTopics {
		groups := make([]string, 0, len(live))
		for g := range live {
			groups = append(groups, g)
		}
		sort.Strings(groups)
		for _, g := range groups {
			add(g, b.cfg.DefaultQueueNums, b.cfg.DefaultQueueNums, permRW|permInherit)
		}
	}
	return rd, len(rd.QueueDatas) > 0
}

func (b *Broker) handleGetRoute(req *remoting.Command) *remoting.Command {
	topic, err := req.ExtFields.String("topic")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	rd, ok := b.routeFor(topic)
	if !ok {
		if _, exists := b.meta.topic(topic); exists {
			return remoting.NewResponse(req, remoting.RespTopicNotExist,
				fmt.Sprintf("topic %s has no live broker serving its queues; check that its brokers are running", topic))
		}
		return remoting.NewResponse(req, remoting.RespTopicNotExist,
			fmt.Sprintf("No topic route info in name server for the topic: %s; create it with `strata topic create`", topic))
	}
	body, err := json.Marshal(rd)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

func (b *Broker) handleTopicList(req *remoting.Command) *remoting.Command {
	topics := b.meta.topics()
	names := make([]string, 0, len(topics))
	for _, t := range topics {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	body, _ := json.Marshal(struct {
		TopicList  []string `json:"topicList"`
		BrokerAddr string   `json:"brokerAddr"`
	}{names, b.advertised})
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

func (b *Broker) handleClusterInfo(req *remoting.Command) *remoting.Command {
	type entry struct {
		Cluster     string      `json:"cluster"`
		BrokerName  string      `json:"brokerName"`
		BrokerAddrs brokerAddrs `json:"brokerAddrs"`
	}
	table := map[string]entry{}
	clusters := map[string][]string{}
	for name, bi := range b.brokersByGroup() {
		table[name] = entry{Cluster: bi.Cluster, BrokerName: name, BrokerAddrs: bi.Addrs}
		clusters[bi.Cluster] = append(clusters[bi.Cluster], name)
	}
	for _, names := range clusters {
		sort.Strings(names)
	}
	body, _ := json.Marshal(struct {
		BrokerAddrTable  map[string]entry    `json:"brokerAddrTable"`
		ClusterAddrTable map[string][]string `json:"clusterAddrTable"`
	}{table, clusters})
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}
