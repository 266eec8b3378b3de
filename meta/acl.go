package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Access-control accounts and the global address whitelist (broker/acl gives them meaning):
//
//	acl/accounts/<accessKey>   ACLAccount {"v":1,"accessKey","secretKey","admin",...}
//	acl/whitelist              ACLWhitelist {"v":1,"addrs":["192.168.0.*",...]}
//
// Secret keys are stored as given: verifying RocketMQ's HMAC signature needs the secret
// itself, so it cannot be hashed. Whoever can read etcd under /strata/<cluster>/acl/ can sign
// as any account; etcd must require authentication and TLS (Config.Username, Config.CAFile
// and the like) wherever ACL is on.

const (
	dirACL         = "acl/"
	dirACLAccounts = "acl/accounts/"
	keyACLWhite    = "acl/whitelist"
)

// ErrConflict is returned when a read-modify-write lost to concurrent writers too often.
var ErrConflict = errors.New("meta: concurrent update conflict")

// ACLAccount is one access-control account. Permissions are RocketMQ's names (DENY, PUB,
// SUB, PUB|SUB); this package stores them and does not interpret them.
type ACLAccount struct {
	V         int    `json:"v"`
	AccessKey string `json:"accessKey"`
	// SecretKey signs the account's requests. Never log it, never return it from an API.
	SecretKey string `json:"secretKey"`
	Admin     bool   `json:"admin"`
	// WhiteRemoteAddress lists addresses (RocketMQ patterns, comma-separated) whose requests
	// under this access key need no signature.
	WhiteRemoteAddress string            `json:"whiteRemoteAddress,omitempty"`
	DefaultTopicPerm   string            `json:"defaultTopicPerm"`
	DefaultGroupPerm   string            `json:"defaultGroupPerm"`
	TopicPerms         map[string]string `json:"topicPerms,omitempty"`
	GroupPerms         map[string]string `json:"groupPerms,omitempty"`
	// Revision is the etcd mod revision the account was read at (not stored).
	Revision int64 `json:"-"`
}

// ACLWhitelist is the global whitelist: addresses whose requests need no signature.
type ACLWhitelist struct {
	V     int      `json:"v"`
	Addrs []string `json:"addrs"`
}

// MaxAccessKeyBytes bounds an access key, which is part of an etcd key.
const MaxAccessKeyBytes = 255

// ValidateAccessKey accepts letters, digits and -_.@:+= (an access key is part of an etcd
// key and of log lines).
func ValidateAccessKey(ak string) error {
	if ak == "" {
		return fmt.Errorf("%w: empty access key", ErrInvalidName)
	}
	if len(ak) > MaxAccessKeyBytes {
		return fmt.Errorf("%w: access key %.20q (truncated) is longer than %d bytes", ErrInvalidName, ak, MaxAccessKeyBytes)
	}
	for _, r := range ak {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-' || r == '_' || r == '.' || r == '@' || r == ':' || r == '+' || r == '=':
		default:
			return fmt.Errorf("%w: access key %q has %q (allowed: letters, digits and -_.@:+=)", ErrInvalidName, ak, r)
		}
	}
	return nil
}

func (c *Client) aclAccountKey(ak string) string { return c.key(dirACLAccounts, ak) }

func encodeACLAccount(a ACLAccount) ([]byte, error) {
	if err := ValidateAccessKey(a.AccessKey); err != nil {
		return nil, err
	}
	a.V = 1
	return json.Marshal(a)
}

// CreateACLAccount stores a new account and returns the revision of the write; ErrExists if
// the access key is taken.
func (c *Client) CreateACLAccount(ctx context.Context, a ACLAccount) (int64, error) {
	val, err := encodeACLAccount(a)
	if err != nil {
		return 0, err
	}
	k := c.aclAccountKey(a.AccessKey)
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(val))).Commit()
	if err != nil {
		return 0, fmt.Errorf("create ACL account %s: %w", a.AccessKey, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("ACL account %s: %w", a.AccessKey, ErrExists)
	}
	return resp.Header.Revision, nil
}

// ACLAccount reads one account; ErrNotFound if there is none.
func (c *Client) ACLAccount(ctx context.Context, ak string) (ACLAccount, error) {
	if err := ValidateAccessKey(ak); err != nil {
		return ACLAccount{}, err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.aclAccountKey(ak))
	if err != nil {
		return ACLAccount{}, fmt.Errorf("read ACL account %s: %w", ak, err)
	}
	if len(resp.Kvs) == 0 {
		return ACLAccount{}, fmt.Errorf("ACL account %s: %w", ak, ErrNotFound)
	}
	var a ACLAccount
	if err := json.Unmarshal(resp.Kvs[0].Value, &a); err != nil {
		return ACLAccount{}, fmt.Errorf("decode ACL account %s: %w", ak, err)
	}
	a.Revision = resp.Kvs[0].ModRevision
	return a, nil
}

// aclUpdateAttempts bounds UpdateACLAccount's retries against concurrent writers.
const aclUpdateAttempts = 16

// UpdateACLAccount applies fn to the stored account of ak and stores the result, retrying
// when another writer changed it in between, so concurrent grants are never lost. fn's
// error ends the update unchanged. ErrNotFound if there is no such account.
func (c *Client) UpdateACLAccount(ctx context.Context, ak string, fn func(*ACLAccount) error) (ACLAccount, error) {
	for range aclUpdateAttempts {
		a, err := c.ACLAccount(ctx, ak)
		if err != nil {
			return ACLAccount{}, err
		}
		rev := a.Revision
		if err := fn(&a); err != nil {
			return ACLAccount{}, err
		}
		a.AccessKey = ak
		val, err := encodeACLAccount(a)
		if err != nil {
			return ACLAccount{}, err
		}
		k := c.aclAccountKey(ak)
		rctx, cancel := c.reqCtx(ctx)
		resp, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, string(val))).Commit()
		cancel()
		if err != nil {
			return ACLAccount{}, fmt.Errorf("update ACL account %s: %w", ak, err)
		}
		if resp.Succeeded {
			a.Revision = resp.Header.Revision
			return a, nil
		}
	}
	return ACLAccount{}, fmt.Errorf("update ACL account %s: %w after %d attempts", ak, ErrConflict, aclUpdateAttempts)
}

// DeleteACLAccount removes an account and returns the revision of the delete; ErrNotFound
// if there is none.
func (c *Client) DeleteACLAccount(ctx context.Context, ak string) (int64, error) {
	if err := ValidateAccessKey(ak); err != nil {
		return 0, err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Delete(rctx, c.aclAccountKey(ak))
	if err != nil {
		return 0, fmt.Errorf("delete ACL account %s: %w", ak, err)
	}
	if resp.Deleted == 0 {
		return 0, fmt.Errorf("ACL account %s: %w", ak, ErrNotFound)
	}
	return resp.Header.Revision, nil
}

// SetACLWhitelist replaces the global whitelist and returns the revision of the write.
func (c *Client) SetACLWhitelist(ctx context.Context, addrs []string) (int64, error) {
	if addrs == nil {
		addrs = []string{}
	}
	val, err := json.Marshal(ACLWhitelist{V: 1, Addrs: addrs})
	if err != nil {
		return 0, err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Put(rctx, c.key(keyACLWhite), string(val))
	if err != nil {
		return 0, fmt.Errorf("store the ACL whitelist: %w", err)
	}
	return resp.Header.Revision, nil
}
