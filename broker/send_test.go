package broker

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
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
