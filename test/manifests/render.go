package manifests

import (
	"io"
	"log"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
)

// RenderChart renders the chart at dir as `helm template NAME dir -n NAMESPACE` would, with
// vals merged over the chart's values.yaml, and returns the manifest stream.
func RenderChart(dir, name, namespace string, vals map[string]any) (string, error) {
	rel, err := render(dir, name, namespace, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

// RenderNotes renders the chart's NOTES.txt, what helm install prints afterwards.
func RenderNotes(dir, name, namespace string, vals map[string]any) (string, error) {
	rel, err := render(dir, name, namespace, vals)
	if err != nil {
		return "", err
	}
	return rel.Info.Notes, nil
}

func render(dir, name, namespace string, vals map[string]any) (*release.Release, error) {
	chrt, err := loader.Load(dir)
	if err != nil {
		return nil, err
	}
	cfg := &action.Configuration{Log: log.New(io.Discard, "", 0).Printf}
	install := action.NewInstall(cfg)
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = name
	install.Namespace = namespace
	kv, err := chartutil.ParseKubeVersion("v1.37.2")
	if err != nil {
		return nil, err
	}
	install.KubeVersion = kv
	install.APIVersions = chartutil.VersionSet{"snapshot.storage.k8s.io/v1"}
	if vals == nil {
		vals = map[string]any{}
	}
	return install.Run(chrt, vals)
}
