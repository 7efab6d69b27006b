package cli

import (
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/verifier"
)

func (a *app) accountCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Create, recover or rotate an account; cancel a pending reset",
	}
	cmd.AddCommand(a.accountCreateCmd(), a.accountRecoverCmd(), a.accountRotateKeyCmd(), a.accountCancelResetCmd())
	return cmd
}

func defaultDeviceName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "device"
	}
	if len(h) > devices.MaxDeviceNameLen {
		h = h[:devices.MaxDeviceNameLen]
	}
	return h
}

func normUser(arg string) (string, error) {
	uid, err := devices.NormalizeUserID(arg)
	if err != nil {
		return "", &Error{Code: ExitUsage, Kind: KindUsage, Msg: fmt.Sprintf("bad user id %q", arg), Err: err, Hint: "user ids are 1-64 characters of a-z 0-9 . _ @ + -"}
	}
	return uid, nil
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%s needs %s (got %d arguments)", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}

type accountOutput struct {
	UserID       string   `json:"user_id"`
	Version      uint64   `json:"version"`
	DeviceID     string   `json:"device_id"`
	DeviceName   string   `json:"device_name"`
	IdentityKey  string   `json:"identity_key"`
	LogIndex     uint64   `json:"log_index"`
	PaperKey     string   `json:"paper_key,omitempty"`
	Revoked      []string `json:"revoked_devices,omitempty"`
	SafetyNumber string   `json:"safety_number_unchanged,omitempty"`
	Generation   uint32   `json:"signing_key_generation"`
}

func (a *app) accountCreateCmd() *cobra.Command {
	var name string
	var noConfirm bool
	cmd := &cobra.Command{
		Use:   "create USER",
		Short: "Create an account: paper key, root key, signing key, first device",
		Long: `Create an account. Keyline generates a recovery secret and shows it ONCE as a
24-word paper key; write it down and keep it offline. It is the only way to
recover the account if you lose every device, and to cut off a lost or
stolen device. You are asked to type two of the words back to confirm you
wrote them down. The paper key derives the account's root key, which
certifies a random account signing key (generation 1); the root key is
used only during this command and never stored. This device's keys are
created, version 1 of the account is published and verified, and this
device's keys and the account signing key are stored in the keystore of
--data-dir, encrypted with your passphrase.`,
		Args: exactArgs(1, "USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, err := normUser(args[0])
			if err != nil {
				return err
			}
			if err := a.ensureNoKeystore(); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			// Fail before showing a paper key if the name is taken or the
			// directory is unreachable.
			res, err := s.lookup(ctx, uid)
			if err != nil {
				return err
			}
			if res.Found {
				return &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("account %s already exists (version %d)", uid, res.Version), Hint: "choose another user id; if it is yours, use `keyline account recover " + uid + "` or `keyline device request " + uid + "`"}
			}

			secret, err := devices.NewRecoverySecret(a.rand)
			if err != nil {
				return failf("", err, "generating the recovery secret")
			}
			rk := devices.DeriveRootKey(secret)
			defer rk.Wipe()
			dk, err := devices.NewDeviceKey(a.rand)
			if err != nil {
				return failf("", err, "generating device keys")
			}
			now := a.now()
			ask, err := devices.NewAccountSigningKey(rk, uid, 1, a.rand, now)
			if err != nil {
				return failf("", err, "generating the account signing key")
			}
			rkPub := rk.Public()
			rk.Wipe() // the root key is not needed any more
			cert, err := dk.NewCert(name, rkPub, now)
			if err != nil {
				return &Error{Code: ExitUsage, Kind: KindUsage, Msg: "bad --name", Err: err}
			}
			state, err := devices.NewAccount(ask, rkPub, uid, cert, now)
			if err != nil {
				return failf("", err, "building the account state")
			}

			paper := secret.PaperKey()
			switch {
			case !a.jsonOut:
				a.showPaperKey(a.out, paper)
			case !noConfirm:
				// JSON goes to stdout at the end; the person confirming
				// the words needs to see them now.
				a.showPaperKey(a.errw, paper)
			}
			if !noConfirm {
				if err := a.confirmPaperKey(paper); err != nil {
					return err
				}
			}
			pass, err := a.passphrase(true)
			if err != nil {
				return err
			}
			res, err = s.publish(ctx, state)
			if err != nil {
				return err
			}
			clear(secret[:])
			ks := &devices.Keystore{UserID: uid, Device: dk, Signing: ask, State: res.State}
			if err := a.saveKeystore(ks, pass); err != nil {
				return fmt.Errorf("%w (the account is published; recover it with the paper key: `keyline account recover %s`)", err, uid)
			}
			out := accountOutput{UserID: uid, Version: res.Version, DeviceID: dk.ID().String(), DeviceName: name, IdentityKey: fmt.Sprintf("%x", rkPub), LogIndex: res.LogIndex, Generation: 1}
			if a.jsonOut {
				out.PaperKey = paper
				return writeJSON(a.out, out)
			}
			fmt.Fprintf(a.out, "Created account %s (version %d, log entry %d).\n", uid, res.Version, res.LogIndex)
			fmt.Fprintf(a.out, "This device: %s (%s). Keystore: %s\n", name, dk.ID(), a.keystorePath())
			fmt.Fprintf(a.out, "Next: add devices with `keyline device request %s` on the new device, compare safety numbers with `keyline safety-number CONTACT`, and run `keyline monitor`.\n", uid)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", defaultDeviceName(), "name of this device")
	cmd.Flags().BoolVar(&noConfirm, "no-confirm", false, "do not ask to type back two words of the paper key (scripts only)")
	return cmd
}

// showPaperKey prints the paper key once, numbered, with a warning.
func (a *app) showPaperKey(w io.Writer, paper string) {
	words := strings.Fields(paper)
	fmt.Fprintln(w, "================================ PAPER KEY ================================")
	fmt.Fprintln(w, "Write these 24 words down, in order, and keep them offline. They are shown")
	fmt.Fprintln(w, "ONLY NOW. They recover your account if you lose every device; anyone who")
	fmt.Fprintln(w, "has them can take over your account. Never type them into a website.")
	fmt.Fprintln(w)
	for row := 0; row < 6; row++ {
		for col := 0; col < 4; col++ {
			i := col*6 + row
			fmt.Fprintf(w, "  %2d. %-10s", i+1, words[i])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "===========================================================================")
}

// confirmPaperKey asks for two randomly chosen words by position.
func (a *app) confirmPaperKey(paper string) error {
	words := strings.Fields(paper)
	p1, err := rand.Int(a.rand, big.NewInt(int64(len(words))))
	if err != nil {
		return failf("", err, "choosing words to confirm")
	}
	p2 := p1
	for p2.Cmp(p1) == 0 {
		if p2, err = rand.Int(a.rand, big.NewInt(int64(len(words)))); err != nil {
			return failf("", err, "choosing words to confirm")
		}
	}
	fmt.Fprintln(a.errw, "To confirm you wrote the paper key down, type the requested words.")
	for _, p := range []int{int(p1.Int64()), int(p2.Int64())} {
		ok := false
		for attempt := 0; attempt < 3 && !ok; attempt++ {
			ans, err := a.readLine(fmt.Sprintf("Word #%d: ", p+1))
			if err != nil {
				return err
			}
			ok = strings.EqualFold(strings.TrimSpace(ans), words[p])
			if !ok {
				fmt.Fprintf(a.errw, "That is not word #%d.\n", p+1)
			}
		}
		if !ok {
			return failf("run the command again; a new paper key will be generated", nil, "paper key not confirmed; nothing was published")
		}
	}
	return nil
}

// readPaperKey reads the paper key from file (if set) or stdin and
// derives the root key. The caller wipes it when done.
func (a *app) readPaperKey(file string) (*devices.RootKey, error) {
	var words string
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, failf("check --paper-key-file", err, "cannot read the paper key file")
		}
		words = string(b)
	} else {
		var err error
		if words, err = a.readLine("Paper key (24 words): "); err != nil {
			return nil, err
		}
	}
	secret, err := devices.ParsePaperKey(words)
	if err != nil {
		return nil, &Error{Code: ExitUsage, Kind: KindUsage, Msg: "cannot read the paper key", Err: err, Hint: "check the words against what you wrote down"}
	}
	defer clear(secret[:])
	return devices.DeriveRootKey(secret), nil
}

// checkRootKey checks that rk is the root key of the account res serves.
func checkRootKey(uid string, rk *devices.RootKey, res *verifier.LookupResult) error {
	if res.IdentityKey == rk.Public() {
		return nil
	}
	if res.Reset != nil {
		return verificationErr(fmt.Sprintf("account %s was reset by the directory (%s); this paper key belongs to its old root key", uid, res.Reset.Reason), "the account now has another owner key; contact the directory operator", nil)
	}
	return &Error{Code: ExitError, Kind: KindError, Msg: fmt.Sprintf("this paper key is not the key of account %s", uid), Hint: "check the user id and the words"}
}

// nextSigningKey certifies the next account signing key generation with rk.
func (a *app) nextSigningKey(rk *devices.RootKey, st *devices.AccountState, now time.Time) (*devices.AccountSigningKey, error) {
	ask, err := devices.NewAccountSigningKey(rk, st.UserID, st.Generation()+1, a.rand, now)
	if err != nil {
		return nil, failf("", err, "generating the account signing key")
	}
	return ask, nil
}

func (a *app) accountRecoverCmd() *cobra.Command {
	var name, paperFile string
	cmd := &cobra.Command{
		Use:   "recover USER",
		Short: "Recover an account on a new device with the paper key",
		Long: `Recover an account with its 24-word paper key, on a new device (a fresh
--data-dir). The paper key re-derives the root key, which certifies the
next generation of the account signing key; this new device is added and
trusted, and every other device is revoked as lost. From this version on,
everything signed with the old signing key (a lost or stolen device) is
refused by the directory, by every client and by auditors. The root key,
and so every safety number, stays the same. During a pending directory
reset, recovering also cancels it. The paper key is read from
--paper-key-file or from stdin.`,
		Args: exactArgs(1, "USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, err := normUser(args[0])
			if err != nil {
				return err
			}
			if err := a.ensureNoKeystore(); err != nil {
				return err
			}
			rk, err := a.readPaperKey(paperFile)
			if err != nil {
				return err
			}
			defer rk.Wipe()
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := s.lookup(ctx, uid)
			if err != nil {
				return err
			}
			if !res.Found {
				return &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("no account %s in the directory (absence proven)", uid), Hint: "check the user id; to start over use `keyline account create`"}
			}
			if err := checkRootKey(uid, rk, res); err != nil {
				return err
			}
			dk, err := devices.NewDeviceKey(a.rand)
			if err != nil {
				return failf("", err, "generating device keys")
			}
			now := a.nowAfter(res.State)
			cert, err := dk.NewCert(name, rk.Public(), now)
			if err != nil {
				return &Error{Code: ExitUsage, Kind: KindUsage, Msg: "bad --name", Err: err}
			}
			ask, err := a.nextSigningKey(rk, res.State, now)
			if err != nil {
				return err
			}
			rk.Wipe()
			next, err := devices.Recover(res.State, ask, cert, now)
			if err != nil {
				return &Error{Code: ExitError, Kind: KindError, Msg: "cannot build the recovery state", Err: err}
			}
			if next, err = a.linkAfterPendingReset(res, next, ask); err != nil {
				return err
			}
			var revoked []string
			for _, d := range res.State.Devices {
				revoked = append(revoked, fmt.Sprintf("%s (%s)", d.Name, d.ID))
			}
			pass, err := a.passphrase(true)
			if err != nil {
				return err
			}
			res, err = s.publish(ctx, next)
			if err != nil {
				return err
			}
			ks := &devices.Keystore{UserID: uid, Device: dk, Signing: ask, State: res.State}
			if err := a.saveKeystore(ks, pass); err != nil {
				return err
			}
			out := accountOutput{UserID: uid, Version: res.Version, DeviceID: dk.ID().String(), DeviceName: name, IdentityKey: fmt.Sprintf("%x", res.IdentityKey), LogIndex: res.LogIndex, Revoked: revoked, SafetyNumber: "root key unchanged", Generation: ask.Generation()}
			if a.jsonOut {
				return writeJSON(a.out, out)
			}
			fmt.Fprintf(a.out, "Recovered account %s on this device %s (%s): version %d, signing key generation %d.\n", uid, name, dk.ID(), res.Version, ask.Generation())
			for _, r := range revoked {
				fmt.Fprintf(a.out, "  revoked as lost: %s\n", r)
			}
			fmt.Fprintf(a.out, "Everything signed with signing key generation %d (your old devices) is now refused.\n", ask.Generation()-1)
			fmt.Fprintln(a.out, "Your root key is unchanged, so your contacts' safety numbers for you are unchanged.")
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", defaultDeviceName(), "name of this new device")
	cmd.Flags().StringVar(&paperFile, "paper-key-file", "", "read the 24 words from this file instead of stdin")
	return cmd
}

func (a *app) accountRotateKeyCmd() *cobra.Command {
	var paperFile, reason string
	var revoke []string
	var yes bool
	cmd := &cobra.Command{
		Use:   "rotate-key",
		Short: "With the paper key: new account signing key; cut off lost or stolen devices",
		Long: `Rotate the account signing key, on one of your devices, with the paper key.
The paper key re-derives the root key, which certifies the next generation
of the account signing key. The devices you keep are re-signed with it, the
ones named with --revoke are revoked, and this device becomes the only
trusted device (hand the key to others with ` + "`keyline device trust`" + `).
From this version on, the directory, every client, your monitor and the
auditors refuse everything signed with the old key: a lost or stolen device
that held it is cut off. Safety numbers do not change. During a pending
directory reset, rotating also cancels it.`,
		Example: `  keyline account rotate-key --revoke laptop --reason compromised --paper-key-file key.txt`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			why, err := parseReason(reason)
			if err != nil {
				return err
			}
			ks, pass, err := a.loadKeystore()
			if err != nil {
				return err
			}
			rk, err := a.readPaperKey(paperFile)
			if err != nil {
				return err
			}
			defer rk.Wipe()
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := s.ownState(ctx, ks)
			if err != nil {
				return err
			}
			if err := checkRootKey(ks.UserID, rk, res); err != nil {
				return err
			}
			if res.State.Device(ks.Device.ID()) == nil {
				return &Error{Code: ExitRejected, Kind: KindRejected, Msg: "this device is not part of the account any more", Hint: "recover on a fresh --data-dir: `keyline account recover " + ks.UserID + "`"}
			}
			drop := map[devices.DeviceID]*devices.DeviceCert{}
			for _, arg := range revoke {
				d, err := findDevice(res.State, arg)
				if err != nil {
					return err
				}
				if d.ID == ks.Device.ID() {
					return usageErr("--revoke %q is this device", arg)
				}
				drop[d.ID] = d
			}
			var keep []devices.DeviceID
			for _, d := range res.State.Devices {
				if drop[d.ID] == nil {
					keep = append(keep, d.ID)
				}
			}
			now := a.nowAfter(res.State)
			ask, err := a.nextSigningKey(rk, res.State, now)
			if err != nil {
				return err
			}
			rk.Wipe()
			fmt.Fprintf(a.errw, "Rotate %s to signing key generation %d, keeping %d devices, revoking %d:\n", ks.UserID, ask.Generation(), len(keep), len(drop))
			for _, d := range drop {
				fmt.Fprintf(a.errw, "  revoke %q (%s)\n", d.Name, d.ID)
			}
			ok, err := a.confirm("Rotate the signing key?", yes)
			if err != nil {
				return err
			}
			if !ok {
				return failf("nothing was published", nil, "not rotated")
			}
			next, err := devices.Rotate(res.State, ask, devices.Rotation{Keep: keep, Reason: why, Trusted: []devices.DeviceID{ks.Device.ID()}}, now)
			if err != nil {
				return &Error{Code: ExitError, Kind: KindError, Msg: "cannot build the rotation", Err: err}
			}
			if next, err = a.linkAfterPendingReset(res, next, ask); err != nil {
				return err
			}
			ks.Signing = ask
			res, err = a.publishOwn(ctx, s, ks, pass, next)
			if err != nil {
				return err
			}
			var revoked, untrusted []string
			for _, d := range drop {
				revoked = append(revoked, fmt.Sprintf("%s (%s)", d.Name, d.ID))
			}
			for _, d := range res.State.Devices {
				if !res.State.IsTrusted(d.ID) {
					untrusted = append(untrusted, d.Name)
				}
			}
			if a.jsonOut {
				return writeJSON(a.out, map[string]any{"user_id": ks.UserID, "version": res.Version, "signing_key_generation": ask.Generation(), "revoked_devices": revoked, "untrusted_devices": untrusted, "root_key_unchanged": true})
			}
			fmt.Fprintf(a.out, "Rotated %s to signing key generation %d (version %d). Everything generation %d signs is now refused.\n", ks.UserID, ask.Generation(), res.Version, ask.Generation()-1)
			for _, r := range revoked {
				fmt.Fprintf(a.out, "  revoked: %s\n", r)
			}
			if len(untrusted) > 0 {
				fmt.Fprintf(a.out, "Kept but no longer trusted (they can list and monitor): %s. Hand them the new key with `keyline device trust NAME`.\n", strings.Join(untrusted, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&paperFile, "paper-key-file", "", "read the 24 words from this file instead of stdin")
	cmd.Flags().StringArrayVar(&revoke, "revoke", nil, "device ID or NAME to revoke (repeatable)")
	cmd.Flags().StringVar(&reason, "reason", "compromised", "revocation reason: lost, compromised, retired or unspecified")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func (a *app) accountCancelResetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel-reset",
		Short: "On a trusted device: cancel a pending directory reset of your account",
		Long: `Cancel a directory reset of your account while it is pending (lookups show
"reset pending"; ` + "`keyline monitor`" + ` alerts). Publishes the next version of
your account, unchanged, signed with your account signing key: the reset
never takes effect. Without a trusted device, ` + "`keyline account recover`" + `
with the paper key also cancels it.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, pass, err := a.loadKeystore()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := s.ownState(ctx, ks)
			if err != nil {
				return err
			}
			if res.ResetPending == nil {
				return &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("no reset of %s is pending (version %d)", ks.UserID, res.Version)}
			}
			ask, err := needSigningKey(ks, res.State, "cancelling a reset")
			if err != nil {
				return err
			}
			next, err := devices.Resign(res.State, ask, a.nowAfter(res.State))
			if err != nil {
				return &Error{Code: ExitError, Kind: KindError, Msg: "cannot build the cancellation", Err: err}
			}
			pending := res.ResetPending
			if next, err = a.linkAfterPendingReset(res, next, ask); err != nil {
				return err
			}
			res, err = a.publishOwn(ctx, s, ks, pass, next)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSON(a.out, map[string]any{"user_id": ks.UserID, "version": res.Version, "cancelled_reset_version": pending.Version, "cancelled": true})
			}
			fmt.Fprintf(a.out, "Cancelled the reset of %s pending since %s: version %d keeps your keys.\n", ks.UserID, fmtTime(pending.Time), res.Version)
			return nil
		},
	}
}
