package isilon

import (
	"context"
	"slices"
	"testing"

	"github.com/shiphold/shiphold/pkg/backend"
)

// A StorageClass's nfsServer (a SmartConnect zone name) replaces the backend's for its
// volumes: in the volume context CreateVolume returns and in the publish context the node
// mounts from.
func TestClassNFSServer(t *testing.T) {
	ctx := context.Background()
	testCases := []struct {
		name, param string
		want        string       // the server in both contexts
		code        backend.Code // Internal means success here
	}{
		{"backend default", "", "nfs.example", backend.Internal},
		{"SmartConnect name", "sc-bare-metal.isilon.example", "sc-bare-metal.isilon.example", backend.Internal},
		{"address", "10.1.2.3", "10.1.2.3", backend.Internal},
		{"IPv6 address", "fd00::7", "fd00::7", backend.Internal},
		{"not a host name", "nfs server!", "", backend.InvalidArgument},
		{"upper case", "SC.Example", "", backend.InvalidArgument},
		{"a URL", "nfs://sc.example", "", backend.InvalidArgument},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			c, f, _ := testController(t)
			params := map[string]string{}
			if tc.param != "" {
				params[ParamNFSServer] = tc.param
			}
			v, err := c.CreateVolume(ctx, &backend.VolumeRequest{Name: "pvc-sc", Tenant: "shop", RequiredBytes: 1 << 20, Secrets: goodSecrets, Parameters: params})
			if tc.code != backend.Internal {
				if backend.CodeOf(err) != tc.code {
					t.Fatalf("CreateVolume: %v, want %v", err, tc.code)
				}
				if len(f.exports) != 0 {
					t.Fatalf("a refused request made exports %+v", f.exports)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Context[CtxNFSServer] != tc.want {
				t.Fatalf("volume context server %q, want %q", v.Context[CtxNFSServer], tc.want)
			}
			pub, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n", Address: "10.0.0.9"}, backend.PublishAccess{}, v.Context, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pub[PubNFSServer] != tc.want {
				t.Fatalf("publish context server %q, want %q", pub[PubNFSServer], tc.want)
			}
		})
	}
	if !slices.Contains((&Controller{}).ParameterKeys(), ParamNFSServer) {
		t.Fatalf("%s is not a known StorageClass parameter", ParamNFSServer)
	}
}

// A volume context's server comes from a PV, possibly hand-written: a bad one is refused.
func TestPublishRefusesBadNFSServer(t *testing.T) {
	c, _, _ := testController(t)
	ctx := context.Background()
	v := mustCreate(t, c, req("pvc-bad", 1<<20))
	v.Context[CtxNFSServer] = "bad server"
	_, err := c.PublishVolume(ctx, v.ID, backend.Node{Name: "n", Address: "10.0.0.9"}, backend.PublishAccess{}, v.Context, nil)
	if backend.CodeOf(err) != backend.InvalidArgument {
		t.Fatalf("publish with server %q: %v, want InvalidArgument", v.Context[CtxNFSServer], err)
	}
}
