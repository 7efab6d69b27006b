package auditor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor/internal/mtree"
	"github.com/keyline/keyline/verifier/vmap"
)

// EvidenceFormat is the value of the "format" field of every evidence file.
const EvidenceFormat = "keyline-audit-evidence/v1"

// MaxEvidenceSize bounds the evidence files VerifyEvidence accepts (1 GiB):
// map-root evidence holds every leaf up to the epoch record, so it grows with
// the log.
const MaxEvidenceSize = 1 << 30

// Bounds on the parts of an evidence file.
const (
	maxEvidenceCheckpoints = 2
	maxEvidenceSegments    = 2
	maxProofHashes         = 128
)

// Evidence is the JSON evidence file the auditor writes when it finds a
// violation. Byte fields are standard padded base64 (encoding/json).
//
//	{
//	  "format": "keyline-audit-evidence/v1",
//	  "rule": "prev-hash",
//	  "log_index": 1234,            // offending leaf (checkpoint rules: 0)
//	  "prev_index": 1200,           // earlier leaf the rule compares with, if any
//	  "detail": "...",              // human-readable, not verified
//	  "checkpoints": ["<signed note>", ...],
//	  "segments": [{"start": 1200, "leaves": ["<leaf>"...],
//	                "left": ["<hash>"...], "right": ["<hash>"...]}],
//	  "consistency": {"old_root": "<hash>", "proof": ["<hash>"...]}
//	}
//
// Every segment is a run of consecutive leaves [start, start+len(leaves)) of
// the tree of checkpoints[0]: left holds the compact range [0, start) and
// right the compact range [end, size), so that left, the leaves' hashes and
// right together hash to the checkpoint's root.
type Evidence struct {
	Format      string               `json:"format"`
	Rule        Rule                 `json:"rule"`
	LogIndex    uint64               `json:"log_index"`
	PrevIndex   *uint64              `json:"prev_index,omitempty"`
	Detail      string               `json:"detail,omitempty"`
	Checkpoints [][]byte             `json:"checkpoints"`
	Segments    []Segment            `json:"segments,omitempty"`
	Consistency *ConsistencyEvidence `json:"consistency,omitempty"`
}

// Segment is a run of consecutive leaves proven in the evidence's first
// checkpoint by the compact ranges on either side.
type Segment struct {
	Start  uint64   `json:"start"`
	Leaves [][]byte `json:"leaves"`
	Left   [][]byte `json:"left"`
	Right  [][]byte `json:"right"`
}

// ConsistencyEvidence proves, for fork evidence, that the tree of
// checkpoints[0] has the root OldRoot at the size of checkpoints[1].
type ConsistencyEvidence struct {
	OldRoot []byte   `json:"old_root"`
	Proof   [][]byte `json:"proof"`
}

// Finding is what VerifyEvidence established.
type Finding struct {
	Rule        Rule
	LogIndex    uint64
	Detail      string // recomputed by VerifyEvidence, not copied from the file
	Checkpoints []klog.Checkpoint
}

// ErrBadEvidence is wrapped by every VerifyEvidence error: the file is
// malformed, not signed by the directory's log key, inconsistent with its
// checkpoints, or does not show the violation it claims.
var ErrBadEvidence = errors.New("auditor: invalid evidence")

