package sqlstate

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
)

// Point is what one lookup reads in one statement, so from one read view
// (one committed epoch): the latest epoch's row, the account record of an
// index (nil if absent) and the map records (tiles) of the index's path
// asked for (nil if absent). Read by user id, it also holds the user's
// stored VRF proof and index (User false and nothing else but the epoch if
// the user has no account in that epoch).
type Point struct {
	Epoch   *Epoch // nil before the first epoch
	Account *Account
	Records [][]byte // by PointQuery.Depths, in order

	User     bool
	VRFProof []byte
	Index    [32]byte
}

// PointQuery says what ReadPoint reads: the account and path tiles of
// Index, or (ByUser) of the index stored for UserID.
type PointQuery struct {
	ByUser bool
	UserID string
	Index  [32]byte
	// Depths are the depths (bits) of the path's tiles to read; each is a
	// multiple of 8 (the tile's key is then the index's first Depth/8 bytes
	// and the depth byte, vmap.TileID.Key), so the statement can compute the
	// keys from the users row.
	Depths []uint8
}

// TileKey is the map_kv key of the tile at depth (a multiple of 8) on
// index's path (vmap.TileID.Key).
func TileKey(index [32]byte, depth uint8) []byte {
	return append(append(make([]byte, 0, depth/8+1), index[:depth/8]...), depth)
}

// pointColumns: every part of the statement returns (kind, b1, b2, n1, n2).
const (
	kindEpoch   = 0 // map_root, checkpoint, epoch, log_size
	kindAccount = 1 // entry_hash, leaf, version, log_index
	kindTile    = 2 // k, v
	kindUser    = 3 // vrf_index, vrf_proof
)

// pointSQL builds ReadPoint's statement for a query shape (by user or not,
// the tile depths): a UNION ALL of primary-key reads, one statement and so
// one read view, with the parameters the shape takes.
func pointSQL(byUser bool, depths []uint8) string {
	var b strings.Builder
	fmt.Fprintf(&b, "(SELECT %d AS kind, map_root AS b1, checkpoint AS b2, epoch AS n1, log_size AS n2 FROM epochs ORDER BY epoch DESC LIMIT 1)", kindEpoch)
	if byUser {
		fmt.Fprintf(&b, " UNION ALL (SELECT %d, vrf_index, vrf_proof, 0, 0 FROM users WHERE user_id = ?)", kindUser)
		fmt.Fprintf(&b, " UNION ALL (SELECT %d, a.entry_hash, a.leaf, a.version, a.log_index FROM users u JOIN accounts a ON a.vrf_index = u.vrf_index WHERE u.user_id = ?)", kindAccount)
		if len(depths) > 0 {
			keys := make([]string, len(depths))
			for i, d := range depths {
				keys[i] = fmt.Sprintf("CONCAT(LEFT(u.vrf_index, %d), X'%02x')", d/8, d)
			}
			fmt.Fprintf(&b, " UNION ALL (SELECT %d, m.k, m.v, 0, 0 FROM users u JOIN map_kv m ON m.k IN (%s) WHERE u.user_id = ?)", kindTile, strings.Join(keys, ", "))
		}
		return b.String()
	}
	fmt.Fprintf(&b, " UNION ALL (SELECT %d, entry_hash, leaf, version, log_index FROM accounts WHERE vrf_index = ?)", kindAccount)
	if len(depths) > 0 {
		fmt.Fprintf(&b, " UNION ALL (SELECT %d, k, v, 0, 0 FROM map_kv WHERE k IN (%s))", kindTile, placeholders(len(depths)))
	}
	return b.String()
}

// ReadPoint reads a Point in one round trip: one prepared statement
// (prepared once per connection and shape, then executed with one round
// trip), one read view.
func (s *Store) ReadPoint(ctx context.Context, q PointQuery) (*Point, error) {
	for _, d := range q.Depths {
		if d%8 != 0 {
			return nil, fmt.Errorf("sqlstate: tile depth %d is not a multiple of 8", d)
		}
	}
	stmt, err := s.stmts.get(ctx, s.db, pointSQL(q.ByUser, q.Depths))
	if err != nil {
		return nil, err
	}
	var args []any
	if q.ByUser {
		uid := []byte(q.UserID)
		args = []any{uid, uid}
		if len(q.Depths) > 0 {
			args = append(args, uid)
		}
	} else {
		args = []any{q.Index[:]}
		for _, d := range q.Depths {
			args = append(args, TileKey(q.Index, d))
		}
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	p := &Point{}
	tiles := map[string][]byte{}
	for rows.Next() {
		var kind int
		var b1, b2 []byte
		var n1, n2 uint64
		if err := rows.Scan(&kind, &b1, &b2, &n1, &n2); err != nil {
			return nil, err
		}
		switch kind {
		case kindEpoch:
			if len(b1) != 32 {
				return nil, fmt.Errorf("%w: map root of epoch %d", ErrCorrupt, n1)
			}
			p.Epoch = &Epoch{Epoch: n1, LogSize: n2, Checkpoint: b2}
			copy(p.Epoch.MapRoot[:], b1)
		case kindAccount:
			if len(b1) != 32 {
				return nil, fmt.Errorf("%w: entry hash of %d bytes", ErrCorrupt, len(b1))
			}
			p.Account = &Account{Version: n1, LogIndex: n2, Leaf: b2}
			copy(p.Account.EntryHash[:], b1)
		case kindTile:
			tiles[string(b1)] = b2
		case kindUser:
			if len(b1) != 32 || len(b2) != 80 {
				return nil, fmt.Errorf("%w: users row of %q", ErrCorrupt, q.UserID)
			}
			p.User, p.VRFProof = true, b2
			copy(p.Index[:], b1)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	index := q.Index
	if q.ByUser {
		index = p.Index
		if !p.User {
			p.Account = nil
			return p, nil
		}
	}
	p.Records = make([][]byte, len(q.Depths))
	for i, d := range q.Depths {
		p.Records[i] = tiles[string(TileKey(index, d))]
	}
	return p, nil
}

// stmtCache holds prepared statements by text. database/sql prepares a
// Stmt once on each connection that runs it and reuses it there, so a
// lookup is one COM_STMT_EXECUTE round trip (no prepare, no client-side
// interpolation, no server-side parse).
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// maxStmts bounds the cached statements (the shapes are few: two per
// number of tile levels read).
const maxStmts = 64

func (c *stmtCache) get(ctx context.Context, db *sql.DB, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) >= maxStmts {
		for _, old := range c.m {
			old.Close()
		}
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}
