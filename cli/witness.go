package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/cosign"
	"github.com/keyline/keyline/verifier/witness"
)

func (a *app) witnessKeyPath(keyFile string) string {
	if keyFile != "" {
		return keyFile
	}
	return filepath.Join(a.dataDir, "witness.skey")
}

func (a *app) witnessCmd() *cobra.Command {
	var listen, keyFile, dir, tilesURL string
	cmd := &cobra.Command{
		Use:   "witness",
		Short: "Run a witness: audit the directory's log and cosign checkpoints (C2SP tlog-witness)",
		Long: `Run an HTTP witness (C2SP tlog-witness, POST /add-checkpoint) for the directory
of --trust. It cosigns a checkpoint only if it is consistent with the last one
it cosigned and its auditor, which replays the log from --server, has verified
the log up to exactly that checkpoint. Create its key first with
` + "`keyline witness keygen NAME`" + `; give the printed vkey and URL to the
directory operator (` + "`keyline serve --witness URL=VKEY`" + `).`,
		Args: exactArgs(0, "no arguments (or the subcommand keygen)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			kp := a.witnessKeyPath(keyFile)
			skey, err := os.ReadFile(kp)
			if errors.Is(err, os.ErrNotExist) {
				return failf("create one with `keyline witness keygen NAME` (or pass --key-file)", nil, "no witness key at %s", kp)
			}
			if err != nil {
				return failf("", err, "cannot read the witness key")
			}
			signer, err := cosign.NewSignerFromSkey(strings.TrimSpace(string(skey)), nil)
			if err != nil {
				return failf("the key file must hold a cosignature skey from `keyline witness keygen`", err, "bad witness key %s", kp)
			}
			vkey := signer.Vkey()
			trust, src, closeSrc, err := a.logSource(ctx, tilesURL)
			if err != nil {
				return err
			}
			defer closeSrc()
			// The witness' auditor checks the log itself; it cannot require
			// cosignatures on the checkpoints it is asked to cosign.
			at := *trust
			at.Quorum = 0
			if dir == "" {
				dir = filepath.Join(a.dataDir, "witness")
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return failf("check --dir", err, "cannot create the witness dir")
			}
			if err := os.MkdirAll(filepath.Join(dir, "audit"), 0o700); err != nil {
				return failf("", err, "cannot create the audit dir")
			}
			au, err := auditor.Open(filepath.Join(dir, "audit"), &at, src, nil)
			if err != nil {
				return failf("", err, "cannot open the witness' auditor state")
			}
			defer au.Close()
			store, err := witness.OpenBoltStore(filepath.Join(dir, "witness.db"))
			if err != nil {
				return failf("is another witness running on this --dir?", err, "cannot open the witness store")
			}
			defer store.Close()
			w, err := witness.New(witness.Config{
				Signer:  signer,
				Logs:    []witness.Log{{Origin: at.Origin, Verifiers: []note.Verifier{at.Log}}},
				Store:   store,
				Auditor: au,
			})
			if err != nil {
				return failf("", err, "cannot start the witness")
			}
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return failf("choose another --listen address", err, "cannot listen on %s", listen)
			}
			url := "http://" + lis.Addr().String()
			if a.jsonOut {
				writeJSON(a.out, witnessOutput{URL: url, VKey: vkey, Origin: at.Origin})
			} else {
				fmt.Fprintf(a.out, "keyline witness %s listening on %s\n", signer.Name(), lis.Addr())
				fmt.Fprintf(a.out, "vkey: %s\n", vkey)
				fmt.Fprintf(a.out, "directory flag: --witness %s=%s\n", url, vkey)
			}
			// Keep auditing in the background so cosigning is fast.
			bg, stop := context.WithCancel(ctx)
			defer stop()
			go au.Follow(bg, 2*time.Second, nil, nil)
			srv := witness.NewServer(lis.Addr().String(), w)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(lis) }()
			select {
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
				<-errc
				return nil
			case err := <-errc:
				if errors.Is(err, http.ErrServerClosed) {
					return nil
				}
				return failf("", err, "witness server")
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7412", "HTTP address to listen on")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "witness signing key (default <data-dir>/witness.skey)")
	cmd.Flags().StringVar(&dir, "dir", "", "witness state: cosigned checkpoints and auditor (default <data-dir>/witness)")
	cmd.Flags().StringVar(&tilesURL, "tiles", "", "read the log from this C2SP tlog-tiles URL instead of --server")
	cmd.AddCommand(a.witnessKeygenCmd())
	return cmd
}

func (a *app) witnessKeygenCmd() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "keygen NAME",
		Short: "Create a witness signing key named NAME and print its vkey",
		Args:  exactArgs(1, "the witness NAME (e.g. witness.example.org)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kp := a.witnessKeyPath(keyFile)
			if _, err := os.Stat(kp); err == nil {
				return failf("remove it first or use --key-file", nil, "%s already exists", kp)
			}
			skey, vkey, err := cosign.GenerateKey(args[0])
			if err != nil {
				return &Error{Code: ExitUsage, Kind: KindUsage, Msg: "cannot create the key", Err: err, Hint: "the name must be a valid note key name: no spaces or '+'"}
			}
			if err := os.MkdirAll(filepath.Dir(kp), 0o700); err != nil {
				return failf("", err, "cannot create the key dir")
			}
			f, err := os.OpenFile(kp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return failf("", err, "cannot create the key file")
			}
			if _, err := fmt.Fprintln(f, skey); err != nil {
				f.Close()
				return failf("", err, "writing the key file")
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return failf("", err, "writing the key file")
			}
			if err := f.Close(); err != nil {
				return failf("", err, "writing the key file")
			}
			if a.jsonOut {
				return writeJSON(a.out, witnessKeyOutput{Name: args[0], VKey: vkey, KeyFile: kp})
			}
			fmt.Fprintf(a.out, "witness key written to %s (keep it secret)\nvkey: %s\n", kp, vkey)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "where to write the key (default <data-dir>/witness.skey)")
	return cmd
}

type witnessOutput struct {
	URL    string `json:"url"`
	VKey   string `json:"vkey"`
	Origin string `json:"origin"`
}

type witnessKeyOutput struct {
	Name    string `json:"name"`
	VKey    string `json:"vkey"`
	KeyFile string `json:"key_file"`
}
