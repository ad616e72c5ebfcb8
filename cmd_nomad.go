package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	napi "github.com/hashicorp/nomad/api"
	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/integrations/nomad"
	"github.com/rollguard/rollguard/runner"
)

func newNomadCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "nomad",
		Short: "Run rollguard as a Nomad periodic batch job",
		Long: `nomad renders and registers a periodic batch job that runs 'rollguard run' on a
schedule. The spec and playbooks are embedded in template blocks (or fetched
from --artifact); secrets (CONSUL_HTTP_TOKEN, NOMAD_TOKEN, metrics credentials)
come from the job's Nomad variable nomad/jobs/<job>, never from the job itself.
A job that can be rescheduled needs state.store: consul or nomad, so that a
rescheduled allocation resumes from the shared journal.`,
	}
	var jf jobFlags
	job := &cobra.Command{
		Use:   "job -f rollout.yaml --cron '0 3 * * *'",
		Short: "Print the job as JSON (POST it to /v1/jobs, or use 'nomad register')",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, j, err := jf.job()
			if err != nil {
				return err
			}
			data, err := nomad.JobJSON(j)
			if err != nil {
				return failed(err)
			}
			_, err = c.OutOrStdout().Write(append(data, '\n'))
			return err
		},
	}
	jf.add(job)
	var rf jobFlags
	register := &cobra.Command{
		Use:   "register -f rollout.yaml --cron '0 3 * * *' [--plan]",
		Short: "Register the job on the Nomad cluster (NOMAD_ADDR, NOMAD_TOKEN)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, j, err := rf.job()
			if err != nil {
				return err
			}
			client, err := nomad.New(nil, nil)
			if err != nil {
				return failed(err)
			}
			reg, err := nomad.Register(c.Context(), client, j, rf.plan)
			if err != nil {
				return failed(err)
			}
			w := c.OutOrStdout()
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
	file, jobID, cron, tz, driver, ver, image, binary, artifact string
	secrets                                                     []string
	killTimeout                                                 time.Duration
	noReschedule, plan                                          bool
}

func (f *jobFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&f.file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().StringVar(&f.jobID, "job-id", "", "Nomad job ID (default rollguard-<rollout name>)")
	c.Flags().StringVar(&f.cron, "cron", "", "periodic schedule, e.g. '0 3 * * *' (required)")
	c.Flags().StringVar(&f.tz, "time-zone", "UTC", "time zone of --cron")
	c.Flags().StringVar(&f.driver, "driver", "docker", "task driver: docker | exec | raw_exec")
	c.Flags().StringVar(&f.ver, "image-version", version, "rollguard image tag (docker)")
	c.Flags().StringVar(&f.image, "image", "", "image (default ghcr.io/rollguard/rollguard:<image-version>)")
	c.Flags().StringVar(&f.binary, "binary", "", "rollguard path on the client nodes (exec, raw_exec)")
	c.Flags().StringVar(&f.artifact, "artifact", "", "go-getter URL of an archive with rollout.yaml and playbooks (default: embed them)")
	c.Flags().StringSliceVar(&f.secrets, "secret", nil, "environment variable read from the job's Nomad variable (repeatable; default CONSUL_HTTP_TOKEN, NOMAD_TOKEN)")
	c.Flags().DurationVar(&f.killTimeout, "kill-timeout", 5*time.Minute, "time Nomad gives rollguard to revert after SIGTERM")
	c.Flags().BoolVar(&f.noReschedule, "no-reschedule", false, "never reschedule onto another node (allows state.store: local)")
}

// job renders the job of a spec.
func (f *jobFlags) job() (*runner.Spec, *napi.Job, error) {
	spec, _, err := loadSpec(f.file)
	if err != nil {
		return nil, nil, err
	}
	id := f.jobID
	if id == "" {
		id = "rollguard-" + spec.Name
	}
	opts := nomad.JobOptions{JobID: id, Cron: f.cron, TimeZone: f.tz, Driver: f.driver, Version: f.ver, Image: f.image, Binary: f.binary,
		ArtifactURL: f.artifact, Secrets: f.secrets, KillTimeout: f.killTimeout, NoReschedule: f.noReschedule, StateStore: spec.State.Store}
	if f.artifact == "" {
		files, err := embedFiles(spec)
		if err != nil {
			return nil, nil, badInput(err)
		}
		opts.Files = files
		opts.SpecFile = filepath.Base(spec.File)
	}
	job, err := nomad.RenderJob(opts)
	if err != nil {
		return nil, nil, badInput(err)
	}
	return spec, job, nil
}

// embedFiles collects the spec and everything it needs, relative to the
// spec's directory: the policy files and the playbooks' directories
// (templates, roles). A file outside the spec's directory cannot be
// embedded: use --artifact then.
func embedFiles(spec *runner.Spec) (map[string]string, error) {
	files := map[string]string{}
	const limit = 1 << 20
	total := 0
	add := func(path string) error {
		path, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(spec.Dir, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("%s is outside the spec's directory %s: use --artifact", path, spec.Dir)
		}
		if _, ok := files[rel]; ok {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		total += len(data)
		if total > limit {
			return fmt.Errorf("the spec's files exceed %d bytes: use --artifact", limit)
		}
		files[filepath.ToSlash(rel)] = string(data)
		return nil
	}
	if err := add(spec.File); err != nil {
		return nil, err
	}
	for _, p := range spec.Policies {
		if p.File != "" {
			if err := add(p.File); err != nil {
				return nil, err
			}
		}
	}
	dirs := map[string]bool{}
	for _, pb := range []string{spec.Apply.Playbook, spec.Revert.Playbook} {
		if pb != "" {
			dirs[filepath.Dir(pb)] = true
		}
	}
	var sorted []string
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, d := range sorted {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() || !e.Type().IsRegular() {
				return nil
			}
			return add(p)
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}
