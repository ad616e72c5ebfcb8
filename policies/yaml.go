package policies

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML position helpers that policy files and rollout specs share:
// both are walked as yaml.Node trees so that every problem keeps its
// line and column.

// maxAliasHops bounds ResolveAlias, so a hostile file cannot make it
// loop.
const maxAliasHops = 64

// ResolveAlias follows an alias to the node it names.
func ResolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < maxAliasHops; i++ {
		n = n.Alias
	}
	return n
}

// DescribeNode names a node's kind for an error message ("a mapping",
// "a list", "a number", "a boolean", "a string", "null"), never its
// value.
func DescribeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!str":
			return "a string"
		}
		return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
	case yaml.AliasNode:
		return "an alias"
	}
	return "an unexpected node"
}

// YAMLError turns a YAML syntax error ("yaml: line 3: did not find ...")
// into a PosError at that line (0 when the parser names none), its
// message prefixed with what ("invalid YAML").
func YAMLError(file, what string, err error) *PosError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil && l > 0 {
				line, msg = l, tail
			}
		}
	}
	return &PosError{File: file, Line: line, Msg: what + ": " + msg}
}

// SortErrors orders errors by file, line and column, keeping the order of
// errors at the same place, and drops exact duplicates. An error that is
// not a *PosError sorts first.
func SortErrors(errs ErrorList) ErrorList {
	out := make(ErrorList, 0, len(errs))
	seen := map[string]bool{}
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	sortByPos(out)
	return out
}

// sortByPos sorts errs in place by file, line and column, keeping the
// order of errors at the same place.
func sortByPos(errs ErrorList) {
	pos := func(e error) (string, int, int) {
		if pe, ok := e.(*PosError); ok {
			return pe.File, pe.Line, pe.Col
		}
		return "", 0, 0
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		fa, la, ca := pos(a)
		fb, lb, cb := pos(b)
		return cmp.Or(strings.Compare(fa, fb), cmp.Compare(la, lb), cmp.Compare(ca, cb))
	})
}
