package sqlstate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Point is what one lookup reads in one statement, so from one read view
// (one committed epoch): the latest epoch's row (unless the query leaves it
// out), the account record of an index (nil if absent) and the map records
// (tiles) of the index's path asked for (nil if absent). Read by user id, it
// also holds the user's stored VRF proof and index (User false, and nothing
// else but the epoch, if the user has no account in that read view).
type Point struct {
	Epoch   *Epoch // nil before the first epoch, or when not asked for
	Account *Account
	Records [][]byte // by PointQuery.Depths, in order
	// Incomplete means a query without the epoch row, by index, found no
	// tile at the first depth asked for: nothing was read (ask again with
	// the epoch row).
	Incomplete bool

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
	// NoEpoch leaves the latest epoch's row out (a frontend serving its
	// installed view, which checks the records against that view's map
	// root): one table less to read.
	NoEpoch bool
}

// TileKey is the map_kv key of the tile at depth (a multiple of 8) on
// index's path (vmap.TileID.Key).
func TileKey(index [32]byte, depth uint8) []byte {
	return append(append(make([]byte, 0, depth/8+1), index[:depth/8]...), depth)
}

// pointShape is what ReadPoint's statement depends on (pointSQL).
type pointShape struct {
	byUser, noEpoch bool
	depths          string
}

// pointSQL builds ReadPoint's statement for a query shape: one SELECT of
// at most one row of primary-key reads joined on constant keys (or keys
// computed from the users row), which the server runs as a handful of
// const-table reads with no temporary table. The first table is the epoch
// row (the latest), else the users row (by user), else the first tile (by
// index), else the account.
func pointSQL(q PointQuery) string {
	var b strings.Builder
	b.WriteString("SELECT a.version, a.log_index, a.entry_hash, a.leaf")
	if !q.NoEpoch {
		b.WriteString(", e.epoch, e.map_root, e.log_size, e.checkpoint")
	}
	if q.ByUser {
		b.WriteString(", u.vrf_index, u.vrf_proof")
	}
	for i := range q.Depths {
		fmt.Fprintf(&b, ", t%d.v", i)
	}
	tile := func(i int) string {
		if q.ByUser {
			return fmt.Sprintf("CONCAT(LEFT(u.vrf_index, %d), X'%02x')", q.Depths[i]/8, q.Depths[i])
		}
		return "?"
	}
	switch {
	case !q.NoEpoch:
		b.WriteString(" FROM epochs e")
		if q.ByUser {
			b.WriteString(" LEFT JOIN users u ON u.user_id = ? LEFT JOIN accounts a ON a.vrf_index = u.vrf_index")
		} else {
			b.WriteString(" LEFT JOIN accounts a ON a.vrf_index = ?")
		}
		for i := range q.Depths {
			fmt.Fprintf(&b, " LEFT JOIN map_kv t%d ON t%d.k = %s", i, i, tile(i))
		}
		b.WriteString(" WHERE e.epoch = (SELECT MAX(epoch) FROM epochs)")
	case q.ByUser:
		b.WriteString(" FROM users u LEFT JOIN accounts a ON a.vrf_index = u.vrf_index")
		for i := range q.Depths {
			fmt.Fprintf(&b, " LEFT JOIN map_kv t%d ON t%d.k = %s", i, i, tile(i))
		}
		b.WriteString(" WHERE u.user_id = ?")
	case len(q.Depths) > 0:
		b.WriteString(" FROM map_kv t0 LEFT JOIN accounts a ON a.vrf_index = ?")
		for i := 1; i < len(q.Depths); i++ {
			fmt.Fprintf(&b, " LEFT JOIN map_kv t%d ON t%d.k = ?", i, i)
		}
		b.WriteString(" WHERE t0.k = ?")
	default:
		b.WriteString(" FROM accounts a WHERE a.vrf_index = ?")
	}
	return b.String()
}

