package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/internal/atomicfile"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// Files in the client data dir that the CLI itself keeps (next to the
// keystore and the client state).
const (
	lockFile        = "keyline.lock"    // flock(2) held by every command that writes the data dir
	pendingFile     = "pending.json"    // an own-account update being published (pendingOp)
	keystoreSumFile = "keystore.sha256" // SHA-256 of the keystore as last saved (damage vs wrong passphrase)
)

func (a *app) pendingPath() string { return filepath.Join(a.dataDir, pendingFile) }

// lockDataDir takes the client folder's lock: one command at a time may
// write the keystore, the pending record or the pins of a data dir. It
// fails at once, naming the folder, if another command holds it.
func (a *app) lockDataDir() (unlock func(), err error) {
	if err := os.MkdirAll(a.dataDir, 0o700); err != nil {
		return nil, failf("check --data-dir", err, "cannot create the data dir")
	}
	path := filepath.Join(a.dataDir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, failf("check the permissions of --data-dir", err, "cannot open the lock file")
	}
	busy, err := flockTry(f)
	if err != nil {
		f.Close()
		return nil, failf("", err, "cannot lock %s", path)
	}
	if busy {
		holder, _ := os.ReadFile(path)
		f.Close()
		who := strings.TrimSpace(string(holder))
		if who != "" {
			who = " (" + who + ")"
		}
		return nil, failf("wait for it to finish and run this command again; each device needs its own --data-dir", nil, "another keyline command is using the client folder %s%s", a.dataDir, who)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d since %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	return func() {
		f.Truncate(0)
		flockRelease(f)
		f.Close()
	}, nil
}

// pendingOp records an update of the own account between "about to submit"
// and "verified as published". It is written (fsynced) before the update is
// sent, after any new keys are in the keystore, and removed once a verified
// lookup shows the update; a command that finds it reconciles it with the
// directory (reconcilePending). It holds no secret.
type pendingOp struct {
	Format     int       `json:"format"`
	Op         string    `json:"op"` // the command, e.g. "account create"
	UserID     string    `json:"user_id"`
	Version    uint64    `json:"version"`
	StateHash  string    `json:"state_hash"`  // hex devices.AccountState.Hash of State
	State      string    `json:"state"`       // base64 canonical encoding of the signed AccountState
	NewAccount bool      `json:"new_account"` // this op created the keystore (account create, recover)
	StartedAt  time.Time `json:"started_at"`
}

const pendingFormat = 1

func (p *pendingOp) state() (*devices.AccountState, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(p.State)
	if err != nil {
		return nil, err
	}
	return devices.ParseAccountState(b)
}

// readPending returns the pending record, or nil if there is none.
func (a *app) readPending() (*pendingOp, error) {
	b, err := os.ReadFile(a.pendingPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, failf("check the permissions of --data-dir", err, "cannot read %s", a.pendingPath())
	}
	p, err := parsePending(b)
	if err != nil {
		return nil, failf("it records an unfinished update of your account; check it with `keyline device list` and remove it if the update is there", err, "cannot read the pending-update record %s", a.pendingPath())
	}
	return p, nil
}

// parsePending decodes a pending-update record strictly: one JSON object
// with exactly the fields of pendingOp, format 1, and a state that parses
// as an AccountState of the record's user and version.
func parsePending(b []byte) (*pendingOp, error) {
	var p pendingOp
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the record")
	}
	if p.Format != pendingFormat {
		return nil, fmt.Errorf("format %d, want %d", p.Format, pendingFormat)
	}
	st, err := p.state()
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	h, err := st.Hash()
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if st.UserID != p.UserID || st.Version != p.Version || hex.EncodeToString(h[:]) != p.StateHash {
		return nil, errors.New("the state does not match the record's user, version or hash")
	}
	return &p, nil
}

func (a *app) writePending(p *pendingOp) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(a.pendingPath(), append(b, '\n'), 0o600); err != nil {
		return failf("check the permissions and free space of --data-dir; nothing was published", err, "cannot write the pending-update record")
	}
	return nil
}

func (a *app) removePending() error {
	if err := os.Remove(a.pendingPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return failf("remove it by hand; the update is published", err, "cannot remove %s", a.pendingPath())
	}
	return atomicfile.SyncDir(a.dataDir)
}

// ownAccount is the own account opened for a change: the client folder
// locked, the keystore decrypted, a session to the directory, any pending
// update reconciled, and the verified current state.
type ownAccount struct {
	a      *app
	ks     *devices.Keystore
	pass   []byte
	s      *session
	res    *verifier.LookupResult // verified current state of the account
	unlock func()
}

func (o *ownAccount) close() {
	if o == nil {
		return
	}
	o.s.close()
	if o.unlock != nil {
		o.unlock()
	}
}

