package ansible

import (
	"bufio"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// Why a callback plugin on a pipe: the json stdout callback, which gives the
// authoritative per-host results, prints one document when the playbook
// ends, so it cannot drive progress; parsing the default stdout callback
// instead would tie rollguard to a human-oriented format that changes
// between Ansible versions and that users restyle. A notification callback
// runs next to any stdout callback, sees every task result as a structured
// object, and costs one JSON line per result. It writes to an inherited pipe
// (fd 3) rather than a file, so there is nothing to poll or clean up, the
// reader wakes on every line, and the stream ends (EOF) exactly when the last
// process of the playbook's group has gone.

//go:embed callback/rollguard_events.py
var callbackFS embed.FS

const (
	// callbackName is the plugin's name, and its file's.
	callbackName = "rollguard_events"
	// eventsFDVar tells the plugin which file descriptor to write to.
	eventsFDVar = "ROLLGUARD_EVENTS_FD"
	// eventsFD is the descriptor number of the pipe in ansible-playbook:
	// the first of exec.Cmd.ExtraFiles.
	eventsFD = 3
	// drainLimit bounds how long the stream is read after ansible-playbook
	// exited, in case a stray process still holds the pipe.
	drainLimit = 2 * time.Second
)

// writeCallbackPlugin writes the embedded plugin into dir/callback_plugins
// and returns that directory, for ANSIBLE_CALLBACK_PLUGINS.
func writeCallbackPlugin(dir string) (string, error) {
	src, err := callbackFS.ReadFile("callback/" + callbackName + ".py")
	if err != nil {
		return "", fmt.Errorf("callback plugin: %w", err)
	}
	pluginDir := filepath.Join(dir, "callback_plugins")
	if err := os.Mkdir(pluginDir, 0o700); err != nil {
		return "", fmt.Errorf("callback plugin: %w", err)
	}
	if err := os.WriteFile(filepath.Join(pluginDir, callbackName+".py"), src, 0o600); err != nil {
		return "", fmt.Errorf("callback plugin: %w", err)
	}
	return pluginDir, nil
}

// event is one line of the plugin's output: a task result on a host.
type event struct {
	Host    string `json:"host"`
	Task    string `json:"task"`
	Status  string `json:"status"`
	Changed bool   `json:"changed"`
	Msg     string `json:"msg"`
	Ignored bool   `json:"ignored"`
}

// playStart is the line the plugin writes when a play starts: its name,
// its `hosts:` pattern and the hosts that pattern matched within the limit
// (nil when the plugin could not tell).
type playStart struct {
	Play    string   `json:"play"`
	Pattern []string `json:"pattern"`
	Hosts   []string `json:"hosts"`
}

// eventStream reads the plugin's lines from a pipe while the playbook runs,
// forwards them to progress and keeps them for results of a stopped run.
type eventStream struct {
	reader *os.File
	// writer is handed to ansible-playbook; the parent's copy is closed
	// once the child has started (or could not start).
	writer    *os.File
	closeOnce sync.Once
	done      chan struct{}
	events    []event
	plays     []playStart
}

func newEventStream(progress func(ports.ApplyEvent)) (*eventStream, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("event pipe: %w", err)
	}
	s := &eventStream{reader: r, writer: w, done: make(chan struct{})}
	go s.read(progress)
	return s, nil
}

func (s *eventStream) read(progress func(ports.ApplyEvent)) {
	defer close(s.done)
	sc := bufio.NewScanner(s.reader)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var line struct {
			event
			playStart
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if line.Host == "" {
			if line.playStart.Pattern != nil {
				s.plays = append(s.plays, line.playStart)
			}
			continue
		}
		ev := line.event
		s.events = append(s.events, ev)
		if progress != nil {
			progress(ports.ApplyEvent{Host: ev.Host, Task: ev.Task, Status: ev.Status})
		}
	}
}

// closeWriter closes the parent's end of the pipe; the stream ends when
// every process holding the other copies has exited.
func (s *eventStream) closeWriter() {
	s.closeOnce.Do(func() { _ = s.writer.Close() })
}

// wait returns every task result and every play start, after the stream
// ended or drainLimit passed. Call it after the playbook's process has
// been waited for.
func (s *eventStream) wait() ([]event, []playStart) {
	_ = s.reader.SetReadDeadline(time.Now().Add(drainLimit))
	<-s.done
	return s.events, s.plays
}

func (s *eventStream) close() {
	s.closeWriter()
	_ = s.reader.Close()
}
