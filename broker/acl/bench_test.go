package acl

import (
	"context"
	"testing"

	"github.com/stratamq/strata/broker/remoting"
)

// BenchmarkCheck is the broker's cost of admitting one signed 1 KiB send (signature and
// permission), beside the client's cost of signing it; run both with -benchmem.
func BenchmarkCheck(b *testing.B) {
	c, _ := newTestChecker(b, testAccounts(), nil)
	body := make([]byte, 1024)
	req := sendReq("orders")
	req.Body = body
	remoting.Credentials{AccessKey: "app1", SecretKey: "secret-app1"}.Sign(req)
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, resp := c.Check(context.Background(), RoleBroker, lan, req); resp != nil {
				b.Fatal(resp.Remark)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		creds := remoting.Credentials{AccessKey: "app1", SecretKey: "secret-app1"}
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			creds.Sign(req)
		}
	})
}
