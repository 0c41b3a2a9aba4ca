package httpproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/listen"
)

// The lean path serves HTTP/1.1 connections with one goroutine and no
// per-request objects beyond one small string: it reads the request head
// into a pooled buffer, parses it (h1parse.go), decides with the same
// Handler.judge as the net/http path, rewrites the head and streams the
// message to a pooled backend connection (backend.go), then streams the
// answer back. Whatever it does not handle goes to net/http at a request
// boundary, with the bytes already read replayed (handoff).

var errEOF = io.EOF

// Buffer sizes: heads and small bodies; bulk copies.
const (
	smallBuf = 4 << 10
	bigBuf   = 32 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	bigBufs   = sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}
)

func getBuf(n int) *[]byte {
	switch {
	case n <= smallBuf:
		return smallBufs.Get().(*[]byte)
	case n <= bigBuf:
		return bigBufs.Get().(*[]byte)
	}
	b := make([]byte, n)
	return &b
}

func putBuf(p *[]byte) {
	switch cap(*p) {
	case smallBuf:
		*p = (*p)[:smallBuf]
		smallBufs.Put(p)
	case bigBuf:
		*p = (*p)[:bigBuf]
		bigBufs.Put(p)
	}
}

// Limits of the lean path.
const (
	maxResponseHead = 1 << 20 // as the net/http Transport's MaxResponseHeaderBytes
	max1xx          = 5       // informational responses per request, as net/http
	expectWait      = time.Second
	lingerTime      = 500 * time.Millisecond // reading what a refused client still sends
	lingerBytes     = 4 << 20
	maxMergedBody   = 16 << 10 // bodies up to this size go out in the head's write
)

// leanConn states, for Shutdown.
const (
	leanActive int32 = iota
	leanIdle
	leanClosed
	leanHandedOff
)

type leanConn struct {
	s     *Server
	c     net.Conn
	cs    connectionStater // nil on plaintext
	sni   string
	raw   syscall.RawConn              // plaintext socket, for waiting without a buffer
	io    sockIO                       // raw reads and writes of raw, when set
	peek  interface{ Peeked() []byte } // the listener's replay, if any
	ready func(uintptr) bool           // readReady, bound once
	peer  netip.Addr
	state atomic.Int32
	bc    atomic.Pointer[bconn] // backend connection in use

	readErr   error
	bufp      *[]byte // client read buffer; nil while idle
	buf       []byte
	r, w      int       // buf[r:w] is read but not consumed
	rdl       time.Time // read deadline in place
	one       [1]byte
	afterBody bool // the last request had a body: skip a stray CRLF
	settled   bool // listen.Settle has been called
}

// settle tells the listener, once, that the connection's first request
// has been handed to the backend or answered (listen.Settle).
func (lc *leanConn) settle() {
	if !lc.settled {
		lc.settled = true
		listen.Settle(lc.c)
	}
}

func newLeanConn(s *Server, c net.Conn, cs connectionStater) *leanConn {
	lc := &leanConn{s: s, c: c, cs: cs}
	if ra := c.RemoteAddr(); ra != nil {
		lc.peer = peerAddr(ra.String())
	}
	if cs != nil {
		lc.sni = cs.ConnectionState().ServerName
	} else {
		lc.raw = rawOf(c)
		lc.io.bind(c, lc.raw)
		lc.peek, _ = c.(interface{ Peeked() []byte })
		lc.ready = lc.readReady
	}
	return lc
}

type action int

const (
	actKeep action = iota
	actClose
	actHandedOff
)

// serve runs the connection until it closes or is handed to net/http.
func (lc *leanConn) serve() {
	defer lc.s.leanDone(lc)
	for {
		if lc.r == lc.w && !lc.awaitData() {
			lc.close()
			return
		}
		switch lc.serveOne() {
		case actClose:
			lc.close()
			return
		case actHandedOff:
			return
		}
		lc.settle()
		if lc.s.leanClosing.Load() {
			lc.close()
			return
		}
	}
}

func (lc *leanConn) close() {
	lc.state.Store(leanClosed)
	lc.releaseBuf()
	_ = lc.c.Close()
}

// closeIdle closes the connection if it waits for a request (Shutdown).
func (lc *leanConn) closeIdle() {
	if lc.state.CompareAndSwap(leanIdle, leanClosed) {
		_ = lc.c.Close()
	}
}

// forceClose closes the connection and its backend connection whatever
// they are doing (Shutdown after its context expired).
func (lc *leanConn) forceClose() {
	for {
		st := lc.state.Load()
		if st == leanHandedOff {
			return
		}
		if lc.state.CompareAndSwap(st, leanClosed) {
			break
		}
	}
	_ = lc.c.Close()
	if bc := lc.bc.Load(); bc != nil {
		_ = bc.c.Close()
	}
}

func (lc *leanConn) takeBuf(n int) {
	lc.bufp = getBuf(n)
	lc.buf = *lc.bufp
	lc.r, lc.w = 0, 0
}

