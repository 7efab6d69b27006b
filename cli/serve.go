package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/verifier/cosign"
)

// parseWitnessFlag splits "URL=VKEY" at the '=' after which a valid
// cosignature vkey follows (URLs may contain '=' in their query).
func parseWitnessFlag(s string) (directory.WitnessConfig, error) {
	for i := strings.LastIndex(s, "="); i > 0; i = strings.LastIndex(s[:i], "=") {
		rawURL, vkey := s[:i], s[i+1:]
		if _, err := cosign.NewVerifierFromVkey(vkey); err == nil {
			if !strings.HasPrefix(rawURL, "http://") && !strings.HasPrefix(rawURL, "https://") {
				return directory.WitnessConfig{}, fmt.Errorf("--witness %q: the URL must start with http:// or https://", s)
			}
			u := strings.TrimRight(rawURL, "/")
			if pu, err := url.Parse(u); err != nil || pu.Host == "" || !strings.HasPrefix(u, pu.Scheme+"://") {
				return directory.WitnessConfig{}, fmt.Errorf("--witness %q: the URL %q has no host", s, rawURL)
			}
			return directory.WitnessConfig{URL: u, VKey: vkey}, nil
		}
	}
	return directory.WitnessConfig{}, fmt.Errorf("--witness %q: want URL=VKEY with the witness' cosignature vkey (printed by `keyline witness`)", s)
}

