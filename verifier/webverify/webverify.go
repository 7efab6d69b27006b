// Package webverify is the verifier's API for JavaScript: JSON in, JSON
// out, no I/O. cmd/keyline-wasm exposes it to a web page as
// keyline.verifyLookup and friends (docs/api.md, "Verifying in the
// browser"); it is a plain Go package so that it is tested natively.
//
// It wraps verifier.VerifyLookup, verifier.CheckHistory and
// verifier.ClientState unchanged: every rule the verifier checks, including
// the history rules of verifier.Client.Lookup (identity key changes only
// through a directory reset, signing key generations), applies in the
// browser too. The page keeps the state JSON (the verifier's client state
// file format) in its storage and passes it to every call; calls are pure
// and return the new state.
//
// Calls do no I/O: when the verification needs a directory resource the
// page has not passed yet (a history page, a consistency proof), the result
// is not OK and names it in Need; the page fetches that path from the
// directory, adds the answer to the fetched map and calls again (see
// VerifyLookup).
package webverify

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"rsc.io/qr"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/jsonapi"
)

// Result is the JSON answer of VerifyLookup.
type Result struct {
	// OK: every check passed. Error says what failed otherwise, and
	// ErrorKind names the verifier error (e.g. "ErrMapProof").
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	ErrorKind string `json:"error_kind,omitempty"`
	// Need, if set, is the path (with query) of a directory resource the
	// verification needs and the page has not passed: GET it from the
	// directory and call again with its body under this key in fetched.
	// A result with Need is not OK: nothing was accepted yet.
	Need string `json:"need,omitempty"`

	User  string `json:"user"`
	Found bool   `json:"found"`
	// SafetyChanged: the contact's identity key differs from the pinned
	// one. With OK it was an unverified pin (now replaced by the new key);
	// without OK it was a verified pin and the lookup failed. Either way a
	// page must show it loudly.
	SafetyChanged bool   `json:"safety_changed"`
	Pin           string `json:"pin,omitempty"` // none, new, match, match_verified, changed
	PinnedKey     string `json:"pinned_key,omitempty"`
	IdentityKey   string `json:"identity_key,omitempty"` // hex
	Version       uint64 `json:"version,omitempty"`
	LogIndex      uint64 `json:"log_index,omitempty"`
	Reset         string `json:"reset,omitempty"` // the reset warning, if the latest entry is a directory reset

	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	Epoch      *Epoch      `json:"epoch,omitempty"`
	Devices    []Device    `json:"devices,omitempty"`
	Warnings   []string    `json:"warnings,omitempty"`
	// Checks lists, in order, what was verified.
	Checks []string `json:"checks,omitempty"`
	// State is the client state to keep after this lookup (set only if OK).
	State string `json:"state,omitempty"`
}

// Checkpoint describes the verified checkpoint.
type Checkpoint struct {
	Origin    string   `json:"origin"`
	Size      uint64   `json:"size"`
	Root      string   `json:"root"` // hex
	Cosigners []string `json:"cosigners"`
}

// Epoch describes the verified epoch record.
type Epoch struct {
	Epoch   uint64 `json:"epoch"`
	Time    string `json:"time"` // RFC 3339
	MapRoot string `json:"map_root"`
}

// Device is one device of the account.
type Device struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Created string `json:"created"`
}

// errorKinds names the verifier's sentinels for ErrorKind.
var errorKinds = []struct {
	err  error
	name string
}{
	// The history rules first: a change of key the history refuses names
	// the rule, not only ErrIdentityChanged.
	{verifier.ErrStaleSigningKey, "ErrStaleSigningKey"}, {verifier.ErrResetWindow, "ErrResetWindow"},
	{verifier.ErrIdentityChanged, "ErrIdentityChanged"},
	{verifier.ErrSafetyNumberChanged, "ErrSafetyNumberChanged"},
	{verifier.ErrUserID, "ErrUserID"}, {verifier.ErrCheckpoint, "ErrCheckpoint"},
	{verifier.ErrBundleForm, "ErrBundleForm"},
	{verifier.ErrRollback, "ErrRollback"}, {verifier.ErrSplitView, "ErrSplitView"},
	{verifier.ErrConsistency, "ErrConsistency"}, {verifier.ErrEpochRecord, "ErrEpochRecord"},
	{verifier.ErrStale, "ErrStale"}, {verifier.ErrVRF, "ErrVRF"}, {verifier.ErrMapProof, "ErrMapProof"},
	{verifier.ErrPresence, "ErrPresence"}, {verifier.ErrAccountUpdate, "ErrAccountUpdate"},
	{verifier.ErrIndexMismatch, "ErrIndexMismatch"}, {verifier.ErrMapValue, "ErrMapValue"},
	{verifier.ErrAccountState, "ErrAccountState"}, {verifier.ErrUserMismatch, "ErrUserMismatch"},
	{verifier.ErrVersionMismatch, "ErrVersionMismatch"}, {verifier.ErrRevokedDevice, "ErrRevokedDevice"},
	{verifier.ErrReset, "ErrReset"}, {verifier.ErrAccountMissing, "ErrAccountMissing"},
	{verifier.ErrHistory, "ErrHistory"},
	{verifier.ErrTrustConfig, "ErrTrustConfig"}, {verifier.ErrState, "ErrState"},
	{jsonapi.ErrMalformed, "ErrMalformedBundle"},
}

