package consul

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/ports"
)

func TestKVStoreCheckAndSet(t *testing.T) {
	ctx := context.Background()
	fake, srv := newFakeConsul(t, testToken)
	// Two runs with their own clients, as two CI jobs would have.
	a, err := NewKVStore(fake.client(srv), "web-nginx", KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKVStore(fake.client(srv), "web-nginx", KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Prefix() != "rollguard/web-nginx/" {
		t.Errorf("prefix = %q, want rollguard/web-nginx/", a.Prefix())
	}

	value, version, err := a.Get(ctx, "journal")
	if err != nil || value != nil || version != 0 {
		t.Fatalf("Get of a missing key = %q, %d, %v; want nil, 0, nil", value, version, err)
	}
	v1, err := a.Put(ctx, "journal", []byte(`{"step":1}`), 0)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := b.Put(ctx, "journal", []byte(`{"step":"b"}`), 0); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("second create-only Put = %v, want ErrConflict", err)
	}

	// Both read the same version; a writes first, b's write is refused.
	_, seenA, _ := a.Get(ctx, "journal")
	value, seenB, err := b.Get(ctx, "journal")
	if err != nil || string(value) != `{"step":1}` || seenB != v1 || seenA != v1 {
		t.Fatalf("Get = %q, %d (a saw %d), %v; want the first value at version %d", value, seenB, seenA, err, v1)
	}
	v2, err := a.Put(ctx, "journal", []byte(`{"step":2}`), seenA)
	if err != nil {
		t.Fatalf("a's update: %v", err)
	}
	if v2 <= v1 {
		t.Errorf("new version %d is not after %d", v2, v1)
	}
	_, err = b.Put(ctx, "journal", []byte(`{"step":"b"}`), seenB)
	if !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("b's stale update = %v, want ErrConflict", err)
	}
	value, version, _ = b.Get(ctx, "journal")
	if string(value) != `{"step":2}` || version != v2 {
		t.Errorf("after the race the key holds %q at %d, want a's value at %d", value, version, v2)
	}

	// Delete with a stale version is refused too, then succeeds.
	if err := b.Delete(ctx, "journal", v1); !errors.Is(err, ports.ErrConflict) {
		t.Errorf("stale Delete = %v, want ErrConflict", err)
	}
	if err := b.Delete(ctx, "journal", v2); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if value, version, _ := a.Get(ctx, "journal"); value != nil || version != 0 {
		t.Errorf("deleted key still reads %q at %d", value, version)
	}
}

func TestKVStoreList(t *testing.T) {
	ctx := context.Background()
	fake, srv := newFakeConsul(t, testToken)
	s, err := NewKVStore(fake.client(srv), "", KVOptions{Prefix: "/team/web"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewKVStore(fake.client(srv), "other", KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"history/web-2", "journal", "history/web-1"} {
		if _, err := s.Put(ctx, k, []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Put(ctx, "history/web-9", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"history/", []string{"history/web-1", "history/web-2"}},
		{"", []string{"history/web-1", "history/web-2", "journal"}},
		{"nothing/", []string{}},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tt.prefix, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

func TestKVStoreWrongTokenIsAnErrorWithoutTheToken(t *testing.T) {
	fake, srv := newFakeConsul(t, testToken)
	fake.token = "another-token"
	s, err := NewKVStore(fake.client(srv), "web", KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fake.token = testToken // the client now sends another-token
	_, _, err = s.Get(context.Background(), "journal")
	if err == nil {
		t.Fatal("Get with a refused token succeeded")
	}
	if got := err.Error(); !contains(got, "rollguard/web/journal") || contains(got, "another-token") {
		t.Errorf("error %q should name the key and not the token", got)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
