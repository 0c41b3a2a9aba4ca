package ldap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/listen"
)

const (
	readBufSize = 4 << 10
	// maxUserLen bounds the user name put into events.
	maxUserLen = 256
)

// ServeConn handles one accepted client connection and closes it before
// returning. c replays any bytes already sniffed by the listener and then
// continues with the socket; it may be a TLS-terminated connection. src is
// the client address.
//
// It reads the first message (within Options.Timeout), routes it (simple
// binds by Domain of the bind name, anonymous, SASL and StartTLS by policy),
// dials the backend, forwards the first message and relays both directions
// message by message. Every client BindRequest records its messageID and
// user; every server BindResponse emits event.Success (resultCode 0) or
// event.RejectedByService (invalid_credentials for 49, bind_failed for other
// codes; 14 saslBindInProgress emits nothing). Refusals, unknown domains,
// malformed first messages and unreachable backends emit events and answer
// the client with an LDAP error response before closing.
//
// The connection ends when the backend closes, when the client closes and
// the backend has finished answering (half-close), after Options.Idle
// without traffic, or when ctx is done. The returned error describes why
// the connection ended abnormally, for logging; it is nil for a normal end.
func (p *Proxy) ServeConn(ctx context.Context, c net.Conn, src netip.Addr) error {
	s := &session{
		p:          p,
		client:     c,
		src:        src.Unmap(),
		pending:    make(map[int64]pendingBind),
		tlsDecided: make(chan bool, 1),
		serverDone: make(chan struct{}),
	}
	defer s.closeAll()
	stop := context.AfterFunc(ctx, s.closeAll)
	defer stop()
	s.touch()

	crd := &idleReader{c: c, s: s, until: time.Now().Add(p.timeout)}
	s.cr = bufio.NewReaderSize(crd, readBufSize)
	msg, err := ReadMessage(s.cr, p.max)
	if err != nil {
		return s.firstMessageFailed(err)
	}
	req, name, err := parseRequest(msg)
	if err != nil {
		return s.firstMessageFailed(err)
	}
	t, ok, err := s.route(req, name)
	if !ok {
		return err
	}
	s.service = t.Service
	// Routing is decided without allocating. The bind name becomes a string
	// here only as the user of events (the pending bind's user, a dial
	// failure): that allocation is event reporting, not routing.
	user := eventUser(name)

	backend, err := s.dial(ctx, t)
	if err != nil {
		if s.isClosing() {
			return nil
		}
		s.emit(event.BackendUnreachable, event.ReasonDial, user, event.Clip(err.Error(), 200))
		s.answer(req, resultUnavailable, "backend unavailable")
		return fmt.Errorf("ldap: dial %s: %w", t.Service, err)
	}
	if !s.setBackend(backend) {
		backend.Close()
		return nil
	}
	s.br = bufio.NewReaderSize(&idleReader{c: backend, s: s}, readBufSize)
	s.bw = &deadlineWriter{c: backend, s: s}
	s.cw = &deadlineWriter{c: c, s: s}
	crd.until = time.Time{} // from now on the idle timeout applies

	switch req.Op {
	case OpBind:
		s.addPending(req.MessageID, pendingBind{user: user, intermediate: intermediateBind(req.Mechanism)})
	case OpStartTLS:
		s.setStartTLS(req.MessageID)
	}
	if _, err := s.bw.Write(msg); err != nil {
		if s.isClosing() {
			return nil
		}
		return fmt.Errorf("ldap: write to %s: %w", t.Service, err)
	}
	if req.Op == OpStartTLS {
		s.clientWaitsForTLS = true
	}
	listen.Settle(c) // the backend has the first request
	return s.relay()
}

// session is the state of one client connection.
type session struct {
	p       *Proxy
	client  net.Conn
	src     netip.Addr
	service string // routed service; set before the relay starts

	cr     *bufio.Reader   // from the client
	br     *bufio.Reader   // from the backend
	cw, bw *deadlineWriter // to the client (guarded by cwMu) and the backend

	// clientWaitsForTLS: the first message was StartTLS; the client side
	// must wait for its response before reading on.
	clientWaitsForTLS bool
	tlsDecided        chan bool     // server side → client side: StartTLS succeeded?
	serverDone        chan struct{} // closed when the server side has ended

	lastActivity atomic.Int64 // unix nanoseconds of the last read from either side

	cwMu sync.Mutex // serializes whole messages written to the client

	closeOnce sync.Once
	closing   atomic.Bool

	mu       sync.Mutex // guards the fields below
	backend  net.Conn
	pending  map[int64]pendingBind // binds in flight by messageID
	order    []int64               // pending IDs, oldest first
	startTLS int64                 // messageID+1 of a StartTLS in flight, 0 if none
}

