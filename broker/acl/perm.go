package acl

import (
	"fmt"
	"strings"
)

// Perm is a set of RocketMQ permission bits (rmq: acl/common/Permission.java). DENY wins over
// everything; PUB allows sending to a topic; SUB allows consuming a topic, or consuming as a
// consumer group (a group's permission is its retry topic's, %RETRY%<group>).
type Perm uint8

// RocketMQ's permission bits.
const (
	PermDeny   Perm = 1
	PermAny    Perm = 1 << 1 // needed: PUB or SUB, either will do
	PermPub    Perm = 1 << 2
	PermSub    Perm = 1 << 3
	PermPubSub      = PermPub | PermSub
)

// ParsePerm reads a permission as RocketMQ writes it: DENY, PUB, SUB, PUB|SUB or SUB|PUB
// (case and spaces do not matter). Unlike RocketMQ, which reads anything else as DENY, an
// unknown name is an error, so a typo is not silently a denial.
func ParsePerm(s string) (Perm, error) {
	switch strings.ToUpper(strings.ReplaceAll(s, " ", "")) {
	case "DENY":
		return PermDeny, nil
	case "PUB":
		return PermPub, nil
	case "SUB":
		return PermSub, nil
	case "PUB|SUB", "SUB|PUB":
		return PermPubSub, nil
	}
	return 0, fmt.Errorf("permission %q: want DENY, PUB, SUB or PUB|SUB", s)
}

// String writes p as ParsePerm reads it.
func (p Perm) String() string {
	switch {
	case p&PermDeny != 0:
		return "DENY"
	case p&PermPubSub == PermPubSub:
		return "PUB|SUB"
	case p&PermPub != 0:
		return "PUB"
	case p&PermSub != 0:
		return "SUB"
	case p&PermAny != 0:
		return "PUB or SUB"
	}
	return "DENY"
}

// allows reports whether an owned permission covers a needed one, as RocketMQ's
// Permission.checkPermission does.
func allows(owned, needed Perm) bool {
	if owned&PermDeny != 0 {
		return false
	}
	if needed&PermAny != 0 {
		return owned&PermPubSub != 0
	}
	return needed&owned == needed
}
