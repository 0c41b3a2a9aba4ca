package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/gateway"
)

func newServe(stderr io.Writer) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "serve -c FILE",
		Short: "Run the gateway",
		Long: "Run the gateway with the configuration FILE.\n\n" +
			"SIGTERM/SIGINT drain connections for timeouts.shutdown, then exit.\n" +
			"SIGHUP reloads FILE; a configuration with errors is refused and the running one kept.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), file, stderr)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", defaultConfigFile, "configuration file")
	return cmd
}

func serve(ctx context.Context, file string, stderr io.Writer) error {
	cfg, err := config.Load(file)
	if err != nil {
		fmt.Fprintf(stderr, "pbxgate: configuration %s has problems:\n", file)
		problems(stderr, err)
		return &exitError{code: 2, err: fmt.Errorf("not started")}
	}
	log, level := newLogger(cfg.Log, stderr)
	g, err := gateway.New(cfg, gateway.Options{Log: log, Version: release()})
	if err != nil {
		fmt.Fprintln(stderr, "pbxgate: cannot start:")
		problems(stderr, err)
		return &exitError{code: 2, err: fmt.Errorf("not started")}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				next, err := config.Load(file)
				if err == nil {
					err = g.Reload(next)
				}
				if err != nil {
					log.Error("reload refused, the running configuration stays in force", "file", file, "err", err)
					continue
				}
				level.Set(parseLevel(next.Log.Level))
			}
		}
	}()

	log.Info("pbxgate starting", "version", versionString(), "config", file, "pid", os.Getpid())
	if err := g.Start(ctx); err != nil {
		log.Error("cannot start", "err", err)
		return &exitError{code: 2, err: fmt.Errorf("not started: %w", err)}
	}
	<-ctx.Done()
	log.Info("draining connections", "timeout", g.Config().Timeouts.Shutdown.D().String())
	sctx, cancel := context.WithTimeout(context.Background(), g.Config().Timeouts.Shutdown.D())
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		log.Error("stopped with errors", "err", err)
		return &exitError{code: 1, err: fmt.Errorf("")}
	}
	log.Info("pbxgate stopped")
	return nil
}
