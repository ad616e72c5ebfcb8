package ports

import (
	"errors"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

// SnapshotFields are the fields a snapshot hook's argv templates may use
// (revert.snapshot.create, restore, delete), sorted: checked when the
// spec loads and when the hooks are built.
func SnapshotFields() []string {
	return []string{".Host.Address", ".Host.Name", ".RunID", ".Snapshot"}
}

// UnknownFields returns the fields that t (and the templates it defines)
// refer to and allowed does not hold, each once, in order of appearance.
// An allowed entry ending in "*" admits any longer field under it
// (".Host.Meta.*" admits ".Host.Meta.rack").
func UnknownFields(t *template.Template, allowed []string) []string {
	var bad []string
	for _, tr := range t.Templates() {
		if tr.Tree == nil {
			continue
		}
		TemplateFields(tr.Tree.Root, func(f string) {
			if !fieldAllowed(f, allowed) && !slices.Contains(bad, f) {
				bad = append(bad, f)
			}
		})
	}
	return bad
}

func fieldAllowed(f string, allowed []string) bool {
	for _, a := range allowed {
		if a == f {
			return true
		}
		if pre, ok := strings.CutSuffix(a, "*"); ok && strings.HasPrefix(f, pre) && len(f) > len(pre) {
			return true
		}
	}
	return false
}

// TemplateFields calls f with every field chain a text/template refers to
// (".Host.Name"), so that a spec's templates (snapshot hooks,
// metrics.host_value) can be checked against the fields that exist when
// the spec is loaded, not when a host is first rendered. A bare {{.}} or
// {{$}} is reported as "."; a field of something other than a field
// ((expr).X) as "(chain).X".
func TemplateFields(n parse.Node, f func(string)) {
	switch n := n.(type) {
	case nil:
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			TemplateFields(c, f)
		}
	case *parse.ActionNode:
		TemplateFields(n.Pipe, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			TemplateFields(c, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			TemplateFields(a, f)
		}
	case *parse.FieldNode:
		f("." + strings.Join(n.Ident, "."))
	case *parse.VariableNode:
		if len(n.Ident) > 0 && n.Ident[0] == "$" {
			f("." + strings.Join(n.Ident[1:], "."))
		}
	case *parse.DotNode:
		f(".")
	case *parse.ChainNode:
		if fn, ok := n.Node.(*parse.FieldNode); ok {
			f("." + strings.Join(append(append([]string{}, fn.Ident...), n.Field...), "."))
			return
		}
		f("(chain)." + strings.Join(n.Field, "."))
	case *parse.IfNode:
		templateBranch(&n.BranchNode, f)
	case *parse.RangeNode:
		templateBranch(&n.BranchNode, f)
	case *parse.WithNode:
		templateBranch(&n.BranchNode, f)
	case *parse.TemplateNode:
		TemplateFields(n.Pipe, f)
	}
}

func templateBranch(b *parse.BranchNode, f func(string)) {
	TemplateFields(b.Pipe, f)
	TemplateFields(b.List, f)
	TemplateFields(b.ElseList, f)
}

// SnapshotData is what a snapshot hook's argv templates render over: only
// the fields SnapshotFields names, so a template naming any other field is
// refused when the spec loads rather than when a host is about to be
// changed.
type SnapshotData struct {
	Host     SnapshotHost
	RunID    string
	Snapshot string
}

// SnapshotHost is the host a snapshot hook runs for.
type SnapshotHost struct {
	Name string
	// Address is the host's address, its name when it has none.
	Address string
}

// TrySnapshotArg renders element i of a snapshot hook's argv on sample
// data, to find what would fail on every host before any is touched: an
// error in executing it (an index out of range, an undefined template)
// or, for the program (i == 0), a name that renders empty. The spec's
// loader and the hooks' constructor both call it, so `validate` refuses
// what a run would.
func TrySnapshotArg(t *template.Template, i int) error {
	var b strings.Builder
	sample := SnapshotData{Host: SnapshotHost{Name: "web-1", Address: "10.0.0.1"}, RunID: "run", Snapshot: "rollguard-run"}
	if err := t.Execute(&b, sample); err != nil {
		return err
	}
	if i == 0 && strings.TrimSpace(b.String()) == "" {
		return errors.New("the program name is empty")
	}
	return nil
}