func (lc *leanConn) releaseBuf() {
	if lc.bufp != nil {
		putBuf(lc.bufp)
		lc.bufp, lc.buf = nil, nil
	}
	lc.r, lc.w = 0, 0
}

func (lc *leanConn) setReadDeadline(t time.Time) {
	lc.rdl = t
	_ = lc.c.SetReadDeadline(t)
}

// clearReadDeadline removes the read deadline before a body is read:
// bodies have no time limit, as with net/http.
func (lc *leanConn) clearReadDeadline() {
	if !lc.rdl.IsZero() {
		lc.setReadDeadline(time.Time{})
	}
}

// read reads the client connection: through raw system calls when it
// is a plaintext socket whose sniffed bytes are consumed.
func (lc *leanConn) read(p []byte) (int, error) {
	if lc.io.rc != nil && (lc.peek == nil || len(lc.peek.Peeked()) == 0) {
		return lc.io.read(p)
	}
	return lc.c.Read(p)
}

// write writes to the client connection.
func (lc *leanConn) write(p []byte) (int, error) {
	if lc.io.rc != nil {
		return lc.io.write(p)
	}
	return lc.c.Write(p)
}

// awaitData waits, without holding a buffer where it can, for the next
// request's first bytes, at most IdleTimeout. It reports false when the
// connection is to be closed.
func (lc *leanConn) awaitData() bool {
	lc.releaseBuf()
	lc.state.Store(leanIdle)
	if lc.s.leanClosing.Load() {
		return false
	}
	idle := lc.s.idleTimeout
	want := time.Now().Add(idle)
	if lc.rdl.IsZero() || lc.rdl.After(want) || want.Sub(lc.rdl) > idle/64 {
		lc.setReadDeadline(want)
	}
	var err error
	if lc.raw != nil && (lc.peek == nil || len(lc.peek.Peeked()) == 0) {
		lc.readErr = nil
		err = lc.raw.Read(lc.ready)
		if err == nil {
			err = lc.readErr
		}
	} else {
		var n int
		n, err = lc.c.Read(lc.one[:])
		if n == 1 {
			lc.takeBuf(smallBuf)
			lc.buf[0] = lc.one[0]
			lc.w = 1
			err = nil
		}
	}
	if !lc.state.CompareAndSwap(leanIdle, leanActive) {
		return false // closed by Shutdown
	}
	return err == nil && lc.w > lc.r
}

