package broker

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

// TestBatchLimitsNameWhatTheyEnforce sends batches at and one byte past the stored-size limit
// of SEND_BATCH_MESSAGE, and one message past MaxBatchMessages: the batch at the limit is
// stored, the others are refused with a remark that names the limit enforced.
func TestBatchLimitsNameWhatTheyEnforce(t *testing.T) {
	const maxBody, maxMsgs = 1 << 20, 4
	env := startBroker(t, func(c *Config) { c.MaxMessageBytes = maxBody; c.MaxBatchMessages = maxMsgs })
	createTopic(t, env, "BL", 1)
	sendBatch := func(entries []message.BatchEntry) *remoting.Command {
		t.Helper()
		body, err := message.AppendBatch(nil, entries)
		if err != nil {
			t.Fatal(err)
		}
		return invoke(t, env.bk, remoting.CodeSendBatchMessage, remoting.ExtFields{
			"a": "pg", "b": "BL", "c": "TBW102", "d": "4", "e": "0", "f": "0", "g": "1", "h": "0", "i": "", "j": "0", "k": "false", "l": "0", "m": "true",
		}, body)
	}
	entry := func(i, bodyLen int) message.BatchEntry {
		// A fixed unique key, so the record's size does not depend on the one the broker adds.
		return message.BatchEntry{Body: make([]byte, bodyLen), Properties: map[string]string{
			message.PropertyUniqKey: strings.Repeat(strconv.Itoa(i), 32)}}
	}
	// The stored size of an entry, as the broker encodes it (IPv4 hosts, as here).
	v4 := netip.MustParseAddrPort("127.0.0.1:1")
	stored := func(e message.BatchEntry) int {
		rec, err := (&message.Message{Topic: "BL", BornHost: v4, StoreHost: v4, Body: e.Body, Properties: e.Properties}).AppendEncoded(nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(rec)
	}
	limit := maxBody + 2*recordRoomBytes // for two messages
	first := entry(1, maxBody)           // the largest body allowed
	second := entry(2, limit-stored(first)-stored(entry(2, 0)))
	if got := stored(first) + stored(second); got != limit {
		t.Fatalf("test batch stores %d bytes, want exactly the limit %d", got, limit)
	}
	wantCode(t, sendBatch([]message.BatchEntry{first, second}), remoting.RespSuccess)

	second = entry(2, len(second.Body)+1)
	resp := sendBatch([]message.BatchEntry{first, second})
	wantCode(t, resp, remoting.RespMessageIllegal)
	for _, want := range []string{"takes " + strconv.Itoa(limit+1) + " bytes", "limit of " + strconv.Itoa(limit) + " bytes for 2 messages",
		"MaxMessageBytes " + strconv.Itoa(maxBody) + " plus 65536 per message"} {
		if !strings.Contains(resp.Remark, want) {
			t.Errorf("remark %q lacks %q", resp.Remark, want)
		}
	}

	var many []message.BatchEntry
	for i := range maxMsgs {
		many = append(many, entry(i, 10))
	}
	wantCode(t, sendBatch(many), remoting.RespSuccess)
	resp = sendBatch(append(many, entry(maxMsgs, 10)))
	wantCode(t, resp, remoting.RespMessageIllegal)
	if want := "more than 4 messages, this broker's limit (MaxBatchMessages)"; !strings.Contains(resp.Remark, want) {
		t.Errorf("remark %q lacks %q", resp.Remark, want)
	}
}
