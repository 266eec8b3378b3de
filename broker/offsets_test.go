package broker

import (
	"testing"
	"time"

	"github.com/stratamq/strata/meta"
)

func TestEncodeResetOffsetBody(t *testing.T) {
	got := string(encodeResetOffsetBody(map[resetMQ]int64{
		{Topic: "T", BrokerName: "b", QueueID: 1}: 7,
		{Topic: "T", BrokerName: "b", QueueID: 0}: 42,
	}))
	// gson's map form, compact: the Go client v2.1.2 splits it on "],[" and "},".
	want := `{"offsetTable":[[{"topic":"T","brokerName":"b","queueId":0},42],[{"topic":"T","brokerName":"b","queueId":1},7]]}`
	if got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	if got := string(encodeResetOffsetBody(nil)); got != `{"offsetTable":[]}` {
		t.Fatalf("empty body %s", got)
	}
}

func TestResetFences(t *testing.T) {
	var f resetFences
	k := meta.QueueKey{Group: "g", Topic: "t", QueueID: 0}
	other := meta.QueueKey{Group: "g", Topic: "t", QueueID: 1}
	now := time.Now()
	if f.hold(k, 10, now) {
		t.Fatal("the zero value holds commits")
	}
	f.set(k, 5, now.Add(time.Second))
	if !f.hold(k, 100, now) || !f.hold(k, 3, now) {
		t.Fatal("a stale commit passed the fence")
	}
	if f.hold(other, 100, now) {
		t.Fatal("the fence held another queue")
	}
	if f.hold(k, 5, now) {
		t.Fatal("the acknowledging commit of the reset offset was held")
	}
	if f.hold(k, 100, now) {
		t.Fatal("the fence stayed after the acknowledgement")
	}
	f.set(k, 5, now.Add(time.Second))
	if f.hold(k, 100, now.Add(2*time.Second)) {
		t.Fatal("the fence outlived its deadline")
	}
	f.set(k, 5, now.Add(time.Second))
	f.clear(k)
	if f.hold(k, 100, now) {
		t.Fatal("clear left the fence")
	}
}
