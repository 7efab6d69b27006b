package cli

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

type monitorOutput struct {
	UserID         string          `json:"user_id"`
	OK             bool            `json:"ok"`
	CheckedAt      *time.Time      `json:"checked_at"`
	Version        uint64          `json:"version"`
	Expected       uint64          `json:"expected_version"`
	CheckpointSize uint64          `json:"checkpoint_size"`
	Cosigners      []string        `json:"cosigners"`
	Changes        []monitorChange `json:"changes"`
	Alerts         []monitorAlert  `json:"alerts"`
	Accepted       bool            `json:"accepted"`
}

type monitorChange struct {
	Version    uint64 `json:"version"`
	LogIndex   uint64 `json:"log_index"`
	Kind       string `json:"kind"`
	SignerIK   string `json:"signer_identity_key"`
	ByResetKey bool   `json:"by_reset_key"`
	// SigningKeyGeneration is the new state's account signing key
	// generation; KeyRotated is set when it is newer than the previous
	// version's (certified by the root key: the paper key was used).
	SigningKeyGeneration uint32   `json:"signing_key_generation"`
	KeyRotated           bool     `json:"key_rotated"`
	Added                []string `json:"added"`
	Removed              []string `json:"removed"`
}

type monitorAlert struct {
	Kind     string `json:"kind"`
	Version  uint64 `json:"version"`
	LogIndex uint64 `json:"log_index"`
	Message  string `json:"message"`
}

func monitorOut(rep *verifier.MonitorReport) monitorOutput {
	out := monitorOutput{UserID: rep.UserID, OK: rep.OK, CheckedAt: jsonTime(rep.Checked), Expected: rep.Expected.Version, Cosigners: []string{}, Changes: []monitorChange{}, Alerts: []monitorAlert{}}
	if rep.Checkpoint != nil {
		out.CheckpointSize = rep.Checkpoint.Size
		out.Cosigners = append([]string{}, rep.Checkpoint.Cosigners...)
	}
	if rep.Latest != nil {
		out.Version = rep.Latest.Version
	}
	for _, c := range rep.Changes {
		mc := monitorChange{Version: c.Version, LogIndex: c.LogIndex, Kind: updateKind(c.Kind), SignerIK: hex.EncodeToString(c.SignerIK[:]), ByResetKey: c.ByResetKey,
			SigningKeyGeneration: c.Generation, KeyRotated: c.Rotated(), Added: []string{}, Removed: []string{}}
		for _, d := range c.Added {
			mc.Added = append(mc.Added, devInfo(d))
		}
		for _, d := range c.Removed {
			mc.Removed = append(mc.Removed, devInfo(d))
		}
		out.Changes = append(out.Changes, mc)
	}
	for _, al := range rep.Alerts {
		out.Alerts = append(out.Alerts, monitorAlert{Kind: al.Kind.String(), Version: al.Version, LogIndex: al.LogIndex, Message: al.Message})
	}
	return out
}

