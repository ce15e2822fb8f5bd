package runtimes_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// docCommands are the command lines of docs/runtimes.md's ```sh blocks
// that start with prog, split into words as the shell would.
func docCommands(t *testing.T, prog string) [][]string {
	t.Helper()
	f, err := os.Open("../../docs/runtimes.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			in = line == "```sh"
		case in && strings.HasPrefix(line, prog+" "):
			words, err := shellWords(line)
			if err != nil {
				t.Fatalf("docs/runtimes.md: %q: %v", line, err)
			}
			out = append(out, words)
		}
	}
	return out
}

// shellWords splits a line into words: '…' literal, "…" with \ escaping
// only " and \, and bare words; $WEB is kept as written.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errUnterminated
			}
			cur.WriteString(s[i+1 : i+1+j])
			i, inWord = i+1+j, true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errUnterminated
			}
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

type docError string

func (e docError) Error() string { return string(e) }

const errUnterminated = docError("unterminated quote")

// ranLog records the commands a runtime harness ran.
type ranLog struct{ lines []string }

func (r *ranLog) add(args []string) { r.lines = append(r.lines, strings.Join(args, "\x00")) }

// checkDocRan fails unless every prog command of docs/runtimes.md was run
// (with $WEB standing for web, the address the test found).
func checkDocRan(t *testing.T, prog string, ran *ranLog, web string) {
	t.Helper()
	done := map[string]bool{}
	for _, l := range ran.lines {
		done[strings.ReplaceAll(l, web, "$WEB")] = true
	}
	cmds := docCommands(t, prog)
	if len(cmds) == 0 {
		t.Fatalf("docs/runtimes.md has no %s commands", prog)
	}
	for _, c := range cmds {
		if !done[strings.Join(c[1:], "\x00")] {
			t.Errorf("docs/runtimes.md: %q was not run by this test", strings.Join(c, " "))
		}
	}
}

func TestDocCommandsParse(t *testing.T) {
	got := docCommands(t, "podman")
	want := []string{"podman", "inspect", "--format", `{{(index .NetworkSettings.Networks "tabby").IPAddress}}`, "web"}
	found := false
	for _, c := range got {
		found = found || strings.Join(c, "\x00") == strings.Join(want, "\x00")
	}
	if !found {
		t.Fatalf("podman commands of docs/runtimes.md %q: want one to be %q", got, want)
	}
	if w, err := shellWords(`sh -c "printf 'a\r' | nc $WEB 80"`); err != nil || len(w) != 3 || w[2] != `printf 'a\r' | nc $WEB 80` {
		t.Fatalf("shellWords = %q, %v", w, err)
	}
	if _, err := shellWords(`sh -c "open`); err == nil {
		t.Fatal("shellWords accepted an unterminated quote")
	}
	if len(docCommands(t, "ctr")) == 0 {
		t.Fatal("docs/runtimes.md has no ctr commands")
	}
}
