package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
)

// session is one TURN client: a UDP socket connected to the server (its
// 5-tuple is the allocation's), the credential, and what the server's
// challenge taught. Requests are sent one at a time and wait for their
// answer; there are no retransmissions: on loopback a request without an
// answer within the timeout means the server dropped it, and the caller
// counts a failure.
type session struct {
	conn    *net.UDPConn
	rd, wr  *batch // one datagram each
	cred    credential
	auth    auth
	relay   netip.AddrPort // after allocate
	timeout time.Duration
	req     stun.Message
	resp    stun.Message
}

// maxDatagram bounds what the tool reads: STUN answers and ChannelData are
// far smaller.
const maxDatagram = 2048

func newSession(src *sources, cred credential, timeout time.Duration) (*session, error) {
	c, err := src.dial()
	if err != nil {
		return nil, err
	}
	s := &session{conn: c, cred: cred, timeout: timeout}
	if s.rd, err = newBatch(c, 1, maxDatagram, false); err == nil {
		s.wr, err = newBatch(c, 1, maxDatagram, false)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

func (s *session) close() error { return s.conn.Close() }

// idPrefix makes this process's transaction ids differ from another run's;
// idCounter makes them unique within the run.
var (
	idPrefix  = func() (p [4]byte) { rand.Read(p[:]); return p }()
	idCounter atomic.Uint64
)

func nextID() (id [stun.TransactionIDSize]byte) {
	copy(id[:4], idPrefix[:])
	binary.BigEndian.PutUint64(id[4:], idCounter.Add(1))
	return id
}

// transact sends s.req and waits for the answer with its transaction id,
// decoded into s.resp; other datagrams are skipped.
func (s *session) transact(method stun.Method) error {
	s.wr.lens[0] = copy(s.wr.bufs[0], s.req.Raw)
	if err := s.wr.send(1); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if err := s.conn.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	defer s.conn.SetReadDeadline(time.Time{})
	for {
		if _, err := s.rd.recv(); err != nil {
			if errors.Is(err, errDeadline) {
				return fmt.Errorf("%s: no answer within %s", method, s.timeout)
			}
			return fmt.Errorf("%s: %w", method, err)
		}
		b := s.rd.bufs[0][:s.rd.lens[0]]
		if len(b) < 20 || b[0]&0xc0 != 0 || string(b[8:20]) != string(s.req.TransactionID[:]) {
			continue // ChannelData, or an answer to an earlier request
		}
		return parseResponse(&s.resp, b, method)
	}
}

// code returns the error code of an error response, 0 for other errors.
func code(err error) stun.ErrorCode {
	var re *responseError
	if errors.As(err, &re) {
		return re.code
	}
	return 0
}

// allocate obtains a UDP relay the way a fresh client does: an
// unauthenticated Allocate, the 401 challenge, the Allocate with
// MESSAGE-INTEGRITY (once more after a 438 stale nonce). The challenge's
// realm must be the credential's: another realm, or an allocation without
// authentication, means another server answered (a port shared with
// SO_REUSEPORT has happened on a busy machine), and the run would measure
// the wrong thing.
func (s *session) allocate(lifetime time.Duration) error {
	if err := allocateRequest(&s.req, nextID(), 0, s.cred, auth{}); err != nil {
		return err
	}
	err := s.transact(stun.MethodAllocate)
	if err == nil {
		return fmt.Errorf("%w: the server allocated without authentication", errUnexpected)
	}
	if code(err) != stun.CodeUnauthorized {
		return fmt.Errorf("unauthenticated Allocate: want 401, got %w", err)
	}
	if s.auth, err = challenge(&s.resp); err != nil {
		return err
	}
	if string(s.auth.realm) != s.cred.realm {
		return fmt.Errorf("%w: the server's realm is %q, not %q", errUnexpected, s.auth.realm, s.cred.realm)
	}
	if err := s.authenticated(stun.MethodAllocate, func(id [stun.TransactionIDSize]byte) error {
		return allocateRequest(&s.req, id, lifetime, s.cred, s.auth)
	}); err != nil {
		return err
	}
	s.relay, err = relayedAddress(&s.resp)
	return err
}

// refresh sends a Refresh; lifetime 0 deletes the allocation.
func (s *session) refresh(lifetime time.Duration) error {
	return s.authenticated(stun.MethodRefresh, func(id [stun.TransactionIDSize]byte) error {
		return refreshRequest(&s.req, id, lifetime, s.cred, s.auth)
	})
}

// channelBind binds channel to peer (which also installs the permission).
func (s *session) channelBind(channel uint16, peer netip.AddrPort) error {
	return s.authenticated(stun.MethodChannelBind, func(id [stun.TransactionIDSize]byte) error {
		return channelBindRequest(&s.req, id, channel, peer, s.cred, s.auth)
	})
}

// authenticated sends the request build makes and, after a 438 Stale Nonce,
// once more with the new nonce.
func (s *session) authenticated(method stun.Method, build func(id [stun.TransactionIDSize]byte) error) error {
	for try := 0; ; try++ {
		if err := build(nextID()); err != nil {
			return err
		}
		err := s.transact(method)
		if code(err) != stun.CodeStaleNonce || try > 0 {
			return err
		}
		if s.auth, err = challenge(&s.resp); err != nil {
			return err
		}
	}
}
