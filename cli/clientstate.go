package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/internal/atomicfile"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// The client state (last verified checkpoint, pinned contacts, own
// account) is never given up silently: every command that opens it first
// checks it (checkClientState), and keeps the last good generation in
// client-state.json.bak, which `keyline state restore` brings back.

func (a *app) stateBackupPath() string { return a.statePath() + ".bak" }

// stateRecoveryHint says how to get a usable client state back.
func (a *app) stateRecoveryHint() string {
	if b, err := os.ReadFile(a.stateBackupPath()); err == nil {
		if _, err := verifier.ParseClientState(b); err == nil {
			when := ""
			if fi, err := os.Stat(a.stateBackupPath()); err == nil {
				when = " (saved " + fi.ModTime().UTC().Format(time.RFC3339) + ")"
			}
			return fmt.Sprintf("restore the last good copy%s with `keyline state restore`", when)
		}
	}
	return "if no copy of it exists, start a new one with `keyline state reset` (every contact's key must then be verified again with `keyline safety-number`)"
}

// checkClientState checks the client state against the trust file t
// before a command uses it, and backs it up. A missing state next to a
// keystore, an unreadable state, and a trust file of another directory are
// errors that say what to do; nothing is re-pinned silently.
func (a *app) checkClientState(t *verifier.Trust) error {
	path := a.statePath()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if a.keystoreExists() {
			return failf(a.stateRecoveryHint(), nil, "the client state %s is missing, but this folder holds a keystore: the checkpoint and the contact keys you verified would be lost, and every contact trusted anew", path)
		}
		return nil
	}
	if err != nil {
		return failf(a.stateRecoveryHint(), err, "cannot read the client state %s", path)
	}
	st, err := verifier.ParseClientState(data)
	if err != nil {
		return failf(a.stateRecoveryHint(), err, "the client state %s is damaged", path)
	}
	if st.Checkpoint != nil {
		if _, _, err := klog.OpenCheckpoint(st.Checkpoint, t.Log, t.Origin); err != nil {
			origin, _, _ := strings.Cut(string(st.Checkpoint), "\n")
			why := fmt.Sprintf("this client last verified a checkpoint of %q, and the trust file is for %q", origin, t.Origin)
			if origin == t.Origin {
				why = fmt.Sprintf("the checkpoint this client last verified for %q is not signed by the log key in the trust file", origin)
			}
			return &Error{Code: ExitVerification, Kind: KindVerification,
				Msg:  fmt.Sprintf("the trust file %s does not match the client state %s: %s", a.trustPath, path, why),
				Hint: "pass the trust.json of the directory this client has been using (--trust FILE), or use another --data-dir for another directory; your pins are intact. If the directory changed its keys, ask its operator why before trusting it"}
		}
	}
	if err := a.writeStateBackup(data); err != nil {
		return failf("check the permissions and free space of --data-dir", err, "cannot back up the client state")
	}
	return nil
}

// writeStateBackup makes data, a state that parsed, the backup generation.
func (a *app) writeStateBackup(data []byte) error {
	if old, err := os.ReadFile(a.stateBackupPath()); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return atomicfile.Write(a.stateBackupPath(), data, 0o600)
}

// backupClientState makes the client state the backup generation after a
// command succeeded, so that the backup holds the pins it made. A state that
// does not parse is never backed up.
func (a *app) backupClientState() {
	if a.dataDir == "" || a.keepStateBackup {
		return
	}
	data, err := os.ReadFile(a.statePath())
	if err != nil {
		return
	}
	if _, err := verifier.ParseClientState(data); err != nil {
		return
	}
	a.writeStateBackup(data)
}

func (a *app) stateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Restore or restart the client state (verified checkpoint and pinned keys)",
		Long: `The client state (client-state.json in --data-dir) holds the last checkpoint
this client verified and the identity keys it pinned. Every command backs up
the last good generation to client-state.json.bak.`,
	}
	cmd.AddCommand(a.stateRestoreCmd(), a.stateResetCmd())
	return cmd
}

func (a *app) stateRestoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "restore",
		Short:   "Bring back the last good client state from client-state.json.bak",
		Example: "  keyline state restore",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			unlock, err := a.lockDataDir()
			if err != nil {
				return err
			}
			defer unlock()
			b, err := os.ReadFile(a.stateBackupPath())
			if err != nil {
				return failf("there is no backup to restore; `keyline state reset` starts a new state", err, "cannot read %s", a.stateBackupPath())
			}
			st, err := verifier.ParseClientState(b)
			if err != nil {
				return failf("the backup is damaged too; `keyline state reset` starts a new state", err, "cannot use %s", a.stateBackupPath())
			}
			if cur, err := os.ReadFile(a.statePath()); err == nil && !bytes.Equal(cur, b) {
				keep := fmt.Sprintf("%s.replaced-%d", a.statePath(), a.now().Unix())
				if err := atomicfile.Write(keep, cur, 0o600); err != nil {
					return failf("", err, "cannot keep the current state")
				}
				a.info("The state it replaces is kept in %s.\n", keep)
			}
			if err := atomicfile.Write(a.statePath(), b, 0o600); err != nil {
				return failf("check the permissions of --data-dir", err, "cannot restore the client state")
			}
			if a.jsonOut {
				return writeJSON(a.out, stateOutput{StateFile: a.statePath(), Restored: true, Contacts: len(st.Contacts), KeptFile: nil})
			}
			fmt.Fprintf(a.out, "Restored %s from %s (%d pinned contacts).\n", a.statePath(), a.stateBackupPath(), len(st.Contacts))
			return nil
		},
	}
}

func (a *app) stateResetCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Start a new, empty client state (pins are lost; the old file is kept)",
		Long: `Start a new, empty client state. The next lookup trusts the directory's
checkpoint and every contact's key anew ("first seen"), so verify your
contacts' safety numbers again. The old state, if any, is kept next to it.
Prefer ` + "`keyline state restore`" + ` when a backup exists.`,
		Example: "  keyline state reset --yes",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usageErr("`keyline state reset` forgets every verified checkpoint and pin; pass --yes if you mean it (or try `keyline state restore`)")
			}
			unlock, err := a.lockDataDir()
			if err != nil {
				return err
			}
			defer unlock()
			kept := ""
			if cur, err := os.ReadFile(a.statePath()); err == nil {
				kept = fmt.Sprintf("%s.replaced-%d", a.statePath(), a.now().Unix())
				if err := atomicfile.Write(kept, cur, 0o600); err != nil {
					return failf("", err, "cannot keep the current state")
				}
			}
			a.keepStateBackup = true // the backup keeps the pins
			empty := &verifier.ClientState{}
			if err := empty.Save(a.statePath()); err != nil {
				return failf("check the permissions of --data-dir", err, "cannot write the client state")
			}
			if a.jsonOut {
				return writeJSON(a.out, stateOutput{StateFile: a.statePath(), Reset: true, KeptFile: jsonStr(kept)})
			}
			fmt.Fprintf(a.out, "Started a new client state %s.", a.statePath())
			if kept != "" {
				fmt.Fprintf(a.out, " The old one is kept in %s.", kept)
			}
			fmt.Fprintln(a.out, " Verify your contacts' safety numbers again.")
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm that pins are to be forgotten")
	return cmd
}

// stateOutput is `state restore --json` and `state reset --json`.
type stateOutput struct {
	StateFile string  `json:"state_file"`
	Restored  bool    `json:"restored"`
	Reset     bool    `json:"reset"`
	Contacts  int     `json:"contacts"`
	KeptFile  *string `json:"kept_file"`
}
