package turn

import (
	"encoding/binary"
	"net"
	"sync"

	"github.com/pion/stun/v4"
)

// pion answers two refusals with the wrong error code: a request whose
// credentials fail (unknown user, wrong MESSAGE-INTEGRITY) gets 400 Bad
// Request, where RFC 8489 section 9.2.4 asks for 401 with REALM and NONCE,
// and a ChannelBind to a peer the permission handler refuses gets 401,
// where RFC 8656 asks for 403 Forbidden (as pion does for CreatePermission
// and Connect). The refusing callbacks mark the client's address, and the
// next error answer written to that address is corrected on its way out.

// maxFixes bounds the marked addresses; the table is emptied when full (a
// mark is taken by the answer written right after it).
const maxFixes = 4096

// fixes are the marked client addresses: address → the error code its next
// error answer must carry.
type fixes struct {
	mu sync.Mutex
	m  map[string]int
}

func (f *fixes) mark(addr net.Addr, code int) {
	if addr == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || len(f.m) >= maxFixes {
		f.m = make(map[string]int)
	}
	f.m[addr.String()] = code
}

func (f *fixes) take(addr net.Addr) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	code, ok := f.m[addr.String()]
	if ok {
		delete(f.m, addr.String())
	}
	return code, ok
}

// STUN message classes (the C1 and C0 bits of the type).
const (
	classMask          = 0x0110
	classErrorResponse = 0x0110
)

// isErrorResponse reports whether msg is a STUN error response.
func isErrorResponse(msg []byte) bool {
	return isSTUN(msg) && binary.BigEndian.Uint16(msg[0:2])&classMask == classErrorResponse
}

// requests remembers the NONCE of the last requests read from one client
// connection or socket, for the 401 answers that must repeat it.
type requests struct {
	txid  [4][stun.TransactionIDSize]byte
	nonce [4][]byte
	next  int
}

// note remembers msg's transaction ID and NONCE, if it has one.
func (r *requests) note(msg []byte) {
	nonce := stunAttr(msg, stun.AttrNonce)
	if nonce == nil {
		return
	}
	i := r.next % len(r.txid)
	r.next++
	copy(r.txid[i][:], msg[8:stunHeaderLen])
	r.nonce[i] = append(r.nonce[i][:0], nonce...)
}

// nonceOf returns the NONCE of the request with transaction ID txid.
func (r *requests) nonceOf(txid []byte) []byte {
	for i := range r.txid {
		if string(r.txid[i][:]) == string(txid) && r.nonce[i] != nil {
			return r.nonce[i]
		}
	}
	return nil
}

// fixAnswer returns the error answer msg, written to addr, with the code
// the refusing callback asked for; msg itself when nothing is to change.
func (s *Server) fixAnswer(msg []byte, addr net.Addr, reqs *requests) []byte {
	if !isErrorResponse(msg) {
		return msg
	}
	want, ok := s.fixes.take(addr)
	if !ok {
		return msg
	}
	return s.recode(msg, want, reqs)
}

// recode rebuilds the error answer msg with code want where pion's code is
// the known wrong one.
func (s *Server) recode(msg []byte, want int, reqs *requests) []byte {
	m := &stun.Message{Raw: append([]byte(nil), msg...)}
	if err := m.Decode(); err != nil {
		return msg
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil || int(ec.Code) == want {
		return msg
	}
	switch {
	case want == int(stun.CodeUnauthorized) && ec.Code == stun.CodeBadRequest:
		nonce := reqs.nonceOf(m.TransactionID[:])
		if nonce == nil {
			return msg
		}
		out, err := stun.Build(&stun.Message{TransactionID: m.TransactionID}, m.Type,
			&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewRealm(s.realm), stun.NewNonce(string(nonce)))
		if err != nil {
			return msg
		}
		return out.Raw
	case want == int(stun.CodeForbidden) && ec.Code == stun.CodeUnauthorized && m.Type.Method == stun.MethodChannelBind:
		out, err := stun.Build(&stun.Message{TransactionID: m.TransactionID}, m.Type,
			&stun.ErrorCodeAttribute{Code: stun.CodeForbidden})
		if err != nil {
			return msg
		}
		return out.Raw
	}
	return msg
}

// stunAttr returns the value of msg's first attribute of type t, or nil.
// msg must be a STUN message (isSTUN).
func stunAttr(msg []byte, t stun.AttrType) []byte {
	end := min(stunHeaderLen+int(binary.BigEndian.Uint16(msg[2:4])), len(msg))
	for off := stunHeaderLen; off+4 <= end; {
		typ := stun.AttrType(binary.BigEndian.Uint16(msg[off:]))
		n := int(binary.BigEndian.Uint16(msg[off+2:]))
		val := off + 4
		if val+n > end {
			return nil
		}
		if typ == t {
			return msg[val : val+n]
		}
		off = val + (n+3)&^3
	}
	return nil
}
