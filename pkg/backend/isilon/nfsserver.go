package isilon

import (
	"net"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/shiphold/shiphold/pkg/backend"
)

// nfsServerOf is the server a volume of zone z is mounted from: where is a StorageClass's
// parameters or a volume's context (a PV's, possibly hand-written), key its nfsServer entry;
// without one, the zone's (for the default zone the backend's) nfsServer.
func nfsServerOf(z accessZone, where map[string]string, key string) (string, error) {
	s := where[key]
	if s == "" {
		return z.nfsServer, nil
	}
	if net.ParseIP(s) != nil {
		return s, nil
	}
	if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
		return "", backend.Errorf(backend.InvalidArgument, "isilon: %s %q must be a DNS name (a SmartConnect zone name, lower case) or an IP address: %s", key, s, strings.Join(errs, "; "))
	}
	return s, nil
}
