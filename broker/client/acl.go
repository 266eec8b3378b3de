package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/remoting"
)

// ACL management through the name server (broker/acl admin.go lists the requests and their
// fields). Every request needs an admin account's credentials (WithCredentials).

// ACL sends one ACL management request and returns its answer; a refusal is an error that
// carries the broker's remark.
func (c *Client) ACL(ctx context.Context, code int16, ext remoting.ExtFields) (*remoting.Command, error) {
	return c.invoke(ctx, c.namesrv, remoting.NewRequest(code, ext, nil))
}

// ACLConfig lists the accounts (without their secret keys) and the global whitelist.
func (c *Client) ACLConfig(ctx context.Context) (acl.ConfigView, error) {
	resp, err := c.ACL(ctx, remoting.CodeGetBrokerClusterACLConfig, nil)
	if err != nil {
		return acl.ConfigView{}, err
	}
	var cv acl.ConfigView
	if err := json.Unmarshal(resp.Body, &cv); err != nil {
		return acl.ConfigView{}, fmt.Errorf("ACL config: bad JSON from %s: %w", c.namesrv, err)
	}
	return cv, nil
}
