package remoting

// Request codes (PROTOCOL.md §2; rmq: R/protocol/RequestCode.java). A request
// code travels in Command.Code of a request; the same field holds a response
// code in a response.
const (
	CodeSendMessage                      int16 = 10
	CodePullMessage                      int16 = 11
	CodeQueryMessage                     int16 = 12
	CodeQueryBrokerOffset                int16 = 13
	CodeQueryConsumerOffset              int16 = 14
	CodeUpdateConsumerOffset             int16 = 15
	CodeUpdateAndCreateTopic             int16 = 17
	CodeGetAllTopicConfig                int16 = 21
	CodeUpdateBrokerConfig               int16 = 25
	CodeGetBrokerConfig                  int16 = 26
	CodeGetBrokerRuntimeInfo             int16 = 28
	CodeSearchOffsetByTimestamp          int16 = 29
	CodeGetMaxOffset                     int16 = 30
	CodeGetMinOffset                     int16 = 31
	CodeGetEarliestMsgStoreTime          int16 = 32
	CodeViewMessageByID                  int16 = 33
	CodeHeartBeat                        int16 = 34
	CodeUnregisterClient                 int16 = 35
	CodeConsumerSendMsgBack              int16 = 36
	CodeEndTransaction                   int16 = 37
	CodeGetConsumerListByGroup           int16 = 38
	CodeCheckTransactionState            int16 = 39 // broker → producer
	CodeNotifyConsumerIdsChanged         int16 = 40 // broker → consumer
	CodeLockBatchMQ                      int16 = 41
	CodeUnlockBatchMQ                    int16 = 42
	CodeCheckClientConfig                int16 = 46
	CodeUpdateAndCreateACLConfig         int16 = 50
	CodeDeleteACLConfig                  int16 = 51
	CodeGetBrokerClusterACLInfo          int16 = 52
	CodeUpdateGlobalWhiteAddrsConfig     int16 = 53
	CodeGetBrokerClusterACLConfig        int16 = 54
	CodeRegisterBroker                   int16 = 103
	CodeUnregisterBroker                 int16 = 104
	CodeGetRouteInfoByTopic              int16 = 105
	CodeGetBrokerClusterInfo             int16 = 106
	CodeUpdateAndCreateSubscriptionGroup int16 = 200
	CodeGetAllSubscriptionGroupConfig    int16 = 201
	CodeGetTopicStatsInfo                int16 = 202
	CodeGetConsumerConnectionList        int16 = 203
	CodeGetProducerConnectionList        int16 = 204
	CodeGetAllTopicListFromNameServer    int16 = 206
	CodeDeleteSubscriptionGroup          int16 = 207
	CodeGetConsumeStats                  int16 = 208
	CodeDeleteTopicInBroker              int16 = 215
	CodeDeleteTopicInNameSrv             int16 = 216
	CodeResetConsumerClientOffset        int16 = 220 // broker → consumer
	CodeGetConsumerStatusFromClient      int16 = 221 // broker → consumer
	CodeInvokeBrokerToResetOffset        int16 = 222
	CodeGetTopicsByCluster               int16 = 224
	CodeQueryTopicConsumeByWho           int16 = 300
	CodeGetConsumerRunningInfo           int16 = 307 // broker → consumer
	CodeConsumeMessageDirectly           int16 = 309 // broker → consumer
	CodeSendMessageV2                    int16 = 310
	CodeSendBatchMessage                 int16 = 320
	CodeSendReplyMessage                 int16 = 324
	CodeSendReplyMessageV2               int16 = 325
	CodePushReplyMessageToClient         int16 = 326 // broker → requester

	// Strata extensions (broker/acl doc.go): grant or revoke one topic or group permission
	// of an ACL account, atomically, where UPDATE_AND_CREATE_ACL_CONFIG replaces the whole
	// list.
	CodeACLGrant  int16 = 9110
	CodeACLRevoke int16 = 9111
)

// Response codes (PROTOCOL.md §1.8; rmq: R/protocol/ResponseCode.java).
const (
	RespSuccess                    int16 = 0
	RespSystemError                int16 = 1
	RespSystemBusy                 int16 = 2
	RespRequestCodeNotSupported    int16 = 3
	RespFlushDiskTimeout           int16 = 10
	RespSlaveNotAvailable          int16 = 11
	RespFlushSlaveTimeout          int16 = 12
	RespMessageIllegal             int16 = 13
	RespServiceNotAvailable        int16 = 14
	RespVersionNotSupported        int16 = 15
	RespNoPermission               int16 = 16
	RespTopicNotExist              int16 = 17
	RespTopicExistAlready          int16 = 18
	RespPullNotFound               int16 = 19
	RespPullRetryImmediately       int16 = 20
	RespPullOffsetMoved            int16 = 21
	RespQueryNotFound              int16 = 22
	RespSubscriptionParseFailed    int16 = 23
	RespSubscriptionNotExist       int16 = 24
	RespSubscriptionNotLatest      int16 = 25
	RespSubscriptionGroupNotExist  int16 = 26
	RespFilterDataNotExist         int16 = 27
	RespFilterDataNotLatest        int16 = 28
	RespInvalidParameter           int16 = 29
	RespTransactionShouldCommit    int16 = 200
	RespTransactionShouldRollback  int16 = 201
	RespTransactionStateUnknow     int16 = 202
	RespTransactionStateGroupWrong int16 = 203
	RespConsumerNotOnline          int16 = 206
	RespNoMessage                  int16 = 208
)

// Flag bits (PROTOCOL.md §1.5).
const (
	// FlagResponse marks a response (bit 0).
	FlagResponse int32 = 1
	// FlagOneway marks a request that expects no response (bit 1). The Go
	// client never sets it; the broker answers such requests anyway.
	FlagOneway int32 = 2
)

// DefaultVersion is the protocol version Strata writes into commands it
// creates: the Go client's own value (MQVersion V4_5_2 ordinal).
const DefaultVersion int16 = 317

// DefaultLanguage is the language Strata writes into commands it creates.
const DefaultLanguage = "GO"

// languageCodes maps the ROCKETMQ binary header's language byte to the name
// JSON headers carry (rmq: R/protocol/LanguageCode.java).
var languageCodes = [...]string{
	0: "JAVA", 1: "CPP", 2: "DOTNET", 3: "PYTHON", 4: "DELPHI", 5: "ERLANG", 6: "RUBY",
	7: "OTHER", 8: "HTTP", 9: "GO", 10: "PHP", 11: "OMS", 12: "RUST", 13: "NODE_JS",
}

const languageOther = 7

func languageName(b byte) string {
	if int(b) < len(languageCodes) {
		return languageCodes[b]
	}
	return languageCodes[languageOther]
}

func languageByte(name string) byte {
	for i, n := range languageCodes {
		if n == name {
			return byte(i)
		}
	}
	return languageOther
}
