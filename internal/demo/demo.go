package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/gateway"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

//go:embed demo.yaml
var demoYAML string

// Options are the demo's few knobs.
type Options struct {
	Web     string       // web listener address; default 127.0.0.1:8080
	LDAP    string       // directory listener address; default 127.0.0.1:8389
	SIP     string       // SIP listeners' address (UDP and TCP); default 127.0.0.1:5160
	TURN    string       // TURN listeners' address (UDP and TCP); default 127.0.0.1:13478 (off the standard port: a coturn installed on the same host holds 3478)
	Admin   string       // admin API address; default 127.0.0.1:9190
	DataDir string       // default: a pbxgate-demo folder in the user cache dir
	Log     *slog.Logger // gateway and backend logs
	Out     io.Writer    // where the try-it commands are printed
}

// Users are the demo directory's accounts: bind name → password.
var Users = map[string]string{
	"alice@demo.test":                    "alice-secret",
	`DEMO\bob`:                           "bob-secret",
	"cn=carol,ou=people,dc=demo,dc=test": "carol-secret",
}

// The demo TURN server's static user, and its REST API secret.
const (
	TURNUser     = "demo"
	TURNPassword = "demo-secret"
	TURNSecret   = "demo-rest-api-secret-0123456789"
	turnRealm    = "demo.test"
)

// Config renders the demo configuration for the given backend addresses.
func Config(o Options, portal, prov, directory, pbx string) (*config.Config, error) {
	t, err := template.New("demo").Parse(demoYAML)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, map[string]string{
		"DataDir": o.DataDir, "Web": o.Web, "LDAP": o.LDAP, "SIP": o.SIP, "TURN": o.TURN, "Admin": o.Admin,
		"Portal": portal, "Prov": prov, "Directory": directory, "PBX": pbx,
		"TURNKey":    hex.EncodeToString(turnauth.LongTermKey(TURNUser, turnRealm, TURNPassword)),
		"TURNSecret": TURNSecret,
	}); err != nil {
		return nil, err
	}
	return config.Parse(b.Bytes(), "demo.yaml")
}

// Run starts the demo backends and the gateway in front of them, prints what
// to try, and runs until ctx is done.
func Run(ctx context.Context, o Options) error {
	if o.Web == "" {
		o.Web = "127.0.0.1:8080"
	}
	if o.LDAP == "" {
		o.LDAP = "127.0.0.1:8389"
	}
	if o.SIP == "" {
		o.SIP = "127.0.0.1:5160"
	}
	if o.TURN == "" {
		o.TURN = "127.0.0.1:13478"
	}
	if o.Admin == "" {
		o.Admin = "127.0.0.1:9190"
	}
	if o.DataDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		o.DataDir = filepath.Join(dir, "pbxgate-demo")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	backendLn := func() (net.Listener, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			lns = append(lns, ln)
		}
		return ln, err
	}
	portal, err := backendLn()
	if err != nil {
		return err
	}
	prov, err := backendLn()
	if err != nil {
		return err
	}
	dir, err := backendLn()
	if err != nil {
		return err
	}
	pbxTCP, err := backendLn()
	if err != nil {
		return err
	}
	// The demo PBX takes UDP on its TCP port: a service has one address.
	pbxUDP, err := net.ListenPacket("udp", pbxTCP.Addr().String())
	if err != nil {
		return fmt.Errorf("demo PBX: %w", err)
	}
	defer pbxUDP.Close()
	// The media server TURN clients relay to: a UDP and TCP echo on one port.
	mediaTCP, err := backendLn()
	if err != nil {
		return err
	}
	mediaUDP, err := net.ListenPacket("udp", mediaTCP.Addr().String())
	if err != nil {
		return fmt.Errorf("demo media server: %w", err)
	}
	defer mediaUDP.Close()
	cfg, err := Config(o, portal.Addr().String(), prov.Addr().String(), dir.Addr().String(), pbxTCP.Addr().String())
	if err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	g, err := gateway.New(cfg, gateway.Options{Log: o.Log})
	if err != nil {
		return err
	}
	errc := make(chan error, 5)
	blog := o.Log.With("component", "demo-backend")
	go func() { errc <- ServeHTTP(ctx, portal, "portal", blog) }()
	go func() { errc <- ServeHTTP(ctx, prov, "provisioning", blog) }()
	go func() { errc <- ServeLDAP(ctx, dir, Users, blog) }()
	go func() { errc <- ServeSIP(ctx, pbxUDP, pbxTCP, SIPUsers, blog) }()
	go func() { errc <- ServeEcho(ctx, mediaUDP, mediaTCP) }()

	if err := g.Start(ctx); err != nil {
		cancel()
		for range 5 {
			<-errc
		}
		return err
	}
	printTry(o.Out, o.Web, o.LDAP, o.SIP, o.TURN, mediaTCP.Addr().String(), cfg.Admin.Socket)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		cancel()
	}
	sctx, scancel := context.WithTimeout(context.Background(), cfg.Timeouts.Shutdown.D())
	defer scancel()
	err = errors.Join(first, g.Shutdown(sctx))
	return err
}

