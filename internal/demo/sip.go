package demo

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"strings"

	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/siptest"
)

// SIPUsers are the demo PBX's SIP accounts (domain demo.test): user →
// password.
var SIPUsers = map[string]string{
	"100": "secret100",
	"101": "secret101",
}

// sipRealm is the demo PBX's digest realm.
const sipRealm = "demo.test"

// sipPBX is the demo PBX: a registrar that challenges every REGISTER
// without credentials (401, Digest MD5), accepts the demo users' passwords
// (200) and refuses wrong ones (403), and answers any other request 486 Busy
// Here. The gateway turns the 403s into events and the 200s into successes.
type sipPBX struct {
	nonce string
	users map[string]string
}

func newSIPPBX(users map[string]string) *sipPBX {
	var b [12]byte
	rand.Read(b[:])
	return &sipPBX{nonce: hex.EncodeToString(b[:]), users: users}
}

// ServeSIP runs the demo PBX on pc (UDP) and ln (TCP) until ctx is done.
func ServeSIP(ctx context.Context, pc net.PacketConn, ln net.Listener, users map[string]string, log *slog.Logger) error {
	pbx := newSIPPBX(users)
	go func() {
		<-ctx.Done()
		pc.Close()
		ln.Close()
	}()
	stop := siptest.Serve(ln, func(c net.Conn) {
		defer c.Close()
		go func() { <-ctx.Done(); c.Close() }()
		siptest.ServeStream(c, c, pbx.answer)
	})
	siptest.ServeUDP(pc, pbx.answer)
	stop()
	return nil
}

// answer is the PBX's reply to one message, or nil.
func (pbx *sipPBX) answer(b []byte) []byte {
	var m sip.Message
	if sip.Parse(b, &m) != nil || !m.Request || string(m.Method) == "ACK" {
		return nil
	}
	status, extra := 486, ""
	if string(m.Method) == "REGISTER" {
		switch auth := header(b[:m.HeaderLen], "Authorization"); {
		case auth == "":
			status = 401
			extra = `WWW-Authenticate: Digest realm="` + sipRealm + `", nonce="` + pbx.nonce + `", algorithm=MD5` + "\r\n"
		case pbx.valid(auth):
			status = 200
			extra = "Expires: 3600\r\n"
		default:
			status = 403
		}
	}
	out, err := sip.AppendResponse(nil, b, &m, status, "", []byte("demopbx"))
	if err != nil {
		return nil
	}
	// Extra headers go before the empty line that ends the head.
	return append(out[:len(out)-2:len(out)-2], extra+"\r\n"...)
}

// valid checks a Digest response (RFC 2617 without qop, as the challenge
// offers none) against the demo users.
func (pbx *sipPBX) valid(auth string) bool {
	p := digestParams(auth)
	pass, ok := pbx.users[p["username"]]
	if !ok || p["nonce"] != pbx.nonce || p["realm"] != sipRealm {
		return false
	}
	ha1 := md5hex(p["username"] + ":" + sipRealm + ":" + pass)
	ha2 := md5hex("REGISTER:" + p["uri"])
	return p["response"] == md5hex(ha1+":"+pbx.nonce+":"+ha2)
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// header returns the value of the first header named name in head.
func header(head []byte, name string) string {
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(k)), name) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// digestParams splits `Digest a="b", c=d` into its parameters.
func digestParams(v string) map[string]string {
	out := map[string]string{}
	v, ok := strings.CutPrefix(v, "Digest ")
	if !ok {
		return out
	}
	for part := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			out[strings.ToLower(k)] = strings.Trim(val, `"`)
		}
	}
	return out
}
