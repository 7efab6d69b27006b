package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/verifier/auditor"
)

type auditOutput struct {
	OK             bool       `json:"ok"`
	CheckpointSize uint64     `json:"checkpoint_size"`
	Replayed       uint64     `json:"replayed"`
	Epoch          uint64     `json:"epoch"`
	EpochTime      *time.Time `json:"epoch_time"`
	Accounts       uint64     `json:"accounts"`
	Resets         uint64     `json:"resets"`
	ResetIndexes   []uint64   `json:"reset_log_indexes"`
	// CancelledResets: resets the owner cancelled in their window.
	CancelledResets uint64  `json:"cancelled_resets"`
	Violation       *string `json:"violation"`
	ViolationIndex  *uint64 `json:"violation_log_index"`
	Detail          *string `json:"detail"`
	EvidencePath    *string `json:"evidence_path"`
}

func auditOut(st *auditor.Status) auditOutput {
	out := auditOutput{OK: st.Violation == nil, Replayed: st.Replayed, Epoch: st.Epoch, Accounts: st.Accounts, Resets: st.Resets, ResetIndexes: append([]uint64{}, st.ResetIndexes...), CancelledResets: st.CancelledResets}
	if st.Checkpoint != nil {
		out.CheckpointSize = st.Checkpoint.Size
	}
	if st.EpochTime != 0 {
		out.EpochTime = jsonTime(time.Unix(int64(st.EpochTime), 0))
	}
	if v := st.Violation; v != nil {
		idx := v.LogIndex
		out.Violation, out.ViolationIndex, out.Detail, out.EvidencePath = jsonStr(string(v.Rule)), &idx, jsonStr(v.Detail), jsonStr(v.EvidencePath)
	}
	return out
}

