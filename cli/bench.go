package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/loadgen"
)

type benchOutput struct {
	Server        string  `json:"server"`
	Accounts      int     `json:"accounts"`
	Created       int     `json:"created"`
	CreateSeconds float64 `json:"create_seconds"`
	KeygenSeconds float64 `json:"keygen_seconds"`
	UpdatesPerSec float64 `json:"updates_per_sec"`
	Lookups       int     `json:"lookups"`
	LookupsPerSec float64 `json:"lookups_per_sec"`
	P50Millis     float64 `json:"p50_ms"`
	P99Millis     float64 `json:"p99_ms"`
	ProofBytes    float64 `json:"proof_bytes"`
	PayloadBytes  float64 `json:"payload_bytes"`
	Verified      int     `json:"verified"`
	// Ed25519PerSec is single-core ed25519 verifications/s measured by this
	// run: the reference for comparing runs on different machines.
	Ed25519PerSec float64 `json:"ed25519_verifies_per_sec"`
	// Ed25519CPU is the CPU seconds of one ed25519 verification measured by
	// this run: the reference for CPU per operation (it does not depend on
	// what else runs on the machine, unlike a rate).
	Ed25519CPU float64 `json:"ed25519_cpu_s_per_verify"`
	// CPU seconds per operation: the server's (with --server-pid) and this
	// load generator's.
	ServerCPUPerCreate *float64 `json:"server_cpu_s_per_create"` // null without --server-pid
	ServerCPUPerLookup *float64 `json:"server_cpu_s_per_lookup"`
	ClientCPUPerCreate float64  `json:"client_cpu_s_per_create"`
	ClientCPUPerLookup float64  `json:"client_cpu_s_per_lookup"`
	ClientCPUPerKeygen float64  `json:"client_cpu_s_per_keygen"`
}

