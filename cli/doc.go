// Package cli implements the keyline command line.
package cli
