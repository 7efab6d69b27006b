package devices

// checkRule says which signatures a verification of an AccountState
// checks.
type checkRule uint8

const (
	// fullRule checks every signature: the SigningKeyCert, the state's
	// own signature, and both signatures of every DeviceCert. It is the
	// log's well-formedness rule, which the directory applies to every
	// update and auditors to every entry, and which the account owner's
	// monitor and device flows apply.
	fullRule checkRule = iota

	// lookupRule is a lookup client's (VerifyAccountStateForLookup): it
	// checks 2 + n of a state's 2 + 2n signatures, n its devices: the
	// SigningKeyCert (root key over the account signing key, ASK), the
	// state's own signature by that ASK, and each DeviceCert's
	// back-signature; it does not verify a DeviceCert's ASK signature,
	// and only in a state whose own signature by that same ASK it
	// verifies in the same check (every other check of the cert is
	// made).
	//
	// That is sound: the state's signed body contains every cert's
	// encoding byte for byte, its ASK signature included (appendBody,
	// DeviceCert.appendTo), and the certs are checked against the key
	// that signed the state. A state accepted by this rule and refused by
	// fullRule is one whose ASK holder signed a state with a cert whose
	// ASK signature is invalid; that holder could as well have signed the
	// cert validly, so accepting it gives no one a capability. Auditors
	// and the directory (fullRule) reject such a state from the log.
	lookupRule
)

// VerifyAccountStateForLookup is VerifyAccountState under the lookup
// rule, for a client verifying a looked-up account (a contact's keys): it
// checks everything VerifyAccountState checks except each DeviceCert's
// signature by the account signing key (ASK), which s's own signature by
// that same ASK, verified here, covers: s's signed body contains each
// cert's encoding, that signature included. It verifies 2 + n Ed25519
// signatures for n devices (the SigningKeyCert, s's signature, each
// device's back-signature) where VerifyAccountState verifies 2 + 2n.
//
// A state it accepts and VerifyAccountState rejects (ErrDeviceCert) is
// one whose ASK holder signed a cert signature it did not make, which it
// could as well have made: no one gains a capability. It is for lookups
// only: the directory, auditors, the owner's monitor and device flows,
// and anything handling a DeviceCert alone use the full checks
// (VerifyAccountState, VerifyCreate, VerifyTransition, VerifyDeviceCert).
func VerifyAccountStateForLookup(s *AccountState) error {
	return groupVerified(func(g *sigGroup) error { return verifyAccountState(g, s, lookupRule) })
}

// NewLookupMemo returns a lookup memo: a SignatureMemo whose methods
// check the lookup rule (VerifyAccountStateForLookup: no DeviceCert's ASK
// signature is verified where the state's signature by that same key, which
// covers the cert, is verified in the same check), holding the signatures
// the lookup rule checks in the given states, each of which
// VerifyAccountStateForLookup, VerifyAccountState or a memo's method
// accepted in this process. A client uses it for the account history
// behind a lookup. It never holds a signature that was not verified: a
// cert's ASK signature the lookup rule skipped is not added, so a later
// full check verifies it.
func NewLookupMemo(verified ...*AccountState) *SignatureMemo {
	return newMemo(lookupRule, verified)
}
