package github

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// Output is one step output.
type Output struct {
	Name  string
	Value string
}

// WriteOutputs appends outputs to the file at path ($GITHUB_OUTPUT) in the
// multiline form, safe for any value:
//
//	name<<ghadelimiter_<random>
//	value
//	ghadelimiter_<random>
func WriteOutputs(path string, outputs []Output) error {
	var b strings.Builder
	for _, o := range outputs {
		if o.Name == "" || strings.ContainsAny(o.Name, "\r\n=") || strings.Contains(o.Name, "<<") {
			return fmt.Errorf("output name %q: must be non-empty, one line, without '=' or '<<'", o.Name)
		}
		delim, err := delimiter()
		if err != nil {
			return fmt.Errorf("output %s: %w", o.Name, err)
		}
		if strings.Contains(o.Value, delim) {
			return fmt.Errorf("output %s: the value contains the delimiter %s", o.Name, delim)
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", o.Name, delim, o.Value, delim)
	}
	if err := appendFile(path, b.String()); err != nil {
		return fmt.Errorf("write step outputs to %s: %w", path, err)
	}
	return nil
}

// delimiter is a fresh heredoc delimiter, as the Actions toolkit makes
// them: a value cannot end the block early unless it guesses 128 bits.
func delimiter() (string, error) {
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", fmt.Errorf("random delimiter: %w", err)
	}
	return "ghadelimiter_" + hex.EncodeToString(buf[:]), nil
}

// SummaryLimit is the most a step's summary file may hold: GitHub refuses
// to show a larger one (1 MiB).
const SummaryLimit = 1 << 20

// AppendSummary appends markdown to the step summary file at path
// ($GITHUB_STEP_SUMMARY). What would take the file over SummaryLimit is
// cut at a line boundary and a note says where the rest is.
func AppendSummary(path, markdown, truncatedNote string) error {
	size := int64(0)
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	if !strings.HasSuffix(markdown, "\n") {
		markdown += "\n"
	}
	room := SummaryLimit - size
	if int64(len(markdown)) > room {
		note := "\n> " + truncatedNote + "\n"
		keep := room - int64(len(note))
		if keep <= 0 {
			return fmt.Errorf("append step summary to %s: the file already holds %d bytes of GitHub's %d", path, size, SummaryLimit)
		}
		cut := markdown[:keep]
		if i := strings.LastIndexByte(cut, '\n'); i >= 0 {
			cut = cut[:i+1]
		}
		markdown = cut + note
	}
	if err := appendFile(path, markdown); err != nil {
		return fmt.Errorf("append step summary to %s: %w", path, err)
	}
	return nil
}

func appendFile(path, data string) error {
	if path == "" {
		return fmt.Errorf("no file path (not running in GitHub Actions?)")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
