// Package demo holds the small backends that `pbxgate demo` starts so a
// newcomer sees routing work.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/pbxgate/pbxgate/internal/ldap"
)

// Limits of the demo directory.
const (
	ldapMaxMessage  = 16 << 10 // octets in one request
	ldapMaxConns    = 64       // concurrent connections; more are closed at once
	ldapMaxRequests = 10000    // requests on one connection
	ldapIdle        = 2 * time.Minute
)

// LDAP result codes the demo directory answers with.
const (
	ldapSuccess                = 0
	ldapProtocolError          = 2
	ldapAuthMethodNotSupported = 7
	ldapInvalidCredentials     = 49
	ldapUnwillingToPerform     = 53
)

// ServeLDAP runs a tiny LDAP directory on ln until ctx is done, then closes
// ln and every connection and returns nil; it returns an error if Accept
// fails otherwise.
//
// It answers simple BindRequests with success when users maps the bind name
// (compared case-insensitively) to the password, and anonymous binds with
// success; other binds get invalidCredentials (49), SASL binds
// authMethodNotSupported. A SearchRequest gets one entry named by its base
// DN, saying who is bound, and a successful SearchResultDone, so
// `ldapsearch -x -D name -w password -b dc=example,dc=com` exits 0. An
// UnbindRequest closes the connection; other operations are declined with
// unwillingToPerform. Requests are capped at 16 KiB.
func ServeLDAP(ctx context.Context, ln net.Listener, users map[string]string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	slots := make(chan struct{}, ldapMaxConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("demo ldap: accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			d := &directory{users: users, log: log}
			if err := d.serve(ctx, c); err != nil {
				log.Debug("demo ldap connection ended", "src", c.RemoteAddr().String(), "err", err)
			}
		})
	}
}

// directory serves one connection.
type directory struct {
	users map[string]string
	log   *slog.Logger
	bound string // name of the last successful bind, "" when anonymous
}

func (d *directory) serve(ctx context.Context, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	for range ldapMaxRequests {
		if err := c.SetReadDeadline(time.Now().Add(ldapIdle)); err != nil {
			return err
		}
		msg, err := ldap.ReadMessage(r, ldapMaxMessage)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		out, done, err := d.handle(msg)
		if err != nil {
			return err
		}
		for _, p := range out {
			if err := c.SetWriteDeadline(time.Now().Add(ldapIdle)); err != nil {
				return err
			}
			if _, err := c.Write(p.Bytes()); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
	return errors.New("demo ldap: too many requests on one connection")
}

// handle answers one request: the messages to send and whether to close.
func (d *directory) handle(msg []byte) (out []*ber.Packet, done bool, err error) {
	p, err := ber.DecodePacketErr(msg)
	if err != nil {
		return nil, true, fmt.Errorf("demo ldap: decode: %w", err)
	}
	if len(p.Children) < 2 {
		return nil, true, errors.New("demo ldap: LDAPMessage without protocolOp")
	}
	id, ok := p.Children[0].Value.(int64)
	op := p.Children[1]
	if !ok || op.ClassType != ber.ClassApplication {
		return nil, true, errors.New("demo ldap: malformed LDAPMessage")
	}
	switch op.Tag {
	case 0: // BindRequest
		code, diag := d.bind(op)
		return []*ber.Packet{result(id, 1, code, diag)}, false, nil
	case 2: // UnbindRequest
		return nil, true, nil
	case 3: // SearchRequest
		base := ""
		if len(op.Children) > 0 {
			base, _ = op.Children[0].Value.(string)
		}
		return []*ber.Packet{d.entry(id, base), result(id, 5, ldapSuccess, "")}, false, nil
	case 16: // AbandonRequest: nothing to abandon
		return nil, false, nil
	case 23: // ExtendedRequest, StartTLS included
		return []*ber.Packet{result(id, 24, ldapProtocolError, "extended operations are not supported")}, false, nil
	case 6, 8, 10, 12, 14: // Modify, Add, Del, ModifyDN, Compare
		return []*ber.Packet{result(id, op.Tag+1, ldapUnwillingToPerform, "the demo directory is read-only")}, false, nil
	}
	return nil, true, fmt.Errorf("demo ldap: unsupported operation %d", op.Tag)
}

// bind checks a BindRequest and returns the result code and message.
func (d *directory) bind(op *ber.Packet) (int, string) {
	if len(op.Children) < 3 {
		return ldapProtocolError, "malformed bind request"
	}
	name, _ := op.Children[1].Value.(string)
	auth := op.Children[2]
	if auth.ClassType != ber.ClassContext || auth.Tag != 0 {
		return ldapAuthMethodNotSupported, "only simple binds are supported"
	}
	password := auth.Data.String()
	switch {
	case name == "" && password == "":
		d.bound = ""
		return ldapSuccess, ""
	case password != "" && d.check(name, password):
		d.bound = name
		d.log.Debug("demo ldap bind", "name", name)
		return ldapSuccess, ""
	}
	return ldapInvalidCredentials, "invalid credentials"
}

func (d *directory) check(name, password string) bool {
	if pw, ok := d.users[name]; ok {
		return pw == password
	}
	for n, pw := range d.users {
		if strings.EqualFold(n, name) {
			return pw == password
		}
	}
	return false
}

// entry builds a SearchResultEntry for base.
func (d *directory) entry(id int64, base string) *ber.Packet {
	who := "anonymous"
	if d.bound != "" {
		who = d.bound
	}
	e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 4, nil, "SearchResultEntry")
	e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "objectName"))
	attrs := ber.NewSequence("attributes")
	for _, a := range [][2]string{
		{"objectClass", "top"},
		{"description", "pbxgate demo directory; bound as " + who},
	} {
		attr := ber.NewSequence("attribute")
		attr.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a[0], "type"))
		vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a[1], "value"))
		attr.AppendChild(vals)
		attrs.AppendChild(attr)
	}
	e.AppendChild(attrs)
	return message(id, e)
}

// result builds a response with an LDAPResult; app is its application tag.
func result(id int64, app ber.Tag, code int, diag string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, app, nil, "response")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	return message(id, op)
}

func message(id int64, op *ber.Packet) *ber.Packet {
	m := ber.NewSequence("LDAPMessage")
	m.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	m.AppendChild(op)
	return m
}
