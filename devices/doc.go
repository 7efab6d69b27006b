// Package devices holds an account's keys and the signed structures that bind
// them: the identity key derived from a paper key, device keys, DeviceCerts,
// AccountStates and the transitions between them, pairing codes, and the
// encrypted keystore. It depends on no other Keyline package.
package devices
