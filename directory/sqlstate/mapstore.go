package sqlstate

import (
	"github.com/keyline/keyline/verifier/vmap"
)

// MapReader reads map storage records from a Snapshot, a Tx, or records
// read beforehand.
type MapReader interface {
	GetMany(keys [][]byte) ([][]byte, error)
}

// TileStore is a vmap.TileStore over map_kv: tiles are keyed by
// vmap.TileID.Key (prefix bytes first, so the VRF index prefix is the
// sharding key). ReadTiles is one query (per 1000 tiles) on its reader;
// WriteTiles writes in batched statements inside the epoch's transaction.
type TileStore struct {
	r  MapReader
	tx *Tx
	// Deepest is the largest tile depth ReadTiles was asked for.
	Deepest int
}

// NewTileStore returns a TileStore reading from r and, if tx is not nil,
// writing in tx.
func NewTileStore(r MapReader, tx *Tx) *TileStore { return &TileStore{r: r, tx: tx, Deepest: -1} }

// ReadTiles implements vmap.TileReader.
func (s *TileStore) ReadTiles(ids []vmap.TileID) ([][]byte, error) {
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = id.Key()
		s.Deepest = max(s.Deepest, int(id.Depth))
	}
	return s.r.GetMany(keys)
}

// WriteTiles implements vmap.TileStore.
func (s *TileStore) WriteTiles(tiles []vmap.Tile) error {
	kvs := make([]KV, len(tiles))
	for i, t := range tiles {
		kvs[i] = KV{Key: t.ID.Key(), Value: t.Data}
	}
	return s.tx.PutMany(kvs)
}

var _ vmap.TileStore = (*TileStore)(nil)
