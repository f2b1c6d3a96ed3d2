package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/shiphold/shiphold/pkg/adopt"
	"github.com/shiphold/shiphold/pkg/backend"
	"github.com/shiphold/shiphold/pkg/backend/isilon"
	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
)

type importFlags struct {
	adminFlags
	backend, name, size, pvc  string
	accessMode, policy, class string
	accessZone                string
	fsType, nodeStageSecret   string
	block, fromPVs, apply     bool
	kubeconfig                string
	servers                   []string
	params                    map[string]string
}

func importCommand(stdout, stderr io.Writer) *cobra.Command {
	f := &importFlags{}
	cmd := &cobra.Command{
		Use:   "import --backend B --tenant T OBJECT | import --from-pvs --backend B --kubeconfig F [--apply]",
		Short: "adopt an existing RBD image, CephFS subvolume or directory, or Isilon directory in place",
		Long: `import takes a storage object shiphold did not create under management where it is, for a
tenant, and prints a PV and PVC bound to it. OBJECT is, by the backend's kind:
  rbd     POOL/NAMESPACE/IMAGE (the default namespace is empty: rbd//csi-vol-1234)
  cephfs  FS/GROUP/SUBVOLUME (the default group is _nogroup), or FS:/PATH for a plain
          directory (not the root, nothing in /volumes), whose delete only releases it:
          its files stay, its quota returns to what it was
  isilon  the directory's path, /ifs/...
The backend adds what its volumes have (request record; a hard quota, kept or set with
--size; an Isilon export with the never-open placeholder client) and keeps the data.
--from-pvs lists the cluster's NFS PVs on the Isilon backend's NFS server (or --nfs-server)
and what adopting each would do; with --apply it adopts each directory for its claim's
namespace and re-binds the claim to a shiphold PV (the migration cutover's sequence: the
old PV set to Retain and kept, refused while a pod mounts the claim; the new PV keeps the
old one's reclaim policy; migrate rollback --pvc undoes it).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := runImport(cmd.Context(), f, args, stdout, stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	f.register(fs, 10*time.Minute)
	fs.StringVar(&f.backend, "backend", "", "the configured backend the object is on")
	fs.StringVar(&f.tenant, "tenant", "", "the tenant that will own it (the PVC's namespace)")
	fs.StringVar(&f.name, "name", "", "the request name recorded on it (default: OBJECT)")
	fs.StringVar(&f.size, "size", "", "its capacity (default: its quota or image size; needed when it has none)")
	fs.StringVar(&f.pvc, "pvc", "", "the printed PVC's NS/NAME (default: TENANT/the object's last name)")
	fs.StringVar(&f.accessMode, "access-mode", "", "the PV's access mode (default ReadWriteOnce for rbd, ReadWriteMany otherwise)")
	fs.StringVar(&f.policy, "reclaim-policy", string(corev1.PersistentVolumeReclaimRetain), "the PV's reclaim policy (Delete removes the data with the claim)")
	fs.StringVar(&f.class, "storage-class", "", `the PV's and PVC's StorageClass ("" binds them statically); with --kubeconfig its parameters are recorded (accessZone, nfsServer, ...)`)
	fs.StringVar(&f.accessZone, "access-zone", "", "the Isilon access zone the directory is in (default: the StorageClass's accessZone, else the backend's default zone); with --from-pvs the PVs are looked for on its SmartConnect name")
	fs.StringVar(&f.fsType, "fs-type", "", "the filesystem on an RBD image (default ext4)")
	fs.BoolVar(&f.block, "block", false, "an RBD image used as a raw block device")
	fs.StringVar(&f.nodeStageSecret, "node-stage-secret", "", "NS/NAME of the Secret the node stages a Ceph volume with when it lies outside its tenant's place (an image outside the tenant's RADOS namespace, a subvolume outside the tenant's group), which gets no tenant identity")
	fs.StringToStringVar(&f.params, "param", nil, "StorageClass parameters of the backend's kind to record (KEY=VALUE)")
	fs.BoolVar(&f.fromPVs, "from-pvs", false, "adopt the cluster's NFS PVs on the Isilon backend")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (--from-pvs)")
	fs.StringSliceVar(&f.servers, "nfs-server", nil, "NFS server names the legacy PVs use for the backend (default: its nfsServer)")
	fs.BoolVar(&f.apply, "apply", false, "with --from-pvs: adopt and re-bind (without: only list what would be done)")
	return cmd
}

func runImport(ctx context.Context, f *importFlags, args []string, stdout, stderr io.Writer) int {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := f.check(args); err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\nRun 'shipholdctl import --help' for usage.\n", err)
		return 2
	}
	cfg, err := config.Load(f.config, registry.Sections())
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return 1
	}
	ctrls, closeAll, err := openBackends(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return 1
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	ctrl, ok := ctrls[f.backend]
	if !ok {
		fmt.Fprintf(stderr, "shipholdctl import: backend %q is not in the config\n", f.backend)
		return 1
	}
	params, code, err := f.recordedParams(ctx, ctrl.Kind())
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return code
	}
	if f.fromPVs {
		return f.runFromPVs(ctx, cfg, ctrls, params, stdout, stderr)
	}
	return f.runOne(ctx, ctrls, args[0], params, stdout, stderr)
}

func (f *importFlags) check(args []string) error {
	switch {
	case f.backend == "":
		return errors.New("--backend is required")
	case f.fromPVs && (len(args) > 0 || f.kubeconfig == ""):
		return errors.New("--from-pvs takes no OBJECT and needs --kubeconfig")
	case !f.fromPVs && (len(args) != 1 || f.tenant == ""):
		return errors.New("import needs one OBJECT and --tenant (or --from-pvs)")
	case !f.fromPVs && f.apply:
		return errors.New("--apply goes with --from-pvs; a single import prints its PV and PVC to apply")
	}
	return nil
}

// runOne adopts one object and prints its PV and PVC.
func (f *importFlags) runOne(ctx context.Context, ctrls map[string]backend.Controller, object string, params map[string]string, stdout, stderr io.Writer) int {
	var size int64
	if f.size != "" {
		var err error
		if size, err = parseSize(f.size); err != nil {
			fmt.Fprintf(stderr, "shipholdctl import: --size: %v\n", err)
			return 2
		}
	}
	name := f.name
	if name == "" {
		name = object
	}
	ctrl, ok := ctrls[f.backend]
	if !ok {
		fmt.Fprintf(stderr, "shipholdctl import: backend %q is not in the config\n", f.backend)
		return 1
	}
	claim, err := f.claim(registry.Kinds()[ctrl.Kind()], object)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return 2
	}
	v, err := adopt.Adopt(ctx, ctrls, adopt.Request{Backend: f.backend, AdoptRequest: backend.AdoptRequest{
		Object: object, Tenant: f.tenant, Name: name, SizeBytes: size, Parameters: params}})
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return 1
	}
	out, err := adopt.Manifests(v, claim)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "adopted %s on %s as volume %s (%d bytes)\n", object, f.backend, v.ID, v.CapacityBytes)
	if claim.NodeStageSecret == nil && registry.Kinds()[ctrl.Kind()].TenantIdentity {
		fmt.Fprintf(stderr, "note: an adopted Ceph volume outside its tenant's place is published without the tenant's identity, and nodes hold no key: name the Secret its node stages it with (--node-stage-secret NS/NAME), or migrate it into the tenant's place\n")
	}
	fmt.Fprint(stdout, string(out))
	return 0
}

// claim is how the printed PV and PVC look, from the flags and what the backend's kind serves.
func (f *importFlags) claim(caps backend.Capabilities, object string) (adopt.Claim, error) {
	c := adopt.Claim{Namespace: f.tenant, Name: object[strings.LastIndex(object, "/")+1:], StorageClass: f.class, Block: f.block,
		AccessMode: corev1.PersistentVolumeAccessMode(f.accessMode), ReclaimPolicy: corev1.PersistentVolumeReclaimPolicy(f.policy)}
	if f.pvc != "" {
		ref, err := parsePVCRef(f.pvc)
		if err != nil {
			return c, err
		}
		c.Namespace, c.Name = ref.Namespace, ref.Name
	}
	if f.nodeStageSecret != "" {
		ns, name, ok := strings.Cut(f.nodeStageSecret, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return c, fmt.Errorf("--node-stage-secret %q: want NAMESPACE/NAME", f.nodeStageSecret)
		}
		c.NodeStageSecret = &corev1.SecretReference{Namespace: ns, Name: name}
	}
	if c.AccessMode == "" {
		c.AccessMode = corev1.ReadWriteMany
		if !caps.SharedFilesystem {
			c.AccessMode = corev1.ReadWriteOnce
		}
	}
	if caps.FsTypes != nil && !f.block {
		c.FsType = f.fsType
		if c.FsType == "" {
			c.FsType = caps.FsTypes[0]
		}
	}
	if c.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain && c.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return c, fmt.Errorf("--reclaim-policy %q: want Retain or Delete", f.policy)
	}
	return c, nil
}

// runFromPVs lists the legacy NFS PVs and, with --apply, adopts and re-binds each one that
// can be; exit 1 when any failed, 3 when some were left alone under --apply.
func (f *importFlags) runFromPVs(ctx context.Context, cfg *config.Config, ctrls map[string]backend.Controller, params map[string]string, stdout, stderr io.Writer) int {
	var isi *isilon.Config
	if b, ok := cfg.Backend(f.backend); ok {
		isi, _ = b.Section.(*isilon.Config)
	}
	if isi == nil {
		fmt.Fprintf(stderr, "shipholdctl import: --from-pvs needs an isilon backend; %q is not one\n", f.backend)
		return 2
	}
	client, err := newKubeClient(f.kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return 1
	}
	fp := &adopt.FromPVs{Client: client, Controllers: ctrls, Backend: f.backend, Servers: f.legacyServers(isi, params), Parameters: params, Log: stderr}
	found, err := fp.Find(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
		return 1
	}
	printLegacy(stdout, found, f.apply)
	if !f.apply {
		return 0
	}
	return applyLegacy(ctx, fp, found, stdout, stderr)
}

func applyLegacy(ctx context.Context, fp *adopt.FromPVs, found []adopt.Legacy, stdout, stderr io.Writer) int {
	failed, refused := false, false
	for _, l := range found {
		switch {
		case l.Done != "":
			continue
		case l.Refusal != "":
			fmt.Fprintf(stderr, "shipholdctl import: PV %s left alone: %s\n", l.PV, l.Refusal)
			refused = true
			continue
		}
		v, err := fp.Apply(ctx, l)
		if err != nil {
			fmt.Fprintf(stderr, "shipholdctl import: %v\n", err)
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "adopted PV %s: claim %s is on PV %s (volume %s); %s is retained\n", l.PV, l.Claim, adopt.PVName(v), v.ID, l.PV)
	}
	switch {
	case failed:
		return 1
	case refused:
		return 3
	}
	return 0
}

func printLegacy(stdout io.Writer, found []adopt.Legacy, apply bool) {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PV\tCLAIM\tPATH\tSIZE\tSTATUS")
	for _, l := range found {
		status := "adoptable"
		switch {
		case l.Done != "":
			status = "adopted already: claim on " + l.Done
		case l.Refusal != "":
			status = "refused: " + l.Refusal
		}
		claim := "-"
		if l.Claim.Name != "" {
			claim = l.Claim.String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.PV, claim, l.Path, humanBytes(l.CapacityBytes), status)
	}
	w.Flush()
	if !apply {
		fmt.Fprintf(stdout, "%d PVs; nothing changed (run again with --apply to adopt and re-bind the adoptable ones)\n", len(found))
	}
}
