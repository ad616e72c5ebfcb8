package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	napi "github.com/hashicorp/nomad/api"
	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/integrations/bundle"
	"github.com/rollguard/rollguard/integrations/nomad"
	"github.com/rollguard/rollguard/runner"
)

func newNomadCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "nomad",
		Short: "Run rollguard as a Nomad periodic batch job",
		Long: `nomad renders and registers a periodic batch job that runs 'rollguard run' on a
schedule. The job embeds what the run needs, resolved from the spec (the spec,
its policy files, the playbooks and their roles, task and vars files,
templates, the inventory, ansible.cfg, a galaxy requirements file) and never
hidden files, .git, state directories, keys or vault password files. Every
${VAR} of the spec, the Consul and Nomad tokens and the secret files it names
(vault password file, SSH key) come from the job's Nomad variable
nomad/jobs/<job>: rendering lists the items it must hold, and needs none of
their values. A job that can be rescheduled needs state.store: consul or
nomad, so that a rescheduled allocation resumes from the shared journal.`,
		Example: `  rollguard nomad job -f rollout.yaml --cron '0 3 * * *' > job.json
  NOMAD_ADDR=https://nomad:4646 rollguard nomad register -f rollout.yaml --cron '0 3 * * *' --plan`,
	}
	var jf jobFlags
	job := &cobra.Command{
		Use:   "job -f rollout.yaml --cron '0 3 * * *'",
		Short: "Print the job as JSON (POST it to /v1/jobs, or use 'nomad register'); what it embeds and needs goes to stderr",
		Example: `  rollguard nomad job -f rollout.yaml --cron '0 3 * * *' > job.json
  curl -X POST --data @job.json -H "X-Nomad-Token: $NOMAD_TOKEN" "$NOMAD_ADDR/v1/jobs"`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			r, err := jf.job(nil)
			if err != nil {
				return err
			}
			data, err := nomad.JobJSON(r.job)
			if err != nil {
				return failed(err)
			}
			fmt.Fprint(c.ErrOrStderr(), r.report)
			_, err = c.OutOrStdout().Write(append(data, '\n'))
			return err
		},
	}
	jf.add(job)
	var rf jobFlags
	register := &cobra.Command{
		Use:   "register -f rollout.yaml --cron '0 3 * * *' [--plan]",
		Short: "Register the job on the Nomad cluster (NOMAD_ADDR, NOMAD_TOKEN), once its variable holds every item",
		Example: `  NOMAD_ADDR=https://nomad:4646 NOMAD_TOKEN=... rollguard nomad register -f rollout.yaml --cron '0 3 * * *'
  rollguard nomad register -f rollout.yaml --cron '0 3 * * *' --plan`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			client, err := nomad.New(nil, nil)
			if err != nil {
				return failed(err)
			}
			cluster, err := nomad.ReadCluster(c.Context(), client)
			if err != nil {
				return failed(err)
			}
			r, err := rf.job(&cluster)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			fmt.Fprint(w, r.report)
			if !cluster.Readable {
				fmt.Fprintln(w, "note: the token may not list nodes (403): the clients' Nomad versions are unknown, so the job uses crons (1.6.2+) and, with --auth auto, a token")
			}
			path := nomad.VariablePath(*r.job.ID)
			required := nomad.Required(r.items)
			check, err := nomad.CheckVariable(c.Context(), client, path, "", required)
			switch {
			case err != nil:
				return failed(err)
			case !check.Readable:
				fmt.Fprintf(w, "cannot check the variable %s: the token may not read it (403); make sure it holds %s\n", path, strings.Join(required, ", "))
			case len(check.Missing) > 0:
				return failed(fmt.Errorf("the variable %s lacks %s: every launch would fail before rollguard starts; put them (see above), then register again; nothing was registered",
					path, strings.Join(check.Missing, ", ")))
			default:
				fmt.Fprintf(w, "the variable %s holds the %d items the job needs\n", path, len(required))
			}
			reg, err := nomad.Register(c.Context(), client, r.job, rf.plan)
			if err != nil {
				return failed(err)
			}
			if reg.Plan != nil && reg.Plan.Diff != nil {
				fmt.Fprintln(w, nomad.FormatDiff(reg.Plan.Diff))
			}
			fmt.Fprintf(w, "registered: evaluation %s, job modify index %d\n", reg.EvalID, reg.JobModifyIndex)
			if reg.Warnings != "" {
				fmt.Fprintf(w, "warnings: %s\n", reg.Warnings)
			}
			return nil
		},
	}
	rf.add(register)
	register.Flags().BoolVar(&rf.plan, "plan", false, "show Nomad's plan (diff) first, and register only if the job did not change since")
	root.AddCommand(job, register)
	return root
}

