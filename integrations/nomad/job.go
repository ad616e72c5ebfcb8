package nomad

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Task drivers RenderJob supports.
const (
	DriverDocker  = "docker"
	DriverExec    = "exec"
	DriverRawExec = "raw_exec"
)

// DefaultImage is the image repository of the docker driver; the tag is
// JobOptions.Version.
const DefaultImage = "ghcr.io/rollguard/rollguard"

// Template delimiters for embedded files: rollout.yaml and playbooks are
// full of {{ }} (rollguard's and Jinja's) that Nomad's template engine must
// leave alone.
const (
	literalLeftDelim  = "[[rollguard-nomad-template:"
	literalRightDelim = ":rollguard-nomad-template]]"
)

// JobOptions describe the periodic batch job that runs one rollout.
// Field comments give the default.
type JobOptions struct {
	// JobID of the Nomad job. Required. The items its task reads live in
	// the variable VariablePath(JobID), which the job's tasks (and the
	// periodic launches, whose parent it is) can read without a policy.
	JobID string
	// Namespace, Region: empty leaves Nomad's defaults.
	Namespace string
	Region    string
	// Datacenters the job may run in (default ["*"]).
	Datacenters []string
	// NodePool to run in (default: Nomad's, "default").
	NodePool string
	// Crons are the periodic schedules (5 or 6 fields each). Required.
	Crons []string
	// SingleCron writes the one schedule as the deprecated `cron`, for
	// clusters older than Nomad 1.6.2, which do not know `crons`.
	SingleCron bool
	// TimeZone of Crons (default "UTC").
	TimeZone string

	// Driver: docker (default), exec or raw_exec.
	Driver string
	// Version of rollguard: the image tag for docker. Required for docker
	// when Image is empty.
	Version string
	// Image overrides DefaultImage:Version (docker).
	Image string
	// Binary is the rollguard executable on the client nodes (exec,
	// raw_exec). Required for those drivers.
	Binary string

	// ArtifactURL is a go-getter source (an archive holding rollout.yaml
	// and the playbooks) unpacked into the task's local/ directory.
	// Exactly one of ArtifactURL and Files.
	ArtifactURL string
	// Files are embedded into local/ by template blocks, by path relative
	// to local/ ("rollout.yaml", "playbooks/site.yml"); they must include
	// SpecFile. Their content is taken literally.
	Files map[string]string
	// SpecFile is the spec's path under local/ (default "rollout.yaml").
	SpecFile string
	// Requirements is the path under local/ of a galaxy requirements file
	// among Files: a prestart task installs its collections into the
	// allocation, where the run's Ansible finds them.
	Requirements string

	// Items are what the task reads from the variable VariablePath(JobID):
	// environment variables (every ${NAME} of the spec, the Consul and
	// Nomad tokens) and secret files (a vault password file, an SSH key).
	Items []Item
	// WorkloadIdentity gives the task its workload identity as NOMAD_TOKEN
	// and the task API socket as NOMAD_ADDR (Nomad 1.7+): no Nomad token
	// is kept in the variable; an ACL policy attached to the job grants
	// what the run needs. Items must then not hold NOMAD_TOKEN.
	WorkloadIdentity bool
	// Env is extra plain environment (no secrets here: it is stored in
	// the job).
	Env map[string]string

	// KillTimeout is how long Nomad waits after SIGTERM before killing the
	// task: long enough for rollguard to revert the hosts it changed
	// (default 5m). Each client caps it at its max_kill_timeout (30s by
	// default): see KillTimeoutWarning.
	KillTimeout time.Duration
	// NoReschedule disables rescheduling onto another node (a failed
	// allocation is then only restarted in place).
	NoReschedule bool
	// StateStore is the spec's state.store: local (or empty), consul or
	// nomad. A rescheduled allocation starts on another node, without the
	// local state directory, so a local store is refused unless
	// NoReschedule is set.
	StateStore string

	// CPU (MHz) and MemoryMB of the task (defaults 500 and 512).
	CPU      int
	MemoryMB int
}

// Item is one item of the job's variable that the task reads.
type Item struct {
	// Name is the item's name; for an environment item also the
	// variable's name.
	Name string
	// File, when set, is where the item's value is written, relative to
	// the task directory ("local/.vault-pass"), mode 0600, instead of into
	// the environment.
	File string
	// Optional items may be missing (a ${NAME:-default} reference): the
	// task runs without them. A missing required item fails the task
	// before rollguard starts.
	Optional bool
	// Why says what needs it, for people ("rollout.yaml:10:17
	// metrics.bearer_token").
	Why string
}

