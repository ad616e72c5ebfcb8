package runner

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Environment expansion: ${VAR} and ${VAR:-default} in scalar values, $$
// for a literal $. Keys are never expanded, and neither are the policy
// expressions (rollback_when, host_rollback_when): they are expr programs,
// which have no ${}, and a $ there must reach the compiler as written.

// noExpandKeys are the keys whose values are left as written.
var noExpandKeys = map[string]bool{"rollback_when": true, "host_rollback_when": true}

// EnvRef is one ${NAME} reference of a spec, and where it is written.
type EnvRef struct {
	// Name is the variable's name.
	Name string
	// Key is the key path of the value that holds it ("metrics.bearer_token",
	// "alerts[0].url").
	Key string
	// File, Line and Col are the value's position.
	File      string
	Line, Col int
	// HasDefault is set for ${NAME:-default}: the spec works without it.
	HasDefault bool
	// Set says whether the environment had a value when the spec loaded.
	// With LoadAllowUnset, an unset reference without a default left its
	// value unknown, and the problems of that value were not reported.
	Set bool
}

// expandTree expands every scalar value under n in place and records every
// reference in d.env. A scalar that changed is re-resolved as if written
// plain, so `forks: ${FORKS}` is an integer when FORKS holds one. path is
// n's key path.
func (d *decoder) expandTree(n *yaml.Node, env func(string) (string, bool), path string, depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.expandTree(c, env, path, depth+1)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.expandTree(c, env, fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if noExpandKeys[n.Content[i].Value] {
				continue
			}
			key := n.Content[i].Value
			if path != "" {
				key = path + "." + key
			}
			d.expandTree(n.Content[i+1], env, key, depth+1)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		var placeholder func(string) string
		if d.allowUnset {
			// The value stays visibly unexpanded; its problems are
			// dropped at the end of the load (d.unknown).
			placeholder = func(name string) string { return "${" + name + "}" }
		}
		out, uses, err := expand(n.Value, env, placeholder)
		for _, u := range uses {
			d.env = append(d.env, EnvRef{Name: u.name, Key: path, File: d.file, Line: n.Line, Col: n.Column, HasDefault: u.hasDefault, Set: u.set})
			if !u.set && !u.hasDefault {
				d.unknown[[2]int{n.Line, n.Column}] = true
			}
		}
		if err != nil {
			pe := d.posf(n, "%v", err)
			d.errs = append(d.errs, pe)
			// The value stays as written: its other problems would be
			// about the text ${NAME}, not about a value.
			d.unexpanded[pe] = true
			return
		}
		if out != n.Value {
			n.Value = out
			if n.Style&yaml.TaggedStyle == 0 {
				n.Tag = ""
				n.Style = 0
			}
		}
	}
}

// envUse is one reference found by expand.
type envUse struct {
	name            string
	hasDefault, set bool
}

// expand replaces ${VAR} and ${VAR:-default} in s and turns $$ into $. A $
// followed by anything else is kept. It returns the references it met.
// An unset variable without a default is an error, unless placeholder is
// given: its result then stands for the value. Errors name the variable,
// never a value.
func expand(s string, env func(string) (string, bool), placeholder func(string) string) (string, []envUse, error) {
	var b strings.Builder
	var uses []envUse
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", uses, fmt.Errorf("unterminated ${ in value (write $$ for a literal $)")
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !isEnvName(name) {
				// The text may be part of a secret: do not print it.
				return "", uses, fmt.Errorf("invalid variable reference in ${...}: a name is letters, digits and _ (write $$ for a literal $)")
			}
			val, ok := env(name)
			uses = append(uses, envUse{name: name, hasDefault: hasDef, set: ok})
			// As in the shell, :- also replaces a set but empty variable.
			switch {
			case ok && (val != "" || !hasDef):
				b.WriteString(val)
			case hasDef:
				b.WriteString(def)
			case placeholder != nil:
				b.WriteString(placeholder(name))
			default:
				return "", uses, fmt.Errorf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name)
			}
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), uses, nil
}

func isEnvName(s string) bool {
	return isIdentifier(s)
}
