package directory

import (
	"context"
	"runtime"
	"time"

	"github.com/keyline/keyline/directory/sqlstate"
)

// Lookups that read the database for the installed view (without the
// epoch row: by VRF index, or by user id when the VRF proof is not in
// memory) are grouped: a lookup hands its query to the reader, and the
// reader takes it with those already waiting (up to maxPointBatch) and
// reads them all in one statement (sqlstate.ReadPoints). Nothing waits on
// purpose: alone, a lookup is read at once; under load, the queries that
// arrive while a statement is out share the next one, which divides the
// per-statement cost of the frontend (socket writes and reads, result
// metadata) and of the database (about 45 µs of mariadbd CPU per
// statement against about 12 µs per lookup in it) among them. One reader:
// with two, statements carried 4 lookups on average in the 16-client gRPC
// benchmark, with one 7, for less CPU on both sides (docs/scaling.md).
// Each lookup still checks its own records against the view's root.
const (
	pointReaders  = 1
	maxPointBatch = 32
	// pointGatherRounds bounds how often the reader yields (to let
	// lookups that are ready to run join the statement) before sending
	// it.
	pointGatherRounds = 2
)

type pointReq struct {
	q    sqlstate.PointQuery
	done chan pointRes // buffered: the reader never blocks on it
}

type pointRes struct {
	p   *sqlstate.Point
	err error
}

// readPoint reads one Point: through the batching readers when it is a
// query without the epoch row, else on its own.
func (s *Server) readPoint(ctx context.Context, q sqlstate.PointQuery) (*sqlstate.Point, error) {
	if !q.NoEpoch || s.sh.batch == nil {
		return s.sh.st.ReadPoint(ctx, q)
	}
	r := &pointReq{q: q, done: make(chan pointRes, 1)}
	select {
	case s.sh.batch <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closing:
		return s.sh.st.ReadPoint(ctx, q) // the readers are stopping
	}
	select {
	case res := <-r.done:
		return res.p, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pointReader serves batches from s.sh.batch until the server closes.
func (s *Server) pointReader() {
	batch := make([]*pointReq, 0, maxPointBatch)
	qs := make([]sqlstate.PointQuery, 0, maxPointBatch)
	for {
		batch, qs = batch[:0], qs[:0]
		// The batch's tile shapes: of its queries by index, by user id.
		var depths [2][]uint8
		var seen [2]bool
		fits := func(q *sqlstate.PointQuery) bool {
			k := 0
			if q.ByUser {
				k = 1
			}
			if !seen[k] {
				depths[k], seen[k] = q.Depths, true
				return true
			}
			return slicesEqualU8(q.Depths, depths[k])
		}
		select {
		case r := <-s.sh.batch:
			fits(&r.q)
			batch = append(batch, r)
		case <-s.closing:
			return
		}
		for round := 0; ; round++ {
			n := len(batch)
		more:
			for len(batch) < maxPointBatch {
				select {
				case r := <-s.sh.batch:
					if !fits(&r.q) {
						// Another tile shape (the levels grew): on its own.
						p, err := s.sh.st.ReadPoint(context.Background(), r.q)
						r.done <- pointRes{p, err}
						continue
					}
					batch = append(batch, r)
				default:
					break more
				}
			}
			if round == pointGatherRounds || len(batch) == maxPointBatch || round > 0 && len(batch) == n {
				break
			}
			// Let the goroutines that are ready to run (lookups on
			// their way here) run first: under load some of them join
			// this statement; when none is ready this returns at once.
			runtime.Gosched()
		}
		for _, r := range batch {
			qs = append(qs, r.q)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ps, err := s.sh.st.ReadPoints(ctx, qs)
		cancel()
		s.sh.batchStmts.Add(1)
		s.sh.batchPoints.Add(uint64(len(qs)))
		for i, r := range batch {
			if err != nil {
				r.done <- pointRes{nil, err}
			} else {
				r.done <- pointRes{ps[i], nil}
			}
		}
	}
}

func slicesEqualU8(a, b []uint8) bool { return string(a) == string(b) }
