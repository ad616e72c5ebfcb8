package ansible

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/rollguard/rollguard/ports"
)

// A check run (--check --diff) is read from the same json stdout callback
// document as any run (resultsFromJSON); go-ansible's result type has no
// field for a result's "diff", so this file reads the diffs, the "dest"
// and the "path" of the same document in a second decode.

// diffDoc is the part of the json callback's document that says which
// files a task's result changes.
type diffDoc struct {
	Plays []struct {
		Tasks []struct {
			Task struct {
				Name string `json:"name"`
			} `json:"task"`
			Hosts map[string]*diffResult `json:"hosts"`
		} `json:"tasks"`
	} `json:"plays"`
}

// diffResult is one task result on one host, or one loop item of it.
type diffResult struct {
	Changed bool            `json:"changed"`
	Diff    json.RawMessage `json:"diff"`
	Dest    string          `json:"dest"`
	Path    string          `json:"path"`
	// Results holds a loop's items.
	Results []*diffResult `json:"results"`
}

// diffItem is one entry of a result's "diff": a dict, or a list of them
// (copy and template give a list, one per file). before and after are
// the texts of a file, or dicts of its attributes (file: state, mode).
type diffItem struct {
	Before       any    `json:"before"`
	After        any    `json:"after"`
	BeforeHeader string `json:"before_header"`
}

// taskChanges reads, per host, the files each changed task would change,
// from a check run's json callback document. A task that changed
// something but names no file still has its entry, with no files.
func taskChanges(stdout []byte) map[string][]ports.TaskChange {
	var doc diffDoc
	if err := json.NewDecoder(bytes.NewReader(stdout)).Decode(&doc); err != nil {
		return nil
	}
	out := map[string][]ports.TaskChange{}
	for _, play := range doc.Plays {
		for _, task := range play.Tasks {
			for host, r := range task.Hosts {
				if r == nil || !r.Changed {
					continue
				}
				out[host] = append(out[host], ports.TaskChange{Task: task.Task.Name, Files: r.files()})
			}
		}
	}
	return out
}

// files lists the files a changed result (and its changed loop items)
// touches, one entry per path, in the order first met.
func (r *diffResult) files() []ports.FileChange {
	var out []ports.FileChange
	add := func(f ports.FileChange) {
		if f.Path == "" {
			return
		}
		for i := range out {
			if out[i].Path == f.Path {
				out[i].Added += f.Added
				out[i].Removed += f.Removed
				return
			}
		}
		out = append(out, f)
	}
	var walk func(r *diffResult)
	walk = func(r *diffResult) {
		items := diffItems(r.Diff)
		for _, it := range items {
			f := ports.FileChange{Path: it.path()}
			if f.Path == "" {
				f.Path = r.target()
			}
			f.Added, f.Removed = it.lines()
			add(f)
		}
		if len(items) == 0 && r.Changed {
			add(ports.FileChange{Path: r.target()})
		}
		for _, item := range r.Results {
			if item != nil && item.Changed {
				walk(item)
			}
		}
	}
	walk(r)
	return out
}

// target is the file a module's result names: dest (copy, template), else
// path (file, lineinfile).
func (r *diffResult) target() string {
	if r.Dest != "" {
		return r.Dest
	}
	return r.Path
}

// diffItems reads a result's "diff": a dict, a list of dicts, or nothing.
func diffItems(raw json.RawMessage) []diffItem {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var list []diffItem
	if raw[0] == '[' {
		if json.Unmarshal(raw, &list) != nil {
			return nil
		}
		return list
	}
	var one diffItem
	if json.Unmarshal(raw, &one) != nil {
		return nil
	}
	return []diffItem{one}
}

// path is the file a diff is about: its before_header, which Ansible sets
// to the destination ("<path> (content)" from lineinfile), or the path in
// a dict of attributes.
func (it diffItem) path() string {
	if h := it.BeforeHeader; h != "" {
		h, _ = strings.CutSuffix(h, " (content)")
		h, _ = strings.CutSuffix(h, " (file attributes)")
		return h
	}
	for _, side := range []any{it.Before, it.After} {
		if m, ok := side.(map[string]any); ok {
			if p, ok := m["path"].(string); ok {
				return p
			}
		}
	}
	return ""
}

// lines counts the lines a text diff adds and removes; 0 and 0 when
// neither side is text (an attribute change).
func (it diffItem) lines() (added, removed int) {
	before, bok := it.Before.(string)
	after, aok := it.After.(string)
	if !bok && !aok {
		return 0, 0
	}
	a, b := splitLines(before), splitLines(after)
	m := difflib.NewMatcherWithJunk(a, b, false, nil)
	for _, op := range m.GetOpCodes() {
		switch op.Tag {
		case 'r':
			removed += op.I2 - op.I1
			added += op.J2 - op.J1
		case 'd':
			removed += op.I2 - op.I1
		case 'i':
			added += op.J2 - op.J1
		}
	}
	return added, removed
}

// splitLines splits a file's text into lines, each with its newline.
func splitLines(s string) []string {
	return slices.Collect(strings.Lines(s))
}
