package policies

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// MaxExprNodes bounds the size of one policy expression (expr.MaxNodes):
// a policy is a few comparisons, not a program.
const MaxExprNodes = 500

// Expression roles, used in messages and to decide whether host is set.
const (
	roleFleet = "rollback_when"
	roleHost  = "host_rollback_when"
)

// program is one compiled expression of a policy: expr's bytecode, run on
// one reused VM, and what Explain needs, also compiled here.
type program struct {
	file string
	expr Expr
	prog *vm.Program
	// machine runs prog and explain's programs; reusing it keeps its
	// stack from being allocated on every run.
	machine vm.VM
	// explain is Explain's plan of the expression (see explain.go).
	explain *explanation
	// metrics are the query names the expression reads, nil when it
	// depends on every metric (usedMetrics).
	metrics []string
	// scratch is top_mean's buffer.
	scratch []float64
	// constant is the expression's value when it reads nothing that
	// changes between ticks (readsEnv), nil otherwise.
	constant *bool
}

// Compile compiles src once, against Env: every expression is parsed and
// type-checked by expr, its metric references checked against
// opts.Metrics, and compiled for evaluation and for Explain. The error,
// when not nil, is an ErrorList of *PosError naming the place in src.File.
func Compile(src Source, opts CompileOptions) (*Policy, error) {
	var errs ErrorList
	p := &Policy{Source: src}
	if p.OnNoData == "" {
		p.OnNoData = NoDataFail
	}
	at := &PosError{File: src.File, Line: src.Pos.Line, Col: src.Pos.Col}
	if src.Name == "" {
		e := *at
		e.Msg = "policy has no name"
		errs = append(errs, &e)
	}
	switch p.OnNoData {
	case NoDataFail, NoDataHold, NoDataIgnore:
	default:
		e := *at
		e.Msg = fmt.Sprintf("on_no_data is %q; want fail, hold or ignore", p.OnNoData)
		errs = append(errs, &e)
	}
	if src.RollbackWhen.Text == "" && src.HostRollbackWhen.Text == "" {
		e := *at
		e.Msg = fmt.Sprintf("policy %q has neither rollback_when nor host_rollback_when", src.Name)
		errs = append(errs, &e)
	}
	var err error
	if src.RollbackWhen.Text != "" {
		if p.fleet, err = compileExpr(src.File, src.RollbackWhen, roleFleet, opts); err != nil {
			errs = append(errs, err.(ErrorList)...)
		}
	}
	if src.HostRollbackWhen.Text != "" {
		if p.host, err = compileExpr(src.File, src.HostRollbackWhen, roleHost, opts); err != nil {
			errs = append(errs, err.(ErrorList)...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.Warnings = constantWarnings(src, p)
	p.uses = []string{}
	for _, pr := range []*program{p.fleet, p.host} {
		switch {
		case pr == nil:
		case pr.metrics == nil:
			p.uses = nil
		case p.uses != nil:
			p.uses = append(p.uses, pr.metrics...)
		}
	}
	if p.uses != nil {
		slices.Sort(p.uses)
		p.uses = slices.Compact(p.uses)
	}
	return p, nil
}

// constantWarnings warns of each expression of p whose value is fixed
// (program.constant): valid, but a policy that fires on every tick, or
// never, is surely a mistake (`rollback_when: true` written for "roll
// back when it degrades"). A warning never fails the load.
func constantWarnings(src Source, p *Policy) []*PosError {
	var warns []*PosError
	for _, x := range []struct {
		pr         *program
		role, what string
	}{
		{p.fleet, roleFleet, "rolls back every rollout"},
		{p.host, roleHost, "reverts every host it judges"},
	} {
		if x.pr == nil || x.pr.constant == nil {
			continue
		}
		what := x.what
		if !*x.pr.constant {
			what = "never fires"
			if x.role == roleHost {
				what = "never reverts a host"
			}
		}
		line, col := x.pr.expr.filePos(1, 0)
		warns = append(warns, &PosError{File: src.File, Line: line, Col: col,
			Msg: fmt.Sprintf("%s of policy %q is always %v: it reads nothing of the rollout (hosts, host, fleet, wave, phase, elapsed), so the policy %s",
				x.role, src.Name, *x.pr.constant, what)})
	}
	return warns
}

// compileExpr parses, checks and compiles one expression, and prepares
// what Explain will evaluate. Errors are an ErrorList.
func compileExpr(fileName string, e Expr, role string, opts CompileOptions) (*program, error) {
	pr := &program{file: fileName, expr: e}
	text, at := substituteFraction(e.Text)

	cfg := conf.CreateNew()
	for _, op := range []expr.Option{
		expr.Env(Env{}),
		expr.AsBool(),
		expr.MaxNodes(MaxExprNodes),
		expr.Function("top_mean", pr.topMean, new(func([]*Host, float64) float64)),
		expr.Patch(&fractionPatcher{at: at}),
	} {
		op(cfg)
	}
	cfg.Check()

	fail := func(line, col int, msg string) error {
		if at != nil {
			msg = strings.ReplaceAll(msg, fractionAlias, "fraction")
		}
		fl, fc := e.filePos(line, col)
		return ErrorList{&PosError{File: fileName, Line: fl, Col: fc, Msg: fmt.Sprintf("%s: %s", role, friendlier(msg))}}
	}
	failWith := func(err error) error {
		var fe *file.Error
		if errors.As(err, &fe) {
			return fail(fe.Line, fe.Column, fe.Message)
		}
		// expr reports the result type without a position: the whole
		// expression is at fault.
		return fail(1, 0, err.Error()+" (a policy must be a condition, e.g. `x > 5`)")
	}

	tree, err := parser.ParseWithConfig(text, cfg)
	if err != nil {
		return nil, failWith(err)
	}
	// Before the checker, which turns an integer argument into a float
	// without its position.
	shares := badShares(tree.Node)
	if _, err := new(checker.Checker).PatchAndCheck(tree, cfg); err != nil {
		return nil, failWith(err)
	}
	if errs := checkRefs(fileName, e, role, shares, tree.Node, opts, text); len(errs) > 0 {
		return nil, errs
	}
	pr.metrics = usedMetrics(tree.Node)
	reads := readsEnv(tree.Node)
	// Explain's programs come from the tree as written, before expr's
	// optimizer folds constants away from where the user wrote them.
	if pr.explain, err = explainPlan(tree, cfg, e.Text); err != nil {
		return nil, fail(1, 0, err.Error())
	}
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		return nil, failWith(err)
	}
	if pr.prog, err = compiler.Compile(tree, cfg); err != nil {
		return nil, fail(1, 0, err.Error())
	}
	if !reads {
		// Nothing in it changes from tick to tick: its value now is its
		// value on every tick of every rollout.
		v, err := pr.eval(&Env{})
		if err == nil {
			pr.constant = &v
		}
	}
	return pr, nil
}

// envNames are the names an expression reads the rollout through (Env's
// fields), and now, the one builtin whose value changes by itself.
var envNames = []string{"hosts", "host", "fleet", "wave", "phase", "elapsed", "now"}

// readsEnv says whether a checked expression refers to anything that
// changes between ticks: without such a reference (`true`, `1 > 0`,
// `all([1, 2], # > 0)`) its value is the same on every tick.
func readsEnv(root ast.Node) bool {
	reads := false
	walk(root, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.IdentifierNode:
			reads = reads || slices.Contains(envNames, n.Value)
		case *ast.BuiltinNode:
			reads = reads || slices.Contains(envNames, n.Name)
		}
	})
	return reads
}

