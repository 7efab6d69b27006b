package httpapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/verifier/cosign"
)

// testWitness cosigns every checkpoint in process, or fails if down.
type testWitness struct {
	signer *cosign.Signer
	down   bool
}

func newTestWitness(t *testing.T, name string, down bool) *testWitness {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := cosign.NewSigner(name, priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testWitness{signer: s, down: down}
}

func (w *testWitness) AddCheckpoint(_ context.Context, _ uint64, _ [][]byte, cp []byte) ([]byte, error) {
	if w.down {
		return nil, errors.New("witness down")
	}
	body, _, _ := bytes.Cut(cp, []byte("\n\n"))
	signed, err := note.Sign(&note.Note{Text: string(body) + "\n"}, w.signer)
	if err != nil {
		return nil, err
	}
	_, sigs, _ := bytes.Cut(signed, []byte("\n\n"))
	return sigs, nil
}

// TestWitnessMetrics: a working and a down witness show in /metrics and on
// the status page with their cosigned size and lag.
func TestWitnessMetrics(t *testing.T) {
	up, down := newTestWitness(t, "up.example", false), newTestWitness(t, "down.example", true)
	cfg := directory.Config{WitnessQuorum: 1, Witnesses: []directory.WitnessConfig{
		{URL: "http://up.invalid", VKey: up.signer.Vkey(), Client: up},
		{URL: "http://down.invalid", VKey: down.signer.Vkey(), Client: down},
	}}
	e := newEnvConfig(t, cfg, nil, "alice")
	e.sync()
	_, size := e.h.Tiles().Checkpoint()
	_, _, body := get(t, e.ts.URL+"/metrics")
	m := string(body)
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"keyline_checkpoint_cosignatures", "", 1},
		{"keyline_witness_quorum", "", 1},
		{"keyline_witness_cosigned_latest", `witness="up.example"`, 1},
		{"keyline_witness_cosigned_size", `witness="up.example"`, float64(size)},
		{"keyline_witness_lag_entries", `witness="up.example"`, 0},
		{"keyline_witness_cosigned_latest", `witness="down.example"`, 0},
		{"keyline_witness_cosigned_size", `witness="down.example"`, 0},
		{"keyline_witness_lag_entries", `witness="down.example"`, float64(size)},
		{"keyline_witness_last_cosignature_timestamp_seconds", `witness="down.example"`, 0},
	} {
		if got := metricValue(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if metricValue(t, m, "keyline_witness_last_cosignature_timestamp_seconds", `witness="up.example"`) == 0 {
		t.Error("up witness has no cosignature time")
	}
	_, _, body = get(t, e.ts.URL+"/")
	page := string(body)
	for _, want := range []string{"up.example", "down.example", fmt.Sprintf(`<span class="bad">%d</span>`, size), "1 on the latest checkpoint; clients require 1"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}
