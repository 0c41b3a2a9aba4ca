package turn

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// STUN Binding over UDP is answered here, before pion: it needs no state
// and no credentials, and pion decodes every request and builds its answer
// with several allocations. The answer is pion's: XOR-MAPPED-ADDRESS and
// FINGERPRINT (RFC 8489 sections 14.2 and 14.7).

const (
	typeBindingRequest  = 0x0001
	typeBindingSuccess  = 0x0101
	attrXORMappedAddr   = 0x0020
	attrFingerprint     = 0x8028
	fingerprintXOR      = 0x5354554e
	bindingAnswerMaxLen = stunHeaderLen + 4 + 20 + 4 + 4 // IPv6 XOR-MAPPED-ADDRESS and FINGERPRINT
)

// isBindingRequest reports whether msg is exactly one well-formed STUN
// Binding request: the header's length covers the attributes, each of
// which fits.
func isBindingRequest(msg []byte) bool {
	if !isSTUN(msg) || binary.BigEndian.Uint16(msg[0:2]) != typeBindingRequest {
		return false
	}
	end := stunHeaderLen + int(binary.BigEndian.Uint16(msg[2:4]))
	if end != len(msg) || end%4 != 0 {
		return false
	}
	off := stunHeaderLen
	for off+4 <= end {
		off += 4 + (int(binary.BigEndian.Uint16(msg[off+2:]))+3)&^3
	}
	return off == end
}

// bindingAnswer writes into buf (at least bindingAnswerMaxLen bytes) the
// success answer to the Binding request req from client and returns it.
func bindingAnswer(buf, req []byte, client netip.AddrPort) []byte {
	a := client.Addr().Unmap()
	addrLen := 8
	if a.Is6() {
		addrLen = 20
	}
	n := stunHeaderLen + 4 + addrLen + 8
	b := buf[:n]
	binary.BigEndian.PutUint16(b[0:2], typeBindingSuccess)
	binary.BigEndian.PutUint16(b[2:4], uint16(n-stunHeaderLen))
	copy(b[4:stunHeaderLen], req[4:stunHeaderLen]) // cookie and transaction ID
	x := b[stunHeaderLen:]
	binary.BigEndian.PutUint16(x[0:2], attrXORMappedAddr)
	binary.BigEndian.PutUint16(x[2:4], uint16(addrLen))
	x[4] = 0
	x[5] = 0x01
	if a.Is6() {
		x[5] = 0x02
	}
	binary.BigEndian.PutUint16(x[6:8], client.Port()^uint16(stunCookie>>16))
	ip := a.AsSlice()
	for i := range ip {
		x[8+i] = ip[i] ^ b[4+i] // the cookie, then the transaction ID
	}
	f := b[n-8:]
	binary.BigEndian.PutUint16(f[0:2], attrFingerprint)
	binary.BigEndian.PutUint16(f[2:4], 4)
	binary.BigEndian.PutUint32(f[4:8], crc32.ChecksumIEEE(b[:n-8])^fingerprintXOR)
	return b
}
