// Package docs holds Keyline's documentation. Its test is the docs check of
// `make test`: every Markdown link to a file or heading resolves, no Markdown
// file says "section N" or "§N" of our own documents without linking it, and
// every Go comment that cites a section of docs/ names one that exists.
//
// The rules, so that a failure is easy to fix:
//
//   - A relative link [text](path#anchor) in any *.md file must name an
//     existing file, and the anchor (if any) a heading of that file, with
//     anchors made as GitHub makes them (lower case; letters, digits, spaces,
//     '-' and '_' kept; spaces become '-'; duplicates get -1, -2, ...).
//   - In Markdown, "section 8.2" or "§8.2" must be the text of a link, unless
//     an external specification is named right before it ("RFC 9381 section
//     5.3", "C2SP tlog-tiles §2", "BIP39 §3").
//   - In Markdown and Go comments, a citation of protocol.md by bare
//     number ("protocol.md 2.3") must name a numbered heading, and one by
//     quoted name (protocol.md, "Epochs") a heading that contains the name.
//   - Every heading of docs/protocol.md below the title is numbered
//     ("## 3. Devices", "### 3.2 DeviceCert").
//   - A Go comment that names a document of docs/ and a section
//     ("protocol.md §3.2", "docs/design.md section 4.1") must name a
//     numbered heading of that document; a Go comment with a bare "section
//     N" that names no document at all is an error. The README quickstart
//     is checked by cli's TestQuickstartMatchesREADME.
package docs

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository root, one level above this package.
const root = ".."

var (
	linkRE    = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	// sectionRE matches a section reference: "section 8.2", "Section 3", "§8.2", "§ 8".
	sectionRE = regexp.MustCompile(`(?i)(section|§)\s?(\d+(?:\.\d+)*)`)
	// externalRE matches the name of an external specification right before a
	// section reference: RFC 9381, C2SP tlog-tiles, BIP39, FIPS 186-5, ...
	externalRE  = regexp.MustCompile(`(?i)(RFC\s?\d+|C2SP[\w\- /.]*|BIP-?\d+|FIPS[\w\- ]*|SP\s?800-\d+\w*|draft-[\w\-.]+|ECVRF[\w\-]*|HPKE|Signal[\w\- ]*|tlog-[\w\-]+|spec)[,:]?\s*(\(?\s*)$`)
	protoNumRE  = regexp.MustCompile(`^(\d+(?:\.\d+)*)\.?\s`)
	fencedRE    = regexp.MustCompile("^\\s*(```|~~~)")
	goCommentRE = regexp.MustCompile(`//(.*)$`)
	// specNameRE finds an external specification anywhere before a reference
	// in a Go comment ("RFC 9381 (ECVRF, section 5.4)").
	specNameRE = regexp.MustCompile(`(?i)(RFC\s?\d+|C2SP|BIP-?\d+)`)
)

// markdownFiles returns the repository's Markdown files (relative to root),
// skipping .git, testdata and caches.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "testdata", "node_modules", "keyline-data":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Markdown files found; is the test running from docs/?")
	}
	return files
}

// lines returns the lines of a Markdown file outside fenced code blocks, with
// their 1-based numbers.
type mdLine struct {
	n    int
	text string
}

