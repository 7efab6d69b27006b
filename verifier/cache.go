package verifier

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/cosign"
	"github.com/keyline/keyline/verifier/vrf"
)

// DefaultCacheEntries bounds each of a Cache's three tables when NewCache
// is given 0: at most this many checkpoints, VRF proofs and account
// payloads (about 200 bytes of memory per entry).
const DefaultCacheEntries = 4096

// Cache remembers verifications that succeeded, so that a long-lived client
// (a chat app, `keyline bench --verify`) that looks up the same contacts
// again and again does not repeat the costly ones: opening a checkpoint
// note (log signature and witness cosignatures), a VRF proof, and the
// signatures of an account payload (AccountState, or reset authorization).
// Everything else (map proof, EpochRecord inclusion, freshness, map value,
// pins) is checked on every lookup.
//
// An entry is keyed by the SHA-256 of the exact bytes verified (the note;
// the user id and proof; the payload), and valid only for the trust
// configuration it was verified under: the Cache remembers that Trust's
// keys, quorum, origin and reset window, and empties itself when it is used
// with a Trust that differs in any of them, so an entry verified under one
// key never vouches under another. Failures are never cached. With a Cache
// VerifyLookup returns exactly what it returns without one (tested on every
// rejection of the lookup tests).
//
// A Cache is safe for concurrent use. Its tables are bounded: when one is
// full an arbitrary entry is dropped.
type Cache struct {
	max int

	mu          sync.Mutex
	trust       trustKeys
	checkpoints map[[32]byte]*VerifiedCheckpoint
	vrfs        map[[32]byte][32]byte
	payloads    map[[32]byte]struct{}
}

// NewCache returns an empty Cache whose tables hold at most entries
// entries each (0: DefaultCacheEntries).
func NewCache(entries int) *Cache {
	if entries <= 0 {
		entries = DefaultCacheEntries
	}
	return &Cache{max: entries}
}

// trustKeys is what a cached verification depends on in a Trust. Keys are
// compared by identity (the parsed verifiers) and by value (the reset key).
type trustKeys struct {
	origin      string
	log         note.Verifier
	witnesses   []*cosign.Verifier
	quorum      int
	vrf         *vrf.PublicKey
	resetKey    ed25519.PublicKey
	resetWindow time.Duration
}

func (k *trustKeys) matches(t *Trust) bool {
	if k.log == nil || k.origin != t.Origin || k.log != t.Log || k.quorum != t.Quorum || k.vrf != t.VRF ||
		!bytes.Equal(k.resetKey, t.ResetKey) || k.resetWindow != t.resetWindow() || len(k.witnesses) != len(t.Witnesses) {
		return false
	}
	for i, w := range k.witnesses {
		if w != t.Witnesses[i] {
			return false
		}
	}
	return true
}

// forTrust makes t the cache's trust, emptying it if t differs from the
// one its entries were verified under. c.mu is held.
func (c *Cache) forTrust(t *Trust) {
	if c.trust.matches(t) {
		return
	}
	c.trust = trustKeys{
		origin: t.Origin, log: t.Log, witnesses: append([]*cosign.Verifier(nil), t.Witnesses...),
		quorum: t.Quorum, vrf: t.VRF, resetKey: bytes.Clone(t.ResetKey), resetWindow: t.resetWindow(),
	}
	c.checkpoints, c.vrfs, c.payloads = nil, nil, nil
}

// VerifyLookup is VerifyLookup using and filling the cache.
func (c *Cache) VerifyLookup(t *Trust, st *ClientState, userID string, b *LookupBundle, now time.Time) (*LookupResult, error) {
	return verifyLookup(t, st, userID, b, now, c, nil)
}

// verifyLookupMemo is VerifyLookup verifying the account state through the
// lookup memo memo (devices.NewLookupMemo), or adding it to memo if the
// cache held it as verified, so that the history walk of the same lookup
// (checkHistory with memo) verifies none of its signatures again and
// reuses the public keys it decoded. The result is VerifyLookup's.
func (c *Cache) verifyLookupMemo(t *Trust, st *ClientState, userID string, b *LookupBundle, now time.Time, memo *devices.SignatureMemo) (*LookupResult, error) {
	return verifyLookup(t, st, userID, b, now, c, memo)
}

// cacheKey hashes a domain tag and length-prefixed parts.
func cacheKey(tag string, parts ...[]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(tag))
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// evictOne drops an arbitrary entry of m if it has reached max entries and
// does not hold k (which is about to be stored).
func evictOne[V any](m map[[32]byte]V, k [32]byte, max int) {
	if _, ok := m[k]; ok || len(m) < max {
		return
	}
	for k := range m {
		delete(m, k)
		return
	}
}

