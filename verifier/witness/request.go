package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	klog "github.com/keyline/keyline/log"
)

// MaxProofLines is the most consistency proof lines a request may carry
// (C2SP tlog-witness).
const MaxProofLines = 63

// MaxRequestSize bounds an add-checkpoint request body: the old size line,
// 63 proof lines and a signed checkpoint of at most
// log.MaxSignedCheckpointSize bytes.
const MaxRequestSize = 32 + MaxProofLines*46 + klog.MaxSignedCheckpointSize

// ErrMalformedRequest is wrapped by every ParseRequest error.
var ErrMalformedRequest = errors.New("witness: malformed add-checkpoint request")

// Request is a C2SP tlog-witness add-checkpoint request.
type Request struct {
	OldSize    uint64
	Proof      [][]byte // 32-byte hashes, at most MaxProofLines
	Checkpoint []byte   // signed note
}

// ParseRequest parses an add-checkpoint request body strictly:
//
//	old <decimal size, no leading zeros>\n
//	<base64 32-byte hash>\n      (0..63 lines)
//	\n
//	<signed checkpoint note>
//
// The note itself is checked by the witness, not here.
func ParseRequest(body []byte) (*Request, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrMalformedRequest}, args...)...)
	}
	if len(body) > MaxRequestSize {
		return nil, bad("%d bytes, over %d", len(body), MaxRequestSize)
	}
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return nil, bad("no old size line")
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return nil, bad("first line %q does not start with \"old \"", truncate(line))
	}
	old, err := parseSize(num)
	if err != nil {
		return nil, bad("old size: %v", err)
	}
	r := &Request{OldSize: old}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, bad("no empty line before the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLines {
			return nil, bad("more than %d proof lines", MaxProofLines)
		}
		h, err := klog.DecodeBase64(string(line))
		if err != nil || len(h) != 32 {
			return nil, bad("proof line %d is not a base64 32-byte hash", len(r.Proof)+1)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 {
		return nil, bad("no checkpoint")
	}
	r.Checkpoint = rest
	return r, nil
}

// parseSize parses a decimal tree size with no sign and no leading zeros.
func parseSize(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 || (b[0] == '0' && len(b) > 1) {
		return 0, fmt.Errorf("%q is not a canonical decimal", truncate(b))
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a canonical decimal", truncate(b))
		}
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", truncate(b))
	}
	return n, nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// Marshal returns the request body.
func (r *Request) Marshal() ([]byte, error) {
	if len(r.Proof) > MaxProofLines {
		return nil, fmt.Errorf("%w: %d proof lines, at most %d", ErrMalformedRequest, len(r.Proof), MaxProofLines)
	}
	var b bytes.Buffer
	b.WriteString("old ")
	b.WriteString(strconv.FormatUint(r.OldSize, 10))
	b.WriteByte('\n')
	for i, h := range r.Proof {
		if len(h) != 32 {
			return nil, fmt.Errorf("%w: proof hash %d is %d bytes", ErrMalformedRequest, i, len(h))
		}
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(r.Checkpoint)
	return b.Bytes(), nil
}
