package verifier

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/keyline/keyline/devices"
)

// CheckHistory applies Client.Lookup's history rules to a lookup that
// was verified against st with VerifyLookup (res and verr are its
// results): the identity-key rule (checkIdentityChange), then the signing
// key generation rule (checkGenerations), fetching the account's history
// from src. It is for a verifier that keeps its own state and does its own
// fetching (the browser's, verifier/webverify); Client.Lookup calls it
// too. c is the cache res was verified with (nil: none). Its results
// replace res and verr.
func CheckHistory(ctx context.Context, t *Trust, src Source, c *Cache, st *ClientState, uid string, res *LookupResult, verr error) (*LookupResult, error) {
	return checkHistory(ctx, t, src, c, st, uid, res, verr, nil)
}

// checkHistory is CheckHistory whose history walks share memo, the lookup
// memo res was verified with (Cache.verifyLookupMemo), so that they verify
// none of res.State's signatures again and reuse the public keys it
// decoded; nil: a memo of res.State (lookupMemo).
func checkHistory(ctx context.Context, t *Trust, src Source, c *Cache, st *ClientState, uid string, res *LookupResult, verr error, memo *devices.SignatureMemo) (*LookupResult, error) {
	cl := &Client{Trust: t, Source: src, Cache: c}
	res, verr = cl.checkIdentityChange(ctx, st, uid, res, verr, memo)
	return cl.checkGenerations(ctx, st, uid, res, verr, memo)
}

// checkGenerations applies the signing key generation rule across
// versions. The latest state alone cannot show that its signing key was
// rotated out, so when a lookup serves a version newer than the one last
// verified for the contact with the same root key (for a contact seen for
// the first time: any version after 1), it fetches and verifies the
// account's history from that version (from 1 for a new contact):
// verifyHistory checks every transition by the devices rules, so a state
// signed by a rotated-out signing key fails with ErrStaleSigningKey, and a
// reset applied early or after a cancellation with ErrResetWindow. A
// served version older than the one already verified is refused
// (ErrHistory). res and verr are the lookup's results; they pass through
// when the rule does not apply.
func (c *Client) checkGenerations(ctx context.Context, st *ClientState, uid string, res *LookupResult, verr error, memo *devices.SignatureMemo) (*LookupResult, error) {
	if verr != nil || res == nil || !res.Found {
		return res, verr
	}
	from := uint64(1)
	if ct := st.contact(uid); ct != nil {
		if ct.IK != res.IdentityKey || ct.Version == 0 {
			return res, verr
		}
		if res.Version < ct.Version {
			return nil, fail(ErrHistory, nil, "the directory serves v%d of %s, v%d was already verified", res.Version, uid, ct.Version)
		}
		from = ct.Version
	}
	if res.Version == from {
		return res, nil
	}
	entries, err := historyFrom(ctx, c.Trust, c.Source, c.Cache, memoFor(res, memo), res, from)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 || entries[0].update.Version != from {
		return nil, fail(ErrHistory, nil, "the history of %s does not start at v%d", uid, from)
	}
	last := entries[len(entries)-1]
	if last.update.Version != res.Version || last.entryHash != res.EntryHash || last.LogIndex != res.LogIndex {
		return nil, fail(ErrHistory, nil, "the history of %s from v%d does not end at the served v%d", uid, from, res.Version)
	}
	return res, nil
}

