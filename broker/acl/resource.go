package acl

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/stratamq/strata/broker/remoting"
)

// Role is the listener a request arrived on.
type Role int

// The two remoting roles of a broker.
const (
	RoleNameServer Role = iota
	RoleBroker
)

// retryTopicPrefix marks a consumer group's retry topic; RocketMQ keeps a group's permission
// as its retry topic's.
const retryTopicPrefix = "%RETRY%"

// Resource is a topic or a consumer group, with the permission a request needs on it.
type Resource struct {
	Group bool // a consumer group; otherwise a topic
	Name  string
	Perm  Perm
}

// Topic is a topic resource; a retry topic (%RETRY%<group>) is its group's resource.
func Topic(name string, p Perm) Resource {
	if g, ok := strings.CutPrefix(name, retryTopicPrefix); ok {
		return Resource{Group: true, Name: g, Perm: p}
	}
	return Resource{Name: name, Perm: p}
}

// Group is a consumer-group resource.
func Group(name string, p Perm) Resource { return Resource{Group: true, Name: name, Perm: p} }

func (r Resource) String() string {
	if r.Group {
		return "group " + r.Name
	}
	return "topic " + r.Name
}

// Requirement is what a request needs, beyond a valid signature.
type Requirement struct {
	// Public requests need no signature at all (route lookups with PublicRoutes).
	Public bool
	// Admin requests need an admin account.
	Admin     bool
	Resources []Resource
}

// adminCodes change the cluster: RocketMQ's admin codes (Permission.ADMIN_CODE:
// UPDATE_AND_CREATE_TOPIC, UPDATE_BROKER_CONFIG, DELETE_TOPIC_IN_BROKER,
// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, DELETE_SUBSCRIPTIONGROUP), plus the topic delete of the
// name server, the group offset reset and every ACL change or read of the account table.
var adminCodes = map[int16]bool{
	remoting.CodeUpdateAndCreateTopic:             true,
	remoting.CodeUpdateBrokerConfig:               true,
	remoting.CodeDeleteTopicInBroker:              true,
	remoting.CodeDeleteTopicInNameSrv:             true,
	remoting.CodeUpdateAndCreateSubscriptionGroup: true,
	remoting.CodeDeleteSubscriptionGroup:          true,
	remoting.CodeInvokeBrokerToResetOffset:        true,
	remoting.CodeUpdateAndCreateACLConfig:         true,
	remoting.CodeDeleteACLConfig:                  true,
	remoting.CodeGetBrokerClusterACLInfo:          true,
	remoting.CodeUpdateGlobalWhiteAddrsConfig:     true,
	remoting.CodeGetBrokerClusterACLConfig:        true,
	remoting.CodeACLGrant:                         true,
	remoting.CodeACLRevoke:                        true,
}

// IsAdminCode reports whether requests of code need an admin account.
func IsAdminCode(code int16) bool { return adminCodes[code] }

// IsManagementCode reports whether code is an ACL management request (ServeAdmin's).
func IsManagementCode(code int16) bool {
	switch code {
	case remoting.CodeUpdateAndCreateACLConfig, remoting.CodeDeleteACLConfig, remoting.CodeGetBrokerClusterACLInfo,
		remoting.CodeUpdateGlobalWhiteAddrsConfig, remoting.CodeGetBrokerClusterACLConfig, remoting.CodeACLGrant, remoting.CodeACLRevoke:
		return true
	}
	return false
}

// Requirements says what req needs on role's listener, as RocketMQ's
// PlainAccessResource.parse does, extended to every code Strata serves. Requests not listed
// (route and offset reads, admin reads such as GET_CONSUME_STATS) need a valid signature of
// any account. An error means the request is malformed in a way the check cannot pass over
// (a heartbeat body that is not JSON); the request is refused.
//
// Where a request names a message by its commit-log offset (CONSUMER_SEND_MSG_BACK,
// VIEW_MESSAGE_BY_ID), the handler checks SUB on the stored message's topic once it has read
// it (Checker.Authorize): the header's topic is the client's word, not the log's.
func Requirements(role Role, req *remoting.Command, publicRoutes bool) (Requirement, error) {
	ext := req.ExtFields
	if adminCodes[req.Code] {
		return Requirement{Admin: true}, nil
	}
	var r Requirement
	need := func(res Resource) {
		if res.Name != "" {
			r.Resources = append(r.Resources, res)
		}
	}
	switch req.Code {
	case remoting.CodeGetRouteInfoByTopic:
		// Routes say where a topic lives, not what it holds; answering them lets a refused
		// client learn why from the broker's refusal, where a refused route lookup leaves
		// it with "route info not found".
		r.Public = publicRoutes
	case remoting.CodeSendMessage, remoting.CodeSendReplyMessage:
		need(Topic(ext["topic"], PermPub))
	case remoting.CodeSendMessageV2, remoting.CodeSendReplyMessageV2:
		need(Topic(ext["b"], PermPub))
	case remoting.CodeSendBatchMessage:
		t := ext["b"]
		if t == "" {
			t = ext["topic"]
		}
		need(Topic(t, PermPub))
	case remoting.CodePullMessage:
		need(Topic(ext["topic"], PermSub))
		need(Group(ext["consumerGroup"], PermSub))
	case remoting.CodeQueryMessage:
		need(Topic(ext["topic"], PermSub))
	case remoting.CodeQueryConsumerOffset, remoting.CodeUpdateConsumerOffset:
		need(Group(ext["consumerGroup"], PermSub))
		need(Topic(ext["topic"], PermSub))
	case remoting.CodeGetMaxOffset, remoting.CodeGetMinOffset, remoting.CodeSearchOffsetByTimestamp, remoting.CodeGetEarliestMsgStoreTime:
		need(Topic(ext["topic"], PermSub))
	case remoting.CodeConsumerSendMsgBack:
		need(Group(ext["group"], PermSub))
	case remoting.CodeGetConsumerListByGroup, remoting.CodeUnregisterClient:
		need(Group(ext["consumerGroup"], PermSub))
	case remoting.CodeHeartBeat:
		var hb struct {
			ConsumerDataSet []struct {
				GroupName           string `json:"groupName"`
				SubscriptionDataSet []struct {
					Topic string `json:"topic"`
				} `json:"subscriptionDataSet"`
			} `json:"consumerDataSet"`
		}
		if err := json.Unmarshal(req.Body, &hb); err != nil {
			return r, fmt.Errorf("heartbeat body is not valid JSON: %v", err)
		}
		for _, cd := range hb.ConsumerDataSet {
			need(Group(cd.GroupName, PermSub))
			for _, sd := range cd.SubscriptionDataSet {
				need(Topic(sd.Topic, PermSub))
			}
		}
	case remoting.CodeLockBatchMQ, remoting.CodeUnlockBatchMQ:
		var lb struct {
			ConsumerGroup string `json:"consumerGroup"`
		}
		if err := json.Unmarshal(req.Body, &lb); err != nil {
			return r, fmt.Errorf("lock body is not valid JSON: %v", err)
		}
		need(Group(lb.ConsumerGroup, PermSub))
	}
	return r, nil
}
