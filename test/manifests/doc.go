// Package manifests tests the deploy/ tree: every YAML document decodes strictly into its
// Kubernetes API type, the Helm chart lints and renders, and the chart renders the same
// images, container args and RBAC rules as the plain manifests.
//
// It is its own Go module so that helm and k8s.io/api stay out of the driver's go.mod.
package manifests
