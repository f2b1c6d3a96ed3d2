package main

import (
	"errors"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/rbd"
	"github.com/shiphold/shiphold/pkg/config"
)

// exportLister is a section of some other kind whose storage lists nodes by address.
type exportLister struct {
	addr string
	err  error
}

func (e *exportLister) Validate() error              { return nil }
func (e *exportLister) NodeAddress() (string, error) { return e.addr, e.err }

// The node's address comes from the first backend whose section lists nodes by address,
// whatever its kind; a section that cannot say is passed over; without one, $NODE_IP.
func TestNodeAddressAsksTheSections(t *testing.T) {
	t.Setenv("NODE_IP", "192.0.2.9")
	cases := []struct {
		name     string
		sections []config.Section
		want     string
	}{
		{"isilon: the route to its NFS server", []config.Section{&rbd.Config{}, &isilon.Config{NFSServer: "127.0.0.1"}}, "127.0.0.1"},
		{"another kind that lists nodes", []config.Section{&exportLister{addr: "198.51.100.7"}}, "198.51.100.7"},
		{"the first that answers", []config.Section{&exportLister{err: errors.New("no route")}, &exportLister{}, &exportLister{addr: "198.51.100.8"}}, "198.51.100.8"},
		{"isilon without an NFS server", []config.Section{&isilon.Config{}}, "192.0.2.9"},
		{"no kind lists nodes", []config.Section{&rbd.Config{}}, "192.0.2.9"},
	}
	for _, c := range cases {
		cfg := &config.Config{}
		for _, s := range c.sections {
			cfg.Backends = append(cfg.Backends, config.Backend{Name: "b", Section: s})
		}
		if got := nodeAddress(cfg); got != c.want {
			t.Errorf("%s: node address %q, want %q", c.name, got, c.want)
		}
	}
}
