package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/verifier"
)

// session is a connection to the directory with the client's trust
// configuration and verified state.
type session struct {
	a      *app
	trust  *verifier.Trust
	conn   dirConn
	client *verifier.Client
}

func (a *app) statePath() string { return filepath.Join(a.dataDir, clientStateFile) }

// loadTrust reads the trust file and applies --witness-quorum.
func (a *app) loadTrust() (*verifier.Trust, error) {
	if _, err := os.Stat(a.trustPath); errors.Is(err, os.ErrNotExist) {
		return nil, failf(fmt.Sprintf("copy trust.json from the directory's data dir (`keyline serve` prints its path) to %s, or pass --trust FILE", a.trustPath), nil, "no trust file at %s", a.trustPath)
	}
	t, err := verifier.LoadTrust(a.trustPath)
	if err != nil {
		return nil, failf("get a fresh trust.json from the directory operator", err, "cannot use the trust file")
	}
	if a.witnessQuorum >= 0 {
		if a.witnessQuorum > len(t.Witnesses) {
			return nil, usageErr("--witness-quorum %d: the trust file lists only %d witnesses", a.witnessQuorum, len(t.Witnesses))
		}
		t.Quorum = a.witnessQuorum
	}
	return t, nil
}

// openSession loads the trust file and connects to the directory.
func (a *app) openSession(ctx context.Context) (*session, error) {
	t, err := a.loadTrust()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(a.dataDir, 0o700); err != nil {
		return nil, failf("check --data-dir", err, "cannot create the data dir")
	}
	if err := a.checkClientState(t); err != nil {
		return nil, err
	}
	conn, err := a.dial(ctx)
	if err != nil {
		return nil, remoteErr("connect", a.server, err)
	}
	c := verifier.NewClient(t, a.statePath(), conn)
	c.Now = a.now
	return &session{a: a, trust: t, conn: conn, client: c}, nil
}

func (s *session) close() {
	if s != nil && s.conn != nil {
		s.conn.Close()
	}
}

func (s *session) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.a.timeout)
}

// lookup is a fully verified lookup of userID that advances the client
// state. Its errors are classified (network, rejected, verification).
func (s *session) lookup(ctx context.Context, userID string) (*verifier.LookupResult, error) {
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.client.Lookup(cctx, userID)
	if err != nil {
		return nil, s.classify("lookup "+userID, err)
	}
	return res, nil
}

// classify maps an error of the verifier client to a CLI error.
func (s *session) classify(what string, err error) error {
	var sn *verifier.SafetyNumberChangedError
	switch {
	case errors.As(err, &sn):
		how := "an update"
		if sn.Reset {
			how = "a DIRECTORY RESET"
		}
		return verificationErr(fmt.Sprintf("SAFETY NUMBER CHANGED for %s (via %s): the identity key you verified is %x…, the directory now serves %x…", sn.UserID, how, sn.Old[:8], sn.New[:8]),
			fmt.Sprintf("do not trust %s's keys until you have compared safety numbers again in person (`keyline safety-number %s`, then `keyline verify %s DIGITS`)", sn.UserID, sn.UserID, sn.UserID), nil)
	case errors.Is(err, verifier.ErrUserID):
		return &Error{Code: ExitUsage, Kind: KindUsage, Msg: what, Err: err, Hint: "user ids are 1-64 characters of a-z 0-9 . _ @ + -"}
	case errors.Is(err, verifier.ErrState):
		return failf(s.a.stateRecoveryHint(), err, "%s: the client state %s cannot be used", what, s.a.statePath())
	case isOutOfRange(err):
		// The client sends the size of the last checkpoint it verified;
		// the directory answers OutOfRange when its published log is
		// smaller, i.e. it cannot prove its log extends what this client
		// already verified.
		return verificationErr(what+": the directory's log is smaller than the checkpoint you verified before: rollback or fork",
			fmt.Sprintf("do not trust this directory's answers; keep this output and %s (it holds the checkpoint you verified) and report it", s.a.statePath()), err)
	}
	return remoteErr(what, s.a.server, err)
}

