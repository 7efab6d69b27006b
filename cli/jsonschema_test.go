package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// schema is the subset of JSON Schema used by docs/cli-output.schema.json:
// type, enum, properties, required, additionalProperties false, items,
// pattern, minimum, format date-time and local $ref.
type schema struct {
	Ref        string             `json:"$ref"`
	Type       any                `json:"type"`
	Enum       []any              `json:"enum"`
	Properties map[string]*schema `json:"properties"`
	Required   []string           `json:"required"`
	AddProps   *bool              `json:"additionalProperties"`
	Items      *schema            `json:"items"`
	Pattern    string             `json:"pattern"`
	Minimum    *float64           `json:"minimum"`
	Format     string             `json:"format"`
}

type schemaDoc struct {
	Commands map[string]string  `json:"x-commands"`
	Defs     map[string]*schema `json:"$defs"`
}

func loadSchema(t *testing.T) *schemaDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "cli-output.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d schemaDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("the schema does not parse: %v", err)
	}
	return &d
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if !strings.ContainsAny(x.String(), ".eE") {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// validate checks v against s and the rules every output follows, and
// returns what is wrong (empty if nothing).
func (d *schemaDoc) validate(s *schema, v any, path string) []string {
	if s.Ref != "" {
		return d.validate(d.Defs[strings.TrimPrefix(s.Ref, "#/$defs/")], v, path)
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	got := jsonType(v)
	if s.Type != nil {
		var types []string
		switch t := s.Type.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				types = append(types, x.(string))
			}
		}
		ok := false
		for _, t := range types {
			if t == got || (t == "number" && got == "integer") {
				ok = true
			}
		}
		if !ok {
			bad("type %s, want %v", got, types)
			return errs
		}
	}
	if s.Enum != nil {
		ok := false
		for _, e := range s.Enum {
			if fmt.Sprint(e) == fmt.Sprint(v) && (e == nil) == (v == nil) {
				ok = true
			}
		}
		if !ok {
			bad("%v is not one of %v", v, s.Enum)
		}
	}
	switch x := v.(type) {
	case string:
		// No placeholders instead of null.
		if x == "-" || x == "(unknown)" || x == "" {
			bad("placeholder string %q (use null)", x)
		}
		if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(x) {
			bad("%q does not match %s", x, s.Pattern)
		}
		if s.Format == "date-time" {
			if tm, err := time.Parse(time.RFC3339, x); err != nil || tm.Location() != time.UTC {
				bad("%q is not an RFC 3339 UTC time", x)
			}
		}
	case json.Number:
		if s.Minimum != nil {
			if f, _ := x.Float64(); f < *s.Minimum {
				bad("%v below %v", x, *s.Minimum)
			}
		}
	case []any:
		if s.Items != nil {
			for i, e := range x {
				errs = append(errs, d.validate(s.Items, e, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	case map[string]any:
		for _, r := range s.Required {
			if _, ok := x[r]; !ok {
				bad("missing field %q", r)
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !snakeCase.MatchString(k) {
				bad("field %q is not snake_case", k)
			}
			ps, ok := s.Properties[k]
			if !ok {
				if s.AddProps != nil && !*s.AddProps {
					bad("unexpected field %q", k)
				}
				continue
			}
			errs = append(errs, d.validate(ps, x[k], path+"."+k)...)
		}
	}
	return errs
}

// check validates one command's output against its definition.
func (d *schemaDoc) check(t *testing.T, command, out string) {
	t.Helper()
	def, ok := d.Commands[command]
	if !ok {
		t.Errorf("the schema maps no definition to %q", command)
		return
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Errorf("%s --json: not JSON: %v\n%s", command, err, out)
		return
	}
	if dec.More() {
		t.Errorf("%s --json: more than one JSON document:\n%s", command, out)
	}
	for _, e := range d.validate(d.Defs[def], v, command) {
		t.Error(e)
	}
	seen[command] = true
}

var seen = map[string]bool{}

// TestJSONSchema runs every command with --json and validates its output
// against docs/cli-output.schema.json, including the rules (snake_case,
// RFC 3339, null not placeholders) no definition states explicitly.
func TestJSONSchema(t *testing.T) {
	d := loadSchema(t)
	for name, def := range d.Commands {
		if d.Defs[def] == nil {
			t.Fatalf("%s: no definition %q", name, def)
		}
	}
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")

	// serve --json: one object, then it serves.
	ctx, cancel := context.WithCancel(context.Background())
	var sout, serr syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"--json", "serve", "--listen", "127.0.0.1:0", "--data-dir", srvDir, "--epoch-interval", "20ms", "--insecure-no-sync"}, IO{Stdin: strings.NewReader(""), Stdout: &sout, Stderr: &serr, Getenv: testEnv})
	}()
	waitFor(t, "serve --json", func() bool { return strings.HasSuffix(sout.String(), "}\n") }, serr.String)
	d.check(t, "serve", sout.String())
	var sj struct {
		Listen string `json:"listen"`
	}
	json.Unmarshal([]byte(sout.String()), &sj)
	defer func() { cancel(); <-done }()

	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: sj.Listen}
	j := func(dev string, args ...string) result {
		t.Helper()
		return w.ok(dev, "", append([]string{"--json"}, args...)...)
	}
	d.check(t, "account create", j("alice", "account", "create", "alice", "--name", "laptop", "--no-confirm").out)
	var created accountOutput
	json.Unmarshal([]byte(j("bob", "account", "create", "bob", "--no-confirm").out), &created)
	d.check(t, "account sync", j("alice", "account", "sync").out)
	r := j("alice-phone", "device", "request", "alice", "--name", "phone")
	d.check(t, "device request", r.out)
	var req pairingOutput
	json.Unmarshal([]byte(r.out), &req)
	d.check(t, "device approve", j("alice", "device", "approve", req.Code, "--fingerprint", req.Fingerprint).out)
	d.check(t, "device finish", j("alice-phone", "device", "finish").out)
	d.check(t, "device revoke", j("alice", "device", "revoke", "phone", "--yes").out)
	r = j("alice-tablet", "device", "request", "alice", "--name", "tablet")
	json.Unmarshal([]byte(r.out), &req)
	j("alice", "device", "approve", req.Code, "--fingerprint", req.Fingerprint)
	j("alice-tablet", "device", "finish")
	d.check(t, "device trust", j("alice", "device", "trust", "tablet", "--yes").out)
	d.check(t, "device list", j("alice", "device", "list").out)
	d.check(t, "lookup", j("alice", "lookup", "bob").out)
	r = w.run("alice", "", "--json", "lookup", "nobody")
	d.check(t, "lookup", r.out)
	d.check(t, "(any error, on stderr)", r.err)
	r = j("alice", "safety-number", "bob")
	d.check(t, "safety-number", r.out)
	var sn safetyOutput
	json.Unmarshal([]byte(r.out), &sn)
	d.check(t, "verify", j("alice", "verify", "bob", sn.SafetyNumber).out)
	d.check(t, "monitor", j("alice", "monitor", "--once").out)
	d.check(t, "audit", j("auditor", "audit").out)
	d.check(t, "export-tiles", j("auditor", "export-tiles", filepath.Join(root, "mirror")).out)
	d.check(t, "witness keygen", j("witness", "witness", "keygen", "w.example").out)
	d.check(t, "bench", j("bench", "bench", "--accounts", "3", "--concurrency", "1", "--duration", "100ms").out)
	d.check(t, "state restore", j("alice", "state", "restore").out)
	d.check(t, "state reset", j("carol", "state", "reset", "--yes").out)
	paper := filepath.Join(root, "paper")
	os.WriteFile(paper, []byte(*created.PaperKey), 0o600)
	d.check(t, "account rotate-key", j("bob", "account", "rotate-key", "--paper-key-file", paper, "--yes").out)
	d.check(t, "account recover", j("bob-new", "account", "recover", "bob", "--paper-key-file", paper).out)

	// Errors of every kind are one object on stderr.
	for _, args := range [][]string{{"lookup"}, {"--server", "127.0.0.1:1", "--timeout", "2s", "lookup", "bob"}, {"device", "revoke", "nothing", "--yes"}} {
		r := w.run("alice", "", append([]string{"--json"}, args...)...)
		if r.code == 0 || r.out != "" {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.out)
		}
		d.check(t, "(any error, on stderr)", r.err)
	}

	// witness: one object, then it serves.
	wctx, wcancel := context.WithCancel(context.Background())
	var wout, werr syncBuf
	wdone := make(chan int, 1)
	go func() {
		wdone <- Run(wctx, []string{"--json", "--server", w.server, "--trust", w.trust, "--data-dir", filepath.Join(root, "witness"), "witness", "--listen", "127.0.0.1:0"}, IO{Stdin: strings.NewReader(""), Stdout: &wout, Stderr: &werr, Getenv: testEnv})
	}()
	waitFor(t, "witness --json", func() bool { return strings.HasSuffix(wout.String(), "}\n") }, werr.String)
	wcancel()
	<-wdone
	d.check(t, "witness", wout.String())

	for name := range d.Commands {
		// TestDemoAttack checks these two (it has the evidence);
		// TestStolenLaptopEndToEnd checks account cancel-reset (it needs a
		// pending directory reset).
		if !seen[name] && name != "audit verify-evidence" && name != "demo attack" && name != "account cancel-reset" {
			t.Errorf("%s: no --json output checked", name)
		}
	}
}