// envTypes are the environment's struct types, by the name expr's
// messages give them, and how a policy writer knows them.
var envTypes = []struct {
	goName, name string
	t            reflect.Type
}{
	{"policies.Host", "a host", reflect.TypeOf(Host{})},
	{"policies.Metric", "a metric", reflect.TypeOf(Metric{})},
	{"policies.Fleet", "fleet", reflect.TypeOf(Fleet{})},
	{"policies.Wave", "wave", reflect.TypeOf(Wave{})},
}

// friendlier rewrites an expr message in the policy writer's terms: "type
// policies.Host has no field degradd" becomes "a host has no field degradd
// (fields: name, wave, ...)".
func friendlier(msg string) string {
	msg = strings.TrimSpace(msg)
	for _, et := range envTypes {
		prefix := "type " + et.goName + " has no field "
		if !strings.HasPrefix(msg, prefix) {
			continue
		}
		var fields []string
		for i := range et.t.NumField() {
			fields = append(fields, et.t.Field(i).Tag.Get("expr"))
		}
		return fmt.Sprintf("%s has no field %s (fields: %s)", et.name, strings.TrimPrefix(msg, prefix), strings.Join(fields, ", "))
	}
	return msg
}

// filePos maps a position inside the expression (1-based line, 0-based
// rune column, as expr reports them) to the file's 1-based line and column.
func (e Expr) filePos(line, col int) (int, int) {
	const (
		doubleQuoted = 2  // yaml.DoubleQuotedStyle
		singleQuoted = 4  // yaml.SingleQuotedStyle
		literal      = 8  // yaml.LiteralStyle
		folded       = 16 // yaml.FoldedStyle
	)
	if line < 1 {
		line = 1
	}
	switch {
	case e.Style&(literal|folded) != 0:
		// Content starts on the line after the indicator, indented. A
		// folded scalar's joined lines make columns approximate past the
		// first fold.
		indent := e.Indent
		if indent == 0 {
			indent = e.Pos.Col
		}
		return e.Pos.Line + line, indent + col
	case e.Style&(doubleQuoted|singleQuoted) != 0:
		if line == 1 {
			return e.Pos.Line, e.Pos.Col + 1 + col
		}
		return e.Pos.Line + line - 1, col + 1
	default:
		if line == 1 {
			return e.Pos.Line, e.Pos.Col + col
		}
		return e.Pos.Line + line - 1, col + 1
	}
}

