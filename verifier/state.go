package verifier

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/internal/atomicfile"
	klog "github.com/keyline/keyline/log"
)

// ErrState is wrapped by every error about a client state file.
var ErrState = errors.New("verifier: bad client state")

// MaxStateFileSize bounds a client state file (1 MiB).
const MaxStateFileSize = 1 << 20

// MaxContacts bounds the pinned contacts in one state file.
const MaxContacts = 4096

// ClientState is what a client remembers between runs: the last checkpoint
// it verified, the identity keys it pinned, and its own account. It is kept
// in a JSON file (see ParseClientState for the format) written atomically
// with mode 0600.
type ClientState struct {
	// Checkpoint is the last verified signed checkpoint note (nil before
	// the first verified lookup). Every later checkpoint must be consistent
	// with it.
	Checkpoint []byte
	// EpochRecord is the EpochRecord leaf of Checkpoint (its last leaf) and
	// EpochRecordInclusion its inclusion proof, as the lookup that verified
	// Checkpoint received them (nil if not known: a state written before
	// state format 2, or after Client.Checkpoint advanced the checkpoint
	// alone). With them the client asks for and verifies held-checkpoint
	// bundles (LookupBundle.Held); they are verified again on every use.
	EpochRecord          []byte
	EpochRecordInclusion [][]byte
	// Contacts maps a normalized user id to its pinned identity key.
	Contacts map[string]*Contact
	// Own is the user's own account, watched by the monitor (nil if none).
	Own *OwnAccount
}

// Contact is a pinned identity key.
type Contact struct {
	IK       [32]byte
	Verified bool // the user compared safety numbers
	// Version is the newest account version a verified lookup found
	// carrying IK (0: not known, e.g. a key pinned by hand). An identity
	// key change is checked against the history from this version.
	Version uint64
	// Generation is the newest account signing key generation a verified
	// lookup found with IK; older ones are refused (ErrStaleSigningKey).
	Generation uint32
	PinnedAt   time.Time // whole seconds, UTC
}

// OwnAccount is what the owner expects the directory to hold for its own
// account: the latest version it published and that entry's log entry hash
// (log.EntryHash of the AccountUpdate leaf), or, if the entry hash is not
// known yet, the AccountState hash (devices.AccountState.Hash). At least one
// of EntryHash and StateHash is non-zero.
type OwnAccount struct {
	UserID    string
	Version   uint64
	EntryHash [32]byte
	StateHash [32]byte
}

// stateFile is the JSON encoding of a ClientState.
type stateFile struct {
	Format     int    `json:"format"`
	Checkpoint string `json:"checkpoint,omitempty"` // base64 signed note
	// EpochRecord and EpochRecordInclusion (format 2): base64 leaf and
	// base64 hashes.
	EpochRecord          string                 `json:"epoch_record,omitempty"`
	EpochRecordInclusion []string               `json:"epoch_record_inclusion,omitempty"`
	Contacts             map[string]contactFile `json:"contacts,omitempty"`
	Own                  *ownFile               `json:"own,omitempty"`
}

type contactFile struct {
	IK       string `json:"ik"` // base64 32 bytes
	Verified bool   `json:"verified"`
	Version  uint64 `json:"version,omitempty"`
	// Generation: newest account signing key generation seen with IK.
	Generation uint32 `json:"generation,omitempty"`
	PinnedAt   string `json:"pinned_at"` // RFC 3339, UTC, whole seconds
}

type ownFile struct {
	UserID    string `json:"user_id"`
	Version   uint64 `json:"version"`
	EntryHash string `json:"entry_hash,omitempty"` // hex
	StateHash string `json:"state_hash,omitempty"` // hex
}

// stateFormat is the format written. Format 1 (no epoch_record) is still
// read: such a state holds no EpochRecord, so its first lookup asks for a
// full bundle (Client.Lookup).
const stateFormat = 2

// maxHeldInclusion bounds the hashes of the held EpochRecord's inclusion
// proof (a tree of 2^64 leaves needs at most 64).
const maxHeldInclusion = 64

