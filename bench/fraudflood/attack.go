package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The attackers run in a child process (this program re-executed as
// "fraudflood attack ..."), so that the operating system schedules them apart
// from the legitimate clients: in one Go process, a client woken for its
// next request would wait behind up to a thousand runnable attacker
// goroutines, and that wait is the load generator's, not the gateway's.
// The parent may start the child with a higher nice value for the same
// reason (real attackers do not share the users' CPU).
//
// Protocol on the child's standard streams: the child prints "ready" once
// its attackers are set up, starts them when it reads "go", and prints one
// JSON attackResult line when done. After "go" the parent sends "ban ADDR"
// for each ban pbxgate logs (see held). End of input aborts it.
//
// Bounds. Each attacker is one goroutine making one attempt at a time, so
// at most -attackers connections (and, while dialing, one context watcher
// goroutine of the net package each) exist at once. A connection attempt
// waits at most -connect-timeout for the handshake (a source whose SYNs a
// kernel blacklist drops gets no answer at all and would otherwise block
// until the kernel gives up, about two minutes), and a whole attempt at most
// -timeout; neither waits past the end of the phase.

// outcome classifies one attacker attempt.
type outcome int

const (
	answered401     outcome = iota // the login was refused: 401
	answeredOther                  // some other status
	refused                        // connection refused, or closed without an answer
	connectTimedOut                // no handshake within -connect-timeout: the SYN went unanswered (dropped)
	timedOut                       // connected, but no answer within -timeout, or closed unanswered after waiting (see lateClose)
	held                           // timedOut, and pbxgate had logged the source's ban by then: a refused connection held unanswered (fraud.refused_hold)
	otherError                     // anything else, e.g. no local port left to connect from
	unfinished                     // cut short by the end of the phase
)

// attackerStats is one attacker's tally. A "refusal" below is any sign of
// a ban: a connection refused or closed without an answer (pbxgate refuses
// a banned source at accept and closes the connection), one left
// unanswered after the source's ban (pbxgate holds it for
// fraud.refused_hold), or a handshake that never completed (the kernel
// blacklist drops its SYNs).
type attackerStats struct {
	attempts, n401, other, refused, held, connTimeouts, timeouts, errs, unfinished int
	firstRefusal                                                                   int           // attempts answered before the first refusal; -1: never refused
	answeredAfterBan, attemptsAfterBan                                             int           // after the first refusal
	refusedAt                                                                      time.Duration // when the first refusal came, from the start
	lastAnswerAt                                                                   time.Duration // when the last answer before it came
	firstErr                                                                       string
}

func (s *attackerStats) add(o outcome, err error) {
	s.attempts++
	if s.firstRefusal >= 0 {
		s.attemptsAfterBan++
		if o == answered401 || o == answeredOther {
			s.answeredAfterBan++
		}
	}
	switch o {
	case answered401:
		s.n401++
	case answeredOther:
		s.other++
	case refused, held, connectTimedOut:
		switch o {
		case refused:
			s.refused++
		case held:
			s.held++
		default:
			s.connTimeouts++
		}
		if s.firstRefusal < 0 {
			s.firstRefusal = s.n401 + s.other
		}
	case timedOut:
		s.timeouts++
	case otherError:
		s.errs++
	case unfinished:
		s.unfinished++
	}
	if err != nil && s.firstErr == "" && o != refused && o != held && o != connectTimedOut && o != unfinished {
		s.firstErr = err.Error()
	}
}

// attackResult is the child's report, summed over all attackers.
type attackResult struct {
	Attackers      int     `json:"attackers"`
	Duration       float64 `json:"duration_s"`
	Attempts       int     `json:"attempts"`
	AttemptsPerSec float64 `json:"attempts_per_s"`
	Answered401    int     `json:"answered_401"`
	AnsweredOther  int     `json:"answered_other"`
	Refused        int     `json:"refused"`
	// Held are attempts left unanswered (until -timeout, or closed after
	// lateClose) once pbxgate had logged the source's ban: refused
	// connections it held for fraud.refused_hold.
	Held int `json:"held"`
	// ConnectTimeouts are attempts whose handshake did not complete within
	// the connect timeout (SYNs dropped, by the kernel blacklist); Timeouts
	// are connected attempts that got no answer in time (or were closed
	// unanswered after waiting lateClose or more: turned away by the
	// unproven gate, not banned).
	ConnectTimeouts int     `json:"connect_timeouts"`
	Timeouts        int     `json:"timeouts"`
	ConnectTimeout  float64 `json:"connect_timeout_s"`
	Errors          int     `json:"errors"`
	Unfinished      int     `json:"unfinished"`
	// AnsweredBeforeBan sums, over the attackers, the answers each got
	// before its first refused (or connect-timed-out) attempt; NeverRefused counts attackers that
	// were never refused (not banned, or the phase ended first).
	AnsweredBeforeBan int `json:"answered_before_ban"`
	NeverRefused      int `json:"attackers_never_refused"`
	// BeforeBanHistogram maps "answers before the first refusal" to how many
	// attackers got that many.
	BeforeBanHistogram map[string]int `json:"answered_before_ban_histogram"`
	// AttemptsAfterBan are attempts made after an attacker's first refusal;
	// AnsweredAfterBan of them still got an HTTP answer.
	AttemptsAfterBan int `json:"attempts_after_ban"`
	AnsweredAfterBan int `json:"answered_after_ban"`
	// RefusedMedianMs and AllRefusedMs: by when half of the attackers, and
	// all that ever were, had their first attempt refused (ms from the
	// flood's start). LastAnswerMs: when the last answer to an attacker that
	// was later refused came, the end of the answered burst.
	RefusedMedianMs float64 `json:"refused_median_ms"`
	AllRefusedMs    float64 `json:"all_refused_ms"`
	LastAnswerMs    float64 `json:"last_answer_before_ban_ms"`
	FirstError      string  `json:"first_error,omitempty"`
}

func summarizeAttack(all []attackerStats, dur time.Duration) attackResult {
	r := attackResult{Attackers: len(all), Duration: dur.Seconds(), BeforeBanHistogram: map[string]int{}}
	var at []time.Duration
	for _, s := range all {
		if s.firstRefusal >= 0 {
			at = append(at, s.refusedAt)
			r.LastAnswerMs = max(r.LastAnswerMs, ms(s.lastAnswerAt))
		}
		r.Attempts += s.attempts
		r.Answered401 += s.n401
		r.AnsweredOther += s.other
		r.Refused += s.refused
		r.Held += s.held
		r.ConnectTimeouts += s.connTimeouts
		r.Timeouts += s.timeouts
		r.Errors += s.errs
		r.Unfinished += s.unfinished
		r.AttemptsAfterBan += s.attemptsAfterBan
		r.AnsweredAfterBan += s.answeredAfterBan
		if s.firstRefusal < 0 {
			r.NeverRefused++
			r.BeforeBanHistogram["never"]++
		} else {
			r.AnsweredBeforeBan += s.firstRefusal
			r.BeforeBanHistogram[strconv.Itoa(s.firstRefusal)]++
		}
		if r.FirstError == "" {
			r.FirstError = s.firstErr
		}
	}
	if dur > 0 {
		r.AttemptsPerSec = float64(r.Attempts) / dur.Seconds()
	}
	slices.Sort(at)
	r.RefusedMedianMs = ms(percentile(at, 5000))
	r.AllRefusedMs = ms(percentile(at, 10000))
	return r
}

// attacker is one brute-forcing source.
type attacker struct {
	idx         int
	src         *net.TCPAddr
	target      string
	host        string
	timeout     time.Duration // a whole attempt
	connTimeout time.Duration // its handshake; at most timeout
	attempts    int
	banned      *atomic.Bool // set when the parent says pbxgate logged this source's ban
	buf         []byte
}

// run makes up to a.attempts attempts from start until deadline, each on a
// new connection, retrying at once after any failure.
func (a *attacker) run(ctx context.Context, start, deadline time.Time) attackerStats {
	st := attackerStats{firstRefusal: -1}
	br := bufio.NewReaderSize(nil, 1024)
	for k := range a.attempts {
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		began := time.Since(start)
		o, err := a.attempt(ctx, k, deadline, br)
		before := st.firstRefusal
		st.add(o, err)
		switch {
		case before >= 0:
		case st.firstRefusal >= 0 && o == held:
			st.refusedAt = began // refused at once, noticed at the timeout
		case st.firstRefusal >= 0:
			st.refusedAt = time.Since(start)
		case o == answered401 || o == answeredOther:
			st.lastAnswerAt = time.Since(start)
		}
	}
	return st
}

func (a *attacker) attempt(ctx context.Context, k int, end time.Time, br *bufio.Reader) (outcome, error) {
	deadline := time.Now().Add(a.timeout)
	cut := false
	if end.Before(deadline) {
		deadline, cut = end, true
	}
	dialDeadline, dialCut := deadline, cut
	if ct := time.Now().Add(a.connTimeout); a.connTimeout > 0 && ct.Before(dialDeadline) {
		dialDeadline, dialCut = ct, false
	}
	d := net.Dialer{LocalAddr: a.src, Deadline: dialDeadline}
	c, err := d.DialContext(ctx, "tcp", a.target)
	if err != nil {
		o := classify(err, dialCut)
		if o == timedOut {
			o = connectTimedOut
		}
		return o, err
	}
	defer c.Close()
	connected := time.Now()
	_ = c.SetDeadline(deadline)
	a.buf = a.request(a.buf[:0], k)
	if _, err := c.Write(a.buf); err != nil {
		return a.unanswered(err, cut, time.Since(connected)), err
	}
	br.Reset(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return a.unanswered(err, cut, time.Since(connected)), err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return answered401, nil
	}
	return answeredOther, fmt.Errorf("status %d", resp.StatusCode)
}

// request appends attempt k's request: a wrong password for "admin".
func (a *attacker) request(b []byte, k int) []byte {
	b = append(b, "GET /login HTTP/1.1\r\nHost: "...)
	b = append(b, a.host...)
	b = append(b, "\r\nAuthorization: "...)
	b = append(b, basicAuth("admin", "guess-"+strconv.Itoa(a.idx)+"-"+strconv.Itoa(k))...)
	return append(b, "\r\nUser-Agent: fraudflood-attacker\r\nConnection: close\r\n\r\n"...)
}

// classify sorts a failed attempt. A connection closed without an answer
// (EOF, reset, broken pipe, refused) is the gateway refusing the source; cut
// says the attempt's deadline was the end of the phase.
func classify(err error, cut bool) outcome {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		if cut {
			return unfinished
		}
		return timedOut
	case errors.Is(err, context.Canceled):
		return unfinished
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return refused
	}
	return otherError
}