// ParseEvidence decodes an evidence file strictly (unknown fields, trailing
// data, a wrong format, an unknown rule and over-bound lists are rejected).
// It does not check signatures or proofs; see VerifyEvidence.
func ParseEvidence(data []byte) (*Evidence, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadEvidence}, args...)...)
	}
	if len(data) > MaxEvidenceSize {
		return nil, bad("%d bytes, over the %d-byte bound", len(data), MaxEvidenceSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Evidence
	if err := dec.Decode(&e); err != nil {
		return nil, bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("trailing data after the JSON object")
	}
	if err := checkEvidenceBase64(data); err != nil {
		return nil, bad("%v", err)
	}
	if e.Format != EvidenceFormat {
		return nil, bad("format %q, want %q", e.Format, EvidenceFormat)
	}
	if !knownRule(e.Rule) {
		return nil, bad("unknown rule %q", string(e.Rule))
	}
	if len(e.Checkpoints) == 0 || len(e.Checkpoints) > maxEvidenceCheckpoints {
		return nil, bad("%d checkpoints, want 1 or 2", len(e.Checkpoints))
	}
	if len(e.Segments) > maxEvidenceSegments {
		return nil, bad("%d segments, at most %d allowed", len(e.Segments), maxEvidenceSegments)
	}
	for i, s := range e.Segments {
		if len(s.Leaves) == 0 {
			return nil, bad("segment %d has no leaves", i)
		}
		if len(s.Left) > 64 || len(s.Right) > 64 {
			return nil, bad("segment %d: compact range over 64 hashes", i)
		}
		for _, h := range append(append([][]byte{}, s.Left...), s.Right...) {
			if len(h) != 32 {
				return nil, bad("segment %d: hash of %d bytes", i, len(h))
			}
		}
	}
	if c := e.Consistency; c != nil {
		if len(c.OldRoot) != 32 || len(c.Proof) > maxProofHashes {
			return nil, bad("consistency: bad root or proof length")
		}
	}
	return &e, nil
}

// Marshal returns the canonical JSON of e (indented, final newline).
func (e *Evidence) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// evidenceView is a parsed evidence file whose signatures and inclusion have
// been checked: leaves[i] is proven at log index i of cps[0].
type evidenceView struct {
	cps    []klog.Checkpoint
	leaves map[uint64][]byte
}

// covers reports whether every leaf in [a, b) is known.
func (v *evidenceView) covers(a, b uint64) bool {
	if b > a && b-a > uint64(len(v.leaves)) {
		return false
	}
	for i := a; i < b; i++ {
		if _, ok := v.leaves[i]; !ok {
			return false
		}
	}
	return true
}

// VerifyEvidence checks an evidence file offline against the directory's
// trust configuration: every checkpoint must carry a valid signature by the
// log key (witness cosignatures are not needed), every leaf must be proven in
// the first checkpoint, and the rule the file names must truly be broken by
// what it proves. It returns what it established, or an error wrapping
// ErrBadEvidence.
func VerifyEvidence(t *verifier.Trust, data []byte) (*Finding, error) {
	if t == nil || t.Log == nil {
		return nil, fmt.Errorf("%w: no trust configuration", ErrBadEvidence)
	}
	e, err := ParseEvidence(data)
	if err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) (*Finding, error) {
		return nil, fmt.Errorf("%w: %s: "+format, append([]any{ErrBadEvidence, string(e.Rule)}, args...)...)
	}
	v := &evidenceView{leaves: map[uint64][]byte{}}
	for i, n := range e.Checkpoints {
		cp, _, err := klog.OpenCheckpoint(n, t.Log, t.Origin)
		if err != nil {
			return bad("checkpoint %d: %v", i, err)
		}
		v.cps = append(v.cps, cp)
	}
	for i, s := range e.Segments {
		if err := v.addSegment(s); err != nil {
			return bad("segment %d: %v", i, err)
		}
	}
	f := &Finding{Rule: e.Rule, LogIndex: e.LogIndex, Checkpoints: v.cps}
	var detail string
	switch e.Rule {
	case RuleSplitView, RuleFork:
		detail, err = v.checkCheckpoints(e)
	case RuleCheckpointEnd:
		detail, err = v.checkEnd(e)
	case RuleEpochNumber, RuleEpochTime, RuleMapRoot:
		detail, err = v.checkEpoch(e)
	case RuleResetLogTime:
		detail, err = v.checkResetLogTime(t, e)
	default:
		detail, err = v.checkAccount(t, e)
	}
	if err != nil {
		return bad("%v", err)
	}
	f.Detail = detail
	return f, nil
}

