package devices

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"hash"
	"sync/atomic"
)

// signaturesVerified counts the Ed25519 signatures verified by
// verifySignature and sigGroup.verify.
var signaturesVerified atomic.Uint64

// verifySignature is ed25519.Verify's result (VerifyEd25519), counted:
// every Ed25519 signature this package checks goes through it, or is
// recorded in a sigGroup (g not nil), which then accepts it for now and
// verifies it later with the others (sigGroup.verify); a signature g's
// memo holds is accepted and not recorded.
func verifySignature(g *sigGroup, pub, msg, sig []byte) bool {
	if g != nil {
		if !g.memo.holds(pub, msg, sig) {
			g.checks = append(g.checks, sigCheck{pub: pub, msg: msg, sig: sig})
		}
		return true
	}
	signaturesVerified.Add(1)
	return VerifyEd25519(pub, msg, sig)
}

// SignaturesVerified returns how many Ed25519 signatures this package has
// verified in this process (valid or not), for benchmarks that report cost
// per signature (e.g. the auditor's signatures per log entry).
func SignaturesVerified() uint64 { return signaturesVerified.Load() }

// sigCheck is one recorded signature check.
type sigCheck struct{ pub, msg, sig []byte }

// A sigGroup collects the signature checks of one verification (an
// AccountState: its SigningKeyCert, its own signature, two per device
// cert) so that they are verified together by verify, each exactly as
// crypto/ed25519.Verify verifies it, with the work two checks share done
// once: a public key used by several (the account signing key signs the
// state and every device cert) is decoded once. This is not batch
// verification: every signature is checked on its own equation, and the
// group fails if any one fails.
type sigGroup struct {
	checks []sigCheck
	memo   *SignatureMemo // signatures known to verify (nil: none)
	buf    [8]sigCheck
}

// groupVerified is (*SignatureMemo)(nil).verified: verify with a sigGroup
// and no memo.
func groupVerified(verify func(g *sigGroup) error) error {
	var m *SignatureMemo
	return m.verified(verify)
}

// verified runs verify, a verification that checks signatures with
// verifySignature(g, ...), with a sigGroup whose memo is m, then verifies
// the group and adds its signatures to m. If verify fails or a signature
// does not verify, it runs verify again without a group, one
// ed25519.Verify per signature, so the error is exactly the one that path
// gives (and the work is wasted only on failures). Running verify with a
// group is sound because verify's result with every recorded signature
// valid is its result without a group, and any invalid one makes the
// group fail; a signature m holds was verified before.
func (m *SignatureMemo) verified(verify func(g *sigGroup) error) error {
	var g sigGroup
	g.checks, g.memo = g.buf[:0], m
	if err := verify(&g); err == nil && g.verify() {
		m.add(g.checks)
		return nil
	}
	return verify(nil)
}

// A SignatureMemo holds Ed25519 signatures known to verify, each as its
// exact public key, signed message and signature bytes, so that one
// operation verifying related states (a client's lookup and the account
// history behind it, whose first version carries the same signing key
// cert and device certs) verifies each signature once. Its methods are the
// package functions of the same names, except that a signature the memo
// holds is not verified again and every signature they verify is added;
// a lookup memo's (NewLookupMemo) check the lookup rule instead
// (VerifyAccountStateForLookup). Whether a signature verifies is a
// function of those bytes only, so the results are the package functions'
// results. A memo only ever holds signatures that were verified: one the
// lookup rule does not check is never added. A nil *SignatureMemo holds
// nothing and checks every signature. It is not safe for concurrent use;
// keep one for one operation.
type SignatureMemo struct {
	known []sigCheck
	rule  checkRule   // fullRule, or lookupRule for NewLookupMemo's
	keys  []*groupKey // public keys its groups decoded (at most maxGroupKeys)
}

// NewSignatureMemo returns a memo of the signatures of the given states
// (their signing key certs, their own signatures, their device certs),
// each of which VerifyAccountState, VerifyCreate, VerifyTransition,
// VerifyTransitionFrom or VerifyReset has accepted in this process: they
// are not verified again. Like VerifyTransitionOfVerified, it is sound
// only for such states; never pass a state from an untrusted source, nor
// one only VerifyAccountStateForLookup accepted (use NewLookupMemo).
func NewSignatureMemo(verified ...*AccountState) *SignatureMemo {
	return newMemo(fullRule, verified)
}

// AddVerified adds to m the signatures of the given states that m's rule
// checks, as NewSignatureMemo or NewLookupMemo seed a memo: each state must
// have been accepted, in this process, by a check of at least m's rule
// (for a lookup memo, VerifyAccountStateForLookup or VerifyAccountState).
// Never pass a state from an untrusted source.
func (m *SignatureMemo) AddVerified(verified ...*AccountState) {
	for _, s := range verified {
		var g sigGroup // records every signature check, verifies none
		_ = verifyAccountState(&g, s, m.rule)
		m.add(g.checks)
	}
}

// newMemo returns a memo checking rule that holds the signatures rule
// checks in the verified states.
func newMemo(rule checkRule, verified []*AccountState) *SignatureMemo {
	m := &SignatureMemo{rule: rule}
	m.AddVerified(verified...)
	return m
}

// checkRule returns the rule m's methods check (fullRule for a nil m).
func (m *SignatureMemo) checkRule() checkRule {
	if m == nil {
		return fullRule
	}
	return m.rule
}

