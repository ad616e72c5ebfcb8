package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/integrations/localstate"
	"github.com/rollguard/rollguard/integrations/snapshot"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/runner"
)

// stateBackend is where a rollout keeps its journal and history, and
// takes its lock.
type stateBackend struct {
	store  ports.StateStore
	locker ports.Locker
	// where names the backend for messages.
	where string
}

// openState opens the spec's state store (state.store).
func openState(ctx context.Context, spec *runner.Spec, log *slog.Logger) (*stateBackend, error) {
	switch spec.State.Store {
	case "", "local":
		dir := filepath.Join(stateDir(spec), spec.Name)
		store, err := localstate.New(dir)
		if err != nil {
			return nil, fmt.Errorf("state directory %s: %w", dir, err)
		}
		locker, err := localstate.NewLocker(stateDir(spec), log)
		if err != nil {
			return nil, fmt.Errorf("state directory %s: %w", stateDir(spec), err)
		}
		return &stateBackend{store: store, locker: locker, where: dir}, nil
	}
	return openSharedState(ctx, spec, log)
}

// newSnapshotter builds the snapshot hooks of revert.snapshot (nil when
// none are configured).
func newSnapshotter(spec *runner.Spec, log *slog.Logger) (ports.Snapshotter, bool, error) {
	sn := spec.Revert.Snapshot
	if sn == nil {
		return nil, false, nil
	}
	s, err := snapshot.New(snapshot.Config{Create: sn.Create, Restore: sn.Restore, Delete: sn.Delete,
		Concurrency: sn.Concurrency, Timeout: sn.Timeout.D(), Dir: spec.Dir, Logger: log})
	if err != nil {
		return nil, false, fmt.Errorf("revert.snapshot: %w", err)
	}
	return s, sn.OnFailure != "continue", nil
}

// acquireLock takes the rollout's lock or says who holds it. With wait >
// 0 it retries every 2 s for that long: after a crash, a shared lock
// (Consul session, Nomad lease) stays held until it lapses, and the
// restarted run should take it over then rather than fail.
func acquireLock(ctx context.Context, st *stateBackend, spec *runner.Spec, runID string, wait time.Duration, say func(string)) (ports.Lease, error) {
	deadline := time.Now().Add(wait)
	for {
		lease, err := acquireOnce(ctx, st, spec, runID)
		var le *ports.LockedError
		if err == nil || !errors.As(err, &le) || time.Now().After(deadline) {
			return lease, err
		}
		say(fmt.Sprintf("waiting up to %s for the lock: %v", time.Until(deadline).Round(time.Second), le))
		if err := (ports.WallClock{}).Sleep(ctx, 2*time.Second); err != nil {
			return nil, err
		}
	}
}

func acquireOnce(ctx context.Context, st *stateBackend, spec *runner.Spec, runID string) (ports.Lease, error) {
	host, _ := os.Hostname()
	holder := ports.Holder{Host: host, PID: os.Getpid(), RunID: runID, Since: time.Now().UTC()}
	if alloc := os.Getenv("NOMAD_ALLOC_ID"); alloc != "" {
		holder.Where = "nomad allocation " + alloc
	} else if url := os.Getenv("GITHUB_RUN_ID"); url != "" {
		holder.Where = "github run " + url
	}
	lease, err := st.locker.Acquire(ctx, spec.Name, holder)
	var le *ports.LockedError
	if errors.As(err, &le) {
		return nil, fmt.Errorf("another run holds the lock: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("lock rollout %q: %w", spec.Name, err)
	}
	return lease, nil
}

func newHistoryCmd() *cobra.Command {
	var file, host string
	var asJSON bool
	c := &cobra.Command{
		Use:   "history -f rollout.yaml [--host H] [--json]",
		Short: "Show the versions applied to each host, the known-good ones marked",
		Long: `history reads the rollout's state store (state.store: the local state
directory, Consul KV or Nomad Variables) and prints, per host, every version
rollguard applied: when, by which run, and how it ended (applied, known_good,
reverted, failed). The newest known-good version is the one that
revert.known_good re-applies. It changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			spec, _, err := loadSpec(file)
			if err != nil {
				return err
			}
			st, err := openState(c.Context(), spec, slog.New(slog.DiscardHandler))
			if err != nil {
				return failed(err)
			}
			h := history.History{Store: st.store}
			hosts := []string{host}
			if host == "" {
				if hosts, err = h.Hosts(c.Context()); err != nil {
					return failed(err)
				}
			}
			out := map[string][]history.VersionRecord{}
			for _, n := range hosts {
				recs, err := h.For(c.Context(), n)
				if err != nil {
					return failed(err)
				}
				out[n] = recs
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"hosts": out})
			}
			if len(hosts) == 0 {
				fmt.Fprintf(c.OutOrStdout(), "no history yet for rollout %q (%s)\n", spec.Name, st.where)
				return nil
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tVERSION\tOUTCOME\tAT\tRUN\t")
			for _, n := range hosts {
				recs := out[n]
				good := -1
				for i := len(recs) - 1; i >= 0; i-- {
					if recs[i].Outcome == history.VersionKnownGood {
						good = i
						break
					}
				}
				for i, r := range recs {
					mark := ""
					if i == good {
						mark = "  ← last known-good"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n, r.Version, r.Outcome, r.At.UTC().Format(time.RFC3339), r.RunID, mark)
				}
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().StringVar(&host, "host", "", "show one host only")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON: {\"hosts\": {\"web-1\": [records...]}}")
	return c
}
