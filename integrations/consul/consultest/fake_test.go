package consultest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
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

func TestTxnIsAllOrNothing(t *testing.T) {
	s := New(token)
	defer s.Close()
	kv := newClient(t, s).KV()
	if _, err := kv.Put(&api.KVPair{Key: "a", Value: []byte("1")}, nil); err == nil {
		t.Error("a plain KV PUT succeeded; the fake accepts writes only through /v1/txn")
	}
	ok, _, _, err := newClient(t, s).Txn().Txn(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "a", Value: []byte("1")}}}, nil)
	if err != nil || !ok {
		t.Fatalf("create a: ok %v, %v", ok, err)
	}
	idx := s.KV("a").ModifyIndex
	// b would be created, but a's check is stale: neither is written.
	ok, resp, _, err := newClient(t, s).Txn().Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "b", Value: []byte("2")}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "a", Value: []byte("3"), Index: idx - 1}},
	}, nil)
	if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 || !strings.Contains(resp.Errors[0].What, "index is stale") {
		t.Fatalf("stale transaction: ok %v, %+v, %v; want rolled back at op 1 with index is stale", ok, resp, err)
	}
	if got := s.Keys(""); !slices.Equal(got, []string{"a"}) || string(s.KV("a").Value) != "1" {
		t.Errorf("after a rolled-back transaction keys are %v, a = %q; want only a = 1", got, s.KV("a").Value)
	}
	if u := s.Unexpected(); len(u) != 1 || !strings.HasPrefix(u[0], "PUT /v1/kv/a") {
		t.Errorf("Unexpected() = %q, want the plain PUT alone", u)
	}
}

func TestInvalidateFollowsTheSessionBehaviour(t *testing.T) {
	tests := []struct {
		behavior string
		wantKey  bool
	}{
		{api.SessionBehaviorDelete, false},
		{api.SessionBehaviorRelease, true},
	}
	for _, tt := range tests {
		s := New(token)
		c := newClient(t, s)
		id, _, err := c.Session().Create(&api.SessionEntry{Behavior: tt.behavior, TTL: "15s"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _, err := c.KV().Acquire(&api.KVPair{Key: "lock", Value: []byte("me"), Session: id}, nil); err != nil || !ok {
			t.Fatalf("%s: acquire: %v, %v", tt.behavior, ok, err)
		}
		other, _, _ := c.Session().Create(&api.SessionEntry{TTL: "15s"}, nil)
		if ok, _, _ := c.KV().Acquire(&api.KVPair{Key: "lock", Session: other}, nil); ok {
			t.Errorf("%s: a second session acquired a held key", tt.behavior)
		}
		s.Invalidate(id)
		pair := s.KV("lock")
		if (pair != nil) != tt.wantKey || (pair != nil && pair.Session != "") {
			t.Errorf("%s: after invalidation the key is %+v; want present %v and unheld", tt.behavior, pair, tt.wantKey)
		}
		if got := s.Sessions(); !slices.Equal(got, []string{other}) {
			t.Errorf("%s: sessions %v, want only %s", tt.behavior, got, other)
		}
		s.Close()
	}
}

func TestCloseEndsABlockingQuery(t *testing.T) {
	s := New(token)
	c := newClient(t, s)
	_, meta, err := c.KV().Get("k", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.KV().Get("k", (&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Hour}).WithContext(context.Background()))
		done <- err
	}()
	// Close waits for requests in flight: it returns only if it ended
	// the blocking query.
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a blocking query")
	}
	<-done
}

func TestRenewalsNeverBlockTheServer(t *testing.T) {
	s := New(token)
	defer s.Close()
	c := newClient(t, s)
	id, _, err := c.Session().Create(&api.SessionEntry{TTL: "15s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A long-running holder renews far more often than anyone reads.
	for i := range renewalBuffer + 10 {
		if _, _, err := c.Session().Renew(id, nil); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
	}
	if got := <-s.Renewals(); got != id {
		t.Errorf("Renewals() delivered %q, want %q", got, id)
	}
}

func TestWrongTokenIsRefused(t *testing.T) {
	s := New(token)
	defer s.Close()
	cfg := s.Config()
	cfg.Token = "another"
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.KV().Get("k", nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Get with a wrong token = %v, want a 403", err)
	}
}
