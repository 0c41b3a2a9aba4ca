package sipedge

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/sippolicy"
)

// Service is one SIP service: where each transport's clients are relayed.
type Service struct {
	Name string
	// UDP is where UDP flows go. Zero refuses UDP clients.
	UDP netip.AddrPort
	// Dial opens a TCP or TLS connection to the PBX for stream clients.
	// Nil refuses them.
	Dial func(context.Context) (net.Conn, error)
	// WebSocket is the PBX's SIP WebSocket endpoint; nil refuses
	// WebSocket clients.
	WebSocket *WSBackend
	// ClientHeader, if set, is inserted into every request toward the PBX
	// with the client's address; clients' own copies are removed.
	ClientHeader string
	// ProxyProtocol sends a PROXY v2 header first on stream connections.
	ProxyProtocol bool
}

// Config is one configuration's tables. It is not changed after it is
// handed to New or Reconfigure.
type Config struct {
	// Domains maps lower-case domains (service and company domains, IP
	// addresses without brackets) to their service.
	Domains map[string]*Service
	// Wildcards maps the lower-case suffix of "*.suffix" domains to their
	// service; a wildcard matches exactly one more label.
	Wildcards map[string]*Service
	// Default receives requests whose domain matches nothing; nil refuses
	// them.
	Default *Service
	// Tenants are the brands and companies; nil means none.
	Tenants *sippolicy.Tenants
	// Trusted are exempt from the flood limit and company IP filters.
	Trusted []netip.Prefix
	// Flood configures the anti-flood limiter. Exempt is filled in from
	// Trusted and the companies' networks.
	Flood sippolicy.FloodConfig
	// Scanners recognises scanner User-Agents; nil matches nothing.
	Scanners *sip.UAMatcher
	// MaxMessage caps one message. Zero means sip.DefaultMaxMessage.
	MaxMessage int
	// IdleTimeout closes idle stream connections (UDP flows have their
	// own in the relay). Zero means one hour.
	IdleTimeout time.Duration
	// ConnectTimeout bounds dialing a backend WebSocket. Zero means 5s.
	ConnectTimeout time.Duration
}

