package httpapi

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/keyline/keyline/log/tiles"
)

// statusView is what the status page template shows.
type statusView struct {
	Snapshot
	Origin     string
	Now        time.Time
	Age        string
	Ready      string
	RootHex    string
	Chart      template.HTML
	LatestTile string
	LastBundle string
	Witness    []witnessRow
}

type witnessRow struct {
	WitnessInfo
	Lag  uint64
	Seen string
}

func (h *Handler) view() statusView {
	s := h.follow.snapshot()
	v := statusView{Snapshot: s, Origin: h.trust.Origin, Now: h.opts.Now().UTC(), Ready: "ready"}
	if err := h.Ready(); err != nil {
		v.Ready = err.Error()
	}
	if s.Synced {
		v.Age = h.opts.Now().Sub(s.Epoch.Time).Truncate(time.Second).String()
		v.RootHex = hex.EncodeToString(s.Root[:])
		if t, ok := tiles.TileForSize(0, (s.Size-1)/tiles.Width, s.Size); ok && s.Size > 0 {
			v.LatestTile, v.LastBundle = t.Path(), t.EntriesPath()
		}
	}
	for _, w := range s.Witnesses {
		r := witnessRow{WitnessInfo: w, Lag: s.Size - min(w.CosignedSize, s.Size), Seen: "never"}
		if !w.LastSeen.IsZero() {
			r.Seen = w.LastSeen.UTC().Format(time.RFC3339)
		}
		v.Witness = append(v.Witness, r)
	}
	v.Chart = epochChart(s.Epochs)
	return v
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := statusPage.Execute(w, h.view()); err != nil {
		h.opts.Logf("http: status page: %v", err)
	}
}

