package api

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// yamlBlock is a ```yaml fenced block of a Markdown file.
type yamlBlock struct {
	file string
	line int // line of the opening fence
	text string
}

// markdownYAMLBlocks extracts the blocks fenced as ```yaml (exactly; use
// ```yml or ```text for YAML that is not a Tabby manifest).
func markdownYAMLBlocks(t *testing.T, file string) []yamlBlock {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	var blocks []yamlBlock
	var cur *yamlBlock
	var fence string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			fence = trimmed[:len(trimmed)-len(strings.TrimLeft(trimmed, "`"))]
			if strings.TrimSpace(trimmed[len(fence):]) == "yaml" {
				cur = &yamlBlock{file: file, line: n}
			} else {
				cur = &yamlBlock{line: -1} // some other block: skip to its end
			}
		case cur != nil && strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`") == "":
			if cur.line > 0 {
				blocks = append(blocks, *cur)
			}
			cur = nil
		case cur != nil && cur.line > 0:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Errorf("%s: code block opened on line %d is never closed", file, cur.line)
	}
	return blocks
}

// TestDocsExamples decodes and validates every ```yaml block of docs/*.md
// and README.md, so the examples cannot rot. The blocks are also applied
// together by the CLI's tests, so across all of them names must be unique
// and pools must not overlap.
func TestDocsExamples(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("../../README.md"); err == nil {
		files = append(files, "../../README.md")
	}
	type id struct{ kind, namespace, name string }
	seen := map[id]string{}
	var pools []*IPPool
	var poolWhere []string
	count := 0
	for _, f := range files {
		for _, b := range markdownYAMLBlocks(t, f) {
			where := filepath.Base(b.file) + ":" + strconv.Itoa(b.line)
			rs, err := Decode([]byte(b.text))
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if len(rs) == 0 {
				t.Errorf("%s: yaml block holds no resource (fence other YAML as ```yml or ```text)", where)
			}
			for _, r := range rs {
				count++
				m := r.GetObjectMeta()
				k := id{r.KindInfo().Kind, m.Namespace, m.Name}
				if prev, dup := seen[k]; dup {
					t.Errorf("%s: %s %q is also defined at %s", where, k.kind, k.name, prev)
				}
				seen[k] = where
				if p, ok := r.(*IPPool); ok {
					if err := CheckPoolOverlap(pools, p); err != nil {
						t.Errorf("%s: %v (other pools at %v)", where, err, poolWhere)
					}
					pools = append(pools, p)
					poolWhere = append(poolWhere, where)
				}
			}
		}
	}
	if count == 0 {
		t.Errorf("no yaml examples found in %v", files)
	}
}

func TestMarkdownYAMLBlocks(t *testing.T) {
	md := "# T\n```yaml\na: 1\n```\n\n````markdown\n```yaml\nnot: this\n```\n````\n```text\nx\n```\n  ```yaml\n  b: 2\n  ```\n```yml\nc: 3\n```\n"
	f := filepath.Join(t.TempDir(), "x.md")
	if err := os.WriteFile(f, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	got := markdownYAMLBlocks(t, f)
	if len(got) != 2 || got[0].text != "a: 1\n" || got[0].line != 2 || got[1].text != "  b: 2\n" {
		t.Errorf("markdownYAMLBlocks() = %+v; want the two yaml blocks", got)
	}
}
