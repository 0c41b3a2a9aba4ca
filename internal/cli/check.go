package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/gateway"
)

func newCheck(stdout io.Writer) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "check -c FILE",
		Short: "Validate a configuration file and print every problem",
		Long: "Validate FILE as serve would (schema, values, certificate and CA files) without\n" +
			"opening sockets or writing anything. Every problem is printed with file:line.\n" +
			"Exit status: 0 valid, 1 invalid.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.Load(file)
			if err == nil {
				var warnings []string
				warnings, err = gateway.Check(cfg)
				if err == nil {
					for _, w := range warnings {
						fmt.Fprintln(stdout, "warning:", w)
					}
					fmt.Fprintf(stdout, "%s: ok (%d listeners, %d services)\n", file, len(cfg.Listeners), len(cfg.Services))
					return nil
				}
			}
			fmt.Fprintf(stdout, "%s: invalid:\n", file)
			problems(stdout, err)
			return &exitError{code: 1, err: fmt.Errorf("")}
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", defaultConfigFile, "configuration file")
	return cmd
}
