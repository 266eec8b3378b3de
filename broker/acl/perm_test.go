package acl

import "testing"

func TestParsePerm(t *testing.T) {
	for in, want := range map[string]Perm{"DENY": PermDeny, "PUB": PermPub, "sub": PermSub, "PUB|SUB": PermPubSub, "SUB | PUB": PermPubSub} {
		got, err := ParsePerm(in)
		if err != nil || got != want {
			t.Errorf("ParsePerm(%q) = %v, %v; want %v", in, got, err, want)
		}
		if again, err := ParsePerm(got.String()); err != nil || again != got {
			t.Errorf("%v does not round-trip through String: %v, %v", got, again, err)
		}
	}
	for _, bad := range []string{"", "ALL", "PUB|", "READ"} {
		if _, err := ParsePerm(bad); err == nil {
			t.Errorf("ParsePerm(%q) accepted", bad)
		}
	}
}

func TestAllows(t *testing.T) {
	cases := []struct {
		owned, needed Perm
		want          bool
	}{
		{PermPub, PermPub, true},
		{PermPub, PermSub, false},
		{PermSub, PermSub, true},
		{PermPubSub, PermPub, true},
		{PermPubSub, PermSub, true},
		{PermDeny, PermPub, false},
		{PermDeny | PermPubSub, PermSub, false}, // DENY wins
		{PermPub, PermAny, true},
		{PermDeny, PermAny, false},
		{0, PermSub, false},
	}
	for _, c := range cases {
		if got := allows(c.owned, c.needed); got != c.want {
			t.Errorf("allows(owned %v, needed %v) = %v, want %v", c.owned, c.needed, got, c.want)
		}
	}
}
