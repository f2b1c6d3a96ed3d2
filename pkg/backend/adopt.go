package backend

import "context"

// AdoptRequest asks a backend to manage, in place and under its own name, a storage object
// that shiphold did not create (shipholdctl import): an RBD image, a CephFS subvolume, an
// Isilon directory. The data stays where it is.
type AdoptRequest struct {
	// Object names it the way the backend kind does: "<pool>/<namespace>/<image>" (namespace
	// may be empty), "<fs>/<group>/<subvolume>" or "<fs>:<absolute path>" (a plain CephFS
	// directory), or an Isilon directory's absolute path.
	Object string
	Tenant string
	// Name is recorded as the volume's request name (the PV's name for an imported PV).
	Name string
	// SizeBytes is the capacity to give it; 0 keeps the size the object has (an image's
	// size, a quota's hard limit), and an object without one is refused.
	SizeBytes int64
	// Parameters are StorageClass parameters of the kind, recorded like a created volume's.
	Parameters map[string]string
	Secrets    map[string]string
}

// Adopter is implemented by backends that can take an existing object under management.
// Adopt adds what the backend's own volumes have (request record, quota, export) and
// returns the volume under an adopted ID (volid.Adopted). Run again, it returns the same
// volume; an object another tenant adopted, or one shiphold created, is AlreadyExists.
type Adopter interface {
	Adopt(ctx context.Context, req *AdoptRequest) (*Volume, error)
}