func (v *evidenceView) addSegment(s Segment) error {
	cp := v.cps[0]
	end := s.Start + uint64(len(s.Leaves))
	if end < s.Start || end > cp.Size {
		return fmt.Errorf("leaves [%d, %d) outside the checkpoint's %d leaves", s.Start, end, cp.Size)
	}
	r, err := mtree.Factory.NewRange(0, s.Start, s.Left)
	if err != nil {
		return fmt.Errorf("left range: %v", err)
	}
	for _, l := range s.Leaves {
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(l), nil); err != nil {
			return err
		}
	}
	right, err := mtree.Factory.NewRange(end, cp.Size, s.Right)
	if err != nil {
		return fmt.Errorf("right range: %v", err)
	}
	if err := r.AppendRange(right, nil); err != nil {
		return err
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, cp.Hash[:]) {
		return fmt.Errorf("leaves [%d, %d) are not in the checkpoint's tree", s.Start, end)
	}
	for i, l := range s.Leaves {
		v.leaves[s.Start+uint64(i)] = l
	}
	return nil
}

func (v *evidenceView) checkCheckpoints(e *Evidence) (string, error) {
	if len(v.cps) != 2 || len(e.Segments) != 0 {
		return "", errors.New("needs exactly two checkpoints and no leaves")
	}
	a, b := v.cps[0], v.cps[1]
	if e.Rule == RuleSplitView {
		if a.Size != b.Size || a.Hash == b.Hash {
			return "", errors.New("the checkpoints do not have the same size and different roots")
		}
		return fmt.Sprintf("two signed checkpoints of size %d with roots %x and %x", a.Size, a.Hash[:8], b.Hash[:8]), nil
	}
	c := e.Consistency
	if c == nil || b.Size >= a.Size || b.Size == 0 {
		return "", errors.New("needs a consistency proof from the smaller (second) checkpoint's size to the first's")
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, b.Size, a.Size, c.Proof, c.OldRoot, a.Hash[:]); err != nil {
		return "", fmt.Errorf("consistency proof does not verify: %v", err)
	}
	if bytes.Equal(c.OldRoot, b.Hash[:]) {
		return "", errors.New("the smaller checkpoint is a prefix of the larger: no fork")
	}
	return fmt.Sprintf("the tree of size %d has root %x at size %d, but a signed checkpoint of size %d has root %x", a.Size, c.OldRoot[:8], b.Size, b.Size, b.Hash[:8]), nil
}

func (v *evidenceView) checkEnd(e *Evidence) (string, error) {
	cp := v.cps[0]
	if cp.Size == 0 || e.LogIndex != cp.Size-1 {
		return "", errors.New("log_index must be the checkpoint's last leaf")
	}
	leaf, ok := v.leaves[e.LogIndex]
	if !ok {
		return "", errors.New("the checkpoint's last leaf is not in the evidence")
	}
	l, err := klog.ParseLeaf(leaf)
	if err != nil {
		return "", fmt.Errorf("last leaf is malformed (evidence for %s instead): %v", string(RuleMalformedLeaf), err)
	}
	if l.Kind() == klog.KindEpochRecord {
		return "", errors.New("the checkpoint's last leaf is an EpochRecord")
	}
	return fmt.Sprintf("checkpoint of size %d ends with an AccountUpdate, not an EpochRecord", cp.Size), nil
}

