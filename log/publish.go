package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// ErrCheckpointConflict is returned (wrapped) by CheckpointStore.StoreCheckpoint
// when the latest stored checkpoint is not the expected previous one.
var ErrCheckpointConflict = errors.New("log: latest checkpoint changed concurrently")

// A CheckpointStore durably keeps the latest signed checkpoint of a log.
type CheckpointStore interface {
	// LatestCheckpoint returns the latest stored signed checkpoint note, or
	// nil if none was ever stored.
	LatestCheckpoint(ctx context.Context) ([]byte, error)

	// StoreCheckpoint atomically replaces the latest checkpoint prev (nil
	// for none) by next, and returns only once next is durable. If the
	// latest checkpoint is not prev it stores nothing and returns an error
	// wrapping ErrCheckpointConflict.
	StoreCheckpoint(ctx context.Context, prev, next []byte) error
}

// A StoredChecker is a Backend that can re-check its own stored hashes.
type StoredChecker interface {
	// CheckStored recomputes, from the stored leaf bytes of [start, end),
	// every stored hash derived from them and returns an error wrapping
	// ErrCorrupt if one differs.
	CheckStored(ctx context.Context, start, end uint64) error
}

// publishChunk is how many leaves Publish reads at a time.
const publishChunk = 4096

// Publish signs and stores a checkpoint for the current size of the log, and
// returns the signed note. It verifies before it signs:
//
//  1. The latest stored checkpoint, if any, must open with verifier and
//     have this origin; the log must not have shrunk below its size.
//  2. The compact range of that checkpoint's tree is rebuilt from the
//     inclusion proof of its last leaf and checked against its signed root;
//     the new root is then recomputed from the stored bytes of every new
//     leaf, and must equal b.RootHash. With no previous checkpoint, the root
//     is recomputed from every leaf.
//  3. If b is a StoredChecker, every stored hash of the new leaves is
//     re-checked against recomputation.
//  4. b's consistency proof from the previous checkpoint must verify.
//
// Only then is the checkpoint signed, opened again with verifier, and stored
// with a compare-and-swap; it is returned only after it is durable. If the
// log has not grown, the stored checkpoint is returned unchanged (after
// checking that b still has its root), so two calls never sign two different
// roots for one size. Mismatches wrap ErrCorrupt and nothing is signed.
func Publish(ctx context.Context, b Backend, cs CheckpointStore, signer note.Signer, verifier note.Verifier, origin string) ([]byte, error) {
	if signer.Name() != origin || verifier.Name() != origin {
		return nil, fmt.Errorf("log: publish: signer %q and verifier %q must both be named %q", signer.Name(), verifier.Name(), origin)
	}
	prevNote, err := cs.LatestCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("log: publish: reading latest checkpoint: %w", err)
	}
	var prev Checkpoint
	havePrev := prevNote != nil
	if havePrev {
		if prev, _, err = OpenCheckpoint(prevNote, verifier, origin); err != nil {
			return nil, fmt.Errorf("log: publish: latest stored checkpoint: %w", err)
		}
	}
	size, err := b.Size(ctx)
	if err != nil {
		return nil, fmt.Errorf("log: publish: %w", err)
	}
	if havePrev && size < prev.Size {
		return nil, fmt.Errorf("log: publish: %w: log size %d is below the signed checkpoint size %d", ErrCorrupt, size, prev.Size)
	}
	if havePrev && size == prev.Size {
		root, err := b.RootHash(ctx, size)
		if err != nil {
			return nil, fmt.Errorf("log: publish: %w", err)
		}
		if !bytes.Equal(root, prev.Hash[:]) {
			return nil, fmt.Errorf("log: publish: %w: root at size %d is %x, signed checkpoint has %x", ErrCorrupt, size, root, prev.Hash)
		}
		return prevNote, nil
	}

	root, err := VerifiedRoot(ctx, b, prev.Size, prev.Hash[:], size)
	if err != nil {
		return nil, fmt.Errorf("log: publish: %w", err)
	}
	if sc, ok := b.(StoredChecker); ok {
		if err := sc.CheckStored(ctx, prev.Size, size); err != nil {
			return nil, fmt.Errorf("log: publish: %w", err)
		}
	}
	if havePrev {
		p, err := b.ConsistencyProof(ctx, prev.Size, size)
		if err != nil {
			return nil, fmt.Errorf("log: publish: %w", err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prev.Size, size, p, prev.Hash[:], root); err != nil {
			return nil, fmt.Errorf("log: publish: %w: consistency proof from signed size %d to %d: %v", ErrCorrupt, prev.Size, size, err)
		}
	}

	next := Checkpoint{Origin: origin, Size: size}
	copy(next.Hash[:], root)
	msg, err := SignCheckpoint(next, signer)
	if err != nil {
		return nil, fmt.Errorf("log: publish: %w", err)
	}
	if c, _, err := OpenCheckpoint(msg, verifier, origin); err != nil || c.Size != size || c.Hash != next.Hash {
		return nil, fmt.Errorf("log: publish: signed checkpoint does not open with the verifier: %v", err)
	}
	if err := cs.StoreCheckpoint(ctx, prevNote, msg); err != nil {
		return nil, fmt.Errorf("log: publish: storing checkpoint: %w", err)
	}
	return msg, nil
}

