package acl

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sort"
	"testing"

	"github.com/stratamq/strata/broker/remoting"
)

func addSignedSeeds(f *testing.F) {
	for _, st := range []remoting.SerializeType{remoting.SerializeJSON, remoting.SerializeRocketMQ} {
		for _, req := range []*remoting.Command{
			signed(sendReq("orders"), "app1", "secret-app1"),
			signed(pullReq("events", "g1"), "app1", "secret-app1"),
			signed(remoting.NewRequest(remoting.CodeHeartBeat, nil, []byte(`{"consumerDataSet":[{"groupName":"g","subscriptionDataSet":[{"topic":"events"}]}]}`)), "app1", "secret-app1"),
			remoting.NewRequest(remoting.CodeSendMessage, remoting.ExtFields{"AccessKey": "app1", "Signature": "!!", "topic": "orders"}, nil),
		} {
			req.SerializeType = st
			frame, err := remoting.EncodeFrame(req)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(frame)
		}
	}
}

// FuzzVerifySignature feeds arbitrary frames through the decoder and the signature check:
// nothing panics; the signed content is the values in key order and then the body; a request
// signed with the account's secret is admitted on its signature after a trip over the wire;
// and changing any signed field afterwards is refused.
func FuzzVerifySignature(f *testing.F) {
	addSignedSeeds(f)
	cfg := Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := cfg.setDefaults(); err != nil {
		f.Fatal(err)
	}
	c := newChecker(cfg, &staticSource{testAccounts()})
	f.Fuzz(func(t *testing.T, frame []byte) {
		cmd, err := remoting.DecodeFrame(frame)
		if err != nil {
			return
		}
		st := c.current()
		c.Check(context.Background(), RoleBroker, lan, cmd) // must not panic
		c.Check(context.Background(), RoleNameServer, lan, cmd)

		// The canonical string, built the slow way.
		keys := make([]string, 0, len(cmd.ExtFields))
		for k := range cmd.ExtFields {
			if !remoting.SkipSignature(k) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var want []byte
		for _, k := range keys {
			want = append(want, cmd.ExtFields[k]...)
		}
		want = append(want, cmd.Body...)
		if got := remoting.SignedContent(cmd.ExtFields, cmd.Body, remoting.SkipSignature); string(got) != string(want) {
			t.Fatalf("signed content %q, want %q", got, want)
		}

		// Normalise through one wire trip, sign, and send again.
		norm, ok := wireTrip(t, cmd)
		if !ok {
			return
		}
		delete(norm.ExtFields, remoting.ExtSecurityToken)
		remoting.Credentials{AccessKey: "app1", SecretKey: "secret-app1"}.Sign(norm)
		got, ok := wireTrip(t, norm)
		if !ok {
			t.Fatalf("a signed request does not encode: %v", norm)
		}
		if _, remark := c.authenticate(st, lan.AddrPort().Addr(), got); remark != "" {
			t.Fatalf("a correctly signed request is refused: %s\n%v", remark, got)
		}
		for k, v := range got.ExtFields {
			if remoting.SkipSignature(k) || k == remoting.ExtAccessKey {
				continue
			}
			tampered := *got
			tampered.ExtFields = maps(got.ExtFields)
			tampered.ExtFields[k] = v + "x"
			if _, remark := c.authenticate(st, lan.AddrPort().Addr(), &tampered); remark == "" {
				t.Fatalf("changing signed field %q after signing is admitted", k)
			}
			break
		}
	})
}

// wireTrip encodes and decodes cmd; ok is false when cmd cannot be encoded (a header past
// the 24-bit limit, say).
func wireTrip(t *testing.T, cmd *remoting.Command) (*remoting.Command, bool) {
	frame, err := remoting.EncodeFrame(cmd)
	if err != nil {
		return nil, false
	}
	out, err := remoting.DecodeFrame(frame)
	if err != nil {
		t.Fatalf("re-decode: %v", err)
	}
	return out, true
}

// FuzzAddrPatterns parses whitelist patterns (they arrive in management requests): no panic,
// and what parses matches deterministically.
func FuzzAddrPatterns(f *testing.F) {
	for _, s := range []string{"*", "192.168.0.*", "192.168.1.1-100", "10.0.0.0/8,fd00::/8", "1.2.3.{1,2,3},::1", "{,", "1.2.3.4-", "}}}{{{"} {
		f.Add(s)
	}
	addrs := []netip.Addr{netip.MustParseAddr("192.168.1.50"), netip.MustParseAddr("::1"), netip.MustParseAddr("10.1.2.3")}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseAddrMatcher(s)
		if err != nil {
			return
		}
		// What parses once parses the same way again (the broker re-reads stored lists).
		again, err := ParseAddrMatcher(s)
		if err != nil {
			t.Fatalf("%q parsed once, then failed: %v", s, err)
		}
		for _, a := range addrs {
			if m.Match(a) != again.Match(a) {
				t.Fatalf("%q matches %s differently on a second parse", s, a)
			}
		}
	})
}

// FuzzPermList parses RocketMQ's "name=PERM,..." lists: no panic, and every name it keeps is
// a valid resource name with a permission that reads back.
func FuzzPermList(f *testing.F) {
	for _, s := range []string{"a=PUB,b=SUB", "%RETRY%g=DENY", "x=PUB|SUB,,", "=PUB", "a=", "a==b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parsePermList("group", s)
		if err != nil {
			return
		}
		for name, p := range m {
			if validResourceName("group", name) != nil {
				t.Fatalf("kept invalid name %q", name)
			}
			if _, err := ParsePerm(p); err != nil {
				t.Fatalf("kept permission %q: %v", p, err)
			}
		}
	})
}
