package message

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
)

// OffsetMsgID is the broker-made message id: upper-case hex of the store IP (4 or 16 bytes),
// the port as int32 and the commit-log offset as int64 (32 hex characters for IPv4).
func OffsetMsgID(storeHost netip.AddrPort, commitLogOffset int64) string {
	var raw [28]byte
	b := appendHost(raw[:0], storeHost)
	b = binary.BigEndian.AppendUint64(b, uint64(commitLogOffset))
	const digits = "0123456789ABCDEF"
	var out [56]byte
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&0xF]
	}
	return string(out[:2*len(b)])
}

// ParseOffsetMsgID reverses OffsetMsgID. It accepts 32 (IPv4) or 56 (IPv6) hex characters in
// either case.
func ParseOffsetMsgID(id string) (netip.AddrPort, int64, error) {
	if len(id) != 32 && len(id) != 56 {
		return netip.AddrPort{}, 0, fmt.Errorf("message id %q: want 32 or 56 hex characters, got %d", id, len(id))
	}
	b, err := hex.DecodeString(id)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("message id %q is not hex: %w", id, err)
	}
	ipLen := len(b) - 12
	addr, _ := netip.AddrFromSlice(b[:ipLen])
	port := binary.BigEndian.Uint32(b[ipLen:])
	if port > 0xFFFF {
		return netip.AddrPort{}, 0, fmt.Errorf("message id %q: port %d out of range", id, port)
	}
	off := int64(binary.BigEndian.Uint64(b[ipLen+4:]))
	if off < 0 {
		return netip.AddrPort{}, 0, fmt.Errorf("message id %q: negative commit-log offset", id)
	}
	return netip.AddrPortFrom(addr, uint16(port)), off, nil
}
