package netnstest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLab: the lab's client reaches its server over both families, a
// socket opened with Do lives in the namespace (not the host's), and the
// namespaces are gone after cleanup.
func TestLab(t *testing.T) {
	NeedPeers(t)
	var names []string
	t.Run("lab", func(t *testing.T) {
		l := NewLab(t)
		names = append(names, l.Srv.Name, l.Cli.Name)
		s := l.Serve(t)
		l.WaitReachable(t, s, 30*time.Second)
		// A drop in the server namespace is seen by the probes.
		l.Srv.Exec(t, "nft", "add table inet t; add chain inet t c { type filter hook prerouting priority raw; }; add rule inet t c ip saddr 10.98.7.3 drop")
		if l.UDPOK(t, s, l.CliB4, l.Srv4, 300*time.Millisecond) || l.TCPOK(t, s, l.CliB4, l.Srv4, 300*time.Millisecond) {
			t.Error("probes from a dropped source succeeded")
		}
		if !l.UDPOK(t, s, l.CliA4, l.Srv4, 2*time.Second) || !l.TCPOK(t, s, l.CliA4, l.Srv4, 2*time.Second) {
			t.Error("probes from a source not dropped failed")
		}

		// The server's address exists in its namespace only.
		pc := l.Srv.ListenPacket(t, "udp", "10.98.7.1:0")
		if pc.LocalAddr().(*net.UDPAddr).IP.String() != "10.98.7.1" {
			t.Errorf("bound to %v", pc.LocalAddr())
		}
		if c, err := net.ListenPacket("udp", "10.98.7.1:0"); err == nil {
			c.Close()
			t.Error("10.98.7.1 is bindable in the host namespace: the lab leaked into it")
		}
		if out := l.Cli.Exec(t, "ip", "-brief", "addr"); !strings.Contains(out, "10.98.7.2/24") || !strings.Contains(out, "fd98::3/64") {
			t.Errorf("client addresses:\n%s", out)
		}
	})
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists after cleanup (%v)", n, err)
		}
	}
}
