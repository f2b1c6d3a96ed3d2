package cephfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ceph/go-ceph/cephfs/admin"

	"github.com/shiphold/shiphold/pkg/ceph"
)

// commander is what the controller needs of a Ceph connection, the backend.Handle of its
// backend.Storage: *ceph.Conn in production, a fake mgr in unit tests. Every command runs
// inside Do, which bounds it by the request.
type commander interface {
	admin.RadosCommander
	Do(ctx context.Context, fn func() error) error
	// The filesystem's tree through the connection's libcephfs mount: MDS requests, which
	// spare the single-threaded mgr volumes module.
	GetXattr(fs, path, name string) ([]byte, error)
	SetXattr(fs, path, name string, value []byte) error
	Subdirs(fs, path string) ([]string, error)
	DirVersion(fs, path string) (ceph.DirVersion, error)
	FindSubdir(fs, path string, match func(name string) bool) (string, error)
	MakeDirs(fs, path string) error
	RemoveDir(fs, path string) error
	RemoveXattr(fs, path, name string) error
}

// cephCommandError is a failed mon/mgr command: the negative errno and Ceph's status text.
type cephCommandError struct {
	errno  int
	status string
}

func (e *cephCommandError) Error() string {
	return fmt.Sprintf("%s (errno %d)", e.status, -e.errno)
}

func (e *cephCommandError) ErrorCode() int { return e.errno }

// mgrCommand sends one JSON command to the mgr. It is used where go-ceph v0.37.0 gets the
// command wrong against Ceph 16.2 (clone target group, resize result) or lacks it under the
// pacific build tag (subvolume metadata).
func mgrCommand(conn commander, cmd map[string]any) ([]byte, error) {
	buf, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	out, status, err := conn.MgrCommand([][]byte{buf})
	if err != nil {
		var ce interface{ ErrorCode() int }
		if errors.As(err, &ce) {
			return nil, &cephCommandError{errno: ce.ErrorCode(), status: status}
		}
		return nil, fmt.Errorf("%v: %s", err, status)
	}
	return out, nil
}

// cloneSubvolumeSnapshot starts a clone of group/subvolume@snapshot into targetGroup.
// go-ceph v0.37.0's CloneSubVolumeSnapshot sends the source group as target_group_name, so
// a clone into another tenant's group would land in the source group; we send it ourselves.
func cloneSubvolumeSnapshot(conn commander, fs, group, subvolume, snapshot, targetGroup, target string) error {
	_, err := mgrCommand(conn, map[string]any{
		"prefix": "fs subvolume snapshot clone", "format": "json",
		"vol_name": fs, "group_name": group, "sub_name": subvolume, "snap_name": snapshot,
		"target_sub_name": target, "target_group_name": targetGroup,
	})
	return err
}

// resizeSubvolume sets the subvolume quota. Ceph 16.2 answers a list of one-key objects
// ([{"bytes_used":..},{"bytes_quota":..},..]) that go-ceph v0.37.0's ResizeSubVolume reads
// as a zero quota (and would panic on an empty list), so callers re-read the size with
// SubVolumeInfo instead of trusting the answer.
func resizeSubvolume(conn commander, fs, group, sub string, bytes int64, noShrink bool) error {
	_, err := mgrCommand(conn, map[string]any{
		"prefix": "fs subvolume resize", "format": "json",
		"vol_name": fs, "group_name": group, "sub_name": sub,
		"new_size": strconv.FormatInt(bytes, 10), "no_shrink": noShrink,
	})
	return err
}

// setMetadata sets one subvolume metadata key (Ceph >= 16.2.7; go-ceph only offers it
// without the pacific tag).
func setMetadata(conn commander, fs, group, sub, key, value string) error {
	_, err := mgrCommand(conn, map[string]any{
		"prefix": "fs subvolume metadata set", "format": "json",
		"vol_name": fs, "group_name": group, "sub_name": sub,
		"key_name": key, "value": value,
	})
	return err
}

// removeMetadata removes one subvolume metadata key; a missing key is not an error.
func removeMetadata(conn commander, fs, group, sub, key string) error {
	_, err := mgrCommand(conn, map[string]any{
		"prefix": "fs subvolume metadata rm", "format": "json",
		"vol_name": fs, "group_name": group, "sub_name": sub,
		"key_name": key, "force": true,
	})
	return err
}

// listMetadata reads all of a subvolume's metadata.
func listMetadata(conn commander, fs, group, sub string) (map[string]string, error) {
	out, err := mgrCommand(conn, map[string]any{
		"prefix": "fs subvolume metadata ls", "format": "json",
		"vol_name": fs, "group_name": group, "sub_name": sub,
	})
	if err != nil {
		return nil, err
	}
	kv := map[string]string{}
	if len(out) > 0 {
		if err := json.Unmarshal(out, &kv); err != nil {
			return nil, fmt.Errorf("subvolume %s/%s metadata: %w", group, sub, err)
		}
	}
	return kv, nil
}