// fill reads more of the client's bytes into buf[w:], compacting or
// growing the buffer (up to limit bytes unconsumed) when it is full.
func (lc *leanConn) fill(limit int) error {
	if lc.w == len(lc.buf) {
		if lc.r > 0 {
			lc.w = copy(lc.buf, lc.buf[lc.r:lc.w])
			lc.r = 0
		} else {
			if len(lc.buf) >= limit {
				return errHeadTooLarge
			}
			lc.grow(min(2*len(lc.buf), limit))
		}
	}
	n, err := lc.read(lc.buf[lc.w:])
	lc.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// grow moves the unconsumed bytes into a buffer of at least n bytes.
func (lc *leanConn) grow(n int) {
	if n <= len(lc.buf) {
		return
	}
	np := getBuf(max(n, bigBuf))
	nb := *np
	w := copy(nb, lc.buf[lc.r:lc.w])
	if lc.bufp != nil {
		putBuf(lc.bufp)
	}
	lc.bufp, lc.buf = np, nb
	lc.r, lc.w = 0, w
}

// reqState is the pooled scratch space of one request on the lean path.
type reqState struct {
	rq, rp head
	out    []byte  // the request head for the backend, then framed body pieces
	rsp    []byte  // response heads and framed body pieces for the client
	meta   []byte  // the strings of reqInfo, before they become one string
	bbufp  *[]byte // backend read buffer
	bb     []byte
	br, bw int // bb[br:bw] read from the backend, not yet consumed
	xff    []string
	chunk  chunkParser
	auth   string // Authorization value
	// The request's decision and exchange, here rather than on the stack
	// because the exchange's pointers escape.
	ri reqInfo
	v  verdict
	x  exchange
}

var reqStates = sync.Pool{New: func() any {
	return &reqState{out: make([]byte, 0, smallBuf), rsp: make([]byte, 0, smallBuf), meta: make([]byte, 0, 256)}
}}

func getReqState() *reqState { return reqStates.Get().(*reqState) }

func putReqState(rs *reqState) {
	if rs.bbufp != nil {
		putBuf(rs.bbufp)
		rs.bbufp, rs.bb = nil, nil
	}
	rs.br, rs.bw = 0, 0
	if cap(rs.out) > 64<<10 {
		rs.out = make([]byte, 0, smallBuf)
	}
	if cap(rs.rsp) > 64<<10 {
		rs.rsp = make([]byte, 0, smallBuf)
	}
	if cap(rs.rq.fields) > 256 {
		rs.rq.fields = nil
	}
	if cap(rs.rp.fields) > 256 {
		rs.rp.fields = nil
	}
	if cap(rs.meta) > 4<<10 {
		rs.meta = make([]byte, 0, 256)
	}
	if cap(rs.chunk.line) > 4<<10 {
		rs.chunk.line = nil
	}
	clear(rs.xff)
	rs.xff = rs.xff[:0]
	rs.auth = ""
	rs.ri, rs.v, rs.x = reqInfo{}, verdict{}, exchange{}
	reqStates.Put(rs)
}

// serveOne reads, decides and serves one request.
func (lc *leanConn) serveOne() action {
	s := lc.s
	if lc.afterBody {
		lc.afterBody = false
		for k := 0; k < 4 && lc.r < lc.w && (lc.buf[lc.r] == '\r' || lc.buf[lc.r] == '\n'); k++ {
			lc.r++
		}
		if lc.r == lc.w {
			return actKeep
		}
	}
	start := time.Now()
	end, act := lc.readHead(start)
	if end < 0 {
		return act
	}
	rs := getReqState()
	defer putReqState(rs)
	hb := lc.buf[lc.r : lc.r+end]
	rq := &rs.rq
	if err := parseRequest(hb, rq); err != nil {
		var he *h1Error
		if !errors.As(err, &he) {
			he = errRequestLine
		}
		lc.refuse(he)
		return actClose
	}
	if !leanable(hb, rq) {
		return lc.handoff()
	}
	h := s.handler()
	if h == nil {
		return lc.handoff()
	}
	ri := &rs.ri
	*ri = lc.info(h, rs, hb, rq)
	if svc := h.route(routeKey(ri)); svc != nil && svc.pool == nil {
		return lc.handoff() // TLS backend: net/http's Transport speaks it
	}
	v := &rs.v
	*v = h.judge(ri)
	hasBody := rq.chunked || rq.contentLength > 0
	if v.status != 0 {
		lc.r += end
		closeAfter := v.status == http.StatusBadRequest || hasBody || rq.connClose || s.leanClosing.Load()
		lc.gatewayReply(v.status, closeAfter)
		h.logLean(ri, v, v.status, int64(len(gatewayBodies[v.status])), start)
		if closeAfter {
			if hasBody {
				lc.linger()
			}
			return actClose
		}
		return actKeep
	}
	x := &rs.x
	*x = exchange{lc: lc, h: h, rs: rs, ri: ri, v: v, rq: rq, start: start}
	return x.run(hb, end)
}

// readHead reads until buf[r:] holds a complete head and returns its
// length; -1 and what to do with the connection when it does not come.
func (lc *leanConn) readHead(start time.Time) (int, action) {
	limit := lc.s.maxHeaderBytes + 4096 // as net/http
	scanned := 0
	timed := false
	for {
		end := headEnd(lc.buf[lc.r:lc.w], scanned)
		if end > limit || end < 0 && lc.w-lc.r >= limit {
			lc.refuse(errHeadTooLarge)
			return -1, actClose
		}
		if end >= 0 {
			return end, actKeep
		}
		scanned = lc.w - lc.r
		if !timed {
			timed = true
			lc.setReadDeadline(start.Add(lc.s.readHeaderTimeout))
		}
		if err := lc.fill(limit); err != nil {
			if errors.Is(err, errHeadTooLarge) {
				lc.refuse(errHeadTooLarge)
			}
			return -1, actClose
		}
	}
}

// leanable reports whether the lean path serves this request; the rest
// (HTTP/1.0, HTTP/2 preface, protocol upgrades, other expectations,
// absolute-form and authority-form targets, long Connection lists) goes
// to net/http.
func leanable(hb []byte, rq *head) bool {
	if rq.major != 1 || rq.minor != 1 || rq.upgrade || rq.expect && !rq.expectCont || rq.connTooMany {
		return false
	}
	t := rq.target.of(hb)
	return t[0] == '/' || len(t) == 1 && t[0] == '*'
}

// info fills the reqInfo of a request: its strings are one allocation.
func (lc *leanConn) info(h *Handler, rs *reqState, hb []byte, rq *head) reqInfo {
	m := rs.meta[:0]
	m = append(m, rq.method.of(hb)...)
	a := len(m)
	m = append(m, rq.target.of(hb)...)
	b := len(m)
	if rq.host >= 0 {
		m = append(m, rq.fields[rq.host].value.of(hb)...)
	}
	c := len(m)
	if rq.auth >= 0 {
		m = append(m, rq.fields[rq.auth].value.of(hb)...)
	}
	str := string(m)
	rs.meta = m
	rs.auth = str[c:]
	ri := reqInfo{
		method: str[:a],
		uri:    str[a:b],
		proto:  "HTTP/1.1",
		host:   str[b:c],
		tls:    lc.cs != nil,
		sni:    lc.sni,
		peer:   lc.peer,
	}
	if len(h.trusted) > 0 && h.trusted.contains(lc.peer) {
		for i := range rq.fields {
			if f := &rq.fields[i]; f.kind == hXForwardedFor {
				rs.xff = append(rs.xff, string(f.value.of(hb)))
			}
		}
		ri.xff = rs.xff
	}
	return ri
}

// routeKey is the host a request is routed by, as judge computes it.
func routeKey(ri *reqInfo) string {
	host := ri.host
	if host == "" && ri.tls {
		host = ri.sni
	}
	return hostKey(host)
}

// handoff gives the connection to net/http, replaying the unconsumed
// bytes (the current request and anything after it).
func (lc *leanConn) handoff() action {
	var pending []byte
	if lc.w > lc.r {
		pending = bytes.Clone(lc.buf[lc.r:lc.w])
	}
	lc.releaseBuf()
	lc.state.Store(leanHandedOff)
	_ = lc.c.SetReadDeadline(time.Time{})
	_ = lc.s.handoff(&replayed{Conn: lc.c, pending: pending}, lc.cs)
	return actHandedOff
}

// replayed returns pending before reading the connection.
type replayed struct {
	net.Conn
	pending []byte
}

// NetConn returns the connection below (for listen.Settle).
func (c *replayed) NetConn() net.Conn { return c.Conn }

func (c *replayed) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// refuse answers a malformed request as net/http does (the status line
// says why) and reports it.
func (lc *leanConn) refuse(he *h1Error) {
	text := http.StatusText(he.status)
	line := strconv.Itoa(he.status) + " " + text
	if he.status == http.StatusBadRequest {
		line += ": " + he.msg
	}
	lc.s.events.Emit(event.Event{
		Time:     lc.s.now(),
		Kind:     event.RejectedByGateway,
		Source:   lc.peer,
		Listener: lc.s.listener,
		Proto:    "http",
		Reason:   event.ReasonBadRequest,
		Detail:   event.Clip(line, 128),
	})
	_, _ = io.WriteString(lc.c, "HTTP/1.1 "+strconv.Itoa(he.status)+" "+text+
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+line)
	lc.linger()
}

// linger half-closes the connection and reads what the client still
// sends for a moment, so that closing does not reset the connection
// before the client has read the answer.
func (lc *leanConn) linger() {
	if cw, ok := lc.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	lc.setReadDeadline(time.Now().Add(lingerTime))
	if lc.bufp == nil {
		lc.takeBuf(smallBuf)
	}
	for n := 0; n < lingerBytes; {
		k, err := lc.read(lc.buf)
		n += k
		if err != nil {
			return
		}
	}
}

// gatewayResponses are the gateway's own answers, prebuilt.
var gatewayResponses = func() map[int][2][]byte {
	m := make(map[int][2][]byte)
	for code, body := range gatewayBodies {
		var r [2][]byte
		for i, conn := range []string{"", "Connection: close\r\n"} {
			r[i] = []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n" +
				"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" + conn + "\r\n" + body)
		}
		m[code] = r
	}
	return m
}()

