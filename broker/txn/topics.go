package txn

// System topics of transactional messages. Producers may not send to them, and they have no
// route, so consumers never see them. Each is used in queue 0 only.
const (
	// HalfTopic holds half messages (RocketMQ's name): the producer's message with its real
	// topic and queue kept in REAL_TOPIC and REAL_QID.
	HalfTopic = "RMQ_SYS_TRANS_HALF_TOPIC"
	// OpTopic holds the decisions about half messages (RocketMQ's name; Strata's record
	// body, FORMAT.md).
	OpTopic = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
	// CheckMaxTopic holds the half messages that were checked back CheckMax times without
	// an answer (RocketMQ 5's name), for an operator to look at.
	CheckMaxTopic = "TRANS_CHECK_MAX_TIME_TOPIC"
	// CheckpointTopic holds where recovery starts reading HalfTopic and OpTopic (FORMAT.md).
	CheckpointTopic = "rmq_sys_trans_checkpoint"
)

// Message properties of transactional messages (RocketMQ's MessageConst names).
const (
	// PropertyCheckImmunitySeconds overrides Config.Timeout for one message: it is not
	// checked back until it is this many seconds old.
	PropertyCheckImmunitySeconds = "CHECK_IMMUNITY_TIME_IN_SECONDS"
	// opTag is the TAGS of every op record, as RocketMQ's "remove" tag.
	opTag = "d"
)

// IsSystemTopic reports whether topic is one of the system topics above.
func IsSystemTopic(topic string) bool {
	switch topic {
	case HalfTopic, OpTopic, CheckMaxTopic, CheckpointTopic:
		return true
	}
	return false
}
