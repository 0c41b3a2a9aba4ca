package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/demo"
)

func newDemo(stdout, stderr io.Writer) *cobra.Command {
	var o demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run pbxgate on loopback with demo backends, no configuration needed",
		Long: "Start the gateway on unprivileged loopback ports with the embedded demo configuration,\n" +
			"plus a small web service, an LDAP bind responder, a SIP registrar and a media echo server behind it, and print\ncommands to try (STUN/TURN included).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
			defer stop()
			o.Log, _ = newLogger(config.Log{Level: "info"}, stderr)
			o.Out = stdout
			return demo.Run(ctx, o)
		},
	}
	cmd.Flags().StringVar(&o.Web, "web", "127.0.0.1:8080", "address of the web listener (HTTP and HTTPS)")
	cmd.Flags().StringVar(&o.LDAP, "ldap", "127.0.0.1:8389", "address of the directory listener (LDAP and LDAPS)")
	cmd.Flags().StringVar(&o.SIP, "sip", "127.0.0.1:5160", "address of the SIP listeners (UDP and TCP)")
	cmd.Flags().StringVar(&o.TURN, "turn", "127.0.0.1:13478", "address of the STUN/TURN listeners (UDP and TCP)")
	cmd.Flags().StringVar(&o.Admin, "admin", "127.0.0.1:9190", "address of the admin API")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "", "where the self-signed certificate, the state and the admin socket are kept (default: user cache dir)")
	return cmd
}
