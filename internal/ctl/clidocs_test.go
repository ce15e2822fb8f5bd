package ctl

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// docCommand is one `$ tabby …` line of docs/cli.md and what follows it.
type docCommand struct {
	line     int
	args     []string
	exit     int
	needRoot bool
	want     []string // sample output lines; "…" matches anything
}

// parseDocExamples reads the ```console blocks of a markdown file, and the
// files its YAML blocks define (first line "# FILE").
func parseDocExamples(t *testing.T, text string) ([]docCommand, map[string]string) {
	t.Helper()
	files := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)```yaml[^\n]*\n# ([^\n]+)\n(.*?)```").FindAllStringSubmatch(text, -1) {
		files[strings.TrimSpace(m[1])] = m[2]
	}
	var cmds []docCommand
	lines := strings.Split(text, "\n")
	in := false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "```console"):
			in = true
		case strings.HasPrefix(l, "```"):
			in = false
		case in && strings.HasPrefix(l, "$ "):
			words, comment, err := shellSplit(strings.TrimPrefix(l, "$ "))
			if err != nil || len(words) == 0 || words[0] != "tabby" {
				t.Fatalf("docs/cli.md:%d: %q: want `$ tabby ARGS` (%v)", i+1, l, err)
			}
			c := docCommand{line: i + 1, args: words[1:]}
			if n, ok := strings.CutPrefix(comment, "exit "); ok {
				if c.exit, err = strconv.Atoi(n); err != nil {
					t.Fatalf("docs/cli.md:%d: bad exit annotation %q", i+1, comment)
				}
			}
			c.needRoot = comment == "needs root"
			cmds = append(cmds, c)
		case in && len(cmds) > 0 && strings.TrimSpace(l) != "":
			cmds[len(cmds)-1].want = append(cmds[len(cmds)-1].want, l)
		}
	}
	return cmds, files
}

// shellSplit splits a command line as sh does for '…', "…" and \, and
// returns a trailing # comment.
func shellSplit(s string) (words []string, comment string, err error) {
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, "", fmt.Errorf("unclosed %c", c)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, strings.TrimSpace(s[i+1:]), nil
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, "", nil
}

// matchesLine reports whether some output line holds the fragments of want
// (split at "…") in order, comparing with runs of spaces collapsed.
func matchesLine(out []string, want string) bool {
	parts := strings.Split(strings.Join(strings.Fields(want), " "), "…")
	for _, l := range out {
		l = strings.Join(strings.Fields(l), " ")
		rest, ok := l, true
		for _, p := range parts {
			p = strings.TrimSpace(p)
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}

// TestCLIDocExamples runs every example of docs/cli.md, in order, against
// one embedded etcd, and checks exit codes and the sample output.
func TestCLIDocExamples(t *testing.T) {
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds, files := parseDocExamples(t, string(b))
	c := newCLI(t)
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	verbs := map[string]bool{}
	for _, dc := range cmds {
		verb := dc.args[0]
		if (verb == "ipam" || verb == "node") && len(dc.args) > 1 {
			verb += " " + dc.args[1]
		}
		verbs[verb] = true
		if dc.needRoot && os.Geteuid() != 0 {
			t.Logf("docs/cli.md:%d: skipped (needs root)", dc.line)
			continue
		}
		code, stdout, stderr := c.run(dc.args...)
		out := strings.Split(stdout+stderr, "\n")
		if code != dc.exit {
			t.Errorf("docs/cli.md:%d: tabby %s: exit %d, want %d\n%s%s", dc.line, strings.Join(dc.args, " "), code, dc.exit, stdout, stderr)
			continue
		}
		for _, w := range dc.want {
			if !matchesLine(out, w) {
				t.Errorf("docs/cli.md:%d: tabby %s: output lacks %q:\n%s%s", dc.line, strings.Join(dc.args, " "), w, stdout, stderr)
			}
		}
	}
	for _, v := range []string{"apply", "create", "replace", "delete", "get", "label", "patch", "validate",
		"ipam show", "ipam check", "ipam release", "ipam configure", "version", "node status", "node diags", "node checksystem", "flows", "console"} {
		if !verbs[v] {
			t.Errorf("docs/cli.md has no example of %q", v)
		}
	}
	t.Logf("ran %d examples", len(cmds))
}