func (a *app) serveCmd() *cobra.Command {
	var (
		cfg            directory.Config
		listen         string
		witnesses      []string
		adminTokenFile string
		noSync         bool
		tlsCert        string
		tlsKey         string
		maxAge         time.Duration
		httpAddr       string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the directory server",
		Long: `Run a Keyline directory. On first start it creates its keys (log, VRF, reset)
and trust.json in --data-dir; give trust.json to clients (they read it from
<their data dir>/trust.json or --trust). The admin token for resets is in
<data-dir>/admin.token unless --admin-token-file is given.

With --tls-cert and --tls-key the directory serves gRPC over TLS (1.3 or
later); clients then need --tls (system roots) or --tls-ca FILE. Without
them it serves plaintext gRPC and says so on stderr: use that only on
loopback or behind a TLS-terminating proxy.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (tlsCert == "") != (tlsKey == "") {
				return usageErr("--tls-cert and --tls-key go together: give both to serve TLS, or neither for plaintext")
			}
			var grpcOpts []grpc.ServerOption
			var tlsCfg *tls.Config
			if tlsCert != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return failf("check --tls-cert and --tls-key (PEM certificate chain and its private key)", err, "cannot load the TLS certificate")
				}
				tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
				grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
			}
			for _, w := range witnesses {
				wc, err := parseWitnessFlag(w)
				if err != nil {
					return usageErr("%v", err)
				}
				cfg.Witnesses = append(cfg.Witnesses, wc)
			}
			if adminTokenFile != "" {
				b, err := os.ReadFile(adminTokenFile)
				if err != nil {
					return failf("check --admin-token-file", err, "cannot read the admin token")
				}
				cfg.AdminToken = strings.TrimSpace(string(b))
				if cfg.AdminToken == "" {
					return usageErr("--admin-token-file %s is empty", adminTokenFile)
				}
			}
			if maxAge != 0 {
				if maxAge < 0 {
					return usageErr("--max-checkpoint-age %v must be positive", maxAge)
				}
				cfg.MaxCheckpointAge = fmtDuration(maxAge)
			}
			created, err := checkServerKeyFiles(cfg.DataDir, adminTokenFile != "")
			if err != nil {
				return err
			}
			oldTrust, _ := os.ReadFile(filepath.Join(cfg.DataDir, directory.FileTrust))
			cfg.NoSync = noSync
			if cfg.MySQLDSN == "" && cfg.StateBackend == directory.StateMySQL {
				cfg.MySQLDSN = os.Getenv("KEYLINE_MYSQL_DSN")
			}
			var logMu sync.Mutex
			cfg.Logf = func(format string, args ...any) {
				logMu.Lock()
				defer logMu.Unlock()
				fmt.Fprintf(a.errw, "%s %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
			}
			srv, err := directory.Open(cfg)
			if err != nil {
				if errors.Is(err, directory.ErrConfig) {
					return &Error{Code: ExitUsage, Kind: KindUsage, Msg: "bad server configuration", Err: err}
				}
				return failf("check --data-dir and the log backend settings", err, "cannot open the directory")
			}
			var hs *httpServer
			if httpAddr != "" {
				if hs, err = a.startHTTP(srv, httpAddr, tlsCfg, cfg.Logf); err != nil {
					srv.Close()
					return err
				}
				defer hs.stop()
				grpcOpts = append(grpcOpts, hs.grpc...)
			}
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				srv.Close()
				return failf("choose another --listen address, or stop the process using it", err, "cannot listen on %s", listen)
			}
			trustPath, _ := filepath.Abs(filepath.Join(cfg.DataDir, directory.FileTrust))
			addr := lis.Addr().String()
			useTLS := tlsCert != ""
			if !useTLS {
				fmt.Fprintf(a.errw, "keyline: warning: serving plaintext gRPC on %s: traffic, including the admin token of resets, is unencrypted (use --tls-cert and --tls-key)\n", addr)
			}
			info := a.serveInfo(cmd.Context(), srv, cfg, created, oldTrust)
			info.Listen, info.TLS, info.TrustFile = addr, useTLS, trustPath
			if hs != nil {
				info.HTTP = &hs.addr
			}
			if a.jsonOut {
				writeJSON(a.out, info)
			} else {
				a.printServeInfo(info)
				fmt.Fprintf(a.out, "keyline directory %s listening on %s\n", srv.Origin(), addr)
				fmt.Fprintf(a.out, "trust file for clients: %s\n", trustPath)
				fmt.Fprintf(a.out, "  (clients: copy it to ~/.keyline/trust.json or pass --trust; add --server %s if not the default)\n", addr)
				if useTLS {
					fmt.Fprintf(a.out, "  (TLS: clients add --tls, or --tls-ca FILE if the certificate is not signed by a system root)\n")
				}
				if hs != nil {
					hs.describe(a)
				}
			}
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(lis, grpcOpts...) }()
			select {
			case <-cmd.Context().Done():
				if !a.jsonOut {
					fmt.Fprintln(a.errw, "shutting down")
				}
				srv.Close()
				<-errc
				return nil
			case err := <-httpErr(hs):
				srv.Close()
				<-errc
				return failf("", err, "serving HTTP")
			case err := <-errc:
				srv.Close()
				if err != nil {
					return failf("", err, "serving on %s", addr)
				}
				return nil
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", DefaultServer, "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&cfg.DataDir, "data-dir", "keyline-data", "server data dir: keys, trust.json, databases")
	f.StringVar(&cfg.Origin, "origin", "", "log origin (name in checkpoints; default "+directory.DefaultOrigin+"; fixed at creation)")
	f.DurationVar(&cfg.EpochInterval, "epoch-interval", 0, "how often epochs are cut (default 1s)")
	f.DurationVar(&cfg.EmptyEpochInterval, "empty-epoch-interval", 0, "publish an empty epoch after this long without updates, to keep checkpoints fresh (default 1h)")
	f.StringVar(&cfg.LogBackend, "log-backend", directory.BackendEmbedded, "log backend: embedded or trillian")
	f.StringVar(&cfg.TrillianAddr, "trillian-addr", "", "trillian_log_server host:port (trillian backend)")
	f.Int64Var(&cfg.TrillianTreeID, "trillian-tree-id", 0, "Trillian PREORDERED_LOG tree id (trillian backend)")
	f.DurationVar(&cfg.TrillianIntegrationTimeout, "trillian-integration-timeout", 0, "how long an append waits for trillian_log_signer before the epoch fails and the directory resynchronizes (trillian backend; default 30s)")
	f.StringArrayVar(&witnesses, "witness", nil, "witness to ask for cosignatures, URL=VKEY (repeatable)")
	f.IntVar(&cfg.WitnessQuorum, "witness-quorum", 0, "cosignatures clients must require (written to trust.json)")
	f.DurationVar(&maxAge, "max-checkpoint-age", 0, "max_checkpoint_age written to trust.json, a duration like 24h or 90m (default 24h)")
	f.DurationVar(&cfg.ResetWindow, "reset-window", 0, "how long a directory reset stays pending (cancellable by the owner) before it takes effect; written to trust.json as reset_window (default 72h)")
	f.StringVar(&adminTokenFile, "admin-token-file", "", "file holding the admin token for resets (default: generated in <data-dir>/admin.token)")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate (chain) to serve gRPC over TLS 1.3; needs --tls-key")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&cfg.Role, "role", directory.RoleAll, "all (one process), frontend (reads, queues updates) or sequencer (cuts epochs while holding the lease); frontend and sequencer need --state-backend mysql")
	f.StringVar(&cfg.StateBackend, "state-backend", directory.StateBolt, "where the map and account index live: bolt (directory.db in --data-dir) or mysql (--mysql-dsn, shared by every process)")
	f.StringVar(&cfg.MySQLDSN, "mysql-dsn", "", "state database, user:pass@tcp(host:port)/dbname (default $KEYLINE_MYSQL_DSN, which keeps the password out of the process list)")
	f.DurationVar(&cfg.LeaseDuration, "lease-duration", 0, "sequencer lease: a standby takes over this long after the active sequencer stops (default 10s)")
	f.StringVar(&httpAddr, "http", "", "also serve HTTP on this address (host:port): C2SP tlog-tiles, the JSON read API, /metrics, /healthz, /readyz, the status page and /verify; TLS with --tls-cert")
	f.BoolVar(&noSync, "insecure-no-sync", false, "do not fsync the databases (tests and benchmarks only)")
	f.MarkHidden("insecure-no-sync")
	addServeLimitFlags(cmd, &cfg)
	serverOnlyHelp(cmd)
	return cmd
}
