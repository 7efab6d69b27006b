package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	klog "github.com/keyline/keyline/log"
)

// MaxStateSize bounds an AccountState in a request: the log's payload bound
// (the largest valid AccountState is 45,128 bytes, the largest
// ResetAuthorization 44,800; docs/protocol.md section 3).
const MaxStateSize = klog.MaxPayloadSize

// Update validates a signed AccountState (create: version 1 of a new
// account; update: version latest+1 signed by the same identity key) and
// waits until the epoch containing it is published. Validation runs in the
// caller's goroutine. Several versions of one account may be chained within
// one epoch: validation is against the latest accepted state, including
// states still waiting for their epoch. If another update of the same
// account is accepted between this call's validation and its enqueueing,
// it fails with Aborted / CONCURRENT_UPDATE.
//
// If ctx ends while waiting, Update returns ctx's error but the update may
// still be published. Errors are *apierr.Error.
func (s *Server) Update(ctx context.Context, stateBytes []byte) (*UpdateResult, error) {
	if len(stateBytes) > MaxStateSize {
		return nil, apierr.New(codes.InvalidArgument, apierr.RequestTooLarge, "account_state is %d bytes, over the %d-byte bound", len(stateBytes), MaxStateSize)
	}
	if len(stateBytes) == 0 {
		return nil, apierr.New(codes.InvalidArgument, apierr.MalformedRequest, "account_state is empty")
	}
	st, err := devices.ParseAccountState(stateBytes)
	if err != nil {
		return nil, apierr.New(codes.InvalidArgument, apierr.MalformedAccountState, "%v", err)
	}
	pi, index, err := s.vrf.get(s.db, st.UserID)
	if err != nil {
		return nil, s.internal(err)
	}
	prev, err := s.latest(ctx, st.UserID, index)
	if err != nil {
		return nil, s.internal(err)
	}
	kind := klog.UpdateUpdate
	if prev == nil {
		if st.Version != 1 {
			return nil, apierr.New(codes.FailedPrecondition, apierr.UnknownAccount, "account %q does not exist; its first state must have version 1, not %d", st.UserID, st.Version)
		}
		kind = klog.UpdateCreate
		if err := devices.VerifyCreate(st); err != nil {
			return nil, devicesError(err)
		}
	} else {
		if st.Version == 1 {
			return nil, apierr.New(codes.FailedPrecondition, apierr.AccountExists, "account %q already exists (latest version %d)", st.UserID, prev.version)
		}
		if prev.reset != nil {
			if err := s.checkAfterReset(prev, st); err != nil {
				return nil, err
			}
		} else if err := devices.VerifyTransitionFrom(prev.state, st); err != nil {
			// prev was verified when it was accepted (or replayed from our
			// own log), so certs it already holds need not be verified again.
			return nil, devicesError(err)
		}
	}
	return s.enqueue(ctx, prev, &entry{index: index, userID: st.UserID, pi: pi, version: st.Version, state: st}, kind, stateBytes)
}

// checkAfterReset validates st, the version after the reset entry prev
// (devices.VerifyAfterReset), against the directory's clock: a
// cancellation by the previous keys only before the reset takes effect
// (else RESET_WINDOW), an update by the reset's new keys only after
// (else RESET_PENDING).
func (s *Server) checkAfterReset(prev *entry, st *devices.AccountState) error {
	cancelled, err := devices.VerifyAfterReset(nil, prev.reset, st)
	if err != nil {
		return devicesError(err)
	}
	now := time.Now()
	eff := prev.reset.EffectiveAt.UTC().Format(time.RFC3339)
	if cancelled && !prev.reset.Pending(now) {
		return apierr.New(codes.FailedPrecondition, apierr.ResetWindow, "the reset of %q took effect at %s; it can no longer be cancelled", st.UserID, eff)
	}
	if !cancelled && prev.reset.Pending(now) {
		return apierr.New(codes.FailedPrecondition, apierr.ResetPending, "the reset of %q is pending until %s; its new keys cannot be used before", st.UserID, eff)
	}
	return nil
}

// ResetReason parses the reason of a ResetRequest: "lost" (or empty) for
// devices.ResetLostAllKeys, "compromised" for devices.ResetCompromised.
func ResetReason(s string) (devices.ResetReason, error) {
	switch s {
	case "", "lost", "lost-all-keys", "lost_all_keys":
		return devices.ResetLostAllKeys, nil
	case "compromised":
		return devices.ResetCompromised, nil
	}
	return 0, apierr.New(codes.InvalidArgument, apierr.BadResetReason, "reset reason %q is not \"lost\" or \"compromised\"", s)
}

