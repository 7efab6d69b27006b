// Package jsonapi is the JSON encoding of the directory's read API over
// HTTP (GET /v1/lookup/<user> and the others, docs/api.md), so that clients
// without gRPC (a browser, curl) fetch the same proof bundles as gRPC
// clients and verify them the same way.
//
// Every byte string is standard base64 with padding (RFC 4648 section 4),
// decoded strictly (canonical padding bits, no line breaks); a list of hashes is a JSON array of such strings;
// numbers are JSON integers (log indices and sizes stay far below 2^53).
// Decoders reject unknown fields, trailing data and oversized lists. The
// bytes inside are the canonical encodings of docs/protocol.md; nothing
// here is signed or hashed, the verifier checks the decoded bundle.
package jsonapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keyline/keyline/verifier"
)

// Bounds checked by the decoders.
const (
	MaxProofHashes = 128     // hashes in one inclusion or consistency proof
	MaxDocument    = 4 << 20 // bytes of one JSON document
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("jsonapi: malformed JSON document")

// LookupBundle is the JSON form of verifier.LookupBundle. A held-checkpoint
// bundle (the request's known_size equals the served size) has no
// checkpoint, epoch_record and epoch_record_inclusion; an absent or empty
// field decodes as empty, and the verifier decides the bundle's form.
type LookupBundle struct {
	Checkpoint           string   `json:"checkpoint,omitempty"`
	VRFProof             string   `json:"vrf_proof"`
	MapProof             string   `json:"map_proof"`
	EpochRecord          string   `json:"epoch_record,omitempty"`
	EpochRecordInclusion []string `json:"epoch_record_inclusion,omitempty"`
	AccountUpdate        string   `json:"account_update,omitempty"`
	AccountUpdateIndex   uint64   `json:"account_update_index"`
	Consistency          []string `json:"consistency,omitempty"`
}

// HistoryBundle is the JSON form of verifier.HistoryBundle.
type HistoryBundle struct {
	Checkpoint string         `json:"checkpoint"`
	VRFProof   string         `json:"vrf_proof"`
	Entries    []HistoryEntry `json:"entries"`
}

// HistoryEntry is the JSON form of verifier.HistoryEntry.
type HistoryEntry struct {
	LogIndex  uint64   `json:"log_index"`
	Leaf      string   `json:"leaf"`
	Inclusion []string `json:"inclusion"`
}

// Checkpoint is the answer of GET /v1/checkpoint.
type Checkpoint struct {
	Checkpoint string `json:"checkpoint"`
}

// Proof is the answer of GET /v1/consistency.
type Proof struct {
	Proof []string `json:"proof"`
}

// Entries is the answer of GET /v1/entries.
type Entries struct {
	Entries []string `json:"entries"`
}

// Error is the body of every error answer: the gRPC code name (e.g.
// "INVALID_ARGUMENT"), the reason of docs/api.md and a message.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is the content of Error.
type ErrorBody struct {
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func b64s(bs [][]byte) []string {
	if bs == nil {
		return nil
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b64(b)
	}
	return out
}

// FromLookup converts a bundle to its JSON form.
func FromLookup(b *verifier.LookupBundle) *LookupBundle {
	j := &LookupBundle{
		Checkpoint: b64(b.Checkpoint), VRFProof: b64(b.VRFProof), MapProof: b64(b.MapProof),
		EpochRecord: b64(b.EpochRecord), EpochRecordInclusion: b64s(b.EpochRecordInclusion),
		Consistency: b64s(b.Consistency),
	}
	if b.AccountUpdate != nil {
		j.AccountUpdate, j.AccountUpdateIndex = b64(b.AccountUpdate), b.AccountUpdateIndex
	}
	return j
}

// FromHistory converts a history bundle to its JSON form.
func FromHistory(h *verifier.HistoryBundle) *HistoryBundle {
	j := &HistoryBundle{Checkpoint: b64(h.Checkpoint), VRFProof: b64(h.VRFProof), Entries: []HistoryEntry{}}
	for _, e := range h.Entries {
		inc := b64s(e.Inclusion)
		if inc == nil {
			inc = []string{}
		}
		j.Entries = append(j.Entries, HistoryEntry{LogIndex: e.LogIndex, Leaf: b64(e.Leaf), Inclusion: inc})
	}
	return j
}

// decoder turns strings into bytes, remembering the first error.
type decoder struct{ err error }

func (d *decoder) bytes(field, s string) []byte {
	if d.err != nil || s == "" {
		return nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err == nil && strings.ContainsAny(s, "\r\n") {
		err = errors.New("line breaks") // the decoder skips them; the encoding has none
	}
	if err != nil {
		d.err = fmt.Errorf("%w: %s is not strict standard base64: %v", ErrMalformed, field, err)
	}
	return b
}

func (d *decoder) list(field string, ss []string) [][]byte {
	if d.err != nil || ss == nil {
		return nil
	}
	if len(ss) > MaxProofHashes {
		d.err = fmt.Errorf("%w: %s has %d elements, over %d", ErrMalformed, field, len(ss), MaxProofHashes)
		return nil
	}
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = d.bytes(fmt.Sprintf("%s[%d]", field, i), s)
	}
	return out
}

// unmarshal decodes exactly one JSON value into v, refusing unknown fields.
func unmarshal(data []byte, v any) error {
	if len(data) > MaxDocument {
		return fmt.Errorf("%w: %d bytes, over %d", ErrMalformed, len(data), MaxDocument)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON value", ErrMalformed)
	}
	return nil
}

// ParseLookup decodes a lookup bundle strictly (see the package doc).
func ParseLookup(data []byte) (*verifier.LookupBundle, error) {
	var j LookupBundle
	if err := unmarshal(data, &j); err != nil {
		return nil, err
	}
	var d decoder
	b := &verifier.LookupBundle{
		Checkpoint:           d.bytes("checkpoint", j.Checkpoint),
		VRFProof:             d.bytes("vrf_proof", j.VRFProof),
		MapProof:             d.bytes("map_proof", j.MapProof),
		EpochRecord:          d.bytes("epoch_record", j.EpochRecord),
		EpochRecordInclusion: d.list("epoch_record_inclusion", j.EpochRecordInclusion),
		AccountUpdateIndex:   j.AccountUpdateIndex,
		Consistency:          d.list("consistency", j.Consistency),
	}
	if j.AccountUpdate != "" {
		b.AccountUpdate = d.bytes("account_update", j.AccountUpdate)
	}
	if d.err != nil {
		return nil, d.err
	}
	return b, nil
}

// ParseHistory decodes a history bundle strictly.
func ParseHistory(data []byte) (*verifier.HistoryBundle, error) {
	var j HistoryBundle
	if err := unmarshal(data, &j); err != nil {
		return nil, err
	}
	var d decoder
	h := &verifier.HistoryBundle{Checkpoint: d.bytes("checkpoint", j.Checkpoint), VRFProof: d.bytes("vrf_proof", j.VRFProof)}
	for i, e := range j.Entries {
		h.Entries = append(h.Entries, verifier.HistoryEntry{
			LogIndex:  e.LogIndex,
			Leaf:      d.bytes(fmt.Sprintf("entries[%d].leaf", i), e.Leaf),
			Inclusion: d.list(fmt.Sprintf("entries[%d].inclusion", i), e.Inclusion),
		})
	}
	if d.err != nil {
		return nil, d.err
	}
	return h, nil
}

// ParseCheckpoint decodes a checkpoint answer.
func ParseCheckpoint(data []byte) ([]byte, error) {
	var j Checkpoint
	if err := unmarshal(data, &j); err != nil {
		return nil, err
	}
	var d decoder
	b := d.bytes("checkpoint", j.Checkpoint)
	return b, d.err
}

// ParseProof decodes a consistency proof answer.
func ParseProof(data []byte) ([][]byte, error) {
	var j Proof
	if err := unmarshal(data, &j); err != nil {
		return nil, err
	}
	var d decoder
	p := d.list("proof", j.Proof)
	return p, d.err
}
