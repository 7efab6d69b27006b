package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// lookupOutput is `lookup --json`. Fields about the account are null when
// the account is proven absent.
type lookupOutput struct {
	UserID          string      `json:"user_id"`
	Found           bool        `json:"found"`
	Verified        bool        `json:"verified"`
	Version         *uint64     `json:"version"`
	IdentityKey     *string     `json:"identity_key"`
	Pin             *string     `json:"pin"`
	Reset           bool        `json:"reset"`
	ResetPending    *resetInfo  `json:"reset_pending"`
	Generation      *uint32     `json:"signing_key_generation"`
	Devices         []deviceRow `json:"devices"`
	LogIndex        *uint64     `json:"log_index"`
	CheckpointSize  uint64      `json:"checkpoint_size"`
	Epoch           uint64      `json:"epoch"`
	EpochTime       *time.Time  `json:"epoch_time"`
	EpochAgeSeconds int64       `json:"epoch_age_seconds"`
	Cosigners       []string    `json:"cosigners"`
	WitnessQuorum   int         `json:"witness_quorum"`
	Checks          []checkRow  `json:"checks"`
	Warnings        []string    `json:"warnings"`
}

// resetInfo describes a pending directory reset (lookup --json).
type resetInfo struct {
	Since       time.Time `json:"since"`        // when it was logged
	EffectiveAt time.Time `json:"effective_at"` // when it takes effect unless cancelled
	Reason      string    `json:"reason"`
}

// checkRow is one verification step of a lookup: every step listed
// passed (a failed step fails the lookup instead).
type checkRow struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (a *app) lookupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lookup USER",
		Short: "Look up USER's identity key and devices, verifying every proof",
		Long: `Fetch USER's account with its proofs and verify all of them: the checkpoint
signature and witness cosignatures, consistency with the last checkpoint this
client verified, the epoch record's inclusion and freshness, the VRF proof,
the map proof and the entry its value binds, the account's signatures,
revocations, and the pinned identity key. (That the log holds the entry the
map points to is checked by auditors, who recompute every map root.)
Any failure exits with code 3 and nothing is shown as verified.`,
		Args: exactArgs(1, "USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, err := normUser(args[0])
			if err != nil {
				return err
			}
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
			out := a.lookupOutput(s, res)
			if a.jsonOut {
				if err := writeJSON(a.out, out); err != nil {
					return err
				}
			} else {
				a.printLookup(out)
			}
			if !res.Found {
				return &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("no account %s (absence proven under checkpoint size %d)", uid, res.Checkpoint.Size)}
			}
			return nil
		},
	}
}

func (a *app) lookupOutput(s *session, res *verifier.LookupResult) lookupOutput {
	cp := res.Checkpoint
	et := epochTime(res.Epoch)
	out := lookupOutput{
		UserID: res.UserID, Found: res.Found, Verified: true,
		CheckpointSize: cp.Size, Epoch: res.Epoch.Epoch,
		EpochTime: jsonTime(et), EpochAgeSeconds: int64(a.now().Sub(et).Seconds()),
		Cosigners: append([]string{}, cp.Cosigners...), WitnessQuorum: s.trust.Quorum,
		Warnings: append([]string{}, res.Warnings...), Devices: []deviceRow{},
	}
	check := func(name, format string, args ...any) {
		out.Checks = append(out.Checks, checkRow{Name: name, OK: true, Detail: fmt.Sprintf(format, args...)})
	}
	if res.Held {
		check("checkpoint", "signed by %s, tree size %d (held from this client's last lookup; not sent again)", s.trust.Origin, cp.Size)
	} else {
		check("checkpoint", "signed by %s, tree size %d", s.trust.Origin, cp.Size)
	}
	if s.trust.Quorum > 0 || len(cp.Cosigners) > 0 {
		check("witnesses", "%d of %d required cosigned: %s", len(cp.Cosigners), s.trust.Quorum, strings.Join(cp.Cosigners, ", "))
	} else {
		check("witnesses", "none required by the trust file (no cosignatures)")
	}
	check("consistency", "consistent with the last checkpoint this client verified")
	check("epoch_record", "epoch %d record is the checkpoint's last leaf (map root %x…)", res.Epoch.Epoch, res.Epoch.MapRoot[:8])
	check("freshness", "epoch %d at %s (%s old, limit %s)", res.Epoch.Epoch, fmtTime(et), age(a.now(), et), s.trust.MaxAge)
	check("vrf_proof", "valid for %s", res.UserID)
	if !res.Found {
		check("map_proof", "proves the account ABSENT")
		return out
	}
	check("map_proof", "value binds log entry %d (version %d) and its hash; auditors check the map against the log", res.LogIndex, res.Version)
	certs := "device certs"
	if len(res.State.Devices) == 1 {
		certs = "device cert"
	}
	check("signatures", "signing key generation %d certified by the root key; account state signed by it, covering its %d %s (protocol §7.1.7); devices back-signed", res.Generation, len(res.State.Devices), certs)
	check("revocations", "%d revoked devices, none served", len(res.State.Revocations))
	check("identity_key", "%s", pinLine(res))
	v, li, ik, pin := res.Version, res.LogIndex, hex.EncodeToString(res.IdentityKey[:]), pinName(res.Pin)
	out.Version, out.LogIndex, out.IdentityKey, out.Pin = &v, &li, &ik, &pin
	out.Reset = res.Reset != nil
	g := res.Generation
	out.Generation = &g
	if r := res.ResetPending; r != nil {
		out.ResetPending = &resetInfo{Since: r.Time.UTC(), EffectiveAt: r.EffectiveAt.UTC(), Reason: r.Reason.String()}
	}
	out.Devices = deviceRows(res.State, devices.DeviceID{}, nil)
	return out
}

