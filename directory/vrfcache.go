package directory

import (
	"sync"

	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/verifier/vrf"
)

// vrfCache remembers VRF proofs and indexes by user id. Proofs are
// deterministic per (key, user id), so caching never changes an answer.
// It has two generations of at most size/2 entries each: when the current
// one fills up it becomes the old one and the previous old one is dropped.
type vrfCache struct {
	sk       *vrf.PrivateKey
	half     int
	mu       sync.RWMutex
	cur, old map[string]vrfEntry
}

type vrfEntry struct {
	pi    []byte
	index [32]byte
}

func newVRFCache(sk *vrf.PrivateKey, size int) *vrfCache {
	h := max(size/2, 1)
	return &vrfCache{sk: sk, half: h, cur: make(map[string]vrfEntry), old: map[string]vrfEntry{}}
}

// cached returns the VRF proof and map index of a canonical user id if
// they are in memory.
func (c *vrfCache) cached(userID string) (pi []byte, index [32]byte, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.cur[userID]
	if !ok {
		e, ok = c.old[userID]
	}
	return e.pi, e.index, ok
}

// get returns the VRF proof and map index of a canonical user id: from
// memory, from the users bucket of db (if not nil), or by proving.
func (c *vrfCache) get(db *bbolt.DB, userID string) (pi []byte, index [32]byte, err error) {
	c.mu.RLock()
	e, ok := c.cur[userID]
	if !ok {
		e, ok = c.old[userID]
	}
	c.mu.RUnlock()
	if ok {
		return e.pi, e.index, nil
	}
	if db != nil {
		err = db.View(func(tx *bbolt.Tx) error {
			rec, err := getUser(tx, userID)
			if rec != nil {
				e.pi, e.index, ok = rec.Proof, rec.Index, true
			}
			return err
		})
		if err != nil {
			return nil, index, err
		}
	}
	if !ok {
		beta, p := c.sk.Prove([]byte(userID))
		e = vrfEntry{pi: p, index: vrf.Index(beta)}
	}
	c.put(userID, e)
	return e.pi, e.index, nil
}

func (c *vrfCache) put(userID string, e vrfEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.half {
		c.old, c.cur = c.cur, make(map[string]vrfEntry, c.half)
	}
	c.cur[userID] = e
}
