package notify

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/rollguard/rollguard/ports"
)

// annotations writes GitHub Actions workflow commands (::error::,
// ::warning::, ::notice::) that the runner turns into annotations on the
// workflow run.
type annotations struct {
	w  io.Writer
	mu *sync.Mutex
}

// annotationLevel maps an event to a workflow command.
func annotationLevel(a ports.Alert) string {
	switch {
	case a.Resolved || a.Event == ports.EventPromoted:
		return "notice"
	case a.Event == ports.EventDegraded:
		return "warning"
	default:
		return "error"
	}
}

// Annotation is the workflow command line for a, newline included.
func Annotation(a ports.Alert) string {
	msg := summary(a)
	if d := description(a); d != "" {
		msg += "\n" + d
	}
	return fmt.Sprintf("::%s title=%s::%s\n", annotationLevel(a),
		escapeProperty("rollguard "+title(a)+": "+a.Rollout), escapeData(msg))
}

func (g *annotations) send(ctx context.Context, a ports.Alert) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := io.WriteString(g.w, Annotation(a)); err != nil {
		return fmt.Errorf("write annotation: %w", err)
	}
	return nil
}

// escapeData escapes a workflow command's message as the Actions toolkit
// does (% first, so the escapes themselves survive).
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// escapeProperty escapes a workflow command's property value: also ':' and
// ',' which separate properties.
func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