// VariablePath is the path of the variable a job's tasks read without an
// ACL policy: nomad/jobs/<job>.
func VariablePath(jobID string) string { return "nomad/jobs/" + jobID }

// Required returns the names of the items a task cannot start without.
func Required(items []Item) []string {
	var out []string
	for _, it := range items {
		if !it.Optional {
			out = append(out, it.Name)
		}
	}
	return out
}

// envName is what an item may be called: it is both an environment
// variable and a template field name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ReportDir is where the job writes reports, in the allocation's shared
// data directory.
const ReportDir = "${NOMAD_ALLOC_DIR}/data/reports"

// CollectionsDir is where the prestart task installs the collections of
// a galaxy requirements file, in the allocation's shared directory.
const CollectionsDir = "${NOMAD_ALLOC_DIR}/ansible/collections"

// TaskAPIAddr is the task API's socket, reachable with the workload
// identity from any driver (Nomad 1.5+).
const TaskAPIAddr = "unix://${NOMAD_SECRETS_DIR}/api.sock"

// RenderJob renders the periodic batch job for opts. It refuses options
// that cannot run safely: a local state store on a reschedulable job, a
// missing spec, an unknown driver. Every problem is reported at once.
func RenderJob(opts JobOptions) (*api.Job, error) {
	var errs []error
	if opts.JobID == "" {
		errs = append(errs, errors.New("job ID is required"))
	}
	if len(opts.Crons) == 0 {
		errs = append(errs, errors.New("cron schedule is required"))
	}
	if opts.SingleCron && len(opts.Crons) > 1 {
		errs = append(errs, fmt.Errorf("%d schedules need crons (Nomad 1.6.2+); cron holds one", len(opts.Crons)))
	}
	if opts.SpecFile == "" {
		opts.SpecFile = "rollout.yaml"
	}
	switch {
	case opts.ArtifactURL != "" && len(opts.Files) > 0:
		errs = append(errs, errors.New("give either an artifact URL or embedded files, not both"))
	case opts.ArtifactURL == "" && len(opts.Files) == 0:
		errs = append(errs, errors.New("an artifact URL or embedded files (the spec and its playbooks) are required"))
	case len(opts.Files) > 0 && opts.Files[opts.SpecFile] == "":
		errs = append(errs, fmt.Errorf("embedded files lack the spec %q", opts.SpecFile))
	}
	if opts.Requirements != "" && opts.Files[opts.Requirements] == "" {
		errs = append(errs, fmt.Errorf("embedded files lack the galaxy requirements %q", opts.Requirements))
	}
	for name := range opts.Files {
		if !insideLocal(name) {
			errs = append(errs, fmt.Errorf("embedded file %q is outside local/", name))
		}
	}
	switch opts.StateStore {
	case "", "local":
		if !opts.NoReschedule {
			errs = append(errs, errors.New("state.store is local, but a rescheduled allocation starts on another node without the journal and could not resume or revert: use state.store consul or nomad, or disable rescheduling (--no-reschedule)"))
		}
	case "consul", "nomad":
	default:
		errs = append(errs, fmt.Errorf("unknown state store %q", opts.StateStore))
	}
	seen := map[string]bool{}
	for _, it := range opts.Items {
		switch {
		case !envName.MatchString(it.Name):
			errs = append(errs, fmt.Errorf("variable item %q is not an environment variable name", it.Name))
		case seen[it.Name]:
			errs = append(errs, fmt.Errorf("variable item %q is given twice", it.Name))
		case it.File != "" && !insideLocal(strings.TrimPrefix(it.File, "local/")):
			errs = append(errs, fmt.Errorf("variable item %q: file %q is outside local/", it.Name, it.File))
		case it.Name == "NOMAD_TOKEN" && opts.WorkloadIdentity:
			errs = append(errs, errors.New("with workload identity the task's NOMAD_TOKEN is its identity: the variable must not provide one"))
		}
		seen[it.Name] = true
	}
	var config map[string]any
	// --lock-wait: a rescheduled allocation waits for its dead
	// predecessor's lease or session to lapse, then resumes its journal.
	args := []any{"run", "-f", "${NOMAD_TASK_DIR}/" + opts.SpecFile, "--report-dir", ReportDir, "--lock-wait", "3m"}
	var image string
	switch opts.Driver {
	case "", DriverDocker:
		opts.Driver = DriverDocker
		image = opts.Image
		if image == "" {
			if opts.Version == "" {
				errs = append(errs, errors.New("docker driver: a version (image tag) or an image is required"))
			}
			image = DefaultImage + ":" + opts.Version
		}
		config = map[string]any{"image": image, "args": args}
	case DriverExec, DriverRawExec:
		if opts.Binary == "" {
			errs = append(errs, fmt.Errorf("%s driver: the rollguard binary path is required", opts.Driver))
		}
		config = map[string]any{"command": opts.Binary, "args": args}
	default:
		errs = append(errs, fmt.Errorf("unknown driver %q (docker, exec, raw_exec)", opts.Driver))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("nomad job %q: %w", opts.JobID, err)
	}

	if len(opts.Datacenters) == 0 {
		opts.Datacenters = []string{"*"}
	}
	if opts.TimeZone == "" {
		opts.TimeZone = "UTC"
	}
	if opts.KillTimeout == 0 {
		opts.KillTimeout = 5 * time.Minute
	}
	if opts.CPU == 0 {
		opts.CPU = 500
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 512
	}

	env := map[string]string{NodeNameEnv: "${node.unique.name}"}
	if opts.WorkloadIdentity {
		env["NOMAD_ADDR"] = TaskAPIAddr
	}
	if opts.Requirements != "" {
		// The collections the prestart task installed first, then
		// Ansible's defaults.
		env["ANSIBLE_COLLECTIONS_PATH"] = CollectionsDir + ":~/.ansible/collections:/usr/share/ansible/collections"
	}
	maps.Copy(env, opts.Env)
	task := &api.Task{
		Name:        "rollguard",
		Driver:      opts.Driver,
		Config:      config,
		Env:         env,
		KillTimeout: new(opts.KillTimeout),
		KillSignal:  "SIGTERM",
		Resources:   &api.Resources{CPU: new(opts.CPU), MemoryMB: new(opts.MemoryMB)},
	}
	if opts.WorkloadIdentity {
		task.Identity = &api.WorkloadIdentity{Env: true}
	}
	if t := envTemplate(opts.JobID, opts.Items); t != nil {
		task.Templates = append(task.Templates, t)
	}
	task.Templates = append(task.Templates, fileTemplates(opts.JobID, opts.Items)...)
	if opts.ArtifactURL != "" {
		task.Artifacts = []*api.TaskArtifact{{GetterSource: new(opts.ArtifactURL), RelativeDest: new("local/")}}
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Files)) {
		task.Templates = append(task.Templates, literalTemplate("local/"+path.Clean(name), opts.Files[name]))
	}
	tasks := []*api.Task{task}
	if opts.Requirements != "" {
		tasks = append([]*api.Task{collectionsTask(opts, image, opts.Files[opts.Requirements])}, tasks...)
	}
	reschedule := &api.ReschedulePolicy{
		Attempts: new(1), Interval: new(24 * time.Hour), Delay: new(time.Minute),
		DelayFunction: new("constant"), MaxDelay: new(time.Duration(0)), Unlimited: new(false),
	}
	if opts.NoReschedule {
		reschedule.Attempts, reschedule.Delay = new(0), new(time.Duration(0))
	}
	periodic := &api.PeriodicConfig{
		Enabled:         new(true),
		Specs:           opts.Crons,
		SpecType:        new(api.PeriodicSpecCron),
		ProhibitOverlap: new(true),
		TimeZone:        new(opts.TimeZone),
	}
	if opts.SingleCron {
		periodic.Spec, periodic.Specs = new(opts.Crons[0]), nil
	}
	job := &api.Job{
		ID:          new(opts.JobID),
		Name:        new(opts.JobID),
		Type:        new(api.JobTypeBatch),
		Datacenters: opts.Datacenters,
		Periodic:    periodic,
		TaskGroups: []*api.TaskGroup{{
			Name:  new("rollguard"),
			Count: new(1),
			// A restart resumes the run from its journal in the same
			// allocation; attempts are bounded so a broken spec does not
			// loop all day.
			RestartPolicy: &api.RestartPolicy{
				Attempts: new(2), Interval: new(time.Hour), Delay: new(30 * time.Second), Mode: new("fail"),
			},
			ReschedulePolicy: reschedule,
			Tasks:            tasks,
		}},
		Meta: map[string]string{"rollguard_version": opts.Version},
	}
	if opts.Namespace != "" {
		job.Namespace = new(opts.Namespace)
	}
	if opts.Region != "" {
		job.Region = new(opts.Region)
	}
	if opts.NodePool != "" {
		job.NodePool = new(opts.NodePool)
	}
	return job, nil
}

