package demo

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pbxgate/pbxgate/internal/sip"
)

func demoRegister(auth string) []byte {
	if auth != "" {
		auth = "Authorization: " + auth + "\r\n"
	}
	return fmt.Appendf(nil, "REGISTER sip:demo.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"+
		"From: <sip:100@demo.test>;tag=1\r\nTo: <sip:100@demo.test>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n%sContent-Length: 0\r\n\r\n", auth)
}

func status(t *testing.T, b []byte) (int, string) {
	t.Helper()
	var m sip.Message
	if err := sip.Parse(b, &m); err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, b)
	}
	return m.Status, string(b)
}

// TestSIPRegistrar: the demo PBX challenges, accepts the right digest and
// refuses a wrong one, as a real registrar does.
func TestSIPRegistrar(t *testing.T) {
	pbx := newSIPPBX(SIPUsers)
	st, text := status(t, pbx.answer(demoRegister("")))
	if st != 401 || !strings.Contains(text, `WWW-Authenticate: Digest realm="demo.test", nonce="`+pbx.nonce+`"`) {
		t.Fatalf("first REGISTER: %s", text)
	}
	digest := func(pass string) string {
		ha1 := md5hex("100:demo.test:" + pass)
		ha2 := md5hex("REGISTER:sip:demo.test")
		return fmt.Sprintf(`Digest username="100", realm="demo.test", nonce="%s", uri="sip:demo.test", response="%s", algorithm=MD5`,
			pbx.nonce, md5hex(ha1+":"+pbx.nonce+":"+ha2))
	}
	if st, text := status(t, pbx.answer(demoRegister(digest("secret100")))); st != 200 {
		t.Fatalf("right password: %s", text)
	}
	if st, text := status(t, pbx.answer(demoRegister(digest("wrong")))); st != 403 {
		t.Fatalf("wrong password: %s", text)
	}
}