// statusJSON is the status page's data as JSON.
func (h *Handler) statusJSON(w http.ResponseWriter, r *http.Request) {
	v := h.view()
	out := map[string]any{
		"origin": v.Origin, "ready": v.Ready, "synced": v.Synced, "size": v.Size, "root": v.RootHex,
		"checkpoint": string(v.Checkpoint), "epoch": v.Epoch.Epoch, "epoch_time": v.Epoch.Time,
		"account_updates": v.Updates, "resets": v.Resets, "pending_resets": v.PendingResets, "recent_resets": v.RecentReset,
		"cosignatures": v.Cosigners, "quorum": v.Quorum, "witnesses": v.Witness, "epochs": v.Epochs,
		"last_error": v.LastError, "corrupt": v.Corrupt,
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	json.NewEncoder(w).Encode(out)
}

// epochChart draws log size over time for the epochs kept, as inline SVG:
// a step line of the log size and a bar per epoch with updates.
func epochChart(eps []EpochPoint) template.HTML {
	const W, H, pad = 640.0, 180.0, 36.0
	if len(eps) < 2 {
		return template.HTML(`<p class="muted">The chart appears after two epochs.</p>`)
	}
	t0, t1 := eps[0].Time.Unix(), eps[len(eps)-1].Time.Unix()
	if t1 == t0 {
		t1 = t0 + 1
	}
	s0, s1 := eps[0].Size, eps[len(eps)-1].Size
	if s1 == s0 {
		s1 = s0 + 1
	}
	maxUp := 1
	for _, e := range eps {
		maxUp = max(maxUp, e.Updates)
	}
	x := func(t int64) float64 { return pad + (W-2*pad)*float64(t-t0)/float64(t1-t0) }
	y := func(s uint64) float64 { return H - pad + (-(H - 2*pad) * float64(s-s0) / float64(s1-s0)) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="log size over time, %d epochs">`, W, H, W, H, len(eps))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, pad, H-pad, W-pad, H-pad)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, pad, pad, pad, H-pad)
	for _, e := range eps {
		if e.Updates == 0 {
			continue
		}
		bh := (H - 2*pad) / 3 * float64(e.Updates) / float64(maxUp)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="2" height="%.1f" fill="#9ecae1"><title>epoch %d: %d updates</title></rect>`, x(e.Time.Unix())-1, H-pad-bh, bh, e.Epoch, e.Updates)
	}
	var pts []string
	for i, e := range eps {
		if i > 0 {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(e.Time.Unix()), y(eps[i-1].Size)))
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(e.Time.Unix()), y(e.Size)))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#08519c" stroke-width="1.5"/>`, strings.Join(pts, " "))
	if len(eps) <= 100 {
		for _, e := range eps {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="#08519c"><title>epoch %d: log size %d, %d updates</title></circle>`, x(e.Time.Unix()), y(e.Size), e.Epoch, e.Size, e.Updates)
		}
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%d</text>`, pad-4, H-pad, s0)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%d</text>`, pad-4, pad+4, eps[len(eps)-1].Size)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11">%s</text>`, pad, H-pad+16, eps[0].Time.UTC().Format("Jan 2 15:04:05"))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%s</text>`, W-pad, H-pad+16, eps[len(eps)-1].Time.UTC().Format("Jan 2 15:04:05 UTC"))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11">log size (line) and updates per epoch (bars), epochs %d–%d</text>`, pad+4, pad-10, eps[0].Epoch, eps[len(eps)-1].Epoch)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built only from numbers and fixed strings
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Keyline transparency status — {{.Origin}}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fafafa}
header{background:#08306b;color:#fff;padding:12px 24px}header a{color:#c6dbef}
main{max-width:960px;margin:0 auto;padding:8px 24px 40px}
h1{font-size:20px;margin:0}h2{font-size:17px;margin:24px 0 8px}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
code,pre{font:13px ui-monospace,monospace}pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto}
.ok{color:#006d2c}.bad{color:#b30000;font-weight:600}.muted{color:#666}
</style></head><body>
<header><h1>Keyline directory <code>{{.Origin}}</code></h1><a href="/verify">Verify a contact in your browser</a> · <a href="/status.json">status.json</a> · <a href="/metrics">metrics</a></header>
<main>
<h2>Log</h2>
<table>
<tr><th>Status</th><td>{{if eq .Ready "ready"}}<span class="ok" id="ready">ready</span>{{else}}<span class="bad" id="ready">{{.Ready}}</span>{{end}}</td></tr>
<tr><th>Log size</th><td id="size">{{.Size}}</td></tr>
<tr><th>Root hash</th><td><code>{{.RootHex}}</code></td></tr>
<tr><th>Latest epoch</th><td>{{.Epoch.Epoch}} at {{.Epoch.Time.Format "2006-01-02 15:04:05 UTC"}} ({{.Age}} ago)</td></tr>
<tr><th>Account updates</th><td>{{.Updates}}</td></tr>
<tr><th>Cosignatures</th><td>{{.Cosigners}} on the latest checkpoint; clients require {{.Quorum}}</td></tr>
{{if .LastError}}<tr><th>Last error</th><td class="bad">{{.LastError}}</td></tr>{{end}}
</table>
<h2>Epochs over time</h2>
{{.Chart}}
<h2>Checkpoint</h2>
<pre>{{printf "%s" .Checkpoint}}</pre>
<p>Read the log as <a href="https://c2sp.org/tlog-tiles">C2SP tlog-tiles</a>: <a href="/checkpoint">/checkpoint</a>{{if .LatestTile}}, latest tile <a href="/{{.LatestTile}}">/{{.LatestTile}}</a>, latest entries <a href="/{{.LastBundle}}">/{{.LastBundle}}</a>{{end}}. Audit it with <code>keyline audit --tiles URL</code>.</p>
<h2>Witnesses</h2>
{{if .Witness}}<table><tr><th>Witness</th><th>Last cosigned size</th><th>Lag (entries)</th><th>First seen</th><th>On latest</th></tr>
{{range .Witness}}<tr><td><code>{{.Name}}</code></td><td>{{.CosignedSize}}</td><td>{{if .Lag}}<span class="bad">{{.Lag}}</span>{{else}}0{{end}}</td><td>{{.Seen}}</td><td>{{if .InLatest}}yes{{else}}<span class="bad">no</span>{{end}}</td></tr>
{{end}}</table>{{else}}<p class="muted">This directory has no witnesses configured: clients rely on its signature alone.</p>{{end}}
<h2>Identity resets</h2>
<p id="resets">{{.Resets}} reset{{if ne .Resets 1}}s{{end}} in the log. A reset replaces an account's identity key on the directory's authority; every contact sees the safety number change.</p>
{{if .PendingResets}}<p id="pending-resets" class="bad">{{.PendingResets}} reset{{if ne .PendingResets 1}}s{{end}} pending: until its window ends, lookups return the old keys with a notice, and the owner can cancel it.</p>{{end}}
{{if .RecentReset}}<table><tr><th>Log entry</th><th>User</th><th>Version</th><th>Reason</th><th>Logged</th><th>Takes effect</th><th>Status</th></tr>
{{range .RecentReset}}<tr><td>{{.LogIndex}}</td><td>{{.UserID}}</td><td>{{.Version}}</td><td>{{.Reason}}</td><td>{{.Time.Format "2006-01-02 15:04:05 UTC"}}</td><td>{{.EffectiveAt.Format "2006-01-02 15:04:05 UTC"}}</td><td class="reset-status">{{.Status}}</td></tr>
{{end}}</table>{{end}}
<p class="muted">Page generated {{.Now.Format "2006-01-02 15:04:05 UTC"}} from the log as read and verified by this server.</p>
</main></body></html>
`))
