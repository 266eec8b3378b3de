package query

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

func TestFinderByCommitLogOffsetInBothTiers(t *testing.T) {
	f := newFixture(t, 300)
	fd := &Finder{Store: f.st, Tier: f.reader}
	minHot := f.st.MinCommitLogOffset()
	var cold, hot int
	for q := int32(0); q < 2; q++ {
		for i := 0; i < len(f.want[q]); i += 29 {
			m := f.want[q][i]
			rec, err := fd.ByCommitLogOffset(testCtx(t), m.CommitLogOffset)
			if err != nil {
				t.Fatalf("queue %d message %d at %d: %v", q, i, m.CommitLogOffset, err)
			}
			got, _, err := message.Decode(rec)
			if err != nil || got.QueueOffset != m.QueueOffset || got.QueueID != q || !bytes.Equal(got.Body, m.Body) {
				t.Fatalf("queue %d message %d: read %+v, %v", q, i, got, err)
			}
			if m.CommitLogOffset < minHot {
				cold++
			} else {
				hot++
			}
		}
	}
	if cold == 0 || hot == 0 {
		t.Fatalf("looked up %d cold and %d hot messages; want both", cold, hot)
	}
	if _, err := fd.ByCommitLogOffset(testCtx(t), f.want[0][3].CommitLogOffset+1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a position inside a record: %v, want ErrNotFound", err)
	}
	if _, err := fd.ByCommitLogOffset(testCtx(t), f.st.MaxCommitLogOffset()+100); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a position past the log: %v, want ErrNotFound", err)
	}
	noTier := &Finder{Store: f.st}
	if _, err := noTier.ByCommitLogOffset(testCtx(t), f.want[0][0].CommitLogOffset); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted position without a tier: %v, want ErrNotFound", err)
	}
}

func TestFinderByKeyInBothTiers(t *testing.T) {
	f := newFixture(t, 300)
	fd := &Finder{Store: f.st, Tier: f.reader}
	ctx := testCtx(t)
	minHot := f.st.MinCommitLogOffset()
	for _, i := range []int{7, 298} { // one cold, one hot
		m := f.want[1][i]
		if (m.CommitLogOffset < minHot) != (i == 7) {
			t.Fatalf("message %d is not in the tier the test expects", i)
		}
		for _, q := range []KeyQuery{
			{Topic: testTopic, Key: m.UniqKey(), Uniq: true},
			{Topic: testTopic, Key: m.UniqKey()},
			{Topic: testTopic, Key: m.Keys()[0]},
		} {
			recs, err := fd.ByKey(ctx, q)
			if err != nil || len(recs) != 1 {
				t.Fatalf("message %d, query %+v: %d records, %v", i, q, len(recs), err)
			}
			h, _ := message.ParseRecordHeader(recs[0])
			if h.CommitLogOffset != m.CommitLogOffset {
				t.Fatalf("message %d, query %+v: found the record at %d, want %d", i, q, h.CommitLogOffset, m.CommitLogOffset)
			}
		}
	}
	// "shared3" is a key of every message i%10 == 3 (except i%5 == 0) of queue 1: both tiers.
	recs, err := fd.ByKey(ctx, KeyQuery{Topic: testTopic, Key: "shared3", MaxResults: 1000})
	if err != nil || len(recs) != 60 {
		t.Fatalf("shared key: %d records, %v; want 60 (30 per queue)", len(recs), err)
	}
	for i := 1; i < len(recs); i++ {
		a, _ := message.ParseRecordHeader(recs[i-1])
		b, _ := message.ParseRecordHeader(recs[i])
		if a.CommitLogOffset >= b.CommitLogOffset {
			t.Fatal("key lookup results not oldest first, or duplicated")
		}
	}
	recs, _ = fd.ByKey(ctx, KeyQuery{Topic: testTopic, Key: "shared3", MaxResults: 5})
	last, _ := message.ParseRecordHeader(recs[len(recs)-1])
	if len(recs) != 5 || last.QueueOffset != 293 {
		t.Fatalf("limited lookup: %d records ending at offset %d; want the newest 5", len(recs), last.QueueOffset)
	}
	// Time window: only messages stored at or after message 200 of queue 1.
	begin := f.want[1][200].StoreTimestamp
	recs, _ = fd.ByKey(ctx, KeyQuery{Topic: testTopic, Key: "shared3", BeginMs: begin, MaxResults: 1000})
	for _, r := range recs {
		if h, _ := message.ParseRecordHeader(r); h.StoreTimestamp < begin {
			t.Fatal("time window not applied")
		}
	}
	if recs, err := fd.ByKey(ctx, KeyQuery{Topic: testTopic, Key: "no-such-key"}); err != nil || len(recs) != 0 {
		t.Fatalf("missing key: %d records, %v", len(recs), err)
	}
	// A unique-key query does not match KEYS.
	if recs, _ := fd.ByKey(ctx, KeyQuery{Topic: testTopic, Key: "shared3", Uniq: true}); len(recs) != 0 {
		t.Fatalf("unique-key query matched %d messages by KEYS", len(recs))
	}
}

// TestFinderHidesRecordsPastTheReadLimit: on a follower, a record past the store's read limit
// (its master's in-sync set has not confirmed it) is not found by id, as its queue reads do
// not serve it; once the limit passes it, it is.
func TestFinderHidesRecordsPastTheReadLimit(t *testing.T) {
	f := newFixture(t, 300)
	fd := &Finder{Store: f.st, Tier: f.reader}
	last := f.want[1][len(f.want[1])-1]
	if _, err := fd.ByCommitLogOffset(testCtx(t), last.CommitLogOffset); err != nil {
		t.Fatalf("unlimited: %v", err)
	}
	f.st.SetReadLimit(last.CommitLogOffset)
	_, err := fd.ByCommitLogOffset(testCtx(t), last.CommitLogOffset)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not yet confirmed") {
		t.Fatalf("past the limit: %v, want ErrNotFound naming the confirmation", err)
	}
	if _, err := fd.ByCommitLogOffset(testCtx(t), f.want[1][len(f.want[1])-2].CommitLogOffset); err != nil {
		t.Fatalf("the record before the limit: %v", err)
	}
	f.st.SetReadLimit(f.st.MaxCommitLogOffset())
	if _, err := fd.ByCommitLogOffset(testCtx(t), last.CommitLogOffset); err != nil {
		t.Fatalf("once the limit passed it: %v", err)
	}
}