func readMarkdown(t *testing.T, path string) []mdLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []mdLine
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if fencedRE.MatchString(line) {
			in = !in
			continue
		}
		if !in {
			out = append(out, mdLine{n, line})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// anchor returns GitHub's anchor for a heading text.
func anchor(heading string) string {
	// Links inside a heading count by their text.
	heading = linkRE.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_':
			b.WriteRune(r)
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r > 127 && isLetterOrDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isLetterOrDigit(r rune) bool {
	return strings.ContainsRune("àáâäãåæçèéêëìíîïñòóôöõøœùúûüýÿß", r)
}

// headings returns the anchors of a Markdown file's headings and the heading
// texts in order.
func headings(t *testing.T, path string) (anchors map[string]bool, texts []mdLine) {
	t.Helper()
	anchors = make(map[string]bool)
	seen := make(map[string]int)
	for _, l := range readMarkdown(t, path) {
		m := headingRE.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		a := anchor(m[2])
		if k := seen[a]; k > 0 {
			anchors[fmt.Sprintf("%s-%d", a, k)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
		texts = append(texts, mdLine{l.n, m[1] + " " + m[2]})
	}
	return anchors, texts
}

func TestMarkdownLinks(t *testing.T) {
	cache := make(map[string]map[string]bool)
	anchorsOf := func(path string) map[string]bool {
		if a, ok := cache[path]; ok {
			return a
		}
		a, _ := headings(t, path)
		cache[path] = a
		return a
	}
	for _, file := range markdownFiles(t) {
		for _, l := range readMarkdown(t, file) {
			for _, m := range linkRE.FindAllStringSubmatch(l.text, -1) {
				target := m[2]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, frag, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), path)
					st, err := os.Stat(dest)
					if err != nil {
						t.Errorf("%s:%d: link %q: no such file %s", rel(file), l.n, target, rel(dest))
						continue
					}
					if st.IsDir() || !strings.HasSuffix(dest, ".md") {
						if frag != "" {
							t.Errorf("%s:%d: link %q: anchor on a file that is not Markdown", rel(file), l.n, target)
						}
						continue
					}
				}
				if frag != "" && !anchorsOf(dest)[frag] {
					t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", rel(file), l.n, target, rel(dest), frag)
				}
			}
		}
	}
}

func TestMarkdownSectionReferences(t *testing.T) {
	secs := protocolSections(t, false)
	_, heads := headings(t, filepath.Join(root, "docs", "protocol.md"))
	for _, file := range markdownFiles(t) {
		for _, l := range readMarkdown(t, file) {
			if headingRE.MatchString(l.text) {
				continue
			}
			for _, msg := range checkProtoCitations(strings.ReplaceAll(l.text, "`", ""), secs, heads) {
				t.Errorf("%s:%d: %s", rel(file), l.n, msg)
			}
			for _, ref := range bareReferences(l.text) {
				t.Errorf("%s:%d: bare reference %q: link it to the heading, e.g. [§8.2](protocol.md#82-rules-rule-names-as-in-evidence-files)",
					rel(file), l.n, ref)
			}
		}
	}
}

// bareReferences returns the section references of a Markdown line that
// are neither the text of a link, inside inline code, nor right after the
// name of an external specification.
func bareReferences(line string) []string {
	// Blank out links and inline code: references there are fine.
	text := linkRE.ReplaceAllStringFunc(line, func(s string) string { return strings.Repeat(" ", len(s)) })
	text = blankInlineCode(text)
	var refs []string
	for _, loc := range sectionRE.FindAllStringIndex(text, -1) {
		if !externalRE.MatchString(text[:loc[0]]) {
			refs = append(refs, strings.TrimSpace(text[loc[0]:loc[1]]))
		}
	}
	return refs
}

// TestBareReferences shows that the Markdown reference rule fails on bare
// references and passes links, code and external specifications.
func TestBareReferences(t *testing.T) {
	for _, c := range []struct {
		line string
		want int
	}{
		{"the auditor part says section 2", 1},
		{"as in §8.1.1 and §3", 2},
		{"see [§8.2](protocol.md#82-rules)", 0},
		{"see `section 2` in code", 0},
		{"RFC 9381 section 5.5 and RFC 4648 §4", 0},
		{"C2SP tlog-tiles §2", 0},
		{"RFC 9381 section 5, then section 6 of ours", 1},
	} {
		if got := bareReferences(c.line); len(got) != c.want {
			t.Errorf("bareReferences(%q) = %q, want %d", c.line, got, c.want)
		}
	}
}

// TestAnchor checks anchors against headings as GitHub renders them.
func TestAnchor(t *testing.T) {
	for h, want := range map[string]string{
		"8.2 Rules (rule names as in evidence files)":                                          "82-rules-rule-names-as-in-evidence-files",
		"3.8 Rules (devices.VerifyCreate / VerifyTransition / VerifyReset / VerifyAfterReset)": "38-rules-devicesverifycreate--verifytransition--verifyreset--verifyafterreset",
		"7.1.1 Signing key generations (`Client.Lookup`)":                                      "711-signing-key-generations-clientlookup",
		"keyline demo attack [--dir D]":                                                        "keyline-demo-attack---dir-d",
		"See [the API](api.md) now":                                                            "see-the-api-now",
	} {
		if got := anchor(h); got != want {
			t.Errorf("anchor(%q) = %q, want %q", h, got, want)
		}
	}
}

func blankInlineCode(s string) string {
	b := []byte(s)
	in := false
	for i := range b {
		if b[i] == '`' {
			in = !in
			continue
		}
		if in {
			b[i] = ' '
		}
	}
	return string(b)
}

// protocolSections returns the section numbers of docs/protocol.md.
// If report is set, an unnumbered heading is an error.
func protocolSections(t *testing.T, report bool) map[string]bool {
	return docSections(t, "protocol.md", report)
}

// docSections returns the section numbers of the numbered headings of
// docs/name. If report is set, an unnumbered heading is an error.
func docSections(t *testing.T, name string, report bool) map[string]bool {
	t.Helper()
	_, texts := headings(t, filepath.Join(root, "docs", name))
	secs := make(map[string]bool)
	for i, h := range texts {
		level := strings.IndexByte(h.text, ' ')
		title := h.text[level+1:]
		if i == 0 && level == 1 {
			continue // the document title
		}
		m := protoNumRE.FindStringSubmatch(title)
		if m == nil {
			if report {
				t.Errorf("docs/%s:%d: heading %q is not numbered", name, h.n, h.text)
			}
			continue
		}
		secs[m[1]] = true
	}
	return secs
}

// allDocSections returns the section numbers of every docs/*.md, by file
// name without ".md".
func allDocSections(t *testing.T) map[string]map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	all := make(map[string]map[string]bool)
	for _, f := range files {
		name := filepath.Base(f)
		all[strings.TrimSuffix(name, ".md")] = docSections(t, name, false)
	}
	return all
}

