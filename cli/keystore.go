package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/internal/atomicfile"
	"github.com/keyline/keyline/verifier"
)

// Files in the client data dir.
const (
	keystoreFile    = "keystore"          // devices keystore (argon2id + XChaCha20-Poly1305)
	clientStateFile = "client-state.json" // last verified checkpoint, pinned contacts
)

func (a *app) keystorePath() string { return filepath.Join(a.dataDir, keystoreFile) }

// kdfParams are the argon2id parameters for new keystores. The environment
// variable KEYLINE_INSECURE_TEST_KDF=1 selects tiny parameters for tests;
// it must never be used for real keys.
func (a *app) kdfParams() devices.KDFParams {
	if a.getenv("KEYLINE_INSECURE_TEST_KDF") == "1" {
		return devices.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}
	}
	return devices.DefaultKDFParams
}

// keystoreExists reports whether this data dir already holds a device.
func (a *app) keystoreExists() bool {
	_, err := os.Stat(a.keystorePath())
	return err == nil
}

// ensureNoKeystore refuses to overwrite an existing device.
func (a *app) ensureNoKeystore() error {
	if p, err := a.readPending(); err == nil && p != nil && p.NewAccount && !a.keystoreExists() {
		// Interrupted before the keys were saved: nothing was sent.
		a.info("note: the interrupted `keyline %s %s` stopped before saving keys; nothing was published.\n", p.Op, p.UserID)
		if err := a.removePending(); err != nil {
			return err
		}
	}
	if p, err := a.readPending(); err == nil && p != nil {
		return failf("run `keyline account sync` to find out whether it was published and finish it", nil, "an earlier `keyline %s %s` in this data dir did not finish", p.Op, p.UserID)
	}
	if a.keystoreExists() {
		return failf("use another --data-dir (or $KEYLINE_HOME) for a second device, or move the old keystore away", nil, "this data dir already holds a device keystore (%s)", a.keystorePath())
	}
	return nil
}

// loadKeystore asks for the passphrase and opens the keystore.
func (a *app) loadKeystore() (*devices.Keystore, []byte, error) {
	path := a.keystorePath()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil, failf("create an account (`keyline account create USER`), request to join one (`keyline device request USER`), or pass the right --data-dir", nil, "no keystore in %s", a.dataDir)
	}
	pass, err := a.passphrase(false)
	if err != nil {
		return nil, nil, err
	}
	ks, err := devices.LoadKeystore(path, pass)
	damagedHint := "restore the keystore from a backup, or recover the account with the paper key in a new --data-dir (`keyline account recover USER`)"
	switch {
	case err != nil && a.keystoreDamaged():
		return nil, nil, failf(damagedHint, nil, "the keystore %s is damaged: it does not match the checksum saved with it (%s), so it was truncated or modified after it was written", path, keystoreSumFile)
	case errors.Is(err, devices.ErrWrongPassphrase):
		return nil, nil, failf("check the passphrase ($KEYLINE_PASSPHRASE / --passphrase-file)", nil, "cannot open the keystore %s: wrong passphrase (or the file was modified)", path)
	case err != nil:
		return nil, nil, failf(damagedHint, err, "the keystore %s is damaged or not a keystore", path)
	}
	return ks, pass, nil
}

// saveKeystore writes ks with pass (creating the data dir), then its
// checksum, which tells a damaged keystore from a wrong passphrase.
func (a *app) saveKeystore(ks *devices.Keystore, pass []byte) error {
	if err := os.MkdirAll(a.dataDir, 0o700); err != nil {
		return failf("check --data-dir", err, "cannot create the data dir")
	}
	if err := devices.SaveKeystore(a.keystorePath(), ks, pass, a.kdfParams()); err != nil {
		return failf("check the permissions and free space of --data-dir", err, "cannot save the keystore")
	}
	sum, err := a.keystoreSum()
	if err == nil {
		err = atomicfile.Write(filepath.Join(a.dataDir, keystoreSumFile), []byte(sum+"\n"), 0o600)
	}
	if err == nil {
		err = a.writeDeviceInfo(ks)
	}
	if err != nil {
		return failf("check the permissions and free space of --data-dir", err, "cannot save the keystore checksum and device record")
	}
	return nil
}

// nowAfter is the time for a state that follows prev: now, but never before
// prev's timestamp (the transition rules forbid going back in time).
func (a *app) nowAfter(prev *devices.AccountState) time.Time {
	now := a.now()
	if now.Before(prev.Timestamp) {
		return prev.Timestamp
	}
	return now
}

// needSigningKey returns the account signing key (ASK) the keystore holds
// for st, the account's current state, or an error saying why this device
// cannot do what: it is not trusted, or its key was rotated out (the
// device was cut off).
func needSigningKey(ks *devices.Keystore, st *devices.AccountState, what string) (*devices.AccountSigningKey, error) {
	if ks.Signing == nil {
		return nil, failf("run it on a trusted device (`keyline device list` shows them), or use the paper key: `keyline account rotate-key` makes this device trusted", nil,
			"%s needs the account signing key, which this device does not hold (it is not trusted)", what)
	}
	if g, cur := ks.Signing.Generation(), st.Generation(); g < cur {
		return nil, &Error{Code: ExitRejected, Kind: KindRejected,
			Msg:  fmt.Sprintf("%s: this device's account signing key (generation %d) was rotated out: %s now uses generation %d, and everything generation %d signs is refused", what, g, ks.UserID, cur, g),
			Hint: "this device was cut off from the account; if it is yours, ask a trusted device to hand it the new key (`keyline device trust`), or use the paper key"}
	}
	if ks.Signing.Cert.Key != st.SigningKey.Key {
		return nil, verificationErr(fmt.Sprintf("%s: the account's signing key generation %d is not the one this device holds", what, st.Generation()), "keep this output; the account may have been tampered with", nil)
	}
	return ks.Signing, nil
}

// linkAfterPendingReset makes next, built on res.State, the version that
// follows a pending reset (and so cancels it), if res shows one.
func (a *app) linkAfterPendingReset(res *verifier.LookupResult, next *devices.AccountState, ask *devices.AccountSigningKey) (*devices.AccountState, error) {
	if res.ResetPending == nil {
		return next, nil
	}
	linked, err := devices.LinkAfterReset(next, res.ResetPending, ask)
	if err != nil {
		return nil, &Error{Code: ExitError, Kind: KindError, Msg: "cannot build the version that cancels the pending reset", Err: err}
	}
	a.info("Note: this update cancels the directory reset pending since %s.\n", fmtTime(res.ResetPending.Time))
	return linked, nil
}
