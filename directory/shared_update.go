package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/sqlstate"
	klog "github.com/keyline/keyline/log"
)

// latestShared returns the account's latest accepted entry: its newest
// queued update, else its committed record, else nil.
func (s *Server) latestShared(ctx context.Context, index [32]byte) (*entry, error) {
	q, err := s.sh.st.LatestQueued(ctx, index)
	if err != nil {
		return nil, s.stateErr(err)
	}
	if q != nil {
		u, err := klog.ParseAccountUpdate(q.Leaf)
		if err != nil {
			return nil, fmt.Errorf("%w: queued update %d: %v", errCorrupt, q.ID, err)
		}
		st, ra, err := stateOf(u)
		if err != nil {
			return nil, fmt.Errorf("%w: queued update %d: %w", errCorrupt, q.ID, err)
		}
		return &entry{index: index, userID: q.UserID, version: q.Version, prevHash: q.PrevHash, entryHash: q.EntryHash, leaf: q.Leaf, state: st, reset: ra}, nil
	}
	return s.committedShared(ctx, index)
}

// committedShared returns the latest committed entry of index, or nil.
func (s *Server) committedShared(ctx context.Context, index [32]byte) (*entry, error) {
	a, err := s.sh.st.Account(ctx, index)
	if err != nil {
		return nil, s.stateErr(err)
	}
	if a == nil {
		return nil, nil
	}
	if klog.EntryHash(a.Leaf) != a.EntryHash {
		return nil, fmt.Errorf("%w: account record entry hash mismatch", errCorrupt)
	}
	return entryFromRecord(index, &accountRecord{Version: a.Version, LogIndex: a.LogIndex, EntryHash: a.EntryHash, Leaf: a.Leaf})
}

// enqueueShared puts the validated entry e (leaf built) in the durable
// queue and waits until the sequencer has published it or refused it.
func (s *Server) enqueueShared(ctx context.Context, e *entry) (*UpdateResult, error) {
	select {
	case <-s.closing:
		return nil, apierr.New(codes.Unavailable, apierr.Unavailable, "directory is shutting down")
	default:
	}
	q := &sqlstate.Queued{Index: e.index, Version: e.version, PrevHash: e.prevHash, EntryHash: e.entryHash, UserID: e.userID, Leaf: e.leaf}
	if e.version == 1 {
		q.VRFProof = e.pi
	}
	id, err := s.sh.st.Enqueue(ctx, q, s.cfg.QueueSize)
	switch {
	case errors.Is(err, sqlstate.ErrDuplicate):
		return nil, apierr.New(codes.Aborted, apierr.ConcurrentUpdate, "another update of %q was accepted meanwhile; look it up and retry", e.userID)
	case errors.Is(err, sqlstate.ErrQueueFull):
		return nil, apierr.New(codes.ResourceExhausted, apierr.QueueFull, "the update queue is full (%d updates waiting for an epoch); retry later", s.cfg.QueueSize)
	case err != nil:
		return nil, s.stateErr(err)
	}
	ch := make(chan sqlstate.Result, 1)
	s.sh.waitMu.Lock()
	s.sh.waiters[id] = ch
	s.sh.waitMu.Unlock()
	defer func() {
		s.sh.waitMu.Lock()
		delete(s.sh.waiters, id)
		s.sh.waitMu.Unlock()
	}()
	select {
	case r := <-ch:
		if r.Status == sqlstate.StatusFailed {
			return nil, apierr.New(codes.Code(r.Code), r.Reason, "%s", r.Message)
		}
		return &UpdateResult{Epoch: r.Epoch, LogIndex: r.LogIndex, Leaf: e.leaf, Checkpoint: r.Checkpoint}, nil
	case <-ctx.Done():
		return nil, ctxError(ctx.Err(), "waiting for the epoch; the update is queued and may still be published")
	case <-s.closing:
		return nil, apierr.New(codes.Unavailable, apierr.Unavailable, "directory is shutting down; the update is queued and may still be published")
	}
}

// waiterLoop delivers the results of the queued updates this process
// waits for, polling the queue table.
func (s *Server) waiterLoop() {
	s.everyPoll(s.deliverResults)
}

// deliverResults reads the results of the queued updates this process
// waits for and hands each to its waiter.
func (s *Server) deliverResults() {
	s.sh.waitMu.Lock()
	ids := make([]uint64, 0, len(s.sh.waiters))
	for id := range s.sh.waiters {
		ids = append(ids, id)
	}
	s.sh.waitMu.Unlock()
	for start := 0; start < len(ids); start += 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := s.sh.st.Results(ctx, ids[start:min(len(ids), start+1000)])
		cancel()
		if err != nil {
			s.cfg.Logf("directory: reading queued update results: %v", err)
			break
		}
		s.sh.waitMu.Lock()
		for id, r := range res {
			if ch, ok := s.sh.waiters[id]; ok {
				select {
				case ch <- r:
				default:
				}
			}
		}
		s.sh.waitMu.Unlock()
	}
}

// sharedQueueDepth counts the queued updates (-1 on a database error).
func (s *Server) sharedQueueDepth() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := s.sh.st.QueueLen(ctx)
	if err != nil {
		return -1
	}
	return n
}
