package auditor

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/internal/atomicfile"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/auditor/internal/mtree"
)

// violate builds, self-checks and durably records the evidence for f, found
// while verifying the checkpoint cp (signed note). mem holds the hashes of
// the batch being replayed (nil for checkpoint rules). It returns the
// *Violation, or another error if the evidence could not be built.
func (a *Auditor) violate(ctx context.Context, s *state, mem *mtree.Mem, note []byte, cp klog.Checkpoint, f *finding) error {
	e := &Evidence{Format: EvidenceFormat, Rule: f.rule, LogIndex: f.x, PrevIndex: f.prev, Detail: f.detail}
	var err error
	switch f.rule {
	case RuleSplitView:
		e.LogIndex = 0
		e.Checkpoints = [][]byte{s.cpNote, note}
	case RuleFork:
		e.LogIndex = 0
		e.Checkpoints = [][]byte{s.cpNote, note}
		err = a.db.View(func(tx *bbolt.Tx) error {
			get := dbNodes(tx)
			root, err := mtree.Root(get, cp.Size)
			if err != nil {
				return err
			}
			p, err := mtree.Consistency(get, cp.Size, s.cp.Size)
			if err != nil {
				return err
			}
			e.Consistency = &ConsistencyEvidence{OldRoot: root, Proof: p}
			return nil
		})
	default:
		e.Checkpoints = [][]byte{note}
		err = a.segments(ctx, mem, cp, f, e)
	}
	if err != nil {
		return fmt.Errorf("auditor: building evidence for %s at %d: %w", string(f.rule), f.x, err)
	}
	ev, err := e.Marshal()
	if err != nil {
		return err
	}
	if _, err := VerifyEvidence(a.trust, ev); err != nil {
		return fmt.Errorf("auditor: internal error: evidence for %s (%s) does not verify: %w", string(f.rule), f.detail, err)
	}
	path := evidencePath(a.dir, e)
	if err := atomicfile.Write(path, ev, 0o600); err != nil {
		return fmt.Errorf("auditor: writing evidence: %w", err)
	}
	if err := a.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bMeta).Put(kViolation, ev) }); err != nil {
		return err
	}
	return &Violation{Rule: e.Rule, LogIndex: e.LogIndex, Detail: e.Detail, Evidence: ev, EvidencePath: path}
}

// segments fills e.Segments with the leaves f needs, proven in cp.
func (a *Auditor) segments(ctx context.Context, mem *mtree.Mem, cp klog.Checkpoint, f *finding, e *Evidence) error {
	// Hash the rest of the checkpoint's tree so every node is known.
	for i := mem.Range.End(); i < cp.Size; {
		end := min(cp.Size, i+uint64(a.opts.BatchSize))
		ls, err := a.fetch(ctx, i, end)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if err := mem.Append(rfc6962.DefaultHasher.HashLeaf(l)); err != nil {
				return err
			}
		}
		i = end
	}
	type span struct{ a, b uint64 }
	var spans []span
	switch {
	case f.rule == RuleMapRoot:
		spans = []span{{0, f.x + 1}}
	case f.cover && f.prev != nil:
		spans = []span{{*f.prev, f.x + 1}}
	case f.cover:
		spans = []span{{0, f.x + 1}}
	case f.prev != nil:
		spans = []span{{*f.prev, *f.prev + 1}, {f.x, f.x + 1}}
	default:
		spans = []span{{f.x, f.x + 1}}
	}
	return a.db.View(func(tx *bbolt.Tx) error {
		get := mtree.Chain(mem.Get, dbNodes(tx))
		root, err := mtree.Root(get, cp.Size)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, cp.Hash[:]) {
			return fmt.Errorf("%w: entries do not hash to the checkpoint's root", ErrSource)
		}
		for _, sp := range spans {
			leaves, err := a.fetch(ctx, sp.a, sp.b)
			if err != nil {
				return err
			}
			for k, l := range leaves {
				h, err := get(compact.NewNodeID(0, sp.a+uint64(k)))
				if err != nil {
					return err
				}
				if !bytes.Equal(h, rfc6962.DefaultHasher.HashLeaf(l)) {
					return fmt.Errorf("%w: leaf %d changed", ErrSource, sp.a+uint64(k))
				}
			}
			left, err := mtree.RangeHashes(get, 0, sp.a)
			if err != nil {
				return err
			}
			right, err := mtree.RangeHashes(get, sp.b, cp.Size)
			if err != nil {
				return err
			}
			e.Segments = append(e.Segments, Segment{Start: sp.a, Leaves: leaves, Left: left, Right: right})
		}
		return nil
	})
}