func (st *ClientState) contact(uid string) *Contact {
	if st == nil {
		return nil
	}
	return st.Contacts[uid]
}

// ParseClientState decodes a state file strictly:
//
//	{
//	  "format": 2,
//	  "checkpoint": "<base64 signed note>",
//	  "epoch_record": "<base64 EpochRecord leaf, the checkpoint's last>",
//	  "epoch_record_inclusion": ["<base64 32 bytes>", ...],
//	  "contacts": {"<user id>": {"ik": "<base64 32 bytes>", "verified": true, "version": 4, "pinned_at": "2026-01-02T03:04:05Z"}},
//	  "own": {"user_id": "<user id>", "version": 3, "entry_hash": "<64 hex>", "state_hash": "<64 hex>"}
//	}
//
// Unknown fields, duplicate keys, non-canonical user ids, wrong key sizes,
// a checkpoint that does not parse, an epoch_record without a checkpoint or
// that does not parse, an inclusion proof without a record or with a hash
// that is not 32 bytes, and more than MaxContacts contacts are rejected.
// Format 1 (without epoch_record) is read too. (The checkpoint's signature
// and the record's inclusion in it are checked when they are used, against
// the trust configuration.)
func ParseClientState(data []byte) (*ClientState, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrState}, args...)...)
	}
	if len(data) > MaxStateFileSize {
		return nil, bad("%d bytes, over %d", len(data), MaxStateFileSize)
	}
	if err := checkNoDuplicateKeys(data); err != nil {
		return nil, bad("%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f stateFile
	if err := dec.Decode(&f); err != nil {
		return nil, bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("trailing data after the JSON object")
	}
	if f.Format != 1 && f.Format != stateFormat {
		return nil, bad("format %d, want 1 or %d", f.Format, stateFormat)
	}
	if f.Format == 1 && (f.EpochRecord != "" || f.EpochRecordInclusion != nil) {
		return nil, bad("format 1 has no epoch_record")
	}
	st := &ClientState{Contacts: map[string]*Contact{}}
	if f.Checkpoint != "" {
		n, err := klog.DecodeBase64(f.Checkpoint)
		if err != nil {
			return nil, bad("checkpoint is not base64: %v", err)
		}
		if len(n) > klog.MaxSignedCheckpointSize {
			return nil, bad("checkpoint is %d bytes", len(n))
		}
		i := bytes.LastIndex(n, []byte("\n\n"))
		if i < 0 {
			return nil, bad("checkpoint is not a signed note")
		}
		if _, err := klog.ParseCheckpoint(n[:i+1]); err != nil {
			return nil, bad("checkpoint: %v", err)
		}
		st.Checkpoint = n
	}
	if f.EpochRecord == "" && f.EpochRecordInclusion != nil {
		return nil, bad("epoch_record_inclusion without an epoch_record")
	}
	if f.EpochRecord != "" {
		if st.Checkpoint == nil {
			return nil, bad("epoch_record without a checkpoint")
		}
		rec, err := klog.DecodeBase64(f.EpochRecord)
		if err != nil {
			return nil, bad("epoch_record is not base64: %v", err)
		}
		if _, err := klog.ParseEpochRecord(rec); err != nil {
			return nil, bad("epoch_record: %v", err)
		}
		if len(f.EpochRecordInclusion) > maxHeldInclusion {
			return nil, bad("epoch_record_inclusion has %d hashes, over %d", len(f.EpochRecordInclusion), maxHeldInclusion)
		}
		st.EpochRecord, st.EpochRecordInclusion = rec, [][]byte{}
		for i, h := range f.EpochRecordInclusion {
			b, err := klog.DecodeBase64(h)
			if err != nil || len(b) != 32 {
				return nil, bad("epoch_record_inclusion[%d] must be base64 of 32 bytes", i)
			}
			st.EpochRecordInclusion = append(st.EpochRecordInclusion, b)
		}
	}
	if len(f.Contacts) > MaxContacts {
		return nil, bad("%d contacts, over %d", len(f.Contacts), MaxContacts)
	}
	for uid, c := range f.Contacts {
		if n, err := devices.NormalizeUserID(uid); err != nil || n != uid {
			return nil, bad("contact %q is not a canonical user id", uid)
		}
		ik, err := klog.DecodeBase64(c.IK)
		if err != nil || len(ik) != 32 {
			return nil, bad("contact %s: ik must be base64 of 32 bytes", uid)
		}
		at, err := time.Parse(time.RFC3339, c.PinnedAt)
		if err != nil || at.Format(time.RFC3339) != c.PinnedAt || at.Location() != time.UTC || at.Unix() < 0 {
			return nil, bad("contact %s: pinned_at %q is not an RFC 3339 UTC time in whole seconds", uid, c.PinnedAt)
		}
		ct := &Contact{Verified: c.Verified, Version: c.Version, Generation: c.Generation, PinnedAt: at}
		copy(ct.IK[:], ik)
		st.Contacts[uid] = ct
	}
	if f.Own != nil {
		if n, err := devices.NormalizeUserID(f.Own.UserID); err != nil || n != f.Own.UserID {
			return nil, bad("own user_id %q is not a canonical user id", f.Own.UserID)
		}
		o := &OwnAccount{UserID: f.Own.UserID, Version: f.Own.Version}
		if o.Version == 0 {
			return nil, bad("own version is 0")
		}
		var err error
		if o.EntryHash, err = parseHash(f.Own.EntryHash); err != nil {
			return nil, bad("own entry_hash: %v", err)
		}
		if o.StateHash, err = parseHash(f.Own.StateHash); err != nil {
			return nil, bad("own state_hash: %v", err)
		}
		if o.EntryHash == ([32]byte{}) && o.StateHash == ([32]byte{}) {
			return nil, bad("own account has neither entry_hash nor state_hash")
		}
		st.Own = o
	}
	return st, nil
}

func parseHash(s string) ([32]byte, error) {
	var h [32]byte
	if s == "" {
		return h, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 || hex.EncodeToString(b) != s {
		return h, fmt.Errorf("%q is not 64 lowercase hex digits", s)
	}
	copy(h[:], b)
	return h, nil
}

func hashString(h [32]byte) string {
	if h == ([32]byte{}) {
		return ""
	}
	return hex.EncodeToString(h[:])
}

// checkNoDuplicateKeys rejects JSON objects with a repeated key at any depth
// (encoding/json would silently keep the last).
func checkNoDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(depth int) error
	walk = func(depth int) error {
		if depth > 8 {
			return errors.New("JSON nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		switch d {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				ks, _ := k.(string)
				if seen[ks] {
					return fmt.Errorf("duplicate key %q", ks)
				}
				seen[ks] = true
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
		case '[':
			for dec.More() {
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // closing delimiter
		return err
	}
	return walk(0)
}

// Marshal returns the state file encoding (indented JSON, contacts sorted).
func (st *ClientState) Marshal() ([]byte, error) {
	f := stateFile{Format: stateFormat}
	if st.Checkpoint != nil {
		f.Checkpoint = base64.StdEncoding.EncodeToString(st.Checkpoint)
	}
	if st.EpochRecord != nil {
		f.EpochRecord = base64.StdEncoding.EncodeToString(st.EpochRecord)
		for _, h := range st.EpochRecordInclusion {
			f.EpochRecordInclusion = append(f.EpochRecordInclusion, base64.StdEncoding.EncodeToString(h))
		}
	}
	if len(st.Contacts) > MaxContacts {
		return nil, fmt.Errorf("%w: %d contacts, over %d", ErrState, len(st.Contacts), MaxContacts)
	}
	if len(st.Contacts) > 0 {
		f.Contacts = map[string]contactFile{}
		uids := make([]string, 0, len(st.Contacts))
		for uid := range st.Contacts {
			uids = append(uids, uid)
		}
		sort.Strings(uids)
		for _, uid := range uids {
			c := st.Contacts[uid]
			if n, err := devices.NormalizeUserID(uid); err != nil || n != uid {
				return nil, fmt.Errorf("%w: contact %q is not a canonical user id", ErrState, uid)
			}
			f.Contacts[uid] = contactFile{IK: base64.StdEncoding.EncodeToString(c.IK[:]), Verified: c.Verified, Version: c.Version, Generation: c.Generation, PinnedAt: c.PinnedAt.UTC().Truncate(time.Second).Format(time.RFC3339)}
		}
	}
	if o := st.Own; o != nil {
		f.Own = &ownFile{UserID: o.UserID, Version: o.Version, EntryHash: hashString(o.EntryHash), StateHash: hashString(o.StateHash)}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if _, err := ParseClientState(b); err != nil {
		return nil, err
	}
	return b, nil
}

// SetCheckpoint makes note the last verified checkpoint. The held
// EpochRecord is kept only if note is the checkpoint it belongs to.
func (st *ClientState) SetCheckpoint(note []byte) {
	if !bytes.Equal(st.Checkpoint, note) {
		st.EpochRecord, st.EpochRecordInclusion = nil, nil
	}
	st.Checkpoint = note
}

// LoadClientState reads a state file. A missing file is an empty state.
func LoadClientState(path string) (*ClientState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &ClientState{Contacts: map[string]*Contact{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	st, err := ParseClientState(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// Save writes the state to path atomically: a temporary file in the same
// directory, mode 0600, fsynced, renamed over path, then the directory is
// fsynced. A crash leaves either the old or the new file.
func (st *ClientState) Save(path string) error {
	b, err := st.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// Pin pins ik for userID (normalized), replacing any previous pin. The
// pin's Version is kept if the previous pin had the same key, else 0.
func (st *ClientState) Pin(userID string, ik [32]byte, verified bool, now time.Time) error {
	return st.pinAt(userID, ik, verified, 0, 0, now)
}

// pinAt is Pin, recording that version carries ik (0: keep the version
// of a previous pin of the same key).
func (st *ClientState) pinAt(userID string, ik [32]byte, verified bool, version uint64, gen uint32, now time.Time) error {
	uid, err := devices.NormalizeUserID(userID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUserID, err)
	}
	if st.Contacts == nil {
		st.Contacts = map[string]*Contact{}
	}
	if _, ok := st.Contacts[uid]; !ok && len(st.Contacts) >= MaxContacts {
		return fmt.Errorf("%w: already %d pinned contacts (the maximum); remove one before pinning %s", ErrState, MaxContacts, uid)
	}
	if old := st.Contacts[uid]; old != nil && old.IK == ik {
		if version == 0 {
			version = old.Version
		}
		gen = max(gen, old.Generation)
	}
	st.Contacts[uid] = &Contact{IK: ik, Verified: verified, Version: version, Generation: gen, PinnedAt: now.UTC().Truncate(time.Second)}
	return nil
}

// Apply advances the state after a verified lookup: the checkpoint and its
// EpochRecord become the last verified ones and the contact's key is pinned as the PinStatus
// policy says (new or changed unverified keys are pinned unverified;
// verified pins are kept). res must come from VerifyLookup with this state.
// If the key cannot be pinned (MaxContacts reached) Apply changes nothing
// and returns an error wrapping ErrState: an unpinned contact would be
// trusted anew on every lookup.
func (st *ClientState) Apply(res *LookupResult, now time.Time) error {
	if res.Found {
		switch res.Pin {
		case PinNew, PinChanged:
			if err := st.pinAt(res.UserID, res.IdentityKey, false, res.Version, res.Generation, now); err != nil {
				return fmt.Errorf("verifier: cannot pin %s: %w", res.UserID, err)
			}
		case PinMatch, PinMatchVerified:
			if c := st.contact(res.UserID); c != nil && c.IK == res.IdentityKey {
				if res.Version > c.Version {
					c.Version = res.Version
				}
				c.Generation = max(c.Generation, res.Generation)
			}
		}
	}
	st.Checkpoint = res.Checkpoint.Note
	st.EpochRecord, st.EpochRecordInclusion = res.epochLeaf, res.epochInclusion
	return nil
}
