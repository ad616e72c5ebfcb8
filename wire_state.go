package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rollguard/rollguard/integrations/consul"
	"github.com/rollguard/rollguard/integrations/localstate"
	"github.com/rollguard/rollguard/integrations/nomad"
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

// stateDir is where local state (reports, history, journal) lives.
func stateDir(spec *runner.Spec) string {
	if spec.State.Dir != "" {
		return spec.State.Dir
	}
	return filepath.Join(spec.Dir, ".rollguard")
}

// localStateDir is the directory of the rollout's local state store.
func localStateDir(spec *runner.Spec) string {
	return filepath.Join(stateDir(spec), spec.Name)
}

// openState opens the spec's state store (state.store).
func openState(ctx context.Context, spec *runner.Spec, log *slog.Logger) (*stateBackend, error) {
	switch spec.State.Store {
	case "", "local":
		dir := localStateDir(spec)
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

// openSharedState opens a state store shared between machines: Consul KV
// with a session lock, or Nomad Variables with a lease lock. Both are
// configured by the standard CONSUL_* / NOMAD_* variables.
func openSharedState(ctx context.Context, spec *runner.Spec, log *slog.Logger) (*stateBackend, error) {
	switch spec.State.Store {
	case "consul":
		c, err := consul.New(nil, log)
		if err != nil {
			return nil, fmt.Errorf("consul client: %w", err)
		}
		store, err := consul.NewKVStore(c, spec.Name, consul.KVOptions{Prefix: spec.State.Prefix})
		if err != nil {
			return nil, err
		}
		return &stateBackend{store: store, locker: consul.NewLocker(c, consul.LockOptions{Logger: log}), where: "Consul KV " + store.Prefix()}, nil
	case "nomad":
		c, err := nomad.New(nil, log)
		if err != nil {
			return nil, fmt.Errorf("nomad client: %w", err)
		}
		store, err := nomad.NewVarStore(c, spec.Name, spec.State.Prefix, "")
		if err != nil {
			return nil, err
		}
		return &stateBackend{store: store, locker: nomad.NewVarLocker(c, nomad.VarLockOptions{Logger: log}), where: "Nomad Variables " + nomad.DefaultPrefix(spec.Name)}, nil
	}
	return nil, fmt.Errorf("state.store %q: want local, consul or nomad", spec.State.Store)
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
		if err == nil {
			if t, ok := lease.(staleLease); ok {
				if prev, took := t.TookOver(); took {
					say(fmt.Sprintf("warning: took over the lock of rollout %q from run %s (%s, pid %d, since %s), which ended without releasing it",
						spec.Name, prev.RunID, prev.Host, prev.PID, prev.Since.UTC().Format(time.RFC3339)))
				}
			}
			return lease, nil
		}
		if !errors.As(err, &le) || time.Now().After(deadline) {
			return lease, err
		}
		say(fmt.Sprintf("waiting up to %s for the lock: %v", time.Until(deadline).Round(time.Second), le))
		if err := (ports.WallClock{}).Sleep(ctx, 2*time.Second); err != nil {
			return nil, err
		}
	}
}

// staleLease is a lease that can say it took over the lock of a run
// that died holding it (the local flock lock can).
type staleLease interface {
	TookOver() (ports.Holder, bool)
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