func failed(r *Result, err error) *Result {
	r.OK, r.Error = false, err.Error()
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			r.ErrorKind = k.name
			break
		}
	}
	return r
}

// parseState parses a state document; "" is a client with no state yet.
func parseState(state string) (*verifier.ClientState, error) {
	if strings.TrimSpace(state) == "" {
		return &verifier.ClientState{Contacts: map[string]*verifier.Contact{}}, nil
	}
	return verifier.ParseClientState([]byte(state))
}

// KnownSize returns the tree size of the state's last verified checkpoint
// (0 if none): the known_size to send with the next lookup so that the
// bundle carries a consistency proof, or omits the checkpoint if it is
// still the served one.
func KnownSize(trust, state string) (uint64, error) {
	n, _, err := Known(trust, state)
	return n, err
}

// Known returns KnownSize and whether the state holds the EpochRecord of
// its checkpoint. A state without it (written before state format 2)
// cannot verify a bundle that omits the checkpoint: the page then fetches
// the lookup again without known_size (docs/api.md).
func Known(trust, state string) (size uint64, holdsRecord bool, err error) {
	t, err := verifier.ParseTrust([]byte(trust))
	if err != nil {
		return 0, false, err
	}
	st, err := parseState(state)
	if err != nil {
		return 0, false, err
	}
	if st.Checkpoint == nil {
		return 0, false, nil
	}
	cp, _, err := klog.OpenCheckpoint(st.Checkpoint, t.Log, t.Origin)
	if err != nil {
		return 0, false, fmt.Errorf("%w: last verified checkpoint: %v", verifier.ErrState, err)
	}
	return cp.Size, st.EpochRecord != nil, nil
}

// VerifyLookup verifies the JSON lookup bundle for user (GET
// /v1/lookup/<user>) against trust (a trust.json document) and state (a
// client state document, or "") at time now, as verifier.Client.Lookup
// does: verifier.VerifyLookup, then verifier.CheckHistory. It returns the
// result with the state to keep.
//
// fetched holds the directory resources the page fetched for earlier
// attempts, by path (the Need of the earlier results): the bodies of GET
// /v1/history/<user>?from_version=N and /v1/consistency?old=A&new=B, or the
// directory's error answer. While a resource the history check needs is
// missing, the result is not OK and names it in Need. An error answer, an
// unparsable body or a history that does not verify fails the lookup.
func VerifyLookup(bundle, trust, state, user string, fetched map[string]string, now time.Time) *Result {
	r := &Result{User: user}
	t, err := verifier.ParseTrust([]byte(trust))
	if err != nil {
		return failed(r, err)
	}
	st, err := parseState(state)
	if err != nil {
		return failed(r, err)
	}
	b, err := jsonapi.ParseLookup([]byte(bundle))
	if err != nil {
		return failed(r, err)
	}
	uid, err := devices.NormalizeUserID(user)
	if err != nil {
		return failed(r, fmt.Errorf("%w: %q: %v", verifier.ErrUserID, user, err))
	}
	res, err := verifier.VerifyLookup(t, st, uid, b, now)
	src := &fetchedSource{fetched: fetched}
	res, err = verifier.CheckHistory(context.Background(), t, src, nil, st, uid, res, err)
	var need *needError
	if errors.As(err, &need) {
		r.Need = need.path
		return failed(r, err)
	}
	var changed *verifier.SafetyNumberChangedError
	if errors.As(err, &changed) {
		r.SafetyChanged = true
		r.PinnedKey = hex.EncodeToString(changed.Old[:])
		r.IdentityKey = hex.EncodeToString(changed.New[:])
		if changed.Result != nil {
			describe(r, t, st, changed.Result)
			r.Pin = "changed"
		}
		return failed(r, err)
	}
	if err != nil {
		return failed(r, err)
	}
	describe(r, t, st, res)
	if src.from > 0 {
		r.Checks = append(r.Checks, fmt.Sprintf("account history v%d to v%d: included in the log, hash-chained, every transition verified (no rotated-out signing key, resets within their window)", src.from, res.Version))
	}
	if err := st.Apply(res, now); err != nil {
		return failed(r, err)
	}
	out, err := st.Marshal()
	if err != nil {
		return failed(r, err)
	}
	r.OK, r.State = true, string(out)
	return r
}

