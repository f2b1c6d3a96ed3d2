// Package cephtest holds fakes of Ceph's own behaviour that the unit tests of several
// packages share. It is imported by tests only.
package cephtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
)

// Auth is the monitor's auth database as the auth commands (auth get, get-or-create, caps,
// rm) see it, answering with the monitor's JSON and errnos.
type Auth struct {
	mu       sync.Mutex
	entities map[string]Entry
	next     int
	calls    []string
	// Deny is an auth command prefix answered EACCES (a user without the caps for it).
	Deny string
}

// Entry is one auth entity as `auth get --format json` lists it.
type Entry struct {
	Entity string            `json:"entity"`
	Key    string            `json:"key"`
	Caps   map[string]string `json:"caps"`
}

// Errno is an error carrying a Ceph errno, as go-ceph's errors do.
type Errno int

func (e Errno) Error() string  { return fmt.Sprintf("errno %d", int(e)) }
func (e Errno) ErrorCode() int { return -int(e) }

// NewAuth returns an empty auth database.
func NewAuth() *Auth { return &Auth{entities: map[string]Entry{}} }

// IsAuthCommand says whether a mon command prefix is one Auth answers.
func IsAuthCommand(prefix string) bool { return strings.HasPrefix(prefix, "auth ") }

// Get returns the entity (client.NAME) and whether it exists.
func (f *Auth) Get(entity string) (Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entities[entity]
	return e, ok
}

// Put adds or replaces an entity.
func (f *Auth) Put(e Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entities[e.Entity] = e
}

// Calls returns the prefixes of the auth commands received, in order.
func (f *Auth) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// MonCommand answers one auth command.
func (f *Auth) MonCommand(args []byte) ([]byte, string, error) {
	var cmd struct {
		Prefix string   `json:"prefix"`
		Entity string   `json:"entity"`
		Caps   []string `json:"caps"`
	}
	if err := json.Unmarshal(args, &cmd); err != nil {
		return nil, "bad json", Errno(syscall.EINVAL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, cmd.Prefix)
	if f.Deny != "" && cmd.Prefix == f.Deny {
		return nil, "access denied", Errno(syscall.EACCES)
	}
	caps := map[string]string{}
	for i := 0; i+1 < len(cmd.Caps); i += 2 {
		caps[cmd.Caps[i]] = cmd.Caps[i+1]
	}
	e, ok := f.entities[cmd.Entity]
	switch cmd.Prefix {
	case "auth get":
		if !ok {
			return nil, "failed to find " + cmd.Entity, Errno(syscall.ENOENT)
		}
	case "auth get-or-create":
		// The monitor compares the cap types asked for, and keeps the others unchecked.
		for t, c := range caps {
			if have, found := e.Caps[t]; ok && (!found || have != c) {
				return nil, "key for " + cmd.Entity + " exists but cap " + t + " does not match", Errno(syscall.EINVAL)
			}
		}
		if !ok {
			f.next++
			e = Entry{Entity: cmd.Entity, Key: fmt.Sprintf("KEY%d", f.next), Caps: caps}
			f.entities[cmd.Entity] = e
		}
	case "auth caps":
		if !ok {
			return nil, "", Errno(syscall.ENOENT)
		}
		e.Caps = caps
		f.entities[cmd.Entity] = e
		return nil, "updated caps", nil
	case "auth rm":
		delete(f.entities, cmd.Entity)
		return nil, "", nil
	default:
		return nil, "unknown", Errno(syscall.EINVAL)
	}
	out, _ := json.Marshal([]Entry{e})
	return out, "", nil
}
