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

// expandTree expands every scalar value under n in place. A scalar that
// changed is re-resolved as if written plain, so `forks: ${FORKS}` is an
// integer when FORKS holds one.
func (d *decoder) expandTree(n *yaml.Node, env func(string) (string, bool), depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			d.expandTree(c, env, depth+1)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if noExpandKeys[n.Content[i].Value] {
				continue
			}
			d.expandTree(n.Content[i+1], env, depth+1)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		out, err := expand(n.Value, env)
		if err != nil {
			d.errorf(n, "%v", err)
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

// expand replaces ${VAR} and ${VAR:-default} in s and turns $$ into $. A $
// followed by anything else is kept. Errors name the variable, never a
// value.
func expand(s string, env func(string) (string, bool)) (string, error) {
	var b strings.Builder
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
				return "", fmt.Errorf("unterminated ${ in value (write $$ for a literal $)")
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !isEnvName(name) {
				// The text may be part of a secret: do not print it.
				return "", fmt.Errorf("invalid variable reference in ${...}: a name is letters, digits and _ (write $$ for a literal $)")
			}
			val, ok := env(name)
			// As in the shell, :- also replaces a set but empty variable.
			switch {
			case ok && (val != "" || !hasDef):
				b.WriteString(val)
			case hasDef:
				b.WriteString(def)
			default:
				return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name)
			}
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isEnvName(s string) bool {
	return isIdentifier(s)
}