// runeCol returns the 0-based line-relative rune column and 1-based line of
// rune offset off in text.
func runeLineCol(text string, off int) (line, col int) {
	line = 1
	i := 0
	for _, r := range text {
		if i == off {
			break
		}
		if r == '\n' {
			line++
			col = 0
		} else {
			col++
		}
		i++
	}
	return line, col
}

var (
	metricsMapType = reflect.TypeOf(map[string]*Metric(nil))
	hostPtrType    = reflect.TypeOf((*Host)(nil))
	fleetType      = reflect.TypeOf(Fleet{})
)

// checkRefs finds what expr's type checker cannot: host used where it is
// not set, and metric names (map keys, unchecked by expr) that no query
// defines.
func checkRefs(fileName string, e Expr, role string, shares []badShare, root ast.Node, opts CompileOptions, text string) ErrorList {
	var errs ErrorList
	addAt := func(at file.Location, format string, args ...any) {
		line, col := runeLineCol(text, at.From)
		fl, fc := e.filePos(line, col)
		errs = append(errs, &PosError{File: fileName, Line: fl, Col: fc, Msg: role + ": " + fmt.Sprintf(format, args...)})
	}
	add := func(n ast.Node, format string, args ...any) { addAt(n.Location(), format, args...) }
	for _, b := range shares {
		addAt(b.at, "top_mean: share %v is outside (0, 1]: it is the share of the hosts, worst first, whose scores are averaged (0.30: the worst 30%%)", b.share)
	}
	known := slices.Sorted(slices.Values(opts.Metrics))
	walk(root, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.IdentifierNode:
			if n.Value == "host" && role == roleFleet {
				add(n, "host is only set in host_rollback_when (the host being judged); rollback_when judges the fleet: use hosts, fleet or fraction(hosts, ...)")
			}
		case *ast.MemberNode:
			if n.Node.Type() != metricsMapType {
				return
			}
			key, ok := n.Property.(*ast.StringNode)
			if !ok || slices.Contains(known, key.Value) {
				return
			}
			if len(known) == 0 {
				add(n.Property, "unknown metric %q: the spec defines no metrics.queries", key.Value)
				return
			}
			add(n.Property, "unknown metric %q (metrics: %s)", key.Value, strings.Join(known, ", "))
		}
	})
	sortByPos(errs)
	return errs
}

// badShare is a top_mean share written as a number outside (0, 1]: it
// would fail every tick, and a policy that fails fires.
type badShare struct {
	at    file.Location
	share float64
}

// badShares finds the top_mean calls of a parsed (not yet checked) tree
// whose share is a number outside (0, 1].
func badShares(root ast.Node) []badShare {
	var out []badShare
	walk(root, func(n ast.Node) {
		if n, ok := n.(*ast.CallNode); ok && len(n.Arguments) == 2 {
			if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "top_mean" {
				if share, ok := constNumber(n.Arguments[1]); ok && !(share > 0 && share <= 1) {
					out = append(out, badShare{n.Arguments[1].Location(), share})
				}
			}
		}
	})
	return out
}

// constNumber is the value of a number literal, negated or not.
func constNumber(n ast.Node) (float64, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return float64(n.Value), true
	case *ast.FloatNode:
		return n.Value, true
	case *ast.UnaryNode:
		if v, ok := constNumber(n.Node); ok && (n.Operator == "-" || n.Operator == "+") {
			if n.Operator == "-" {
				v = -v
			}
			return v, true
		}
	}
	return 0, false
}

