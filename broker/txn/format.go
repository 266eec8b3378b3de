package txn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/stratamq/strata/broker/message"
)

// Record formats Strata owns in the system topics (FORMAT.md).
const (
	opVersion         = 1
	opEntryBytes      = 9
	checkpointVersion = 1
	checkpointBytes   = 1 + 8 + 8
	// maxOpEntries bounds the entries of one op record (check rounds write many).
	maxOpEntries = 4096
)

// opKind is what an op entry says about a half message.
type opKind byte

const (
	opCommit   opKind = 1 // committed: the committed copy follows the op record
	opRollback opKind = 2 // rolled back
	opCheck    opKind = 3 // checked back once more
	opDiscard  opKind = 4 // checked CheckMax times: the parked copy follows the op record
	// opVoid says the commit or parking op before it about the same half message lost its
	// companion to a crash: that op did not happen, and the half message is pending again.
	opVoid opKind = 5
)

func (k opKind) String() string {
	switch k {
	case opCommit:
		return "commit"
	case opRollback:
		return "rollback"
	case opCheck:
		return "check"
	case opDiscard:
		return "discard"
	case opVoid:
		return "void"
	}
	return fmt.Sprintf("opKind(%d)", byte(k))
}

// hasCompanion reports whether an op of this kind is written with a second record (the
// committed or the parked copy) right after it, in the same append.
func (k opKind) hasCompanion() bool { return k == opCommit || k == opDiscard }

// opEntry is one decision about one half message.
type opEntry struct {
	kind    opKind
	halfPos int64 // commit-log position of the half message
}

// errBadRecord is wrapped by every decoding error of this package's formats.
var errBadRecord = errors.New("malformed transaction record")

func encodeOpBody(entries []opEntry) []byte {
	b := make([]byte, 1, 1+len(entries)*opEntryBytes)
	b[0] = opVersion
	for _, e := range entries {
		b = append(b, byte(e.kind))
		b = binary.BigEndian.AppendUint64(b, uint64(e.halfPos))
	}
	return b
}

// decodeOpBody parses an op record's body. A companion kind must be the only entry.
func decodeOpBody(b []byte) ([]opEntry, error) {
	if len(b) < 1 || b[0] != opVersion {
		return nil, fmt.Errorf("%w: op body has no version %d byte", errBadRecord, opVersion)
	}
	b = b[1:]
	if len(b) == 0 || len(b)%opEntryBytes != 0 || len(b)/opEntryBytes > maxOpEntries {
		return nil, fmt.Errorf("%w: op body of %d bytes is not 1..%d entries of %d bytes", errBadRecord, len(b), maxOpEntries, opEntryBytes)
	}
	out := make([]opEntry, 0, len(b)/opEntryBytes)
	for ; len(b) > 0; b = b[opEntryBytes:] {
		e := opEntry{kind: opKind(b[0]), halfPos: int64(binary.BigEndian.Uint64(b[1:]))}
		if e.kind < opCommit || e.kind > opVoid {
			return nil, fmt.Errorf("%w: op kind %d", errBadRecord, b[0])
		}
		if e.halfPos < 0 {
			return nil, fmt.Errorf("%w: negative half message position in op entry", errBadRecord)
		}
		out = append(out, e)
	}
	if len(out) > 1 {
		for _, e := range out {
			if e.kind.hasCompanion() {
				return nil, fmt.Errorf("%w: a %s entry must be alone in its op record", errBadRecord, e.kind)
			}
		}
	}
	return out, nil
}

// checkpoint says where recovery starts: every half message below halfLow in HalfTopic is
// decided, and every op about a half message at or above halfLow is at or after opFrom in
// OpTopic.
type checkpoint struct {
	halfLow int64
	opFrom  int64
}

func encodeCheckpoint(c checkpoint) []byte {
	b := make([]byte, 1, checkpointBytes)
	b[0] = checkpointVersion
	b = binary.BigEndian.AppendUint64(b, uint64(c.halfLow))
	return binary.BigEndian.AppendUint64(b, uint64(c.opFrom))
}

func decodeCheckpoint(b []byte) (checkpoint, error) {
	if len(b) != checkpointBytes || b[0] != checkpointVersion {
		return checkpoint{}, fmt.Errorf("%w: checkpoint body is not %d bytes of version %d", errBadRecord, checkpointBytes, checkpointVersion)
	}
	c := checkpoint{halfLow: int64(binary.BigEndian.Uint64(b[1:])), opFrom: int64(binary.BigEndian.Uint64(b[9:]))}
	if c.halfLow < 0 || c.opFrom < 0 {
		return checkpoint{}, fmt.Errorf("%w: negative offset in checkpoint", errBadRecord)
	}
	return c, nil
}

// systemRecord encodes a record of one of the system topics, queue 0.
func systemRecord(topic string, host netip.AddrPort, nowMs int64, body []byte, props map[string]string) ([]byte, error) {
	m := &message.Message{Topic: topic, BornTimestamp: nowMs, BornHost: host, StoreHost: host, Body: body, Properties: props}
	return m.AppendEncoded(nil)
}

func opRecord(host netip.AddrPort, nowMs int64, entries []opEntry) ([]byte, error) {
	return systemRecord(OpTopic, host, nowMs, encodeOpBody(entries), map[string]string{message.PropertyTags: opTag})
}