// pinName is the --json name of a pin status.
func pinName(p verifier.PinStatus) string {
	switch p {
	case verifier.PinNew:
		return "new"
	case verifier.PinMatch:
		return "match"
	case verifier.PinMatchVerified:
		return "match_verified"
	case verifier.PinChanged:
		return "changed"
	}
	return "none"
}

func pinLine(res *verifier.LookupResult) string {
	switch res.Pin {
	case verifier.PinMatchVerified:
		return "matches the key you verified (safety number unchanged)"
	case verifier.PinMatch:
		return "matches the key seen before (not verified: compare safety numbers)"
	case verifier.PinNew:
		return "first seen now, pinned unverified (compare safety numbers)"
	case verifier.PinChanged:
		return "CHANGED since last seen (it was never verified) — compare safety numbers"
	}
	return res.Pin.String()
}

func (a *app) printLookup(out lookupOutput) {
	w := a.out
	for _, warn := range out.Warnings {
		fmt.Fprintf(a.errw, "WARNING: %s\n", warn)
	}
	if out.Found {
		fmt.Fprintf(w, "%s  version %d  identity key %s\n", out.UserID, *out.Version, (*out.IdentityKey)[:16]+"…")
		if out.Reset {
			fmt.Fprintln(w, "!!! the latest entry is a DIRECTORY RESET: the identity key was replaced by the directory, not by the user !!!")
		}
		if r := out.ResetPending; r != nil {
			fmt.Fprintf(w, "!!! RESET PENDING since %s (%s): the directory will replace these keys at %s unless the owner cancels it; until then they and the safety number are unchanged !!!\n", fmtTime(r.Since), r.Reason, fmtTime(r.EffectiveAt))
		}
		t := newTable(w, "DEVICE", "NAME", "CREATED", "STATUS")
		for _, d := range out.Devices {
			t.row(d.ID, d.name(), d.created(), d.status())
		}
		t.flush()
	} else {
		fmt.Fprintf(w, "%s: no such account\n", out.UserID)
	}
	fmt.Fprintln(w, "verified:")
	for _, c := range out.Checks {
		label := strings.ReplaceAll(c.Name, "_", " ")
		if c.Name == "vrf_proof" {
			label = "VRF proof"
		}
		fmt.Fprintf(w, "  ok  %-15s %s\n", label, c.Detail)
	}
}

// ownIdentity returns the user id and identity key of this client's own
// account, from the client state (no passphrase needed) or the keystore.
func (a *app) ownIdentity(s *session) (string, [32]byte, error) {
	st, err := s.client.State()
	if err != nil {
		return "", [32]byte{}, s.classify("reading the client state", err)
	}
	if st.Own != nil {
		if c := st.Contacts[st.Own.UserID]; c != nil {
			return st.Own.UserID, c.IK, nil
		}
	}
	ks, _, err := a.loadKeystore()
	if err != nil {
		return "", [32]byte{}, err
	}
	if ks.State == nil {
		return "", [32]byte{}, failf("finish joining your account first: `keyline device finish`", nil, "this device is not part of an account yet")
	}
	return ks.UserID, ks.State.IdentityKey, nil
}

