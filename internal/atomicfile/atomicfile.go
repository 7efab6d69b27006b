// Package atomicfile writes a file so that a crash leaves either its old or
// its new contents, never a mix, and the new contents durable once Write
// returns.
//
// Write creates a temporary file in the target's directory (mode perm),
// writes and fsyncs it, renames it over the target and fsyncs the
// directory, so that the rename itself survives a power loss. On any
// error the temporary file is removed and the target is left as it was.
//
// Used by the directory (key files, trust.json), the client (state,
// keystore side files, pending records) and the auditor (evidence). The
// devices and log packages keep their own copy, because they depend on no
// other Keyline package.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write atomically replaces path with data (see the package doc).
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs the directory dir, making renames and creations in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
