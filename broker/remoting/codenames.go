package remoting

// Names of request and response codes, for metric labels and logs: short, lower-case and
// stable, so dashboards and alerts can name a request ("send", "pull") instead of a number.
// Every constant of codes.go has a name here (codenames_test.go checks it); variants of one
// operation share a name (SEND_MESSAGE and SEND_MESSAGE_V2 are both "send"), because the
// header encoding is not what an operator watches.

// RequestOther is the name of a request code this package does not know.
const RequestOther = "other"

var requestNames = map[int16]string{
	CodeSendMessage:                      "send",
	CodeSendMessageV2:                    "send",
	CodeSendBatchMessage:                 "send_batch",
	CodeSendReplyMessage:                 "send_reply",
	CodeSendReplyMessageV2:               "send_reply",
	CodePullMessage:                      "pull",
	CodeQueryMessage:                     "query_message",
	CodeViewMessageByID:                  "view_message",
	CodeQueryBrokerOffset:                "query_broker_offset",
	CodeQueryConsumerOffset:              "query_offset",
	CodeUpdateConsumerOffset:             "update_offset",
	CodeUpdateAndCreateTopic:             "create_topic",
	CodeGetAllTopicConfig:                "get_all_topic_config",
	CodeUpdateBrokerConfig:               "update_broker_config",
	CodeGetBrokerConfig:                  "get_broker_config",
	CodeGetBrokerRuntimeInfo:             "get_broker_runtime_info",
	CodeSearchOffsetByTimestamp:          "search_offset_by_time",
	CodeGetMaxOffset:                     "get_max_offset",
	CodeGetMinOffset:                     "get_min_offset",
	CodeGetEarliestMsgStoreTime:          "get_earliest_store_time",
	CodeHeartBeat:                        "heartbeat",
	CodeUnregisterClient:                 "unregister_client",
	CodeConsumerSendMsgBack:              "send_back",
	CodeEndTransaction:                   "end_transaction",
	CodeGetConsumerListByGroup:           "get_consumer_list",
	CodeCheckTransactionState:            "check_transaction_state",
	CodeNotifyConsumerIdsChanged:         "notify_consumer_ids_changed",
	CodeLockBatchMQ:                      "lock_batch",
	CodeUnlockBatchMQ:                    "unlock_batch",
	CodeCheckClientConfig:                "check_client_config",
	CodeUpdateAndCreateACLConfig:         "acl_update",
	CodeDeleteACLConfig:                  "acl_delete",
	CodeGetBrokerClusterACLInfo:          "acl_info",
	CodeUpdateGlobalWhiteAddrsConfig:     "acl_update_whitelist",
	CodeGetBrokerClusterACLConfig:        "acl_config",
	CodeRegisterBroker:                   "register_broker",
	CodeUnregisterBroker:                 "unregister_broker",
	CodeGetRouteInfoByTopic:              "get_route",
	CodeGetBrokerClusterInfo:             "get_cluster_info",
	CodeUpdateAndCreateSubscriptionGroup: "create_subscription_group",
	CodeGetAllSubscriptionGroupConfig:    "get_subscription_groups",
	CodeGetTopicStatsInfo:                "get_topic_stats",
	CodeGetConsumerConnectionList:        "get_consumer_connections",
	CodeGetProducerConnectionList:        "get_producer_connections",
	CodeGetAllTopicListFromNameServer:    "get_topic_list",
	CodeDeleteSubscriptionGroup:          "delete_subscription_group",
	CodeGetConsumeStats:                  "get_consume_stats",
	CodeDeleteTopicInBroker:              "delete_topic_in_broker",
	CodeDeleteTopicInNameSrv:             "delete_topic_in_namesrv",
	CodeResetConsumerClientOffset:        "reset_consumer_client_offset",
	CodeGetConsumerStatusFromClient:      "get_consumer_status",
	CodeInvokeBrokerToResetOffset:        "reset_offset",
	CodeGetTopicsByCluster:               "get_topics_by_cluster",
	CodeQueryTopicConsumeByWho:           "query_topic_consume_by_who",
	CodeGetConsumerRunningInfo:           "get_consumer_running_info",
	CodeConsumeMessageDirectly:           "consume_message_directly",
	CodePushReplyMessageToClient:         "push_reply",
	CodeACLGrant:                         "acl_grant",
	CodeACLRevoke:                        "acl_revoke",
}

// RequestName is the label name of a request code, RequestOther for an unknown one.
func RequestName(code int16) string {
	if n, ok := requestNames[code]; ok {
		return n
	}
	return RequestOther
}

// Result classes of a response: success, or an unknown response code. A known failure is
// named by its RocketMQ response name in lower case (ResponseName).
const (
	ResultOK    = "ok"
	ResultError = "error"
)

var responseNames = map[int16]string{
	RespSuccess:                    ResultOK,
	RespSystemError:                "system_error",
	RespSystemBusy:                 "system_busy",
	RespRequestCodeNotSupported:    "request_code_not_supported",
	RespFlushDiskTimeout:           "flush_disk_timeout",
	RespSlaveNotAvailable:          "slave_not_available",
	RespFlushSlaveTimeout:          "flush_slave_timeout",
	RespMessageIllegal:             "message_illegal",
	RespServiceNotAvailable:        "service_not_available",
	RespVersionNotSupported:        "version_not_supported",
	RespNoPermission:               "no_permission",
	RespTopicNotExist:              "topic_not_exist",
	RespTopicExistAlready:          "topic_exist_already",
	RespPullNotFound:               "pull_not_found",
	RespPullRetryImmediately:       "pull_retry_immediately",
	RespPullOffsetMoved:            "pull_offset_moved",
	RespQueryNotFound:              "query_not_found",
	RespSubscriptionParseFailed:    "subscription_parse_failed",
	RespSubscriptionNotExist:       "subscription_not_exist",
	RespSubscriptionNotLatest:      "subscription_not_latest",
	RespSubscriptionGroupNotExist:  "subscription_group_not_exist",
	RespFilterDataNotExist:         "filter_data_not_exist",
	RespFilterDataNotLatest:        "filter_data_not_latest",
	RespInvalidParameter:           "invalid_parameter",
	RespTransactionShouldCommit:    "transaction_should_commit",
	RespTransactionShouldRollback:  "transaction_should_rollback",
	RespTransactionStateUnknow:     "transaction_state_unknown",
	RespTransactionStateGroupWrong: "transaction_state_group_wrong",
	RespConsumerNotOnline:          "consumer_not_online",
	RespNoMessage:                  "no_message",
}

// ResponseName is the result class of a response code: ResultOK for success, the lower-case
// RocketMQ name of a known code (PULL_NOT_FOUND is "pull_not_found"), ResultError otherwise.
func ResponseName(code int16) string {
	if n, ok := responseNames[code]; ok {
		return n
	}
	return ResultError
}
