package ports

import (
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