func (s *session) firstMessageFailed(err error) error {
	switch {
	case errors.Is(err, io.EOF) || s.isClosing():
		return nil // connected and left, or shutting down
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.emit(event.RejectedByGateway, event.ReasonFirstBytesTimeout, "", "no complete LDAP message in time")
		return fmt.Errorf("ldap: first message: %w", err)
	case !isFormatError(err) && !errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("ldap: first message: %w", err) // a network error
	}
	s.emit(event.RejectedByGateway, event.ReasonMalformedBind, "", event.Clip(err.Error(), 200))
	s.writeClient(encodeNotice(resultProtocolError, "malformed LDAP message"), s.p.timeout)
	return fmt.Errorf("ldap: first message: %w", err)
}

// route picks the target for the first request (name is its bind name).
// ok false means the connection is done: refused (answered, evented, error
// returned) or finished without need of a backend (nil error).
func (s *session) route(req Request, name []byte) (t Target, ok bool, err error) {
	var domain [maxDomainLen]byte
	t, v := s.p.decide(req, name, domain[:0])
	switch v {
	case routeTarget:
		return t, true, nil
	case routeNone:
		return t, false, nil
	case refuseStartTLS:
		return t, false, s.refuse(req, eventUser(name), resultProtocolError, "StartTLS is not supported", "starttls refused")
	case refuseSASL:
		return t, false, s.refuse(req, eventUser(name), resultAuthMethodNotSupported, "SASL bind is not allowed",
			"sasl bind refused, mechanism "+event.Clip(req.Mechanism, 64))
	case refuseAnonymous:
		return t, false, s.refuse(req, eventUser(name), resultInappropriateAuth, "anonymous access is not allowed", "anonymous refused")
	}
	// refuseDomain: the domain is derived again, as a string for the event.
	d := event.Clip(Domain(string(name)), 128)
	s.emit(event.RejectedByGateway, event.ReasonUnknownDomain, eventUser(name), "domain "+strconv.Quote(d))
	s.answer(req, resultInvalidCredentials, "invalid credentials")
	return t, false, fmt.Errorf("ldap: domain %q: %w", d, ErrUnknownDomain)
}

// maxDomainLen is the room for a routing domain that decide uses without
// allocating; a DNS name has at most 253 octets.
const maxDomainLen = 256

// verdict is the outcome of the routing decision.
type verdict uint8

const (
	routeTarget     verdict = iota // relay to the target
	routeNone                      // Unbind or Abandon first: nothing to relay
	refuseStartTLS                 // StartTLS without Options.StartTLS
	refuseSASL                     // SASL bind without Options.SASL
	refuseAnonymous                // anonymous without Options.Anonymous
	refuseDomain                   // no domain or an unknown one, and no Default
)

// decide is the routing decision for the first request of a connection
// (name is its bind name, as parseRequest returns it): simple binds by the
// domain of the name, the rest by policy. buf is scratch room for the
// domain. It allocates nothing while the domain fits buf.
func (p *Proxy) decide(req Request, name, buf []byte) (Target, verdict) {
	o := &p.opts
	pick := func(t *Target, refusal verdict) (Target, verdict) {
		if t == nil {
			return Target{}, refusal
		}
		return *t, routeTarget
	}
	switch {
	case req.Op == OpStartTLS:
		return pick(o.StartTLS, refuseStartTLS)
	case req.Op == OpBind && req.Auth == AuthSASL:
		return pick(o.SASL, refuseSASL)
	case req.Op == OpOther && responseTag(req.Tag) < 0:
		return Target{}, routeNone
	case req.Op == OpOther || req.Anonymous:
		return pick(o.Anonymous, refuseAnonymous)
	}
	if domain := AppendDomain(buf[:0], name); len(domain) > 0 {
		if t, ok := o.Routes[string(domain)]; ok { // no allocation for the key
			return t, routeTarget
		}
	}
	return pick(o.Default, refuseDomain)
}

func (s *session) refuse(req Request, user string, code int, diag, detail string) error {
	s.emit(event.RejectedByGateway, event.ReasonBindRefused, user, detail)
	s.answer(req, code, diag)
	return fmt.Errorf("ldap: %s: %w", detail, ErrRefused)
}

// answer sends the client the response to req with the given result.
func (s *session) answer(req Request, code int, diag string) {
	s.writeClient(encodeAnswer(req.MessageID, req.Tag, code, diag, req.Op == OpStartTLS), s.p.timeout)
}