func (a *app) printMonitor(out monitorOutput) {
	if out.OK {
		fmt.Fprintf(a.out, "%s  OK  %s v%d is exactly what this device expects (checkpoint size %d", fmtTime(rep0(out.CheckedAt)), out.UserID, out.Version, out.CheckpointSize)
		if len(out.Cosigners) > 0 {
			fmt.Fprintf(a.out, ", cosigned by %s", strings.Join(out.Cosigners, ", "))
		}
		fmt.Fprintln(a.out, ")")
		return
	}
	w := a.out
	fmt.Fprintln(w, "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!")
	fmt.Fprintf(w, "!!! UNEXPECTED CHANGE to your account %s: expected v%d, the directory serves v%d\n", out.UserID, out.Expected, out.Version)
	for _, al := range out.Alerts {
		fmt.Fprintf(w, "!!! %s (v%d, log entry %d): %s\n", strings.ToUpper(al.Kind), al.Version, al.LogIndex, al.Message)
	}
	for _, c := range out.Changes {
		signer := fmt.Sprintf("your account signing key, generation %d (root key %s…), which only your trusted devices hold", c.SigningKeyGeneration, c.SignerIK[:16])
		switch {
		case c.ByResetKey:
			signer = "the DIRECTORY RESET KEY (new identity key " + c.SignerIK[:16] + "…)"
		case c.KeyRotated:
			signer = fmt.Sprintf("a NEW account signing key, generation %d, certified by your root key (%s…), which only your paper key derives", c.SigningKeyGeneration, c.SignerIK[:16])
		}
		fmt.Fprintf(w, "!!! v%d (log entry %d, %s) signed by %s\n", c.Version, c.LogIndex, c.Kind, signer)
		for _, d := range c.Added {
			fmt.Fprintf(w, "!!!     added device   %s\n", d)
		}
		for _, d := range c.Removed {
			fmt.Fprintf(w, "!!!     removed device %s\n", d)
		}
	}
	reset, rotated := false, false
	for _, c := range out.Changes {
		reset = reset || c.ByResetKey
		rotated = rotated || c.KeyRotated
	}
	switch {
	case reset:
		fmt.Fprintln(w, "!!! The DIRECTORY replaced your identity key. If you did not ask for a reset, your")
		fmt.Fprintln(w, "!!! account was taken over by the directory: warn your contacts (their safety")
		fmt.Fprintln(w, "!!! number for you changed) and publish this report.")
	case rotated:
		fmt.Fprintln(w, "!!! Your account signing key was ROTATED with your paper key. This device cannot")
		fmt.Fprintln(w, "!!! tell whether you did it on another device or someone holding your paper key")
		fmt.Fprintln(w, "!!! did; the older signing key this device may hold no longer signs for the account.")
		fmt.Fprintln(w, "!!! If it was not you, your paper key is compromised: rotate again with it at once")
		fmt.Fprintln(w, "!!! (`keyline account rotate-key`) and ask the directory operator for a reset.")
	default:
		fmt.Fprintln(w, "!!! If you did not make these changes, a device holding your account signing key")
		fmt.Fprintln(w, "!!! did: cut it off with `keyline account rotate-key` (needs your paper key).")
	}
	fmt.Fprintln(w, "!!! If you made them on another device, run `keyline monitor --once --accept`.")
	fmt.Fprintln(w, "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!")
}

func (a *app) monitorCmd() *cobra.Command {
	var interval time.Duration
	var once, accept bool
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Watch your own account for changes you did not make",
		Long: `Check, with one verified lookup, that the directory serves exactly the latest
version of your account this device published or saw. On an unexpected
version the verified history is fetched and every change is reported (devices
added and removed, and whether your account signing key or the directory
reset key signed it); the command then exits with code 3. Without --once it checks
every --interval until interrupted. --accept (with --once) acknowledges
changes you made on another device.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if accept && !once {
				return usageErr("--accept needs --once")
			}
			if interval <= 0 {
				return usageErr("--interval must be positive")
			}
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			st, err := s.client.State()
			if err != nil {
				return s.classify("reading the client state", err)
			}
			if st.Own == nil {
				return failf("create an account, finish joining one (`keyline device finish`) or recover it in this --data-dir first", nil, "this data dir has no own account to monitor")
			}
			m := verifier.NewMonitor(s.client)
			for {
				cctx, cancel := s.ctx(ctx)
				rep, err := m.Check(cctx)
				cancel()
				if err != nil {
					return s.classify("monitor "+st.Own.UserID, err)
				}
				out := monitorOut(rep)
				if !rep.OK && accept {
					if err := m.Accept(rep); err != nil {
						return failf("", err, "accepting the changes")
					}
					out.Accepted = true
				}
				if a.jsonOut {
					writeJSON(a.out, out)
				} else {
					a.printMonitor(out)
					if out.Accepted {
						fmt.Fprintf(a.out, "Accepted: v%d is now the expected version.\n", out.Version)
					}
				}
				if !rep.OK && !out.Accepted {
					return verificationErr(fmt.Sprintf("monitor: unexpected change to %s (expected v%d, served v%d)", rep.UserID, out.Expected, out.Version), "see the report above", nil)
				}
				if once {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Minute, "time between checks")
	cmd.Flags().BoolVar(&once, "once", false, "check once and exit")
	cmd.Flags().BoolVar(&accept, "accept", false, "with --once: acknowledge the reported changes as yours")
	return cmd
}

func devInfo(d verifier.DeviceInfo) string {
	s := fmt.Sprintf("%q (%s)", d.Name, d.ID)
	if d.Revocation != nil {
		s += fmt.Sprintf(", revoked %s (%s)", fmtTime(d.Revocation.Time), d.Revocation.Reason)
	}
	return s
}

func updateKind(k klog.UpdateKind) string {
	switch k {
	case klog.UpdateCreate:
		return "create"
	case klog.UpdateUpdate:
		return "update"
	case klog.UpdateReset:
		return "reset"
	}
	return fmt.Sprintf("kind %d", k)
}

func rep0(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