func insideLocal(name string) bool {
	clean := path.Clean(name)
	return !path.IsAbs(name) && clean != ".." && !strings.HasPrefix(clean, "../")
}

// literalTemplate embeds data verbatim at dest, with delimiters that leave
// the {{ }} of specs and playbooks alone.
func literalTemplate(dest, data string) *api.Template {
	return &api.Template{
		EmbeddedTmpl: new(data),
		DestPath:     new(dest),
		ChangeMode:   new("noop"),
		LeftDelim:    new(literalLeftDelim),
		RightDelim:   new(literalRightDelim),
	}
}

// envTemplate renders the environment items of the job's variable into
// the task's environment. Values are JSON-quoted, which Nomad's env file
// parser (go-envparse) reads back exactly, whatever they hold. A missing
// required item fails the template, and so the task, before rollguard
// starts; a missing optional one is left unset.
func envTemplate(jobID string, items []Item) *api.Template {
	var b strings.Builder
	n := 0
	fmt.Fprintf(&b, "{{ with nomadVar %q }}\n", VariablePath(jobID))
	for _, it := range items {
		if it.File != "" {
			continue
		}
		n++
		if it.Optional {
			fmt.Fprintf(&b, "{{ with (index . %q).Value }}%s={{ . | toJSON }}\n{{ end }}", it.Name, it.Name)
			continue
		}
		fmt.Fprintf(&b, "%s={{ .%s | toJSON }}\n", it.Name, it.Name)
	}
	b.WriteString("{{ end }}\n")
	if n == 0 {
		return nil
	}
	return &api.Template{
		EmbeddedTmpl:  new(b.String()),
		DestPath:      new("secrets/rollguard.env"),
		Envvars:       new(true),
		ChangeMode:    new("noop"),
		ErrMissingKey: new(true),
	}
}

