package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/admin"
	"github.com/pbxgate/pbxgate/internal/adminclient"
)

// adminCommands are the operator commands: they talk to a running pbxgate
// through its admin API.
func adminCommands(stdout, stderr io.Writer) []*cobra.Command {
	return []*cobra.Command{
		newBans(stdout), newBan(stdout), newUnban(stdout),
		newAllow(stdout), newDisallow(stdout), newWhitelist(stdout),
		newInspect(stdout), newEvents(stdout), newStats(stdout), newToken(stdout, stderr),
	}
}

const adminLong = "\n\nThe command talks to the running pbxgate over its admin socket (found in the\n" +
	"configuration file given with -c), or over TCP with --url and --token.\n" +
	"Exit status: 0 done, 1 pbxgate refused or could not be reached, 2 usage error."

// printJSON writes v the way the API does: one compact JSON document and a
// newline.
func printJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// do connects to the admin API, makes one call and prints its answer: the
// API's JSON with --json, else what human prints.
func do[T any](cmd *cobra.Command, f *adminFlags, stdout io.Writer,
	call func(*adminclient.Client, context.Context) (T, error), human func(T) error) error {
	c, err := f.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := call(c, cmdContext(cmd))
	if err != nil {
		return apiErr(err)
	}
	if f.json {
		return printJSON(stdout, v)
	}
	return human(v)
}

// entries adapts a list call to do.
func entries(list func(*adminclient.Client, context.Context) ([]admin.EntryJSON, error)) func(*adminclient.Client, context.Context) (admin.EntriesJSON, error) {
	return func(c *adminclient.Client, ctx context.Context) (admin.EntriesJSON, error) {
		es, err := list(c, ctx)
		return admin.EntriesJSON{Entries: es}, err
	}
}

// parsePrefixArg reads an IP|CIDR argument.
func parsePrefixArg(s string) (string, error) {
	p, err := admin.ParseAddress(s)
	if err != nil {
		return "", usageErr(err)
	}
	return admin.FormatPrefix(p), nil
}

func newBans(stdout io.Writer) *cobra.Command {
	var f adminFlags
	var address string
	cmd := &cobra.Command{
		Use:   "bans [--address IP]",
		Short: "List the blacklist",
		Long:  "List the blacklist entries in force, automatic and manual." + adminLong,
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(cmd, &f, stdout,
				entries(func(c *adminclient.Client, ctx context.Context) ([]admin.EntryJSON, error) {
					return c.Bans(ctx, address)
				}),
				func(v admin.EntriesJSON) error { return printEntries(stdout, "blacklist", v.Entries, adminNow()) })
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&address, "address", "", "only entries covering this IP address (or overlapping this CIDR prefix)")
	return cmd
}

func newWhitelist(stdout io.Writer) *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "whitelist",
		Short: "List the whitelist",
		Long:  "List the whitelist entries made at run time and from the configuration file." + adminLong,
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(cmd, &f, stdout, entries((*adminclient.Client).Whitelist),
				func(v admin.EntriesJSON) error { return printEntries(stdout, "whitelist", v.Entries, adminNow()) })
		},
	}
	f.add(cmd)
	return cmd
}

// newAdd builds ban and allow.
func newAdd(stdout io.Writer, use, short, long, verb string,
	call func(*adminclient.Client, context.Context, string, time.Duration, string) (admin.EntryJSON, error)) *cobra.Command {
	var f adminFlags
	var forText, note string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long + adminLong,
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := parsePrefixArg(args[0])
			if err != nil {
				return err
			}
			var d time.Duration
			if forText != "" {
				if d, err = admin.ParseDuration(forText); err != nil {
					return usageErr(fmt.Errorf("--for: %w", err))
				}
			}
			return do(cmd, &f, stdout,
				func(c *adminclient.Client, ctx context.Context) (admin.EntryJSON, error) {
					return call(c, ctx, addr, d, note)
				},
				func(e admin.EntryJSON) error {
					_, err := fmt.Fprintf(stdout, "%s %s %s\n", verb, e.Address, untilText(e.Expires, adminNow()))
					return err
				})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&forText, "for", "", "how long, like 30m, 12h or 7d (default: forever)")
	cmd.Flags().StringVar(&note, "note", "", "a note kept with the entry")
	return cmd
}

func newBan(stdout io.Writer) *cobra.Command {
	return newAdd(stdout, "ban IP|CIDR [--for D] [--note T]", "Blacklist an address or prefix",
		"Blacklist an address or a CIDR prefix: its connections are refused before any parsing.", "banned",
		(*adminclient.Client).Ban)
}

func newAllow(stdout io.Writer) *cobra.Command {
	return newAdd(stdout, "allow IP|CIDR [--for D] [--note T]", "Whitelist an address or prefix (and lift its bans)",
		"Whitelist an address or a CIDR prefix: its events are never counted and it is never\n"+
			"banned. Any ban on it, or on addresses inside the prefix, is lifted too.", "whitelisted",
		(*adminclient.Client).Allow)
}

// newRemove builds unban and disallow.
func newRemove(stdout io.Writer, use, short, long, done string,
	call func(*adminclient.Client, context.Context, string) (admin.EntryJSON, error)) *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long + adminLong,
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := parsePrefixArg(args[0])
			if err != nil {
				return err
			}
			return do(cmd, &f, stdout,
				func(c *adminclient.Client, ctx context.Context) (admin.EntryJSON, error) { return call(c, ctx, addr) },
				func(e admin.EntryJSON) error {
					_, err := fmt.Fprintf(stdout, done+"\n", e.Address)
					return err
				})
		},
	}
	f.add(cmd)
	return cmd
}