// needError: the verification needs the directory resource at path, which
// the page has not fetched yet.
type needError struct{ path string }

func (e *needError) Error() string {
	return fmt.Sprintf("webverify: the directory's %s is needed to verify the account history: fetch it and verify again", e.path)
}

// HistoryPath is the path of the directory's history of user from version
// from (GET, docs/api.md).
func HistoryPath(user string, from uint64) string {
	return fmt.Sprintf("/v1/history/%s?from_version=%d", url.PathEscape(user), from)
}

// ConsistencyPath is the path of the directory's consistency proof between
// two tree sizes (GET, docs/api.md).
func ConsistencyPath(oldSize, newSize uint64) string {
	return fmt.Sprintf("/v1/consistency?old=%d&new=%d", oldSize, newSize)
}

// fetchedSource is the verifier.Source of verifier.CheckHistory: it serves
// what the page fetched and asks for the rest (needError). Only History
// and ConsistencyProof are used; everything it serves is verified.
type fetchedSource struct {
	fetched map[string]string
	from    uint64 // the first history version asked for (0: none)
}

// get returns the body fetched for path; the directory's error answer is
// an ErrHistory.
func (s *fetchedSource) get(path string) ([]byte, error) {
	body, ok := s.fetched[path]
	if !ok {
		return nil, &needError{path: path}
	}
	var e jsonapi.Error
	if json.Unmarshal([]byte(body), &e) == nil && e.Error.Code != "" {
		return nil, fmt.Errorf("%w: the directory answered %s with %s %s: %s", verifier.ErrHistory, path, e.Error.Code, e.Error.Reason, e.Error.Message)
	}
	return []byte(body), nil
}

func (s *fetchedSource) History(_ context.Context, user string, from uint64) (*verifier.HistoryBundle, error) {
	if s.from == 0 {
		s.from = from
	}
	b, err := s.get(HistoryPath(user, from))
	if err != nil {
		return nil, err
	}
	h, err := jsonapi.ParseHistory(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", verifier.ErrHistory, err)
	}
	return h, nil
}

func (s *fetchedSource) ConsistencyProof(_ context.Context, oldSize, newSize uint64) ([][]byte, error) {
	b, err := s.get(ConsistencyPath(oldSize, newSize))
	if err != nil {
		return nil, err
	}
	p, err := jsonapi.ParseProof(b)
	if err != nil {
		return nil, fmt.Errorf("%w: consistency proof: %v", verifier.ErrHistory, err)
	}
	return p, nil
}

var errNotFetched = errors.New("webverify: the history check asked for a resource the page does not fetch")

func (s *fetchedSource) Lookup(context.Context, string, uint64) (*verifier.LookupBundle, error) {
	return nil, errNotFetched
}

func (s *fetchedSource) Checkpoint(context.Context) ([]byte, error) { return nil, errNotFetched }

func (s *fetchedSource) Entries(context.Context, uint64, uint64) ([][]byte, error) {
	return nil, errNotFetched
}

