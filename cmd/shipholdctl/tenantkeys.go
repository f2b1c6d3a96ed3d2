package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/shiphold/shiphold/pkg/backend/registry"
	"github.com/shiphold/shiphold/pkg/config"
	"github.com/shiphold/shiphold/pkg/volid"
)

// tenantKeyRotator is a backend whose tenants mount with identities of their own (rbd,
// cephfs).
type tenantKeyRotator interface {
	RotateTenantKey(ctx context.Context, tenant string) (bool, error)
}

// rotateKeyCommand is `tenants rotate-key TENANT`.
func rotateKeyCommand(stdout, stderr io.Writer) *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "rotate-key TENANT",
		Short: "give the tenant's Ceph identity on every Ceph backend a new key and revoke the old one",
		Long: `Gives the tenant's cephx identity (client.shiphold.<backend>.<tenant>) on every Ceph backend a new
key with the same caps, and revokes the old key at once. Mounts staged with the old key keep
working until they are remounted (see README, Tenant identities); the next ControllerPublishVolume
of a tenant volume hands the node the new key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if code := runRotateKey(f, args[0], stdout, stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	f.register(cmd.Flags(), time.Minute)
	return cmd
}

func runRotateKey(f *adminFlags, tenantName string, stdout, stderr io.Writer) int {
	if err := volid.ValidTenant(tenantName); err != nil {
		fmt.Fprintf(stderr, "shipholdctl tenants rotate-key: tenant %q: %v\n", tenantName, err)
		return 2
	}
	cfg, err := config.Load(f.config, registry.Sections())
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl tenants rotate-key: %v\n", err)
		return 1
	}
	ctrls, closeAll, err := openBackends(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shipholdctl tenants rotate-key: %v\n", err)
		return 1
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	names := make([]string, 0, len(ctrls))
	for n := range ctrls {
		names = append(names, n)
	}
	sort.Strings(names)
	code, ceph := 0, 0
	for _, n := range names {
		r, ok := ctrls[n].(tenantKeyRotator)
		if !ok {
			continue
		}
		ceph++
		switch rotated, err := r.RotateTenantKey(ctx, tenantName); {
		case err != nil:
			fmt.Fprintf(stderr, "backend %s: %v\n", n, err)
			code = 1
		case rotated:
			fmt.Fprintf(stdout, "backend %s: client.shiphold.%s.%s has a new key; the old one is revoked\n", n, n, tenantName)
		default:
			fmt.Fprintf(stdout, "backend %s: tenant %s has no identity here (no volume yet)\n", n, tenantName)
		}
	}
	if ceph == 0 {
		fmt.Fprintln(stderr, "shipholdctl tenants rotate-key: no Ceph backend in the config")
		return 1
	}
	return code
}
