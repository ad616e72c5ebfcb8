package policies

import (
	"cmp"
	"fmt"
	"math"
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser/lexer"
)

// The policy functions beyond expr's builtins:
//
//   fraction(list, predicate)  share of list's elements for which predicate
//                              holds; 0 for an empty list
//   top_mean(hosts, share)     mean score of the worst ceil(share*len(hosts))
//                              hosts (at least 1 when hosts is non-empty, 0
//                              for none); share in (0, 1]
//
// expr's parser accepts a predicate argument (`.degraded`) only for its own
// predicate builtins (all, any, count, filter, findLast, ...), and a custom
// function cannot receive a closure. So fraction is implemented as a
// rewrite: before parsing, each call token `fraction(` is renamed to the
// predicate builtin of the same length, `findLast(`, so the predicate
// parses and every column stays where the user wrote it; the recorded
// positions tell those calls apart from a findLast the user wrote. A patch
// visitor then replaces each renamed call, while expr type-checks the tree,
// with the plain expr AST
//
//   len(list) == 0 ? 0.0 : count(list, predicate) / len(list)
//
// so expr checks the predicate (it must be boolean) and expr's VM runs it
// with no Go callback.

// fractionAlias is the predicate builtin standing in for fraction while
// expr parses: it has the same length, so positions are unchanged.
const fractionAlias = "findLast"

// substituteFraction renames the `fraction(` call tokens of text to
// fractionAlias and returns the new text and the rune offsets of the
// renamed tokens. Text that does not lex is returned unchanged: the parser
// reports the problem.
func substituteFraction(text string) (string, map[int]bool) {
	tokens, err := lexer.Lex(file.NewSource(text))
	if err != nil {
		return text, nil
	}
	var at map[int]bool
	runes := []rune(text)
	for i, t := range tokens {
		if t.Kind != lexer.Identifier || t.Value != "fraction" || i+1 >= len(tokens) || !tokens[i+1].Is(lexer.Bracket, "(") {
			continue
		}
		if i > 0 && (tokens[i-1].Is(lexer.Operator, ".") || tokens[i-1].Is(lexer.Operator, "?.")) {
			continue // a member named fraction, not our function
		}
		if t.To-t.From != len(fractionAlias) {
			continue
		}
		copy(runes[t.From:t.To], []rune(fractionAlias))
		if at == nil {
			at = map[int]bool{}
		}
		at[t.From] = true
	}
	if at == nil {
		return text, nil
	}
	return string(runes), at
}

// fractionPatcher is the expr patch visitor that turns the renamed
// fraction calls (at: their rune offsets) into count/len arithmetic.
type fractionPatcher struct {
	at map[int]bool
}

// Visit implements ast.Visitor.
func (p *fractionPatcher) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BuiltinNode)
	if !ok || b.Name != fractionAlias || !p.at[b.Location().From] || len(b.Arguments) != 2 {
		return
	}
	pred, ok := b.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return
	}
	list := b.Arguments[0]
	if k := list.Type().Kind(); k != reflect.Slice && k != reflect.Array {
		return // expr reports findLast's (that is, fraction's) misuse
	}
	loc := b.Location()
	at := func(n ast.Node) ast.Node { n.SetLocation(loc); return n }
	length := func() ast.Node { return at(&ast.BuiltinNode{Name: "len", Arguments: []ast.Node{list}}) }
	ast.Patch(node, &ast.ConditionalNode{
		Ternary: true,
		Cond:    at(&ast.BinaryNode{Operator: "==", Left: length(), Right: at(&ast.IntegerNode{Value: 0})}),
		Exp1:    at(&ast.FloatNode{Value: 0}),
		Exp2: at(&ast.BinaryNode{
			Operator: "/",
			Left:     at(&ast.BuiltinNode{Name: "count", Arguments: []ast.Node{list, pred}}),
			Right:    length(),
		}),
	})
}

// topMean is top_mean(hosts, share): the mean score of the worst
// ceil(share*len(hosts)) hosts, using scratch (grown as needed and
// returned for reuse) so a steady-state call allocates nothing. A NaN
// score sorts below every other score.
func topMean(scratch []float64, hosts []*Host, share float64) (float64, []float64, error) {
	if !(share > 0 && share <= 1) {
		return 0, scratch, fmt.Errorf("top_mean: share %v is outside (0, 1]", share)
	}
	n := len(hosts)
	if n == 0 {
		return 0, scratch, nil
	}
	k := topCount(share, n)
	if cap(scratch) < n {
		scratch = make([]float64, n)
	}
	s := scratch[:n]
	for i, h := range hosts {
		if h == nil {
			return 0, scratch, fmt.Errorf("top_mean: hosts[%d] is nil", i)
		}
		s[i] = h.Score
	}
	selectLargest(s, k)
	sum := 0.0
	for _, v := range s[:k] {
		sum += v
	}
	return sum / float64(k), scratch, nil
}

// topCount is ceil(share*n) clamped to [1, n], computed so that a product
// that is an integer up to rounding (0.3*10 = 3.0000000000000004) is not
// rounded up to the next host.
func topCount(share float64, n int) int {
	x := share * float64(n)
	k := math.Ceil(x)
	if r := math.Round(x); math.Abs(x-r) <= 1e-9*math.Max(1, x) {
		k = r
	}
	return int(max(1, min(k, float64(n))))
}

// selectLargest rearranges s so that its k largest values (NaN smallest)
// come first, in some order: a quickselect, O(len(s)) on average, with
// median-of-three pivots so sorted input is not quadratic.
func selectLargest(s []float64, k int) {
	lo, hi := 0, len(s)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// Order s[lo], s[mid], s[hi] descending and pivot on the middle.
		if cmp.Compare(s[mid], s[lo]) > 0 {
			s[mid], s[lo] = s[lo], s[mid]
		}
		if cmp.Compare(s[hi], s[lo]) > 0 {
			s[hi], s[lo] = s[lo], s[hi]
		}
		if cmp.Compare(s[hi], s[mid]) > 0 {
			s[hi], s[mid] = s[mid], s[hi]
		}
		pivot := s[mid]
		i, j := lo, hi
		for i <= j {
			for cmp.Compare(s[i], pivot) > 0 {
				i++
			}
			for cmp.Compare(s[j], pivot) < 0 {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		// Now s[lo..j] >= pivot >= s[i..hi], and s[j+1..i-1] == pivot.
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
		}
	}
}
