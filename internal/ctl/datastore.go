package ctl

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/datastore/embedded"
)

// newDatastoreCommand is `tabby datastore`: the embedded etcd daemon.
func newDatastoreCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "datastore",
		Short: "Run Tabby's datastore (an embedded etcd)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newDatastoreRunCommand(g))
	return cmd
}

func newDatastoreRunCommand(g *globals) *cobra.Command {
	var (
		cfg      embedded.Config
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "run --data-dir DIR [--listen URL]",
		Short: "Run an embedded etcd member until SIGTERM or SIGINT",
		Long: `Run an embedded etcd server: a single-member cluster by default, or one
member of a static cluster with --listen-peer and --initial-cluster.
Data lives in --data-dir and survives restarts. Clients (agents, the CLI)
reach it at the --listen URL (http://IP:PORT, https://IP:PORT or
unix:///path/sock). One line is printed on stdout once it serves.`,
		Example: `  tabby datastore run --data-dir /var/lib/tabby/etcd
  tabby datastore run --data-dir /tmp/etcd --listen unix:///run/tabby/etcd.sock
  tabby datastore run --name a --data-dir /var/lib/tabby/etcd --listen http://10.0.0.1:2379 \
    --listen-peer http://10.0.0.1:2380 \
    --initial-cluster a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.DataDir == "" {
				return exitError{code: 2, msg: "datastore run: --data-dir is required"}
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return exitError{code: 2, msg: fmt.Sprintf("datastore run: --log-level %q: want debug, info, warn or error", logLevel)}
			}
			cfg.Logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
			srv, err := embedded.New(cfg)
			if err != nil {
				return exitError{code: 2, msg: "datastore run: " + err.Error()}
			}
			ctx := cmd.Context()
			if err := srv.Start(ctx); err != nil {
				if ctx.Err() != nil {
					return nil // told to stop while starting: a clean exit
				}
				return err
			}
			fmt.Fprintf(g.stdout, "datastore ready: clients connect to %s (data in %s)\n", srv.ClientURL(), cfg.DataDir)
			var runErr error
			select {
			case <-ctx.Done():
			case err, ok := <-srv.Err():
				if ok && err != nil {
					runErr = fmt.Errorf("datastore: %w", err)
				}
			}
			if err := srv.Stop(); err != nil && runErr == nil {
				runErr = err
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory of the member's data (required; created if missing)")
	f.StringVar(&cfg.ListenClient, "listen", embedded.DefaultListenClient, "client URL: http://IP:PORT, https://IP:PORT or unix:///path/sock")
	f.StringVar(&cfg.AdvertiseClient, "advertise", "", "client URL published to the cluster (default: --listen)")
	f.StringVar(&cfg.Name, "name", embedded.DefaultName, "member name, unique in the cluster")
	f.StringVar(&cfg.ListenPeer, "listen-peer", "", "peer URL http(s)://IP:PORT (multi-member clusters)")
	f.StringVar(&cfg.AdvertisePeer, "advertise-peer", "", "peer URL published to the cluster (default: --listen-peer)")
	f.StringVar(&cfg.InitialCluster, "initial-cluster", "", "name=peerURL,... of every member (default: this member alone)")
	f.StringVar(&cfg.ClusterState, "initial-cluster-state", embedded.ClusterStateNew, "new, or existing to join a running cluster")
	f.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", embedded.DefaultClusterToken, "token telling separate clusters apart")
	f.StringVar(&cfg.CertFile, "cert-file", "", "server certificate for https:// client URLs")
	f.StringVar(&cfg.KeyFile, "key-file", "", "server key for https:// client URLs")
	f.StringVar(&cfg.TrustedCAFile, "trusted-ca-file", "", "CA that signs client certificates")
	f.BoolVar(&cfg.ClientCertAuth, "client-cert-auth", false, "require clients to present a certificate signed by --trusted-ca-file")
	f.StringVar(&cfg.PeerCertFile, "peer-cert-file", "", "certificate for https:// peer URLs")
	f.StringVar(&cfg.PeerKeyFile, "peer-key-file", "", "key for https:// peer URLs")
	f.StringVar(&cfg.PeerTrustedCAFile, "peer-trusted-ca-file", "", "CA that signs peer certificates (peers must then present one)")
	f.StringVar(&cfg.AutoCompactionMode, "auto-compaction-mode", embedded.DefaultAutoCompactionMode, "periodic or revision")
	f.StringVar(&cfg.AutoCompactionRetention, "auto-compaction-retention", "", "history kept: a duration (periodic, default 1h) or a revision count (revision, default 10000)")
	f.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", embedded.DefaultQuotaBackendBytes, "database size at which etcd refuses writes")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
