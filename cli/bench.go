package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/directory/loadgen"
)

type benchOutput struct {
	Server        string  `json:"server"`
	Accounts      int     `json:"accounts"`
	Created       int     `json:"created"`
	CreateSeconds float64 `json:"create_seconds"`
	UpdatesPerSec float64 `json:"updates_per_sec"`
	Lookups       int     `json:"lookups"`
	LookupsPerSec float64 `json:"lookups_per_sec"`
	P50Millis     float64 `json:"p50_ms"`
	P99Millis     float64 `json:"p99_ms"`
	ProofBytes    float64 `json:"proof_bytes"`
	PayloadBytes  float64 `json:"payload_bytes"`
	Verified      int     `json:"verified"`
}

func (a *app) benchCmd() *cobra.Command {
	var o loadgen.Options
	var verify bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a directory: create accounts, then measure lookups",
		Long: `Create --accounts synthetic accounts (<prefix>-<i>; existing ones are kept) on
the directory at --server, then run lookups from --concurrency workers for
--duration and report throughput, latency and proof sizes. --verify checks
every lookup bundle against the trust file (costs client CPU).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Accounts < 1 || o.Concurrency < 1 || o.Duration <= 0 {
				return usageErr("--accounts and --concurrency must be positive, --duration too")
			}
			o.Addr = a.server
			if verify {
				t, err := a.loadTrust()
				if err != nil {
					return err
				}
				o.Trust = t
			}
			var bar *progress
			if !a.jsonOut {
				o.Progress = func(done, total int) {
					if bar == nil {
						bar = newProgress(a.errw, a.stderrIsTerminal(), "create", "accounts", uint64(total), a.now)
					}
					bar.update(uint64(done))
				}
				fmt.Fprintf(a.errw, "bench: %d accounts, then %s of lookups with %d workers against %s\n", o.Accounts, o.Duration, o.Concurrency, a.server)
			}
			rep, err := loadgen.Run(cmd.Context(), o)
			if bar != nil {
				bar.finish(bar.lastDone)
			}
			if err != nil {
				return remoteErr("bench", a.server, err)
			}
			out := benchOutput{Server: a.server, Accounts: rep.Accounts, Created: rep.Created, CreateSeconds: rep.CreateTime.Seconds(), UpdatesPerSec: rep.UpdatesPerSec,
				Lookups: rep.Lookups, LookupsPerSec: rep.LookupsPerSec, P50Millis: ms(rep.P50), P99Millis: ms(rep.P99),
				ProofBytes: rep.ProofBytes, PayloadBytes: rep.PayloadBytes, Verified: rep.Verified}
			if a.jsonOut {
				return writeJSON(a.out, out)
			}
			t := newTable(a.out, "METRIC", "VALUE")
			t.row("accounts", fmt.Sprintf("%d (%d created by this run)", out.Accounts, out.Created))
			t.row("create phase", fmt.Sprintf("%.2fs, %.0f updates/s", out.CreateSeconds, out.UpdatesPerSec))
			t.row("lookups", fmt.Sprintf("%d, %.0f/s", out.Lookups, out.LookupsPerSec))
			t.row("latency p50 / p99", fmt.Sprintf("%.2f ms / %.2f ms", out.P50Millis, out.P99Millis))
			t.row("proof size", fmt.Sprintf("%.0f bytes (+ %.0f bytes account state)", out.ProofBytes, out.PayloadBytes))
			if verify {
				t.row("verified bundles", fmt.Sprint(out.Verified))
			}
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Accounts, "accounts", 1000, "accounts to create (existing ones are skipped)")
	f.IntVar(&o.Concurrency, "concurrency", 16, "concurrent lookup workers")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the lookup phase")
	f.StringVar(&o.Prefix, "prefix", "loadgen", "user id prefix (<prefix>-<i>)")
	f.BoolVar(&verify, "verify", false, "verify every lookup bundle against the trust file")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
