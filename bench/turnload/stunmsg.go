package main

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/pion/stun/v4"
)

// The STUN/TURN messages the tool sends, built with pion/stun, and the
// ChannelData framing (RFC 8656 section 12.4). Pure functions over
// buffers; the sockets are elsewhere.

// udpTransport is REQUESTED-TRANSPORT's value for UDP (protocol 17).
var udpTransport = []byte{17, 0, 0, 0}

// credential is one long-term credential: the USERNAME sent and the
// MESSAGE-INTEGRITY key MD5(username ":" realm ":" password).
type credential struct {
	username string
	realm    string
	key      stun.MessageIntegrity
}

// restCredential returns a TURN REST API credential (coturn's
// use-auth-secret, draft-uberti-behave-turn-rest-00) for user, valid until
// expiry: username "<unix expiry>:<user>", password
// base64(HMAC-SHA1(secret, username)). Computed here rather than with
// pbxgate's internal/turnauth, so that the benchmark checks interoperability
// instead of agreeing with itself.
func restCredential(secret, user, realm string, expiry time.Time) credential {
	username := strconv.FormatInt(expiry.Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	password := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return staticCredential(username, password, realm)
}

// staticCredential is a long-term user with a clear password.
func staticCredential(username, password, realm string) credential {
	sum := md5.Sum([]byte(username + ":" + realm + ":" + password))
	return credential{username: username, realm: realm, key: stun.MessageIntegrity(sum[:])}
}

// auth is what a 401 or 438 answer taught: the realm and nonce to send.
type auth struct {
	realm, nonce []byte
}

// request starts m as a request of method with transaction id.
func request(m *stun.Message, method stun.Method, id [stun.TransactionIDSize]byte) {
	m.Reset()
	m.Type = stun.NewType(method, stun.ClassRequest)
	m.TransactionID = id
	m.WriteHeader()
}

// sign adds USERNAME, REALM, NONCE, MESSAGE-INTEGRITY and FINGERPRINT: the
// last attributes of an authenticated request.
func sign(m *stun.Message, c credential, a auth) error {
	m.Add(stun.AttrUsername, []byte(c.username))
	m.Add(stun.AttrRealm, a.realm)
	m.Add(stun.AttrNonce, a.nonce)
	if err := c.key.AddTo(m); err != nil {
		return err
	}
	return stun.Fingerprint.AddTo(m)
}

// allocateRequest builds an Allocate for a UDP relay. With a zero auth it
// is the first, unauthenticated request a client sends (answered 401).
func allocateRequest(m *stun.Message, id [stun.TransactionIDSize]byte, lifetime time.Duration, c credential, a auth) error {
	request(m, stun.MethodAllocate, id)
	m.Add(stun.AttrRequestedTransport, udpTransport)
	if a.nonce == nil {
		return stun.Fingerprint.AddTo(m)
	}
	addLifetime(m, lifetime)
	return sign(m, c, a)
}

// refreshRequest builds a Refresh; lifetime 0 ends the allocation.
func refreshRequest(m *stun.Message, id [stun.TransactionIDSize]byte, lifetime time.Duration, c credential, a auth) error {
	request(m, stun.MethodRefresh, id)
	addLifetime(m, lifetime)
	return sign(m, c, a)
}

// channelBindRequest builds a ChannelBind of channel to peer.
func channelBindRequest(m *stun.Message, id [stun.TransactionIDSize]byte, channel uint16, peer netip.AddrPort, c credential, a auth) error {
	request(m, stun.MethodChannelBind, id)
	var ch [4]byte
	binary.BigEndian.PutUint16(ch[:], channel)
	m.Add(stun.AttrChannelNumber, ch[:])
	xa := stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}
	if err := xa.AddToAs(m, stun.AttrXORPeerAddress); err != nil {
		return err
	}
	return sign(m, c, a)
}

func addLifetime(m *stun.Message, d time.Duration) {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(d/time.Second))
	m.Add(stun.AttrLifetime, v[:])
}

// bindingRequest writes a STUN Binding request without attributes (what
// ICE's server-reflexive discovery sends first) into b, which must hold 20
// bytes, and returns its length.
func bindingRequest(b []byte, id [stun.TransactionIDSize]byte) int {
	binary.BigEndian.PutUint16(b[0:2], uint16(stun.MethodBinding)) // class request: no class bits
	binary.BigEndian.PutUint16(b[2:4], 0)
	binary.BigEndian.PutUint32(b[4:8], magicCookie)
	copy(b[8:20], id[:])
	return 20
}

