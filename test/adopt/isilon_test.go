package adopttest

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/shiphold/shiphold/pkg/adopt"
	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/driver"
	"github.com/shiphold/shiphold/test/harness"
	"github.com/shiphold/shiphold/test/onefssim"
)

func papiPOST(t *testing.T, sim *harness.OneFS, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, sim.URL+path, strings.NewReader(body))
	req.SetBasicAuth("admin", "onefs-test-password")
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s %s", path, resp.Status, b.String())
	}
}

// TestAdoptIsilonDirectoryWithExportAndQuota: a site's directory made by hand (or by
// csi-powerscale), with a hard quota and an export a legacy node mounts, is adopted: the
// data stays, the export keeps its client, and the plugin publishes, stages, expands,
// snapshots and finally deletes it (a PV with the Delete policy).
func TestAdoptIsilonDirectoryWithExportAndQuota(t *testing.T) {
	harness.RequireRoot(t, "the NFS stand-in's bind mounts")
	sim := harness.StartOneFS(t)
	t.Setenv(isilon.StandInEnv, sim.Root)
	be := sim.Backend(t, "isi")
	cfg := &config.Config{Backends: []config.Backend{be}}
	shop := "shop-" + suffix() // a tenant of its own: the quota counts nothing else
	withQuota(cfg, shop)

	const dir = "/ifs/legacy/site42"
	real := filepath.Join(sim.Root, strings.TrimPrefix(dir, "/ifs/"))
	if err := os.MkdirAll(real, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "index.html"), []byte("site 42"), 0o644); err != nil {
		t.Fatal(err)
	}
	papiPOST(t, sim, "/platform/1/quota/quotas", `{"path":"`+dir+`","type":"directory","enforced":true,"thresholds":{"hard":33554432}}`)
	papiPOST(t, sim, "/platform/2/protocols/nfs/exports?zone=System", `{"paths":["`+dir+`"],"read_write_clients":["10.9.9.9"]}`)

	v, err := adoptOn(t, cfg, adopt.Request{Backend: "isi", AdoptRequest: backend.AdoptRequest{Object: dir, Tenant: shop, Name: "pv-site42"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.ID.String(), "a1:isi:"+shop+"::") || v.CapacityBytes != 32<<20 || v.Context[isilon.CtxExportPath] != dir {
		t.Fatalf("adopted %s (%d bytes, %v), want the directory's 32 MiB quota kept", v.ID, v.CapacityBytes, v.Context)
	}
	exports := sim.Server.Exports()
	if len(exports) != 1 || !slices.Contains(exports[0].ReadWriteClients, "10.9.9.9") || !slices.Contains(exports[0].ReadOnlyClients, isilon.NoAccessClient) {
		t.Fatalf("exports after adoption: %+v, want the legacy one with its client and the never-open placeholder", exports)
	}
	if _, err := adoptOn(t, cfg, adopt.Request{Backend: "isi", AdoptRequest: backend.AdoptRequest{Object: dir, Tenant: "rival", Name: "pv-x"}}); backend.CodeOf(err) != backend.AlreadyExists {
		t.Fatalf("adoption by a second tenant: %v, want AlreadyExists", err)
	}

	d := harness.StartDriver(t, cfg, driver.ModeAll)
	counted(t, cfg, d, v, 32<<20)
	a := attach(t, d, v, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, ""))
	a.readBack(t, "index.html", "site 42")
	if got := a.expand(t, 64<<20); got != 64<<20 {
		t.Fatalf("expanded to %d bytes, want 64 MiB", got)
	}
	counted(t, cfg, d, v, 64<<20)
	a.snapshot(t)
	a.detach(t)

	if _, err := d.Controller().DeleteVolume(ctxT(t), &csi.DeleteVolumeRequest{VolumeId: v.ID.String()}); err != nil {
		t.Fatal(err)
	}
	unlisted(t, d, v.ID.String())
	if _, err := os.Stat(real); !os.IsNotExist(err) {
		t.Fatalf("the adopted directory after DeleteVolume: %v, want gone", err)
	}
	if n := len(sim.Server.Exports()); n != 0 {
		t.Fatalf("%d exports left after DeleteVolume", n)
	}
}

// TestAdoptIsilonDirectoryInAccessZone: a directory of another access zone, exported in
// that zone, is adopted with the zone the import names (the class's accessZone or
// --access-zone): its export stays in the zone, the volume ID carries the zone's key, and
// the plugin lists it under that ID with its quota's size.
func TestAdoptIsilonDirectoryInAccessZone(t *testing.T) {
	sim := harness.StartOneFSWith(t, func(o *onefssim.Options) { o.Zones = map[string]string{"zoneA": "/ifs/zoneA"} })
	be := sim.Backend(t, "isi")
	be.Section.(*isilon.Config).Zones = []isilon.Zone{{Name: "zoneA", Key: "za", IsiPath: "/ifs/zoneA/shiphold"}}
	cfg := &config.Config{Backends: []config.Backend{be}}
	shop := "shop-" + suffix()
	const dir = "/ifs/zoneA/legacy/site7"
	if err := os.MkdirAll(filepath.Join(sim.Root, "zoneA/legacy/site7"), 0o777); err != nil {
		t.Fatal(err)
	}
	papiPOST(t, sim, "/platform/1/quota/quotas", `{"path":"`+dir+`","type":"directory","enforced":true,"thresholds":{"hard":16777216}}`)
	papiPOST(t, sim, "/platform/2/protocols/nfs/exports?zone=zoneA", `{"paths":["`+dir+`"],"read_write_clients":["10.9.9.7"]}`)

	v, err := adoptOn(t, cfg, adopt.Request{Backend: "isi", AdoptRequest: backend.AdoptRequest{Object: dir, Tenant: shop, Name: "pv-site7",
		Parameters: map[string]string{isilon.ParamAccessZone: "zoneA"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v.ID.Location != "za" || v.Context[isilon.CtxZone] != "zoneA" {
		t.Fatalf("adopted %s (%v), want the zone key za and zone zoneA", v.ID, v.Context)
	}
	exports := sim.Server.Exports()
	if len(exports) != 1 || exports[0].Zone != "zoneA" || !slices.Contains(exports[0].ReadOnlyClients, isilon.NoAccessClient) {
		t.Fatalf("exports after adoption: %+v, want zoneA's own with the never-open placeholder beside its client", exports)
	}
	d := harness.StartDriver(t, cfg, driver.ModeAll)
	if got, ok := listed(t, d, v.ID.String()); !ok || got != 16<<20 {
		t.Fatalf("ListVolumes lists %s: %v with %d bytes, want 16 MiB", v.ID, ok, got)
	}
}
