package devices

import "errors"

// Sentinel errors. Every error returned by this package wraps one of these
// (use errors.Is); the message adds what exactly was wrong.
var (
	// ErrMalformed: an encoding violates its documented format (truncated,
	// trailing bytes, unknown format byte, field over its bound, invalid
	// UTF-8, list out of order or with duplicates).
	ErrMalformed = errors.New("malformed encoding")
	// ErrUserID: a user id is not in canonical form (see NormalizeUserID).
	ErrUserID = errors.New("invalid user id")
	// ErrDeviceName: a device name is empty, too long, or not printable UTF-8.
	ErrDeviceName = errors.New("invalid device name")
	// ErrPaperKey: a paper key has the wrong number of words, an unknown
	// word, or a bad checksum.
	ErrPaperKey = errors.New("invalid paper key")

	// ErrDeviceCert: a DeviceCert's device id, ASK signature or
	// back-signature does not verify, or its keys are unusable.
	ErrDeviceCert = errors.New("invalid device cert")
	// ErrSigningKeyCert: a SigningKeyCert is not signed by the account's
	// root key, or a state changes its account signing key without moving
	// to exactly the next generation.
	ErrSigningKeyCert = errors.New("invalid signing key cert")
	// ErrStaleSigningKey: a state is signed by an account signing key of an
	// older generation than the previous state's: the key was rotated out
	// (a lost or stolen device still holding it).
	ErrStaleSigningKey = errors.New("stale account signing key")
	// ErrSigner: an AccountState is not signed by the account signing key
	// its SigningKeyCert names.
	ErrSigner = errors.New("wrong or invalid signature")
	// ErrVersion: the version is not 1 for a create, or not previous+1.
	ErrVersion = errors.New("wrong version")
	// ErrPrevHash: the previous-state hash does not match.
	ErrPrevHash = errors.New("previous state hash mismatch")
	// ErrUserMismatch: two structures that must name the same user do not.
	ErrUserMismatch = errors.New("user id mismatch")
	// ErrIdentityChanged: a normal update changes the root key (only a
	// reset may).
	ErrIdentityChanged = errors.New("root key changed without reset")
	// ErrRevokedDevice: a revoked device is present in the device list.
	ErrRevokedDevice = errors.New("revoked device present")
	// ErrRevocation: a revocation was dropped, altered, or names a device
	// that was not in the previous state.
	ErrRevocation = errors.New("invalid revocation")
	// ErrDuplicateDevice: a device id appears twice where it must be unique.
	ErrDuplicateDevice = errors.New("duplicate device")
	// ErrTimestamp: a timestamp goes backwards.
	ErrTimestamp = errors.New("timestamp out of order")
	// ErrReset: a reset authorization is inconsistent with the states it
	// links, or is not signed by the directory reset key.
	ErrReset = errors.New("invalid reset authorization")
	// ErrResetPending: a state signed by a reset's new keys follows the
	// reset before its window ended.
	ErrResetPending = errors.New("reset still pending")
	// ErrResetWindow: a reset's window is shorter than the minimum, or a
	// cancellation comes after the window ended.
	ErrResetWindow = errors.New("reset window violated")

	// ErrPairingCode: a pairing code or QR payload is corrupted or unreadable.
	ErrPairingCode = errors.New("invalid pairing code")
	// ErrPairingExpired: a pairing request is past its expiry time.
	ErrPairingExpired = errors.New("pairing request expired")
	// ErrHandover: a signing key handover does not decrypt, or the key it
	// carries is not the one its state certifies.
	ErrHandover = errors.New("invalid signing key handover")
	// ErrSafetyNumberMismatch: a scanned safety-number payload does not match.
	ErrSafetyNumberMismatch = errors.New("safety number mismatch")

	// ErrWrongPassphrase: the keystore did not decrypt with the passphrase
	// given (or its ciphertext was modified).
	ErrWrongPassphrase = errors.New("wrong passphrase or corrupted keystore ciphertext")
	// ErrKeystore: a keystore file is corrupted or not a keystore.
	ErrKeystore = errors.New("invalid keystore file")
)