// VerifyAccountState is the package's VerifyAccountState with m; for a
// lookup memo, VerifyAccountStateForLookup with m.
func (m *SignatureMemo) VerifyAccountState(s *AccountState) error {
	rule := m.checkRule()
	return m.verified(func(g *sigGroup) error { return verifyAccountState(g, s, rule) })
}

// VerifyCreate is the package's VerifyCreate with m; for a lookup memo,
// its rules with next's signatures checked as VerifyAccountStateForLookup
// checks them.
func (m *SignatureMemo) VerifyCreate(next *AccountState) error {
	rule := m.checkRule()
	return m.verified(func(g *sigGroup) error { return verifyCreate(g, next, rule) })
}

// VerifyTransitionFrom is the package's VerifyTransitionFrom with m; for a
// lookup memo, its rules with next's signatures checked as
// VerifyAccountStateForLookup checks them, and prev may be a state a
// lookup memo or VerifyAccountStateForLookup accepted.
func (m *SignatureMemo) VerifyTransitionFrom(prev, next *AccountState) error {
	rule := m.checkRule()
	return m.verified(func(g *sigGroup) error { return verifyTransitionFrom(g, prev, next, rule) })
}

// holds reports whether m holds the signature sig by pub over msg.
func (m *SignatureMemo) holds(pub, msg, sig []byte) bool {
	if m == nil {
		return false
	}
	for _, k := range m.known {
		if bytes.Equal(k.sig, sig) && bytes.Equal(k.pub, pub) && bytes.Equal(k.msg, msg) {
			return true
		}
	}
	return false
}

// add adds verified signatures to m (none if m is nil).
//
// It keeps copies of the bytes: a check's key and signature are slices of
// the verified state's fields, and a state changed in place after it was
// verified must be verified again, not found in m.
func (m *SignatureMemo) add(checks []sigCheck) {
	if m == nil {
		return
	}
	for _, c := range checks {
		b := make([]byte, 0, len(c.pub)+len(c.msg)+len(c.sig))
		b = append(append(append(b, c.pub...), c.msg...), c.sig...)
		p, ms := len(c.pub), len(c.pub)+len(c.msg)
		m.known = append(m.known, sigCheck{pub: b[:p:p], msg: b[p:ms:ms], sig: b[ms:]})
	}
}

// maxGroupKeys bounds the decoded public keys verify keeps for reuse, in
// one group or in a memo's groups.
const maxGroupKeys = 8

// key returns m's decoded key pub, decoding it and keeping it if m has
// room; nil if m does not hold it and is full.
func (m *SignatureMemo) key(pub []byte) *groupKey {
	for _, k := range m.keys {
		if bytes.Equal(k.enc[:], pub) {
			return k
		}
	}
	if len(m.keys) >= maxGroupKeys {
		return nil
	}
	k := new(groupKey)
	copy(k.enc[:], pub)
	k.ok = k.ed.set(pub)
	m.keys = append(m.keys, k)
	return k
}

// A groupKey is a public key as verify decoded it: a function of its 32
// bytes only, so a memo keeps it for its later groups (the signing key of
// a lookup's state signs the history's states too).
type groupKey struct {
	enc [32]byte
	ok  bool // enc decodes as a point
	ed  edKey
}

// verify reports whether every recorded signature verifies, each exactly
// as crypto/ed25519.Verify decides: by edFastAccept (the lattice-reduced
// check of edverify.go, which only ever accepts), and by ed25519.Verify
// for any signature it does not accept. A public key used by several
// checks is decoded, with its table of odd multiples, once (once per
// memo, with a memo: its later groups reuse it). A check whose
// key or signature has the wrong length fails (ed25519.Verify would
// panic on the key's). TestSigGroupMatchesEd25519 checks it against
// crypto/ed25519 on valid, altered and edge-case signatures.
func (g *sigGroup) verify() bool {
	n := len(g.checks)
	if n == 0 {
		return true
	}
	signaturesVerified.Add(uint64(n))
	var keyBuf [maxGroupKeys]groupKey // the group's keys, without a memo
	keys := keyBuf[:0]
	var tmp groupKey
	var kh hash.Hash
	for _, c := range g.checks {
		if len(c.pub) != ed25519.PublicKeySize || len(c.sig) != ed25519.SignatureSize {
			return false
		}
		var k *groupKey
		if g.memo != nil {
			k = g.memo.key(c.pub)
		} else {
			for i := range keys {
				if bytes.Equal(keys[i].enc[:], c.pub) {
					k = &keys[i]
					break
				}
			}
			if k == nil && len(keys) < maxGroupKeys {
				keys = append(keys, groupKey{})
				k = &keys[len(keys)-1]
				copy(k.enc[:], c.pub)
				k.ok = k.ed.set(c.pub)
			}
		}
		if k == nil {
			k = &tmp
			copy(k.enc[:], c.pub)
			k.ok = k.ed.set(c.pub)
		}
		if k.ok {
			if kh == nil {
				kh = sha512.New()
			}
			if edFastAccept(&k.ed, kh, c.pub, c.msg, c.sig) {
				continue
			}
		}
		if !ed25519.Verify(c.pub, c.msg, c.sig) {
			return false
		}
	}
	return true
}