// Reset replaces the root key of userID's account by the one of
// stateBytes (version latest+1, signed by the new root key's generation-1
// signing key, every old device revoked), signed with the directory's
// reset key and published as a pending reset entry: it takes effect
// Config.ResetWindow later unless the owner cancels it first (an update
// signed with the previous keys, see checkAfterReset). token must be the
// admin token. Errors are *apierr.Error.
func (s *Server) Reset(ctx context.Context, token, userID string, stateBytes []byte, reason string) (*UpdateResult, error) {
	if token == "" {
		return nil, apierr.New(codes.Unauthenticated, apierr.Unauthenticated, "Reset needs the admin token (authorization: Bearer <token>)")
	}
	if !s.keys.checkAdmin(token) {
		return nil, apierr.New(codes.PermissionDenied, apierr.PermissionDenied, "wrong admin token")
	}
	if len(stateBytes) > MaxStateSize {
		return nil, apierr.New(codes.InvalidArgument, apierr.RequestTooLarge, "account_state is %d bytes, over the %d-byte bound", len(stateBytes), MaxStateSize)
	}
	rr, err := ResetReason(reason)
	if err != nil {
		return nil, err
	}
	uid, err := devices.NormalizeUserID(userID)
	if err != nil {
		return nil, apierr.New(codes.InvalidArgument, apierr.BadUserID, "%v", err)
	}
	st, err := devices.ParseAccountState(stateBytes)
	if err != nil {
		return nil, apierr.New(codes.InvalidArgument, apierr.MalformedAccountState, "%v", err)
	}
	if st.UserID != uid {
		return nil, apierr.New(codes.InvalidArgument, apierr.UserMismatch, "account_state is for %q, the request for %q", st.UserID, uid)
	}
	pi, index, err := s.vrf.get(s.db, uid)
	if err != nil {
		return nil, s.internal(err)
	}
	prev, err := s.latest(ctx, uid, index)
	if err != nil {
		return nil, s.internal(err)
	}
	if prev == nil {
		return nil, apierr.New(codes.FailedPrecondition, apierr.UnknownAccount, "account %q does not exist; nothing to reset", uid)
	}
	if prev.reset != nil {
		if prev.reset.Pending(time.Now()) {
			return nil, apierr.New(codes.FailedPrecondition, apierr.ResetPending, "a reset of %q is already pending until %s", uid, prev.reset.EffectiveAt.UTC().Format(time.RFC3339))
		}
		return nil, apierr.New(codes.FailedPrecondition, apierr.ResetPending, "the latest version of %q is a reset; its new keys must publish a version before another reset", uid)
	}
	auth, err := devices.SignReset(s.keys.resetKey, prev.state, st, rr, time.Now(), s.cfg.ResetWindow)
	if err != nil {
		return nil, devicesError(err)
	}
	payload, err := auth.MarshalBinary()
	if err != nil {
		return nil, devicesError(err)
	}
	return s.enqueue(ctx, prev, &entry{index: index, userID: uid, pi: pi, version: st.Version, state: st, reset: auth}, klog.UpdateReset, payload)
}

// enqueue builds e's leaf on prev, queues it if prev is still the
// account's latest state, and waits for its epoch.
func (s *Server) enqueue(ctx context.Context, prev *entry, e *entry, kind klog.UpdateKind, payload []byte) (*UpdateResult, error) {
	if prev != nil {
		e.prevHash = prev.entryHash
	}
	u := &klog.AccountUpdate{Index: e.index, Version: e.version, PrevHash: e.prevHash, Update: kind, Payload: payload}
	leaf, err := u.Marshal()
	if err != nil {
		return nil, apierr.New(codes.InvalidArgument, apierr.MalformedAccountState, "%v", err)
	}
	e.leaf, e.entryHash = leaf, klog.EntryHash(leaf)
	e.done = make(chan result, 1)
	if s.sh != nil {
		return s.enqueueShared(ctx, e)
	}

	if err := s.degradedErr(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return nil, apierr.New(codes.Unavailable, apierr.Unavailable, "the directory is closed or its sequencer stopped after a failure")
	}
	if s.recovering.Load() {
		s.mu.Unlock()
		return nil, recoveringErr()
	}
	cur, ok := s.pending[e.index]
	if !ok {
		var err error
		if cur, err = s.committed(ctx, e.userID); err != nil {
			s.mu.Unlock()
			return nil, s.internal(err)
		}
	}
	if (cur == nil) != (prev == nil) || cur != nil && cur.entryHash != prev.entryHash {
		s.mu.Unlock()
		return nil, apierr.New(codes.Aborted, apierr.ConcurrentUpdate, "another update of %q was accepted meanwhile; look it up and retry", e.userID)
	}
	if q := s.cfg.Limits.QueueBytes; q > 0 && s.queuedBytes+int64(len(e.leaf)) > q {
		s.mu.Unlock()
		return nil, apierr.New(codes.ResourceExhausted, apierr.QueueFull, "the update queue is full (%d bytes of updates waiting for an epoch); retry later", s.queuedBytes)
	}
	select {
	case s.queue <- e:
		s.queuedBytes += int64(len(e.leaf))
	default:
		s.mu.Unlock()
		return nil, apierr.New(codes.ResourceExhausted, apierr.QueueFull, "the update queue is full (%d updates waiting for an epoch); retry later", cap(s.queue))
	}
	s.pending[e.index] = e
	if len(s.queue) >= s.cfg.MaxBatch {
		s.kickSequencer()
	}
	s.mu.Unlock()

	select {
	case r := <-e.done:
		if r.err != nil {
			return nil, r.err
		}
		return &UpdateResult{Epoch: r.epoch, LogIndex: r.logIndex, Leaf: e.leaf, Checkpoint: r.checkpoint}, nil
	case <-ctx.Done():
		return nil, ctxError(ctx.Err(), "waiting for the epoch; the update may still be published")
	}
}

