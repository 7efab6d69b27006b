package cli

import (
	"fmt"
	"io"
	"strings"

	"rsc.io/qr"
)

// qrQuietZone is the light border around a QR code, in modules. The QR
// specification asks for 4; scanners need it to find the code on a dark
// terminal.
const qrQuietZone = 4

// renderQR returns payload as a QR code drawn with Unicode half blocks, two
// module rows per text line, with a quiet zone. Light modules are drawn as
// blocks (foreground colour) and dark modules as spaces, which scans as a
// normal dark-on-light code on the usual light-on-dark terminal; invert
// swaps that for light terminals.
func renderQR(payload string, invert bool) (string, error) {
	code, err := qr.Encode(payload, qr.L)
	if err != nil {
		return "", fmt.Errorf("encoding QR code: %v", err)
	}
	n := code.Size + 2*qrQuietZone
	dark := func(x, y int) bool {
		x -= qrQuietZone
		y -= qrQuietZone
		if x < 0 || y < 0 || x >= code.Size || y >= code.Size {
			return false
		}
		return code.Black(x, y)
	}
	// ink reports whether the module is drawn with the foreground colour.
	ink := func(x, y int) bool {
		if y >= n {
			return invert // below the last row: background of the terminal
		}
		return dark(x, y) == invert
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := 0; x < n; x++ {
			top, bottom := ink(x, y), ink(x, y+1)
			if y+1 >= n {
				bottom = false
			}
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func printQR(w io.Writer, payload string, invert bool) error {
	s, err := renderQR(payload, invert)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, s)
	return err
}
