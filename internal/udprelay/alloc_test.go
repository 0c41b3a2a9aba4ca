package udprelay

import (
	"testing"
)

// TestHotPathAllocs: relaying through an existing flow allocates nothing,
// in either direction.
func TestHotPathAllocs(t *testing.T) {
	h := start(t, "127.0.0.1", Config{}, nil)
	c := listenUDP(t, "127.0.0.1:0")
	h.roundTrip(c, "REGISTER")
	f := h.flowOf(c)
	from := localAP(c)
	msg := []byte("OPTIONS sip:100@example.com SIP/2.0\r\n\r\n")
	scratch := make([]byte, ScratchSize)
	if a := testing.AllocsPerRun(100, func() { h.r.fromClient(msg, from, scratch) }); a != 0 {
		t.Errorf("client → backend: %v allocs per datagram", a)
	}
	if a := testing.AllocsPerRun(100, func() { h.r.fromBackend(f, msg, scratch) }); a != 0 {
		t.Errorf("backend → client: %v allocs per datagram", a)
	}
	if st := h.r.Stats(); st.FromClient < 101 || st.ToClient < 101 || st.DroppedError != 0 {
		t.Errorf("Stats = %+v: datagrams were not relayed", st)
	}
}
