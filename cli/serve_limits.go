package cli

import (
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/directory"
)

// addServeLimitFlags adds serve's flood limits, memory limits and witness
// retry flags (directory.Limits; 0 = the default, negative = no limit).
func addServeLimitFlags(cmd *cobra.Command, cfg *directory.Config) {
	f := cmd.Flags()
	var memLimit int64
	f.Int64Var(&memLimit, "memory-limit", 0, "soft memory limit of the process in bytes (Go runtime; default: $GOMEMLIMIT or none)")
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if memLimit > 0 {
			debug.SetMemoryLimit(memLimit)
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
	f.Int64Var(&cfg.MaxResident, "max-resident", 0, "resident memory (RSS) of the process in bytes above which pages of the databases' memory maps are released from it; they stay in the kernel's page cache (Linux; default 768 MiB; -1: no bound)")
	f.StringVar(&cfg.Pread, "pread", "auto", "how lookups read the databases: on (pread into the process's memory, nothing mapped), off (through bbolt's memory maps) or auto (on once --max-resident is below the size of directory.db and log.db, at start or after an epoch)")
	l := &cfg.Limits
	f.IntVar(&l.MaxReads, "max-reads", 0, "reads (lookups, log reads) in progress, all clients; fair per address (default 256; -1: no limit)")
	f.IntVar(&l.MaxStreamsPerPeer, "max-streams-per-peer", 0, "requests in progress from one IP address (default 256)")
	f.Float64Var(&l.Rate, "rate-limit", 0, "requests/s, all clients (default 50000)")
	f.IntVar(&l.Burst, "rate-burst", 0, "burst of --rate-limit (default: the rate)")
	f.Float64Var(&l.PeerRate, "peer-rate-limit", 0, "requests/s from one IP address (default 10000)")
	f.IntVar(&l.PeerBurst, "peer-rate-burst", 0, "burst of --peer-rate-limit (default: the rate)")
	f.Int64Var(&l.MemoryBudget, "request-memory", 0, "bytes of Update/Reset requests in progress: one counts the max message size (256 KiB) until decoded, then its size (default 64 MiB)")
	f.Int64Var(&l.QueueBytes, "queue-bytes", 0, "bytes of validated updates waiting for their epoch (default 128 MiB)")
	f.DurationVar(&l.KeepaliveMinTime, "keepalive-min-time", 0, "disconnect clients that ping more often (default 10s)")
	f.DurationVar(&l.MaxConnectionIdle, "max-connection-idle", 0, "close connections idle this long (default 15m)")
	f.DurationVar(&cfg.WitnessRetryMax, "witness-retry-max", 0, "longest wait between cosigning rounds while the witness quorum is not met (default 30s)")
}