// pointArgs are the parameters of pointSQL(q), in order.
func pointArgs(q PointQuery) []any {
	if q.ByUser {
		return []any{[]byte(q.UserID)}
	}
	args := []any{q.Index[:]}
	if q.NoEpoch && len(q.Depths) > 0 {
		for _, d := range q.Depths[1:] {
			args = append(args, TileKey(q.Index, d))
		}
		return append(args, TileKey(q.Index, q.Depths[0]))
	}
	for _, d := range q.Depths {
		args = append(args, TileKey(q.Index, d))
	}
	return args
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
	stmt, err := s.stmts.get(ctx, s.db, pointShape{q.ByUser, q.NoEpoch, string(q.Depths)}, func() string { return pointSQL(q) })
	if err != nil {
		return nil, err
	}
	var root, hash, leaf, cp, uIndex, uProof []byte
	var epoch, size sql.NullInt64
	var version, li sql.NullInt64
	dest := []any{&version, &li, &hash, &leaf}
	if !q.NoEpoch {
		dest = append(dest, &epoch, &root, &size, &cp)
	}
	if q.ByUser {
		dest = append(dest, &uIndex, &uProof)
	}
	p := &Point{Records: make([][]byte, len(q.Depths))}
	for i := range q.Depths {
		dest = append(dest, &p.Records[i])
	}
	err = stmt.QueryRowContext(ctx, pointArgs(q)...).Scan(dest...)
	switch {
	case errors.Is(err, sql.ErrNoRows) && !q.NoEpoch:
		return &Point{}, nil // no epoch yet
	case errors.Is(err, sql.ErrNoRows) && q.ByUser:
		return &Point{}, nil // no such user
	case errors.Is(err, sql.ErrNoRows) && len(q.Depths) > 0:
		return &Point{Incomplete: true}, nil
	case errors.Is(err, sql.ErrNoRows):
		return p, nil // no such account
	case err != nil:
		return nil, err
	}
	if !q.NoEpoch {
		if len(root) != 32 {
			return nil, fmt.Errorf("%w: map root of epoch %d", ErrCorrupt, epoch.Int64)
		}
		p.Epoch = &Epoch{Epoch: uint64(epoch.Int64), LogSize: uint64(size.Int64), Checkpoint: cp}
		copy(p.Epoch.MapRoot[:], root)
	}
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

// stmtCache holds prepared statements by shape: a comparable key from
// which the statement's text follows (pointShape, pointsShape), so a read
// neither builds nor hashes the text. database/sql prepares a Stmt once on
// each connection that runs it and reuses it there, so a lookup is one
// COM_STMT_EXECUTE round trip (no prepare, no client-side interpolation,
// no server-side parse).
type stmtCache struct {
	mu sync.Mutex
	m  map[any]*sql.Stmt
}

// maxStmts bounds the cached statements (the shapes are few: two per
// number of tile levels read, and ReadPoints' up to 7 x 7 per pair of tile
// shapes, by index and by user id).
const maxStmts = 256

// get returns the prepared statement of shape key, preparing text() the
// first time.
func (c *stmtCache) get(ctx context.Context, db *sql.DB, key any, text func() string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[key]; ok {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, text())
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) >= maxStmts {
		for _, old := range c.m {
			old.Close()
		}
		c.m = map[any]*sql.Stmt{}
	}
	c.m[key] = st
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

// ReadPoints reads, in one statement (one round trip, one read view), the
// Points of several queries, one per query in order. Every query leaves the
// epoch row out (each Point is checked against the reader's view). A query
// by index reads its account record and the path tiles of its Depths (the
// same Depths for every query by index); a query by user id reads the users
// row, the account record of the stored index and the path tiles of its
// Depths (the same for every query by user id; the statement computes their
// keys from the users row). The statement is UNION ALL parts of
// primary-key reads (users joined to accounts, users joined to map_kv once
// per user depth, accounts, map_kv), prepared per shape: each part's number
// of keys is rounded up to a power of two (the last key repeated) so the
// shapes stay few.
func (s *Store) ReadPoints(ctx context.Context, qs []PointQuery) ([]*Point, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	var depths, userDepths []uint8
	var byUser, byIndex []int
	for i, q := range qs {
		switch {
		case !q.NoEpoch:
			return nil, errors.New("sqlstate: ReadPoints reads without the epoch row")
		case q.ByUser && len(byUser) > 0 && !slicesEqual(q.Depths, userDepths):
			return nil, errors.New("sqlstate: ReadPoints reads one tile shape by user id")
		case q.ByUser:
			userDepths = q.Depths
			byUser = append(byUser, i)
		case len(byIndex) > 0 && !slicesEqual(q.Depths, depths):
			return nil, errors.New("sqlstate: ReadPoints reads one tile shape")
		default:
			depths = q.Depths
			byIndex = append(byIndex, i)
		}
	}
	for _, d := range append(slices.Clone(depths), userDepths...) {
		if d%8 != 0 {
			return nil, fmt.Errorf("sqlstate: tile depth %d is not a multiple of 8", d)
		}
	}
	pow2 := func(k int) int {
		n := 0
		if k > 0 {
			n = 1
		}
		for n < k {
			n *= 2
		}
		return n
	}
	nu, ni := pow2(len(byUser)), pow2(len(byIndex))
	stmt, err := s.stmts.get(ctx, s.db, pointsShape{nu, ni, string(userDepths), string(depths)}, func() string { return pointsSQL(nu, ni, userDepths, depths) })
	if err != nil {
		return nil, err
	}
	args := make([]any, 0, nu*(1+len(userDepths))+ni*(1+len(depths)))
	for range 1 + len(userDepths) {
		for i := range nu {
			args = append(args, qs[byUser[min(i, len(byUser)-1)]].UserID)
		}
	}
	at := func(i int) *PointQuery { return &qs[byIndex[min(i, len(byIndex)-1)]] }
	for i := range ni {
		args = append(args, at(i).Index[:])
	}
	for i := range ni {
		for _, d := range depths {
			args = append(args, TileKey(at(i).Index, d))
		}
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	accounts := make(map[[32]byte]*Account, len(byIndex))
	users := make(map[string]*Point, len(byUser))
	var tiles map[string][]byte
	// RawBytes: the driver's buffer, valid until the next row; what a
	// Point keeps (the leaf, the VRF proof, a tile) is copied once.
	var kind int64
	var k, uIndex, uProof, hash, v sql.RawBytes
	var version, li sql.NullInt64
	dest := []any{&kind, &k, &uIndex, &uProof, &version, &li, &hash, &v}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		var a *Account
		if version.Valid {
			if len(hash) != 32 {
				return nil, fmt.Errorf("%w: entry hash of %d bytes", ErrCorrupt, len(hash))
			}
			a = &Account{Version: uint64(version.Int64), LogIndex: uint64(li.Int64), Leaf: bytes.Clone(v), EntryHash: [32]byte(hash)}
		}
		switch kind {
		case 1:
			if tiles == nil {
				tiles = map[string][]byte{}
			}
			tiles[string(k)] = bytes.Clone(v)
		case 2:
			if len(uIndex) != 32 || len(uProof) != 80 {
				return nil, fmt.Errorf("%w: users row of %q", ErrCorrupt, k)
			}
			users[string(k)] = &Point{User: true, VRFProof: bytes.Clone(uProof), Account: a, Index: [32]byte(uIndex)}
		default:
			if len(k) != 32 || a == nil {
				return nil, fmt.Errorf("%w: account row", ErrCorrupt)
			}
			accounts[[32]byte(k)] = a
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*Point, len(qs))
	for _, i := range byUser {
		p := users[qs[i].UserID]
		if p == nil {
			out[i] = &Point{} // no such user
			continue
		}
		if len(userDepths) > 0 {
			// A copy per query: two queries of one user get one
			// Point each.
			c := *p
			c.Records = make([][]byte, len(userDepths))
			for j, d := range userDepths {
				c.Records[j] = tiles[string(TileKey(c.Index, d))]
			}
			p = &c
		}
		out[i] = p
	}
	for _, i := range byIndex {
		q := &qs[i]
		p := &Point{Account: accounts[q.Index], Records: make([][]byte, len(depths))}
		for j, d := range depths {
			p.Records[j] = tiles[string(TileKey(q.Index, d))]
		}
		out[i] = p
	}
	return out, nil
}

func slicesEqual(a, b []uint8) bool { return string(a) == string(b) }

// pointsShape is a ReadPoints statement's shape: keys per part (powers
// of two) and tile depths, by user id and by index.
type pointsShape struct {
	nu, ni            int
	userDepths, depth string
}

// pointsSQL builds the ReadPoints statement of a shape: UNION ALL parts
// of primary-key reads (see ReadPoints). Columns: kind (0 account, 1 tile,
// 2 user), key, vrf_index, vrf_proof, version, log_index, entry_hash,
// value (leaf or tile).
func pointsSQL(nu, ni int, userDepths, depths []uint8) string {
	var b strings.Builder
	part := func(sel string, n int) {
		if n == 0 {
			return
		}
		if b.Len() > 0 {
			b.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&b, sel, placeholders(n))
	}
	part("SELECT 2 AS kind, u.user_id AS k, u.vrf_index AS i, u.vrf_proof AS p, a.version, a.log_index, a.entry_hash, a.leaf AS v"+
		" FROM users u LEFT JOIN accounts a ON a.vrf_index = u.vrf_index WHERE u.user_id IN (%s)", nu)
	for _, d := range userDepths {
		part(fmt.Sprintf("SELECT 1, t.k, NULL, NULL, NULL, NULL, NULL, t.v FROM users u JOIN map_kv t ON t.k = CONCAT(LEFT(u.vrf_index, %d), X'%02x')", d/8, d)+
			" WHERE u.user_id IN (%s)", nu)
	}
	part("SELECT 0, vrf_index, NULL, NULL, version, log_index, entry_hash, leaf FROM accounts WHERE vrf_index IN (%s)", ni)
	part("SELECT 1, k, NULL, NULL, NULL, NULL, NULL, v FROM map_kv WHERE k IN (%s)", ni*len(depths))
	return b.String()
}