// verifyPublished checks, with a verified lookup, that the directory now
// serves exactly state. It records the entry as the owner's own (for the
// monitor) and pins the own identity key as verified.
func (s *session) verifyPublished(ctx context.Context, state *devices.AccountState) (*verifier.LookupResult, error) {
	want, err := state.Hash()
	if err != nil {
		return nil, failf("", err, "hashing the account state")
	}
	res, err := s.lookup(ctx, state.UserID)
	if err != nil {
		return nil, err
	}
	if !res.Found || res.State == nil || res.Reset != nil || res.ResetPending != nil {
		return nil, verificationErr(fmt.Sprintf("the directory does not serve %s v%d (yet)", state.UserID, state.Version), "", nil)
	}
	if got, _ := res.State.Hash(); got != want {
		return nil, verificationErr(fmt.Sprintf("the directory serves %s v%d, not the state we published (v%d)", state.UserID, res.Version, state.Version), "another device may have updated the account at the same time", nil)
	}
	if err := s.client.SetOwn(verifier.OwnAccount{UserID: state.UserID, Version: res.Version, EntryHash: res.EntryHash, StateHash: want}); err != nil {
		return nil, failf("", err, "saving the client state")
	}
	if err := s.client.Pin(state.UserID, state.IdentityKey, true); err != nil {
		return nil, failf("", err, "saving the client state")
	}
	return res, nil
}

// ownState returns the verified current state of the keystore's account,
// checking it is under the keystore's identity key, not older than the
// state the keystore knows, and valid by every signature
// (devices.VerifyAccountState).
func (s *session) ownState(ctx context.Context, ks *devices.Keystore) (*verifier.LookupResult, error) {
	res, err := s.lookup(ctx, ks.UserID)
	if err != nil {
		return nil, err
	}
	if !res.Found {
		return nil, verificationErr(fmt.Sprintf("the directory proves your account %s absent", ks.UserID), "if you just created it, wait and retry; otherwise the directory is hiding it — keep this output", nil)
	}
	ikPub := res.IdentityKey
	if ks.State != nil {
		ikPub = ks.State.IdentityKey
	}
	if res.IdentityKey != ikPub {
		if res.Reset != nil {
			return nil, verificationErr(fmt.Sprintf("your account %s was RESET by the directory (%s at %s): it now has another identity key", ks.UserID, res.Reset.Reason, fmtTime(res.Reset.Time)), "if you did not ask for this, your account was taken over; warn your contacts", nil)
		}
		return nil, verificationErr(fmt.Sprintf("the directory serves another identity key for your account %s", ks.UserID), "keep this output; your account may have been tampered with", nil)
	}
	if res.ResetPending != nil {
		for _, w := range res.Warnings {
			s.a.info("WARNING: %s\n", w)
		}
		s.a.info("To cancel the reset (if you did not ask for it), run `%s` on a trusted device before %s.\n", verifier.CancelResetCommand, fmtTime(res.ResetPending.EffectiveAt))
	}
	if ks.State != nil && res.Version < ks.State.Version {
		return nil, verificationErr(fmt.Sprintf("the directory serves %s v%d, older than v%d which this device published", ks.UserID, res.Version, ks.State.Version), "the directory rolled your account back; keep this output", nil)
	}
	// The lookup checked the state by a lookup client's rule, which does
	// not verify the device certs' account signing key signatures (the
	// state's signature covers them; docs/protocol.md §7.1.7). The owner's
	// device flows build on this state, so they check every signature, as
	// the directory and auditors do. During a pending reset res.State is
	// the unsigned previous state, whose certs the lookup verified in full
	// (devices.VerifyResetEntry).
	if res.State != nil && res.ResetPending == nil {
		if err := devices.VerifyAccountState(res.State); err != nil {
			return nil, verificationErr(fmt.Sprintf("the directory serves your account %s v%d, which does not verify", ks.UserID, res.Version), "the directory and auditors refuse such a state; keep this output and report it", err)
		}
	}
	return res, nil
}