func (s *session) dial(ctx context.Context, t Target) (net.Conn, error) {
	if t.Dial == nil {
		return nil, errors.New("no dialer configured")
	}
	ctx, cancel := context.WithTimeout(ctx, s.p.timeout)
	defer cancel()
	return t.Dial(ctx)
}

// relay runs both directions until the connection ends.
func (s *session) relay() error {
	var c2s error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c2s = s.clientToServer(); c2s != nil {
			s.closeAll()
		}
	}()
	s2c := s.serverToClient()
	close(s.serverDone)
	s.closeAll()
	<-done
	return errors.Join(c2s, s2c)
}

// frame is the start of one relayed LDAPMessage.
type frame struct {
	op   byte   // identifier octet of protocolOp
	id   int64  // messageID
	hdr  []byte // octets read: message header, messageID, protocolOp header
	rest int    // octets of the message after hdr
	msg  []byte // the whole message if it fits MaxMessage (then rest was read), else nil
}

// readFrame reads the start of the next message from r and, if the whole
// message fits MaxMessage, the rest of it into *buf. Format problems are
// *DecodeError values; reader errors are returned as they are (io.EOF only
// before the first octet).
func (s *session) readFrame(r *bufio.Reader, buf *[]byte) (frame, error) {
	var f frame
	tag, n, hdr, err := readHeader(r, (*buf)[:0])
	if err != nil {
		if err == io.EOF && len(hdr) == 0 {
			return f, io.EOF
		}
		return f, frameErr("LDAPMessage header", err)
	}
	if tag != tagSequence {
		return f, decodeErr("LDAPMessage", tagError{got: tag, want: tagSequence})
	}
	outer := len(hdr)
	idTag, idLen, hdr, err := readHeader(r, hdr)
	if err != nil {
		return f, frameErr("messageID", err)
	}
	if idTag != tagInteger {
		return f, decodeErr("messageID", tagError{got: idTag, want: tagInteger})
	}
	if idLen > 8 || idLen > n {
		return f, decodeErr("messageID", errBigInteger)
	}
	start := len(hdr)
	for range idLen {
		c, err := r.ReadByte()
		if err != nil {
			return f, frameErr("messageID", noEOF(err))
		}
		hdr = append(hdr, c)
	}
	id, err := parseInt(hdr[start:])
	if err != nil {
		return f, decodeErr("messageID", err)
	}
	if id < 0 || id > maxLength {
		return f, decodeErr("messageID", errBigInteger)
	}
	op, opLen, hdr, err := readHeader(r, hdr)
	if err != nil {
		return f, frameErr("protocolOp", err)
	}
	if op&classMask != classApp {
		return f, decodeErr("protocolOp", malformedError("not an application tag"))
	}
	used := len(hdr) - outer
	if used > n || opLen > n-used {
		return f, decodeErr("protocolOp", ErrTruncated)
	}
	f = frame{op: op, id: id, hdr: hdr, rest: n - used}
	*buf = hdr // keep the grown buffer
	if outer+n > s.p.max {
		return f, nil
	}
	total := len(hdr) + f.rest
	if cap(hdr) < total {
		grown := make([]byte, len(hdr), total)
		copy(grown, hdr)
		hdr = grown
	}
	msg := hdr[:total]
	if _, err := io.ReadFull(r, msg[len(f.hdr):]); err != nil {
		return f, frameErr("LDAPMessage content", noEOF(err))
	}
	*buf = msg
	f.hdr, f.msg, f.rest = msg[:len(f.hdr)], msg, 0
	return f, nil
}

// frameErr wraps format problems in a *DecodeError and leaves reader errors
// alone.
func frameErr(place string, err error) error {
	if isFormatError(err) {
		return decodeErr(place, err)
	}
	return err
}

func isFormatError(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrIndefiniteLength) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTruncated)
}