// fileTemplates write the file items of the job's variable where the run
// expects them, readable by the task's user alone.
func fileTemplates(jobID string, items []Item) []*api.Template {
	var out []*api.Template
	for _, it := range items {
		if it.File == "" {
			continue
		}
		out = append(out, &api.Template{
			EmbeddedTmpl:  new(fmt.Sprintf("{{ with nomadVar %q }}{{ .%s }}{{ end }}", VariablePath(jobID), it.Name)),
			DestPath:      new(it.File),
			Perms:         new("0600"),
			ChangeMode:    new("noop"),
			ErrMissingKey: new(true),
		})
	}
	return out
}

// collectionsTask is the prestart task that installs the collections of
// the galaxy requirements file into the allocation, for the run's Ansible.
func collectionsTask(opts JobOptions, image, requirements string) *api.Task {
	args := []any{"collection", "install", "-r", "${NOMAD_TASK_DIR}/requirements.yml", "-p", CollectionsDir}
	config := map[string]any{"command": "ansible-galaxy", "args": args}
	if opts.Driver == DriverDocker {
		config = map[string]any{"image": image, "entrypoint": []any{"ansible-galaxy"}, "args": args}
	}
	return &api.Task{
		Name:      "collections",
		Driver:    opts.Driver,
		Config:    config,
		Lifecycle: &api.TaskLifecycle{Hook: api.TaskLifecycleHookPrestart, Sidecar: false},
		Templates: []*api.Template{literalTemplate("local/requirements.yml", requirements)},
		Resources: &api.Resources{CPU: new(200), MemoryMB: new(256)},
	}
}

// KillTimeoutWarning says what caps kill_timeout: each Nomad client's
// max_kill_timeout (30s unless its configuration says otherwise), which
// no Nomad API reports for the clients a job may land on. "" when kill is
// within the default.
func KillTimeoutWarning(kill time.Duration) string {
	if kill <= DefaultMaxKillTimeout {
		return ""
	}
	return fmt.Sprintf("kill_timeout is %s, but each Nomad client caps it at its max_kill_timeout (%s unless the client's configuration raises it; no Nomad API reports it for the clients this job may run on): set client { max_kill_timeout = %q } on them, or a stopped job gets %s to revert what it changed",
		kill, DefaultMaxKillTimeout, kill.String(), DefaultMaxKillTimeout)
}

