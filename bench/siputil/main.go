// Command siputil holds the helpers of bench/sip.sh, the SIP benchmark:
//
//	siputil ports N            print N loopback ports free for both TCP and UDP
//	siputil sippstat CALLS RATE FILE
//	                           summarise sipp's -trace_stat FILE of a run of
//	                           CALLS calls at RATE/s: one "SIPPSTAT pass=1|0
//	                           ok=... failed=... achieved=..." line; pass means
//	                           every call succeeded and the run took at most
//	                           CALLS/(0.95 RATE) + 0.5 s
//	siputil backend -addr A    the memory step's stub PBX: answers every SIP
//	                           request but ACK with 200 OK, on UDP and TCP at A
//	siputil udp -target A -pid P -n N
//	                           the memory step for UDP: N client sockets from
//	                           127.x.y.z sources each register once through
//	                           pbxgate's UDP listener A (a flow each), then
//	                           process P's VmRSS is read; one "SIPMEM ..." line
//	siputil tls -target A -pid P -n N
//	                           the same with N SIP-over-TLS connections to a
//	                           "tls: required" listener, held open while the
//	                           memory is read
//	siputil report RAW TXT JSON
//	                           read the key=value results RAW, print the table
//	                           to stdout and TXT, write JSON; exit 1 when a
//	                           target is not met
//
// The udp and tls steps raise their open-file limit (setrlimit) and open
// fewer sockets than asked when their own or pbxgate's limit is lower
// (pbxgate holds one descriptor per UDP flow and two per TLS connection);
// the result line says so and the report extrapolates.
//
// It is part of the benchmark harness, not of pbxgate. It talks only to the
// loopback addresses it is given.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("siputil: ")
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "ports":
		if len(args) != 1 {
			usage()
		}
		err = ports(os.Stdout, args[0])
	case "sippstat":
		err = sippstat(args)
	case "backend":
		err = runBackend(ctx, os.Stdout, args)
	case "udp", "tls":
		err = runMem(ctx, os.Stdout, os.Args[1], args)
	case "report":
		if len(args) != 3 {
			usage()
		}
		var pass bool
		pass, err = report(os.Stdout, args[0], args[1], args[2])
		if err == nil && !pass {
			stop()
			os.Exit(1)
		}
	default:
		usage()
	}
	if err != nil {
		stop()
		log.Print(err)
		os.Exit(2) // 1 is "a target was not met"
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: siputil ports N | sippstat CALLS RATE FILE | backend -addr A | udp|tls -target A -pid P -n N | report RAW TXT JSON")
	os.Exit(2)
}
