package cli

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress is a small progress bar for long runs (the auditor). On a
// terminal it redraws one line with a bar, the percentage, the rate and the
// ETA; otherwise it prints a plain line at most every 10% or every 5 s.
type progress struct {
	w     io.Writer
	tty   bool
	label string
	unit  string
	total uint64
	now   func() time.Time

	start    time.Time
	last     time.Time
	lastDone uint64
	lastStep int
	drawn    bool
}

func newProgress(w io.Writer, tty bool, label, unit string, total uint64, now func() time.Time) *progress {
	if now == nil {
		now = time.Now
	}
	t := now()
	return &progress{w: w, tty: tty, label: label, unit: unit, total: total, now: now, start: t, lastStep: -1}
}

// setTotal changes the total (the log grew while we were reading it).
func (p *progress) setTotal(total uint64) { p.total = total }

// update reports that done units of total are finished.
func (p *progress) update(done uint64) {
	t := p.now()
	if p.tty {
		if p.drawn && t.Sub(p.last) < 100*time.Millisecond && done < p.total {
			return
		}
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.line(done, t, true))
		p.drawn = true
		p.last = t
		return
	}
	step := 0
	if p.total > 0 {
		step = int(done * 10 / p.total)
	}
	if step == p.lastStep && t.Sub(p.last) < 5*time.Second {
		return
	}
	p.lastStep = step
	p.last = t
	fmt.Fprintln(p.w, p.line(done, t, false))
}

// finish draws the final state and ends the line.
func (p *progress) finish(done uint64) {
	if p.total < done {
		p.total = done
	}
	t := p.now()
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", p.line(done, t, true))
		return
	}
	if p.lastStep != 10 || done != p.lastDone {
		fmt.Fprintln(p.w, p.line(done, t, false))
	}
}

func (p *progress) line(done uint64, t time.Time, bar bool) string {
	p.lastDone = done
	frac := 1.0
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
	}
	if frac > 1 {
		frac = 1
	}
	el := t.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := "--"
	if rate > 0 && done <= p.total {
		eta = (time.Duration(float64(p.total-done) / rate * float64(time.Second))).Round(time.Second).String()
	}
	var b strings.Builder
	b.WriteString(p.label)
	b.WriteByte(' ')
	if bar {
		const width = 30
		full := int(frac * width)
		b.WriteByte('[')
		b.WriteString(strings.Repeat("█", full))
		b.WriteString(strings.Repeat("░", width-full))
		b.WriteString("] ")
	}
	fmt.Fprintf(&b, "%5.1f%%  %d/%d %s  %.0f %s/s  ETA %s", frac*100, done, p.total, p.unit, rate, p.unit, eta)
	return b.String()
}
