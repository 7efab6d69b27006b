package devices

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// Bounds on AccountState lists.
const (
	MaxDevices     = 64   // device certs per AccountState
	MaxRevocations = 1024 // revocations per AccountState
)

const stateFormat = 0x02

// RevocationReason says why a device was revoked.
type RevocationReason uint8

// Revocation reasons. Decoders reject any other value.
const (
	ReasonUnspecified RevocationReason = 0
	ReasonLost        RevocationReason = 1 // device lost or stolen
	ReasonCompromised RevocationReason = 2 // key known or suspected to be compromised
	ReasonRetired     RevocationReason = 3 // device retired by its owner
)

func (r RevocationReason) valid() bool { return r <= ReasonRetired }

func (r RevocationReason) String() string {
	switch r {
	case ReasonUnspecified:
		return "unspecified"
	case ReasonLost:
		return "lost"
	case ReasonCompromised:
		return "compromised"
	case ReasonRetired:
		return "retired"
	}
	return fmt.Sprintf("RevocationReason(%d)", uint8(r))
}

// Revocation records that a device was removed from an account. Once
// present in an AccountState it stays in every later state.
type Revocation struct {
	Device DeviceID
	Time   time.Time // whole seconds, UTC
	Reason RevocationReason
}

// AccountState is version Version of an account: its root key, the
// current account signing key's certificate, its current devices and every
// device ever revoked, signed by that account signing key (ASK).
type AccountState struct {
	UserID   string   // canonical (NormalizeUserID)
	Version  uint64   // 1 for the first state, then +1 per update
	PrevHash [32]byte // Hash of version-1; zero for version 1
	// IdentityKey is the Ed25519 public key of the root key (RK), the key
	// safety numbers and pins bind. It changes only on a reset.
	IdentityKey [32]byte
	SigningKey  *SigningKeyCert // the current ASK, certified by RK
	Devices     []*DeviceCert   // 1..64, sorted by ID ascending, unique; signed by the ASK
	// Trusted lists the devices the owner handed the current ASK to (they
	// can approve and revoke devices): sorted, unique, each in Devices.
	// It is the owner's record for device lists and monitors; it resets
	// with every rotation.
	Trusted     []DeviceID
	Revocations []Revocation // 0..1024, sorted by Device ascending, unique
	Timestamp   time.Time    // whole seconds, UTC
	Signature   [64]byte     // ASK over "keyline account-state v2" || 0x00 || body
}

// Generation returns the generation of the state's account signing key
// (0 if it has none, which no valid state has).
func (s *AccountState) Generation() uint32 {
	if s.SigningKey == nil {
		return 0
	}
	return s.SigningKey.Generation
}

// checkFields checks everything the encoding requires: bounds, canonical
// user id, order and uniqueness of lists, and whole-second times.
func (s *AccountState) checkFields() error {
	if err := checkUserID(s.UserID); err != nil {
		return err
	}
	if s.Version == 0 {
		return fmt.Errorf("%w: AccountState version 0 (versions start at 1)", ErrVersion)
	}
	if s.SigningKey == nil {
		return fmt.Errorf("%w: AccountState has no signing key cert", ErrMalformed)
	}
	if err := s.SigningKey.checkFields(); err != nil {
		return err
	}
	if len(s.Devices) == 0 {
		return fmt.Errorf("%w: AccountState has no devices", ErrMalformed)
	}
	if len(s.Devices) > MaxDevices {
		return fmt.Errorf("%w: AccountState has %d devices, over the limit of %d", ErrMalformed, len(s.Devices), MaxDevices)
	}
	if len(s.Revocations) > MaxRevocations {
		return fmt.Errorf("%w: AccountState has %d revocations, over the limit of %d", ErrMalformed, len(s.Revocations), MaxRevocations)
	}
	for i, c := range s.Devices {
		if c == nil {
			return fmt.Errorf("%w: device %d is nil", ErrMalformed, i)
		}
		if err := c.checkFields(); err != nil {
			return err
		}
		if i > 0 {
			if err := checkOrder("device", s.Devices[i-1].ID, c.ID); err != nil {
				return err
			}
		}
	}
	for i, id := range s.Trusted {
		if i > 0 {
			if err := checkOrder("trusted device", s.Trusted[i-1], id); err != nil {
				return err
			}
		}
		if s.Device(id) == nil {
			return fmt.Errorf("%w: trusted device %s is not listed", ErrMalformed, id)
		}
	}
	for i, rv := range s.Revocations {
		if !rv.Reason.valid() {
			return fmt.Errorf("%w: revocation of %s has unknown reason %d", ErrMalformed, rv.Device, rv.Reason)
		}
		if err := checkTime("revocation time", rv.Time); err != nil {
			return err
		}
		if i > 0 {
			if err := checkOrder("revocation", s.Revocations[i-1].Device, rv.Device); err != nil {
				return err
			}
		}
	}
	return checkTime("AccountState timestamp", s.Timestamp)
}