// kickSequencer makes the sequencer cut an epoch now (it takes up to
// MaxBatch queued entries, and more epochs while MaxBatch remain).
func (s *Server) kickSequencer() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// ctxError converts a context error into an API error.
func ctxError(err error, what string) error {
	code := codes.Canceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	}
	return apierr.New(code, apierr.Canceled, "%v while %s", err, what)
}

// latest returns the latest accepted entry (pending or committed) of the
// account of userID, whose VRF index is index, or nil if the account does
// not exist.
func (s *Server) latest(ctx context.Context, userID string, index [32]byte) (*entry, error) {
	if s.sh != nil {
		return s.latestShared(context.Background(), index)
	}
	s.mu.Lock()
	e, ok := s.pending[index]
	s.mu.Unlock()
	if ok {
		return e, nil
	}
	return s.committed(ctx, userID)
}

// internal logs err and returns an Internal error that does not leak it.
func (s *Server) internal(err error) error {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ctxError(err, "serving the request")
	}
	if errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		return apierr.New(codes.Unavailable, apierr.Unavailable, "directory is shut down")
	}
	if !permanent(err) && status.Code(err) == codes.Unavailable {
		s.cfg.Logf("directory: log backend unavailable: %v", err)
		return apierr.New(codes.Unavailable, apierr.Unavailable, "the log backend is unavailable; retry shortly")
	}
	s.cfg.Logf("directory: internal error: %v", err)
	return apierr.New(codes.Internal, apierr.Internal, "internal error")
}

// devicesError maps a devices rule violation to an API error.
func devicesError(err error) error {
	type rule struct {
		err    error
		code   codes.Code
		reason string
	}
	for _, r := range []rule{
		{devices.ErrReset, codes.InvalidArgument, apierr.BadReset},
		{devices.ErrStaleSigningKey, codes.FailedPrecondition, apierr.StaleSigningKey},
		{devices.ErrResetPending, codes.FailedPrecondition, apierr.ResetPending},
		{devices.ErrResetWindow, codes.FailedPrecondition, apierr.ResetWindow},
		{devices.ErrUserMismatch, codes.InvalidArgument, apierr.UserMismatch},
		{devices.ErrVersion, codes.FailedPrecondition, apierr.VersionNotNext},
		{devices.ErrPrevHash, codes.FailedPrecondition, apierr.PrevHashMismatch},
		{devices.ErrTimestamp, codes.FailedPrecondition, apierr.TimestampBackwards},
		{devices.ErrIdentityChanged, codes.FailedPrecondition, apierr.IdentityChanged},
		{devices.ErrSigner, codes.InvalidArgument, apierr.BadSignature},
		{devices.ErrSigningKeyCert, codes.InvalidArgument, apierr.BadSigningKeyCert},
		{devices.ErrDeviceCert, codes.InvalidArgument, apierr.BadDeviceCert},
		{devices.ErrRevokedDevice, codes.FailedPrecondition, apierr.RevokedDevice},
		{devices.ErrRevocation, codes.FailedPrecondition, apierr.BadRevocation},
		{devices.ErrDuplicateDevice, codes.InvalidArgument, apierr.DuplicateDevice},
		{devices.ErrUserID, codes.InvalidArgument, apierr.BadUserID},
		{devices.ErrMalformed, codes.InvalidArgument, apierr.MalformedAccountState},
	} {
		if errors.Is(err, r.err) {
			return apierr.New(r.code, r.reason, "%v", err)
		}
	}
	return apierr.New(codes.InvalidArgument, apierr.MalformedAccountState, "%s", fmt.Sprint(err))
}
