package log

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// LeafKind is the first byte of every leaf.
type LeafKind uint8

const (
	KindAccountUpdate LeafKind = 0x01 // AccountUpdate
	KindEpochRecord   LeafKind = 0x02 // EpochRecord
)

// UpdateKind says what an AccountUpdate does to its account.
type UpdateKind uint8

const (
	UpdateCreate UpdateKind = 1 // version 1 of a new index
	UpdateUpdate UpdateKind = 2 // version n+1, signed by the IK of version n
	UpdateReset  UpdateKind = 3 // version n+1 with a new IK, authorized by the directory reset key
)

// MaxPayloadSize bounds AccountUpdate.Payload (64 KiB).
const MaxPayloadSize = 64 << 10

// ErrMalformedLeaf is wrapped by every leaf encoding and decoding error.
var ErrMalformedLeaf = errors.New("log: malformed leaf")

// A Leaf is a decoded log leaf: *AccountUpdate or *EpochRecord.
type Leaf interface {
	Kind() LeafKind
	Marshal() ([]byte, error)
}

// An AccountUpdate leaf records version Version of the account at VRF index
// Index. Its encoding is
//
//	u8 0x01 || [32] Index || u64 Version || [32] PrevHash || u8 Update || bytes32 Payload
//
// Version starts at 1. PrevHash is the entry hash (EntryHash) of the leaf of
// version Version-1 of the same index, and all zero for version 1. Update is
// UpdateCreate exactly for version 1. Payload is the signed AccountState
// encoding, or for a reset the reset authorization encoding; it is opaque to
// the log and at most MaxPayloadSize bytes.
type AccountUpdate struct {
	Index    [32]byte
	Version  uint64
	PrevHash [32]byte
	Update   UpdateKind
	Payload  []byte
}

// An EpochRecord leaf closes epoch Epoch, binding the map root MapRoot; it is
// the last leaf of every epoch. Its encoding is
//
//	u8 0x02 || u64 Epoch || [32] MapRoot || u64 Timestamp
//
// where Timestamp is in seconds since the Unix epoch (UTC).
type EpochRecord struct {
	Epoch     uint64
	MapRoot   [32]byte
	Timestamp uint64
}

// Kind returns KindAccountUpdate.
func (u *AccountUpdate) Kind() LeafKind { return KindAccountUpdate }

// Kind returns KindEpochRecord.
func (e *EpochRecord) Kind() LeafKind { return KindEpochRecord }

func (u *AccountUpdate) check() error {
	switch {
	case u.Version == 0:
		return fmt.Errorf("%w: account update version 0", ErrMalformedLeaf)
	case u.Update != UpdateCreate && u.Update != UpdateUpdate && u.Update != UpdateReset:
		return fmt.Errorf("%w: unknown account update kind %d", ErrMalformedLeaf, u.Update)
	case (u.Update == UpdateCreate) != (u.Version == 1):
		return fmt.Errorf("%w: account update kind %d at version %d (create is exactly version 1)", ErrMalformedLeaf, u.Update, u.Version)
	case u.Version == 1 && u.PrevHash != [32]byte{}:
		return fmt.Errorf("%w: version 1 has a non-zero previous entry hash", ErrMalformedLeaf)
	case u.Version > 1 && u.PrevHash == [32]byte{}:
		return fmt.Errorf("%w: version %d has a zero previous entry hash", ErrMalformedLeaf, u.Version)
	case len(u.Payload) > MaxPayloadSize:
		return fmt.Errorf("%w: payload of %d bytes, over the limit of %d", ErrMalformedLeaf, len(u.Payload), MaxPayloadSize)
	}
	return nil
}

// Marshal returns the canonical leaf encoding, or an error if u breaks a
// rule of the encoding (see AccountUpdate).
func (u *AccountUpdate) Marshal() ([]byte, error) {
	if err := u.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+32+8+32+1+4+len(u.Payload))
	b = append(b, byte(KindAccountUpdate))
	b = append(b, u.Index[:]...)
	b = binary.BigEndian.AppendUint64(b, u.Version)
	b = append(b, u.PrevHash[:]...)
	b = append(b, byte(u.Update))
	b = binary.BigEndian.AppendUint32(b, uint32(len(u.Payload)))
	return append(b, u.Payload...), nil
}

