// Package verifier checks everything a Keyline directory says, with the
// rules of docs/protocol.md §7: lookup proof bundles (VerifyLookup,
// Client.Lookup), the owner's own entry (Monitor), and, in sub-packages, the
// whole log (auditor) and witness cosignatures (witness, cosign).
//
// Invariants:
//
//   - It trusts nothing it has not checked. Its only inputs it does not
//     verify are the Trust configuration (the directory's log, VRF and
//     reset keys, witnesses and quorum, from trust.json obtained out of
//     band) and the client's own state file.
//   - VerifyLookup is pure and fails closed: it returns a result only if
//     every check passed, and every error wraps one of the sentinels in
//     errors.go (prefixed "verifier: ") plus the cause from the package
//     that checked it, so errors.Is works for both.
//   - Only a fully verified lookup advances the ClientState (last verified
//     checkpoint, pins, own account); any error leaves the state file as it
//     was. Writes are atomic and serialized between processes by a lock
//     file.
//   - The last verified checkpoint only moves forward: a smaller tree is
//     ErrRollback, the same size with another root a *SplitViewError
//     carrying both signed notes as evidence, a larger one needs a valid
//     consistency proof.
//   - A root-key change of a verified contact is never applied silently: it
//     is a *SafetyNumberChangedError until the user compares safety
//     numbers and calls Pin; one that no reset entry in the verified
//     history explains fails closed for every contact.
//
// The package depends only on devices and log (and its own sub-packages);
// a Source (the gRPC client in directory/client, or the tiles and JSON
// clients) supplies the bundles. See the examples in directory/client for
// a lookup and a monitor check against a running directory.
package verifier
