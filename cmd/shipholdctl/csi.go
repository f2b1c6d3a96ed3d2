package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// kvFlag collects repeated k=v flags.
type kvFlag map[string]string

func (f kvFlag) String() string { return fmt.Sprint(map[string]string(f)) }
func (f kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	f[k] = v
	return nil
}

// parseSize reads 1Gi, 512Mi, 10G or plain bytes.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("size %q: want a number with an optional unit (Mi, Gi, ...)", s)
			}
			return v * u.mult, nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (Mi, Gi, ...)", s)
	}
	return v, nil
}

func capability(block bool, fsType string, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	if block {
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}}
	}
	return c
}

func runCSI(args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("csi", flag.ContinueOnError)
	global.SetOutput(stderr)
	endpoint := global.String("endpoint", "unix:///var/lib/kubelet/plugins/shiphold.csi.io/csi.sock", "plugin endpoint")
	timeout := global.Duration("timeout", 2*time.Minute, "deadline of each call")
	if err := global.Parse(args); err != nil {
		return 2
	}
	if global.NArg() == 0 {
		fmt.Fprint(stderr, csiUsage)
		return 2
	}
	cmd, rest := global.Arg(0), global.Args()[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		name, backendName, volumeID, snapshotID, nodeID = fs.String("name", "", "request name"), fs.String("backend", "", "backend name"), fs.String("volume-id", "", "volume ID"), fs.String("snapshot-id", "", "snapshot ID"), fs.String("node-id", "", "node ID (name@address)")
		size, namespace, fsType                         = fs.String("size", "1Gi", "capacity"), fs.String("namespace", "", "tenant (PVC namespace)"), fs.String("fstype", "", "filesystem type")
		stagingPath, targetPath, path                   = fs.String("staging-path", "", "staging path"), fs.String("target-path", "", "target path"), fs.String("path", "", "volume path")
		block, readonly, multi                          = fs.Bool("block", false, "raw block access"), fs.Bool("readonly", false, "read-only"), fs.Bool("multi-node", false, "multi-node multi-writer access")
		fromSnap, fromVol                               = fs.String("from-snapshot", "", "source snapshot ID"), fs.String("from-volume", "", "source volume ID")
		params, volCtx                                  = kvFlag{}, kvFlag{}
	)
	fs.Var(params, "param", "StorageClass parameter key=value (repeatable)")
	fs.Var(volCtx, "context", "volume context key=value (repeatable; from create-volume)")
	volumeFile := fs.String("volume-file", "", "a saved create-volume response: sets --volume-id and the volume context")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if *volumeFile != "" {
		if err := loadVolumeFile(*volumeFile, fs, volCtx); err != nil {
			fmt.Fprintf(stderr, "shipholdctl csi %s: %v\n", cmd, err)
			return 2
		}
	}
	mode := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	if *multi {
		mode = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	}
	need := func(flags ...string) error {
		for _, f := range flags {
			if fs.Lookup(f).Value.String() == "" {
				return fmt.Errorf("%s needs --%s", cmd, f)
			}
		}
		return nil
	}

	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctrl, node, ident := csi.NewControllerClient(conn), csi.NewNodeClient(conn), csi.NewIdentityClient(conn)

	var resp proto.Message
	switch cmd {
	case "info":
		if err = info(ctx, ident, node, stdout); err == nil {
			return 0
		}
	case "create-volume":
		if err = need("name", "backend"); err != nil {
			break
		}
		var bytes int64
		if bytes, err = parseSize(*size); err != nil {
			break
		}
		params["backend"] = *backendName
		if *namespace != "" {
			params["csi.storage.k8s.io/pvc/namespace"] = *namespace
		}
		req := &csi.CreateVolumeRequest{Name: *name, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes}, Parameters: params,
			VolumeCapabilities: []*csi.VolumeCapability{capability(*block, *fsType, mode)}}
		switch {
		case *fromSnap != "":
			req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: *fromSnap}}}
		case *fromVol != "":
			req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: *fromVol}}}
		}
		resp, err = ctrl.CreateVolume(ctx, req)
	case "delete-volume":
		if err = need("volume-id"); err == nil {
			resp, err = ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: *volumeID})
		}
	case "list-volumes":
		resp, err = ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	case "expand-volume":
		if err = need("volume-id"); err != nil {
			break
		}
		var bytes int64
		if bytes, err = parseSize(*size); err == nil {
			resp, err = ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: *volumeID, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes}})
		}
	case "create-snapshot":
		if err = need("name", "volume-id"); err == nil {
			resp, err = ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: *name, SourceVolumeId: *volumeID})
		}
	case "delete-snapshot":
		if err = need("snapshot-id"); err == nil {
			resp, err = ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: *snapshotID})
		}
	case "list-snapshots":
		resp, err = ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: *volumeID})
	case "publish-controller":
		if err = need("volume-id", "node-id"); err == nil {
			resp, err = ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: *volumeID, NodeId: *nodeID,
				Readonly: *readonly, VolumeCapability: capability(*block, *fsType, mode), VolumeContext: volCtx})
		}
	case "unpublish-controller":
		if err = need("volume-id", "node-id"); err == nil {
			resp, err = ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: *volumeID, NodeId: *nodeID})
		}
	case "stage":
		if err = need("volume-id", "staging-path"); err == nil {
			resp, err = node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: *volumeID, StagingTargetPath: *stagingPath,
				VolumeCapability: capability(*block, *fsType, mode), VolumeContext: volCtx})
		}
	case "unstage":
		if err = need("volume-id", "staging-path"); err == nil {
			resp, err = node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: *volumeID, StagingTargetPath: *stagingPath})
		}
	case "publish":
		if err = need("volume-id", "staging-path", "target-path"); err == nil {
			resp, err = node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: *volumeID, StagingTargetPath: *stagingPath,
				TargetPath: *targetPath, Readonly: *readonly, VolumeCapability: capability(*block, *fsType, mode), VolumeContext: volCtx})
		}
	case "unpublish":
		if err = need("volume-id", "target-path"); err == nil {
			resp, err = node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: *volumeID, TargetPath: *targetPath})
		}
	case "stats":
		if err = need("volume-id", "path"); err == nil {
			resp, err = node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: *volumeID, VolumePath: *path})
		}
	case "capacity":
		p := map[string]string{}
		if *backendName != "" {
			p["backend"] = *backendName
		}
		resp, err = ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: p})
	default:
		fmt.Fprintf(stderr, "shipholdctl csi: unknown command %q\n\n%s", cmd, csiUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl csi %s: %v\n", cmd, err)
		return 1
	}
	out, _ := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: false}.Marshal(resp)
	fmt.Fprintln(stdout, string(out))
	return 0
}

// loadVolumeFile takes the volume ID and context from a saved create-volume response.
func loadVolumeFile(path string, fs *flag.FlagSet, volCtx kvFlag) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var resp csi.CreateVolumeResponse
	if err := protojson.Unmarshal(data, &resp); err != nil {
		return fmt.Errorf("%s is not a create-volume response: %v", path, err)
	}
	if resp.GetVolume().GetVolumeId() == "" {
		return fmt.Errorf("%s has no volume ID", path)
	}
	for k, v := range resp.GetVolume().GetVolumeContext() {
		if _, set := volCtx[k]; !set {
			volCtx[k] = v
		}
	}
	return fs.Set("volume-id", resp.GetVolume().GetVolumeId())
}

func info(ctx context.Context, ident csi.IdentityClient, node csi.NodeClient, stdout io.Writer) error {
	pi, err := ident.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		return err
	}
	out := map[string]any{"name": pi.GetName(), "version": pi.GetVendorVersion()}
	if ni, err := node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{}); err == nil {
		out["nodeID"] = ni.GetNodeId()
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, string(data))
	return err
}