func checkOrder(what string, prev, cur DeviceID) error {
	switch bytes.Compare(prev[:], cur[:]) {
	case 0:
		return withCause(ErrMalformed, fmt.Errorf("%w: %s list has device %s twice", ErrDuplicateDevice, what, cur))
	case 1:
		return fmt.Errorf("%w: %s list not sorted: %s after %s", ErrMalformed, what, cur, prev)
	}
	return nil
}

// body returns the signed part of the encoding.
func (s *AccountState) body() ([]byte, error) {
	if err := s.checkFields(); err != nil {
		return nil, err
	}
	var w builder
	s.appendBody(&w)
	return w.b, nil
}

// appendBody appends the body encoding without checking it.
func (s *AccountState) appendBody(w *builder) {
	w.u8(stateFormat)
	w.string16(s.UserID)
	w.u64(s.Version)
	w.raw(s.PrevHash[:])
	w.raw(s.IdentityKey[:])
	s.SigningKey.appendBody(w)
	w.raw(s.SigningKey.Signature[:])
	w.u16(uint16(len(s.Devices)))
	for _, c := range s.Devices {
		c.appendTo(w)
	}
	w.u16(uint16(len(s.Trusted)))
	for _, id := range s.Trusted {
		w.raw(id[:])
	}
	w.u16(uint16(len(s.Revocations)))
	for _, rv := range s.Revocations {
		w.raw(rv.Device[:])
		w.time(rv.Time)
		w.u8(uint8(rv.Reason))
	}
	w.time(s.Timestamp)
}

// MarshalBinary returns the canonical signed encoding: body || signature.
func (s *AccountState) MarshalBinary() ([]byte, error) {
	b, err := s.body()
	if err != nil {
		return nil, err
	}
	return append(b, s.Signature[:]...), nil
}

// Hash returns SHA-256("keyline account-state hash v1" || 0x00 || the signed
// encoding). The next version's PrevHash must equal it.
func (s *AccountState) Hash() ([32]byte, error) {
	b, err := s.MarshalBinary()
	if err != nil {
		return [32]byte{}, err
	}
	return domainHash(ctxAccountHash, b), nil
}

// Sign sets s.Signature with the account signing key ask. It fails
// unless s.SigningKey is ask's certificate and s encodes.
func (s *AccountState) Sign(ask *AccountSigningKey) error {
	if !s.SigningKey.equal(ask.Cert) {
		return fmt.Errorf("%w: signing key is not the state's account signing key", ErrSigner)
	}
	b, err := s.body()
	if err != nil {
		return err
	}
	s.Signature = ask.sign(signedMessage(ctxAccountState, b))
	return nil
}

