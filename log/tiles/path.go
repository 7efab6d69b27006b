package tiles

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Width is the number of hashes in a full tile and of entries in a full
// entry bundle.
const Width = 256

// MaxLevel is the highest tile level.
const MaxLevel = 63

// ErrPath is wrapped by every error of ParsePath.
var ErrPath = errors.New("tiles: malformed tile path")

// Tile names a tile or entry bundle: level L (ignored for entry bundles),
// index N within the level and width W (1..Width; Width is a full tile).
type Tile struct {
	L int
	N uint64
	W int
}

// Full reports whether t is a full tile (W == Width).
func (t Tile) Full() bool { return t.W == Width }

// Path returns t's path below the prefix: "tile/<L>/<N>[.p/<W>]".
func (t Tile) Path() string { return "tile/" + strconv.Itoa(t.L) + "/" + t.suffix() }

// EntriesPath returns the path of the entry bundle with t's N and W:
// "tile/entries/<N>[.p/<W>]".
func (t Tile) EntriesPath() string { return "tile/entries/" + t.suffix() }

func (t Tile) suffix() string {
	s := indexPath(t.N)
	if t.W != Width {
		s += ".p/" + strconv.Itoa(t.W)
	}
	return s
}

// indexPath encodes n as zero-padded 3-digit elements, all but the last
// prefixed with "x".
func indexPath(n uint64) string {
	var parts []string
	for {
		parts = append(parts, fmt.Sprintf("%03d", n%1000))
		n /= 1000
		if n == 0 {
			break
		}
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		if i != len(parts)-1 {
			b.WriteByte('/')
		}
		if i != 0 {
			b.WriteByte('x')
		}
		b.WriteString(parts[i])
	}
	return b.String()
}

// ParsePath parses a path below the prefix, "tile/<L>/<N>[.p/<W>]" or
// "tile/entries/<N>[.p/<W>]", in exactly the form Path and EntriesPath
// write (no extra leading zeroes, no empty or extra elements). entries
// reports an entry bundle path (t.L is then 0).
func ParsePath(p string) (t Tile, entries bool, err error) {
	bad := func(why string) (Tile, bool, error) {
		return Tile{}, false, fmt.Errorf("%w: %q: %s", ErrPath, p, why)
	}
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return bad("does not start with tile/")
	}
	lvl, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no tile index")
	}
	if lvl == "entries" {
		entries = true
	} else {
		l, ok := decimal(lvl, 2)
		if !ok || l > MaxLevel {
			return bad("level is not a decimal between 0 and 63")
		}
		t.L = int(l)
	}
	t.W = Width
	if idx, w, ok := strings.Cut(rest, ".p/"); ok {
		wv, ok := decimal(w, 3)
		if !ok || wv < 1 || wv >= Width {
			return bad("partial width is not a decimal between 1 and 255")
		}
		t.W, rest = int(wv), idx
	}
	elems := strings.Split(rest, "/")
	if len(elems) > 7 { // 2^64 has 20 digits: at most 7 elements
		return bad("index too long")
	}
	for i, e := range elems {
		if i != len(elems)-1 {
			var ok bool
			if e, ok = strings.CutPrefix(e, "x"); !ok {
				return bad("index element without the x prefix")
			}
		}
		if len(e) != 3 {
			return bad("index element is not 3 digits")
		}
		d, ok := decimal3(e)
		if !ok {
			return bad("index element is not 3 digits")
		}
		if t.N > (^uint64(0)-d)/1000 {
			return bad("index overflows 64 bits")
		}
		t.N = t.N*1000 + d
	}
	if indexPath(t.N) != rest {
		return bad("index is not in canonical form") // e.g. a leading x000 element
	}
	return t, entries, nil
}

// decimal parses s as a decimal of at most maxDigits digits with no
// leading zero.
func decimal(s string, maxDigits int) (uint64, bool) {
	if s == "" || len(s) > maxDigits || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + uint64(s[i]-'0')
	}
	return v, true
}

func decimal3(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + uint64(s[i]-'0')
	}
	return v, true
}

// TileForSize returns the tile at level l with index n as it is in a tree
// of size: full, partial with the width the tree implies, or ok == false if
// the tree has no such tile (it would be empty).
func TileForSize(l int, n, size uint64) (t Tile, ok bool) {
	if l < 0 || l > MaxLevel {
		return Tile{}, false
	}
	count := size >> (8 * uint(l)) // hashes at level l (0 past level 7)
	if count == 0 || n > (count-1)/Width {
		return Tile{}, false
	}
	if (n+1)*Width <= count {
		return Tile{L: l, N: n, W: Width}, true
	}
	return Tile{L: l, N: n, W: int(count - n*Width)}, true
}
