package tiles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ExportStats counts what Export wrote.
type ExportStats struct {
	Size    uint64 // tree size of the exported checkpoint
	Tiles   int    // tile files written
	Bundles int    // entry bundle files written
	Skipped int    // full tiles and bundles already present
}

// Export writes the served tree under dir as static tlog-tiles files, laid
// out exactly as the URL paths: every full tile and entry bundle not
// already present (they never change, so a second export only adds the
// new ones), the partial ones of the served size, and last the checkpoint,
// so that a reader never sees a checkpoint whose tiles are missing. Files
// are written atomically (a temporary file renamed). A web server serving
// dir as static files (checkpoint as text/plain, the rest as
// application/octet-stream, with the Cache-Control values of this package)
// is a tlog-tiles log.
func (s *Server) Export(ctx context.Context, dir string) (ExportStats, error) {
	cp, size := s.Checkpoint()
	st := ExportStats{Size: size}
	if cp == nil {
		return st, errors.New("tiles: export: nothing synced yet")
	}
	for l := 0; l <= MaxLevel && size>>(8*uint(l)) > 0; l++ {
		for n := uint64(0); ; n++ {
			t, ok := TileForSize(l, n, size)
			if !ok {
				break
			}
			paths := []string{t.Path()}
			if l == 0 {
				paths = append(paths, t.EntriesPath())
			}
			for i, p := range paths {
				file := filepath.Join(dir, filepath.FromSlash(p))
				if t.Full() {
					if _, err := os.Stat(file); err == nil {
						st.Skipped++
						continue
					}
				}
				var b []byte
				var err error
				if i == 0 {
					b, err = s.ReadTile(ctx, t)
					st.Tiles++
				} else {
					b, err = s.ReadBundle(ctx, t)
					st.Bundles++
				}
				if err != nil {
					return st, err
				}
				if err := writeAtomic(file, b); err != nil {
					return st, err
				}
			}
		}
	}
	return st, writeAtomic(filepath.Join(dir, "checkpoint"), cp)
}

func writeAtomic(file string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("tiles: export: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(file), ".tmp-*")
	if err != nil {
		return fmt.Errorf("tiles: export: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("tiles: export: %w", err)
	}
	return nil
}
