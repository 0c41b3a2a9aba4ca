// Package adminclient talks to a running pbxgate's admin API: over the
// admin unix socket (trusted by its file permission, no token) or over TCP
// with the admin token. The operator commands of the CLI use it.
//
// It holds no state and decides nothing. The wire types are package admin's
// (admin.EntryJSON, admin.EventJSON, ...), so client and server cannot drift
// apart. Errors the server answers with come back as *APIError; a pbxgate
// that cannot be reached gives an *UnreachableError that says so.
package adminclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pbxgate/pbxgate/internal/admin"
	"github.com/pbxgate/pbxgate/internal/turn"
)

// DefaultTimeout bounds a request when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Options say where pbxgate's admin API is.
type Options struct {
	// Socket is the admin unix socket's path. When set it is used and URL
	// and Token are ignored.
	Socket string
	// URL is the admin API's TCP address as a base URL, like
	// "http://127.0.0.1:9190". Used when Socket is empty.
	URL string
	// Token is the admin token sent with requests over URL.
	Token string
	// Timeout bounds each request. Follow and State, which stream, are
	// bounded only until the answer starts. 0: DefaultTimeout.
	Timeout time.Duration
}

// Client calls the admin API. It is safe for concurrent use.
type Client struct {
	base    string // "http://pbxgate" for the socket
	where   string // the socket path or URL, for messages
	token   string
	timeout time.Duration
	hc      *http.Client
}