// lateClose separates a ban from a wait that ran out. pbxgate closes a
// banned source's connection at accept (or, if the ban came while it was
// open, at once); a connection it closes unanswered after holding it this
// long was a stranger's that waited for its turn (fraud.unproven_concurrency)
// until timeouts.first_bytes and was turned away: no answer in time, not a
// sign of a ban.
const lateClose = time.Second

// classifyAfter is classify for an attempt whose connection was open for
// open when err came.
func classifyAfter(err error, cut bool, open time.Duration) outcome {
	o := classify(err, cut)
	if o == refused && open >= lateClose {
		return timedOut
	}
	return o
}

// unanswered is classifyAfter for this attacker: an attempt left without
// an answer (timedOut) after pbxgate logged the source's ban was held. A
// ban is in force before it is logged, and pbxgate closes the connections
// a source has open when it is banned, so such an attempt began after the
// ban (or its connection would have been closed at once).
func (a *attacker) unanswered(err error, cut bool, open time.Duration) outcome {
	o := classifyAfter(err, cut, open)
	if o == timedOut && a.banned != nil && a.banned.Load() {
		return held
	}
	return o
}

// attackerIndex is attackerAddr's inverse for the first n attackers.
func attackerIndex(a netip.Addr, n int) (int, bool) {
	if !isAttacker(a, n) {
		return 0, false
	}
	b := a.As4()
	return (int(b[2])<<8 | int(b[3])) - 1, true
}

