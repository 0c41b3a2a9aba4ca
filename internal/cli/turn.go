package cli

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/admin"
	"github.com/pbxgate/pbxgate/internal/adminclient"
	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/turn"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

// newTURN is `pbxgate turn ...`: credentials and keys from the
// configuration file, allocations from the running daemon.
func newTURN(stdout io.Writer) *cobra.Command {
	parent := &cobra.Command{
		Use:   "turn credentials|key|allocations|end",
		Short: "TURN credentials and allocations",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return usageErr(errors.New("missing subcommand\nusage: pbxgate turn credentials|key|allocations|end"))
		},
	}
	parent.AddCommand(newTURNCredentials(stdout), newTURNKey(stdout), newTURNAllocations(stdout), newTURNEnd(stdout))
	return parent
}

// turnConfig loads the configuration file a turn command reads.
func turnConfig(file string) (*config.Config, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, usageErr(err)
	}
	return cfg, nil
}

func newTURNCredentials(stdout io.Writer) *cobra.Command {
	var (
		file string
		ttl  time.Duration
		asJS bool
	)
	cmd := &cobra.Command{
		Use:   "credentials USER [--ttl D] [-c FILE]",
		Short: "Print a TURN REST API username and password for USER",
		Long: "Print a username/password pair of the TURN REST API for USER, valid for --ttl,\n" +
			"signed with the first secret of turn.rest_secrets (or rest_secrets_file) in the\n" +
			"configuration file: what a WebRTC application hands its browser clients. Nothing\n" +
			"is sent to the daemon; any pbxgate with the same secret accepts the pair.\n" +
			"Exit status: 0 printed, 2 usage or configuration error.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, err := turnConfig(file)
			if err != nil {
				return err
			}
			secrets, err := cfg.TURN.TURNSecrets()
			if err != nil {
				return usageErr(err)
			}
			if len(secrets) == 0 {
				return usageErr(fmt.Errorf("%s: turn.rest_secrets is empty: no secret to sign with", file))
			}
			s, err := turnauth.NewSecrets(secrets)
			if err != nil {
				return usageErr(err)
			}
			user, pass, err := s.Issue(args[0], time.Now(), ttl)
			if err != nil {
				return usageErr(err)
			}
			if asJS {
				return printJSON(stdout, map[string]any{"username": user, "password": pass, "ttl": int(ttl.Seconds()), "realm": cfg.TURN.Realm})
			}
			fmt.Fprintf(stdout, "username: %s\npassword: %s\n", user, pass)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", defaultConfigFile, "configuration file")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the credential is valid (1m to 168h)")
	cmd.Flags().BoolVar(&asJS, "json", false, "print JSON (username, password, ttl, realm)")
	return cmd
}

func newTURNKey(stdout io.Writer) *cobra.Command {
	var (
		file  string
		realm string
	)
	cmd := &cobra.Command{
		Use:   "key USER [--realm R | -c FILE]",
		Short: "Print the long-term key of a static TURN user; the password is read from stdin",
		Long: "Read USER's password from the first line of standard input and print the key to\n" +
			"write under turn.users: hex(MD5(USER:realm:password)). The realm is --realm, else\n" +
			"turn.realm of the configuration file. The password is never stored.\n" +
			"Exit status: 0 printed, 2 usage or configuration error.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if user == "" || strings.ContainsAny(user, ": ") {
				return usageErr(fmt.Errorf("user %q: need a name without ':' or spaces", user))
			}
			if realm == "" {
				cfg, err := turnConfig(file)
				if err != nil {
					return err
				}
				if realm = cfg.TURN.Realm; realm == "" {
					return usageErr(fmt.Errorf("%s: turn.realm is empty; give --realm", file))
				}
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return usageErr(fmt.Errorf("reading the password: %w", err))
			}
			pass := strings.TrimRight(line, "\r\n")
			if pass == "" {
				return usageErr(errors.New("empty password on standard input"))
			}
			fmt.Fprintf(stdout, "- {name: %s, key: %s}\n", user, hex.EncodeToString(turnauth.LongTermKey(user, realm, pass)))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", defaultConfigFile, "configuration file (for turn.realm)")
	cmd.Flags().StringVar(&realm, "realm", "", "the realm (default: turn.realm of the configuration file)")
	return cmd
}

func newTURNAllocations(stdout io.Writer) *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "allocations",
		Short: "List the active TURN allocations",
		Long:  "List the active TURN allocations: id, user, client, relay address, age and bytes relayed." + adminLong,
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(cmd, &f, stdout, (*adminclient.Client).Allocations,
				func(as admin.AllocationsJSON) error { return printAllocations(stdout, as.Allocations) })
		},
	}
	f.add(cmd)
	return cmd
}

func newTURNEnd(stdout io.Writer) *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "end ID",
		Short: "End a TURN allocation",
		Long:  "End the TURN allocation ID (from `pbxgate turn allocations`): its relay is closed at once." + adminLong,
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return usageErr(fmt.Errorf("%q is not an allocation id", args[0]))
			}
			return do(cmd, &f, stdout,
				func(c *adminclient.Client, ctx context.Context) (turn.Allocation, error) {
					return c.EndAllocation(ctx, id)
				},
				func(a turn.Allocation) error {
					fmt.Fprintf(stdout, "ended allocation %d (user %s, client %s, relay %s)\n", a.ID, safe(a.User, 64), a.Client, a.Relay)
					return nil
				})
		},
	}
	f.add(cmd)
	return cmd
}

func printAllocations(w io.Writer, as []turn.Allocation) error {
	if len(as) == 0 {
		fmt.Fprintln(w, "no allocations")
		return nil
	}
	tw := newTableWriter(w)
	fmt.Fprintln(tw, "ID\tLISTENER\tUSER\tCLIENT\tRELAY\tAGE\tTO PEER\tFROM PEER")
	for _, a := range as {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\n", a.ID, safe(a.Listener, 32), safe(a.User, 48), dash(a.Client),
			a.Protocol, a.Relay, humanDuration(time.Duration(a.Age*float64(time.Second))), bytesText(a.BytesToPeer), bytesText(a.BytesFromPeer))
	}
	return tw.Flush()
}

// bytesText is n bytes for people: 512 B, 1.5 KiB, 3.2 MiB.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
