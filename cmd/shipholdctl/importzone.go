package main

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
)

// recordedParams are the StorageClass parameters an adoption records, as a created volume
// of the class would have them: --param, the class's own (--storage-class with
// --kubeconfig) and --access-zone. A parameter given twice must agree; code is the exit
// code of an error (2: the flags disagree, 1: the class could not be read).
func (f *importFlags) recordedParams(ctx context.Context, kind string) (params map[string]string, code int, err error) {
	params = map[string]string{}
	for k, v := range f.params {
		params[k] = v
	}
	if f.class != "" && f.kubeconfig != "" {
		cp, code, err := f.classParams(ctx)
		if err != nil {
			return nil, code, err
		}
		if err := mergeParam(params, cp, "StorageClass "+f.class); err != nil {
			return nil, 2, err
		}
	}
	if f.accessZone != "" {
		if kind != backend.KindIsilon {
			return nil, 2, fmt.Errorf("--access-zone: backend %q is %s; only isilon backends have access zones", f.backend, kind)
		}
		if err := mergeParam(params, map[string]string{isilon.ParamAccessZone: f.accessZone}, "--access-zone"); err != nil {
			return nil, 2, err
		}
	}
	return params, 0, nil
}

// classParams reads the parameters of the backend's kind from --storage-class: neither the
// backend nor the CSI secret references, which a PV names itself.
func (f *importFlags) classParams(ctx context.Context) (map[string]string, int, error) {
	client, err := newKubeClient(f.kubeconfig)
	if err != nil {
		return nil, 1, err
	}
	sc, err := client.StorageV1().StorageClasses().Get(ctx, f.class, metav1.GetOptions{})
	if err != nil {
		return nil, 1, fmt.Errorf("--storage-class %s: %w", f.class, err)
	}
	if sc.Provisioner != driverName || sc.Parameters[backend.ParamBackend] != f.backend {
		return nil, 2, fmt.Errorf("--storage-class %s is of %s with backend %q, not of %s with backend %q", f.class, sc.Provisioner, sc.Parameters[backend.ParamBackend], driverName, f.backend)
	}
	out := map[string]string{}
	for k, v := range sc.Parameters {
		if k != backend.ParamBackend && !strings.HasPrefix(k, "csi.storage.k8s.io/") {
			out[k] = v
		}
	}
	return out, 0, nil
}

// mergeParam adds from to params; a key set to another value already is an error naming
// both sources.
func mergeParam(params, from map[string]string, source string) error {
	for k, v := range from {
		if have, ok := params[k]; ok && have != v {
			return fmt.Errorf("%s sets %s=%q, but it is %q already (from --param or the StorageClass): give it once", source, k, v, have)
		}
		params[k] = v
	}
	return nil
}

// legacyServers are the NFS server names --from-pvs looks for: --nfs-server, else the
// access zone's SmartConnect name, else the backend's nfsServer.
func (f *importFlags) legacyServers(isi *isilon.Config, params map[string]string) []string {
	if len(f.servers) > 0 {
		return f.servers
	}
	for _, z := range isi.Zones {
		if z.Name == params[isilon.ParamAccessZone] && z.NFSServer != "" {
			return []string{z.NFSServer}
		}
	}
	return []string{isi.NFSServer}
}
