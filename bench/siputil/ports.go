package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
)

// ports prints n loopback ports that were free for both TCP and UDP: the
// SIP listeners of the benchmark use both on one port. The sockets are held
// until all are found, so the ports differ, then closed; another process may
// take a port before the caller binds it, and the caller then fails loudly.
func ports(w io.Writer, arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil || n <= 0 || n > 100 {
		return fmt.Errorf("ports: N must be 1..100, got %q", arg)
	}
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var found []int
	for attempt := 0; len(found) < n; attempt++ {
		if attempt >= 50*n {
			return fmt.Errorf("ports: found only %d of %d ports free for both TCP and UDP", len(found), n)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		held = append(held, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // UDP port taken: keep the TCP one held so it is not picked again
		}
		held = append(held, pc)
		found = append(found, port)
	}
	for _, p := range found {
		fmt.Fprintln(w, p)
	}
	return nil
}
