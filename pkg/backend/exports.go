package backend

import (
	"context"

	"github.com/shiphold/shiphold/pkg/volid"
)

// ExportAuditor is implemented by backends that export volumes to node addresses (Isilon
// NFS exports): it reports every export's clients, for monitoring and the admin CLI.
type ExportAuditor interface {
	ExportClients(ctx context.Context) ([]ExportClients, error)
}

// ExportClients are the clients of one volume's export. Stale clients are those no
// publish record accounts for: added by hand, or left behind by a node that went away.
type ExportClients struct {
	Volume   volid.Volume
	ExportID int
	Clients  []string
	Stale    []string
}