// Device returns the cert of the device with the given id, or nil.
func (s *AccountState) Device(id DeviceID) *DeviceCert {
	for _, c := range s.Devices {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// IsTrusted reports whether the state lists device id as trusted.
func (s *AccountState) IsTrusted(id DeviceID) bool { return slices.Contains(s.Trusted, id) }

// Revoked returns the revocation of the device with the given id, or nil.
func (s *AccountState) Revoked(id DeviceID) *Revocation {
	for i := range s.Revocations {
		if s.Revocations[i].Device == id {
			return &s.Revocations[i]
		}
	}
	return nil
}

// VerifyAccountState checks that s is self-consistent: well formed, its
// SigningKeyCert signed by its root key for its user (VerifySigningKeyCert),
// s signed by that account signing key, every DeviceCert doubly signed
// (VerifyDeviceCert), device names unique, and no device both present and
// revoked. It does not check s against any previous state; see
// VerifyCreate, VerifyTransition and VerifyReset. A lookup client checks
// the lookup rule instead (VerifyAccountStateForLookup), which leaves out
// the DeviceCerts' account signing key signatures that s's signature
// covers.
func VerifyAccountState(s *AccountState) error {
	return groupVerified(func(g *sigGroup) error { return verifyAccountState(g, s, fullRule) })
}

// verifyAccountState is VerifyAccountState (rule fullRule) or
// VerifyAccountStateForLookup (lookupRule) with its signatures checked
// through g (verifySignature).
func verifyAccountState(g *sigGroup, s *AccountState, rule checkRule) error {
	if s == nil {
		return fmt.Errorf("%w: nil AccountState", ErrMalformed)
	}
	b, err := s.body()
	if err != nil {
		return err
	}
	if err := verifyStateSignature(g, s, b); err != nil {
		return err
	}
	// s's signature by s.SigningKey.Key, just checked through g, covers
	// every cert's encoding (appendBody), and the certs are checked
	// against that same key.
	for _, c := range s.Devices {
		if err := verifyDeviceCert(g, &s.IdentityKey, &s.SigningKey.Key, c, rule == lookupRule); err != nil {
			return err
		}
	}
	return checkDeviceList(s)
}

// verifyStateSignature checks s's SigningKeyCert and s's signature by it,
// through g (verifySignature); b is s's body.
func verifyStateSignature(g *sigGroup, s *AccountState, b []byte) error {
	if err := verifySigningKeyCert(g, &s.IdentityKey, s.UserID, s.SigningKey); err != nil {
		return err
	}
	return verifyStateSignatureOnly(g, s, b)
}

// verifyStateSignatureOnly checks s's signature by its signing key, whose
// SigningKeyCert the caller has verified, through g (verifySignature); b
// is s's body.
func verifyStateSignatureOnly(g *sigGroup, s *AccountState, b []byte) error {
	if !verifySignature(g, s.SigningKey.Key[:], signedMessage(ctxAccountState, b), s.Signature[:]) {
		return fmt.Errorf("%w: AccountState %s v%d: signature by its generation %d signing key does not verify", ErrSigner, s.UserID, s.Version, s.SigningKey.Generation)
	}
	return nil
}

// checkDeviceList checks that no listed device is revoked and that device
// names are unique.
func checkDeviceList(s *AccountState) error {
	names := make(map[string]DeviceID, len(s.Devices))
	for _, c := range s.Devices {
		if rv := s.Revoked(c.ID); rv != nil {
			return fmt.Errorf("%w: device %s (%q) is listed and revoked (%s at %v)", ErrRevokedDevice, c.ID, c.Name, rv.Reason, rv.Time)
		}
		if other, ok := names[c.Name]; ok {
			return withCause(ErrDuplicateDevice, fmt.Errorf("%w: devices %s and %s are both named %q", ErrDeviceName, other, c.ID, c.Name))
		}
		names[c.Name] = c.ID
	}
	return nil
}

// ParseAccountState decodes a signed AccountState encoding. It checks the
// format only; use VerifyAccountState and the transition rules to check
// signatures.
func ParseAccountState(b []byte) (*AccountState, error) {
	r := &reader{what: "AccountState", b: b}
	s := readAccountState(r)
	if err := r.done(); err != nil {
		return nil, err
	}
	return s, nil
}

func readAccountState(r *reader) *AccountState {
	s := new(AccountState)
	r.format(stateFormat)
	s.UserID = r.string16("user id", MaxUserIDLen)
	s.Version = r.u64("version")
	s.PrevHash = r.array32("previous hash")
	s.IdentityKey = r.array32("root key")
	if r.err == nil {
		s.SigningKey = readSigningKeyCert(r)
	}
	n := int(r.u16("device count"))
	if r.err == nil && (n == 0 || n > MaxDevices) {
		r.fail("device count %d outside 1..%d", n, MaxDevices)
	}
	for i := 0; i < n && r.err == nil; i++ {
		if c := readDeviceCert(r); c != nil {
			s.Devices = append(s.Devices, c)
		}
	}
	n = int(r.u16("trusted device count"))
	if r.err == nil && n > MaxDevices {
		r.fail("trusted device count %d over the limit of %d", n, MaxDevices)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var id DeviceID
		copy(id[:], r.take(16, "trusted device id"))
		s.Trusted = append(s.Trusted, id)
	}
	n = int(r.u16("revocation count"))
	if r.err == nil && n > MaxRevocations {
		r.fail("revocation count %d over the limit of %d", n, MaxRevocations)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var rv Revocation
		copy(rv.Device[:], r.take(16, "revoked device id"))
		rv.Time = r.time("revocation time")
		rv.Reason = RevocationReason(r.u8("revocation reason"))
		s.Revocations = append(s.Revocations, rv)
	}
	s.Timestamp = r.time("timestamp")
	s.Signature = r.array64("signature")
	if r.err == nil {
		if err := s.checkFields(); err != nil {
			r.failErr(err)
		}
	}
	if r.err != nil {
		return nil
	}
	return s
}