// walk calls fn for every node of the tree rooted at n, parents first.
func walk(n ast.Node, fn func(ast.Node)) {
	if n == nil {
		return
	}
	fn(n)
	switch n := n.(type) {
	case *ast.UnaryNode:
		walk(n.Node, fn)
	case *ast.BinaryNode:
		walk(n.Left, fn)
		walk(n.Right, fn)
	case *ast.ChainNode:
		walk(n.Node, fn)
	case *ast.MemberNode:
		walk(n.Node, fn)
		walk(n.Property, fn)
	case *ast.SliceNode:
		walk(n.Node, fn)
		walk(n.From, fn)
		walk(n.To, fn)
	case *ast.CallNode:
		walk(n.Callee, fn)
		for _, a := range n.Arguments {
			walk(a, fn)
		}
	case *ast.BuiltinNode:
		for _, a := range n.Arguments {
			walk(a, fn)
		}
		walk(n.Map, fn)
	case *ast.PredicateNode:
		walk(n.Node, fn)
	case *ast.ConditionalNode:
		walk(n.Cond, fn)
		walk(n.Exp1, fn)
		walk(n.Exp2, fn)
	case *ast.VariableDeclaratorNode:
		walk(n.Value, fn)
		walk(n.Expr, fn)
	case *ast.SequenceNode:
		for _, x := range n.Nodes {
			walk(x, fn)
		}
	case *ast.ArrayNode:
		for _, x := range n.Nodes {
			walk(x, fn)
		}
	case *ast.MapNode:
		for _, x := range n.Pairs {
			walk(x, fn)
		}
	case *ast.PairNode:
		walk(n.Key, fn)
		walk(n.Value, fn)
	}
}

// usedMetrics is UsesMetrics' answer for one checked expression.
func usedMetrics(root ast.Node) []string {
	names := []string{}
	all := false
	walk(root, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.CallNode:
			if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "top_mean" {
				all = true // reads every host's score
			}
		case *ast.MemberNode:
			prop, ok := n.Property.(*ast.StringNode)
			switch t := n.Node.Type(); {
			case t == metricsMapType:
				if !ok {
					all = true
				} else {
					names = append(names, prop.Value)
				}
			case t == hostPtrType && ok && (prop.Value == "score" || prop.Value == "degraded"):
				all = true
			case t == fleetType && ok && prop.Value != "size" && prop.Value != "changed":
				all = true
			case t == hostPtrType && !ok:
				all = true
			}
		}
	})
	if all {
		return nil
	}
	return names
}

// topMean is top_mean as expr's VM calls it, with the program's scratch
// buffer so that a steady-state call does not grow the heap per host.
func (pr *program) topMean(params ...any) (any, error) {
	if len(params) != 2 {
		return nil, fmt.Errorf("top_mean takes 2 arguments, got %d", len(params))
	}
	hosts, _ := params[0].([]*Host)
	var share float64
	switch s := params[1].(type) {
	case float64:
		share = s
	case int:
		share = float64(s)
	default:
		return nil, fmt.Errorf("top_mean: share is %T, not a number", params[1])
	}
	v, scratch, err := topMean(pr.scratch, hosts, share)
	pr.scratch = scratch
	if err != nil {
		return nil, err
	}
	return v, nil
}

// eval runs the program against env.
func (pr *program) eval(env *Env) (bool, error) {
	out, err := pr.run(pr.prog, env)
	if err != nil {
		return false, err
	}
	v, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("result is %T, not a boolean", out)
	}
	return v, nil
}

// run runs prog, the program or one of Explain's, on the program's VM. A
// failure names the place in the file where evaluation stopped.
func (pr *program) run(prog *vm.Program, env *Env) (any, error) {
	out, err := pr.machine.Run(prog, env)
	if err == nil {
		return out, nil
	}
	var fe *file.Error
	if !errors.As(err, &fe) {
		return nil, err
	}
	msg := fe.Message
	if strings.Contains(msg, "zero Value") { // reflect's words for a field of nil
		msg = "cannot fetch a field from nil (a host or metric with no value)"
	}
	line, col := pr.expr.filePos(fe.Line, fe.Column)
	return nil, fmt.Errorf("%s:%d:%d: %s", pr.file, line, col, msg)
}