func (lc *leanConn) gatewayReply(code int, closeAfter bool) error {
	i := 0
	if closeAfter || code == http.StatusBadRequest {
		i = 1
	}
	_, err := lc.write(gatewayResponses[code][i])
	return err
}

// logLean writes the access line of a lean request.
func (h *Handler) logLean(ri *reqInfo, v *verdict, status int, n int64, start time.Time) {
	if h.accessLog {
		h.logAccess(ri, v, status, n, h.now().Sub(start))
	}
}

// exchange is one proxied request on the lean path.
type exchange struct {
	lc    *leanConn
	h     *Handler
	rs    *reqState
	ri    *reqInfo
	v     *verdict
	rq    *head
	start time.Time

	bc        *bconn
	bodyLeft  int64 // Content-Length bytes of the request not yet sent
	bodyDone  bool  // the request body is fully read from the client
	bodySent  bool  // the request body is fully written to the backend
	clientErr bool  // the client failed or sent a bad body: close it
	status    int   // final status sent to the client, 0 before
	bytes     int64 // response body bytes sent to the client
}

// Errors of the exchange that are the client's doing.
var errClientGone = errors.New("client connection failed")

type backendErr struct {
	err     error
	timeout bool // response header timeout: 504
	any     bool // some response byte arrived
}

