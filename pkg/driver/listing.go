package driver

import (
	"context"
	"fmt"
	"sort"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/volid"
)

// volumePage lists the volumes whose IDs sort after token, up to max (all for 0), across the
// backends in ID order. The token is the last ID of the previous page, as before; only the
// backends at and after the token's place are asked, each for at most the rest of the page
// plus one (to know whether a next page exists).
func (d *ControllerServer) volumePage(ctx context.Context, token string, max int) ([]*backend.Volume, string, error) {
	want := 0
	if max > 0 {
		want = max + 1
	}
	var page []*backend.Volume
	from := tokenBackend(token)
	for _, name := range d.backendsInIDOrder() {
		after := token
		if token != "" && name != from {
			if backendIDPrefix(from) > backendIDPrefix(name) {
				continue // the token's backend comes after this one
			}
			after = ""
		}
		rest := 0
		if want > 0 {
			rest = want - len(page)
		}
		vols, err := listVolumesAfter(ctx, d.opts.Controllers[name], after, rest)
		if err != nil {
			return nil, "", toStatusWhile(err, fmt.Sprintf("listing volumes on backend %q", name))
		}
		page = append(page, vols...)
		if want > 0 && len(page) >= want {
			break
		}
	}
	next := ""
	if max > 0 && len(page) > max {
		page = page[:max]
		next = page[max-1].ID.String()
	}
	return page, next, nil
}

// backendIDPrefix orders the backends; each lists its own volumes in ID order, adopted
// ones ("a1:") before those it created ("v1:").
func backendIDPrefix(name string) string { return "v1:" + name + ":" }

// tokenBackend is the backend a page token's volume ID names ("" for none).
func tokenBackend(token string) string {
	if id, err := volid.ParseVolume(token); err == nil {
		return id.Backend
	}
	return ""
}

// backendsInIDOrder sorts the backends as their volume IDs sort ("a-b" before "a", as
// "v1:a-b:" sorts before "v1:a:").
func (d *ControllerServer) backendsInIDOrder() []string {
	names := d.backendNames()
	sort.Slice(names, func(i, j int) bool { return backendIDPrefix(names[i]) < backendIDPrefix(names[j]) })
	return names
}

// listVolumesAfter asks a VolumePager for the page; any other controller lists everything,
// and the page is cut from that.
func listVolumesAfter(ctx context.Context, c backend.Controller, after string, max int) ([]*backend.Volume, error) {
	if p, ok := c.(backend.VolumePager); ok {
		return p.ListVolumesAfter(ctx, after, max)
	}
	all, err := c.ListVolumes(ctx, "")
	if err != nil {
		return nil, err
	}
	return backend.PageOf(all, after, max), nil
}