// openOwn opens the own account for a command that changes it (what names
// the change, for errors). It locks the client folder, opens the keystore,
// connects, finishes or clears an update left pending by an interrupted
// command (saying so on stderr), and looks up the account, verified.
func (a *app) openOwn(ctx context.Context) (*ownAccount, error) {
	unlock, err := a.lockDataDir()
	if err != nil {
		return nil, err
	}
	o := &ownAccount{a: a, unlock: unlock}
	ok := false
	defer func() {
		if !ok {
			o.close()
		}
	}()
	if o.ks, o.pass, err = a.loadKeystore(); err != nil {
		return nil, err
	}
	if o.s, err = a.openSession(ctx); err != nil {
		return nil, err
	}
	if _, err := a.reconcilePending(ctx, o.s, o.ks, o.pass); err != nil {
		return nil, err
	}
	if o.ks.State == nil {
		return nil, failf("finish joining your account first: `keyline device finish`", nil, "this device is not part of an account yet")
	}
	if o.res, err = o.s.ownState(ctx, o.ks); err != nil {
		return nil, err
	}
	ok = true
	return o, nil
}

// keysMode says what publishPending writes to the keystore before it
// sends an update.
type keysMode int

const (
	// keysUnchanged: the keystore's keys are not changed by the update
	// (device approve, revoke); it gets the new state once verified.
	keysUnchanged keysMode = iota
	// keysChanged: the command made new keys for an existing account
	// (e.g. a key rotation); the keystore holding them is saved before
	// the update is sent, so that a published update never lacks its
	// keys.
	keysChanged
	// keysNewAccount: the command creates the keystore (account create,
	// recover). It is saved before the update is sent; if the update is
	// certainly not published, it is moved aside so that the folder can
	// be used again.
	keysNewAccount
)

// publish publishes next, the account's next state (op names the command,
// e.g. "device approve"), with the pending protocol of publishPending.
func (o *ownAccount) publish(ctx context.Context, op string, next *devices.AccountState) (*verifier.LookupResult, error) {
	return o.a.publishPending(ctx, o.s, o.ks, o.pass, op, next, keysUnchanged)
}

// publishWithNewKeys is publish for an update that goes with new keys in
// o.ks (already set by the caller): the keystore is saved first.
func (o *ownAccount) publishWithNewKeys(ctx context.Context, op string, next *devices.AccountState) (*verifier.LookupResult, error) {
	return o.a.publishPending(ctx, o.s, o.ks, o.pass, op, next, keysChanged)
}

// publishPending publishes next so that no key and no update is ever lost:
// the pending record is written (fsynced) first, then the keystore if the
// command changed its keys (mode), then the update is sent; after a
// verified lookup shows it, the keystore gets the state and the record is
// removed. Every failure says whether the update was published and how to
// finish (`keyline account sync`, reconcilePending).
func (a *app) publishPending(ctx context.Context, s *session, ks *devices.Keystore, pass []byte, op string, next *devices.AccountState, mode keysMode) (*verifier.LookupResult, error) {
	enc, err := next.MarshalBinary()
	if err != nil {
		return nil, failf("", err, "encoding the account state")
	}
	h, err := next.Hash()
	if err != nil {
		return nil, failf("", err, "hashing the account state")
	}
	p := &pendingOp{Format: pendingFormat, Op: op, UserID: next.UserID, Version: next.Version, StateHash: hex.EncodeToString(h[:]), State: base64.StdEncoding.EncodeToString(enc), NewAccount: mode == keysNewAccount, StartedAt: a.now().UTC().Truncate(time.Second)}
	if err := a.writePending(p); err != nil {
		return nil, err
	}
	if mode != keysUnchanged {
		if err := a.saveKeystore(ks, pass); err != nil {
			a.removePending()
			return nil, fmt.Errorf("%w (nothing was published)", err)
		}
	}
	return a.submitPending(ctx, s, ks, pass, p, next, false)
}

// How long a resent update that the directory refuses is watched for an
// earlier send showing up (resendChecks lookups, resendWait apart).
const (
	resendChecks = 3
	resendWait   = time.Second
)