// The validator fails on each kind of output issue 10 found.
func TestJSONSchemaValidatorCatches(t *testing.T) {
	d := loadSchema(t)
	good := `{"device_id":"00112233445566778899aabbccddeeff","device_name":"phone","created_at":"2026-11-29T20:20:24Z","this_device":false,"trusted":false,"revoked":true,"revoked_at":"2026-11-29T20:21:00Z","reason":"lost"}`
	for name, doc := range map[string]string{
		"human time":      strings.Replace(good, `"2026-11-29T20:20:24Z"`, `"2026-11-29 20:20:24Z"`, 1),
		"placeholder":     strings.Replace(good, `"phone"`, `"(unknown)"`, 1),
		"dash":            strings.Replace(good, `"2026-11-29T20:20:24Z"`, `"-"`, 1),
		"missing field":   strings.Replace(good, `"this_device":false,`, ``, 1),
		"camelCase field": strings.Replace(good, `"this_device"`, `"thisDevice"`, 1),
		"renamed field":   strings.Replace(good, `"device_id"`, `"revoked_device_id"`, 1),
		"padded check":    strings.Replace(good, `"revoked":true`, `"revoked":"ok  yes"`, 1),
	} {
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if errs := d.validate(d.Defs["device_row"], v, name); len(errs) == 0 {
			t.Errorf("%s: accepted %s", name, doc)
		}
	}
	dec := json.NewDecoder(strings.NewReader(good))
	dec.UseNumber()
	var v any
	dec.Decode(&v)
	if errs := d.validate(d.Defs["device_row"], v, "good"); len(errs) != 0 {
		t.Errorf("good row rejected: %v", errs)
	}
}
