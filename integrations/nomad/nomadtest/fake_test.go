package nomadtest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
)

const token = "s3cr3t-fake-token"

func newClient(t *testing.T, s *Server) *api.Client {
	t.Helper()
	c, err := api.NewClient(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckAndSet(t *testing.T) {
	s := New(token)
	defer s.Close()
	vars := newClient(t, s).Variables()
	items := api.VariableItems{"k": "v"}
	v, _, err := vars.CheckedCreate(&api.Variable{Path: "a/b", Items: items}, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	tests := []struct {
		name  string
		write func() error
		// wantFound is the conflicting variable's ModifyIndex Nomad
		// answers with (0: an empty variable, the path does not exist).
		wantFound uint64
	}{
		{"create over an existing variable", func() error {
			_, _, err := vars.CheckedCreate(&api.Variable{Path: "a/b", Items: items}, nil)
			return err
		}, v.ModifyIndex},
		{"update at a stale index", func() error {
			_, _, err := vars.CheckedUpdate(&api.Variable{Path: "a/b", Items: items, ModifyIndex: v.ModifyIndex - 1}, nil)
			return err
		}, v.ModifyIndex},
		{"update of a missing variable", func() error {
			_, _, err := vars.CheckedUpdate(&api.Variable{Path: "a/c", Items: items, ModifyIndex: 7}, nil)
			return err
		}, 0},
		{"delete at a stale index", func() error {
			_, err := vars.CheckedDelete("a/b", v.ModifyIndex+1, nil)
			return err
		}, v.ModifyIndex},
	}
	for _, tt := range tests {
		var conflict api.ErrCASConflict
		err := tt.write()
		if !errors.As(err, &conflict) || conflict.Conflict == nil || conflict.Conflict.ModifyIndex != tt.wantFound {
			t.Errorf("%s: %v; want a CAS conflict showing ModifyIndex %d", tt.name, err, tt.wantFound)
		}
	}
	if got := s.Writes("a/b"); got != 1 {
		t.Errorf("Writes(a/b) = %d after refused writes, want 1", got)
	}
	if _, err := vars.CheckedDelete("a/b", v.ModifyIndex, nil); err != nil || s.Get("a/b") != nil {
		t.Errorf("delete at the current index: %v (variable %+v)", err, s.Get("a/b"))
	}
}

func TestPutsNeverBlockTheServer(t *testing.T) {
	s := New(token)
	defer s.Close()
	vars := newClient(t, s).Variables()
	// A long rollout writes its journal far more often than anyone reads.
	for i := range putBuffer + 10 {
		if _, _, err := vars.Create(&api.Variable{Path: "journal", Items: api.VariableItems{"n": fmt.Sprint(i)}}, nil); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := <-s.Puts(); got != "journal" {
		t.Errorf("Puts() delivered %q, want journal", got)
	}
}

func TestUnmodelledRequestsAreRecorded(t *testing.T) {
	s := New(token)
	defer s.Close()
	c := newClient(t, s)
	if _, _, err := c.Jobs().List(nil); err == nil {
		t.Error("listing jobs succeeded on a Variables-only fake")
	}
	req := "GET /v1/jobs"
	if u := s.Unexpected(); len(u) != 1 || !strings.HasPrefix(u[0], req) {
		t.Errorf("Unexpected() = %q, want one entry starting %q", u, req)
	}
	cfg := s.Config()
	cfg.SecretID = "another"
	other, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Variables().Peek("a", nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Peek with a wrong token = %v, want a 403", err)
	}
}