func (x *exchange) run(hb []byte, end int) action {
	lc, rq, rs := x.lc, x.rq, x.rs
	isHead := string(rq.method.of(hb)) == http.MethodHead
	hasBody := rq.chunked || rq.contentLength > 0
	idempotent := !hasBody && isIdempotent(rq.method.of(hb))
	trusted := len(x.h.trusted) > 0 && x.h.trusted.contains(lc.peer)
	out := buildRequestHead(rs.out[:0], hb, rq, x.ri, trusted)
	lc.r += end
	x.bodyDone = !hasBody
	x.bodySent = !hasBody
	if rq.contentLength > 0 {
		x.bodyLeft = rq.contentLength
	}
	// A small body already read goes out with the head.
	if !rq.expectCont && x.bodyLeft > 0 && x.bodyLeft <= int64(lc.w-lc.r) && x.bodyLeft <= maxMergedBody {
		n := int(x.bodyLeft)
		out = append(out, lc.buf[lc.r:lc.r+n]...)
		lc.r += n
		x.bodyLeft = 0
		x.bodyDone = true
		x.bodySent = true
	}
	rs.out = out

	pool := x.v.svc.pool
	ctx := lc.s.baseCtx
	bc, err := pool.get(ctx, x.start, !idempotent)
	if err != nil {
		return x.fail(backendErr{err: err})
	}
	x.bc = bc
	lc.bc.Store(bc)
	defer lc.bc.Store(nil)

	var berr backendErr
	for attempt := 0; ; attempt++ {
		berr = x.roundTrip(isHead)
		if berr.err == nil || berr.any || attempt > 0 || !bc.reused || !idempotent || x.clientErr {
			break
		}
		// A reused connection the backend had closed: once more on a
		// fresh one, as net/http does for idempotent requests.
		_ = bc.c.Close()
		bc, err = pool.dial(ctx)
		if err != nil {
			berr = backendErr{err: err}
			x.bc = nil
			break
		}
		x.bc = bc
		lc.bc.Store(bc)
		rs.br, rs.bw = 0, 0
	}
	if berr.err != nil {
		if x.bc != nil {
			_ = x.bc.c.Close()
			x.bc = nil
		}
		if x.clientErr {
			return actClose
		}
		return x.fail(berr)
	}
	x.h.logLean(x.ri, x.v, x.status, x.bytes, x.start)
	if !x.bodyDone && !x.clientErr {
		lc.linger() // the client may still be sending the body
	}
	if x.clientErr || !x.bodyDone || rq.connClose {
		return actClose
	}
	if hasBody {
		lc.afterBody = true
	}
	return actKeep
}

// fail answers 502 or 504 for a backend failure before any response
// reached the client, or closes the client connection after one did.
func (x *exchange) fail(berr backendErr) action {
	lc := x.lc
	if x.status != 0 {
		// The answer was under way: all the client can learn is that it
		// is cut short.
		x.h.log.Debug("backend failed mid-response", "service", x.v.svc.name, "err", berr.err)
		x.h.logLean(x.ri, x.v, x.status, x.bytes, x.start)
		return actClose
	}
	status := http.StatusBadGateway
	if berr.timeout {
		status = http.StatusGatewayTimeout
	}
	if lc.s.baseCtx.Err() != nil {
		x.h.log.Debug("request canceled", "service", x.v.svc.name, "err", berr.err)
	} else {
		x.h.emit(event.BackendUnreachable, x.v.src, x.v.svc.name, event.ReasonDial, "", event.Clip(berr.err.Error(), 200))
	}
	closeAfter := !x.bodyDone || x.rq.connClose || lc.s.leanClosing.Load()
	x.status = status
	if err := lc.gatewayReply(status, closeAfter); err != nil {
		closeAfter = true
	}
	x.h.logLean(x.ri, x.v, status, int64(len(gatewayBodies[status])), x.start)
	if closeAfter {
		if !x.bodyDone && !x.clientErr {
			lc.linger()
		}
		return actClose
	}
	if x.rq.chunked || x.rq.contentLength > 0 {
		lc.afterBody = true
	}
	return actKeep
}

// roundTrip sends the request on x.bc and relays the answer. On success
// the backend connection has been returned to the pool or closed.
func (x *exchange) roundTrip(isHead bool) backendErr {
	lc, rs, rq := x.lc, x.rs, x.rq
	bc := x.bc
	deadline := x.start.Add(x.h.responseHeaderTimeout)
	if _, err := bc.write(rs.out); err != nil {
		return backendErr{err: err}
	}
	// With Expect: 100-continue the body waits for the backend's 100, at
	// most expectWait, as net/http's ExpectContinueTimeout.
	bodyPending := rq.expectCont && !x.bodyDone
	expectTimer := bodyPending
	if !bodyPending && !x.bodyDone {
		// A backend write error may come with an early answer: read on.
		if err := x.sendBody(); err != nil && x.clientErr {
			return backendErr{err: err}
		}
	}
	lc.settle() // the backend has the request; its answer costs little
	bc.setReadDeadline(deadline, x.h.responseHeaderTimeout/64)
	n1xx := 0
	rp := &rs.rp
	var end int
	for {
		var rdl time.Time
		if expectTimer {
			if rdl = time.Now().Add(expectWait); rdl.After(deadline) {
				rdl = deadline
			}
		}
		var any bool
		var err error
		end, any, err = x.readResponseHead(rdl)
		if err != nil {
			var ne net.Error
			if expectTimer && errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline) {
				expectTimer = false
				bc.setReadDeadline(deadline, 0)
				if any {
					continue // an answer is arriving
				}
				// The backend is silent: tell the client to go on and
				// send the body.
				bodyPending = false
				if _, err := io.WriteString(lc.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
					x.clientErr = true
					return backendErr{err: errClientGone}
				}
				if err := x.sendBody(); err != nil && x.clientErr {
					return backendErr{err: err}
				}
				continue
			}
			timeout := errors.As(err, &ne) && ne.Timeout()
			if timeout {
				err = errors.New("timeout awaiting response headers")
			}
			return backendErr{err: err, timeout: timeout, any: any}
		}
		hb := rs.bb[rs.br : rs.br+end]
		if err := parseResponse(hb, rp); err != nil {
			return backendErr{err: errors.New("malformed HTTP response: " + err.Error()), any: true}
		}
		if rp.status >= 200 {
			break
		}
		if rp.status == http.StatusSwitchingProtocols {
			return backendErr{err: errUnexpectedUpgrade, any: true}
		}
		if n1xx++; n1xx > max1xx {
			return backendErr{err: errTooMany1xx, any: true}
		}
		out := appendStatusLine(rs.rsp[:0], hb, rp)
		out = appendResponseFields(out, hb, rp, false)
		out = append(out, '\r', '\n')
		rs.rsp = out
		rs.br += end
		if _, err := lc.write(out); err != nil {
			x.clientErr = true
			return backendErr{err: errClientGone}
		}
		if bodyPending && rp.status == http.StatusContinue {
			bodyPending, expectTimer = false, false
			bc.setReadDeadline(deadline, 0)
			if err := x.sendBody(); err != nil && x.clientErr {
				return backendErr{err: err}
			}
		}
	}
	return x.relayResponse(isHead, end)
}

