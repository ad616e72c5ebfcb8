package policies

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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

// YAMLError turns a YAML syntax error in data into a PosError at its line
// and column, its message prefixed with what ("invalid YAML"). The YAML
// parser names a line only, and inside a bracket or a block the line
// where that began; the position given here is where the parser stops:
// the last character of the shortest prefix of data that fails with the
// same message (a tab, a NUL byte, an invalid UTF-8 byte, the key at a
// wrong indentation, the bracket one level too deep). When no prefix
// fails alike, it is the parser's line, at column 1.
func YAMLError(file, what string, err error, data []byte) *PosError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil && l > 0 {
				line, msg = l, tail
			}
		}
	}
	pe := &PosError{File: file, Line: max(line, 1), Col: 1, Msg: what + ": " + msg}
	if at := aliasAt(data, msg); at >= 0 {
		pe.Line, pe.Col = position(data, at)
		return pe
	}
	if at := syntaxErrorAt(data, msg, line); at >= 0 {
		if strings.HasPrefix(msg, "did not find expected ',' or ") {
			// Unclosed: every prefix that ends inside the bracket fails
			// alike, the shortest at its first character; name the
			// bracket itself.
			if i := bytes.LastIndexAny(data[:at], "[{"); i >= 0 && len(bytes.TrimSpace(data[i+1:at])) == 0 {
				at = i
			}
			// url: ${ALERT_URL} inside [...] or {...}: the { of ${
			// opens a mapping there.
			if rest, _, _ := bytes.Cut(data[at:], []byte("\n")); bytes.Contains(rest, []byte("${")) {
				pe.Msg += ` (inside [...] or {...}, quote a value that holds ${...}: "${VAR}")`
			}
		}
		pe.Line, pe.Col = position(data, at)
	}
	return pe
}

// unknownAnchor is the parser's message for an alias to an anchor that
// is not defined before it.
var unknownAnchor = regexp.MustCompile(`^unknown anchor '(.+)' referenced$`)

// aliasAt is the offset of the alias an "unknown anchor" message is
// about (the first *name that fails alike, not one in a comment or a
// quoted string), or -1. The parser reports that error only once it has
// read the next token, often on a later line, and a prefix cut inside
// that token fails with another message, so syntaxErrorAt cannot find
// it.
func aliasAt(data []byte, msg string) int {
	m := unknownAnchor.FindStringSubmatch(msg)
	if m == nil {
		return -1
	}
	alias := []byte("*" + m[1])
	for off := 0; ; {
		i := bytes.Index(data[off:], alias)
		if i < 0 {
			return -1
		}
		end := off + i + len(alias)
		if err := firstYAMLError(data[:end]); err != nil && strings.HasSuffix(err.Error(), msg) {
			return off + i
		}
		off = end
	}
}

// OddLineBreak reports the first character that the YAML parser reads as
// a line break and an editor does not: NEL (U+0085), LINE SEPARATOR
// (U+2028) and PARAGRAPH SEPARATOR (U+2029), YAML 1.1's extra breaks,
// invisible in most editors (pasted from a web page or a chat). Left in,
// it splits a key or a comment where nothing shows, and every line
// number after it is one more than the editor's. nil when there is none.
func OddLineBreak(file string, data []byte) *PosError {
	for i, r := range string(data) {
		switch r {
		case '\u0085', '\u2028', '\u2029':
			line, col := position(data, i)
			return &PosError{File: file, Line: line, Col: col,
				Msg: fmt.Sprintf("invisible character U+%04X: YAML reads it as a line break, an editor does not; remove it", r)}
		}
	}
	return nil
}

// syntaxErrorAt is the offset of the last byte of the shortest prefix of
// data whose YAML stream fails with msg, or -1. Parsing is left to right,
// so a prefix that fails does not succeed again when it grows: a binary
// search finds it in log2(len(data)) parses. An answer before the
// parser's line (0: unknown), where the problem begins, is a prefix cut
// inside an earlier, closed bracket, which fails with the same message
// ("did not find expected ',' or '}'"): the search is done again from
// that line.
func syntaxErrorAt(data []byte, msg string, line int) int {
	fails := func(n int) bool {
		err := firstYAMLError(data[:n])
		return err != nil && strings.HasSuffix(err.Error(), msg)
	}
	if !fails(len(data)) {
		return -1
	}
	at := shortestFailing(fails, 0, len(data))
	if start := lineStart(data, line); at < start && !fails(start) {
		at = shortestFailing(fails, start, len(data))
	}
	return at
}

// shortestFailing binary-searches (lo, hi] for the shortest prefix length
// that fails, given fails(hi) and not fails(lo), and returns its last
// byte's offset.
func shortestFailing(fails func(int) bool, lo, hi int) int {
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi - 1
}

// lineStart is the offset of the start of 1-based line in data (0 when
// line is 1 or less, or past the end).
func lineStart(data []byte, line int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return 0
		}
		off += i + 1
	}
	return off
}

// firstYAMLError is the first error of data's YAML stream (nil at its
// end).
func firstYAMLError(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// position is the 1-based line and column (in characters) of data[off].
func position(data []byte, off int) (line, col int) {
	off = min(max(off, 0), len(data))
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	return bytes.Count(data[:off], []byte{'\n'}) + 1, utf8.RuneCount(data[start:off]) + 1
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