func TestProtocolHeadingsNumbered(t *testing.T) {
	if len(protocolSections(t, true)) == 0 {
		t.Fatal("docs/protocol.md has no numbered sections")
	}
}

func TestGoCommentsCiteExistingSections(t *testing.T) {
	docs := allDocSections(t)
	_, texts := headings(t, filepath.Join(root, "docs", "protocol.md"))
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".pb.go") || filepath.Base(path) == "docs_test.go" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, msg := range checkGoComments(string(data), docs, texts) {
			t.Errorf("%s:%s", rel(path), msg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var (
	// protoBareRE matches a protocol.md citation by bare number:
	// "protocol.md 2.3", "docs/protocol.md, 5.2.5".
	protoBareRE = regexp.MustCompile(`protocol\.md\)?[,:]?\s+(\d+\.\d+(?:\.\d+)*)`)
	// protoQuotedRE matches a protocol.md citation by heading name:
	// docs/protocol.md, "Map tiles".
	protoQuotedRE = regexp.MustCompile(`protocol\.md\)?[,:]?\s+"([^"]+)"`)
)

// lastDocRE finds the Markdown documents a comment names ("protocol.md",
// "docs/design.md").
var lastDocRE = regexp.MustCompile(`([\w-]+)\.md\b`)

// checkGoComments returns "line: problem" for every comment line of a Go
// source that cites a document of docs/ wrongly: a section number that is
// not a numbered heading of the document named last before it (docs: file
// name without ".md" -> section numbers), a protocol.md heading cited by a
// bare number or a quoted name (headings) that does not exist, or a bare
// "section N"/"§N" that names no document.
func checkGoComments(src string, docs map[string]map[string]bool, headings []mdLine) []string {
	var out []string
	prev := "" // the previous comment line, for a reference split over two lines
	for i, line := range strings.Split(src, "\n") {
		m := goCommentRE.FindStringSubmatch(line)
		if m == nil {
			prev = ""
			continue
		}
		c := m[1]
		ctx := prev
		prev = c
		for _, loc := range sectionRE.FindAllStringSubmatchIndex(c, -1) {
			num := c[loc[4]:loc[5]]
			before := c[:loc[0]]
			if strings.TrimSpace(before) == "" {
				before = ctx + " " + before
			}
			var doc string
			if ms := lastDocRE.FindAllStringSubmatch(before, -1); ms != nil {
				doc = ms[len(ms)-1][1]
			}
			switch {
			case externalRE.MatchString(before):
			case doc != "" && docs[doc] != nil:
				if !docs[doc][num] {
					out = append(out, fmt.Sprintf("%d: cites %s.md section %s, which does not exist", i+1, doc, num))
				}
			case specNameRE.MatchString(before):
			default:
				out = append(out, fmt.Sprintf("%d: bare %q names no document of docs/; write \"protocol.md §%s\" (or the RFC it means)", i+1, strings.TrimSpace(c[loc[0]:loc[1]]), num))
			}
		}
		for _, msg := range checkProtoCitations(c, docs["protocol"], headings) {
			out = append(out, fmt.Sprintf("%d: %s", i+1, msg))
		}
	}
	return out
}

// checkProtoCitations returns a problem for every citation of protocol.md
// in text by bare number ("protocol.md 2.3") that is not a numbered heading,
// and by quoted name (protocol.md, "Map tiles") that no heading contains.
func checkProtoCitations(text string, secs map[string]bool, headings []mdLine) []string {
	var out []string
	for _, m := range protoBareRE.FindAllStringSubmatch(text, -1) {
		if !secs[m[1]] {
			out = append(out, fmt.Sprintf("cites protocol.md %s, which does not exist (write \"protocol.md §N\" with an existing section)", m[1]))
		}
	}
	for _, m := range protoQuotedRE.FindAllStringSubmatch(text, -1) {
		found := false
		for _, h := range headings {
			if strings.Contains(strings.ToLower(h.text), strings.ToLower(m[1])) {
				found = true
				break
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("cites protocol.md heading %q, which does not exist (cite its number: \"protocol.md §N\")", m[1]))
		}
	}
	return out
}

// TestCheckGoComments shows that the Go comment rules fail on the mistakes
// they exist for and pass the correct forms.
func TestCheckGoComments(t *testing.T) {
	docs := map[string]map[string]bool{"protocol": {"2": true, "5.2.5": true}, "design": {"4.1": true}}
	heads := []mdLine{{1, "#### 5.2.5 Tiled storage (vmap.TiledMap)"}}
	for _, c := range []struct {
		src string
		bad bool
	}{
		{"// see protocol.md §5.2.5", false},
		{"// see docs/protocol.md section 2.", false},
		{"// protocol.md 5.2.5 defines tiles", false},
		{"// (docs/protocol.md, \"Tiled storage\")", false},
		{"// RFC 9381 section 5.4.1.1", false},
		{"// see protocol.md §2.3", true},
		{"// as docs/protocol.md 2.3 defines verification", true},
		{"// (docs/protocol.md, \"Map tiles\")", true},
		{"// the rules of section 1.1", true},
		{"// protocol.md\n// section 9", true},
		{"// the rule of docs/design.md §4.1", false},
		{"// the rule of docs/design.md §4.2", true},
		{"// docs/protocol.md §2 and design.md §2", true},
	} {
		got := checkGoComments(c.src, docs, heads)
		if (len(got) > 0) != c.bad {
			t.Errorf("checkGoComments(%q) = %q, want problems: %v", c.src, got, c.bad)
		}
	}
}

func rel(p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}