// checkEpoch checks the epoch rules: e.LogIndex is an EpochRecord; for
// number and time, prev_index is the previous EpochRecord and every leaf in
// between is present (so none is an EpochRecord), or there is no prev_index
// and every leaf before log_index is present; for map-root, every leaf from
// 0 through log_index is present.
func (v *evidenceView) checkEpoch(e *Evidence) (string, error) {
	x := e.LogIndex
	leaf, ok := v.leaves[x]
	if !ok {
		return "", errors.New("the epoch record is not in the evidence")
	}
	er, err := klog.ParseEpochRecord(leaf)
	if err != nil {
		return "", fmt.Errorf("leaf %d is not an EpochRecord: %v", x, err)
	}
	if e.Rule == RuleMapRoot {
		if !v.covers(0, x) {
			return "", errors.New("map-root evidence must hold every leaf from 0 to the epoch record")
		}
		m := vmap.NewMemStore()
		pending := map[vmap.Index]vmap.Value{}
		for i := uint64(0); i <= x; i++ {
			l, err := klog.ParseLeaf(v.leaves[i])
			if err != nil {
				return "", fmt.Errorf("leaf %d is malformed (a %s violation): %v", i, string(RuleMalformedLeaf), err)
			}
			switch l := l.(type) {
			case *klog.AccountUpdate:
				pending[l.Index] = vmap.MapValue(l.Version, i, klog.EntryHash(v.leaves[i]))
			case *klog.EpochRecord:
				root, err := applyPending(m, pending)
				if err != nil {
					return "", err
				}
				clear(pending)
				if i == x {
					if root == er.MapRoot {
						return "", fmt.Errorf("the map root of epoch %d equals the recomputed root", er.Epoch)
					}
					return fmt.Sprintf("epoch %d (log index %d) has map root %x, the log implies %x", er.Epoch, x, er.MapRoot[:8], root[:8]), nil
				}
			}
		}
	}
	var prev *klog.EpochRecord
	from := uint64(0)
	if e.PrevIndex != nil {
		p := *e.PrevIndex
		if p >= x {
			return "", errors.New("prev_index must be before log_index")
		}
		pl, ok := v.leaves[p]
		if !ok {
			return "", errors.New("the previous epoch record is not in the evidence")
		}
		if prev, err = klog.ParseEpochRecord(pl); err != nil {
			return "", fmt.Errorf("leaf %d is not an EpochRecord: %v", p, err)
		}
		from = p + 1
	}
	if !v.covers(from, x) {
		return "", errors.New("every leaf between the previous epoch record (or the start) and the epoch record must be present")
	}
	for i := from; i < x; i++ {
		if l, err := klog.ParseLeaf(v.leaves[i]); err == nil && l.Kind() == klog.KindEpochRecord {
			return "", fmt.Errorf("leaf %d is an EpochRecord between them", i)
		}
	}
	rule, detail := checkEpoch(prev, er)
	if rule != e.Rule {
		return "", fmt.Errorf("the epoch records do not break %s", string(e.Rule))
	}
	return detail, nil
}

func applyPending(s vmap.Store, pending map[vmap.Index]vmap.Value) (vmap.Hash, error) {
	ups := make([]vmap.Update, 0, len(pending))
	for i, val := range pending {
		ups = append(ups, vmap.Update{Index: i, Value: val})
	}
	return vmap.Apply(s, ups)
}

// checkAccount checks the per-entry rules on log_index against prev_index.
func (v *evidenceView) checkAccount(t *verifier.Trust, e *Evidence) (string, error) {
	x := e.LogIndex
	xl, ok := v.leaves[x]
	if !ok {
		return "", errors.New("the offending leaf is not in the evidence")
	}
	xe, rule, detail := decodeEntry(xl)
	if e.Rule == RuleMalformedLeaf || e.Rule == RulePayload {
		if rule != e.Rule {
			return "", fmt.Errorf("leaf %d does not break %s", x, string(e.Rule))
		}
		return detail, nil
	}
	if rule != "" {
		return "", fmt.Errorf("leaf %d breaks %s (evidence for that rule instead)", x, string(rule))
	}
	if xe == nil {
		return "", fmt.Errorf("leaf %d is not an AccountUpdate", x)
	}
	var pe *entry
	if e.PrevIndex != nil {
		p := *e.PrevIndex
		pl, ok := v.leaves[p]
		if !ok {
			return "", errors.New("the previous leaf is not in the evidence")
		}
		var prule Rule
		pe, prule, _ = decodeEntry(pl)
		if prule != "" || pe == nil {
			return "", fmt.Errorf("leaf %d is not a decodable AccountUpdate", p)
		}
		if e.Rule == RuleUserIndex {
			if pe.u.Index == xe.u.Index || pe.state.UserID != xe.state.UserID {
				return "", errors.New("the two leaves do not show one user id at two indexes")
			}
			return fmt.Sprintf("user id %q at index %x (leaf %d) and index %x (leaf %d)", xe.state.UserID, pe.u.Index[:8], p, xe.u.Index[:8], x), nil
		}
		if p >= x || pe.u.Index != xe.u.Index {
			return "", errors.New("prev_index must be an earlier leaf of the same index")
		}
		if e.Rule == RuleVersionSkip && !v.latestBefore(xe.u.Index, p+1, x) {
			return "", errors.New("version-skip evidence must hold every leaf between the previous version and the offending one")
		}
	} else {
		if e.Rule == RuleUserIndex {
			return "", errors.New("needs prev_index")
		}
		if xe.u.Version != 1 && !v.latestBefore(xe.u.Index, 0, x) {
			return "", errors.New("evidence for a new index must hold every leaf before it")
		}
	}
	got, detail := checkEntry(t, pe, xe)
	if got != e.Rule {
		if got == "" {
			return "", fmt.Errorf("leaf %d is a valid successor of leaf %v", x, e.PrevIndex)
		}
		return "", fmt.Errorf("leaf %d breaks %s, not %s", x, string(got), string(e.Rule))
	}
	return detail, nil
}

