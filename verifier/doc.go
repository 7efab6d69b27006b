// Package verifier checks everything the directory says: lookup proof bundles,
// the owner's own entry (monitor), the whole log (auditor), and cosigns
// checkpoints it has verified (witness). It trusts nothing it has not checked.
package verifier
