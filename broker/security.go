package broker

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

// Access control and TLS of the broker's listeners (broker/acl, remoting/tls.go).

// loadTLS reads the certificates; Start calls it before it binds the listeners, so a bad
// certificate stops the start.
func (b *Broker) loadTLS() error {
	if b.cfg.TLS == nil {
		return nil
	}
	t, err := remoting.NewServerTLS(*b.cfg.TLS, b.log)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.tls = t
	return nil
}

// secure wraps a bound listener in TLS when it is configured.
func (b *Broker) secure(ln net.Listener) net.Listener {
	if b.tls == nil {
		return ln
	}
	return b.tls.Listener(ln)
}

// startACL loads the accounts and follows them; Start calls it before serving, so an
// unreachable account table stops the start rather than admitting requests unchecked.
func (b *Broker) startACL(ctx context.Context) error {
	if !b.cfg.ACLEnabled {
		return nil
	}
	cfg := b.cfg.ACL
	cfg.ClusterName, cfg.BrokerName, cfg.BrokerAddr, cfg.Logger = b.cfg.ClusterName, b.cfg.BrokerName, b.advertised, b.log
	c, err := acl.New(ctx, cfg, b.mc)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.acl = c
	if a := b.cfg.ACLAdmin; !a.IsZero() {
		if err := c.EnsureAdmin(ctx, a.AccessKey, a.SecretKey); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		b.log.Info("acl: admin account ready", "access_key", a.AccessKey)
	}
	return nil
}

// ReloadTLS reads the certificate files again now (on SIGHUP); without TLS it does nothing.
// On error the previous certificate stays in use.
func (b *Broker) ReloadTLS() error {
	if b.tls == nil {
		return nil
	}
	return b.tls.Reload()
}

// SecuritySummary describes the listeners' protection for the ready line: "" when neither
// ACL nor TLS is on.
func (b *Broker) SecuritySummary() string {
	var s string
	if b.acl != nil {
		s = "acl on"
		if a := b.cfg.ACLAdmin; !a.IsZero() {
			s += fmt.Sprintf(" (admin %s)", a.AccessKey)
		}
	}
	if b.tls != nil {
		if s != "" {
			s += ", "
		}
		mode := "tls on"
		if b.tls.Permissive() {
			mode = "tls permissive (plain admitted too)"
		}
		s += mode
		if b.tls.ClientAuth() == remoting.ClientAuthRequire {
			s += " with client certificates"
		}
	}
	return s
}

// checkACL admits req or answers the refusal; role is the listener it came in on. A request
// the other role forwards (route lookups sent to the broker address) is checked once.
func (b *Broker) checkACL(ctx context.Context, role acl.Role, conn *remoting.Conn, req *remoting.Command) (context.Context, *remoting.Command) {
	if b.acl == nil {
		return ctx, nil
	}
	if _, checked := acl.IdentityFrom(ctx); checked {
		return ctx, nil
	}
	return b.acl.Check(ctx, role, conn.RemoteAddr(), req)
}

// serveACLAdmin answers the ACL management requests.
func (b *Broker) serveACLAdmin(ctx context.Context, req *remoting.Command) *remoting.Command {
	if b.acl == nil {
		return remoting.NewResponse(req, remoting.RespNoPermission,
			"ACL is off on this broker, so it does not manage ACL accounts; send the request to a broker with acl.enabled")
	}
	return b.acl.ServeAdmin(ctx, req)
}

// authorizeStored answers NO_PERMISSION unless the request may read messages of topic, the
// stored topic of a message it names by commit-log offset; nil when it may (or ACL is off).
func (b *Broker) authorizeStored(ctx context.Context, req *remoting.Command, topic string) *remoting.Command {
	return b.authorizeTopic(ctx, req, topic, acl.PermSub)
}

// authorizeTopic answers NO_PERMISSION unless the request has perm on topic; nil when it
// has (or ACL is off).
func (b *Broker) authorizeTopic(ctx context.Context, req *remoting.Command, topic string, perm acl.Perm) *remoting.Command {
	if b.acl == nil {
		return nil
	}
	if err := b.acl.Authorize(ctx, acl.Topic(topic, perm)); err != nil {
		var d *acl.DeniedError
		if errors.As(err, &d) {
			return remoting.NewResponse(req, remoting.RespNoPermission, d.Remark)
		}
		return remoting.NewResponse(req, remoting.RespNoPermission, err.Error())
	}
	return nil
}

// authorizeRecord is authorizeStored for a stored record.
func (b *Broker) authorizeRecord(ctx context.Context, req *remoting.Command, rec []byte) *remoting.Command {
	if b.acl == nil {
		return nil
	}
	m, _, err := message.Decode(rec)
	if err != nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("decode the stored message to check its topic: %v", err))
	}
	return b.authorizeStored(ctx, req, m.Topic)
}