// checkResetLogTime checks reset-log-time evidence: prev_index is a reset
// entry, log_index the first EpochRecord after the version that follows
// it (every leaf in between present), and that epoch's timestamp
// contradicts the reset's window for that version.
func (v *evidenceView) checkResetLogTime(t *verifier.Trust, e *Evidence) (string, error) {
	if e.PrevIndex == nil {
		return "", errors.New("needs prev_index (the reset entry)")
	}
	p, x := *e.PrevIndex, e.LogIndex
	if p >= x || !v.covers(p, x+1) {
		return "", errors.New("needs every leaf from the reset entry to the epoch record")
	}
	pe, rule, _ := decodeEntry(v.leaves[p])
	if rule != "" || pe == nil || pe.reset == nil {
		return "", fmt.Errorf("leaf %d is not a reset entry", p)
	}
	var next *entry
	var k uint64
	for i := p + 1; i < x; i++ {
		l, err := klog.ParseLeaf(v.leaves[i])
		if err != nil {
			return "", fmt.Errorf("leaf %d: %v", i, err)
		}
		u, ok := l.(*klog.AccountUpdate)
		if next == nil && ok && u.Index == pe.u.Index {
			if next, rule, _ = decodeEntry(v.leaves[i]); rule != "" || next == nil {
				return "", fmt.Errorf("leaf %d does not decode", i)
			}
			k = i
			continue
		}
		if next != nil && l.Kind() == klog.KindEpochRecord {
			return "", fmt.Errorf("leaf %d, an epoch record, closes the epoch of leaf %d before log_index", i, k)
		}
	}
	if next == nil {
		return "", errors.New("no version of the reset's account follows it before log_index")
	}
	if r, d := checkEntry(t, pe, next); r != "" {
		return "", fmt.Errorf("leaf %d breaks %s (evidence for that rule instead): %s", k, string(r), d)
	}
	er, err := klog.ParseEpochRecord(v.leaves[x])
	if err != nil {
		return "", fmt.Errorf("log_index %d is not an epoch record: %v", x, err)
	}
	cancelled := next.state.IdentityKey == pe.reset.Current.IdentityKey
	r, detail := checkResetLogTime(er, pe.reset.EffectiveAt.Unix(), cancelled)
	if r == "" {
		return "", fmt.Errorf("epoch %d's timestamp is consistent with the reset's window", er.Epoch)
	}
	return fmt.Sprintf("leaf %d: %s", k, detail), nil
}

// latestBefore reports whether every leaf in [a, b) is present and none is
// an AccountUpdate of index.
func (v *evidenceView) latestBefore(index [32]byte, a, b uint64) bool {
	if !v.covers(a, b) {
		return false
	}
	for i := a; i < b; i++ {
		if l, err := klog.ParseLeaf(v.leaves[i]); err == nil {
			if u, ok := l.(*klog.AccountUpdate); ok && u.Index == index {
				return false
			}
		}
	}
	return true
}
