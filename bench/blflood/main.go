// Command blflood is the load tool of bench/blacklist.sh: a banned source
// flooding pbxgate's SIP UDP port, and the report of the runs.
//
//	blflood flood -src 10.98.9.2 -dst 10.98.9.1:5060 -duration 10s -max 20000000
//	blflood report RAW OUT.txt OUT.json
//
// flood sends one SIP OPTIONS request over and over from a socket bound to
// -src and connected to -dst, -batch datagrams per sendmmsg call, until
// -duration has passed or -max datagrams are sent (whichever comes first),
// optionally paced to -rate datagrams per second. It is meant to run in
// the client namespace (ip netns exec). It prints one line:
//
//	BLFLOOD sent=N secs=S pps=R cpu=C errors=E size=BYTES
//
// cpu is the flooder's own CPU seconds (user + system), which on veth also
// carries the receiving side's softirq work done on the sending CPU.
//
// report reads the raw key=value results bench/blacklist.sh wrote (see
// there for the keys), takes the median of the rounds per case, and writes
// a table and the same as JSON. Exit status 0 when the checks pass, 1 when
// not, 2 on failure.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "flood":
		err = flood(os.Args[2:])
	case "report":
		var pass bool
		pass, err = report(os.Args[2:])
		if err == nil && !pass {
			os.Exit(1)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "blflood:", err)
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: blflood flood [flags] | blflood report RAW OUT.txt OUT.json")
	os.Exit(2)
}

// options is one instance of the message; Call-ID and branch do not change
// (the gateway drops it before it looks).
const options = "OPTIONS sip:pbx.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.98.9.2:5060;branch=z9hG4bK-blflood\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: <sip:scan@pbx.example.com>;tag=blflood\r\n" +
	"To: <sip:100@pbx.example.com>\r\n" +
	"Call-ID: blflood@10.98.9.2\r\n" +
	"CSeq: 1 OPTIONS\r\n" +
	"User-Agent: friendly-scanner\r\n" +
	"Content-Length: 0\r\n\r\n"

func flood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	src := fs.String("src", "", "source address (must exist in this namespace)")
	dst := fs.String("dst", "", "destination address:port")
	duration := fs.Duration("duration", 10*time.Second, "longest run")
	max := fs.Int64("max", 20_000_000, "most datagrams sent")
	batch := fs.Int("batch", 64, "datagrams per sendmmsg call (1..1024)")
	rate := fs.Int64("rate", 0, "datagrams per second; 0: as fast as possible")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := netip.ParseAddr(*src)
	if err != nil || !s.Is4() {
		return fmt.Errorf("-src %q: want an IPv4 address", *src)
	}
	d, err := netip.ParseAddrPort(*dst)
	if err != nil || !d.Addr().Is4() {
		return fmt.Errorf("-dst %q: want IPv4 address:port", *dst)
	}
	if *batch < 1 || *batch > 1024 || *duration <= 0 || *max <= 0 || *rate < 0 {
		return errors.New("-batch must be 1..1024, -duration and -max positive, -rate not negative")
	}

	// A plain blocking socket: the flooder does nothing else, and the
	// netpoller would only add work.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: s.As4()}); err != nil {
		return fmt.Errorf("bind %v: %w", s, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: d.Addr().As4(), Port: int(d.Port())}); err != nil {
		return fmt.Errorf("connect %v: %w", d, err)
	}
	msg := []byte(options)
	hdrs := make([]unix.Mmsghdr, *batch)
	iovs := make([]unix.Iovec, *batch)
	for i := range hdrs {
		iovs[i].Base = &msg[0]
		iovs[i].SetLen(len(msg))
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.Iovlen = 1
	}

	var before unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &before)
	start := time.Now()
	end := start.Add(*duration)
	var sent, errs int64
	for sent < *max {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		if *rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(*rate) * float64(time.Second)))
			if wait := due.Sub(now); wait > 0 {
				time.Sleep(min(wait, end.Sub(now)))
				continue
			}
		}
		n := min(int64(*batch), *max-sent)
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(n), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			sent += int64(r)
		case syscall.EINTR, syscall.EAGAIN, syscall.ENOBUFS, syscall.ECONNREFUSED:
			// ECONNREFUSED: an ICMP port unreachable from an earlier
			// datagram (pbxgate not listening yet, or gone).
			errs++
		default:
			return fmt.Errorf("sendmmsg after %d datagrams: %w", sent, e)
		}
	}
	secs := time.Since(start).Seconds()
	var after unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := tvSecs(after.Utime) - tvSecs(before.Utime) + tvSecs(after.Stime) - tvSecs(before.Stime)
	fmt.Printf("BLFLOOD sent=%d secs=%.3f pps=%.0f cpu=%.3f errors=%d size=%d\n", sent, secs, float64(sent)/secs, cpu, errs, len(msg))
	return nil
}

func tvSecs(tv unix.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }
