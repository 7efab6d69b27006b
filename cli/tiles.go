package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/directory/httpapi"
	"github.com/keyline/keyline/log/tiles"
	"github.com/keyline/keyline/verifier"
)

// logSource returns the trust configuration and where to read the log
// from: the tlog-tiles URL tilesURL if set, else the directory at --server
// over gRPC. close releases it.
func (a *app) logSource(ctx context.Context, tilesURL string) (t *verifier.Trust, src verifier.Source, close func(), err error) {
	if tilesURL == "" {
		s, err := a.openSession(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		return s.trust, s.conn, s.close, nil
	}
	if t, err = a.loadTrust(); err != nil {
		return nil, nil, nil, err
	}
	return t, httpapi.NewTilesSource(tilesURL, nil), func() {}, nil
}

func (a *app) exportTilesCmd() *cobra.Command {
	var tilesURL string
	cmd := &cobra.Command{
		Use:   "export-tiles DIR",
		Short: "Mirror the log as static C2SP tlog-tiles files (for a CDN or object store)",
		Long: `Write the directory's log under DIR as static C2SP tlog-tiles files: DIR/checkpoint,
DIR/tile/<L>/<N>[.p/<W>] and DIR/tile/entries/<N>[.p/<W>], laid out as the
URLs of ` + "`keyline serve --http`" + `. The checkpoint must verify against the
trust file (signature and witness quorum), and every leaf read must hash to
its root; full tiles already in DIR are kept (they never change), the new
ones and the partial ones are written, and the checkpoint last. Run it again
(e.g. from cron) to bring the mirror up to date. Serve DIR with any static
web server; auditors read it with ` + "`keyline audit --tiles URL`" + `.

Reads from the directory at --server, or from another tiles mirror with --tiles.`,
		Example: `  keyline export-tiles /var/www/log
  keyline --server dir.example.org:7411 --tls export-tiles ./mirror`,
		Args: exactArgs(1, "the output DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, src, closeSrc, err := a.logSource(ctx, tilesURL)
			if err != nil {
				return err
			}
			defer closeSrc()
			cp, err := src.Checkpoint(ctx)
			if err != nil {
				return remoteErr("export-tiles", a.server, err)
			}
			vc, err := t.OpenCheckpoint(cp)
			if err != nil {
				return verificationErr("the directory's checkpoint does not verify: nothing exported", "check --trust", err)
			}
			ts := tiles.NewServer(src)
			if err := ts.Sync(ctx, cp, nil); err != nil {
				return verificationErr("the log does not match its signed checkpoint: nothing exported", "report this to the directory operator and auditors", err)
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return failf("check DIR", err, "cannot create %s", args[0])
			}
			st, err := ts.Export(ctx, args[0])
			if err != nil {
				return failf("check DIR", err, "export failed")
			}
			if a.jsonOut {
				return writeJSON(a.out, map[string]any{"dir": args[0], "size": st.Size, "root": fmt.Sprintf("%x", vc.Hash), "tiles_written": st.Tiles, "bundles_written": st.Bundles, "already_present": st.Skipped})
			}
			fmt.Fprintf(a.out, "exported checkpoint of size %d (root %x…) to %s: %d tiles and %d entry bundles written, %d full ones already present\n", st.Size, vc.Hash[:8], args[0], st.Tiles, st.Bundles, st.Skipped)
			return nil
		},
	}
	cmd.Flags().StringVar(&tilesURL, "tiles", "", "read the log from this tlog-tiles URL instead of --server")
	return cmd
}
