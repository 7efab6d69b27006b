package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// table writes aligned columns with text/tabwriter.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cols ...string) {
	for i, c := range cols {
		// Tabs and newlines in values would break the alignment.
		cols[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// info writes a message for the person at the terminal on stderr; with
// --json it writes nothing (stderr then holds only the error object, and
// the JSON output carries what matters).
func (a *app) info(format string, args ...any) {
	if !a.jsonOut {
		fmt.Fprintf(a.errw, format, args...)
	}
}

// writeJSON writes v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// jsonTime is t for --json output: RFC 3339 in UTC, whole seconds, or
// null for the zero time.
func jsonTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC().Truncate(time.Second)
	return &u
}

// jsonStr is s for --json output, or null if empty.
func jsonStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// jsonError is the shape of errors printed on stderr with --json.
type jsonError struct {
	Error    string  `json:"error"`
	Kind     string  `json:"kind"`
	ExitCode int     `json:"exit_code"`
	Message  string  `json:"message"`
	Hint     *string `json:"hint"`
	Reason   *string `json:"reason"`
}

// age formats how long ago t was, coarsely ("12s", "3m", "2h5m", "4d").
func age(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		return "in the future (" + (-d).Round(time.Second).String() + ")"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
