package policies

import (
	"strings"
	"testing"
)

// yamlLevelCases are malformed files whose problem the YAML parser finds
// before any key is read; each must be reported at file:line:col, the
// column where the problem is. They serve the spec loader's test too.
var yamlLevelCases = []struct {
	name, data string
	line, col  int
}{
	{"unclosed bracket", "name: x\nrollback_when: [a, b\non_no_data: fail\n", 2, 16},
	{"unclosed brace", "name: x\nrollback_when: {a: b\n", 2, 16},
	{"tab indentation", "name: x\n\trollback_when: y\n", 2, 1},
	{"tab after a key", "name: x\nrollback_when: y\nlist:\n\t- 1\n", 4, 1},
	{"bad indentation", "name: x\nrollback_when: y\n  on_no_data: fail\n", 3, 13},
	{"dedent inside a mapping", "a:\n  b: 1\n c: 2\n", 3, 2},
	{"binary garbage", "\x89PNG\r\n\x1a\n\x00\x00", 1, 1},
	{"NUL byte", "name: x\nrollback_when: \x00\n", 2, 16},
	{"invalid UTF-8", "name: caf\xe9\n", 1, 10},
	{"nesting too deep", "name: " + strings.Repeat("[", 10001), 1, 10007},
	{"unclosed quote", "name: 'x\n", 1, 7},
	// YAML 1.1's invisible line breaks: reported where they are, not
	// read as a line break that shifts every later line.
	{"line separator in a key", "name: x\nrollback_when: y\non_no\u2028_data: fail\n", 3, 6},
	{"NEL in a comment", "# a\u0085b\nname: x\n", 1, 4},
	{"paragraph separator", "name: x\u2029\n", 1, 8},
}

func TestYAMLErrorPositions(t *testing.T) {
	for _, c := range yamlLevelCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFile("p.yaml", []byte(c.data))
			list, ok := err.(ErrorList)
			if !ok || len(list) == 0 {
				t.Fatalf("error %v (%T), want an ErrorList", err, err)
			}
			pe, ok := list[0].(*PosError)
			if !ok || pe.Line != c.line || pe.Col != c.col {
				t.Errorf("%v, want p.yaml:%d:%d", list[0], c.line, c.col)
			}
		})
	}
	// An empty file has no policy, at its start.
	for _, data := range []string{"", "\n\n", "# only a comment\n"} {
		_, err := ParseFile("p.yaml", []byte(data))
		if err == nil || err.Error() != "p.yaml:1:1: no policy in file" {
			t.Errorf("%q: %v, want p.yaml:1:1: no policy in file", data, err)
		}
	}
}
