package acl

import (
	"net/netip"
	"testing"
)

func TestAddrMatcher(t *testing.T) {
	cases := []struct {
		patterns string
		match    []string
		miss     []string
	}{
		{"*", []string{"1.2.3.4", "::1"}, nil},
		{"192.168.0.*", []string{"192.168.0.0", "192.168.0.255"}, []string{"192.168.1.1", "10.0.0.1"}},
		{"192.168.*.*", []string{"192.168.7.9"}, []string{"192.169.0.1"}},
		{"192.168.1.1-100", []string{"192.168.1.1", "192.168.1.100", "::ffff:192.168.1.50"}, []string{"192.168.1.0", "192.168.1.101"}},
		{"192.168.1.{1,7,9}", []string{"192.168.1.7"}, []string{"192.168.1.8"}},
		{"10.0.0.0/8, fd00::/8", []string{"10.200.3.4", "fd00::5"}, []string{"11.0.0.1", "fe80::1"}},
		{"127.0.0.1,192.168.1.{2,3}", []string{"127.0.0.1", "192.168.1.3"}, []string{"192.168.1.4", "127.0.0.2"}},
		{"::1", []string{"::1"}, []string{"::2", "127.0.0.1"}},
		{"", nil, []string{"127.0.0.1"}},
	}
	for _, c := range cases {
		m, err := ParseAddrMatcher(c.patterns)
		if err != nil {
			t.Fatalf("ParseAddrMatcher(%q): %v", c.patterns, err)
		}
		for _, a := range c.match {
			if !m.Match(netip.MustParseAddr(a)) {
				t.Errorf("%q does not match %s", c.patterns, a)
			}
		}
		for _, a := range c.miss {
			if m.Match(netip.MustParseAddr(a)) {
				t.Errorf("%q matches %s", c.patterns, a)
			}
		}
	}
	if (AddrMatcher{}).Match(netip.Addr{}) {
		t.Error("an invalid address matched")
	}
}

func TestAddrMatcherRejects(t *testing.T) {
	for _, bad := range []string{"192.168.0", "192.168.0.256", "192.168.0.9-1", "1.2.3.{}", "1.2.3.x", "fe80::*", "10.0.0.0/33", "1.2.3.-4"} {
		if _, err := ParseAddrMatcher(bad); err == nil {
			t.Errorf("ParseAddrMatcher(%q) accepted", bad)
		}
	}
}
