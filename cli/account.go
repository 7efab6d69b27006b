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
	cmd.AddCommand(a.accountCreateCmd(), a.accountRecoverCmd(), a.accountRotateKeyCmd(), a.accountCancelResetCmd(), a.accountSyncCmd())
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
	UserID               string      `json:"user_id"`
	Version              uint64      `json:"version"`
	Epoch                uint64      `json:"epoch"`
	LogIndex             uint64      `json:"log_index"`
	DeviceID             string      `json:"device_id"`
	DeviceName           string      `json:"device_name"`
	IdentityKey          string      `json:"identity_key"`
	PaperKey             *string     `json:"paper_key"`
	RevokedDevices       []deviceRef `json:"revoked_devices"`
	IdentityKeyUnchanged bool        `json:"identity_key_unchanged"`
	// SigningKeyGeneration is the account signing key generation this
	// command certified (1 for create, the next one for recover).
	SigningKeyGeneration uint32 `json:"signing_key_generation"`
}

// deviceRef names a device in --json output.
type deviceRef struct {
	DeviceID   string `json:"device_id"`
	DeviceName string `json:"device_name"`
}

func (a *app) accountCreateCmd() *cobra.Command {
	var name string
	var noConfirm bool
	cmd := &cobra.Command{
		Use:   "create USER",
		Short: "Create an account: paper key, root key, signing key, first device",
		Long: `Create an account. Keyline first asks for the passphrase that will protect
this device's keystore (or takes it from $KEYLINE_PASSPHRASE or
--passphrase-file; at least 8 characters). Then it generates a recovery
secret and shows it ONCE as a 24-word paper key; write it down and keep it
offline. It is the only way to recover the account if you lose every
device, and to cut off a lost or stolen device. You are asked to type two
of the words back to confirm you wrote them down. The paper key derives the
account's root key (RK), which certifies a random account signing key
(generation 1); the root key is used only during this command and never
stored. Then this device's keys and the account signing key (this device
is trusted) are stored in the keystore of --data-dir, encrypted with your
passphrase, and version 1 of the account is published and verified. If the command is interrupted while publishing, your keys
are already saved: ` + "`keyline account sync`" + ` finishes it.`,
		Args: exactArgs(1, "USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, err := normUser(args[0])
			if err != nil {
				return err
			}
			if a.jsonOut && !noConfirm {
				return usageErr("with --json, pass --no-confirm: --json never asks questions (the paper key is in the output; store it safely)")
			}
			unlock, err := a.lockDataDir()
			if err != nil {
				return err
			}
			defer unlock()
			if err := a.ensureNoKeystore(); err != nil {
				return err
			}
			// The passphrase source is checked before anything secret
			// is shown: a paper key shown by a command that then fails
			// is void.
			pass, err := a.passphrase(true)
			if err != nil {
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
			case a.jsonOut:
			case noConfirm:
				a.showPaperKey(a.out, paper)
			default:
				// On a terminal the words are shown and confirmed on the
				// alternate screen and cleared afterwards.
				err := a.privateScreen(func() error {
					a.showPaperKey(a.out, paper)
					return a.confirmPaperKey(paper)
				})
				if err != nil {
					return err
				}
				if a.privateScreenTerminal() {
					fmt.Fprintln(a.out, "Paper key confirmed and cleared from the screen. Keep the written copy offline.")
				}
			}
			ks := &devices.Keystore{UserID: uid, Device: dk, Signing: ask}
			res, err = a.publishPending(ctx, s, ks, pass, "account create", state, keysNewAccount)
			if err != nil {
				return err
			}
			out := accountOutput{UserID: uid, Version: res.Version, Epoch: res.Epoch.Epoch, DeviceID: dk.ID().String(), DeviceName: name, IdentityKey: fmt.Sprintf("%x", rkPub), LogIndex: res.LogIndex, RevokedDevices: []deviceRef{}, SigningKeyGeneration: 1}
			if a.jsonOut {
				out.PaperKey = &paper
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
			unlock, err := a.lockDataDir()
			if err != nil {
				return err
			}
			defer unlock()
			if err := a.ensureNoKeystore(); err != nil {
				return err
			}
			pass, err := a.passphrase(true)
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
			revoked := []deviceRef{}
			for _, d := range res.State.Devices {
				revoked = append(revoked, deviceRef{DeviceID: d.ID.String(), DeviceName: d.Name})
			}
			ks := &devices.Keystore{UserID: uid, Device: dk, Signing: ask}
			res, err = a.publishPending(ctx, s, ks, pass, "account recover", next, keysNewAccount)
			if err != nil {
				return err
			}
			out := accountOutput{UserID: uid, Version: res.Version, Epoch: res.Epoch.Epoch, DeviceID: dk.ID().String(), DeviceName: name, IdentityKey: fmt.Sprintf("%x", res.IdentityKey), LogIndex: res.LogIndex, RevokedDevices: revoked, IdentityKeyUnchanged: true, SigningKeyGeneration: ask.Generation()}
			if a.jsonOut {
				return writeJSON(a.out, out)
			}
			fmt.Fprintf(a.out, "Recovered account %s on this device %s (%s): version %d, signing key generation %d.\n", uid, name, dk.ID(), res.Version, ask.Generation())
			for _, r := range revoked {
				fmt.Fprintf(a.out, "  revoked as lost: %s (%s)\n", r.DeviceName, r.DeviceID)
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

func (a *app) accountSyncCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Finish or clear an interrupted update of your account, and check the account",
		Long: `Check your account against the directory. If a command that publishes
(account create or recover, device approve or revoke) was interrupted, the
update it was sending is recorded next to the keystore; sync finds out
whether the directory published it. If it did, the keystore and pins are
updated; if it is not visible, sync sends it again; if the account moved on
without it, it is forgotten. Every command that changes the account does
this first; sync does only this.`,
		Example: `  # after "keyline account create alice" lost its connection:
  keyline account sync`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			unlock, err := a.lockDataDir()
			if err != nil {
				return err
			}
			defer unlock()
			if p, err := a.readPending(); err == nil && p != nil && p.NewAccount && !a.keystoreExists() {
				if err := a.ensureNoKeystore(); err != nil { // clears it: nothing was sent
					return err
				}
				if a.jsonOut {
					return writeJSON(a.out, syncOutput{UserID: p.UserID, Pending: reconcileAbandoned.String()})
				}
				return nil
			}
			ks, pass, err := a.loadKeystore()
			if err != nil {
				return err
			}
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			outcome, err := a.reconcilePending(ctx, s, ks, pass)
			if err != nil {
				return err
			}
			if outcome == reconcileAbandoned && !a.keystoreExists() {
				if a.jsonOut {
					return writeJSON(a.out, syncOutput{UserID: ks.UserID, Pending: outcome.String()})
				}
				return nil
			}
			if ks.State == nil {
				return failf("finish joining your account first: `keyline device finish`", nil, "this device is not part of an account yet")
			}
			res, err := s.ownState(ctx, ks)
			if err != nil {
				return err
			}
			out := syncOutput{UserID: ks.UserID, Version: &res.Version, Pending: outcome.String(), Verified: true}
			if a.jsonOut {
				return writeJSON(a.out, out)
			}
			fmt.Fprintf(a.out, "%s is at version %d (verified); nothing is pending.\n", ks.UserID, res.Version)
			return nil
		},
	}
}

type syncOutput struct {
	UserID   string  `json:"user_id"`
	Version  *uint64 `json:"version"`
	Pending  string  `json:"pending"` // none, published, resubmitted, abandoned
	Verified bool    `json:"verified"`
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
		// Typed on the alternate screen (on a terminal), so the words
		// do not stay on the screen.
		err := a.privateScreen(func() error {
			var err error
			words, err = a.readLine("Paper key (24 words): ")
			return err
		})
		if err != nil {
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

type rotateOutput struct {
	UserID               string      `json:"user_id"`
	Version              uint64      `json:"version"`
	SigningKeyGeneration uint32      `json:"signing_key_generation"`
	RevokedDevices       []deviceRef `json:"revoked_devices"`
	UntrustedDevices     []deviceRef `json:"untrusted_devices"`
	IdentityKeyUnchanged bool        `json:"identity_key_unchanged"`
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
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			why, err := parseReason(reason)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			o, err := a.openOwn(ctx)
			if err != nil {
				return err
			}
			defer o.close()
			ks, res := o.ks, o.res
			rk, err := a.readPaperKey(paperFile)
			if err != nil {
				return err
			}
			defer rk.Wipe()
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
			if !yes && a.jsonOut {
				return usageErr("with --json, pass --yes: --json never asks questions")
			}
			a.info("Rotate %s to signing key generation %d, keeping %d devices, revoking %d.\n", ks.UserID, ask.Generation(), len(keep), len(drop))
			for _, d := range drop {
				a.info("  revoke %q (%s)\n", d.Name, d.ID)
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
			res, err = o.publishWithNewKeys(ctx, "account rotate-key", next)
			if err != nil {
				return err
			}
			out := rotateOutput{UserID: ks.UserID, Version: res.Version, SigningKeyGeneration: ask.Generation(), RevokedDevices: []deviceRef{}, UntrustedDevices: []deviceRef{}, IdentityKeyUnchanged: true}
			for _, d := range drop {
				out.RevokedDevices = append(out.RevokedDevices, deviceRef{DeviceID: d.ID.String(), DeviceName: d.Name})
			}
			for _, d := range res.State.Devices {
				if !res.State.IsTrusted(d.ID) {
					out.UntrustedDevices = append(out.UntrustedDevices, deviceRef{DeviceID: d.ID.String(), DeviceName: d.Name})
				}
			}
			if a.jsonOut {
				return writeJSON(a.out, out)
			}
			fmt.Fprintf(a.out, "Rotated %s to signing key generation %d (version %d). Everything generation %d signs is now refused.\n", ks.UserID, ask.Generation(), res.Version, ask.Generation()-1)
			for _, r := range out.RevokedDevices {
				fmt.Fprintf(a.out, "  revoked: %s (%s)\n", r.DeviceName, r.DeviceID)
			}
			if len(out.UntrustedDevices) > 0 {
				var names []string
				for _, d := range out.UntrustedDevices {
					names = append(names, d.DeviceName)
				}
				fmt.Fprintf(a.out, "Kept but no longer trusted (they can list and monitor): %s. Hand them the new key with `keyline device trust NAME`.\n", strings.Join(names, ", "))
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
			ctx := cmd.Context()
			o, err := a.openOwn(ctx)
			if err != nil {
				return err
			}
			defer o.close()
			ks, res := o.ks, o.res
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
			res, err = o.publish(ctx, "account cancel-reset", next)
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