func (a *app) benchCmd() *cobra.Command {
	var o loadgen.Options
	var verify bool
	var serverPID int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a directory: create accounts, then measure lookups",
		Long: `Create --accounts synthetic accounts (<prefix>-<i>; existing ones are kept) on
the directory at --server, then run lookups from --concurrency workers for
--duration and report throughput, latency and proof sizes. --verify checks
every lookup bundle against the trust file (costs client CPU). With
--server-pid (a directory on this machine, Linux) it also reports the
server's CPU seconds per create and per lookup, apart from the load
generator's own. Rates are also given as a ratio to single-core ed25519
verifications/s measured in the same run. The create requests (key
derivation and signing) are generated on all cores before the timed create
phase, in chunks of 50,000, and their cost is reported apart.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Accounts < 1 || o.Concurrency < 1 || o.CreateConcurrency < 1 || o.Duration <= 0 {
				return usageErr("--accounts, --concurrency and --create-concurrency must be positive, --duration too")
			}
			if err := checkBenchPrefix(o.Prefix, o.Accounts); err != nil {
				return err
			}
			if serverPID < 0 {
				return usageErr("--server-pid must be a process id")
			}
			if serverPID > 0 {
				o.ServerCPU = loadgen.ProcessCPU(serverPID)
				if _, err := o.ServerCPU(); err != nil {
					return usageErr("--server-pid: %v", err)
				}
			}
			ref := loadgen.Ed25519Rate(300 * time.Millisecond)
			refCPU := loadgen.Ed25519CPU(300 * time.Millisecond)
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
			out := benchOutput{Server: a.server, Accounts: rep.Accounts, Created: rep.Created, CreateSeconds: rep.CreateTime.Seconds(), KeygenSeconds: rep.KeygenTime.Seconds(), UpdatesPerSec: rep.UpdatesPerSec,
				Lookups: rep.Lookups, LookupsPerSec: rep.LookupsPerSec, P50Millis: ms(rep.P50), P99Millis: ms(rep.P99),
				ProofBytes: rep.ProofBytes, PayloadBytes: rep.PayloadBytes, Verified: rep.Verified, Ed25519PerSec: ref, Ed25519CPU: refCPU.Seconds(),
				ClientCPUPerCreate: rep.ClientCPUPerCreate.Seconds(), ClientCPUPerLookup: rep.ClientCPUPerLookup.Seconds(),
				ClientCPUPerKeygen: rep.ClientCPUPerKeygen.Seconds()}
			if serverPID > 0 {
				c, l := rep.ServerCPUPerCreate.Seconds(), rep.ServerCPUPerLookup.Seconds()
				out.ServerCPUPerCreate, out.ServerCPUPerLookup = &c, &l
			}
			if a.jsonOut {
				return writeJSON(a.out, out)
			}
			t := newTable(a.out, "METRIC", "VALUE")
			t.row("accounts", fmt.Sprintf("%d (%d created by this run)", out.Accounts, out.Created))
			t.row("ed25519 reference", fmt.Sprintf("%.0f verifies/s on one core, %.1f µs of CPU each", ref, out.Ed25519CPU*1e6))
			t.row("key generation (untimed)", fmt.Sprintf("%.2fs, %.1f µs of CPU per account", out.KeygenSeconds, out.ClientCPUPerKeygen*1e6))
			t.row("create phase", fmt.Sprintf("%.2fs, %.0f creates/s (%.3f x ed25519)", out.CreateSeconds, out.UpdatesPerSec, out.UpdatesPerSec/ref))
			t.row("lookups", fmt.Sprintf("%d, %.0f/s (%.3f x ed25519)", out.Lookups, out.LookupsPerSec, out.LookupsPerSec/ref))
			t.row("latency p50 / p99", fmt.Sprintf("%.2f ms / %.2f ms", out.P50Millis, out.P99Millis))
			t.row("proof size", fmt.Sprintf("%.0f bytes (+ %.0f bytes account state)", out.ProofBytes, out.PayloadBytes))
			if verify {
				t.row("verified bundles", fmt.Sprint(out.Verified))
			}
			if serverPID > 0 {
				t.row("server CPU per create / lookup", fmt.Sprintf("%.1f µs (%s ed25519) / %.1f µs (%s ed25519)",
					*out.ServerCPUPerCreate*1e6, inVerifies(*out.ServerCPUPerCreate, out.Ed25519CPU), *out.ServerCPUPerLookup*1e6, inVerifies(*out.ServerCPUPerLookup, out.Ed25519CPU)))
			}
			t.row("load generator CPU per create / lookup", fmt.Sprintf("%.1f µs / %.1f µs", out.ClientCPUPerCreate*1e6, out.ClientCPUPerLookup*1e6))
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Accounts, "accounts", 1000, "accounts to create (existing ones are skipped)")
	f.IntVar(&o.Concurrency, "concurrency", 16, "concurrent lookup workers")
	f.IntVar(&o.CreateConcurrency, "create-concurrency", 256, "creates in flight (each waits for its epoch; the server's --max-streams-per-peer must allow as many)")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the lookup phase")
	f.StringVar(&o.Prefix, "prefix", "loadgen", "user id prefix (<prefix>-<i>)")
	f.BoolVar(&o.NoCreate, "no-create", false, "skip the create phase: the accounts exist already (a benchmark fixture)")
	f.BoolVar(&verify, "verify", false, "verify every lookup bundle against the trust file")
	f.IntVar(&serverPID, "server-pid", 0, "process id of the directory on this machine, to report its CPU per operation (Linux)")
	return cmd
}

// checkBenchPrefix refuses a --prefix that does not make canonical user ids
// <prefix>-<i> for every account: an upper-case prefix would be created
// under its lower-case form and every lookup would then fail verification.
func checkBenchPrefix(prefix string, accounts int) error {
	uid := fmt.Sprintf("%s-%d", prefix, accounts-1)
	if n, err := devices.NormalizeUserID(uid); err != nil || n != uid {
		return usageErr("--prefix %q: user ids <prefix>-<i> must be canonical (lower-case a-z, 0-9 and . _ @ + - only, %d bytes at most): %q is not", prefix, devices.MaxUserIDLen, uid)
	}
	return nil
}

// inVerifies formats a CPU time in ed25519 verifications of verify CPU
// seconds each ("?" if that was not measured).
func inVerifies(cpu, verify float64) string {
	if verify <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f x", cpu/verify)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