// submitPending sends the pending update and finishes it (finishPending).
// resend says an earlier send may have reached the directory.
func (a *app) submitPending(ctx context.Context, s *session, ks *devices.Keystore, pass []byte, p *pendingOp, next *devices.AccountState, resend bool) (*verifier.LookupResult, error) {
	what := fmt.Sprintf("%s (%s v%d)", p.Op, p.UserID, p.Version)
	enc, _ := next.MarshalBinary()
	cctx, cancel := s.ctx(ctx)
	pub, err := s.conn.Update(cctx, enc)
	cancel()
	if err != nil {
		rerr := remoteErr("publish "+what, a.server, err)
		if definitelyRejected(err) && resend {
			// An earlier send of this update may be queued in the
			// directory and be what it refuses this one for: wait for
			// it to show before giving up.
			for i := 0; i < resendChecks; i++ {
				select {
				case <-ctx.Done():
					return nil, remoteErr("publish "+what, a.server, ctx.Err())
				case <-time.After(resendWait):
				}
				if res, ferr := a.finishPending(ctx, s, ks, pass, p, next); ferr == nil {
					return res, nil
				}
			}
		}
		if definitelyRejected(err) {
			// Nothing was published: forget the update.
			a.abandonPending(p)
			e := asError(rerr)
			e.Hint = joinHints(e.Hint, "nothing was published"+a.abandonNote(p))
			return nil, e
		}
		e := asError(rerr)
		e.Msg = fmt.Sprintf("the directory did not confirm %s: it may or may not be published", what)
		e.Hint = fmt.Sprintf("your keys are saved in %s; run `keyline account sync` to find out and finish", a.keystorePath())
		return nil, e
	}
	if pub.Leaf != nil {
		up, err := klog.ParseAccountUpdate(pub.Leaf)
		if err != nil || up.Version != next.Version {
			return nil, verificationErr(fmt.Sprintf("publish %s: the directory acknowledged with a leaf that is not our update", what), fmt.Sprintf("your keys are saved in %s; run `keyline account sync` to check what the directory serves", a.keystorePath()), err)
		}
	}
	res, err := a.finishPending(ctx, s, ks, pass, p, next)
	if err != nil {
		e := asError(err)
		e.Msg = fmt.Sprintf("%s was published at epoch %d (log entry %d) and your keys are saved in %s, but checking it failed: %s", what, pub.Epoch, pub.LogIndex, a.keystorePath(), e.Msg)
		e.Hint = joinHints(e.Hint, "run `keyline account sync` to check it again and finish")
		return nil, e
	}
	return res, nil
}

// finishPending checks, with a verified lookup, that the directory serves
// exactly next; then it stores the state in the keystore, records the own
// account and pin in the client state, and removes the pending record.
func (a *app) finishPending(ctx context.Context, s *session, ks *devices.Keystore, pass []byte, p *pendingOp, next *devices.AccountState) (*verifier.LookupResult, error) {
	res, err := s.verifyPublished(ctx, next)
	if err != nil {
		return nil, err
	}
	ks.State = res.State
	if err := a.saveKeystore(ks, pass); err != nil {
		return nil, err
	}
	if err := a.removePending(); err != nil {
		return nil, err
	}
	return res, nil
}

// abandonPending forgets an update that was not published. A keystore the
// update created (account create, recover) holds keys of no account: it is
// kept, renamed, so that the data dir can be used again.
func (a *app) abandonPending(p *pendingOp) {
	if p.NewAccount {
		if _, err := os.Stat(a.keystorePath()); err == nil {
			os.Rename(a.keystorePath(), a.abandonedKeystorePath(p))
			os.Remove(filepath.Join(a.dataDir, keystoreSumFile))
		}
	}
	a.removePending()
}

func (a *app) abandonedKeystorePath(p *pendingOp) string {
	return a.keystorePath() + ".unpublished-" + strconv.FormatInt(p.StartedAt.Unix(), 10)
}

func (a *app) abandonNote(p *pendingOp) string {
	if !p.NewAccount {
		return ""
	}
	void := ""
	if p.Op == "account create" {
		void = " (the paper key it showed is void)"
	}
	return fmt.Sprintf("; the unused keys were moved to %s%s and you can run `keyline %s %s` again", a.abandonedKeystorePath(p), void, p.Op, p.UserID)
}

func joinHints(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// definitelyRejected reports whether err is the directory's own refusal of
// an update (so it was not published), as opposed to a broken connection,
// a timeout or an interruption after which it may have been.
func definitelyRejected(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted, codes.OutOfRange, codes.NotFound:
		return true
	}
	return false
}

// reconcileOutcome says what reconcilePending found.
type reconcileOutcome int

const (
	reconcileNone        reconcileOutcome = iota // no pending update
	reconcilePublished                           // it is published; the keystore and pins are updated
	reconcileResubmitted                         // it was not visible; it was sent again and is now published
	reconcileAbandoned                           // it was not published and cannot be any more; forgotten
)

func (o reconcileOutcome) String() string {
	return [...]string{"none", "published", "resubmitted", "abandoned"}[o]
}