// DefaultMaxKillTimeout is a Nomad client's max_kill_timeout when its
// configuration does not set one.
const DefaultMaxKillTimeout = 30 * time.Second

// jobWrapper is the body of PUT /v1/jobs and of `nomad job run -json`.
type jobWrapper struct {
	Job *api.Job
}

// JobJSON encodes job as {"Job": {...}}, the form the HTTP API registers
// and `nomad job run -json` reads.
func JobJSON(job *api.Job) ([]byte, error) {
	b, err := json.MarshalIndent(jobWrapper{Job: job}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode nomad job: %w", err)
	}
	return append(b, '\n'), nil
}

// Registration is the outcome of Register.
type Registration struct {
	// Plan is the dry run's answer (its Diff shows what changes), when
	// Register planned first.
	Plan *api.JobPlanResponse
	// EvalID, JobModifyIndex and Warnings come from the registration.
	EvalID         string
	JobModifyIndex uint64
	Warnings       string
}

// Register submits job. With plan, it first asks Nomad for a plan with a
// diff, then registers only if the job has not changed since the plan
// (check-index, as `nomad job run -check-index`). Cancelling ctx aborts
// the request in flight.
func Register(ctx context.Context, c *Client, job *api.Job, plan bool) (*Registration, error) {
	id := ""
	if job.ID != nil {
		id = *job.ID
	}
	var reg Registration
	opts := &api.RegisterOptions{}
	if plan {
		p, _, err := c.api.Jobs().Plan(job, true, write(ctx, nil))
		if err != nil {
			return nil, fmt.Errorf("nomad job %q: plan: %w", id, err)
		}
		reg.Plan = p
		opts.EnforceIndex, opts.ModifyIndex = true, p.JobModifyIndex
	}
	resp, _, err := c.api.Jobs().RegisterOpts(job, opts, write(ctx, nil))
	if err != nil {
		return &reg, fmt.Errorf("nomad job %q: register: %w", id, err)
	}
	reg.EvalID, reg.JobModifyIndex, reg.Warnings = resp.EvalID, resp.JobModifyIndex, resp.Warnings
	c.logger.Info("nomad job registered", "job", id, "job_modify_index", resp.JobModifyIndex)
	return &reg, nil
}

// FormatDiff renders a plan's diff as indented lines ("+ added",
// "- deleted", "~ edited: old => new"); empty when nothing changes.
func FormatDiff(d *api.JobDiff) string {
	if d == nil || d.Type == "None" {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s job %q\n", mark(d.Type), d.ID)
	writeFields(&b, "  ", d.Fields)
	writeObjects(&b, "  ", d.Objects)
	for _, tg := range d.TaskGroups {
		if tg.Type == "None" {
			continue
		}
		fmt.Fprintf(&b, "  %s group %q\n", mark(tg.Type), tg.Name)
		writeFields(&b, "    ", tg.Fields)
		writeObjects(&b, "    ", tg.Objects)
		for _, t := range tg.Tasks {
			if t.Type == "None" {
				continue
			}
			fmt.Fprintf(&b, "    %s task %q\n", mark(t.Type), t.Name)
			writeFields(&b, "      ", t.Fields)
			writeObjects(&b, "      ", t.Objects)
		}
	}
	return b.String()
}

func mark(typ string) string {
	switch typ {
	case "Added":
		return "+"
	case "Deleted":
		return "-"
	case "Edited":
		return "~"
	}
	return " "
}

func writeFields(b *strings.Builder, indent string, fields []*api.FieldDiff) {
	for _, f := range fields {
		switch f.Type {
		case "None":
		case "Added":
			fmt.Fprintf(b, "%s+ %s: %q\n", indent, f.Name, f.New)
		case "Deleted":
			fmt.Fprintf(b, "%s- %s: %q\n", indent, f.Name, f.Old)
		default:
			fmt.Fprintf(b, "%s~ %s: %q => %q\n", indent, f.Name, f.Old, f.New)
		}
	}
}

func writeObjects(b *strings.Builder, indent string, objs []*api.ObjectDiff) {
	for _, o := range objs {
		if o.Type == "None" {
			continue
		}
		fmt.Fprintf(b, "%s%s %s\n", indent, mark(o.Type), o.Name)
		writeFields(b, indent+"  ", o.Fields)
		writeObjects(b, indent+"  ", o.Objects)
	}
}
