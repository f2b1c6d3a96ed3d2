package rbd

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// fenceExpire is how long a fenced client stays blocklisted (seconds). A node that comes
// back gets a new client (a new nonce) when it maps again, so an hour only has to outlast
// the old client's attempts to write.
const fenceExpire = 3600

// fenceStaleClients blocklists every Ceph client that still has the image open, or holds
// its exclusive lock, once no node is published any more, and breaks the locks they held.
//
// It runs in ControllerUnpublishVolume when the last node's record goes. Kubernetes calls
// ControllerUnpublish after NodeUnstage in a normal detach, so the node has unmapped and
// nothing is fenced; a client still there means a forced detach (a lost node, the
// out-of-service taint, the attach-detach timeout), and that client must not write once
// another node maps the image. The trade-off: krbd shares one client per node and cluster
// (unless mapped with noshare), so fencing cuts that node off from all its krbd images
// until it re-maps; and a tool that opened the image read-write by hand is fenced too.
// The controller's own client and the Ceph mgr's (a flatten in progress) are never fenced.
func fenceStaleClients(conn cluster, img image, id volid.Volume) error {
	watchers, err := img.Watchers()
	if err != nil {
		return classify(err, "list clients of "+id.String())
	}
	lockers, err := img.Lockers()
	if err != nil && !isNotFound(err) {
		return classify(err, "list lock owners of "+id.String())
	}
	self := conn.InstanceID()
	stale := map[string]bool{}
	for _, w := range watchers {
		if uint64(w.Id) != self {
			stale[w.Addr] = true
		}
	}
	for _, l := range lockers {
		if l.Client != fmt.Sprintf("client.%d", self) {
			stale[l.Addr] = true
		}
	}
	if len(stale) == 0 {
		return nil // a normal detach: asks the monitors nothing
	}
	spare, err := trustedClients(conn)
	if err != nil {
		return err
	}
	addrs := make([]string, 0, len(stale))
	for a := range stale {
		if spare[a] {
			delete(stale, a)
		} else {
			addrs = append(addrs, a)
		}
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		if err := blocklist(conn, a); err != nil {
			return backend.Errorf(backend.Unavailable, "fence client %s still using %s after its node was unpublished: %v", a, id, err)
		}
	}
	for _, l := range lockers {
		if stale[l.Addr] {
			if err := img.BreakLock(l.Client, l.Cookie); err != nil && !isNotFound(err) {
				return classify(err, fmt.Sprintf("break the lock of fenced client %s on %s", l.Addr, id))
			}
		}
	}
	return nil
}

// blocklist adds one client address to the OSD blocklist.
func blocklist(conn cluster, addr string) error {
	// The monitor wants expire as a JSON float; Go writes 3600.0 as 3600.
	expire := json.RawMessage(fmt.Sprintf("%d.0", fenceExpire))
	cmd, err := json.Marshal(map[string]any{"prefix": "osd blocklist", "blocklistop": "add", "addr": addr, "expire": expire})
	if err != nil {
		return err
	}
	_, status, err := conn.MonCommand(cmd)
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(status))
	}
	return nil
}

// trustedClients are the Ceph mgr modules' client addresses (rbd_support flattens and
// removes images for us), which must never be fenced.
func trustedClients(conn cluster) (map[string]bool, error) {
	out, _, err := conn.MonCommand([]byte(`{"prefix":"mgr dump","format":"json"}`))
	if err != nil {
		return nil, classify(err, "mgr dump (the Ceph mgr's clients are never fenced)")
	}
	var dump struct {
		ActiveClients []struct {
			Addrvec []struct {
				Addr  string `json:"addr"`
				Nonce uint64 `json:"nonce"`
			} `json:"addrvec"`
		} `json:"active_clients"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		return nil, backend.Errorf(backend.Internal, "mgr dump: %v", err)
	}
	spare := map[string]bool{}
	for _, c := range dump.ActiveClients {
		for _, a := range c.Addrvec {
			spare[fmt.Sprintf("%s/%d", a.Addr, a.Nonce)] = true
		}
	}
	return spare, nil
}