// forward writes f and the rest of its message (read from r) to w.
func forward(w io.Writer, f frame, r io.Reader) error {
	if f.msg != nil {
		_, err := w.Write(f.msg)
		return err
	}
	if _, err := w.Write(f.hdr); err != nil {
		return err
	}
	var buf [8 << 10]byte
	n, err := io.CopyBuffer(onlyWriter{w}, io.LimitReader(r, int64(f.rest)), buf[:])
	if err == nil && n < int64(f.rest) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// onlyWriter hides ReadFrom so io.CopyBuffer uses the given buffer.
type onlyWriter struct{ io.Writer }

func (s *session) clientToServer() error {
	if s.clientWaitsForTLS {
		if tls, err := s.waitForTLS(); tls || err != nil {
			return err
		}
	}
	var buf []byte
	for {
		f, err := s.readFrame(s.cr, &buf)
		if err != nil {
			return s.clientReadFailed(err)
		}
		switch f.op {
		case appConstructed | appBindRequest:
			if f.msg == nil {
				s.emit(event.RejectedByGateway, event.ReasonMalformedBind, "", "bind request larger than "+strconv.Itoa(s.p.max)+" bytes")
				return fmt.Errorf("ldap: bind request: %w", ErrTooLarge)
			}
			req, name, err := parseRequest(f.msg)
			if err != nil {
				s.emit(event.RejectedByGateway, event.ReasonMalformedBind, "", event.Clip(err.Error(), 200))
				s.writeClient(encodeNotice(resultProtocolError, "malformed bind request"), s.p.timeout)
				return err
			}
			s.addPending(req.MessageID, pendingBind{user: eventUser(name), intermediate: intermediateBind(req.Mechanism)})
		case appConstructed | appExtendedRequest:
			if f.msg == nil {
				break
			}
			req, err := ParseRequest(f.msg)
			if err != nil || req.Op != OpStartTLS {
				break
			}
			if s.p.opts.StartTLS == nil {
				return s.refuse(req, "", resultProtocolError, "StartTLS is not supported", "starttls refused")
			}
			s.setStartTLS(req.MessageID)
			if _, err := s.bw.Write(f.msg); err != nil {
				return s.writeFailed(err)
			}
			if tls, err := s.waitForTLS(); tls || err != nil {
				return err
			}
			continue
		}
		if err := forward(s.bw, f, s.cr); err != nil {
			return s.writeFailed(err)
		}
	}
}

// waitForTLS waits for the server side to see the StartTLS response. If it
// succeeded it relays the client's bytes unframed until the client closes
// and reports tls = true.
func (s *session) waitForTLS() (tls bool, err error) {
	select {
	case ok := <-s.tlsDecided:
		if !ok {
			return false, nil
		}
	case <-s.serverDone:
		return true, nil
	}
	var buf [8 << 10]byte
	if _, err := io.CopyBuffer(onlyWriter{s.bw}, s.cr, buf[:]); err != nil {
		return true, s.clientReadFailed(err)
	}
	s.closeWrite(s.backendConn())
	return true, nil
}

func (s *session) clientReadFailed(err error) error {
	switch {
	case err == io.EOF:
		s.closeWrite(s.backendConn()) // let the backend finish answering
		return nil
	case s.isClosing():
		return nil
	case isFormatError(err):
		s.emit(event.RejectedByGateway, event.ReasonBadRequest, "", event.Clip(err.Error(), 200))
		s.writeClient(encodeNotice(resultProtocolError, "malformed LDAP message"), s.p.timeout)
	}
	return fmt.Errorf("ldap: from client: %w", err)
}

func (s *session) writeFailed(err error) error {
	if s.isClosing() {
		return nil
	}
	return fmt.Errorf("ldap: relay: %w", err)
}

func (s *session) serverToClient() error {
	var buf []byte
	for {
		f, err := s.readFrame(s.br, &buf)
		if err != nil {
			switch {
			case err == io.EOF:
				s.closeWrite(s.client)
				return nil
			case s.isClosing():
				return nil
			}
			return fmt.Errorf("ldap: from %s: %w", s.service, err)
		}
		switch f.op {
		case appConstructed | appBindResponse:
			if f.msg == nil {
				return fmt.Errorf("ldap: bind response from %s: %w", s.service, ErrTooLarge)
			}
			s.bindResult(f.msg)
		case appConstructed | appExtendedResponse:
			if f.msg == nil || !s.takeStartTLS(f.id) {
				break
			}
			resp, err := ParseResponse(f.msg)
			ok := err == nil && resp.ResultCode == resultSuccess
			if err := s.writeClient(f.msg, 0); err != nil {
				return s.writeFailed(err)
			}
			s.tlsDecided <- ok
			if !ok {
				continue
			}
			var raw [8 << 10]byte
			if _, err := io.CopyBuffer(onlyWriter{s.cw}, s.br, raw[:]); err != nil {
				return s.writeFailed(err)
			}
			s.closeWrite(s.client)
			return nil
		}
		s.cwMu.Lock()
		err = forward(s.cw, f, s.br)
		s.cwMu.Unlock()
		if err != nil {
			return s.writeFailed(err)
		}
	}
}

// bindResult emits the event for one BindResponse.
func (s *session) bindResult(msg []byte) {
	resp, err := ParseResponse(msg)
	if err != nil {
		s.p.log.Debug("undecodable bind response", "service", s.service, "err", err)
		return
	}
	pb, known := s.takePending(resp.MessageID)
	user := pb.user
	if resp.ResultCode == resultSASLBindInProgress || pb.intermediate && resp.ResultCode == resultSuccess {
		return // an intermediate step of a SASL or NTLM exchange
	}
	detail := "resultCode " + strconv.Itoa(resp.ResultCode)
	if resp.Diagnostic != "" {
		detail += ": " + event.Clip(resp.Diagnostic, 128)
	}
	if !known {
		detail += " (no matching bind request)"
	}
	switch resp.ResultCode {
	case resultSuccess:
		s.emit(event.Success, event.ReasonOK, user, detail)
	case resultInvalidCredentials:
		s.emit(event.RejectedByService, event.ReasonInvalidCreds, user, detail)
	default:
		s.emit(event.RejectedByService, event.ReasonBindFailed, user, detail)
	}
}

func (s *session) emit(kind event.Kind, reason, user, detail string) {
	s.p.events.Emit(event.Event{
		Time:     s.p.now(),
		Kind:     kind,
		Source:   s.src,
		Listener: s.p.opts.Listener,
		Service:  s.service,
		Proto:    "ldap",
		Reason:   reason,
		User:     user,
		Detail:   detail,
	})
}

// writeClient writes one whole message to the client. timeout 0 means the
// idle timeout.
func (s *session) writeClient(b []byte, timeout time.Duration) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	if timeout == 0 {
		timeout = s.p.idle
	}
	if err := s.client.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := s.client.Write(b)
	return err
}