// sendBody streams the rest of the request body to the backend.
func (x *exchange) sendBody() error {
	if x.bodyDone {
		return nil
	}
	lc, bc := x.lc, x.bc
	lc.clearReadDeadline()
	if !x.rq.chunked {
		for x.bodyLeft > 0 {
			if lc.r == lc.w {
				if x.bodyLeft > int64(len(lc.buf)) && len(lc.buf) < bigBuf {
					lc.grow(bigBuf)
				}
				lc.r, lc.w = 0, 0
				n, err := lc.read(lc.buf[:min(int64(len(lc.buf)), x.bodyLeft)])
				lc.w = n
				if n == 0 {
					x.clientErr = true
					if err == nil {
						err = io.ErrNoProgress
					}
					return err
				}
			}
			n := int(min(int64(lc.w-lc.r), x.bodyLeft))
			_, err := bc.write(lc.buf[lc.r : lc.r+n])
			lc.r += n
			x.bodyLeft -= int64(n)
			if err != nil {
				return err
			}
		}
		x.bodyDone, x.bodySent = true, true
		return nil
	}
	rs := x.rs
	cp := &rs.chunk
	cp.reset(lc.s.maxHeaderBytes)
	out := rs.out[:0]
	limit := max(cap(out)-64, smallBuf)
	for {
		n, o, _, err := cp.feed(lc.buf[lc.r:lc.w], out, limit)
		out = o
		lc.r += n
		if err != nil {
			x.clientErr = true
			x.badBody(err)
			return err
		}
		if cp.done() || len(out) >= limit || lc.r == lc.w {
			if _, err := bc.write(out); err != nil {
				rs.out = out[:0]
				return err
			}
			out = out[:0]
		}
		if cp.done() {
			break
		}
		if lc.r == lc.w {
			if len(lc.buf) < bigBuf {
				lc.grow(bigBuf)
			}
			lc.r, lc.w = 0, 0
			n, err := lc.read(lc.buf)
			lc.w = n
			if n == 0 {
				x.clientErr = true
				if err == nil {
					err = io.ErrNoProgress
				}
				rs.out = out
				return err
			}
		}
	}
	rs.out = out
	x.bodyDone, x.bodySent = true, true
	return nil
}

// badBody answers a malformed chunked request body with 400.
func (x *exchange) badBody(err error) {
	var he *h1Error
	if !errors.As(err, &he) {
		return
	}
	x.h.emit(event.RejectedByGateway, x.v.src, x.v.svc.name, event.ReasonBadRequest, "",
		"400 Bad Request: "+he.msg)
	if x.status == 0 {
		x.status = http.StatusBadRequest
		_ = x.lc.gatewayReply(http.StatusBadRequest, true)
	}
}

// readResponseHead reads until rs.bb[br:] holds a complete response head,
// under the read deadline rdl (zero: the one in place).
func (x *exchange) readResponseHead(rdl time.Time) (end int, any bool, err error) {
	rs, bc := x.rs, x.bc
	if rs.bbufp == nil {
		rs.bbufp = getBuf(smallBuf)
		rs.bb = *rs.bbufp
		rs.br, rs.bw = 0, 0
	}
	if !rdl.IsZero() {
		bc.setReadDeadline(rdl, 0)
	}
	scanned := 0
	for {
		if rs.bw > rs.br {
			any = true
			if end = headEnd(rs.bb[rs.br:rs.bw], scanned); end >= 0 {
				return end, true, nil
			}
			scanned = rs.bw - rs.br
			if scanned >= maxResponseHead {
				return 0, true, errResponseTooLarge
			}
		}
		if err := x.fillBackend(maxResponseHead + 4096); err != nil {
			return 0, any, err
		}
	}
}