// openCheckpoint is t.OpenCheckpoint, cached by the note's bytes (c may be
// nil). A cached result is returned as a copy (its Note and Cosigners are
// shared and must not be modified).
func (c *Cache) openCheckpoint(t *Trust, signed []byte) (*VerifiedCheckpoint, error) {
	if c == nil {
		return t.OpenCheckpoint(signed)
	}
	k := cacheKey("checkpoint", signed)
	c.mu.Lock()
	c.forTrust(t)
	vc, ok := c.checkpoints[k]
	c.mu.Unlock()
	if ok {
		cp := *vc
		return &cp, nil
	}
	vc, err := t.OpenCheckpoint(signed)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.trust.matches(t) {
		if c.checkpoints == nil {
			c.checkpoints = map[[32]byte]*VerifiedCheckpoint{}
		}
		evictOne(c.checkpoints, k, c.max)
		cp := *vc
		c.checkpoints[k] = &cp
	}
	c.mu.Unlock()
	return vc, nil
}

// openLogCheckpoint is klog.OpenCheckpoint(signed, t.Log, t.Origin), the
// checkpoint of a note signed by the log, answered from c (which may be
// nil) when it holds the note as opened by t.OpenCheckpoint: that accepted
// the log's signature, the origin and the checkpoint text, so with the two
// checks klog.OpenCheckpoint adds (the note's size limit and the log key
// named by the origin) it gives klog.OpenCheckpoint's checkpoint without
// verifying the log signature again. A client re-opens its last verified
// checkpoint on every lookup (its known size, the consistency check).
func (c *Cache) openLogCheckpoint(t *Trust, signed []byte) (klog.Checkpoint, error) {
	if vc := c.openedCheckpoint(t, signed); vc != nil && len(signed) <= klog.MaxSignedCheckpointSize && t.Log.Name() == t.Origin {
		return vc.Checkpoint, nil
	}
	cp, _, err := klog.OpenCheckpoint(signed, t.Log, t.Origin)
	return cp, err
}

// openedCheckpoint returns c's entry for the note signed, opened by
// t.OpenCheckpoint, or nil if c (which may be nil) holds none under t.
func (c *Cache) openedCheckpoint(t *Trust, signed []byte) *VerifiedCheckpoint {
	if c == nil || t.Log == nil {
		return nil
	}
	k := cacheKey("checkpoint", signed)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.trust.matches(t) {
		return nil
	}
	vc, ok := c.checkpoints[k]
	if !ok {
		return nil
	}
	cp := *vc
	return &cp
}

// verifyIndex is t.VRF.VerifyIndex of the normalized user id uid, cached by
// (uid, proof) (c may be nil).
func (c *Cache) verifyIndex(t *Trust, uid string, pi []byte) ([32]byte, error) {
	if c == nil {
		return t.VRF.VerifyIndex([]byte(uid), pi)
	}
	k := cacheKey("vrf", []byte(uid), pi)
	c.mu.Lock()
	c.forTrust(t)
	idx, ok := c.vrfs[k]
	c.mu.Unlock()
	if ok {
		return idx, nil
	}
	idx, err := t.VRF.VerifyIndex([]byte(uid), pi)
	if err != nil {
		return idx, err
	}
	c.mu.Lock()
	if c.trust.matches(t) {
		if c.vrfs == nil {
			c.vrfs = map[[32]byte][32]byte{}
		}
		evictOne(c.vrfs, k, c.max)
		c.vrfs[k] = idx
	}
	c.mu.Unlock()
	return idx, nil
}

// payloadVerified reports whether the payload (with its update kind tag)
// verified before under t, by a lookup's checks (verifyPayload: an
// AccountState by the lookup rule). c may be nil.
func (c *Cache) payloadVerified(t *Trust, kind byte, payload []byte) (bool, [32]byte) {
	if c == nil {
		return false, [32]byte{}
	}
	k := cacheKey("payload", []byte{kind}, payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forTrust(t)
	_, ok := c.payloads[k]
	return ok, k
}

// payloadOK records that the payload with key k verified under t.
func (c *Cache) payloadOK(t *Trust, k [32]byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.trust.matches(t) {
		return
	}
	if c.payloads == nil {
		c.payloads = map[[32]byte]struct{}{}
	}
	evictOne(c.payloads, k, c.max)
	c.payloads[k] = struct{}{}
}
