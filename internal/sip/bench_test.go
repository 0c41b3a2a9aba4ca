package sip

import "testing"

func TestAllocs(t *testing.T) {
	register := readFile(t, "testdata/messages/register-yealink-digest.sip")
	invite := readFile(t, "testdata/messages/invite-sdp-proxy-auth.sip")
	for _, in := range []struct {
		name string
		b    []byte
	}{{"register", register}, {"invite", invite}, {"response", readFile(t, "testdata/messages/ok-200-totag-sdp.sip")},
		{"compact", readFile(t, "testdata/messages/compact-ipv6-tel.sip")}} {
		t.Run("Parse/"+in.name, func(t *testing.T) {
			var m Message
			if a := testing.AllocsPerRun(100, func() {
				if err := Parse(in.b, &m); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("Parse allocates %v times", a)
			}
		})
	}
	stream := append(append(append([]byte("\r\n\r\n"), register...), invite...), "\r\n"...)
	t.Run("Framer.Next", func(t *testing.T) {
		var m Message
		if a := testing.AllocsPerRun(100, func() {
			var f Framer
			for rest := stream; len(rest) > 0; {
				n, _, err := f.Next(rest, &m)
				if err != nil || n == 0 {
					t.Fatal(n, err)
				}
				rest = rest[n:]
			}
			// A partial message: the incremental path.
			if n, _, err := f.Next(invite[:len(invite)-10], nil); n != 0 || err != nil {
				t.Fatal(n, err)
			}
			if n, _, err := f.Next(invite, nil); n != len(invite) || err != nil {
				t.Fatal(n, err)
			}
		}); a != 0 {
			t.Errorf("Framer.Next allocates %v times", a)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"register-yealink-digest", "invite-sdp-proxy-auth", "ok-200-totag-sdp"} {
		msg := readFile(b, "testdata/messages/"+name+".sip")
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			var m Message
			for b.Loop() {
				if err := Parse(msg, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFramer(b *testing.B) {
	register := readFile(b, "testdata/messages/register-yealink-digest.sip")
	invite := readFile(b, "testdata/messages/invite-sdp-proxy-auth.sip")
	stream := append(append([]byte{}, register...), invite...)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	var m Message
	var f Framer
	for b.Loop() {
		for rest := stream; len(rest) > 0; {
			n, _, err := f.Next(rest, &m)
			if err != nil || n == 0 {
				b.Fatal(n, err)
			}
			rest = rest[n:]
		}
	}
}
