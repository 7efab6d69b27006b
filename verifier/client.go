package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
)

// Client verifies a directory's answers for one user of one directory and
// keeps its state file (ClientState) up to date. Its methods are safe for
// concurrent use, and several Clients, in this or other processes (a
// long-running monitor and a one-shot command), may share one state file:
// every load-modify-save holds an exclusive advisory lock on the sibling
// file StatePath+".lock" (flock(2); on systems without it, a lock within
// this process only), and a lookup applies its result to the state as
// re-loaded under that lock, so no process overwrites another's pins.
type Client struct {
	Trust     *Trust
	StatePath string
	Source    Source
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Cache holds the verifications Lookup already did (nil: a Cache of
	// DefaultCacheEntries is made on first use).
	Cache *Cache

	mu sync.Mutex
}

// NewClient returns a Client that verifies answers from src against t and
// keeps its state in the file statePath.
func NewClient(t *Trust, statePath string, src Source) *Client {
	return &Client{Trust: t, StatePath: statePath, Source: src}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// State returns the current state file contents.
func (c *Client) State() (*ClientState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return LoadClientState(c.StatePath)
}

// knownSize is the size of st's last verified checkpoint (0: none), opened
// with c.openLogCheckpoint (c may be nil).
func knownSize(t *Trust, c *Cache, st *ClientState) (uint64, error) {
	if st.Checkpoint == nil {
		return 0, nil
	}
	cp, err := c.openLogCheckpoint(t, st.Checkpoint)
	if err != nil {
		return 0, fmt.Errorf("%w: last verified checkpoint: %w", ErrState, err)
	}
	return cp.Size, nil
}

// maxOptimisticLookups is how many times Lookup verifies without holding
// the state lock before it holds it for a whole attempt.
const maxOptimisticLookups = 3

// Lookup fetches and verifies userID's keys (VerifyLookup). Only if every
// check passes does it advance the state file: the last verified checkpoint,
// and the contact's pin (trust on first use for new contacts, re-pinned
// unverified for a changed unverified key). A changed verified key is the
// error *SafetyNumberChangedError and changes nothing; the user must Pin the
// new key after comparing safety numbers.
//
// A changed key, verified or not, is accepted only if the account's
// verified history from the pinned version shows a directory reset entry
// after the last version with the pinned key (checkIdentityChange); else
// Lookup fails closed with a *SafetyNumberChangedError that is Unexplained
// (ErrIdentityChanged) and changes nothing.
//
// The network round trip runs without the state lock. The result is then
// applied under the lock to the state file as re-loaded there; if another
// process changed the last verified checkpoint or this contact's pin in the
// meantime, the lookup is verified again against the new state (after a few
// attempts, holding the lock for the whole attempt), so a result is never
// applied to a state it was not verified against.
func (c *Client) Lookup(ctx context.Context, userID string) (*LookupResult, error) {
	uid, err := devices.NormalizeUserID(userID)
	if err != nil {
		return nil, fail(ErrUserID, err, "%q", userID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 1; ; attempt++ {
		res, retry, err := c.lookupOnce(ctx, uid, attempt >= maxOptimisticLookups)
		if !retry {
			return res, err
		}
	}
}

// lookupOnce is one Lookup attempt. If locked, it holds the state lock
// throughout; otherwise it reports retry if the state changed under it.
func (c *Client) lookupOnce(ctx context.Context, uid string, locked bool) (res *LookupResult, retry bool, err error) {
	if locked {
		unlock, err := lockStateFile(c.StatePath)
		if err != nil {
			return nil, false, err
		}
		defer unlock()
	}
	st, err := LoadClientState(c.StatePath)
	if err != nil {
		return nil, false, err
	}
	if c.Cache == nil {
		c.Cache = NewCache(0)
	}
	known, err := knownSize(c.Trust, c.Cache, st)
	if err != nil {
		return nil, false, err
	}
	b, err := c.fetchLookup(ctx, st, uid, known)
	if err != nil {
		return nil, false, err
	}
	now := c.now()
	// One lookup memo for the lookup and its history walk (checkHistory).
	memo := devices.NewLookupMemo()
	res, verr := c.Cache.verifyLookupMemo(c.Trust, st, uid, b, now, memo)
	if verr != nil && b.Held() && st.EpochRecord != nil {
		// A held bundle is verified against the held checkpoint alone, so
		// a directory on another view of the same size (a split view)
		// fails here without showing its checkpoint. Ask for the full
		// bundle: its checkpoint is compared with the held one
		// (*SplitViewError with both notes), and its verification decides.
		fb, err := c.fullLookup(ctx, uid, known)
		if err != nil {
			return nil, false, err
		}
		b = fb
		res, verr = c.Cache.verifyLookupMemo(c.Trust, st, uid, b, now, memo)
	}
	res, verr = checkHistory(ctx, c.Trust, c.Source, c.Cache, st, uid, res, verr, memo)
	if !locked {
		unlock, err := lockStateFile(c.StatePath)
		if err != nil {
			return nil, false, err
		}
		defer unlock()
	}
	// Re-load under the lock: the result is applied to the latest file.
	fresh, err := LoadClientState(c.StatePath)
	if err != nil {
		return nil, false, err
	}
	if !sameView(st, fresh, uid) {
		if locked {
			return nil, false, fmt.Errorf("%w: %s changed while its lock was held", ErrState, c.StatePath)
		}
		return nil, true, nil
	}
	if verr != nil {
		return nil, false, verr
	}
	// Fail closed: the new checkpoint must follow the freshly loaded last
	// verified one (a held checkpoint is that one).
	if fresh.Checkpoint != nil && !res.Held {
		if err := verifyAdvance(c.Trust, c.Cache, fresh.Checkpoint, res.Checkpoint, b.Consistency); err != nil {
			return nil, false, err
		}
	}
	if err := fresh.Apply(res, now); err != nil {
		return nil, false, err
	}
	if err := fresh.Save(c.StatePath); err != nil {
		return nil, false, fmt.Errorf("verifier: saving state: %w", err)
	}
	return res, false, nil
}

// fetchLookup asks the Source for uid's bundle with the known size of st's
// checkpoint. A state without the EpochRecord of its checkpoint (written
// before state format 2, or after Checkpoint) cannot use a held-checkpoint
// bundle: it then asks again for a full one (known size 0) and, if that
// bundle's checkpoint is larger than the held one, fetches the consistency
// proof itself. Everything fetched is verified by VerifyLookup.
func (c *Client) fetchLookup(ctx context.Context, st *ClientState, uid string, known uint64) (*LookupBundle, error) {
	b, err := c.Source.Lookup(ctx, uid, known)
	if err != nil {
		return nil, fmt.Errorf("verifier: lookup %s: %w", uid, err)
	}
	if b == nil || !b.Held() || known == 0 || st.EpochRecord != nil {
		return b, nil
	}
	return c.fullLookup(ctx, uid, known)
}

// fullLookup asks the Source for a full bundle (known size 0) and, if its
// checkpoint is larger than known (the client's), fetches the consistency
// proof from known.
func (c *Client) fullLookup(ctx context.Context, uid string, known uint64) (*LookupBundle, error) {
	b, err := c.Source.Lookup(ctx, uid, 0)
	if err != nil {
		return nil, fmt.Errorf("verifier: lookup %s (full bundle): %w", uid, err)
	}
	if b == nil || b.Held() || len(b.Consistency) != 0 || known == 0 {
		return b, nil // VerifyLookup rejects a held bundle here
	}
	// Only the size is used, to ask for the proof; VerifyLookup verifies
	// the checkpoint and the proof.
	cp, _, err := klog.OpenCheckpoint(b.Checkpoint, c.Trust.Log, c.Trust.Origin)
	if err != nil || cp.Size <= known {
		return b, nil
	}
	if b.Consistency, err = c.Source.ConsistencyProof(ctx, known, cp.Size); err != nil {
		return nil, fmt.Errorf("verifier: fetching consistency proof %d -> %d: %w", known, cp.Size, err)
	}
	return b, nil
}

// sameView reports whether a and b hold the same last verified checkpoint
// (and EpochRecord) and the same pin for uid, i.e. whether a lookup of uid
// verified against a is also verified against b.
func sameView(a, b *ClientState, uid string) bool {
	if !bytes.Equal(a.Checkpoint, b.Checkpoint) || !bytes.Equal(a.EpochRecord, b.EpochRecord) {
		return false
	}
	ca, cb := a.contact(uid), b.contact(uid)
	if ca == nil || cb == nil {
		return ca == nil && cb == nil
	}
	return *ca == *cb
}

// update runs modify on the state file re-loaded under the state lock and
// saves it if modify succeeds.
func (c *Client) update(modify func(st *ClientState) error) error {
	unlock, err := lockStateFile(c.StatePath)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := LoadClientState(c.StatePath)
	if err != nil {
		return err
	}
	if err := modify(st); err != nil {
		return err
	}
	if err := st.Save(c.StatePath); err != nil {
		return fmt.Errorf("verifier: saving state: %w", err)
	}
	return nil
}

// Pin pins ik as userID's identity key; verified records that the user
// compared safety numbers.
func (c *Client) Pin(userID string, ik [32]byte, verified bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.update(func(st *ClientState) error {
		return st.Pin(userID, ik, verified, c.now())
	})
}

// SetOwn records the user's own latest published account entry, which the
// Monitor then expects the directory to serve.
func (c *Client) SetOwn(own OwnAccount) error {
	uid, err := devices.NormalizeUserID(own.UserID)
	if err != nil || uid != own.UserID {
		return fail(ErrUserID, err, "own user id %q is not canonical", own.UserID)
	}
	if own.Version == 0 || (own.EntryHash == [32]byte{} && own.StateHash == [32]byte{}) {
		return errors.New("verifier: own account needs a version and an entry or state hash")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.update(func(st *ClientState) error {
		o := own
		st.Own = &o
		return nil
	})
}

// Checkpoint fetches the directory's latest checkpoint, verifies it
// (signature, origin, witness quorum) and its consistency with the last
// verified one (fetching a consistency proof), then makes it the last
// verified checkpoint. Freshness is not checked here (a checkpoint alone
// carries no time); Lookup checks it. It holds the state lock throughout.
func (c *Client) Checkpoint(ctx context.Context) (*VerifiedCheckpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := lockStateFile(c.StatePath)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := LoadClientState(c.StatePath)
	if err != nil {
		return nil, err
	}
	note, err := c.Source.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("verifier: fetching checkpoint: %w", err)
	}
	cp, err := c.Trust.OpenCheckpoint(note)
	if err != nil {
		return nil, fail(ErrCheckpoint, err, "latest checkpoint")
	}
	if st.Checkpoint != nil {
		old, err := knownSize(c.Trust, c.Cache, st)
		if err != nil {
			return nil, err
		}
		var p [][]byte
		if old > 0 && cp.Size > old {
			if p, err = c.Source.ConsistencyProof(ctx, old, cp.Size); err != nil {
				return nil, fmt.Errorf("verifier: fetching consistency proof %d -> %d: %w", old, cp.Size, err)
			}
		}
		if err := verifyAdvance(c.Trust, c.Cache, st.Checkpoint, cp, p); err != nil {
			return nil, err
		}
	}
	st.SetCheckpoint(cp.Note)
	if err := st.Save(c.StatePath); err != nil {
		return nil, fmt.Errorf("verifier: saving state: %w", err)
	}
	return cp, nil
}
