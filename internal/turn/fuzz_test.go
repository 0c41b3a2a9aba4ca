package turn

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/pbxgate/pbxgate/internal/turnauth"
)

// stunSeed builds a STUN message for the seed corpora.
func stunSeed(t testing.TB, typ stun.MessageType, setters ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, typ}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// channelData frames payload as ChannelData on channel 0x4001, padded as
// over TCP.
func channelData(payload []byte) []byte {
	b := make([]byte, 4+(len(payload)+3)&^3)
	binary.BigEndian.PutUint16(b, 0x4001)
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	copy(b[4:], payload)
	return b
}

// FuzzFramer feeds a byte stream to the framer whole and in pieces: the
// STUN messages it finds must be the same either way, each a STUN message
// of at most maxObserved bytes taken verbatim from the stream.
func FuzzFramer(f *testing.F) {
	alloc := stunSeed(f, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.NewUsername("1700000000:bob"))
	bind := stunSeed(f, stun.NewType(stun.MethodConnectionBind, stun.ClassRequest))
	f.Add(alloc, uint8(1))
	f.Add(append(append(channelData([]byte("rtp")), alloc...), channelData(make([]byte, 170))...), uint8(7))
	f.Add(append(bind, []byte("raw peer bytes")...), uint8(3))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint8(2))
	f.Add(append([]byte{0x00, 0x01, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 40)...), uint8(5))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		collect := func(chunk int) [][]byte {
			var fr framer
			var out [][]byte
			for p := stream; len(p) > 0; {
				k := min(chunk, len(p))
				fr.feed(p[:k], func(m []byte) {
					if len(m) > maxObserved || !isSTUN(m) || !bytes.Contains(stream, m) {
						t.Fatalf("framer handed %d bytes that are no STUN message of the stream", len(m))
					}
					out = append(out, append([]byte(nil), m...))
				})
				p = p[k:]
			}
			return out
		}
		whole := collect(len(stream) + 1)
		pieces := collect(int(step)%17 + 1)
		if len(whole) != len(pieces) {
			t.Fatalf("%d messages whole, %d in pieces", len(whole), len(pieces))
		}
		for i := range whole {
			if !bytes.Equal(whole[i], pieces[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
	})
}

// FuzzPreParse runs what looks at client bytes before pion does (the
// Binding responder, the REST key finder, the username walk, the method,
// the ConnectionBind signer) on
// arbitrary datagrams: no panic, and a username found lies inside msg.
func FuzzPreParse(f *testing.F) {
	secrets, err := turnauth.NewSecrets([][]byte{restSecret, []byte("an-older-secret-0123456789")})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{
		Realm: realm, PublicAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Settings: Settings{Secrets: secrets},
	}, Options{Now: func() time.Time { return time.Unix(1_700_000_000, 0) }})
	if err != nil {
		f.Fatal(err)
	}
	user, pass, err := secrets.Issue("bob", time.Unix(1_700_000_000, 0), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	key := turnauth.LongTermKey(user, realm, pass)
	f.Add(stunSeed(f, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(user), stun.NewRealm(realm), stun.NewNonce("n"), stun.MessageIntegrity(key)))
	f.Add(stunSeed(f, stun.NewType(stun.MethodConnectionBind, stun.ClassSuccessResponse)))
	f.Add(stunSeed(f, stun.BindingRequest, stun.Fingerprint))
	f.Add([]byte{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x06, 0xff, 0xff, 'a', ':', 'b', 0})
	f.Add(channelData([]byte("payload")))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if isBindingRequest(msg) {
			ans := &stun.Message{Raw: bindingAnswer(make([]byte, bindingAnswerMaxLen), msg, netip.MustParseAddrPort("[2001:db8::1]:9"))}
			if err := ans.Decode(); err != nil || stun.Fingerprint.Check(ans) != nil {
				t.Fatalf("Binding answer does not decode or check: %v", err)
			}
		}
		s.observe(msg)
		_ = stunMethod(msg)
		if isSTUN(msg) {
			u, _ := stunUsername(msg)
			if len(u) > 0 && !bytes.Contains(msg, u) {
				t.Fatal("username outside the message")
			}
			if signed, err := signSTUN(msg, key); err == nil {
				m := &stun.Message{Raw: signed}
				if err := m.Decode(); err != nil {
					t.Fatalf("signed answer does not decode: %v", err)
				}
				if err := stun.MessageIntegrity(key).Check(m); err != nil {
					t.Fatalf("signed answer fails its integrity check: %v", err)
				}
			}
		}
	})
}