// jobFlags are the options of `nomad job` and `nomad register`.
type jobFlags struct {
	file, jobID, tz, driver, ver, image, binary, artifact, auth string
	crons, secrets                                              []string
	env                                                         map[string]string
	killTimeout                                                 time.Duration
	noReschedule, plan                                          bool
}

// Authentication of the job's task to the Nomad API.
const (
	authAuto     = "auto"
	authToken    = "token"
	authIdentity = "identity"
)

func (f *jobFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&f.file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().StringVar(&f.jobID, "job-id", "", "Nomad job ID (default rollguard-<rollout name>)")
	c.Flags().StringArrayVar(&f.crons, "cron", nil, "periodic schedule, e.g. '0 3 * * *' (required; repeatable: the job's crons)")
	c.Flags().StringVar(&f.tz, "time-zone", "UTC", "time zone of --cron")
	c.Flags().StringVar(&f.driver, "driver", "docker", "task driver: docker | exec | raw_exec")
	c.Flags().StringVar(&f.ver, "image-version", strings.ReplaceAll(versionString(), "+", "-"), "rollguard image tag (docker; default this binary's version)")
	c.Flags().StringVar(&f.image, "image", "", "image (default ghcr.io/rollguard/rollguard:<image-version>)")
	c.Flags().StringVar(&f.binary, "binary", "", "rollguard path on the client nodes (exec, raw_exec)")
	c.Flags().StringVar(&f.artifact, "artifact", "", "go-getter URL of an archive with rollout.yaml and playbooks (default: embed them)")
	c.Flags().StringSliceVar(&f.secrets, "secret", nil, "one more environment variable read from the job's Nomad variable (repeatable; every ${VAR} of the spec is read already)")
	c.Flags().StringToStringVar(&f.env, "env", nil, "plain environment stored in the job, e.g. NOMAD_ADDR=https://nomad.example.com:4646 (repeatable; never a secret)")
	c.Flags().StringVar(&f.auth, "auth", authAuto, "how the task calls the Nomad API: token (NOMAD_TOKEN in the variable) | identity (workload identity, Nomad 1.7+) | auto (register: identity when every client runs 1.7+; job: token)")
	c.Flags().DurationVar(&f.killTimeout, "kill-timeout", 5*time.Minute, "time Nomad gives rollguard to revert after SIGTERM (capped by each client's max_kill_timeout, 30s by default)")
	c.Flags().BoolVar(&f.noReschedule, "no-reschedule", false, "never reschedule onto another node (allows state.store: local)")
}

// rendered is a job and what a person must know about it.
type rendered struct {
	job    *napi.Job
	items  []nomad.Item
	report string
}