// safetyOutput is `safety-number --json`: user_id is the contact.
type safetyOutput struct {
	UserID       string `json:"user_id"`
	OwnUserID    string `json:"own_user_id"`
	SafetyNumber string `json:"safety_number"`
	QR           string `json:"qr_payload"`
	Verified     bool   `json:"verified"`
	Pin          string `json:"pin"`
	Changed      bool   `json:"changed"`
}

// safetyNumber looks up peer (verified) and computes the safety number.
func (a *app) safetyNumber(ctx context.Context, s *session, peer string) (*devices.SafetyNumber, *verifier.LookupResult, string, error) {
	sn, res, me, _, err := a.safetyNumberChanged(ctx, s, peer)
	return sn, res, me, err
}

// safetyNumberChanged is safetyNumber that also reports whether the peer's
// verified identity key changed (the number shown is then the new one).
func (a *app) safetyNumberChanged(ctx context.Context, s *session, peer string) (*devices.SafetyNumber, *verifier.LookupResult, string, bool, error) {
	me, myIK, err := a.ownIdentity(s)
	if err != nil {
		return nil, nil, "", false, err
	}
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.client.Lookup(cctx, peer)
	var changed *verifier.SafetyNumberChangedError
	if errors.As(err, &changed) {
		// Show the new number (loudly) so that the users can compare
		// again: it is computed from the key the directory serves now.
		// If the change is unexplained (no reset entry), the number is
		// what a key substitution would show; only the comparison in
		// person tells.
		a.info("WARNING: %s\n", asError(s.classify("lookup "+peer, err)).Msg)
		if changed.Unexplained {
			a.info("WARNING: no directory reset explains this change: if %s's own device shows other digits than the ones below, the directory is serving a FORGED key (keep this output and run `keyline audit`).\n", peer)
		}
		a.info("WARNING: the safety number below is NEW; compare it again before trusting %s.\n", peer)
		if changed.Result != nil {
			res = changed.Result
		} else {
			res = &verifier.LookupResult{UserID: changed.UserID, Found: true, IdentityKey: changed.New}
		}
		err = nil
		res.Pin = verifier.PinChanged
	}
	if err != nil {
		return nil, nil, "", false, s.classify("lookup "+peer, err)
	}
	if !res.Found {
		return nil, nil, "", false, &Error{Code: ExitRejected, Kind: KindRejected, Msg: fmt.Sprintf("no account %s (absence proven)", peer)}
	}
	sn, err := devices.NewSafetyNumber(me, myIK, res.UserID, res.IdentityKey)
	if err != nil {
		return nil, nil, "", false, failf("", err, "computing the safety number")
	}
	return sn, res, me, changed != nil, nil
}

func groupedDigits(sn *devices.SafetyNumber) []string {
	g := strings.Fields(sn.String())
	var lines []string
	for i := 0; i < len(g); i += 4 {
		end := i + 4
		if end > len(g) {
			end = len(g)
		}
		lines = append(lines, strings.Join(g[i:end], "  "))
	}
	return lines
}

