package acl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// AddrMatcher matches remote addresses against whitelist patterns, RocketMQ's
// (rmq: acl/plain/RemoteAddressStrategyFactory.java) plus CIDR:
//
//   - *.*.*.*                 every address
//     192.168.0.1  ::1           one address
//     192.168.0.*  192.168.*.*   any value of the starred parts
//     192.168.1.1-100            a range of the part (any part may be a range)
//     192.168.1.{1,7,9}          a set of values of the part
//     10.0.0.0/8  fd00::/8       CIDR, IPv4 or IPv6
//     a,b,c                      any of several patterns (commas inside {} belong to the set)
//
// IPv4 addresses seen as IPv4-mapped IPv6 (::ffff:a.b.c.d) match IPv4 patterns.
type AddrMatcher struct {
	all      bool
	prefixes []netip.Prefix
	v4       []octetPattern
}

// octetPattern is an IPv4 pattern: for each of the four parts, which values match.
type octetPattern [4][4]uint64

func (p *octetPattern) set(part, v int) { p[part][v/64] |= 1 << (v % 64) }

func (p *octetPattern) match(a [4]byte) bool {
	for i, v := range a {
		if p[i][v/64]&(1<<(v%64)) == 0 {
			return false
		}
	}
	return true
}

// MaxAddrPatterns bounds the patterns of one whitelist, so a huge value cannot make every
// request slow.
const MaxAddrPatterns = 1024

// ParseAddrMatcher reads a comma-separated list of patterns; an empty list matches nothing.
func ParseAddrMatcher(s string) (AddrMatcher, error) {
	var m AddrMatcher
	for _, p := range splitPatterns(s) {
		if err := m.add(p); err != nil {
			return AddrMatcher{}, err
		}
	}
	return m, nil
}

// ParseAddrMatcherList reads several lists (the global whitelist's entries).
func ParseAddrMatcherList(list []string) (AddrMatcher, error) {
	return ParseAddrMatcher(strings.Join(list, ","))
}

// splitPatterns splits on commas outside braces and drops empty pieces.
func splitPatterns(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case '{':
				depth++
				continue
			case '}':
				depth--
				continue
			case ',':
				if depth > 0 {
					continue
				}
			default:
				continue
			}
		}
		if p := strings.TrimSpace(s[start:i]); p != "" {
			out = append(out, p)
		}
		start = i + 1
	}
	return out
}

func (m *AddrMatcher) add(p string) error {
	if len(m.prefixes)+len(m.v4) >= MaxAddrPatterns {
		return fmt.Errorf("address whitelist: more than %d patterns", MaxAddrPatterns)
	}
	switch p {
	case "*", "*.*.*.*", "*:*:*:*:*:*:*:*":
		m.all = true
		return nil
	}
	if strings.Contains(p, "/") {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("address pattern %q: not a CIDR prefix: %v", p, err)
		}
		m.prefixes = append(m.prefixes, pfx.Masked())
		return nil
	}
	if a, err := netip.ParseAddr(p); err == nil {
		a = a.Unmap()
		m.prefixes = append(m.prefixes, netip.PrefixFrom(a, a.BitLen()))
		return nil
	}
	if strings.Contains(p, ":") {
		return fmt.Errorf("address pattern %q: IPv6 patterns must be an address or a CIDR prefix", p)
	}
	parts := strings.Split(p, ".")
	if len(parts) != 4 {
		return fmt.Errorf("address pattern %q: want four dot-separated parts such as 192.168.0.* or 10.0.1-9.{1,2}", p)
	}
	var op octetPattern
	for i, part := range parts {
		if err := parseOctet(&op, i, strings.TrimSpace(part)); err != nil {
			return fmt.Errorf("address pattern %q: %v", p, err)
		}
	}
	m.v4 = append(m.v4, op)
	return nil
}

func parseOctet(op *octetPattern, i int, part string) error {
	switch {
	case part == "*":
		for v := 0; v < 256; v++ {
			op.set(i, v)
		}
		return nil
	case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
		body := part[1 : len(part)-1]
		if body == "" {
			return fmt.Errorf("empty set {}")
		}
		for _, v := range strings.Split(body, ",") {
			n, err := octet(strings.TrimSpace(v))
			if err != nil {
				return err
			}
			op.set(i, n)
		}
		return nil
	case strings.Contains(part, "-"):
		lo, hi, _ := strings.Cut(part, "-")
		a, err := octet(lo)
		if err != nil {
			return err
		}
		b, err := octet(hi)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("range %s: start above end", part)
		}
		for v := a; v <= b; v++ {
			op.set(i, v)
		}
		return nil
	}
	n, err := octet(part)
	if err != nil {
		return err
	}
	op.set(i, n)
	return nil
}

func octet(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 || len(s) > 3 {
		return 0, fmt.Errorf("%q is not a number in 0..255", s)
	}
	return n, nil
}

// Empty reports whether m matches nothing.
func (m AddrMatcher) Empty() bool { return !m.all && len(m.prefixes) == 0 && len(m.v4) == 0 }

// Match reports whether a matches any pattern.
func (m AddrMatcher) Match(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	if m.all {
		return true
	}
	a = a.Unmap()
	for _, p := range m.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	if a.Is4() {
		b := a.As4()
		for i := range m.v4 {
			if m.v4[i].match(b) {
				return true
			}
		}
	}
	return false
}
