package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/internal/atomicfile"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

func (a *app) deviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Add, list and revoke the devices of your account",
	}
	cmd.AddCommand(a.deviceRequestCmd(), a.deviceApproveCmd(), a.deviceFinishCmd(), a.deviceListCmd(), a.deviceRevokeCmd(), a.deviceTrustCmd())
	return cmd
}

// pairingOutput is a pairing request as `device request` shows it; it is
// also kept (public data only) in pairing.json until the device finishes
// joining, so that the request can be shown again.
type pairingOutput struct {
	UserID      string    `json:"user_id"`
	DeviceID    string    `json:"device_id"`
	DeviceName  string    `json:"device_name"`
	Code        string    `json:"pairing_code"`
	QR          string    `json:"qr_payload"`
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"created_at"`
	Finished    bool      `json:"finished"`
	Version     *uint64   `json:"version"`
}

const pairingFile = "pairing.json"

func (a *app) pairingPath() string { return filepath.Join(a.dataDir, pairingFile) }

// readPairing returns this device's pending pairing request, or nil.
func (a *app) readPairing() (*pairingOutput, error) {
	b, err := os.ReadFile(a.pairingPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var p pairingOutput
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		return nil, failf("remove it and request again from a fresh --data-dir", err, "cannot read the pending pairing request %s", a.pairingPath())
	}
	return &p, nil
}

func (a *app) writePairing(p *pairingOutput) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err == nil {
		err = atomicfile.Write(a.pairingPath(), append(b, '\n'), 0o600)
	}
	if err != nil {
		return failf("check the permissions and free space of --data-dir", err, "cannot save the pairing request")
	}
	return nil
}

// pairingFlow shows the pairing request out and, with wait, waits for its
// approval and finishes joining. pass is the keystore passphrase if known.
func (a *app) pairingFlow(ctx context.Context, s *session, out pairingOutput, pass []byte, wait time.Duration) error {
	if !a.jsonOut {
		fmt.Fprintf(a.out, "Request to add this device %q (%s) to account %s.\n\n", out.DeviceName, out.DeviceID, out.UserID)
		fmt.Fprintf(a.out, "Pairing code:\n\n  %s\n\n", out.Code)
		if err := printQR(a.out, out.QR, a.qrInvert); err != nil {
			return failf("", err, "drawing the QR code")
		}
		fmt.Fprintf(a.out, "\nFingerprint:  %s\n\n", out.Fingerprint)
		fmt.Fprintf(a.out, "On a trusted device of %s, within %s, run:\n\n  keyline device approve %s\n\n(add --trusted to let this device approve and revoke devices too) and check it\nshows the same fingerprint. Then run `keyline device finish` here, with\n--signing-key CODE if the approval printed one (`keyline device request %s`\nshows this request again).\n", out.UserID, devices.DefaultPairingTTL, out.Code, out.UserID)
	}
	if wait <= 0 {
		if a.jsonOut {
			return writeJSON(a.out, out)
		}
		return nil
	}
	if pass == nil {
		var err error
		if _, pass, err = a.loadKeystore(); err != nil {
			return err
		}
	}
	if !a.jsonOut {
		fmt.Fprintf(a.errw, "Waiting up to %s for the approval...\n", wait)
	}
	deadline := a.now().Add(wait)
	for {
		ver, err := a.finishPairing(ctx, s, pass)
		if err == nil {
			out.Finished, out.Version = true, &ver
			break
		}
		if _, pending := err.(*pendingErr); !pending || a.now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if a.jsonOut {
		return writeJSON(a.out, out)
	}
	fmt.Fprintf(a.out, "Approved: this device is now part of %s (version %d).\n", out.UserID, *out.Version)
	return nil
}

// renewPairing replaces an expired pairing request of this device by a new
// one with the same keys (the keystore is opened for them).
func (a *app) renewPairing(ctx context.Context, s *session, prev *pairingOutput) (*pairingOutput, []byte, error) {
	ks, pass, err := a.loadKeystore()
	if err != nil {
		return nil, nil, err
	}
	res, err := s.lookup(ctx, prev.UserID)
	if err != nil {
		return nil, nil, err
	}
	if !res.Found {
		return nil, nil, &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("no account %s in the directory (absence proven)", prev.UserID)}
	}
	req, err := devices.NewPairingRequest(ks.Device, prev.UserID, res.IdentityKey, prev.DeviceName, a.now(), devices.DefaultPairingTTL)
	if err != nil {
		return nil, nil, &Error{Code: ExitUsage, Kind: KindUsage, Msg: "cannot build the pairing request", Err: err}
	}
	out := *prev
	if out.Code, err = req.Code(); err != nil {
		return nil, nil, failf("", err, "encoding the pairing code")
	}
	if out.QR, err = req.QR(); err != nil {
		return nil, nil, failf("", err, "encoding the pairing QR payload")
	}
	if out.Fingerprint, err = req.Fingerprint(); err != nil {
		return nil, nil, failf("", err, "computing the fingerprint")
	}
	out.CreatedAt = a.now().UTC().Truncate(time.Second)
	if err := a.writePairing(&out); err != nil {
		return nil, nil, err
	}
	a.info("The earlier request expired; this is a new one for the same device keys.\n")
	return &out, pass, nil
}

func (a *app) deviceRequestCmd() *cobra.Command {
	var name string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "request USER",
		Short: "On a new device: ask to join USER's account (prints a pairing code)",
		Long: `Run this on the new device, with its own --data-dir. It looks up USER's
root key, creates this device's keys, and prints a pairing code, a QR code
and a fingerprint; the request is valid for 10 minutes (running the command
again shows it again, renewed with the same keys once it expired). On a
trusted device of the account, run ` + "`keyline device approve CODE`" + ` and check
that it shows the same fingerprint. Then run ` + "`keyline device finish`" + ` here
(or pass --wait to wait for the approval).`,
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
			ctx := cmd.Context()
			if a.keystoreExists() {
				prev, err := a.readPairing()
				if err != nil {
					return err
				}
				if prev == nil || prev.UserID != uid {
					return a.ensureNoKeystore()
				}
				// The request is pending: show it again (renewed, with the
				// same keys, if it expired).
				s, err := a.openSession(ctx)
				if err != nil {
					return err
				}
				defer s.close()
				if old, err := devices.ParsePairingCode(prev.Code); err != nil || !a.now().Before(old.Expires) {
					renewed, pass, err := a.renewPairing(ctx, s, prev)
					if err != nil {
						return err
					}
					return a.pairingFlow(ctx, s, *renewed, pass, wait)
				}
				if !a.jsonOut {
					a.info("This device already asked to join %s (at %s); showing that request again.\n", uid, prev.CreatedAt.Format(time.RFC3339))
				}
				return a.pairingFlow(ctx, s, *prev, nil, wait)
			}
			if err := a.ensureNoKeystore(); err != nil {
				return err
			}
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
				return &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("no account %s in the directory (absence proven)", uid), Hint: "create it with `keyline account create " + uid + "`"}
			}
			if err := checkNewDeviceName(res.State, name); err != nil {
				return err
			}
			dk, err := devices.NewDeviceKey(a.rand)
			if err != nil {
				return failf("", err, "generating device keys")
			}
			req, err := devices.NewPairingRequest(dk, uid, res.IdentityKey, name, a.now(), devices.DefaultPairingTTL)
			if err != nil {
				return &Error{Code: ExitUsage, Kind: KindUsage, Msg: "cannot build the pairing request", Err: err}
			}
			code, err := req.Code()
			if err != nil {
				return failf("", err, "encoding the pairing code")
			}
			qrp, err := req.QR()
			if err != nil {
				return failf("", err, "encoding the pairing QR payload")
			}
			fp, err := req.Fingerprint()
			if err != nil {
				return failf("", err, "computing the fingerprint")
			}
			pass, err := a.passphrase(true)
			if err != nil {
				return err
			}
			out := pairingOutput{UserID: uid, DeviceID: dk.ID().String(), DeviceName: name, Code: code, QR: qrp, Fingerprint: fp, CreatedAt: a.now().UTC().Truncate(time.Second)}
			if err := a.writePairing(&out); err != nil {
				return err
			}
			if err := a.saveKeystore(&devices.Keystore{UserID: uid, Device: dk}, pass); err != nil {
				os.Remove(a.pairingPath())
				return err
			}
			for _, w := range res.Warnings {
				a.info("WARNING: %s\n", w)
			}
			return a.pairingFlow(ctx, s, out, pass, wait)
		},
	}
	cmd.Flags().StringVar(&name, "name", defaultDeviceName(), "name of this device, shown to the approving device")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the approval, then finish")
	return cmd
}

// finishOutput is `device finish --json`.
type finishOutput struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Finished bool   `json:"finished"`
	Version  uint64 `json:"version"`
	// Trusted: this device now holds the account signing key (--signing-key).
	Trusted              bool    `json:"trusted"`
	SigningKeyGeneration *uint32 `json:"signing_key_generation"`
}

// changeOutput is `device approve --json` and `device revoke --json`: the
// device added or removed and the version that published it.
type changeOutput struct {
	UserID      string  `json:"user_id"`
	Version     uint64  `json:"version"`
	Epoch       uint64  `json:"epoch"`
	LogIndex    uint64  `json:"log_index"`
	DeviceID    string  `json:"device_id"`
	DeviceName  string  `json:"device_name"`
	Fingerprint *string `json:"fingerprint"` // approve
	Reason      *string `json:"reason"`      // revoke
	// Trusted (approve --trusted, trust): the device is handed the
	// account signing key; SigningKeyHandover is the code for
	// `device finish --signing-key` (null otherwise).
	Trusted            bool    `json:"trusted"`
	SigningKeyHandover *string `json:"signing_key_handover"`
}

type deviceListOutput struct {
	UserID  string      `json:"user_id"`
	Version uint64      `json:"version"`
	Devices []deviceRow `json:"devices"`
}

// pendingErr says the pairing is not approved yet.
type pendingErr struct{ e *Error }

func (p *pendingErr) Error() string { return p.e.Error() }
func (p *pendingErr) Unwrap() error { return p.e }

// finishPairing checks that the published account lists this device with
// exactly its keys and stores the state in the keystore.
func (a *app) finishPairing(ctx context.Context, s *session, pass []byte) (uint64, error) {
	ks, err := devices.LoadKeystore(a.keystorePath(), pass)
	if err != nil {
		return 0, failf("", err, "cannot open the keystore")
	}
	res, err := s.lookup(ctx, ks.UserID)
	if err != nil {
		return 0, err
	}
	if !res.Found {
		return 0, verificationErr(fmt.Sprintf("the directory proves account %s absent", ks.UserID), "", nil)
	}
	id := ks.Device.ID()
	if r := res.State.Revoked(id); r != nil {
		return 0, &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("this device %s was revoked from %s (%s, %s)", id, ks.UserID, r.Reason, fmtTime(r.Time)), Hint: "request again from a fresh --data-dir"}
	}
	c := res.State.Device(id)
	if c == nil {
		return 0, &pendingErr{e: &Error{Code: ExitError, Kind: KindError, Msg: fmt.Sprintf("this device is not (yet) part of %s (version %d)", ks.UserID, res.Version), Hint: "approve it on a trusted device: `keyline device approve CODE`, then run `keyline device finish` again"}}
	}
	if c.SigningKey != ks.Device.SigningPublic() || c.X25519Key != ks.Device.X25519Public() {
		return 0, verificationErr("the published cert for this device id has other keys", "do not use this account; keep this output", nil)
	}
	if ks.State != nil && ks.State.Version > res.Version {
		return 0, verificationErr(fmt.Sprintf("the directory serves %s v%d, older than v%d", ks.UserID, res.Version, ks.State.Version), "", nil)
	}
	ks.State = res.State
	if err := a.saveKeystore(ks, pass); err != nil {
		return 0, err
	}
	os.Remove(a.pairingPath())
	h, _ := res.State.Hash()
	if err := s.client.SetOwn(verifier.OwnAccount{UserID: ks.UserID, Version: res.Version, EntryHash: res.EntryHash, StateHash: h}); err != nil {
		return 0, failf("", err, "saving the client state")
	}
	if err := s.client.Pin(ks.UserID, res.IdentityKey, true); err != nil {
		return 0, failf("", err, "saving the client state")
	}
	return res.Version, nil
}

// handoverCode seals ask to the device id of st as a handover code.
func (a *app) handoverCode(ask *devices.AccountSigningKey, st *devices.AccountState, id devices.DeviceID) (string, error) {
	c := st.Device(id)
	if c == nil {
		return "", failf("", nil, "device %s is not in the published state", id)
	}
	h, err := devices.SealHandover(ask, c, a.rand)
	if err != nil {
		return "", failf("", err, "encrypting the account signing key")
	}
	code, err := h.Code()
	if err != nil {
		return "", failf("", err, "encoding the handover code")
	}
	return code, nil
}

// acceptHandover opens a signing key handover code for this device and
// stores the key in the keystore.
func (a *app) acceptHandover(code string, pass []byte) (uint32, error) {
	h, err := devices.ParseHandoverCode(code)
	if err != nil {
		return 0, &Error{Code: ExitUsage, Kind: KindUsage, Msg: "cannot read the --signing-key code", Err: err, Hint: "copy it again from the approving device"}
	}
	ks, err := devices.LoadKeystore(a.keystorePath(), pass)
	if err != nil {
		return 0, failf("", err, "cannot open the keystore")
	}
	if ks.State == nil {
		return 0, failf("run `keyline device finish` first", nil, "this device has no verified account state yet")
	}
	ask, err := devices.OpenHandover(h, ks.Device, ks.State)
	if err != nil {
		return 0, &Error{Code: ExitRejected, Kind: KindRejected, Msg: "cannot accept the account signing key", Err: err, Hint: "the code must come from a trusted device of this account, for this device, at the current signing key generation"}
	}
	ks.Signing = ask
	if err := a.saveKeystore(ks, pass); err != nil {
		return 0, err
	}
	return ask.Generation(), nil
}

func (a *app) deviceFinishCmd() *cobra.Command {
	var signingKey string
	cmd := &cobra.Command{
		Use:   "finish",
		Short: "On the new device: check the approval was published and start using the account",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			unlock, err := a.lockDataDir()
			if err != nil {
				return err
			}
			defer unlock()
			ks, pass, err := a.loadKeystore()
			if err != nil {
				return err
			}
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			ver, err := a.finishPairing(ctx, s, pass)
			if pe, ok := err.(*pendingErr); ok {
				return pe.e
			}
			if err != nil {
				return err
			}
			var gen *uint32
			if signingKey != "" {
				g, err := a.acceptHandover(signingKey, pass)
				if err != nil {
					return err
				}
				gen = &g
			}
			if a.jsonOut {
				return writeJSON(a.out, finishOutput{UserID: ks.UserID, DeviceID: ks.Device.ID().String(), Finished: true, Version: ver, Trusted: gen != nil, SigningKeyGeneration: gen})
			}
			fmt.Fprintf(a.out, "This device (%s) is part of %s (version %d, verified).\n", ks.Device.ID(), ks.UserID, ver)
			if gen != nil {
				fmt.Fprintf(a.out, "It holds the account signing key (generation %d): it can approve and revoke devices.\n", *gen)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&signingKey, "signing-key", "", "the handover code printed by `device approve --trusted` or `device trust`")
	return cmd
}

func (a *app) deviceApproveCmd() *cobra.Command {
	var yes, trusted bool
	var fingerprint string
	cmd := &cobra.Command{
		Use:   "approve CODE",
		Short: "On a trusted device: add the device that showed CODE",
		Long: `Approve a pairing request. Shows the new device's name and fingerprint; it
must be the fingerprint the new device shows. Then signs and publishes the
next version of the account with the device added. With --trusted the new
device is also handed the account signing key, encrypted to its X25519 key
(HPKE), as a code to pass to ` + "`keyline device finish --signing-key CODE`" + `
on the new device; a trusted device can approve and revoke devices, an
untrusted one can only list and monitor. For scripts, pass --fingerprint
with the digits read from the new device (or --yes).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("%s needs the pairing CODE printed by `keyline device request`", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := devices.ParsePairingCode(strings.Join(args, ""))
			if err != nil {
				return &Error{Code: ExitUsage, Kind: KindUsage, Msg: "cannot read the pairing code", Err: err, Hint: "copy it again from the new device (dashes and spaces do not matter)"}
			}
			fp, err := req.Fingerprint()
			if err != nil {
				return failf("", err, "computing the fingerprint")
			}
			ctx := cmd.Context()
			o, err := a.openOwn(ctx)
			if err != nil {
				return err
			}
			defer o.close()
			ks, res := o.ks, o.res
			ask, err := needSigningKey(ks, res.State, "approving a device")
			if err != nil {
				return err
			}
			if req.UserID != ks.UserID {
				return &Error{Code: ExitUsage, Kind: KindUsage, Msg: fmt.Sprintf("the request is to join %s, but this device belongs to %s", req.UserID, ks.UserID)}
			}
			if err := checkNewDeviceName(res.State, req.Cert.Name); err != nil {
				return err
			}
			a.info("New device:   %q (%s)\nFingerprint:  %s\n", req.Cert.Name, req.Cert.ID, fp)
			switch {
			case fingerprint != "":
				if normDigits(fingerprint) != normDigits(fp) {
					return verificationErr("the fingerprint you entered does not match the pairing code", "do not approve: the code may have been altered in transit; request again", nil)
				}
			default:
				ok, err := a.confirmOr("Does the new device show exactly this fingerprint?", yes, "pass --fingerprint DIGITS (the fingerprint the new device shows) or --yes to approve without a terminal")
				if err != nil {
					return err
				}
				if !ok {
					return failf("nothing was published", nil, "not approved")
				}
			}
			now := a.nowAfter(res.State)
			next, err := devices.ApprovePairing(res.State, ask, req, fp, trusted, now)
			if err != nil {
				return &Error{Code: ExitError, Kind: KindError, Msg: "cannot approve this request", Err: err}
			}
			if next, err = a.linkAfterPendingReset(res, next, ask); err != nil {
				return err
			}
			res, err = o.publish(ctx, "device approve", next)
			if err != nil {
				return err
			}
			var handover *string
			if trusted {
				code, err := a.handoverCode(ask, res.State, req.Cert.ID)
				if err != nil {
					return err
				}
				handover = &code
			}
			if a.jsonOut {
				return writeJSON(a.out, changeOutput{UserID: ks.UserID, Version: res.Version, Epoch: res.Epoch.Epoch, LogIndex: res.LogIndex, DeviceID: req.Cert.ID.String(), DeviceName: req.Cert.Name, Fingerprint: &fp, Trusted: trusted, SigningKeyHandover: handover})
			}
			fmt.Fprintf(a.out, "Approved %q (%s): %s is now at version %d.\n", req.Cert.Name, req.Cert.ID, ks.UserID, res.Version)
			if handover != nil {
				fmt.Fprintf(a.out, "On the new device run:\n\n  keyline device finish --signing-key %s\n\n(the code carries the account signing key, encrypted so that only that device can read it).\n", *handover)
			} else {
				fmt.Fprintln(a.out, "Run `keyline device finish` on the new device.")
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask (you compared the fingerprint yourself)")
	cmd.Flags().BoolVar(&trusted, "trusted", false, "also hand the new device the account signing key (it can then approve and revoke devices)")
	cmd.Flags().StringVar(&fingerprint, "fingerprint", "", "the fingerprint shown on the new device (checked instead of asking)")
	return cmd
}

func normDigits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// deviceRow is one device of an account in --json output. The name and
// creation time of a revoked device are null when no verified earlier
// version of the account lists it.
type deviceRow struct {
	ID         string     `json:"device_id"`
	Name       *string    `json:"device_name"`
	Created    *time.Time `json:"created_at"`
	ThisDevice bool       `json:"this_device"`
	Trusted    bool       `json:"trusted"`
	Revoked    bool       `json:"revoked"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Reason     *string    `json:"reason"`
}

func (r deviceRow) name() string {
	if r.Name == nil {
		return "(unknown)"
	}
	return *r.Name
}

func (r deviceRow) created() string {
	if r.Created == nil {
		return "-"
	}
	return fmtTime(*r.Created)
}

func (r deviceRow) status() string {
	if !r.Revoked {
		return "active"
	}
	return "REVOKED " + fmtTime(*r.RevokedAt) + " (" + *r.Reason + ")"
}

func deviceRows(st *devices.AccountState, this devices.DeviceID, names map[devices.DeviceID]*devices.DeviceCert) []deviceRow {
	rows := []deviceRow{}
	for _, d := range st.Devices {
		name := d.Name
		rows = append(rows, deviceRow{ID: d.ID.String(), Name: &name, Created: jsonTime(d.Created), ThisDevice: d.ID == this, Trusted: st.IsTrusted(d.ID)})
	}
	for _, r := range st.Revocations {
		reason := r.Reason.String()
		row := deviceRow{ID: r.Device.String(), ThisDevice: r.Device == this, Revoked: true, RevokedAt: jsonTime(r.Time), Reason: &reason}
		if c := names[r.Device]; c != nil {
			name := c.Name
			row.Name, row.Created = &name, jsonTime(c.Created)
		}
		rows = append(rows, row)
	}
	return rows
}

func (a *app) printDevices(rows []deviceRow) error {
	t := newTable(a.out, "ID", "NAME", "CREATED", "THIS", "TRUSTED", "STATUS")
	for _, r := range rows {
		this, trusted := "", ""
		if r.ThisDevice {
			this = "*"
		}
		if r.Trusted {
			trusted = "yes"
		}
		t.row(r.ID, r.name(), r.created(), this, trusted, r.status())
	}
	return t.flush()
}

func (a *app) deviceListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List your account's devices as the directory serves them (verified)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Read-only: the public device record is enough (no passphrase).
			info, err := a.ownDeviceInfo()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := s.ownState(ctx, info.keystore())
			if err != nil {
				return err
			}
			names := map[devices.DeviceID]*devices.DeviceCert{}
			if len(res.State.Revocations) > 0 {
				s.historyNames(ctx, res, names)
			}
			rows := deviceRows(res.State, info.deviceID(), names)
			if a.jsonOut {
				return writeJSON(a.out, deviceListOutput{UserID: info.UserID, Version: res.Version, Devices: rows})
			}
			fmt.Fprintf(a.out, "%s, version %d (verified)\n", info.UserID, res.Version)
			return a.printDevices(rows)
		},
	}
}

func parseReason(s string) (devices.RevocationReason, error) {
	switch strings.ToLower(s) {
	case "lost":
		return devices.ReasonLost, nil
	case "compromised":
		return devices.ReasonCompromised, nil
	case "retired", "":
		return devices.ReasonRetired, nil
	case "unspecified":
		return devices.ReasonUnspecified, nil
	}
	return 0, usageErr("--reason %q: want lost, compromised, retired or unspecified", s)
}

func (a *app) deviceRevokeCmd() *cobra.Command {
	var yes bool
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "On a trusted device: remove a device from your account",
		Long: `Revoke a device by its id (or a unique prefix of at least 4 hex digits) or its
exact name. The next version of the account no longer lists it and records
the revocation permanently; contacts stop using its keys after their next
lookup.`,
		Args: exactArgs(1, "the device ID or NAME"),
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
			ask, err := needSigningKey(ks, res.State, "revoking a device")
			if err != nil {
				return err
			}
			target, err := findDevice(res.State, args[0])
			if err != nil {
				return err
			}
			if target.ID == ks.Device.ID() {
				return usageErr("%q is this device; revoke it from another trusted device (or with the paper key: `keyline account rotate-key --revoke`)", args[0])
			}
			a.info("Revoke %q (%s, created %s) from %s?\n", target.Name, target.ID, fmtTime(target.Created), ks.UserID)
			ok, err := a.confirmOr("Revoke this device?", yes, "pass --yes to revoke without a terminal")
			if err != nil {
				return err
			}
			if !ok {
				return failf("nothing was published", nil, "not revoked")
			}
			now := a.nowAfter(res.State)
			next, err := devices.RevokeDevices(res.State, ask, []devices.DeviceID{target.ID}, why, now)
			if err != nil {
				return &Error{Code: ExitError, Kind: KindError, Msg: "cannot revoke", Err: err}
			}
			if next, err = a.linkAfterPendingReset(res, next, ask); err != nil {
				return err
			}
			res, err = o.publish(ctx, "device revoke", next)
			if err != nil {
				return err
			}
			if a.jsonOut {
				reason := why.String()
				return writeJSON(a.out, changeOutput{UserID: ks.UserID, Version: res.Version, Epoch: res.Epoch.Epoch, LogIndex: res.LogIndex, DeviceID: target.ID.String(), DeviceName: target.Name, Reason: &reason})
			}
			fmt.Fprintf(a.out, "Revoked %q (%s): %s is now at version %d.\n", target.Name, target.ID, ks.UserID, res.Version)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().StringVar(&reason, "reason", "retired", "lost, compromised, retired or unspecified")
	return cmd
}

// findDevice resolves an id, id prefix or exact name to one current device.
func findDevice(st *devices.AccountState, arg string) (*devices.DeviceCert, error) {
	var byName, byID []*devices.DeviceCert
	low := strings.ToLower(arg)
	isHex := len(low) >= 4
	if _, err := hex.DecodeString(low + strings.Repeat("0", len(low)%2)); err != nil {
		isHex = false
	}
	for _, d := range st.Devices {
		if d.Name == arg {
			byName = append(byName, d)
		}
		if isHex && strings.HasPrefix(d.ID.String(), low) {
			byID = append(byID, d)
		}
	}
	switch {
	case len(byID) == 1:
		return byID[0], nil
	case len(byName) == 1 && len(byID) == 0:
		return byName[0], nil
	case len(byID) > 1 || len(byName) > 1:
		return nil, usageErr("%q matches several devices; use a longer id prefix (see `keyline device list`)", arg)
	}
	for _, r := range st.Revocations {
		if isHex && strings.HasPrefix(r.Device.String(), low) {
			return nil, usageErr("device %s is already revoked", r.Device)
		}
	}
	var names []string
	for _, d := range st.Devices {
		names = append(names, fmt.Sprintf("%s (%s)", d.Name, d.ID.String()[:8]))
	}
	sort.Strings(names)
	return nil, usageErr("no current device %q; devices: %s", arg, strings.Join(names, ", "))
}

// historyNames adds to names the certs of devices listed in earlier
// versions of the account, taken only from states that verify under the
// account's current identity key (names of revoked devices are labels; the
// verified lookup does not carry them).
func (s *session) historyNames(ctx context.Context, res *verifier.LookupResult, names map[devices.DeviceID]*devices.DeviceCert) {
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	h, err := s.conn.History(cctx, res.UserID, 1)
	if err != nil {
		return
	}
	for _, e := range h.Entries {
		up, err := klog.ParseAccountUpdate(e.Leaf)
		if err != nil || up.Index != res.Index || up.Update == klog.UpdateReset {
			continue
		}
		st, err := devices.ParseAccountState(up.Payload)
		if err != nil || st.IdentityKey != res.IdentityKey || devices.VerifyAccountState(st) != nil {
			continue
		}
		for _, d := range st.Devices {
			if names[d.ID] == nil {
				names[d.ID] = d
			}
		}
	}
}

// checkNewDeviceName refuses a name that a current device of the account
// already has: devices are revoked and listed by name.
func checkNewDeviceName(st *devices.AccountState, name string) error {
	for _, d := range st.Devices {
		if d.Name == name {
			return &Error{Code: ExitUsage, Kind: KindUsage, Msg: fmt.Sprintf("account %s already has a device named %q (%s)", st.UserID, name, d.ID), Hint: "device names must be unique in an account: on the new device, request again with another --name"}
		}
	}
	return nil
}

func (a *app) deviceTrustCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "trust ID|NAME",
		Short: "On a trusted device: hand the account signing key to another of your devices",
		Long: `Hand the account signing key to a device of the account (after a rotation,
for example): publishes the next version listing it as trusted and prints a
code, the key encrypted to that device's X25519 key, to pass to
` + "`keyline device finish --signing-key CODE`" + ` on that device.`,
		Args: exactArgs(1, "the device ID or NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			o, err := a.openOwn(ctx)
			if err != nil {
				return err
			}
			defer o.close()
			ks, res := o.ks, o.res
			ask, err := needSigningKey(ks, res.State, "trusting a device")
			if err != nil {
				return err
			}
			target, err := findDevice(res.State, args[0])
			if err != nil {
				return err
			}
			ok, err := a.confirmOr(fmt.Sprintf("Hand the account signing key to %q (%s)? It can then approve and revoke devices.", target.Name, target.ID), yes, "pass --yes to trust the device without a terminal")
			if err != nil {
				return err
			}
			if !ok {
				return failf("nothing was published", nil, "not trusted")
			}
			next, err := devices.TrustDevice(res.State, ask, target.ID, a.nowAfter(res.State))
			if err != nil {
				return &Error{Code: ExitError, Kind: KindError, Msg: "cannot trust this device", Err: err}
			}
			if next, err = a.linkAfterPendingReset(res, next, ask); err != nil {
				return err
			}
			res, err = o.publish(ctx, "device trust", next)
			if err != nil {
				return err
			}
			code, err := a.handoverCode(ask, res.State, target.ID)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSON(a.out, changeOutput{UserID: ks.UserID, Version: res.Version, Epoch: res.Epoch.Epoch, LogIndex: res.LogIndex, DeviceID: target.ID.String(), DeviceName: target.Name, Trusted: true, SigningKeyHandover: &code})
			}
			fmt.Fprintf(a.out, "%q is now listed as trusted (version %d). On it run:\n\n  keyline device finish --signing-key %s\n", target.Name, res.Version, code)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