// describe fills r from a verified result.
func describe(r *Result, t *verifier.Trust, st *verifier.ClientState, res *verifier.LookupResult) {
	cp := res.Checkpoint
	r.User, r.Found = res.UserID, res.Found
	r.Checkpoint = &Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: hex.EncodeToString(cp.Hash[:]), Cosigners: append([]string{}, cp.Cosigners...)}
	r.Epoch = &Epoch{Epoch: res.Epoch.Epoch, Time: time.Unix(int64(res.Epoch.Timestamp), 0).UTC().Format(time.RFC3339), MapRoot: hex.EncodeToString(res.Epoch.MapRoot[:])}
	r.Warnings = append([]string{}, res.Warnings...)
	if res.Held {
		r.Checks = append(r.Checks, fmt.Sprintf("checkpoint (size %d) not sent: the one held from the last lookup is still current", cp.Size))
	}
	r.Checks = append(r.Checks,
		fmt.Sprintf("checkpoint signed by the log key %s (size %d)", t.Log.Name(), cp.Size),
		fmt.Sprintf("witness cosignatures: %d valid, %d required", len(cp.Cosigners), t.Quorum))
	if st.Checkpoint != nil && !res.Held {
		r.Checks = append(r.Checks, "consistent with the last verified checkpoint (no rollback, no split view)")
	}
	r.Checks = append(r.Checks,
		fmt.Sprintf("epoch %d record is the checkpoint's last leaf, fresh (max age %s)", res.Epoch.Epoch, t.MaxAge),
		"VRF proof of the user's index (RFC 9381)")
	if !res.Found {
		r.Pin = "none"
		r.Checks = append(r.Checks, "map proof: the account does not exist")
		return
	}
	r.Checks = append(r.Checks,
		fmt.Sprintf("map proof: version %d at log entry %d", res.Version, res.LogIndex),
		fmt.Sprintf("account update is the one the map value binds (log entry %d; auditors check the map against the log)", res.LogIndex),
		fmt.Sprintf("account state signed by its account signing key, which its identity key certifies; %d device certificates, each back-signed by its device and covered by the state's signature (docs/protocol.md §7.1.7)", len(res.State.Devices)))
	r.Version, r.LogIndex = res.Version, res.LogIndex
	r.IdentityKey = hex.EncodeToString(res.IdentityKey[:])
	if res.Reset != nil && len(res.Warnings) > 0 {
		r.Reset = res.Warnings[0]
	}
	for _, d := range res.State.Devices {
		r.Devices = append(r.Devices, Device{ID: d.ID.String(), Name: d.Name, Created: d.Created.UTC().Format(time.RFC3339)})
	}
	switch res.Pin {
	case verifier.PinNew:
		r.Pin = "new"
	case verifier.PinMatch:
		r.Pin = "match"
	case verifier.PinMatchVerified:
		r.Pin = "match_verified"
	case verifier.PinChanged:
		r.Pin, r.SafetyChanged = "changed", true
		r.PinnedKey = hex.EncodeToString(res.PinnedIK[:])
	}
}

// SafetyNumber is the JSON answer of NewSafetyNumber.
type SafetyNumber struct {
	OK     bool     `json:"ok"`
	Error  string   `json:"error,omitempty"`
	Digits string   `json:"digits,omitempty"` // 60 digits
	Groups []string `json:"groups,omitempty"` // 12 groups of 5
	QR     string   `json:"qr,omitempty"`     // the QR payload
	QRSVG  string   `json:"qr_svg,omitempty"` // the QR code as an SVG image
}

// NewSafetyNumber computes the safety number between two users from their
// identity keys (hex, as in Result.IdentityKey): the same 60 digits and QR
// payload as `keyline safety-number`.
func NewSafetyNumber(localUser, localKey, remoteUser, remoteKey string) *SafetyNumber {
	out := &SafetyNumber{}
	lk, err1 := parseKey(localKey)
	rk, err2 := parseKey(remoteKey)
	if err := errors.Join(err1, err2); err != nil {
		out.Error = err.Error()
		return out
	}
	sn, err := devices.NewSafetyNumber(localUser, lk, remoteUser, rk)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.Digits, out.QR = sn.Digits(), sn.QR()
	for i := 0; i+5 <= len(out.Digits); i += 5 {
		out.Groups = append(out.Groups, out.Digits[i:i+5])
	}
	svg, err := qrSVG(out.QR)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.QRSVG, out.OK = svg, true
	return out
}

func parseKey(s string) ([32]byte, error) {
	var k [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return k, fmt.Errorf("webverify: identity key %q is not 64 hex digits", s)
	}
	copy(k[:], b)
	return k, nil
}

// qrSVG draws payload as a QR code (level L, 4-module quiet zone), one
// rectangle per dark module.
func qrSVG(payload string) (string, error) {
	code, err := qr.Encode(payload, qr.L)
	if err != nil {
		return "", fmt.Errorf("webverify: QR code: %v", err)
	}
	n := code.Size + 8
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n, n*4, n*4, n, n)
	for y := 0; y < code.Size; y++ {
		for x := 0; x < code.Size; x++ {
			if code.Black(x, y) {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x+4, y+4)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}

// MarkVerified returns state with user's pin set to key (hex) and marked
// verified: call it after the user compared safety numbers.
func MarkVerified(state, user, key string, now time.Time) (string, error) {
	st, err := parseState(state)
	if err != nil {
		return "", err
	}
	k, err := parseKey(key)
	if err != nil {
		return "", err
	}
	if err := st.Pin(user, k, true, now); err != nil {
		return "", err
	}
	out, err := st.Marshal()
	return string(out), err
}
