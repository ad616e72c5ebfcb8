package consul

import (
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/rollguard/rollguard/integrations/consul/consultest"
)

// fakeConsul is this package's view of a consultest.Server: the token its
// clients send (a test may change it to send a wrong one) and the
// server's inspection helpers.
type fakeConsul struct {
	t     *testing.T
	srv   *consultest.Server
	token string
	// renewed receives a session ID on every renewal.
	renewed <-chan string
}

// newFakeConsul starts a fake Consul that accepts token. The test fails
// if the code under test sent a request the fake does not model.
func newFakeConsul(t *testing.T, token string) (*fakeConsul, *consultest.Server) {
	t.Helper()
	srv := consultest.New(token)
	t.Cleanup(func() {
		srv.Close()
		for _, u := range srv.Unexpected() {
			t.Errorf("fake consul: unexpected request %s", u)
		}
	})
	return &fakeConsul{t: t, srv: srv, token: token, renewed: srv.Renewals()}, srv
}

// client returns a rollguard client talking to srv with f's token.
func (f *fakeConsul) client(srv *consultest.Server) *Client {
	f.t.Helper()
	c, err := New(&api.Config{Address: srv.URL, Token: f.token}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fakeConsul) invalidate(id string) { f.srv.Invalidate(id) }
func (f *fakeConsul) forget(id string)     { f.srv.Forget(id) }
func (f *fakeConsul) sessionIDs() []string { return f.srv.Sessions() }