// fillBackend reads more of the backend's bytes into bb, compacting or
// growing it up to limit.
func (x *exchange) fillBackend(limit int) error {
	rs := x.rs
	if rs.bw == len(rs.bb) {
		if rs.br > 0 {
			rs.bw = copy(rs.bb, rs.bb[rs.br:rs.bw])
			rs.br = 0
		} else {
			if len(rs.bb) >= limit {
				return errResponseTooLarge
			}
			np := getBuf(max(min(2*len(rs.bb), limit), bigBuf))
			nb := *np
			rs.bw = copy(nb, rs.bb[rs.br:rs.bw])
			rs.br = 0
			putBuf(rs.bbufp)
			rs.bbufp, rs.bb = np, nb
		}
	}
	n, err := x.bc.read(rs.bb[rs.bw:])
	rs.bw += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// relayResponse sends the final response whose head is at rs.bb[br:] to
// the client and streams its body.
func (x *exchange) relayResponse(isHead bool, end int) backendErr {
	lc, rs, rp, bc := x.lc, x.rs, &x.rs.rp, x.bc
	hb := rs.bb[rs.br : rs.br+end]
	code := rp.status
	const (
		bodyNone = iota
		bodyLength
		bodyChunked
		bodyClose
	)
	mode := bodyClose
	switch {
	case isHead || code == http.StatusNoContent || code == http.StatusNotModified:
		mode = bodyNone
	case rp.teOther:
		return backendErr{err: errors.New("unsupported transfer encoding in response"), any: true}
	case rp.chunked:
		mode = bodyChunked
	case rp.contentLength >= 0:
		mode = bodyLength
	}
	reuse := !rp.connClose && (rp.minor >= 1 || rp.connKeepAlive) && mode != bodyClose && x.bodySent
	closeClient := mode == bodyClose || !x.bodyDone || x.rq.connClose || lc.s.leanClosing.Load()

	x.status = code
	x.h.statusEvent(x.v.svc, x.v.src, code, rs.auth)

	out := appendStatusLine(rs.rsp[:0], hb, rp)
	out = appendResponseFields(out, hb, rp, mode == bodyChunked)
	switch {
	case mode == bodyChunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	case rp.contentLength >= 0 && mode != bodyClose && !rp.chunked:
		out = append(out, "Content-Length: "...)
		out = appendInt(out, rp.contentLength)
		out = append(out, '\r', '\n')
	}
	if closeClient {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, '\r', '\n')
	rs.br += end

	var err error
	switch mode {
	case bodyNone:
		_, err = lc.write(out)
	case bodyLength:
		out, err = x.relayLength(out, rp.contentLength)
	case bodyChunked:
		out, err = x.relayChunked(out)
	case bodyClose:
		out, err = x.relayUntilEOF(out)
	}
	rs.rsp = out
	if err != nil {
		if errors.Is(err, errClientGone) {
			x.clientErr = true
		}
		return backendErr{err: err, any: true}
	}
	if rs.bw != rs.br {
		reuse = false // the backend sent more than its response
	}
	x.bc = nil
	lc.bc.Store(nil)
	if reuse {
		x.v.svc.pool.put(bc, time.Now())
	} else {
		_ = bc.c.Close()
	}
	if closeClient {
		x.rq.connClose = true
	}
	return backendErr{}
}

// writeClient writes to the client; its failure is errClientGone.
func (x *exchange) writeClient(p []byte) error {
	if _, err := x.lc.write(p); err != nil {
		return errClientGone
	}
	return nil
}

// relayLength sends head (in out) and n body bytes.
func (x *exchange) relayLength(out []byte, n int64) ([]byte, error) {
	rs, bc := x.rs, x.bc
	avail := int64(rs.bw - rs.br)
	if avail >= n && n <= maxMergedBody {
		out = append(out, rs.bb[rs.br:rs.br+int(n)]...)
		rs.br += int(n)
		x.bytes += n
		return out, x.writeClient(out)
	}
	if err := x.writeClient(out); err != nil {
		return out, err
	}
	for n > 0 {
		if rs.br == rs.bw {
			if n > int64(len(rs.bb)) && len(rs.bb) < bigBuf {
				putBuf(rs.bbufp)
				rs.bbufp = getBuf(bigBuf)
				rs.bb = *rs.bbufp
			}
			rs.br, rs.bw = 0, 0
			bc.setReadDeadline(time.Time{}, 0)
			k, err := bc.read(rs.bb[:min(int64(len(rs.bb)), n)])
			rs.bw = k
			if k == 0 {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return out, err
			}
		}
		k := int(min(int64(rs.bw-rs.br), n))
		if err := x.writeClient(rs.bb[rs.br : rs.br+k]); err != nil {
			return out, err
		}
		rs.br += k
		n -= int64(k)
		x.bytes += int64(k)
	}
	return out, nil
}

// relayChunked sends head (in out) and the chunked body, reframed.
func (x *exchange) relayChunked(out []byte) ([]byte, error) {
	rs, bc := x.rs, x.bc
	cp := &rs.chunk
	cp.reset(maxResponseHead)
	limit := max(cap(out)-64, smallBuf)
	for {
		n, o, data, err := cp.feed(rs.bb[rs.br:rs.bw], out, limit)
		out = o
		rs.br += n
		x.bytes += int64(data)
		if err != nil {
			return out, errors.New("malformed chunked response: " + err.Error())
		}
		if cp.done() || len(out) >= limit || rs.br == rs.bw {
			if err := x.writeClient(out); err != nil {
				return out, err
			}
			out = out[:0]
		}
		if cp.done() {
			return out, nil
		}
		if rs.br == rs.bw {
			rs.br, rs.bw = 0, 0
			bc.setReadDeadline(time.Time{}, 0)
			k, err := bc.read(rs.bb)
			rs.bw = k
			if k == 0 {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return out, err
			}
		}
	}
}

// relayUntilEOF sends head (in out) and the body up to the backend's EOF.
func (x *exchange) relayUntilEOF(out []byte) ([]byte, error) {
	rs, bc := x.rs, x.bc
	out = append(out, rs.bb[rs.br:rs.bw]...)
	x.bytes += int64(rs.bw - rs.br)
	rs.br, rs.bw = 0, 0
	if err := x.writeClient(out); err != nil {
		return out, err
	}
	bc.setReadDeadline(time.Time{}, 0)
	for {
		k, err := bc.read(rs.bb)
		if k > 0 {
			x.bytes += int64(k)
			if err := x.writeClient(rs.bb[:k]); err != nil {
				return out, err
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func isIdempotent(m []byte) bool {
	switch string(m) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// buildRequestHead appends the head sent to the backend: the request line
// as received, the fields without hop-by-hop ones and (from untrusted
// peers) forwarding ones, then the forwarding fields and the framing, as
// the net/http path's ReverseProxy and rewrite produce them.
func buildRequestHead(out, hb []byte, rq *head, ri *reqInfo, trusted bool) []byte {
	out = append(out, rq.method.of(hb)...)
	out = append(out, ' ')
	out = append(out, rq.target.of(hb)...)
	out = append(out, " HTTP/1.1\r\n"...)
	host := ri.host
	if host == "" && ri.tls {
		host = ri.sni
	}
	hasProto, hasHost := false, false
	for i := range rq.fields {
		f := &rq.fields[i]
		switch f.kind {
		case hHost:
			if f.value.empty() && host != "" {
				out = append(out, "Host: "...)
				out = append(out, host...)
				out = append(out, '\r', '\n')
				continue
			}
		case hXForwardedFor:
			continue // rewritten below
		case hForwarded, hXForwardedOther, hXRealIP, hXForwardedProto, hXForwardedHost:
			if !trusted {
				continue
			}
			hasProto = hasProto || f.kind == hXForwardedProto
			hasHost = hasHost || f.kind == hXForwardedHost
		case hTrailer:
			if !rq.chunked || f.dropped {
				continue
			}
		default:
			if f.dropped || hopByHop(f.kind) {
				continue
			}
		}
		out = append(out, f.name.of(hb)...)
		out = append(out, ": "...)
		out = append(out, f.value.of(hb)...)
		out = append(out, '\r', '\n')
	}
	proto := "http"
	if ri.tls {
		proto = "https"
	}
	if ri.peer.IsValid() {
		out = append(out, "X-Forwarded-For: "...)
		for _, v := range ri.xff {
			out = append(out, v...)
			out = append(out, ", "...)
		}
		out = ri.peer.AppendTo(out)
		out = append(out, '\r', '\n')
	}
	if !hasProto {
		out = append(out, "X-Forwarded-Proto: "...)
		out = append(out, proto...)
		out = append(out, '\r', '\n')
	}
	if !hasHost && host != "" {
		out = append(out, "X-Forwarded-Host: "...)
		out = append(out, host...)
		out = append(out, '\r', '\n')
	}
	out = append(out, "Forwarded: "...)
	out = appendForwarded(out, ri.peer, proto, host)
	out = append(out, '\r', '\n')
	if rq.teTrailers {
		out = append(out, "Te: trailers\r\n"...)
	}
	switch {
	case rq.chunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	case rq.contentLength >= 0:
		out = append(out, "Content-Length: "...)
		out = appendInt(out, rq.contentLength)
		out = append(out, '\r', '\n')
	}
	return append(out, '\r', '\n')
}

// appendStatusLine appends the HTTP/1.1 status line of response rp.
func appendStatusLine(out, hb []byte, rp *head) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = appendInt(out, int64(rp.status))
	out = append(out, ' ')
	if rp.reason.empty() {
		out = append(out, http.StatusText(rp.status)...)
	} else {
		out = append(out, rp.reason.of(hb)...)
	}
	return append(out, '\r', '\n')
}

// appendResponseFields appends the response fields that are not
// hop-by-hop; Trailer is kept for chunked bodies.
func appendResponseFields(out, hb []byte, rp *head, chunked bool) []byte {
	for i := range rp.fields {
		f := &rp.fields[i]
		if f.dropped || hopByHop(f.kind) && !(f.kind == hTrailer && chunked) {
			continue
		}
		out = append(out, f.name.of(hb)...)
		out = append(out, ": "...)
		out = append(out, f.value.of(hb)...)
		out = append(out, '\r', '\n')
	}
	return out
}
