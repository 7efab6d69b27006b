package witness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	klog "github.com/keyline/keyline/log"
)

// MaxResponseSize bounds an add-checkpoint response body the client reads.
const MaxResponseSize = 64 << 10

// ConflictError is a 409 Conflict answer: the witness' latest cosigned size
// for the log is Size (the request's old size was wrong, or Size was
// cosigned with another root).
type ConflictError struct {
	Size uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness: 409 Conflict: latest cosigned size is %d", e.Size)
}

// ResponseError is any other non-200 answer.
type ResponseError struct {
	StatusCode int
	Body       string // at most 1 KiB of the body
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("witness: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Body)
}

// AddCheckpoint submits signedCheckpoint with a consistency proof from
// oldSize to a witness and returns its cosignature lines (each "— <name>
// <base64>\n"), unverified: append them to the note and open it with the
// witness key. url is the witness' submission prefix (for example
// "https://witness.example/w1"); the request goes to url + "/add-checkpoint".
// A 409 answer is a *ConflictError carrying the witness' size, so the
// caller can retry with a proof from it; other failures are a
// *ResponseError or a transport error. hc nil means http.DefaultClient.
func AddCheckpoint(ctx context.Context, hc *http.Client, url string, oldSize uint64, proof [][]byte, signedCheckpoint []byte) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	body, err := (&Request{OldSize: oldSize, Proof: proof, Checkpoint: signedCheckpoint}).Marshal()
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(url, "/add-checkpoint") {
		url = strings.TrimSuffix(url, "/") + "/add-checkpoint"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("witness: reading response: %w", err)
	}
	if len(data) > MaxResponseSize {
		return nil, fmt.Errorf("witness: response over %d bytes", MaxResponseSize)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := checkSigLines(data); err != nil {
			return nil, err
		}
		return data, nil
	case http.StatusConflict:
		if ct := resp.Header.Get("Content-Type"); ct != "text/x.tlog.size" {
			return nil, fmt.Errorf("witness: 409 with Content-Type %q, want text/x.tlog.size", ct)
		}
		s, ok := bytes.CutSuffix(data, []byte("\n"))
		if !ok {
			return nil, fmt.Errorf("witness: 409 body %q is not a size line", truncate(data))
		}
		n, err := parseSize(s)
		if err != nil {
			return nil, fmt.Errorf("witness: 409 body: %v", err)
		}
		return nil, &ConflictError{Size: n}
	default:
		if len(data) > 1024 {
			data = data[:1024]
		}
		return nil, &ResponseError{StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
}

// checkSigLines checks that b is one or more note signature lines.
func checkSigLines(b []byte) error {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return fmt.Errorf("witness: response is not signature lines")
	}
	for _, l := range strings.SplitAfter(string(b[:len(b)-1]), "\n") {
		l = strings.TrimSuffix(l, "\n")
		name, sig, ok := strings.Cut(strings.TrimPrefix(l, "— "), " ")
		if !strings.HasPrefix(l, "— ") || !ok || name == "" || sig == "" || strings.Contains(sig, " ") {
			return fmt.Errorf("witness: response line %q is not a signature line", truncate([]byte(l)))
		}
		if _, err := klog.DecodeBase64(sig); err != nil {
			return fmt.Errorf("witness: response line %q: %w", truncate([]byte(l)), err)
		}
	}
	return nil
}
