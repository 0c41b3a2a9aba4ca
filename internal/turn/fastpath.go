package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// The media fast path. Once a UDP client has bound a channel to a peer
// (ChannelBind), its media flows as ChannelData: 4 bytes of header and the
// payload. pion handles each such datagram with a five-tuple lookup, locks,
// an allocation per packet and a log call on the way out; at tens of
// thousands of packets a second that is most of the user-space cost. Here
// the two sockets relay ChannelData themselves, both ways, with the same
// rules (the channel must be bound, the peer filter, the counters and the
// bandwidth cap), and hand everything else to pion: STUN messages, Send
// and Data indications, packets of channels not (or no longer) bound.
//
// pion stays the owner of the channels: its OnChannelCreated and
// OnChannelDeleted events keep each allocation's chanTable, replaced whole
// on change, so the packet path reads it without a lock.

// chanTable is an allocation's channel bindings: immutable once published.
type chanTable struct {
	client netip.AddrPort // the allocation's client (the five-tuple's source)
	byNum  map[uint16]netip.AddrPort
	byPeer map[netip.AddrPort]uint16
}

// fastPath is what an allocation on a UDP listener needs for the fast path.
type fastPath struct {
	listener *guardPacketConn // the socket the client talks to
	relay    *net.UDPConn     // the allocation's relay socket
	chans    atomic.Pointer[chanTable]
}

// bind records channel num → peer for the allocation's client.
func (f *fastPath) bind(client, peer netip.AddrPort, num uint16) {
	old := f.chans.Load()
	t := &chanTable{client: client, byNum: map[uint16]netip.AddrPort{num: peer}, byPeer: map[netip.AddrPort]uint16{peer: num}}
	if old != nil {
		for n, p := range old.byNum {
			if n != num && p != peer {
				t.byNum[n], t.byPeer[p] = p, n
			}
		}
	}
	f.chans.Store(t)
}

// unbind forgets channel num.
func (f *fastPath) unbind(num uint16) {
	old := f.chans.Load()
	if old == nil {
		return
	}
	t := &chanTable{client: old.client, byNum: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]uint16{}}
	for n, p := range old.byNum {
		if n != num {
			t.byNum[n], t.byPeer[p] = p, n
		}
	}
	f.chans.Store(t)
}

// clients maps a UDP listener's clients to their allocations.
type clients struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]*alloc
}

func (c *clients) add(client netip.AddrPort, a *alloc) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[netip.AddrPort]*alloc)
	}
	c.m[client] = a
	c.mu.Unlock()
}

func (c *clients) remove(client netip.AddrPort, a *alloc) {
	c.mu.Lock()
	if c.m[client] == a {
		delete(c.m, client)
	}
	c.mu.Unlock()
}

func (c *clients) get(client netip.AddrPort) *alloc {
	c.mu.RLock()
	a := c.m[client]
	c.mu.RUnlock()
	return a
}

// isChannelData reports whether b starts like ChannelData (channel numbers
// 0x4000-0x7FFF); STUN messages start with 0x00 or 0x01.
func isChannelData(b []byte) bool { return len(b) >= 4 && b[0]&0xC0 == 0x40 }

// relayToPeer sends the payload of the ChannelData msg from client to its
// channel's peer. It reports false when msg is for pion: no allocation of
// this client here, an unbound channel, or a malformed frame.
func (c *guardPacketConn) relayToPeer(msg []byte, client netip.AddrPort) bool {
	a := c.clients.get(client)
	if a == nil || a.fast == nil {
		return false
	}
	t := a.fast.chans.Load()
	if t == nil {
		return false
	}
	length := int(binary.BigEndian.Uint16(msg[2:4]))
	if 4+length > len(msg) {
		return false
	}
	peer, ok := t.byNum[binary.BigEndian.Uint16(msg[0:2])]
	if !ok {
		return false
	}
	if ok, _ := c.s.settings().filter.Check(peer.Addr()); !ok {
		return true // the filter changed since the bind: dropped
	}
	if !a.toPeer.pass(length) {
		c.s.metrics.bandwidthDrop()
		return true
	}
	_, _ = a.fast.relay.WriteToUDPAddrPort(msg[4:4+length], peer)
	return true
}

// readFast reads the relay socket for pion's allocation loop: datagrams
// from a peer with a bound channel go to the client as ChannelData at once;
// the first other one is returned to pion in p.
func (c *relayPacketConn) readFast(p []byte) (int, net.Addr, error) {
	f := c.a.fast
	for {
		n, from, err := f.relay.ReadFromUDPAddrPort(p[4:])
		if err != nil {
			return 0, nil, err
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if !c.a.fromPeer.pass(n) {
			c.s.metrics.bandwidthDrop()
			continue
		}
		if t := f.chans.Load(); t != nil {
			if num, ok := t.byPeer[from]; ok {
				binary.BigEndian.PutUint16(p[0:2], num)
				binary.BigEndian.PutUint16(p[2:4], uint16(n))
				_, _ = f.listener.udp.WriteToUDPAddrPort(p[:4+n], t.client)
				continue
			}
		}
		copy(p, p[4:4+n])
		return n, net.UDPAddrFromAddrPort(from), nil
	}
}

// onChannelCreated and onChannelDeleted keep the fast path's channel
// tables (pion calls them with the allocation's channel lock held).
func (s *Server) onChannelCreated(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
	if a := s.fastAlloc(relay); a != nil {
		a.fast.bind(addrPort(src), addrPort(peer), num)
	}
}

func (s *Server) onChannelDeleted(_, _ net.Addr, _, _, _ string, relay, _ net.Addr, num uint16) {
	if a := s.fastAlloc(relay); a != nil {
		a.fast.unbind(num)
	}
}

// fastAlloc returns the allocation of a UDP relay address if it has a fast
// path.
func (s *Server) fastAlloc(relay net.Addr) *alloc {
	if _, ok := relay.(*net.UDPAddr); !ok {
		return nil
	}
	a := s.reg.byRelayAddr("udp", addrPort(relay))
	if a == nil || a.fast == nil {
		return nil
	}
	return a
}

// addrPort converts a UDP or TCP address, IPv4-mapped forms unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