// isBindingSuccess reports whether b is a Binding success response and
// returns its transaction id. Checked: the type, the magic cookie and that
// the length fits; the attributes are not parsed (a load generator only
// counts answers).
func isBindingSuccess(b []byte) (id [stun.TransactionIDSize]byte, ok bool) {
	if len(b) < 20 || binary.BigEndian.Uint16(b[0:2]) != 0x0101 ||
		binary.BigEndian.Uint32(b[4:8]) != magicCookie || int(binary.BigEndian.Uint16(b[2:4]))+20 > len(b) {
		return id, false
	}
	copy(id[:], b[8:20])
	return id, true
}

// Errors of a response.
var (
	errNotSTUN     = errors.New("not a STUN message")
	errUnexpected  = errors.New("unexpected response")
	errNoRelayAddr = errors.New("Allocate success without XOR-RELAYED-ADDRESS")
)

// responseError is an error response: its code and reason.
type responseError struct {
	method stun.Method
	code   stun.ErrorCode
	reason string
}

func (e *responseError) Error() string {
	return fmt.Sprintf("%s error %d %s", e.method, e.code, e.reason)
}

// parseResponse decodes raw into m and checks that it answers a request of
// method. A success returns nil; an error response a *responseError.
func parseResponse(m *stun.Message, raw []byte, method stun.Method) error {
	m.Raw = append(m.Raw[:0], raw...)
	if err := m.Decode(); err != nil {
		return fmt.Errorf("%w: %w", errNotSTUN, err)
	}
	if m.Type.Method != method {
		return fmt.Errorf("%w: %s to a %s request", errUnexpected, m.Type, method)
	}
	switch m.Type.Class {
	case stun.ClassSuccessResponse:
		return nil
	case stun.ClassErrorResponse:
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return fmt.Errorf("%w: %s without ERROR-CODE", errUnexpected, m.Type)
		}
		return &responseError{method: method, code: ec.Code, reason: string(ec.Reason)}
	}
	return fmt.Errorf("%w: %s", errUnexpected, m.Type)
}

// challenge returns the REALM and NONCE of a 401 or 438 answer.
func challenge(m *stun.Message) (auth, error) {
	realm, err1 := m.Get(stun.AttrRealm)
	nonce, err2 := m.Get(stun.AttrNonce)
	if err1 != nil || err2 != nil || len(nonce) == 0 {
		return auth{}, fmt.Errorf("%w: challenge without REALM and NONCE", errUnexpected)
	}
	return auth{realm: append([]byte(nil), realm...), nonce: append([]byte(nil), nonce...)}, nil
}

// relayedAddress returns an Allocate success's XOR-RELAYED-ADDRESS.
func relayedAddress(m *stun.Message) (netip.AddrPort, error) {
	var xa stun.XORMappedAddress
	if err := xa.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		return netip.AddrPort{}, errNoRelayAddr
	}
	a, ok := netip.AddrFromSlice(xa.IP)
	if !ok {
		return netip.AddrPort{}, errNoRelayAddr
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(xa.Port)), nil
}

// magicCookie is the fixed STUN magic cookie (RFC 8489 section 5).
const magicCookie = 0x2112A442

// ChannelData (RFC 8656 section 12.4): channel number, length, payload.
// The tool's payloads are a multiple of 4 bytes, so no padding arises.
const channelHeader = 4

// putChannelData writes the ChannelData header for a payload of n bytes
// into b[:4].
func putChannelData(b []byte, channel uint16, n int) {
	binary.BigEndian.PutUint16(b[0:2], channel)
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
}

// channelData returns the payload of a ChannelData message on channel, and
// false when b is something else (a STUN message, another channel, a bad
// length).
func channelData(b []byte, channel uint16) ([]byte, bool) {
	if len(b) < channelHeader || binary.BigEndian.Uint16(b[0:2]) != channel {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if channelHeader+n > len(b) {
		return nil, false
	}
	return b[channelHeader : channelHeader+n], true
}

// The relayed payloads carry a sequence number and their send time, so
// that the echo tells what was lost and how long the round trip took.
const payloadHeader = 16

// putPayload stamps p (len >= 16) with seq and the send time in
// nanoseconds since the run's start.
func putPayload(p []byte, seq uint64, sentNs int64) {
	binary.BigEndian.PutUint64(p[0:8], seq)
	binary.BigEndian.PutUint64(p[8:16], uint64(sentNs))
}

// readPayload returns the stamp of an echoed payload.
func readPayload(p []byte) (seq uint64, sentNs int64, ok bool) {
	if len(p) < payloadHeader {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(p[0:8]), int64(binary.BigEndian.Uint64(p[8:16])), true
}
