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
	// JobID of the Nomad job. Required. Its secrets live in the variable
	// nomad/jobs/<JobID>, which the job's tasks (and the periodic
	// launches, whose parent it is) can read without a policy.
	JobID string
	// Namespace, Region: empty leaves Nomad's defaults.
	Namespace string
	Region    string
	// Datacenters the job may run in (default ["*"]).
	Datacenters []string
	// NodePool to run in (default: Nomad's, "default").
	NodePool string
	// Cron is the periodic schedule (5 or 6 fields). Required.
	Cron string
	// TimeZone of Cron (default "UTC").
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

	// Secrets are the environment variables read from the items of the
	// variable nomad/jobs/<JobID> by a template with env = true (default
	// CONSUL_HTTP_TOKEN and NOMAD_TOKEN; add metrics credentials). A
	// missing item fails the task rather than running without it.
	Secrets []string
	// Env is extra plain environment (no secrets here: it is stored in
	// the job).
	Env map[string]string

	// KillTimeout is how long Nomad waits after SIGTERM before killing the
	// task: long enough for rollguard to revert the hosts it changed
	// (default 5m).
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

// envName is what a secret may be called: it is both an environment
// variable and a template field name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ReportDir is where the job writes reports, in the allocation's shared
// data directory.
const ReportDir = "${NOMAD_ALLOC_DIR}/data/reports"

// RenderJob renders the periodic batch job for opts. It refuses options
// that cannot run safely: a local state store on a reschedulable job, a
// missing spec, an unknown driver.
func RenderJob(opts JobOptions) (*api.Job, error) {
	var errs []error
	if opts.JobID == "" {
		errs = append(errs, errors.New("job ID is required"))
	}
	if opts.Cron == "" {
		errs = append(errs, errors.New("cron schedule is required"))
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
	for name := range opts.Files {
		if clean := path.Clean(name); path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") {
			errs = append(errs, fmt.Errorf("embedded file %q is outside local/", name))
		}
	}
	switch opts.StateStore {
	case "", "local":
		if !opts.NoReschedule {
			errs = append(errs, errors.New("state.store is local, but a rescheduled allocation starts on another node without the journal and could not resume or revert: use state.store consul or nomad, or disable rescheduling"))
		}
	case "consul", "nomad":
	default:
		errs = append(errs, fmt.Errorf("unknown state store %q", opts.StateStore))
	}
	for _, n := range opts.Secrets {
		if !envName.MatchString(n) {
			errs = append(errs, fmt.Errorf("secret %q is not an environment variable name", n))
		}
	}
	var config map[string]any
	// --lock-wait: a rescheduled allocation waits for its dead
	// predecessor's lease or session to lapse, then resumes its journal.
	args := []any{"run", "-f", "${NOMAD_TASK_DIR}/" + opts.SpecFile, "--report-dir", ReportDir, "--lock-wait", "3m"}
	switch opts.Driver {
	case "", DriverDocker:
		opts.Driver = DriverDocker
		image := opts.Image
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
	if opts.Secrets == nil {
		opts.Secrets = []string{"CONSUL_HTTP_TOKEN", "NOMAD_TOKEN"}
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
	maps.Copy(env, opts.Env)
	task := &api.Task{
		Name:        "rollguard",
		Driver:      opts.Driver,
		Config:      config,
		Env:         env,
		KillTimeout: new(opts.KillTimeout),
		KillSignal:  "SIGTERM",
		Resources:   &api.Resources{CPU: new(opts.CPU), MemoryMB: new(opts.MemoryMB)},
		Templates:   []*api.Template{secretsTemplate(opts.JobID, opts.Secrets)},
	}
	if opts.ArtifactURL != "" {
		task.Artifacts = []*api.TaskArtifact{{GetterSource: new(opts.ArtifactURL), RelativeDest: new("local/")}}
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Files)) {
		task.Templates = append(task.Templates, &api.Template{
			EmbeddedTmpl: new(opts.Files[name]),
			DestPath:     new("local/" + path.Clean(name)),
			ChangeMode:   new("noop"),
			LeftDelim:    new(literalLeftDelim),
			RightDelim:   new(literalRightDelim),
		})
	}
	reschedule := &api.ReschedulePolicy{
		Attempts: new(1), Interval: new(24 * time.Hour), Delay: new(time.Minute),
		DelayFunction: new("constant"), MaxDelay: new(time.Duration(0)), Unlimited: new(false),
	}
	if opts.NoReschedule {
		reschedule.Attempts, reschedule.Delay = new(0), new(time.Duration(0))
	}
	job := &api.Job{
		ID:          new(opts.JobID),
		Name:        new(opts.JobID),
		Type:        new(api.JobTypeBatch),
		Datacenters: opts.Datacenters,
		Periodic: &api.PeriodicConfig{
			Enabled:         new(true),
			Spec:            new(opts.Cron),
			SpecType:        new(api.PeriodicSpecCron),
			ProhibitOverlap: new(true),
			TimeZone:        new(opts.TimeZone),
		},
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
			Tasks:            []*api.Task{task},
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

// secretsTemplate renders the job's secrets from its variable into the
// task's environment, in the form Nomad's documentation gives
// (NAME={{ .item }}): values must be single-line.
func secretsTemplate(jobID string, names []string) *api.Template {
	var b strings.Builder
	fmt.Fprintf(&b, "{{ with nomadVar %q }}\n", "nomad/jobs/"+jobID)
	for _, n := range names {
		fmt.Fprintf(&b, "%s={{ .%s }}\n", n, n)
	}
	b.WriteString("{{ end }}\n")
	return &api.Template{
		EmbeddedTmpl:  new(b.String()),
		DestPath:      new("secrets/rollguard.env"),
		Envvars:       new(true),
		ChangeMode:    new("noop"),
		ErrMissingKey: new(true),
	}
}

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