// New returns a client for o. It does not connect.
func New(o Options) (*Client, error) {
	c := &Client{timeout: o.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	tr := &http.Transport{
		Proxy:                 nil, // never send the token to a proxy
		ResponseHeaderTimeout: c.timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	switch {
	case o.Socket != "":
		path := o.Socket
		c.base, c.where = "http://pbxgate", path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		}
	case o.URL != "":
		u, err := url.Parse(o.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("adminclient: URL %q: want http://host:port or https://host:port", o.URL)
		}
		c.base, c.where, c.token = strings.TrimRight(u.String(), "/"), u.Host, o.Token
		tr.DialContext = dialer.DialContext
		tr.TLSHandshakeTimeout = 10 * time.Second
	default:
		return nil, errors.New("adminclient: neither Socket nor URL is set")
	}
	c.hc = &http.Client{
		Transport: tr,
		// The API never redirects; following one could carry the token
		// elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Close releases idle connections. The client stays usable.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int    // HTTP status
	Message string // the server's message
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// UnreachableError says pbxgate could not be reached at all.
type UnreachableError struct {
	Where string // socket path or host:port
	Err   error  // the dial error
}

func (e *UnreachableError) Error() string {
	switch {
	case errors.Is(e.Err, syscall.ENOENT), errors.Is(e.Err, syscall.ECONNREFUSED):
		return "cannot reach pbxgate at " + e.Where + ": is it running?"
	case errors.Is(e.Err, syscall.EACCES), errors.Is(e.Err, syscall.EPERM):
		return "cannot reach pbxgate at " + e.Where + ": permission denied; run as root or as the user pbxgate runs as"
	}
	return fmt.Sprintf("cannot reach pbxgate at %s: is it running? (%v)", e.Where, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// ErrStreamEnded is returned by Follow when pbxgate ends the event stream
// (it is shutting down).
var ErrStreamEnded = errors.New("pbxgate ended the event stream")

// Health asks /healthz.
func (c *Client) Health(ctx context.Context) error {
	var st admin.StatusJSON
	return c.call(ctx, "GET", "/healthz", nil, nil, &st)
}

// Ready asks /readyz; a not-ready gateway gives an *APIError (503) whose
// Message is the reason.
func (c *Client) Ready(ctx context.Context) error {
	var st admin.StatusJSON
	return c.call(ctx, "GET", "/readyz", nil, nil, &st)
}

// Bans lists the blacklist; addrFilter ("" for all) keeps the entries
// overlapping that address or prefix.
func (c *Client) Bans(ctx context.Context, addrFilter string) ([]admin.EntryJSON, error) {
	return c.list(ctx, "/api/v1/blacklist", addrFilter)
}

// Whitelist lists the whitelist.
func (c *Client) Whitelist(ctx context.Context) ([]admin.EntryJSON, error) {
	return c.list(ctx, "/api/v1/whitelist", "")
}

func (c *Client) list(ctx context.Context, path, addrFilter string) ([]admin.EntryJSON, error) {
	var q url.Values
	if addrFilter != "" {
		q = url.Values{"address": {addrFilter}}
	}
	var out admin.EntriesJSON
	if err := c.call(ctx, "GET", path, q, nil, &out); err != nil {
		return nil, err
	}
	return out.Entries, nil
}

// Ban blacklists addr (an IP address or CIDR prefix) for d; 0 is forever.
func (c *Client) Ban(ctx context.Context, addr string, d time.Duration, note string) (admin.EntryJSON, error) {
	return c.add(ctx, "/api/v1/blacklist", addr, d, note)
}

// Allow whitelists addr for d (0: forever); the server lifts any ban inside
// it.
func (c *Client) Allow(ctx context.Context, addr string, d time.Duration, note string) (admin.EntryJSON, error) {
	return c.add(ctx, "/api/v1/whitelist", addr, d, note)
}

func (c *Client) add(ctx context.Context, path, addr string, d time.Duration, note string) (admin.EntryJSON, error) {
	if d < 0 {
		return admin.EntryJSON{}, fmt.Errorf("adminclient: negative duration %v", d)
	}
	req := admin.EntryRequest{Address: addr, Note: note}
	if d > 0 {
		req.For = d.String()
	}
	var out admin.EntryJSON
	err := c.call(ctx, "POST", path, nil, req, &out)
	return out, err
}

// Unban removes addr's blacklist entry and returns it; an entry that does
// not exist gives an *APIError with Status 404.
func (c *Client) Unban(ctx context.Context, addr string) (admin.EntryJSON, error) {
	return c.remove(ctx, "/api/v1/blacklist", addr)
}

// Disallow removes addr's whitelist entry and returns it (404 if none).
func (c *Client) Disallow(ctx context.Context, addr string) (admin.EntryJSON, error) {
	return c.remove(ctx, "/api/v1/whitelist", addr)
}

func (c *Client) remove(ctx context.Context, path, addr string) (admin.EntryJSON, error) {
	var out admin.EntryJSON
	err := c.call(ctx, "DELETE", path, url.Values{"address": {addr}}, nil, &out)
	return out, err
}

// Inspect says what the fraud engine knows about the address ip.
func (c *Client) Inspect(ctx context.Context, ip string) (admin.SourceJSON, error) {
	var out admin.SourceJSON
	err := c.call(ctx, "GET", "/api/v1/sources/"+url.PathEscape(ip), nil, nil, &out)
	return out, err
}

// Allocations lists the TURN server's active allocations.
func (c *Client) Allocations(ctx context.Context) (admin.AllocationsJSON, error) {
	var out admin.AllocationsJSON
	err := c.call(ctx, "GET", "/api/v1/turn/allocations", nil, nil, &out)
	return out, err
}

// EndAllocation ends TURN allocation id and returns what it was (404 if
// there is none).
func (c *Client) EndAllocation(ctx context.Context, id uint64) (turn.Allocation, error) {
	var out turn.Allocation
	err := c.call(ctx, "DELETE", "/api/v1/turn/allocations/"+strconv.FormatUint(id, 10), nil, nil, &out)
	return out, err
}

// Stats returns the fraud engine's counters.
func (c *Client) Stats(ctx context.Context) (admin.StatsJSON, error) {
	var out admin.StatsJSON
	err := c.call(ctx, "GET", "/api/v1/stats", nil, nil, &out)
	return out, err
}

// EventQuery selects events. Zero fields select everything.
type EventQuery struct {
	Kind     string // rejected_by_gateway, backend_unreachable, rejected_by_service, success
	Source   string // IP address or CIDR prefix
	Listener string
	Service  string
	Proto    string
	Reason   string
	User     string
	// Since is an RFC 3339 time or a duration back from now ("10m", "1d").
	Since string
	// Limit caps how many recent events come back (the newest); 0: the
	// server's default (100).
	Limit      int
	Suspicious bool // only kinds that count against the source
}

func (q EventQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"kind": q.Kind, "source": q.Source, "listener": q.Listener,
		"service": q.Service, "proto": q.Proto, "reason": q.Reason, "user": q.User, "since": q.Since} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Suspicious {
		v.Set("suspicious", "1")
	}
	return v
}

// Events lists recent events matching q, oldest first.
func (c *Client) Events(ctx context.Context, q EventQuery) ([]admin.EventJSON, error) {
	var out admin.EventsJSON
	if err := c.call(ctx, "GET", "/api/v1/events", q.values(), nil, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// maxEventLine bounds one line of the event stream.
const maxEventLine = 1 << 20

// Follow calls fn for the recent events matching q (up to q.Limit) and then
// for each new one, until ctx ends (it returns ctx's error), fn returns an
// error (returned as is) or pbxgate ends the stream (ErrStreamEnded).
func (c *Client) Follow(ctx context.Context, q EventQuery, fn func(admin.EventJSON) error) error {
	v := q.values()
	v.Set("follow", "1")
	resp, err := c.send(ctx, "GET", "/api/v1/events", v, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(r)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return ErrStreamEnded
			}
			return fmt.Errorf("event stream: %w", err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue // heartbeat
		}
		var ev admin.EventJSON
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// readLine reads one line of at most maxEventLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxEventLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxEventLine)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err != nil && len(line) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return line, err
		}
	}
}

// RotateToken makes a new admin token and returns it; the old one stops
// working at once. Only the admin socket offers this.
func (c *Client) RotateToken(ctx context.Context) (string, error) {
	var out admin.TokenJSON
	if err := c.call(ctx, "POST", "/api/v1/token/rotate", nil, nil, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// State copies the state store's snapshot to w. Only the admin socket
// offers this. A snapshot cut short gives an error.
func (c *Client) State(ctx context.Context, w io.Writer) error {
	resp, err := c.send(ctx, "GET", "/api/v1/state", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("state snapshot: %w", err)
	}
	return nil
}

// call sends a request bounded by the client's timeout and decodes a
// successful answer into out.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns the response of a 2xx answer; any other
// answer becomes an *APIError.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &UnreachableError{Where: c.where, Err: err}
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ae := &APIError{Status: resp.StatusCode}
	var ej struct {
		admin.ErrorJSON
		admin.StatusJSON // /readyz answers 503 with a status and reason
	}
	if json.Unmarshal(b, &ej) == nil {
		ae.Message = ej.Error
		if ae.Message == "" && ej.Status != "" {
			ae.Message = strings.TrimSuffix(ej.Status+": "+ej.Reason, ": ")
		}
	} else {
		ae.Message = strings.TrimSpace(string(b))
		if len(ae.Message) > 200 {
			ae.Message = ae.Message[:200] + "…"
		}
	}
	return nil, ae
}
