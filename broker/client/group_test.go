package client

import "testing"

func TestDecodeResetOffsetBody(t *testing.T) {
	got, err := decodeResetOffsetBody([]byte(`{"offsetTable":[[{"topic":"T","brokerName":"b","queueId":1},7]]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[Queue{Topic: "T", BrokerName: "b", QueueID: 1}] != 7 {
		t.Fatalf("decoded %v", got)
	}
	for _, bad := range []string{``, `{"offsetTable":[[{"topic":1},7]]}`, `{"offsetTable":[[{},"x"]]}`, `{"offsetTable":{}}`} {
		if _, err := decodeResetOffsetBody([]byte(bad)); err == nil {
			t.Errorf("decoded %q without error", bad)
		}
	}
}

func FuzzDecodeResetOffsetBody(f *testing.F) {
	f.Add([]byte(`{"offsetTable":[[{"topic":"T","brokerName":"b","queueId":0},42],[{"topic":"T","brokerName":"b","queueId":1},7]]}`))
	f.Add([]byte(`{"offsetTable":[]}`))
	f.Add([]byte(`{"offsetTable":[[null,null]]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeResetOffsetBody(b)
	})
}
