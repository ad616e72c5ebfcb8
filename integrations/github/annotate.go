package github

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Annotation is the workflow command that shows msg on file at line and
// col, at level error, warning or notice, in the run's summary and on the
// pull request's diff. file is made relative to $GITHUB_WORKSPACE, as
// GitHub wants it. Print it to standard output.
func Annotation(getenv func(string) string, level, file string, line, col int, msg string) string {
	if ws := getenv("GITHUB_WORKSPACE"); ws != "" && filepath.IsAbs(file) {
		if rel, err := filepath.Rel(ws, file); err == nil && !strings.HasPrefix(rel, "..") {
			file = rel
		}
	}
	props := fmt.Sprintf("file=%s,line=%d", escapeProperty(filepath.ToSlash(file)), line)
	if col > 0 {
		props += fmt.Sprintf(",col=%d", col)
	}
	return fmt.Sprintf("::%s %s::%s", level, props, escapeData(msg))
}

// escapeData escapes a workflow command's message as the Actions toolkit
// does.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// escapeProperty escapes a workflow command's property value.
func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