// pendingBind is a bind waiting for its response.
type pendingBind struct {
	user         string
	intermediate bool // success only means "go on" (NTLM negotiation)
}

func (s *session) addPending(id int64, pb pendingBind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[id]; !ok {
		if len(s.order) >= maxPending {
			delete(s.pending, s.order[0])
			s.order = append(s.order[:0], s.order[1:]...)
		}
		s.order = append(s.order, id)
	}
	s.pending[id] = pb
}

func (s *session) takePending(id int64) (pendingBind, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pb, ok := s.pending[id]
	if !ok {
		return pb, false
	}
	delete(s.pending, id)
	for i, v := range s.order {
		if v == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	return pb, true
}

func (s *session) setStartTLS(id int64) {
	s.mu.Lock()
	s.startTLS = id + 1 // 0 means none
	s.mu.Unlock()
}

// takeStartTLS reports whether id answers the StartTLS in flight and clears
// it.
func (s *session) takeStartTLS(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.startTLS == 0 || s.startTLS != id+1 {
		return false
	}
	s.startTLS = 0
	return true
}

func (s *session) setBackend(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.backend = c
	return true
}

func (s *session) backendConn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backend
}

func (s *session) isClosing() bool { return s.closing.Load() }

// closeAll closes both connections; it is idempotent.
func (s *session) closeAll() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing.Store(true)
		b := s.backend
		s.mu.Unlock()
		s.client.Close()
		if b != nil {
			b.Close()
		}
	})
}

// closeWrite half-closes c where the connection supports it and closes it
// otherwise.
func (s *session) closeWrite(c net.Conn) {
	if c == nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	s.closeAll()
}

func (s *session) touch() { s.lastActivity.Store(time.Now().UnixNano()) }

// idleReader reads from a connection with a deadline: a fixed one while
// until is set (the first message), afterwards the idle timeout shared by
// both directions, so a long answer keeps a quiet client alive.
type idleReader struct {
	c     net.Conn
	s     *session
	until time.Time
}

func (r *idleReader) Read(p []byte) (int, error) {
	if !r.until.IsZero() {
		if err := r.c.SetReadDeadline(r.until); err != nil {
			return 0, err
		}
		return r.c.Read(p)
	}
	idle := r.s.p.idle
	// Each round either returns or waits until the idle deadline; it goes
	// round again only if the other direction was active meanwhile.
	for {
		last := time.Unix(0, r.s.lastActivity.Load())
		if time.Since(last) >= idle {
			return 0, ErrIdle
		}
		if err := r.c.SetReadDeadline(last.Add(idle)); err != nil {
			return 0, err
		}
		n, err := r.c.Read(p)
		if n > 0 {
			r.s.touch()
		}
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		return n, err
	}
}

// deadlineWriter writes with the idle timeout as write deadline.
type deadlineWriter struct {
	c net.Conn
	s *session
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.c.SetWriteDeadline(time.Now().Add(w.s.p.idle)); err != nil {
		return 0, err
	}
	return w.c.Write(p)
}
