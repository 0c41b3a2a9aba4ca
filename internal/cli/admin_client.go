package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/adminclient"
	"github.com/pbxgate/pbxgate/internal/config"
)

// defaultConfigFile is where the operator commands look for the admin
// socket when neither --socket nor --url is given.
const defaultConfigFile = "/etc/pbxgate/pbxgate.yaml"

// adminNow is the operator commands' clock (relative expiries); tests set
// it.
var adminNow = time.Now

// adminFlags are the flags every operator command has: where the admin API
// is, and how to print.
type adminFlags struct {
	config string
	socket string
	url    string
	token  string
	json   bool
}

func (f *adminFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", defaultConfigFile, "configuration file, read only to find the admin socket or address")
	fl.StringVar(&f.socket, "socket", "", "admin unix socket (default: admin.socket from the configuration)")
	fl.StringVar(&f.url, "url", "", "admin API over TCP, like http://127.0.0.1:9190 (needs --token)")
	fl.StringVar(&f.token, "token", "", "admin token for --url (default: $PBXGATE_TOKEN)")
	fl.BoolVar(&f.json, "json", false, "print the API's JSON instead of a table")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
}

// client finds the admin API: --socket, else --url, else the configuration
// file's admin section (the socket, or the TCP address when the socket is
// off).
func (f *adminFlags) client(cmd *cobra.Command) (*adminclient.Client, error) {
	token := f.token
	if token == "" {
		token = os.Getenv("PBXGATE_TOKEN")
	}
	switch {
	case f.socket != "":
		return adminclient.New(adminclient.Options{Socket: f.socket})
	case f.url != "":
		if token == "" {
			return nil, usageErr(errors.New("--url needs --token or $PBXGATE_TOKEN"))
		}
		c, err := adminclient.New(adminclient.Options{URL: f.url, Token: token})
		if err != nil {
			return nil, usageErr(err)
		}
		return c, nil
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
			// No configuration where it usually is: try the default socket.
			return adminclient.New(adminclient.Options{Socket: filepath.Join(config.DefaultDataDir, config.DefaultAdminSocket)})
		}
		return nil, fmt.Errorf("cannot read %s to find the admin socket (pass --socket PATH or --url URL):\n%w", f.config, err)
	}
	if s := cfg.Admin.Socket; s != "" && s != config.Off {
		return adminclient.New(adminclient.Options{Socket: s})
	}
	addr := cfg.Admin.Address
	if addr == "" || addr == config.Off {
		return nil, fmt.Errorf("%s turns both the admin socket and the admin address off; nothing to talk to", f.config)
	}
	if token == "" {
		return nil, fmt.Errorf("the admin socket is off in %s; to use the admin API at %s pass --token or set $PBXGATE_TOKEN", f.config, addr)
	}
	u, err := adminURL(addr)
	if err != nil {
		return nil, fmt.Errorf("%s: admin.address: %w", f.config, err)
	}
	return adminclient.New(adminclient.Options{URL: u, Token: token})
}

// adminURL turns a listen address into a URL to dial: an unspecified host
// means this machine.
func adminURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// usageErr marks err as a usage error (exit status 2).
func usageErr(err error) error { return &exitError{code: 2, err: err} }

// apiErr turns an error of the client into the command's error: a request
// the API refused as bad (400) is a usage error, anything else exit 1.
func apiErr(err error) error {
	var ae *adminclient.APIError
	if errors.As(err, &ae) && ae.Status == 400 {
		return usageErr(err)
	}
	return err
}

// usageArgs wraps a cobra argument check so its failure exits 2.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageErr(fmt.Errorf("%w\nusage: %s", err, cmd.UseLine()))
		}
		return nil
	}
}

// cmdContext returns the command's context, or Background.
func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
