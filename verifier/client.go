package verifier

import (
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
// concurrent use within one process; two processes must not share a state
// file at the same time.
type Client struct {
	Trust     *Trust
	StatePath string
	Source    Source
	// Now is the clock (nil: time.Now).
	Now func() time.Time

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

func knownSize(t *Trust, st *ClientState) (uint64, error) {
	if st.Checkpoint == nil {
		return 0, nil
	}
	cp, _, err := klog.OpenCheckpoint(st.Checkpoint, t.Log, t.Origin)
	if err != nil {
		return 0, fmt.Errorf("%w: last verified checkpoint: %w", ErrState, err)
	}
	return cp.Size, nil
}

// Lookup fetches and verifies userID's keys (VerifyLookup). Only if every
// check passes does it advance the state file: the last verified checkpoint,
// and the contact's pin (trust on first use for new contacts, re-pinned
// unverified for a changed unverified key). A changed verified key is the
// error *SafetyNumberChangedError and changes nothing; the user must Pin the
// new key after comparing safety numbers.
func (c *Client) Lookup(ctx context.Context, userID string) (*LookupResult, error) {
	uid, err := devices.NormalizeUserID(userID)
	if err != nil {
		return nil, fail(ErrUserID, err, "%q", userID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := LoadClientState(c.StatePath)
	if err != nil {
		return nil, err
	}
	known, err := knownSize(c.Trust, st)
	if err != nil {
		return nil, err
	}
	b, err := c.Source.Lookup(ctx, uid, known)
	if err != nil {
		return nil, fmt.Errorf("verifier: lookup %s: %w", uid, err)
	}
	now := c.now()
	res, err := VerifyLookup(c.Trust, st, uid, b, now)
	if err != nil {
		return nil, err
	}
	st.Apply(res, now)
	if err := st.Save(c.StatePath); err != nil {
		return nil, fmt.Errorf("verifier: saving state: %w", err)
	}
	return res, nil
}

// Pin pins ik as userID's identity key; verified records that the user
// compared safety numbers.
func (c *Client) Pin(userID string, ik [32]byte, verified bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := LoadClientState(c.StatePath)
	if err != nil {
		return err
	}
	if err := st.Pin(userID, ik, verified, c.now()); err != nil {
		return err
	}
	return st.Save(c.StatePath)
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
	st, err := LoadClientState(c.StatePath)
	if err != nil {
		return err
	}
	o := own
	st.Own = &o
	return st.Save(c.StatePath)
}

// Checkpoint fetches the directory's latest checkpoint, verifies it
// (signature, origin, witness quorum) and its consistency with the last
// verified one (fetching a consistency proof), then makes it the last
// verified checkpoint. Freshness is not checked here (a checkpoint alone
// carries no time); Lookup checks it.
func (c *Client) Checkpoint(ctx context.Context) (*VerifiedCheckpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
		old, err := knownSize(c.Trust, st)
		if err != nil {
			return nil, err
		}
		var p [][]byte
		if old > 0 && cp.Size > old {
			if p, err = c.Source.ConsistencyProof(ctx, old, cp.Size); err != nil {
				return nil, fmt.Errorf("verifier: fetching consistency proof %d -> %d: %w", old, cp.Size, err)
			}
		}
		if err := verifyAdvance(c.Trust, st.Checkpoint, cp, p); err != nil {
			return nil, err
		}
	}
	st.Checkpoint = cp.Note
	if err := st.Save(c.StatePath); err != nil {
		return nil, fmt.Errorf("verifier: saving state: %w", err)
	}
	return cp, nil
}
