package sqlstate

import (
	"bytes"
	"sort"
)

// MapReader reads map storage records from a Snapshot or a Tx.
type MapReader interface {
	GetMany(keys [][]byte) ([][]byte, error)
}

// NodeStore is a vmap.Store (Get/Put of node records) over map_kv in one
// transaction: reads go to r, and the records already fetched or written
// are kept in memory, so that a proof whose path records were prefetched
// (Prefetch) costs one round trip; writes are buffered and written in
// batched statements by Flush, inside the epoch's transaction.
type NodeStore struct {
	r     MapReader
	cache map[string][]byte // fetched or written; nil value = absent
	dirty map[string][]byte
	// MaxDepth is the largest depth byte of a present node record ('n'
	// || [32] prefix || u8 depth) Get returned, -1 if none.
	MaxDepth int
}

// NewNodeStore returns a NodeStore reading from r.
func NewNodeStore(r MapReader) *NodeStore {
	return &NodeStore{r: r, cache: map[string][]byte{}, dirty: map[string][]byte{}, MaxDepth: -1}
}

// Prefetch reads keys in one query (per 1000 keys) into the cache.
func (n *NodeStore) Prefetch(keys [][]byte) error {
	var need [][]byte
	for _, k := range keys {
		if _, ok := n.cache[string(k)]; !ok {
			need = append(need, k)
		}
	}
	if len(need) == 0 {
		return nil
	}
	vs, err := n.r.GetMany(need)
	if err != nil {
		return err
	}
	for i, k := range need {
		n.cache[string(k)] = vs[i]
	}
	return nil
}

// Get implements vmap.Reader.
func (n *NodeStore) Get(key []byte) ([]byte, error) {
	v, ok := n.cache[string(key)]
	if !ok {
		vs, err := n.r.GetMany([][]byte{key})
		if err != nil {
			return nil, err
		}
		v = vs[0]
		n.cache[string(key)] = v
	}
	if v != nil && len(key) == 34 && key[0] == 'n' {
		n.MaxDepth = max(n.MaxDepth, int(key[33]))
	}
	return v, nil
}

// Put implements vmap.Store: the record is written by Flush.
func (n *NodeStore) Put(key, value []byte) error {
	v := bytes.Clone(value)
	n.cache[string(key)] = v
	n.dirty[string(key)] = v
	return nil
}

// Flush writes the buffered records in tx, in key order.
func (n *NodeStore) Flush(tx *Tx) error {
	kvs := make([]KV, 0, len(n.dirty))
	for k, v := range n.dirty {
		kvs = append(kvs, KV{Key: []byte(k), Value: v})
	}
	sort.Slice(kvs, func(i, j int) bool { return bytes.Compare(kvs[i].Key, kvs[j].Key) < 0 })
	if err := tx.PutMany(kvs); err != nil {
		return err
	}
	clear(n.dirty)
	return nil
}
