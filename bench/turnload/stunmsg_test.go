package main

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/pbxgate/pbxgate/internal/turnauth"
)

// The tool's REST credential must be what pbxgate's issuer mints and
// coturn expects: the same username and, through the password, the same
// key.
func TestRESTCredential(t *testing.T) {
	secrets, err := turnauth.NewSecrets([][]byte{[]byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	username, password, err := secrets.Issue("u7", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := restCredential(testSecret, "u7", testRealm, now.Add(time.Hour))
	if got.username != username {
		t.Fatalf("username %q, turnauth issued %q", got.username, username)
	}
	want := turnauth.LongTermKey(username, testRealm, password)
	if !bytes.Equal(got.key, want) || got.realm != testRealm {
		t.Fatalf("key %x realm %q, want %x %q", []byte(got.key), got.realm, want, testRealm)
	}
}

// Requests decode with pion/stun, carry the attributes a server needs, and
// their MESSAGE-INTEGRITY verifies with the credential's key.
func TestRequests(t *testing.T) {
	cred := staticCredential("alice", "pw", testRealm)
	a := auth{realm: []byte(testRealm), nonce: []byte("n0nce")}
	peer := netip.MustParseAddrPort("127.0.0.1:40000")
	tests := []struct {
		name   string
		build  func(m *stun.Message, id [12]byte) error
		method stun.Method
		attrs  []stun.AttrType
		signed bool
	}{
		{"allocate unauthenticated", func(m *stun.Message, id [12]byte) error { return allocateRequest(m, id, time.Minute, cred, auth{}) },
			stun.MethodAllocate, []stun.AttrType{stun.AttrRequestedTransport, stun.AttrFingerprint}, false},
		{"allocate", func(m *stun.Message, id [12]byte) error { return allocateRequest(m, id, time.Minute, cred, a) },
			stun.MethodAllocate, []stun.AttrType{stun.AttrRequestedTransport, stun.AttrLifetime, stun.AttrUsername, stun.AttrRealm, stun.AttrNonce}, true},
		{"refresh 0", func(m *stun.Message, id [12]byte) error { return refreshRequest(m, id, 0, cred, a) },
			stun.MethodRefresh, []stun.AttrType{stun.AttrLifetime, stun.AttrUsername}, true},
		{"channel bind", func(m *stun.Message, id [12]byte) error {
			return channelBindRequest(m, id, benchChannel, peer, cred, a)
		},
			stun.MethodChannelBind, []stun.AttrType{stun.AttrChannelNumber, stun.AttrXORPeerAddress, stun.AttrUsername}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m stun.Message
			id := nextID()
			if err := tt.build(&m, id); err != nil {
				t.Fatal(err)
			}
			var got stun.Message
			got.Raw = append([]byte(nil), m.Raw...)
			if err := got.Decode(); err != nil {
				t.Fatal(err)
			}
			if got.Type != stun.NewType(tt.method, stun.ClassRequest) || got.TransactionID != id {
				t.Fatalf("type %s id %x, want %s request %x", got.Type, got.TransactionID, tt.method, id)
			}
			for _, at := range tt.attrs {
				if !got.Contains(at) {
					t.Errorf("no %s", at)
				}
			}
			if err := stun.Fingerprint.Check(&got); err != nil {
				t.Errorf("fingerprint: %v", err)
			}
			if tt.signed {
				if err := cred.key.Check(&got); err != nil {
					t.Errorf("MESSAGE-INTEGRITY: %v", err)
				}
			} else if got.Contains(stun.AttrMessageIntegrity) {
				t.Error("the first Allocate carries MESSAGE-INTEGRITY")
			}
			switch tt.method {
			case stun.MethodRefresh:
				v, _ := got.Get(stun.AttrLifetime)
				if binary.BigEndian.Uint32(v) != 0 {
					t.Errorf("lifetime %d, want 0", binary.BigEndian.Uint32(v))
				}
			case stun.MethodChannelBind:
				var xa stun.XORMappedAddress
				if err := xa.GetFromAs(&got, stun.AttrXORPeerAddress); err != nil || xa.Port != 40000 || !xa.IP.Equal(peer.Addr().AsSlice()) {
					t.Errorf("peer %v (%v), want %v", xa, err, peer)
				}
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	id := nextID()
	relay := stun.XORMappedAddress{IP: netip.MustParseAddr("127.0.0.1").AsSlice(), Port: 20000}
	success, _ := stun.Build(stun.NewTransactionIDSetter(id), stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse),
		setterFunc(func(m *stun.Message) error { return relay.AddToAs(m, stun.AttrXORRelayedAddress) }))
	challenge401, _ := stun.Build(stun.NewTransactionIDSetter(id), stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.CodeUnauthorized, stun.NewRealm(testRealm), stun.NewNonce("abc"))
	bare, _ := stun.Build(stun.NewTransactionIDSetter(id), stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse), stun.CodeUnauthorized)
	other, _ := stun.Build(stun.NewTransactionIDSetter(id), stun.NewType(stun.MethodRefresh, stun.ClassSuccessResponse))

	var m stun.Message
	if err := parseResponse(&m, success.Raw, stun.MethodAllocate); err != nil {
		t.Fatal(err)
	}
	if got, err := relayedAddress(&m); err != nil || got != netip.MustParseAddrPort("127.0.0.1:20000") {
		t.Errorf("relayed address %v, %v", got, err)
	}
	err := parseResponse(&m, challenge401.Raw, stun.MethodAllocate)
	if code(err) != stun.CodeUnauthorized {
		t.Fatalf("401: got %v", err)
	}
	if a, err := challenge(&m); err != nil || string(a.realm) != testRealm || string(a.nonce) != "abc" {
		t.Errorf("challenge %q %q, %v", a.realm, a.nonce, err)
	}
	if err := parseResponse(&m, bare.Raw, stun.MethodAllocate); code(err) != stun.CodeUnauthorized {
		t.Fatalf("bare 401: %v", err)
	}
	if _, err := challenge(&m); err == nil {
		t.Error("a 401 without REALM and NONCE passed as a challenge")
	}
	if err := parseResponse(&m, other.Raw, stun.MethodAllocate); err == nil {
		t.Error("a Refresh answer passed as an Allocate answer")
	}
	if err := parseResponse(&m, []byte("not stun at all, really"), stun.MethodAllocate); err == nil {
		t.Error("garbage passed as a response")
	}
}

type setterFunc func(m *stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func TestBinding(t *testing.T) {
	id := nextID()
	b := make([]byte, 20)
	n := bindingRequest(b, id)
	var req stun.Message
	req.Raw = b[:n]
	if err := req.Decode(); err != nil || req.Type != stun.BindingRequest || req.TransactionID != id {
		t.Fatalf("binding request decodes as %s %x (%v)", req.Type, req.TransactionID, err)
	}
	resp, _ := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: netip.MustParseAddr("127.0.0.1").AsSlice(), Port: 1234}, stun.Fingerprint)
	if got, ok := isBindingSuccess(resp.Raw); !ok || got != id {
		t.Errorf("success: %x %v", got, ok)
	}
	for name, raw := range map[string][]byte{
		"request":   b[:n],
		"short":     resp.Raw[:19],
		"truncated": resp.Raw[:len(resp.Raw)-4],
	} {
		if _, ok := isBindingSuccess(raw); ok {
			t.Errorf("%s passed as a Binding success", name)
		}
	}
}

func TestChannelDataAndPayload(t *testing.T) {
	b := make([]byte, channelHeader+172)
	putChannelData(b, benchChannel, 172)
	putPayload(b[channelHeader:], 42, 12345)
	p, ok := channelData(b, benchChannel)
	if !ok || len(p) != 172 {
		t.Fatalf("channelData: %d bytes, %v", len(p), ok)
	}
	if seq, ns, ok := readPayload(p); !ok || seq != 42 || ns != 12345 {
		t.Errorf("payload %d %d %v", seq, ns, ok)
	}
	if _, ok := channelData(b, benchChannel+1); ok {
		t.Error("another channel's data accepted")
	}
	if _, ok := channelData(b[:100], benchChannel); ok {
		t.Error("data shorter than its length accepted")
	}
	if _, _, ok := readPayload(p[:15]); ok {
		t.Error("a short payload read")
	}
}