// checkIdentityChange applies the identity-key rule to a lookup verified
// against st: a pinned contact (verified or not) may get a new identity key
// only through a directory reset entry. If the key served differs from the
// pin, it fetches and verifies the account's history from the pinned
// version (verifyHistory: inclusion in a checkpoint consistent with the
// lookup's, consecutive versions, entry-hash chain, every transition by
// devices.VerifyTransition or devices.VerifyReset) up to the served entry,
// and requires a reset entry after the last version carrying the pinned
// key. An explained change is a loud reset: for a verified contact the
// *SafetyNumberChangedError with Reset set, otherwise PinChanged with a
// reset warning. Anything else fails closed with a
// *SafetyNumberChangedError with Unexplained set (ErrIdentityChanged).
//
// res and verr are VerifyLookup's results; other errors pass through.
func (c *Client) checkIdentityChange(ctx context.Context, st *ClientState, uid string, res *LookupResult, verr error, memo *devices.SignatureMemo) (*LookupResult, error) {
	if verr != nil {
		var snc *SafetyNumberChangedError
		if !errors.As(verr, &snc) || snc.Result == nil {
			return res, verr
		}
		res = snc.Result
	}
	ct := st.contact(uid)
	if ct == nil || res == nil || !res.Found || ct.IK == res.IdentityKey {
		return res, verr
	}
	unexplained := func(cause error) (*LookupResult, error) {
		return nil, &SafetyNumberChangedError{UserID: uid, Old: ct.IK, New: res.IdentityKey, Unexplained: true, Cause: cause}
	}
	from := max(ct.Version, 1)
	if from > res.Version {
		return unexplained(fail(ErrHistory, nil, "the directory serves v%d of %s, the pinned key was seen at v%d", res.Version, uid, from))
	}
	entries, err := historyFrom(ctx, c.Trust, c.Source, c.Cache, memoFor(res, memo), res, from)
	if err != nil {
		return unexplained(err)
	}
	if len(entries) == 0 || entries[0].update.Version != from {
		return unexplained(fail(ErrHistory, nil, "the history of %s does not start at the pinned v%d", uid, from))
	}
	last := entries[len(entries)-1]
	if last.update.Version != res.Version || last.entryHash != res.EntryHash || last.LogIndex != res.LogIndex {
		return unexplained(fail(ErrHistory, nil, "the history of %s from v%d does not end at the served v%d (log index %d)", uid, from, res.Version, res.LogIndex))
	}
	// pinned is the last entry that carries the pinned key, or a reset
	// entry that replaced it (then the search for the reset starts there).
	pinned, from0 := -1, 0
	for i, e := range entries {
		switch {
		case e.state.IdentityKey == ct.IK:
			pinned, from0 = i, i+1
		case e.reset != nil && e.reset.Current.IdentityKey == ct.IK:
			pinned, from0 = i, i
		}
	}
	if pinned < 0 {
		return unexplained(fmt.Errorf("the pinned key is the root key of no version of %s from v%d to v%d", uid, from, res.Version))
	}
	var reset *historyEntry
	for i := from0; i < len(entries); i++ {
		if entries[i].reset != nil {
			if i+1 < len(entries) && entries[i+1].cancels {
				continue // cancelled by the owner: it never took effect
			}
			reset = &entries[i]
			break
		}
	}
	if reset == nil {
		return unexplained(fmt.Errorf("no reset entry of %s after v%d, the last version with the pinned key, took effect", uid, entries[pinned].update.Version))
	}
	if et := epochTime(res.Epoch); reset.reset.Pending(et) {
		return nil, fail(ErrResetWindow, nil, "%s: the directory serves the keys of the reset v%d at %s, before it takes effect at %s", uid, reset.update.Version, et.Format(time.RFC3339), reset.reset.EffectiveAt.UTC().Format(time.RFC3339))
	}
	if ct.Verified {
		return nil, &SafetyNumberChangedError{UserID: uid, Old: ct.IK, New: res.IdentityKey, Reset: true, Result: res}
	}
	if res.Reset == nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("IDENTITY RESET: %s v%d was reset by the directory (%s) at %s; the safety number changed",
			uid, reset.update.Version, reset.reset.Reason, reset.reset.Time.UTC().Format(time.RFC3339)))
	}
	return res, nil
}

// historyFrom fetches res's account history from version from up to
// res.Version and verifies it (verifyHistory). A directory returns at most
// a page of entries per History call (MaxHistoryEntries in the directory),
// so it asks again from the version after the last one received, chaining
// each page to the previous one, until it has res.Version or a page comes
// back empty (the caller then sees the history end early). Every page must
// make progress, so it makes at most res.Version-from+1 calls. c (nil: no
// cache) is the cache the lookup res was verified with.
//
// The pages share memo, which holds the signatures of res.State and says
// which rule the states are checked by: a lookup client's memo
// (lookupMemo, the lookup rule of devices.VerifyAccountStateForLookup), or
// the monitor's (ownMemo, every signature). A signature the history
// repeats (the signing key cert and device certs of v1 that the served
// version still carries) is verified once per call.
func historyFrom(ctx context.Context, t *Trust, src Source, c *Cache, memo *devices.SignatureMemo, res *LookupResult, from uint64) ([]historyEntry, error) {
	var out []historyEntry
	next := from
	for {
		h, err := src.History(ctx, res.UserID, next)
		if err != nil {
			return nil, fmt.Errorf("verifier: history of %s from v%d: %w", res.UserID, next, err)
		}
		var prev *historyEntry
		if len(out) > 0 {
			prev = &out[len(out)-1]
		}
		page, err := verifyHistory(ctx, t, src, c, memo, res, h, next, prev)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) == 0 {
			return out, nil
		}
		last := out[len(out)-1].update.Version
		if last >= res.Version || last == math.MaxUint64 {
			return out, nil
		}
		next = last + 1
	}
}

// lookupMemo returns a lookup memo (devices.NewLookupMemo: the lookup
// rule, a DeviceCert's ASK signature covered by its state's signature is
// not verified) holding the signatures of res.State that VerifyLookup
// verified with devices.VerifyAccountStateForLookup (a create or update,
// or the new state of a reset in effect, as isLookupAnswer requires);
// during a pending reset res.State is the unsigned previous state and the
// memo holds nothing.
func lookupMemo(res *LookupResult) *devices.SignatureMemo {
	if !res.Found || res.State == nil || res.Reset != nil || res.ResetPending != nil {
		return devices.NewLookupMemo()
	}
	return devices.NewLookupMemo(res.State)
}

// memoFor returns memo, the lookup memo res was verified with, or if nil
// lookupMemo(res).
func memoFor(res *LookupResult, memo *devices.SignatureMemo) *devices.SignatureMemo {
	if memo != nil {
		return memo
	}
	return lookupMemo(res)
}