// readBans reads the parent's "ban ADDR" lines until in ends and marks the
// attackers named.
func readBans(in *bufio.Scanner, banned []atomic.Bool) {
	for in.Scan() {
		s, ok := strings.CutPrefix(in.Text(), "ban ")
		if !ok {
			continue
		}
		if a, err := parseAddr(s); err == nil {
			if i, ok := attackerIndex(a, len(banned)); ok {
				banned[i].Store(true)
			}
		}
	}
}

// attackMain is the child: "fraudflood attack -target ... ".
func attackMain(args []string) error {
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	target := fs.String("target", "", "gateway address host:port")
	host := fs.String("host", "portal.bench", "Host header")
	n := fs.Int("attackers", 1000, "attacker sources")
	attempts := fs.Int("attempts", 2000, "attempts per attacker at most")
	dur := fs.Duration("duration", 20*time.Second, "how long the flood lasts")
	timeout := fs.Duration("timeout", 5*time.Second, "per attempt")
	connTimeout := fs.Duration("connect-timeout", time.Second, "per connection handshake (at most -timeout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" || *n < 1 || *n > maxAttackers || *attempts < 1 || *dur <= 0 || *timeout <= 0 ||
		*connTimeout <= 0 || *connTimeout > *timeout {
		return errors.New("attack: bad arguments")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	atts := make([]*attacker, *n)
	banned := make([]atomic.Bool, *n)
	for i := range atts {
		atts[i] = &attacker{
			idx: i, src: net.TCPAddrFromAddrPort(netip.AddrPortFrom(attackerAddr(i), 0)),
			target: *target, host: *host, timeout: *timeout, connTimeout: *connTimeout, attempts: *attempts,
			banned: &banned[i],
		}
	}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready") // the first line, see child
	if !in.Scan() || in.Text() != "go" {
		return errors.New("attack: no go from the parent")
	}
	go func() { // end of input: the parent is gone
		readBans(in, banned)
		cancel()
	}()
	start := time.Now()
	deadline := start.Add(*dur)
	stats := make([]attackerStats, len(atts))
	var wg sync.WaitGroup
	for i, a := range atts {
		wg.Go(func() { stats[i] = a.run(ctx, start, deadline) })
	}
	wg.Wait()
	res := summarizeAttack(stats, time.Since(start))
	res.ConnectTimeout = connTimeout.Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}