func (a *app) safetyNumberCmd() *cobra.Command {
	var noQR bool
	cmd := &cobra.Command{
		Use:   "safety-number USER",
		Short: "Show the safety number between you and USER (60 digits and a QR code)",
		Long: `Show the 60-digit safety number for you and USER. Both of you see the same
digits; compare them in person or over a trusted channel (or scan the QR
code with ` + "`keyline verify USER --scan PAYLOAD`" + `). If they match, run
` + "`keyline verify USER DIGITS`" + ` to pin USER's identity key as verified.`,
		Args: exactArgs(1, "USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, err := normUser(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			sn, res, me, changed, err := a.safetyNumberChanged(ctx, s, uid)
			if err != nil {
				return err
			}
			out := safetyOutput{UserID: uid, OwnUserID: me, SafetyNumber: sn.String(), QR: sn.QR(), Verified: res.Pin == verifier.PinMatchVerified, Pin: pinName(res.Pin), Changed: changed}
			changedErr := func() error {
				if !changed {
					return nil
				}
				return verificationErr(fmt.Sprintf("SAFETY NUMBER CHANGED for %s: the number above is NEW", uid), fmt.Sprintf("compare it with %s again; only if it matches run `keyline verify %s DIGITS`", uid, uid), nil)
			}
			if a.jsonOut {
				if err := writeJSON(a.out, out); err != nil {
					return err
				}
				return changedErr()
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(a.errw, "WARNING: %s\n", w)
			}
			fmt.Fprintf(a.out, "Safety number for %s and %s:\n\n", me, uid)
			for _, l := range groupedDigits(sn) {
				fmt.Fprintf(a.out, "    %s\n", l)
			}
			fmt.Fprintln(a.out)
			if !noQR {
				if err := printQR(a.out, sn.QR(), a.qrInvert); err != nil {
					return failf("", err, "drawing the QR code")
				}
				fmt.Fprintf(a.out, "\nQR payload: %s\n", sn.QR())
			}
			switch {
			case changed:
				fmt.Fprintf(a.out, "!!! This is a NEW safety number: %s's identity key changed since you verified it.\n", uid)
			case out.Verified:
				fmt.Fprintf(a.out, "You verified %s's key before; it is unchanged.\n", uid)
			default:
				fmt.Fprintf(a.out, "Not verified yet. If %s sees the same digits, run: keyline verify %s DIGITS\n", uid, uid)
			}
			return changedErr()
		},
	}
	cmd.Flags().BoolVar(&noQR, "no-qr", false, "do not draw the QR code")
	return cmd
}

func (a *app) verifyCmd() *cobra.Command {
	var scan string
	cmd := &cobra.Command{
		Use:   "verify USER [DIGITS...]",
		Short: "Compare USER's safety number and pin USER's identity key as verified",
		Long: `Compare the safety number USER read to you (60 digits, spaces ignored) or the
payload of USER's QR code (--scan) with the one computed from the verified
lookup. If they match, USER's identity key is pinned as verified: any later
change is reported as SAFETY NUMBER CHANGED (exit code 3). If they differ,
nothing is pinned and the command fails with exit code 3.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageErr("%s needs USER and the DIGITS (or --scan PAYLOAD)", cmd.CommandPath())
			}
			if (len(args) > 1) == (scan != "") {
				return usageErr("%s needs either the DIGITS or --scan PAYLOAD", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, err := normUser(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openSession(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			sn, res, _, err := a.safetyNumber(ctx, s, uid)
			if err != nil {
				return err
			}
			if scan != "" {
				if err := sn.VerifyQR(strings.TrimSpace(scan)); err != nil {
					return verificationErr(fmt.Sprintf("the scanned code does NOT match the safety number for %s", uid), "do not trust this contact's keys; the directory or the code may be forged", err)
				}
			} else {
				got := normDigits(strings.Join(args[1:], ""))
				if len(got) != 60 {
					return usageErr("a safety number has 60 digits, got %d", len(got))
				}
				if got != sn.Digits() {
					return verificationErr(fmt.Sprintf("the digits do NOT match the safety number for %s", uid), "do not trust this contact's keys; compare again in person", nil)
				}
			}
			if err := s.client.Pin(uid, res.IdentityKey, true); err != nil {
				return failf("", err, "saving the pin")
			}
			if a.jsonOut {
				return writeJSON(a.out, verifyOutput{UserID: uid, Verified: true, IdentityKey: hex.EncodeToString(res.IdentityKey[:])})
			}
			fmt.Fprintf(a.out, "Verified: %s's identity key is pinned. Any change will be reported as SAFETY NUMBER CHANGED.\n", uid)
			return nil
		},
	}
	cmd.Flags().StringVar(&scan, "scan", "", "payload scanned from the other party's QR code (keyline-safety:...)")
	return cmd
}

type verifyOutput struct {
	UserID      string `json:"user_id"`
	Verified    bool   `json:"verified"`
	IdentityKey string `json:"identity_key"`
}

func epochTime(er klog.EpochRecord) time.Time { return time.Unix(int64(er.Timestamp), 0).UTC() }
