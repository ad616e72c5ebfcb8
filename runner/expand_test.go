package runner

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestExpand(t *testing.T) {
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"HOST": "web-1", "EMPTY": "", "PORT": "9100"}[name]
		return v, ok
	}
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${HOST}", want: "web-1"},
		{in: "${HOST}:${PORT}", want: "web-1:9100"},
		{in: "${MISSING:-fallback}", want: "fallback"},
		{in: "${MISSING:-}", want: ""},
		{in: "${EMPTY:-x}", want: "x"}, // as in the shell, :- covers empty
		{in: "${EMPTY}", want: ""},     // set but empty, no default
		{in: "$$HOME costs $$5", want: "$HOME costs $5"},
		{in: "$$${HOST}", want: "$web-1"},
		{in: "a $ b $x", want: "a $ b $x"}, // a lone $ stays
		{in: "trailing $", want: "trailing $"},
		{in: "${MISSING:-a:-b}", want: "a:-b"},
		{in: "${MISSING}", err: "environment variable MISSING is not set (write ${MISSING:-default} to give a default)"},
		{in: "${HOST", err: "unterminated ${ in value (write $$ for a literal $)"},
		{in: "${}", err: "invalid variable reference in ${...}: a name is letters, digits and _ (write $$ for a literal $)"},
		{in: "${pass word}", err: "invalid variable reference in ${...}: a name is letters, digits and _ (write $$ for a literal $)"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, env)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tt.want || gotErr != tt.err {
			t.Errorf("expand(%q) = %q, %q; want %q, %q", tt.in, got, gotErr, tt.want, tt.err)
		}
	}
}

// TestExpandTree checks what is and is not expanded, and that an expanded
// plain scalar takes the type of its new text.
func TestExpandTree(t *testing.T) {
	const doc = `
forks: ${N}
quoted: "${N}"
${N}: key
rollback_when: 'x > ${N}'
list: ["${N}", a]
`
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	d := newDecoder("f.yaml")
	d.expandTree(&root, func(string) (string, bool) { return "7", true }, 0)
	if len(d.errs) > 0 {
		t.Fatal(d.errs)
	}
	m := root.Content[0].Content
	got := []string{
		m[1].Value + " " + m[1].ShortTag(),
		m[3].Value + " " + m[3].ShortTag(),
		m[4].Value,
		m[7].Value,
		m[9].Content[0].Value + " " + m[9].Content[0].ShortTag(),
	}
	want := []string{"7 !!int", "7 !!int", "${N}", "x > ${N}", "7 !!int"}
	eq(t, "expanded tree", got, want)
}
