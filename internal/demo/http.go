package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServeHTTP runs a small web service named name on ln until ctx is done. It
// answers every path with a line naming itself, the request and the
// forwarding headers it received, so routing is visible; /login asks for
// HTTP basic credentials (user demo, password demo) and answers 401 without
// them, which the gateway reports as a rejection by the service.
func ServeHTTP(ctx context.Context, ln net.Listener, name string, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "demo" || p != "demo" {
			w.Header().Set("WWW-Authenticate", `Basic realm="pbxgate demo"`)
			http.Error(w, "401 login required (user demo, password demo)", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "%s: welcome, demo\n", name)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s answered %s %s (Host %s)\n", name, r.Method, r.URL.RequestURI(), r.Host)
		fmt.Fprintf(w, "  X-Forwarded-For: %s\n  X-Forwarded-Proto: %s\n  Forwarded: %s\n",
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Forwarded"))
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