// reconcilePending finishes or clears an update left pending by an
// interrupted command and says on stderr what happened. ks and pass are
// the opened keystore.
func (a *app) reconcilePending(ctx context.Context, s *session, ks *devices.Keystore, pass []byte) (reconcileOutcome, error) {
	p, err := a.readPending()
	if err != nil || p == nil {
		return reconcileNone, err
	}
	next, err := p.state()
	if err != nil {
		return reconcileNone, err
	}
	if p.UserID != ks.UserID {
		return reconcileNone, failf("remove it after checking `keyline device list`", nil, "the pending-update record %s is for %s, but the keystore holds %s", a.pendingPath(), p.UserID, ks.UserID)
	}
	what := fmt.Sprintf("`keyline %s` (%s v%d, started %s)", p.Op, p.UserID, p.Version, p.StartedAt.UTC().Format(time.RFC3339))
	res, err := s.lookup(ctx, p.UserID)
	if err != nil {
		return reconcileNone, err
	}
	if res.Found && res.State != nil {
		if h, _ := res.State.Hash(); hex.EncodeToString(h[:]) == p.StateHash {
			if _, err := a.finishPending(ctx, s, ks, pass, p, next); err != nil {
				return reconcileNone, err
			}
			a.info("note: the interrupted %s was published (version %d); your keys are saved and verified.\n", what, res.Version)
			return reconcilePublished, nil
		}
		if res.Version >= p.Version {
			a.abandonPending(p)
			a.info("note: the interrupted %s was not published: the account is at version %d with another state%s.\n", what, res.Version, a.abandonNote(p))
			return reconcileAbandoned, nil
		}
	}
	// Not visible yet: send it again (the update is signed; it applies
	// only on top of the version it was built on).
	a.info("note: the interrupted %s is not published yet; sending it again.\n", what)
	if _, err := a.submitPending(ctx, s, ks, pass, p, next, true); err != nil {
		return reconcileNone, err
	}
	a.info("note: %s is now published and verified.\n", what)
	return reconcileResubmitted, nil
}

// keystoreSum is the hex SHA-256 of the keystore file.
func (a *app) keystoreSum() (string, error) {
	f, err := os.Open(a.keystorePath())
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// keystoreDamaged reports whether the keystore no longer matches the
// checksum saved with it (truncated, bit-flipped or replaced). It is false
// when there is no checksum to compare with.
func (a *app) keystoreDamaged() bool {
	want, err := os.ReadFile(filepath.Join(a.dataDir, keystoreSumFile))
	if err != nil {
		return false
	}
	got, err := a.keystoreSum()
	return err == nil && got != strings.TrimSpace(string(want))
}

// deviceInfoFile is the public record of this device (no secret), written
// with every keystore save, so that read-only commands need no passphrase.
const deviceInfoFile = "device.json"

type deviceInfo struct {
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	IdentityKey string `json:"identity_key"` // hex; "" until the device knows its account's state
}

// keystore returns a keystore stand-in with only the public facts, for
// session.ownState.
func (d *deviceInfo) keystore() *devices.Keystore {
	ks := &devices.Keystore{UserID: d.UserID}
	if b, err := hex.DecodeString(d.IdentityKey); err == nil && len(b) == 32 {
		ks.State = &devices.AccountState{UserID: d.UserID}
		copy(ks.State.IdentityKey[:], b)
	}
	return ks
}

func (d *deviceInfo) deviceID() devices.DeviceID {
	var id devices.DeviceID
	if b, err := hex.DecodeString(d.DeviceID); err == nil && len(b) == len(id) {
		copy(id[:], b)
	}
	return id
}

func (a *app) writeDeviceInfo(ks *devices.Keystore) error {
	d := deviceInfo{UserID: ks.UserID, DeviceID: ks.Device.ID().String()}
	if ks.State != nil {
		d.IdentityKey = hex.EncodeToString(ks.State.IdentityKey[:])
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(a.dataDir, deviceInfoFile), append(b, '\n'), 0o600)
}

// ownDeviceInfo returns this device's public record, from device.json, or
// from the keystore (asking for the passphrase) if there is none yet.
func (a *app) ownDeviceInfo() (*deviceInfo, error) {
	b, err := os.ReadFile(filepath.Join(a.dataDir, deviceInfoFile))
	if err == nil {
		var d deviceInfo
		if json.Unmarshal(b, &d) == nil && d.UserID != "" && d.IdentityKey != "" {
			return &d, nil
		}
	}
	ks, pass, err := a.loadKeystore()
	if err != nil {
		return nil, err
	}
	if ks.State == nil {
		return nil, failf("finish joining your account first: `keyline device finish`", nil, "this device is not part of an account yet")
	}
	_ = pass
	a.writeDeviceInfo(ks) // for next time; failing to write it only costs a prompt
	d := &deviceInfo{UserID: ks.UserID, DeviceID: ks.Device.ID().String(), IdentityKey: hex.EncodeToString(ks.State.IdentityKey[:])}
	return d, nil
}
