// Package auditor replays a Keyline directory's whole log, checks every rule
// of docs/protocol.md §8.2 on every entry, recomputes every map root, and
// produces transferable evidence (VerifyEvidence) for any violation. Its
// state is kept durably in a bbolt file (StateFile), so it resumes where it
// stopped.
//
// An *Auditor also implements the witness's auditor interface (Verify): a
// witness cosigns a checkpoint only once the auditor has replayed the log up
// to exactly that checkpoint without finding a violation.
//
// Invariants:
//
//   - No rule is checked on a leaf before the leaf is authenticated: each
//     batch is hashed onto the verified prefix and proven consistent with
//     the signed checkpoint first. Leaves the Source cannot authenticate are
//     ErrSource, never a violation.
//   - A violation is reported only with evidence that the auditor itself has
//     re-verified with VerifyEvidence, which anyone holding the trust file
//     can check offline with the same code. A stale view consistent with
//     everything (ErrRollback) yields no evidence: it proves nothing.
//   - The rule pass is sequential, in log order, and authoritative; the
//     parallel pre-check (Options.Workers) only caches pure results keyed by
//     their whole input, so the reported rule, log index, evidence and
//     stored state do not depend on Workers or BatchSize.
//   - State advances one batch per bbolt transaction (one fsync): a crash
//     or cancellation resumes at the last committed batch. The next batch
//     is fetched, authenticated and pre-checked while one is applied, but
//     applied only after it is committed. After a violation
//     the auditor stops: every later Run and Verify returns the same
//     *Violation.
//   - Verify returns nil only for exactly the replayed tree (size and root,
//     ending at an EpochRecord); "not yet" wraps witness.ErrAuditPending.
//
// Files: auditor.go is the public API (Open, Run, Follow, Verify, Status);
// replay.go the replay behind it (sync to a checkpoint batch by batch,
// the next batch prepared while one is applied; Verify's catch-up); rules.go the rules and per-entry checks; parallel.go
// the pre-check; violate.go building and recording evidence; evidence.go
// and canonical.go the evidence format and VerifyEvidence; store.go the
// state file's layout (format 2: the map as vmap tiles).
package auditor
