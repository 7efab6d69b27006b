package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/keyline/keyline/log/tiles"
	"github.com/keyline/keyline/verifier"
)

// ErrTilesOnly is returned by the Lookup and History of a tiles Source: a
// static log has no map, only the log.
var ErrTilesOnly = errors.New("httpapi: a tlog-tiles log answers only checkpoint, entries and consistency reads (no lookups)")

// tilesSource is a verifier.Source over a tlog-tiles URL.
type tilesSource struct{ *tiles.Client }

// NewTilesSource returns a verifier.Source that reads a Keyline log from a
// C2SP tlog-tiles URL prefix (a `keyline serve --http` server, or a static
// mirror written by `keyline export-tiles`): Checkpoint, Entries and
// ConsistencyProof, the reads of an auditor or a witness. Lookup and History
// fail with ErrTilesOnly. Like every Source, nothing it returns is trusted:
// the caller verifies checkpoints and leaves.
func NewTilesSource(prefix string, hc *http.Client) verifier.Source {
	return tilesSource{tiles.NewClient(prefix, hc)}
}

func (tilesSource) Lookup(context.Context, string, uint64) (*verifier.LookupBundle, error) {
	return nil, ErrTilesOnly
}

func (tilesSource) History(context.Context, string, uint64) (*verifier.HistoryBundle, error) {
	return nil, ErrTilesOnly
}