func newUnban(stdout io.Writer) *cobra.Command {
	return newRemove(stdout, "unban IP|CIDR", "Remove a blacklist entry",
		"Remove the blacklist entry for exactly this address or prefix.", "unbanned %s",
		(*adminclient.Client).Unban)
}

func newDisallow(stdout io.Writer) *cobra.Command {
	return newRemove(stdout, "disallow IP|CIDR", "Remove a whitelist entry",
		"Remove the whitelist entry for exactly this address or prefix. Entries from the\n"+
			"configuration file are removed by editing the file and reloading.", "removed %s from the whitelist",
		(*adminclient.Client).Disallow)
}

func newInspect(stdout io.Writer) *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "inspect IP",
		Short: "Say whether an address is refused, and why",
		Long:  "Show what the fraud engine knows about an address: the entries covering it, its\nscore against the threshold, and the users known at it." + adminLong,
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := netip.ParseAddr(args[0])
			if err != nil {
				return usageErr(fmt.Errorf("%q is not an IP address", args[0]))
			}
			return do(cmd, &f, stdout,
				func(c *adminclient.Client, ctx context.Context) (admin.SourceJSON, error) {
					return c.Inspect(ctx, a.String())
				},
				func(si admin.SourceJSON) error { return printSource(stdout, si, adminNow()) })
		},
	}
	f.add(cmd)
	return cmd
}

func newEvents(stdout io.Writer) *cobra.Command {
	var f adminFlags
	var q adminclient.EventQuery
	var follow bool
	cmd := &cobra.Command{
		Use:   "events [--follow] [--kind K] [--source S] [--since D] [--limit N] ...",
		Short: "List recent security events, or follow them",
		Long: "List the recent events (oldest first), or with --follow keep printing new ones\n" +
			"until interrupted. With --json each event is one JSON line when following." + adminLong,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if q.Since != "" {
				if _, err := time.Parse(time.RFC3339, q.Since); err != nil {
					if _, err := admin.ParseDuration(q.Since); err != nil {
						return usageErr(fmt.Errorf("--since %q: want a duration back from now (10m, 2h, 1d) or an RFC 3339 time", q.Since))
					}
				}
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmdContext(cmd)
			if !follow {
				evs, err := c.Events(ctx, q)
				if err != nil {
					return apiErr(err)
				}
				if f.json {
					return printJSON(stdout, admin.EventsJSON{Events: evs})
				}
				printEventHeader(stdout)
				for _, ev := range evs {
					printEvent(stdout, ev)
				}
				return nil
			}
			ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
			defer stop()
			if !f.json {
				printEventHeader(stdout)
			}
			err = c.Follow(ctx, q, func(ev admin.EventJSON) error {
				if f.json {
					return printJSON(stdout, ev)
				}
				printEvent(stdout, ev)
				return nil
			})
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil // interrupted: done
			}
			return apiErr(err)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	fl.StringVar(&q.Kind, "kind", "", "rejected_by_gateway, backend_unreachable, rejected_by_service or success")
	fl.StringVar(&q.Source, "source", "", "only events from this IP address or CIDR prefix")
	fl.StringVar(&q.Listener, "listener", "", "only events of this listener")
	fl.StringVar(&q.Service, "service", "", "only events of this service")
	fl.StringVar(&q.Proto, "proto", "", "only events of this protocol (http, ldap, tls, ...)")
	fl.StringVar(&q.Reason, "reason", "", "only events with this reason (denied_path, invalid_credentials, ...)")
	fl.StringVar(&q.User, "user", "", "only events naming this user")
	fl.StringVar(&q.Since, "since", "", "only events since a duration ago (10m, 2h, 1d) or an RFC 3339 time")
	fl.IntVarP(&q.Limit, "limit", "n", 0, "at most this many recent events, the newest (default 100, at most 10000)")
	fl.BoolVar(&q.Suspicious, "suspicious", false, "only events that count against their source")
	return cmd
}

func newStats(stdout io.Writer) *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show the fraud engine's counters",
		Long:  "Show the fraud engine's counters since pbxgate started." + adminLong,
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(cmd, &f, stdout, (*adminclient.Client).Stats,
				func(st admin.StatsJSON) error { return printStats(stdout, st) })
		},
	}
	f.add(cmd)
	return cmd
}

func newToken(stdout, stderr io.Writer) *cobra.Command {
	parent := &cobra.Command{
		Use:   "token rotate",
		Short: "Manage the admin token",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErr(fmt.Errorf("missing subcommand\nusage: %s", "pbxgate token rotate"))
		},
	}
	var f adminFlags
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new admin token; the old one stops working",
		Long: "Make a new admin token for the TCP admin API and print it once; the old token\n" +
			"stops working at once. Only possible over the admin socket, so an operator with\n" +
			"access to the machine can recover a lost token." + adminLong,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			tok, err := c.RotateToken(cmdContext(cmd))
			if err != nil {
				return apiErr(err)
			}
			if f.json {
				return printJSON(stdout, admin.TokenJSON{Token: tok})
			}
			fmt.Fprintln(stderr, "New admin token (shown only this once; the old token no longer works):")
			fmt.Fprintln(stdout, tok)
			return nil
		},
	}
	f.add(rotate)
	parent.AddCommand(rotate)
	parent.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	return parent
}
