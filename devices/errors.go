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

	// ErrDeviceCert: a DeviceCert's device id, IK signature or back-signature
	// does not verify, or its keys are unusable.
	ErrDeviceCert = errors.New("invalid device cert")
	// ErrSigner: an AccountState is not signed by the identity key required.
	ErrSigner = errors.New("wrong or invalid signature")
	// ErrVersion: the version is not 1 for a create, or not previous+1.
	ErrVersion = errors.New("wrong version")
	// ErrPrevHash: the previous-state hash does not match.
	ErrPrevHash = errors.New("previous state hash mismatch")
	// ErrUserMismatch: two structures that must name the same user do not.
	ErrUserMismatch = errors.New("user id mismatch")
	// ErrIdentityChanged: a normal update changes the identity key (only a
	// reset may).
	ErrIdentityChanged = errors.New("identity key changed without reset")
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

	// ErrPairingCode: a pairing code or QR payload is corrupted or unreadable.
	ErrPairingCode = errors.New("invalid pairing code")
	// ErrSafetyNumberMismatch: a scanned safety-number payload does not match.
	ErrSafetyNumberMismatch = errors.New("safety number mismatch")

	// ErrWrongPassphrase: the keystore did not decrypt with the passphrase
	// given (or its ciphertext was modified).
	ErrWrongPassphrase = errors.New("wrong passphrase or corrupted keystore ciphertext")
	// ErrKeystore: a keystore file is corrupted or not a keystore.
	ErrKeystore = errors.New("invalid keystore file")
)
