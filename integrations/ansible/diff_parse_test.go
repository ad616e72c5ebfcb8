package ansible

import (
	"reflect"
	"testing"

	"github.com/rollguard/rollguard/ports"
)

// The forms of "diff" that modules give in a check run: copy and template
// a list with the destination as before_header, lineinfile a dict with
// "<path> (content)", file a dict of attributes with the path, a copy with
// remote_src no diff but dest, a loop one result per item; a task that
// changed nothing is not listed.
func TestTaskChangesForms(t *testing.T) {
	doc := `{"plays":[{"tasks":[
	 {"task":{"name":"template"},"hosts":{"h1":{"changed":true,"diff":[{"before":"a\nb\nc\n","after":"a\nB\nc\nd\n","before_header":"/etc/app.conf","after_header":"/tmp/x"}]}}},
	 {"task":{"name":"lineinfile"},"hosts":{"h1":{"changed":true,"path":"/etc/hosts","diff":[{"before":"x\n","after":"x\ny\n","before_header":"/etc/hosts (content)"},{"before_header":"/etc/hosts (file attributes)","before":{"path":"/etc/hosts"},"after":{"path":"/etc/hosts"}}]}}},
	 {"task":{"name":"file mode"},"hosts":{"h1":{"changed":true,"path":"/srv/data","diff":{"before":{"path":"/srv/data","mode":"0755"},"after":{"path":"/srv/data","mode":"0700"}}}}},
	 {"task":{"name":"backup"},"hosts":{"h1":{"changed":true,"dest":"/etc/app.conf.prev"}}},
	 {"task":{"name":"loop"},"hosts":{"h1":{"changed":true,"results":[
	   {"changed":true,"diff":[{"before":"","after":"1\n2\n","before_header":"/etc/a"}]},
	   {"changed":false,"diff":[{"before":"","after":"1\n","before_header":"/etc/b"}]}]}}},
	 {"task":{"name":"unchanged"},"hosts":{"h1":{"changed":false,"dest":"/etc/c"}}},
	 {"task":{"name":"command"},"hosts":{"h1":{"changed":true}}}
	]}]}`
	got := taskChanges([]byte(doc))["h1"]
	want := []ports.TaskChange{
		{Task: "template", Files: []ports.FileChange{{Path: "/etc/app.conf", Added: 2, Removed: 1}}},
		{Task: "lineinfile", Files: []ports.FileChange{{Path: "/etc/hosts", Added: 1}}},
		{Task: "file mode", Files: []ports.FileChange{{Path: "/srv/data"}}},
		{Task: "backup", Files: []ports.FileChange{{Path: "/etc/app.conf.prev"}}},
		{Task: "loop", Files: []ports.FileChange{{Path: "/etc/a", Added: 2}}},
		{Task: "command"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("taskChanges\n got %+v\nwant %+v", got, want)
	}
	if got := taskChanges([]byte("not json")); got != nil {
		t.Errorf("taskChanges of no document: %v", got)
	}
}
