package broker

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func FuzzValidTopicChars(f *testing.F) {
	for _, s := range []string{"", "orders", "%RETRY%g", "a|b-c_D9", "a b", "é", "a\n", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validTopicChars(s), topicNameRE.MatchString(s); got != want {
			t.Fatalf("validTopicChars(%q) = %v, topicNameRE says %v", s, got, want)
		}
	})
}

func TestNewUniqKeyLayout(t *testing.T) {
	b := &Broker{storeHost: netip.MustParseAddrPort("10.1.2.3:10911")}
	k1, k2 := b.newUniqKey(), b.newUniqKey()
	if len(k1) != 32 || k1 != strings.ToUpper(k1) || k1 == k2 {
		t.Fatalf("keys %q, %q: want distinct 32-digit upper-case hex", k1, k2)
	}
	raw, err := hex.DecodeString(k1)
	if err != nil || hex.EncodeToString(raw[:4]) != "0a010203" {
		t.Fatalf("key %q does not start with the store IP: %v", k1, err)
	}
}

// The cached month start follows the clock into the next month (and back, for a clock set
// back).
func TestSinceMonthStartAcrossMonths(t *testing.T) {
	for _, now := range []time.Time{
		time.Date(2026, 11, 30, 23, 59, 59, 0, time.Local),
		time.Date(2026, 12, 1, 0, 0, 1, 0, time.Local),
		time.Date(2026, 12, 31, 12, 0, 0, 0, time.Local),
		time.Date(2026, 11, 2, 0, 0, 0, 0, time.Local),
	} {
		want := now.Sub(time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.Local))
		if got := sinceMonthStart(now); got != want {
			t.Errorf("sinceMonthStart(%s) = %s, want %s", now, got, want)
		}
	}
}