// Marshal returns the canonical leaf encoding. It never fails.
func (e *EpochRecord) Marshal() ([]byte, error) {
	b := make([]byte, 0, 1+8+32+8)
	b = append(b, byte(KindEpochRecord))
	b = binary.BigEndian.AppendUint64(b, e.Epoch)
	b = append(b, e.MapRoot[:]...)
	return binary.BigEndian.AppendUint64(b, e.Timestamp), nil
}

// accountUpdateFixed is the size of an AccountUpdate encoding without payload.
const accountUpdateFixed = 1 + 32 + 8 + 32 + 1 + 4

// epochRecordSize is the size of an EpochRecord encoding.
const epochRecordSize = 1 + 8 + 32 + 8

// ParseAccountUpdate decodes an AccountUpdate leaf strictly.
func ParseAccountUpdate(leaf []byte) (*AccountUpdate, error) {
	if len(leaf) == 0 || LeafKind(leaf[0]) != KindAccountUpdate {
		return nil, fmt.Errorf("%w: not an account update leaf", ErrMalformedLeaf)
	}
	if len(leaf) < accountUpdateFixed {
		return nil, fmt.Errorf("%w: account update truncated at %d bytes", ErrMalformedLeaf, len(leaf))
	}
	u := &AccountUpdate{}
	p := leaf[1:]
	copy(u.Index[:], p[:32])
	u.Version = binary.BigEndian.Uint64(p[32:40])
	copy(u.PrevHash[:], p[40:72])
	u.Update = UpdateKind(p[72])
	n := binary.BigEndian.Uint32(p[73:77])
	if n > MaxPayloadSize {
		return nil, fmt.Errorf("%w: payload length %d over the limit of %d", ErrMalformedLeaf, n, MaxPayloadSize)
	}
	rest := p[77:]
	if uint64(len(rest)) < uint64(n) {
		return nil, fmt.Errorf("%w: account update payload truncated: %d of %d bytes", ErrMalformedLeaf, len(rest), n)
	}
	if uint64(len(rest)) > uint64(n) {
		return nil, fmt.Errorf("%w: %d trailing bytes after account update", ErrMalformedLeaf, uint64(len(rest))-uint64(n))
	}
	u.Payload = append([]byte{}, rest...)
	if err := u.check(); err != nil {
		return nil, err
	}
	return u, nil
}

// ParseEpochRecord decodes an EpochRecord leaf strictly.
func ParseEpochRecord(leaf []byte) (*EpochRecord, error) {
	if len(leaf) == 0 || LeafKind(leaf[0]) != KindEpochRecord {
		return nil, fmt.Errorf("%w: not an epoch record leaf", ErrMalformedLeaf)
	}
	if len(leaf) < epochRecordSize {
		return nil, fmt.Errorf("%w: epoch record truncated at %d bytes", ErrMalformedLeaf, len(leaf))
	}
	if len(leaf) > epochRecordSize {
		return nil, fmt.Errorf("%w: %d trailing bytes after epoch record", ErrMalformedLeaf, len(leaf)-epochRecordSize)
	}
	e := &EpochRecord{}
	e.Epoch = binary.BigEndian.Uint64(leaf[1:9])
	copy(e.MapRoot[:], leaf[9:41])
	e.Timestamp = binary.BigEndian.Uint64(leaf[41:49])
	return e, nil
}

// ParseLeaf decodes a leaf of either kind strictly.
func ParseLeaf(leaf []byte) (Leaf, error) {
	if len(leaf) == 0 {
		return nil, fmt.Errorf("%w: empty leaf", ErrMalformedLeaf)
	}
	switch LeafKind(leaf[0]) {
	case KindAccountUpdate:
		return ParseAccountUpdate(leaf)
	case KindEpochRecord:
		return ParseEpochRecord(leaf)
	}
	return nil, fmt.Errorf("%w: unknown leaf kind %#02x", ErrMalformedLeaf, leaf[0])
}

// EntryHash returns the entry hash of a leaf: its RFC 6962 leaf hash
// SHA-256(0x00 || leaf). It is the hash used in the Merkle tree, in
// AccountUpdate.PrevHash and in map values.
func EntryHash(leaf []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leaf)
	var out [32]byte
	h.Sum(out[:0])
	return out
}