// job renders the job of a spec, with the cluster's facts when known (nil
// offline). The spec is loaded without any environment: no value of a
// ${VAR} can reach the job, and rendering works with none set.
func (f *jobFlags) job(cluster *nomad.Cluster) (*rendered, error) {
	if f.file == "" {
		return nil, badInput(fmt.Errorf("no spec given: use -f rollout.yaml"))
	}
	spec, _, err := runner.LoadAllowUnset(f.file, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, badInput(err)
	}
	id := f.jobID
	if id == "" {
		id = "rollguard-" + spec.Name
	}
	var notes []string
	needs := nomad.Needs{Extra: f.secrets}
	for _, r := range spec.Env {
		needs.Env = append(needs.Env, nomad.EnvRef{Name: r.Name, HasDefault: r.HasDefault,
			Where: fmt.Sprintf("%s:%d:%d %s", filepath.Base(r.File), r.Line, r.Col, r.Key)})
	}
	switch {
	case spec.State.Store == "consul":
		needs.Consul = "state.store: consul"
	case spec.Targets.Consul != nil:
		needs.Consul = "targets.consul"
	}
	switch {
	case spec.State.Store == "nomad":
		needs.Nomad = "state.store: nomad"
	case spec.Targets.Nomad != nil:
		needs.Nomad = "targets.nomad"
	}
	identity := f.auth == authIdentity
	switch f.auth {
	case authAuto:
		// Where the run calls Nomad and every client offers it.
		identity = needs.Nomad != "" && cluster != nil && cluster.Nodes > 0 && cluster.Supports(nomad.VersionIdentity)
	case authToken, authIdentity:
	default:
		return nil, badInput(fmt.Errorf("--auth %q: want token, identity or auto", f.auth))
	}
	if identity && cluster != nil && !cluster.Supports(nomad.VersionIdentity) {
		return nil, badInput(fmt.Errorf("--auth identity: node %s runs Nomad %s; workload identity for the Nomad API needs %s on every client: use --auth token", cluster.OldestNode, cluster.Oldest, nomad.VersionIdentity))
	}
	opts := nomad.JobOptions{JobID: id, Crons: f.crons, TimeZone: f.tz, Driver: f.driver, Version: f.ver, Image: f.image, Binary: f.binary,
		ArtifactURL: f.artifact, KillTimeout: f.killTimeout, NoReschedule: f.noReschedule, StateStore: spec.State.Store,
		WorkloadIdentity: identity, Env: f.env}
	if cluster != nil && !cluster.Supports(nomad.VersionCrons) {
		// RenderJob refuses more than one schedule then.
		opts.SingleCron = true
		notes = append(notes, fmt.Sprintf("node %s runs Nomad %s, which does not know crons (%s+): the schedule is written as cron", cluster.OldestNode, cluster.Oldest, nomad.VersionCrons))
	}
	var b *bundle.Bundle
	if f.artifact == "" {
		src := bundle.Sources{Spec: spec.File, Dir: spec.Dir, ApplyPlaybook: spec.Apply.Playbook, RevertPlaybook: spec.Revert.Playbook,
			Inventory: spec.Targets.Inventory, VaultPasswordFile: spec.Apply.VaultPasswordFile, StateDir: stateDir(spec)}
		if abs, err := filepath.Abs(spec.File); err == nil {
			src.Spec = abs
		}
		for _, p := range spec.Policies {
			if p.File != "" {
				src.PolicyFiles = append(src.PolicyFiles, resolveSpecPath(spec, p.File))
			}
		}
		for _, t := range spec.Targets.Static {
			src.HostVars = append(src.HostVars, t.Vars)
		}
		if b, err = bundle.Resolve(src); err != nil {
			return nil, badInput(fmt.Errorf("%s: the job cannot embed the rollout: %w", spec.File, err))
		}
		opts.Files = map[string]string{}
		for _, file := range b.Files {
			opts.Files[file.Path] = string(file.Data)
		}
		opts.SpecFile, opts.Requirements = b.Spec, b.Requirements
		for _, s := range b.Secrets {
			needs.Files = append(needs.Files, nomad.SecretFile{Item: s.Item, Path: s.Path, Why: s.Why})
		}
		notes = append(notes, b.Notes...)
	}
	opts.Items = nomad.Items(needs, identity, f.env)
	job, err := nomad.RenderJob(opts)
	if err != nil {
		return nil, badInput(err)
	}
	if needs.Nomad != "" && !identity {
		notes = append(notes, fmt.Sprintf("auth: the task calls Nomad (%s) with the NOMAD_TOKEN of the variable; when every client runs Nomad %s+, --auth identity uses its workload identity instead", needs.Nomad, nomad.VersionIdentity))
	}
	if needs.Nomad != "" && !identity && f.env["NOMAD_ADDR"] == "" {
		notes = append(notes, "the job sets no NOMAD_ADDR: the task calls http://127.0.0.1:4646, which a docker task in bridge networking cannot reach; pass --env NOMAD_ADDR=...")
	}
	if needs.Consul != "" && f.env["CONSUL_HTTP_ADDR"] == "" {
		notes = append(notes, "the job sets no CONSUL_HTTP_ADDR: the task calls 127.0.0.1:8500, which a docker task in bridge networking cannot reach; pass --env CONSUL_HTTP_ADDR=...")
	}
	return &rendered{job: job, items: opts.Items, report: jobReport(id, b, opts, notes)}, nil
}

// resolveSpecPath is p relative to the spec's directory, as the loader
// resolves it.
func resolveSpecPath(spec *runner.Spec, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(spec.Dir, p)
}

// jobReport says what the job embeds and leaves out, what its variable
// must hold, and what to check on the cluster.
func jobReport(id string, b *bundle.Bundle, opts nomad.JobOptions, notes []string) string {
	var w strings.Builder
	if b != nil {
		fmt.Fprintf(&w, "job %s embeds %d files under local/ (%s; at most %s a file, %s in all):\n",
			id, len(b.Files), bundle.Size(b.Total()), bundle.Size(bundle.MaxFileSize), bundle.Size(bundle.MaxTotalSize))
		for _, file := range b.Files {
			fmt.Fprintf(&w, "  %-40s %8s  %s\n", file.Path, bundle.Size(len(file.Data)), file.Why)
		}
		if len(b.Skipped) > 0 {
			w.WriteString("left out:\n")
			for _, s := range b.Skipped {
				fmt.Fprintf(&w, "  %-40s %s\n", s.Path, s.Reason)
			}
		}
	}
	w.WriteString(nomad.FormatItems(nomad.VariablePath(id), opts.Items, func(p string) string {
		if b == nil {
			return p
		}
		if rel, err := filepath.Rel(".", filepath.Join(b.Root, p)); err == nil {
			return rel
		}
		return p
	}))
	for _, n := range notes {
		fmt.Fprintf(&w, "note: %s\n", n)
	}
	if k := nomad.KillTimeoutWarning(opts.KillTimeout); k != "" {
		fmt.Fprintf(&w, "warning: %s\n", k)
	}
	return w.String()
}