// Options are the parts of a Policy fixed for its life.
type Options struct {
	// Calls configures dialog tracking (its state outlives reloads).
	Calls sippolicy.CallsConfig
	// Counter holds the call counts; nil means an in-memory counter.
	Counter sippolicy.Counter
	// Events receives the policy's events. Nil discards.
	Events event.Sink
	// Log receives operational logs (counter failures, backend protocol
	// errors). Nil discards.
	Log *slog.Logger
	// Metrics, if set, counts messages and refusals.
	Metrics *Metrics
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Policy is the SIP edge: routing tables and the stateful policies. It is
// safe for concurrent use.
type Policy struct {
	tab    atomic.Pointer[table]
	flood  *sippolicy.Flood
	calls  *sippolicy.Calls
	chall  *sippolicy.Challenges
	events event.Sink
	log    *slog.Logger
	met    *Metrics
	now    func() time.Time
	// tagPrefix starts every To tag the gateway makes, so that ACKs to
	// its own answers are recognised and absorbed.
	tagPrefix [4]byte

	closeOnce sync.Once
	quit      chan struct{}

	watchOnce sync.Once
	watch     *watcher // nil until a stream needs it, or where there is no epoll
	watchMu   sync.Mutex
	closed    bool
}

// watcher returns the backend watcher, starting it on first use; nil
// where there is none (the caller reads with a goroutine instead).
func (p *Policy) watcher() *watcher {
	p.watchOnce.Do(func() {
		p.watchMu.Lock()
		defer p.watchMu.Unlock()
		if p.closed {
			return
		}
		w, err := newWatcher()
		if err != nil {
			p.log.Debug("backend connections are read with a goroutine each", "err", err)
			return
		}
		p.watch = w
	})
	return p.watch
}

// table is a Config ready for lookups.
type table struct {
	Config
	trusted prefixSet
	byUDP   map[netip.AddrPort]*Service // UDP backend → its (first) service
}

// New validates c and returns a Policy. It starts nothing; Run expires
// lost calls.
func New(c Config, o Options) (*Policy, error) {
	p := &Policy{
		events: o.Events,
		log:    o.Log,
		met:    o.Metrics,
		now:    o.Now,
		quit:   make(chan struct{}),
	}
	if p.events == nil {
		p.events = event.Discard
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.met == nil {
		p.met = NewMetrics(nil)
	}
	tag := sip.NewTag(nil)
	copy(p.tagPrefix[:], tag)
	t, err := newTable(c)
	if err != nil {
		return nil, err
	}
	if p.flood, err = sippolicy.NewFlood(t.Flood); err != nil {
		return nil, err
	}
	ctr := o.Counter
	if ctr == nil {
		ctr = sippolicy.NewMemoryCounter()
	}
	if p.calls, err = sippolicy.NewCalls(o.Calls, ctr); err != nil {
		return nil, err
	}
	if p.chall, err = sippolicy.NewChallenges(sippolicy.ChallengesConfig{}); err != nil {
		return nil, err
	}
	p.tab.Store(t)
	p.met.setPolicy(p)
	return p, nil
}

func newTable(c Config) (*table, error) {
	if c.MaxMessage <= 0 || c.MaxMessage > sip.DefaultMaxMessage {
		c.MaxMessage = sip.DefaultMaxMessage
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = time.Hour
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	exempt := append([]netip.Prefix(nil), c.Trusted...)
	if c.Tenants != nil {
		exempt = append(exempt, c.Tenants.Networks()...)
	}
	c.Flood.Exempt = exempt
	if err := c.Flood.Validate(); err != nil {
		return nil, err
	}
	t := &table{Config: c, trusted: newPrefixSet(c.Trusted), byUDP: make(map[netip.AddrPort]*Service)}
	for _, m := range []map[string]*Service{c.Domains, c.Wildcards, {"": c.Default}} {
		for _, s := range m {
			if s != nil && s.UDP.IsValid() {
				if prev, ok := t.byUDP[s.UDP]; !ok || prev.Name > s.Name {
					t.byUDP[s.UDP] = s // the same choice on every reload
				}
			}
		}
	}
	return t, nil
}

// Reconfigure swaps in new tables. The flood limiter keeps its sources,
// tracked calls keep their slots.
func (p *Policy) Reconfigure(c Config) error {
	t, err := newTable(c)
	if err != nil {
		return err
	}
	if err := p.flood.Reconfigure(t.Flood); err != nil {
		return err
	}
	p.tab.Store(t)
	return nil
}

// Run releases calls past their maximum duration (lost BYEs) and pending
// INVITEs that never got a final answer, every few seconds, until ctx ends
// or Close is called.
func (p *Policy) Run(ctx context.Context) error {
	tk := time.NewTicker(5 * time.Second)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.quit:
			return nil
		case <-tk.C:
			if n := p.calls.Expire(p.now()); n > 0 {
				p.log.Info("released calls without an end", "calls", n)
			}
		}
	}
}

// Close stops Run. It is idempotent.
func (p *Policy) Close() error {
	p.closeOnce.Do(func() {
		close(p.quit)
		p.watchMu.Lock()
		p.closed = true
		if p.watch != nil {
			p.watch.close()
		}
		p.watchMu.Unlock()
	})
	return nil
}

// Forget ends the flood blocks of sources inside pfx (an operator's
// unban).
func (p *Policy) Forget(pfx netip.Prefix) int { return p.flood.Forget(pfx) }

// Route returns the service for a request's routing domain, or nil.
func (p *Policy) Route(domain []byte) *Service {
	t := p.tab.Load()
	return t.route(domain)
}

func (t *table) route(domain []byte) *Service {
	var buf [256]byte
	if len(domain) == 0 || len(domain) > len(buf) {
		return t.Default
	}
	d := lower(buf[:0], domain)
	if s, ok := t.Domains[string(d)]; ok {
		return s
	}
	if i := bytes.IndexByte(d, '.'); i > 0 && len(t.Wildcards) > 0 {
		if s, ok := t.Wildcards[string(d[i+1:])]; ok {
			return s
		}
	}
	return t.Default
}

func lower(dst, s []byte) []byte {
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// session is one client's flow or connection.
type session struct {
	listener  string
	transport string // udp, tcp, tls, ws, wss
	client    netip.AddrPort
	svc       *Service
	lm        *listenerMetrics
}

// verdict is what to do with one message.
type verdict struct {
	forward bool
	status  int    // > 0: answer the sender with this status
	reason  string // refusal reason for metrics ("" when forwarded)
}

var (
	mREGISTER = []byte("REGISTER")
	mINVITE   = []byte("INVITE")
	mACK      = []byte("ACK")
	mBYE      = []byte("BYE")
	mCANCEL   = []byte("CANCEL")
)

func forward() verdict { return verdict{forward: true} }

// fromClient applies the policy to a message a client sent.
func (p *Policy) fromClient(s *session, m *sip.Message) verdict {
	t := p.tab.Load()
	now := p.now()
	if !m.Request {
		// A phone answering the PBX: an incoming call is answered or not.
		if bytes.Equal(m.CSeqMethod, mINVITE) && m.Status >= 200 {
			if m.Status < 300 {
				p.calls.Answered(now, m.CallID)
			} else {
				p.calls.Failed(now, m.CallID)
			}
		}
		return forward()
	}
	src := s.client.Addr()
	if p.ackToOwnAnswer(m) {
		return verdict{reason: "ack_absorbed"}
	}
	if pat, ok := t.Scanners.Match(m.UserAgent); ok && m.UserAgent != nil {
		p.emit(s, event.RejectedByGateway, event.ReasonScanner, string(m.From.User), "User-Agent matches "+strconv.Quote(pat))
		return verdict{reason: event.ReasonScanner}
	}
	initial := m.To.Tag == nil
	if initial {
		v := p.flood.Check(src, now)
		if !v.Allow {
			if v.JustBlocked {
				p.emit(s, event.RejectedByGateway, event.ReasonFlood, "",
					fmt.Sprintf("more than %d initial requests in %s; no answers until %s",
						t.Flood.Limit, t.Flood.Window, v.Until.UTC().Format(time.RFC3339)))
			}
			return verdict{reason: event.ReasonFlood}
		}
	} else if p.flood.Blocked(src, now) {
		return verdict{reason: event.ReasonFlood}
	}
	isInvite := bytes.Equal(m.Method, mINVITE)
	if t.Tenants != nil && initial && (isInvite || bytes.Equal(m.Method, mREGISTER)) {
		if co := t.Tenants.CompanyByDomain(m.RoutingDomain()); co != nil {
			if v, done := p.companyRequest(t, s, m, co, isInvite, now); done {
				return v
			}
		}
	}
	if bytes.Equal(m.Method, mBYE) || bytes.Equal(m.Method, mCANCEL) {
		p.calls.Ended(now, m.CallID)
	}
	return forward()
}

// companyRequest applies a company's IP filter, blocked destinations and
// call limits to an initial REGISTER or INVITE. done is false when the
// request may go on.
func (p *Policy) companyRequest(t *table, s *session, m *sip.Message, co *sippolicy.Company, isInvite bool, now time.Time) (verdict, bool) {
	src := s.client.Addr()
	user := m.From.User
	if !isInvite {
		user = m.To.User
	}
	outside := co.FilterOn() && !co.Inside(src) && !t.trusted.contains(src)
	rw := 0
	if outside {
		if rw = co.Roadwarrior(user); rw == 0 {
			p.emit(s, event.RejectedByGateway, event.ReasonNetwork, string(user),
				"company "+co.Name+": "+string(m.Method)+" from outside allowed_networks")
			return verdict{status: 403, reason: event.ReasonNetwork}, true
		}
	}
	if !isInvite {
		return verdict{}, false
	}
	if pat, blocked := co.BlockedDestination(m.Target.User); blocked {
		p.emit(s, event.RejectedByGateway, event.ReasonDestination, string(user),
			"company "+co.Name+": "+event.Clip(string(m.Target.User), 64)+" matches "+strconv.Quote(pat))
		return verdict{status: 403, reason: event.ReasonDestination}, true
	}
	call := sippolicy.Call{Company: co, External: co.External(m.Target.User)}
	if outside {
		call.Roadwarrior, call.RoadwarriorLimit = user, rw
	}
	if v, err := p.calls.Invite(now, m.CallID, call, m.AuthUser != nil); err != nil || v != sippolicy.Admit {
		p.callRefused(s, co, user, v, err, false)
		return verdict{status: 403, reason: event.ReasonCallLimit}, true
	}
	return verdict{}, false
}

// callRefused logs and reports a call refused by the limits.
func (p *Policy) callRefused(s *session, co *sippolicy.Company, user []byte, v sippolicy.CallVerdict, err error, incoming bool) {
	dir := "outgoing"
	if incoming {
		dir = "incoming"
	}
	var why string
	switch {
	case err != nil:
		// Fail closed: a count that cannot be read refuses the call.
		p.log.Error("call refused: the call counter failed", "company", co.Name, "err", err)
		why = "call counter unavailable"
	case v == sippolicy.OverBrand:
		why = "brand " + co.Brand.Name + " at max_calls"
	case v == sippolicy.OverCompany:
		why = "company " + co.Name + " at max_calls"
	case v == sippolicy.OverRoadwarrior:
		why = "roadwarrior at calls_from_other_networks"
	case v == sippolicy.TableFull:
		p.log.Warn("call refused: sip.calls.max_tracked reached", "company", co.Name)
		why = "call table full"
	default:
		why = "refused"
	}
	p.emit(s, event.RejectedByGateway, event.ReasonCallLimit, string(user), dir+" call: "+why)
}

// fromBackend applies the policy to a message the PBX sent toward the
// client.
func (p *Policy) fromBackend(s *session, m *sip.Message) verdict {
	t := p.tab.Load()
	now := p.now()
	if m.Request {
		switch {
		case p.ackToOwnAnswer(m):
			// The PBX acknowledges the gateway's own 486.
			return verdict{reason: "ack_absorbed"}
		case bytes.Equal(m.Method, mINVITE) && m.To.Tag == nil && t.Tenants != nil:
			co := t.Tenants.CompanyByDomain(m.To.Host)
			if co == nil {
				co = t.Tenants.CompanyByDomain(m.From.Host)
			}
			if co == nil {
				break
			}
			call := sippolicy.Call{Company: co, Incoming: true, External: co.External(m.From.User)}
			if v, err := p.calls.Invite(now, m.CallID, call, true); err != nil || v != sippolicy.Admit {
				p.callRefused(s, co, m.To.User, v, err, true)
				return verdict{status: 486, reason: event.ReasonCallLimit}
			}
		case bytes.Equal(m.Method, mBYE) || bytes.Equal(m.Method, mCANCEL):
			p.calls.Ended(now, m.CallID)
		}
		return forward()
	}
	isReg := bytes.Equal(m.CSeqMethod, mREGISTER)
	isInv := bytes.Equal(m.CSeqMethod, mINVITE)
	if !isReg && !isInv || m.Status < 200 {
		return forward()
	}
	user := m.From.User
	if isReg {
		user = m.To.User
	}
	src := s.client.Addr()
	switch st := m.Status; {
	case st == 401 || st == 407:
		if n := p.chall.Challenge(now, src, user); n >= 2 {
			p.emit(s, event.RejectedByService, event.ReasonChallenge, string(user),
				fmt.Sprintf("SIP %d to %s, challenge %d without success", st, m.CSeqMethod, n))
		}
	case st == 403 || st == 404:
		p.emit(s, event.RejectedByService, event.ReasonStatus, string(user),
			fmt.Sprintf("SIP %d to %s", st, m.CSeqMethod))
	default:
		// The PBX accepted the credentials (or asked for none): 2xx, or a
		// call that failed for another reason (busy, no answer).
		p.chall.Success(now, src, user)
		if isReg && st < 300 {
			p.emit(s, event.Success, event.ReasonOK, string(user), "")
		}
	}
	switch {
	case !isInv:
	case m.Status < 300:
		p.calls.Answered(now, m.CallID)
	case m.Status != 401 && m.Status != 407:
		// A challenge is left alone: the authenticated retry reuses the
		// Call-ID, and a retransmitted challenge arriving after it must
		// not release the slots the retry took. An abandoned challenged
		// INVITE holds no slot and expires with the pending timeout.
		p.calls.Failed(now, m.CallID)
	}
	return forward()
}

// ackToOwnAnswer reports whether m acknowledges a final answer the
// gateway itself sent (a phone's ACK to a 403, the PBX's to a 486): it
// belongs to no transaction the other side knows and is absorbed.
func (p *Policy) ackToOwnAnswer(m *sip.Message) bool {
	return bytes.Equal(m.Method, mACK) && p.ownTag(m.To.Tag)
}

// ownTag reports whether a To tag is one the gateway made.
func (p *Policy) ownTag(tag []byte) bool {
	return len(tag) == len(p.tagPrefix)+sip.TagLen && bytes.HasPrefix(tag, p.tagPrefix[:])
}

// appendAnswer appends the gateway's response with status to the request
// req (parsed into m). It returns dst unchanged when no answer is due
// (responses, ACK).
func (p *Policy) appendAnswer(dst, req []byte, m *sip.Message, status int) []byte {
	var tb [4 + sip.TagLen]byte
	tag := append(tb[:0], p.tagPrefix[:]...)
	tag = sip.NewTag(tag)
	out, err := sip.AppendResponse(dst, req, m, status, "", tag)
	if err != nil {
		return dst
	}
	return out
}

// emit sends one event about s's client.
func (p *Policy) emit(s *session, k event.Kind, reason, user, detail string) {
	svc := ""
	if s.svc != nil {
		svc = s.svc.Name
	}
	p.events.Emit(event.Event{
		Time: p.now(), Kind: k, Source: s.client.Addr(), Listener: s.listener, Service: svc,
		Proto: "sip", Reason: reason, User: event.Clip(user, 128), Detail: detail,
	})
}

// route picks the service of a session's first request and reports the
// refusal when there is none. It returns nil then.
func (p *Policy) route(s *session, m *sip.Message) *Service {
	svc := p.Route(m.RoutingDomain())
	if svc == nil {
		p.emit(s, event.RejectedByGateway, event.ReasonUnknownDomain, string(m.From.User),
			"no sip service for domain "+strconv.Quote(event.Clip(string(m.RoutingDomain()), 64)))
	}
	return svc
}
