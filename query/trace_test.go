package query

import (
	"strings"
	"testing"
)

// Bodies as rocketmq-client-go writes them (internal/trace.go, marshal2Bean).
const (
	tracePubBody = "Pub\x011700000000000\x01DefaultRegion\x01pg\x01orders\x017F0000010001000000000000000000AA\x01paid\x01order-42\x01127.0.0.1:10911\x0112\x013\x010\x010A0000010000000000000000000002A0\x01true\x0110.0.0.7\x02"
	traceSubBody = "SubBefore\x011700000000100\x01DefaultRegion\x01cg\x01req-1\x017F0000010001000000000000000000AA\x010\x01order-42\x0110.0.0.8\x02" +
		"SubAfter\x01req-1\x017F0000010001000000000000000000AA\x015\x01true\x01null\x010\x011700000000105\x01cg\x02"
)

func TestParseTrace(t *testing.T) {
	recs, err := ParseTrace([]byte(tracePubBody + traceSubBody))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	pub, before, after := recs[0], recs[1], recs[2]
	if pub.Type != TracePub || pub.Group != "pg" || pub.Topic != "orders" || pub.Keys != "order-42" || pub.CostMs != 3 ||
		!pub.Success || pub.StoreHost != "127.0.0.1:10911" || pub.ClientHost != "10.0.0.7" || pub.BodyLength != 12 || pub.Time != 1700000000000 {
		t.Errorf("pub %+v", pub)
	}
	if before.Type != TraceSubBefore || before.Group != "cg" || before.RequestID != "req-1" || before.ClientHost != "10.0.0.8" || before.Keys != "order-42" {
		t.Errorf("sub before %+v", before)
	}
	if after.Type != TraceSubAfter || after.RequestID != "req-1" || after.CostMs != 5 || !after.Success || after.Keys != "" || after.Group != "cg" {
		t.Errorf("sub after %+v", after)
	}
	for _, bad := range []string{"Nope\x01x\x02", "Pub\x01notanumber" + strings.Repeat("\x01x", 14) + "\x02", "SubAfter\x01r\x02"} {
		if _, err := ParseTrace([]byte(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

func FuzzParseTrace(f *testing.F) {
	f.Add([]byte(tracePubBody))
	f.Add([]byte(traceSubBody))
	f.Add([]byte("\x02\x01\x02"))
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := ParseTrace(body)
		if err == nil {
			for _, r := range recs {
				if traceFields[r.Type] == 0 {
					t.Fatalf("accepted record of type %q", r.Type)
				}
			}
		}
	})
}
