package event

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		RejectedByGateway: "rejected_by_gateway", BackendUnreachable: "backend_unreachable",
		RejectedByService: "rejected_by_service", Success: "success", 9: "kind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
	if Success.Suspicious() || !RejectedByService.Suspicious() || Kind(0).Suspicious() {
		t.Error("Suspicious: only the three rejection kinds are suspicious")
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 8, "plain"},
		{"new\nline", 32, `new\nline`},
		{"\x00\xff", 32, `\x00\xff`},
		{strings.Repeat("a", 10), 4, "aaaa…"},
		{"a\tb" + strings.Repeat("c", 10), 6, `a\tbcc…`},
	} {
		if got := Clip(tc.in, tc.max); got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestLogSinkLevelsAndEscaping(t *testing.T) {
	var buf bytes.Buffer
	s := LogSink{Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	src := netip.MustParseAddr("203.0.113.9")
	s.Emit(Event{Time: time.Now(), Kind: Success, Source: src, Proto: "http", Reason: ReasonOK})
	if buf.Len() != 0 {
		t.Fatalf("a success was logged at warn level: %q", buf.String())
	}
	s.Emit(Event{Time: time.Now(), Kind: RejectedByGateway, Source: src, Listener: "web", Proto: "http",
		Reason: ReasonDeniedPath, Service: "prov", User: "bob", Detail: "/login.php\n\x1b[31mforged line"})
	out := buf.String()
	for _, want := range []string{"level=WARN", "msg=event", "kind=rejected_by_gateway", "src=203.0.113.9",
		"reason=denied_path", "service=prov", "user=bob", `\\n\\x1b[31mforged`} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %q", out, want)
		}
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("attacker text split the log line: %q", out)
	}
}

func TestFanoutAndRecorder(t *testing.T) {
	var a, b Recorder
	Fanout{&a, &b}.Emit(Event{Kind: Success})
	if len(a.Events()) != 1 || len(b.Events()) != 1 {
		t.Fatalf("fanout delivered %d and %d events, want 1 each", len(a.Events()), len(b.Events()))
	}
}

func TestReasonsListsEveryConstant(t *testing.T) {
	src, err := os.ReadFile("event.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*Reason\w+\s*=\s*"([a-z_]+)"`)
	found := re.FindAllSubmatch(src, -1)
	if len(found) == 0 {
		t.Fatal("no Reason constants found in event.go")
	}
	for _, m := range found {
		if !KnownReason(string(m[1])) {
			t.Errorf("reason %q is missing from reasons.go", m[1])
		}
	}
	if len(Reasons()) != len(found) {
		t.Errorf("Reasons() has %d entries, event.go declares %d", len(Reasons()), len(found))
	}
}
