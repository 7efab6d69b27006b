package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/verifier"
)

// checkServerKeyFiles refuses to start a directory whose data dir was
// initialised (it holds a log key or a database) but lacks one of its key
// files: creating a new one would silently change the directory's keys,
// and every client would then see it as lying. It reports whether the
// data dir is new (nothing of a directory in it).
func checkServerKeyFiles(dir string, adminTokenGiven bool) (created bool, err error) {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil || !errors.Is(err, os.ErrNotExist)
	}
	initialised := false
	for _, f := range []string{directory.FileLogKey, directory.FileLogDB, directory.FileDirDB, directory.FileCheckpoint, directory.FileVRFSeed, directory.FileResetKey} {
		if exists(f) {
			initialised = true
		}
	}
	if !initialised {
		return true, nil
	}
	need := []string{directory.FileLogKey, directory.FileVRFSeed, directory.FileResetKey}
	if !adminTokenGiven {
		need = append(need, directory.FileAdminToken)
	}
	var missing []string
	for _, f := range need {
		if !exists(f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		abs, _ := filepath.Abs(dir)
		return false, &Error{Code: ExitError, Kind: KindError,
			Msg:  fmt.Sprintf("the directory data dir %s is initialised but lacks %s; refusing to start, because new keys would make every client see the directory as lying", abs, strings.Join(missing, ", ")),
			Hint: "restore the missing file(s) from your backup of the data dir; if they are truly lost, the directory must be recreated in an empty data dir and clients need its new trust.json"}
	}
	return false, nil
}

// serveOutput is what `keyline serve` says at start (--json: the object).
type serveOutput struct {
	Listen        string    `json:"listen"`
	HTTP          *string   `json:"http"` // --http address, null when not serving HTTP
	TLS           bool      `json:"tls"`
	Origin        string    `json:"origin"`
	DataDir       string    `json:"data_dir"`
	Created       bool      `json:"created"` // a new directory was created (else an existing one was opened)
	LogBackend    string    `json:"log_backend"`
	LogSize       *uint64   `json:"log_size"`
	Keys          keyPrints `json:"keys"`
	TrustFile     string    `json:"trust_file"`
	TrustChanged  bool      `json:"trust_changed"` // trust.json differs from what clients were given before
	TrustChanges  []string  `json:"trust_changes"`
	Witnesses     int       `json:"witnesses"`
	WitnessQuorum int       `json:"witness_quorum"`
	StartedAt     time.Time `json:"started_at"`
}

// keyPrints are short fingerprints (first 8 bytes of SHA-256, hex) of the
// directory's public keys, to compare with what clients hold.
type keyPrints struct {
	Log   string `json:"log"`
	VRF   string `json:"vrf"`
	Reset string `json:"reset"`
}

func keyPrint(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

func (a *app) serveInfo(ctx context.Context, srv *directory.Server, cfg directory.Config, created bool, oldTrust []byte) serveOutput {
	abs, _ := filepath.Abs(cfg.DataDir)
	tf := srv.Trust()
	out := serveOutput{Origin: srv.Origin(), DataDir: abs, Created: created, LogBackend: cfg.LogBackend,
		Keys:      keyPrints{Log: keyPrint(tf.LogKey), VRF: keyPrint(tf.VRFKey), Reset: keyPrint(tf.ResetKey)},
		Witnesses: len(cfg.Witnesses), WitnessQuorum: tf.WitnessQuorum, StartedAt: a.now().UTC().Truncate(time.Second), TrustChanges: []string{}}
	if out.LogBackend == "" {
		out.LogBackend = directory.BackendEmbedded
	}
	if cp, err := srv.Checkpoint(ctx); err == nil {
		if lines := strings.SplitN(string(cp), "\n", 3); len(lines) == 3 {
			if n, err := strconv.ParseUint(lines[1], 10, 64); err == nil {
				out.LogSize = &n
			}
		}
	}
	if !created && len(oldTrust) > 0 {
		var old verifier.TrustFile
		if json.Unmarshal(oldTrust, &old) == nil {
			out.TrustChanges = trustChanges(&old, tf)
		} else {
			out.TrustChanges = []string{"the previous trust.json did not parse"}
		}
		out.TrustChanged = len(out.TrustChanges) > 0
	}
	return out
}

// trustChanges lists what clients holding old would not know about now.
func trustChanges(old, now *verifier.TrustFile) []string {
	var ch []string
	if old.Origin != now.Origin || old.LogKey != now.LogKey || old.VRFKey != now.VRFKey || old.ResetKey != now.ResetKey {
		ch = append(ch, "the directory's keys differ from the previous trust.json")
	}
	if strings.Join(old.Witnesses, "\n") != strings.Join(now.Witnesses, "\n") {
		ch = append(ch, fmt.Sprintf("witnesses: %d before, %d now", len(old.Witnesses), len(now.Witnesses)))
	}
	if old.WitnessQuorum != now.WitnessQuorum {
		ch = append(ch, fmt.Sprintf("witness quorum: %d before, %d now", old.WitnessQuorum, now.WitnessQuorum))
	}
	if old.MaxCheckpointAge != now.MaxCheckpointAge {
		ch = append(ch, fmt.Sprintf("max checkpoint age: %q before, %q now", old.MaxCheckpointAge, now.MaxCheckpointAge))
	}
	return ch
}

func (a *app) printServeInfo(o serveOutput) {
	w := a.out
	if o.Created {
		fmt.Fprintf(w, "Created a NEW directory %q in %s (new keys, empty log).\n", o.Origin, o.DataDir)
	} else {
		size := "unknown"
		if o.LogSize != nil {
			size = strconv.FormatUint(*o.LogSize, 10)
		}
		fmt.Fprintf(w, "Opened the existing directory %q in %s (log size %s).\n", o.Origin, o.DataDir, size)
	}
	fmt.Fprintf(w, "key fingerprints: log %s  vrf %s  reset %s\n", o.Keys.Log, o.Keys.VRF, o.Keys.Reset)
	if o.TrustChanged {
		fmt.Fprintf(w, "TRUST CHANGED: %s.\n", strings.Join(o.TrustChanges, "; "))
		fmt.Fprintf(w, "Clients must fetch the new trust.json (%s); until then they keep the old settings (witness quorum, keys).\n", o.TrustFile)
	}
}

// fmtDuration formats d without zero minutes and seconds ("24h", "90m").
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// serverOnlyHelp makes cmd's help show only its own flags (and --json):
// the client settings of the root command do not apply to it.
func serverOnlyHelp(cmd *cobra.Command) {
	def := cmd.HelpFunc()
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		if c == cmd {
			c.InheritedFlags().VisitAll(func(f *pflag.Flag) {
				if f.Name != "json" {
					f.Hidden = true
				}
			})
		}
		def(c, args)
	})
}