func (a *app) auditCmd() *cobra.Command {
	var dir, tilesURL string
	var follow bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Replay the whole log and check every rule (resumes where it stopped)",
		Long: `Replay the directory's log from entry 0 (or from where the last run in --dir
stopped) and check every rule: version chains, signatures, device certs,
revocations, resets (counted), epoch records, map roots recomputed from the
log, and consistency of every checkpoint. A violation is reported with a
transferable evidence file (checked offline by ` + "`keyline audit verify-evidence FILE`" + `)
and exit code 3.`,
		Args: exactArgs(0, "no arguments (or the subcommand verify-evidence)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if dir == "" {
				dir = filepath.Join(a.dataDir, "audit")
			}
			trust, src, closeSrc, err := a.logSource(ctx, tilesURL)
			if err != nil {
				return err
			}
			defer closeSrc()
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return failf("check --dir", err, "cannot create the audit dir")
			}
			au, err := auditor.Open(dir, trust, src, nil)
			if err != nil {
				return failf("move the audit dir away to start over from entry 0", err, "cannot open the auditor state in %s", dir)
			}
			defer au.Close()
			var bar *progress
			progressFn := func(done, total uint64) {
				if a.jsonOut {
					return
				}
				if bar == nil {
					bar = newProgress(a.errw, a.stderrIsTerminal(), "audit", "entries", total, a.now)
				}
				bar.setTotal(total)
				bar.update(done)
			}
			var st *auditor.Status
			if follow {
				err = au.Follow(ctx, interval, progressFn, func(err error) {
					fmt.Fprintf(a.errw, "audit: %v (retrying)\n", remoteErr("audit", a.server, err))
				})
				if err == nil || errors.Is(err, ctx.Err()) {
					return nil
				}
			} else {
				st, err = au.Run(ctx, progressFn)
			}
			if bar != nil {
				bar.finish(bar.lastDone)
			}
			var v *auditor.Violation
			if errors.As(err, &v) {
				if st, _ = au.Status(ctx); st == nil {
					st = &auditor.Status{Violation: v}
				}
				st.Violation = v
				out := auditOut(st)
				if a.jsonOut {
					writeJSON(a.out, out)
				} else {
					fmt.Fprintln(a.out, "!!! LOG VIOLATION FOUND !!!")
					fmt.Fprintf(a.out, "rule:      %s\nlog entry: %d\ndetail:    %s\nevidence:  %s\n", string(v.Rule), v.LogIndex, v.Detail, v.EvidencePath)
					fmt.Fprintln(a.out, "The evidence file is signed by the directory itself; anyone can check it with `keyline audit verify-evidence FILE`.")
				}
				return verificationErr(fmt.Sprintf("audit: the log violates rule %s at entry %d", string(v.Rule), v.LogIndex), "publish the evidence file "+v.EvidencePath, nil)
			}
			if err != nil {
				if errors.Is(err, auditor.ErrCorruptState) {
					return failf("move "+dir+" away to start over from entry 0", err, "audit state is damaged")
				}
				return remoteErr("audit", a.server, err)
			}
			out := auditOut(st)
			if a.jsonOut {
				return writeJSON(a.out, out)
			}
			t := newTable(a.out)
			t.row("result", "OK: no violation")
			t.row("checkpoint size", fmt.Sprint(out.CheckpointSize))
			t.row("entries replayed", fmt.Sprint(out.Replayed))
			t.row("epoch", fmt.Sprintf("%d (%s)", out.Epoch, fmtTime(rep0(out.EpochTime))))
			t.row("accounts", fmt.Sprint(out.Accounts))
			resets := fmt.Sprint(out.Resets)
			if out.Resets > 0 {
				var idx []string
				for _, i := range out.ResetIndexes {
					idx = append(idx, fmt.Sprint(i))
				}
				resets += " (log entries " + strings.Join(idx, ", ") + ")"
				if out.CancelledResets > 0 {
					resets += fmt.Sprintf("; %d cancelled by the owner in their window", out.CancelledResets)
				}
			}
			t.row("identity resets", resets)
			t.row("state", dir)
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "auditor state directory (default <data-dir>/audit)")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep auditing new checkpoints every --interval")
	cmd.Flags().StringVar(&tilesURL, "tiles", "", "read the log from this C2SP tlog-tiles URL (keyline serve --http, or an export-tiles mirror) instead of --server")
	cmd.Flags().DurationVar(&interval, "interval", 30*time.Second, "with --follow: time between runs")
	cmd.AddCommand(a.verifyEvidenceCmd())
	return cmd
}

func (a *app) verifyEvidenceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify-evidence FILE",
		Short: "Check an auditor's evidence file offline against the trust file",
		Args:  exactArgs(1, "the evidence FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.loadTrust()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return failf("", err, "cannot read the evidence file")
			}
			f, err := auditor.VerifyEvidence(t, data)
			if err != nil {
				return verificationErr("the evidence does NOT prove a violation", "it may be forged or damaged, or be for another directory (check --trust)", err)
			}
			if a.jsonOut {
				sizes := []uint64{}
				for _, c := range f.Checkpoints {
					sizes = append(sizes, c.Size)
				}
				return writeJSON(a.out, evidenceOutput{Valid: true, Rule: string(f.Rule), LogIndex: f.LogIndex, Detail: f.Detail, CheckpointSizes: sizes})
			}
			fmt.Fprintf(a.out, "VALID evidence: the directory %s broke rule %q at log entry %d.\n%s\n", t.Origin, string(f.Rule), f.LogIndex, f.Detail)
			for _, c := range f.Checkpoints {
				fmt.Fprintf(a.out, "  signed checkpoint: size %d, root %x…\n", c.Size, c.Hash[:8])
			}
			return nil
		},
	}
}

type evidenceOutput struct {
	Valid           bool     `json:"valid"`
	Rule            string   `json:"rule"`
	LogIndex        uint64   `json:"log_index"`
	Detail          string   `json:"detail"`
	CheckpointSizes []uint64 `json:"checkpoint_sizes"`
}