func printTry(w io.Writer, web, ldapAddr, sipAddr, turnAddr, media, socket string) {
	cli := "pbxgate"
	if self, err := os.Executable(); err == nil {
		cli = shellQuote(self)
		if strings.Contains(self, string(filepath.Separator)+"go-build") {
			// Started with go run: its binary lives in a build cache
			// directory; the same command works from the checkout.
			cli = "go run ./cmd/pbxgate"
		}
	}
	host, port, _ := net.SplitHostPort(web)
	_, lport, _ := net.SplitHostPort(ldapAddr)
	thost, tport, _ := net.SplitHostPort(turnAddr)
	mhost, mport, _ := net.SplitHostPort(media)
	uclient := "turnutils_uclient -p " + tport + " -e " + mhost + " -r " + mport + " -n 10 -m 1 -l 172 -c "
	prov := "prov.demo.test:" + port + ":" + host
	lines := []string{
		"",
		"pbxgate demo is running. Try, from another terminal:",
		"",
		"  # Host routing: unknown hosts go to the default service (portal)",
		"  curl -s http://" + web + "/",
		"  curl -s -H 'Host: portal.demo.test' http://" + web + "/hello",
		"  # the same port speaks TLS (self-signed certificate, hence -k) and HTTP/2",
		"  curl -sk --http2 https://" + web + "/",
		"  # path rules on the provisioning host: /app/provision/ open, / and /login.php denied (403)",
		"  curl -s --resolve " + prov + " http://prov.demo.test:" + port + "/app/provision/001122334455.cfg",
		"  curl -si --resolve " + prov + " http://prov.demo.test:" + port + "/login.php",
		"  # the CDR import URL is reserved to the SIP nodes' network 10.20.0.0/24: 403 from here",
		"  curl -si --resolve " + prov + " -X POST http://prov.demo.test:" + port + "/app/xml_cdr/xml_cdr_import.php",
		"  # a wrong password at the service is reported as an event",
		"  curl -si -u demo:wrong http://" + web + "/login",
		"",
		"  # LDAP routed by bind domain (ldap:// and ldaps:// on one port)",
		"  ldapsearch -x -H ldap://" + ldapAddr + " -D alice@demo.test -w alice-secret -b dc=demo,dc=test",
		"  ldapsearch -x -H ldap://" + ldapAddr + " -D 'DEMO\\bob' -w bob-secret -b dc=demo,dc=test",
		"  LDAPTLS_REQCERT=never ldapsearch -x -H ldaps://127.0.0.1:" + lport + " -D cn=carol,ou=people,dc=demo,dc=test -w carol-secret -b dc=demo,dc=test",
		"  ldapsearch -x -H ldap://" + ldapAddr + " -D alice@demo.test -w wrong -b dc=demo,dc=test   # → event",
		"",
		"  # SIP routed by the From domain, UDP and TCP on one port (from the checkout; sipp: apt-get install sip-tester)",
		"  sipp -sf examples/sipp/register.xml -key domain demo.test -s 100 -au 100 -ap secret100 -m 1 -nostdin " + sipAddr,
		"  sipp -sf examples/sipp/register.xml -key domain demo.test -s 101 -au 101 -ap secret101 -m 1 -nostdin -t t1 " + sipAddr,
		"  sipp -sf examples/sipp/register.xml -key domain demo.test -s 100 -au 100 -ap wrong -m 1 -nostdin " + sipAddr + "   # 403 → event, user=100",
		"",
		"  # STUN and TURN, UDP and TCP on one port, relaying to the demo's media echo server at " + media + " (apt-get install coturn)",
		"  turnutils_stunclient -p " + tport + " " + thost,
		"  " + uclient + "-u " + TURNUser + " -w " + TURNPassword + " " + thost,
		"  " + uclient + "-t -u " + TURNUser + " -w " + TURNPassword + " " + thost,
		"  " + cli + " turn allocations --socket " + shellQuote(socket),
		"",
		"  # fraud detection: more than 10 refusals a minute ban the source (000: no answer; a banned",
		"  # source's connection is held unanswered for fraud.refused_hold, 10s, then reset)",
		"  for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' --max-time 2 -u demo:wrong http://" + web + "/login; done; echo",
		"  " + cli + " bans --socket " + shellQuote(socket),
		"  " + cli + " unban 127.0.0.1 --socket " + shellQuote(socket),
		"",
		"Events and access lines appear in this terminal. Ctrl-C stops the demo.",
		"",
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
