package sqlstate

import (
	"context"
	"database/sql"
	"errors"
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

// pointSQL builds ReadPoint's statement for a query shape (by user or not,
// the tile depths): one SELECT of one row, the latest epoch's row
// left-joined with the primary-key reads of the user, the account and the
// path's tiles (constant keys, or keys computed from the users row), so the
// server runs it as a handful of const-table reads with no temporary table.
func pointSQL(byUser bool, depths []uint8) string {
	var b strings.Builder
	b.WriteString("SELECT e.epoch, e.map_root, e.log_size, e.checkpoint, a.version, a.log_index, a.entry_hash, a.leaf")
	if byUser {
		b.WriteString(", u.vrf_index, u.vrf_proof")
	}
	for i := range depths {
		fmt.Fprintf(&b, ", t%d.v", i)
	}
	b.WriteString(" FROM epochs e")
	if byUser {
		b.WriteString(" LEFT JOIN users u ON u.user_id = ? LEFT JOIN accounts a ON a.vrf_index = u.vrf_index")
		for i, d := range depths {
			fmt.Fprintf(&b, " LEFT JOIN map_kv t%d ON t%d.k = CONCAT(LEFT(u.vrf_index, %d), X'%02x')", i, i, d/8, d)
		}
	} else {
		b.WriteString(" LEFT JOIN accounts a ON a.vrf_index = ?")
		for i := range depths {
			fmt.Fprintf(&b, " LEFT JOIN map_kv t%d ON t%d.k = ?", i, i)
		}
	}
	b.WriteString(" WHERE e.epoch = (SELECT MAX(epoch) FROM epochs)")
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
		args = []any{[]byte(q.UserID)}
	} else {
		args = []any{q.Index[:]}
		for _, d := range q.Depths {
			args = append(args, TileKey(q.Index, d))
		}
	}
	var root, hash, leaf, cp, uIndex, uProof []byte
	var epoch, size uint64
	var version, li sql.NullInt64
	dest := []any{&epoch, &root, &size, &cp, &version, &li, &hash, &leaf}
	if q.ByUser {
		dest = append(dest, &uIndex, &uProof)
	}
	p := &Point{Records: make([][]byte, len(q.Depths))}
	for i := range q.Depths {
		dest = append(dest, &p.Records[i])
	}
	err = stmt.QueryRowContext(ctx, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return &Point{}, nil // no epoch yet
	}
	if err != nil {
		return nil, err
	}
	if len(root) != 32 {
		return nil, fmt.Errorf("%w: map root of epoch %d", ErrCorrupt, epoch)
	}
	p.Epoch = &Epoch{Epoch: epoch, LogSize: size, Checkpoint: cp}
	copy(p.Epoch.MapRoot[:], root)
	if q.ByUser {
		if uIndex == nil {
			return &Point{Epoch: p.Epoch}, nil // no such user in this epoch
		}
		if len(uIndex) != 32 || len(uProof) != 80 {
			return nil, fmt.Errorf("%w: users row of %q", ErrCorrupt, q.UserID)
		}
		p.User, p.VRFProof = true, uProof
		copy(p.Index[:], uIndex)
	}
	if version.Valid {
		if len(hash) != 32 {
			return nil, fmt.Errorf("%w: entry hash of %d bytes", ErrCorrupt, len(hash))
		}
		p.Account = &Account{Version: uint64(version.Int64), LogIndex: uint64(li.Int64), Leaf: leaf}
		copy(p.Account.EntryHash[:], hash)
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
