package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
)

var (
	bornHost  = netip.MustParseAddrPort("10.0.0.1:5555")
	storeHost = netip.MustParseAddrPort("10.0.0.2:10911")
)

// encode builds a stored record for topic/queue with the given body and properties.
func encode(t testing.TB, topic string, q int32, body string, props map[string]string) []byte {
	t.Helper()
	m := &message.Message{Topic: topic, QueueID: q, BornTimestamp: 1700000000000, BornHost: bornHost,
		StoreHost: storeHost, Body: []byte(body), Properties: props}
	b, err := m.AppendEncoded(nil)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Store, recs ...[]byte) []AppendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Append(ctx, recs...)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res
}

// readAll reads every message of a queue from its min offset.
func readAll(t testing.TB, s *Store, topic string, q int32) []*message.Message {
	t.Helper()
	var out []*message.Message
	off := s.MinOffset(topic, q)
	for {
		r, err := s.Read(context.Background(), ReadRequest{Topic: topic, QueueID: q, Offset: off, MaxMessages: 1000, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("read %s/%d at %d: %v", topic, q, off, err)
		}
		if r.Status != ReadFound {
			return out
		}
		ms, err := message.DecodeAll(r.Records)
		if err != nil {
			t.Fatalf("decode pull body: %v", err)
		}
		if len(ms) != len(r.Entries) {
			t.Fatalf("%d records for %d entries", len(ms), len(r.Entries))
		}
		out = append(out, ms...)
		off = r.NextOffset
	}
}

// crash stops the store as a power cut would: no final index write, no fsync.
func (s *Store) crash() {
	s.closeMu.Lock()
	s.closed = true
	s.closeMu.Unlock()
	close(s.stop)
	s.wg.Wait()
	s.closeFiles()
}

func body(i int) string { return fmt.Sprintf("message-%05d", i) }
