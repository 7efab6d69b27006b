package devices

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// builder appends the primitives of docs/protocol.md section 1.
type builder struct{ b []byte }

func (w *builder) u8(v uint8)   { w.b = append(w.b, v) }
func (w *builder) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *builder) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *builder) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *builder) raw(p []byte) { w.b = append(w.b, p...) }
func (w *builder) string16(s string) {
	w.u16(uint16(len(s)))
	w.b = append(w.b, s...)
}
func (w *builder) time(t time.Time) { w.u64(uint64(t.Unix())) }

// reader consumes the primitives of docs/protocol.md section 1. The first
// error sticks; later reads return zero values.
type reader struct {
	what string // structure being decoded, for error messages
	b    []byte
	off  int
	err  error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s (at byte %d)", ErrMalformed, r.what, fmt.Sprintf(format, args...), r.off)
	}
}

// failErr records a semantic error found after reading, keeping its
// sentinel for errors.Is.
func (r *reader) failErr(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %w", ErrMalformed, r.what, err)
	}
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.fail("truncated reading %s: need %d bytes, have %d", field, n, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8(field string) uint8 {
	p := r.take(1, field)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *reader) u16(field string) uint16 {
	p := r.take(2, field)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

func (r *reader) u32(field string) uint32 {
	p := r.take(4, field)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (r *reader) u64(field string) uint64 {
	p := r.take(8, field)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (r *reader) array32(field string) (a [32]byte) {
	copy(a[:], r.take(32, field))
	return a
}

func (r *reader) array64(field string) (a [64]byte) {
	copy(a[:], r.take(64, field))
	return a
}

// string16 reads a string16 of at most max bytes holding valid UTF-8.
func (r *reader) string16(field string, max int) string {
	n := int(r.u16(field + " length"))
	if r.err != nil {
		return ""
	}
	if n > max {
		r.fail("%s is %d bytes, over the limit of %d", field, n, max)
		return ""
	}
	p := r.take(n, field)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(p) {
		r.fail("%s is not valid UTF-8", field)
		return ""
	}
	return string(p)
}

func (r *reader) time(field string) time.Time {
	v := r.u64(field)
	if r.err != nil {
		return time.Time{}
	}
	if v > math.MaxInt64 {
		r.fail("%s %d is out of range", field, v)
		return time.Time{}
	}
	return time.Unix(int64(v), 0).UTC()
}

// format reads the leading format byte and rejects any but want.
func (r *reader) format(want uint8) {
	v := r.u8("format byte")
	if r.err == nil && v != want {
		r.off--
		r.fail("unknown format byte 0x%02x (want 0x%02x)", v, want)
	}
}

// done rejects trailing bytes and returns the sticky error.
func (r *reader) done() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}

// checkTime reports whether t can be encoded as a protocol time: whole
// seconds, not before the Unix epoch.
func checkTime(what string, t time.Time) error {
	if t.Unix() < 0 {
		return fmt.Errorf("%w: %s %v is before 1970", ErrMalformed, what, t)
	}
	if t.Nanosecond() != 0 {
		return fmt.Errorf("%w: %s %v is not a whole second", ErrMalformed, what, t)
	}
	return nil
}

// domainHash is SHA-256(context || 0x00 || parts...), protocol.md section 2.
func domainHash(context string, parts ...[]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(context))
	h.Write([]byte{0})
	for _, p := range parts {
		h.Write(p)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// signedMessage is context || 0x00 || parts..., the input of every Ed25519
// signature (protocol.md section 2).
func signedMessage(context string, parts ...[]byte) []byte {
	m := make([]byte, 0, len(context)+1+64)
	m = append(m, context...)
	m = append(m, 0)
	for _, p := range parts {
		m = append(m, p...)
	}
	return m
}

// Domain-separation contexts. Each is listed in docs/protocol.md. Those
// whose signer or signed encoding changed with format 2 end in "v2".
const (
	ctxRootHKDF           = "keyline identity-key v1"
	ctxDeviceID           = "keyline device-id v1"
	ctxSigningKeyCert     = "keyline signing-key-cert v1"
	ctxDeviceCert         = "keyline device-cert v2"
	ctxDeviceBacksig      = "keyline device-cert backsig v2"
	ctxAccountState       = "keyline account-state v2"
	ctxAccountHash        = "keyline account-state hash v2"
	ctxReset              = "keyline reset v2"
	ctxPairingRequest     = "keyline pairing-request v1"
	ctxPairingCheck       = "keyline pairing-code checksum v1"
	ctxPairingFP          = "keyline pairing fingerprint v1"
	ctxSafetyNumber       = "keyline safety-number v1"
	ctxSigningKeyHandover = "keyline signing-key handover v1"
)