// VerifiedRoot returns the root of the first newSize leaves of b, recomputed
// from leaf bytes rather than taken from b's stored hashes. oldRoot must be
// the trusted (signed) root at oldSize: the compact range of [0, oldSize) is
// rebuilt from b's inclusion proof of leaf oldSize-1 and checked against it,
// and the leaves [oldSize, newSize) are read with Entries and hashed. The
// result must equal b.RootHash(newSize). Errors from mismatches wrap ErrCorrupt.
// With oldSize 0, oldRoot is ignored and every leaf is read.
func VerifiedRoot(ctx context.Context, b Backend, oldSize uint64, oldRoot []byte, newSize uint64) ([]byte, error) {
	if oldSize > newSize {
		return nil, fmt.Errorf("%w: old size %d > new size %d", ErrRange, oldSize, newSize)
	}
	h := rfc6962.DefaultHasher
	f := &compact.RangeFactory{Hash: h.HashChildren}
	rng := f.NewEmptyRange(0)
	if oldSize > 0 {
		last, err := b.Entries(ctx, oldSize-1, oldSize)
		if err != nil {
			return nil, err
		}
		p, err := b.InclusionProof(ctx, oldSize-1, oldSize)
		if err != nil {
			return nil, err
		}
		// The inclusion proof of the last leaf lists the roots of the compact
		// range [0, oldSize-1), smallest first.
		hashes := make([][]byte, len(p))
		for i, x := range p {
			hashes[len(p)-1-i] = x
		}
		if rng, err = f.NewRange(0, oldSize-1, hashes); err != nil {
			return nil, fmt.Errorf("%w: inclusion proof of leaf %d in size %d has %d hashes: %v", ErrCorrupt, oldSize-1, oldSize, len(p), err)
		}
		if err := rng.Append(h.HashLeaf(last[0]), nil); err != nil {
			return nil, err
		}
		got, err := rng.GetRootHash(nil)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(got, oldRoot) {
			return nil, fmt.Errorf("%w: root recomputed at signed size %d is %x, signed root is %x", ErrCorrupt, oldSize, got, oldRoot)
		}
	}
	for lo := oldSize; lo < newSize; {
		hi := min(newSize, lo+publishChunk)
		leaves, err := b.Entries(ctx, lo, hi)
		if err != nil {
			return nil, err
		}
		if uint64(len(leaves)) != hi-lo {
			return nil, fmt.Errorf("%w: Entries(%d, %d) returned %d leaves", ErrCorrupt, lo, hi, len(leaves))
		}
		for _, l := range leaves {
			if err := rng.Append(h.HashLeaf(l), nil); err != nil {
				return nil, err
			}
		}
		lo = hi
	}
	root := h.EmptyRoot()
	if newSize > 0 {
		var err error
		if root, err = rng.GetRootHash(nil); err != nil {
			return nil, err
		}
	}
	stored, err := b.RootHash(ctx, newSize)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(stored, root) {
		return nil, fmt.Errorf("%w: root at size %d recomputed from leaves is %x, backend root is %x", ErrCorrupt, newSize, root, stored)
	}
	return root, nil
}
