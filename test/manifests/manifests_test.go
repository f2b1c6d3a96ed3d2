package manifests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

const (
	repoRoot    = "../.."
	releaseName = "shiphold"
	namespace   = "shiphold"
)

var (
	plainDir = filepath.Join(repoRoot, "deploy", "kubernetes")
	chartDir = filepath.Join(repoRoot, "deploy", "helm", "shiphold")
)

func plainObjects(t *testing.T) []Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(plainDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", plainDir, err)
	}
	var all []Object
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		objs, err := DecodeFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, objs...)
	}
	return all
}

func chartObjects(t *testing.T, vals map[string]any) []Object {
	t.Helper()
	out, err := RenderChart(chartDir, releaseName, namespace, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	objs, err := DecodeStream("chart", []byte(out))
	if err != nil {
		t.Fatalf("rendered chart: %v", err)
	}
	return objs
}

func key(o Object) string {
	m := o.Obj.(interface{ GetName() string })
	return o.GVK.Kind + "/" + m.GetName()
}

func byKey(t *testing.T, objs []Object) map[string]Object {
	t.Helper()
	m := map[string]Object{}
	for _, o := range objs {
		k := key(o)
		if prev, dup := m[k]; dup {
			t.Errorf("%s defined twice: %s and %s", k, prev.Source, o.Source)
		}
		m[k] = o
	}
	return m
}

// --- strict decoding ---------------------------------------------------------------

// Every YAML document under deploy/ (but Helm templates, which are not YAML until rendered)
// decodes strictly into its type.
func TestDeployYAMLDecodesStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "templates" {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name := filepath.Base(path)
		if filepath.Base(filepath.Dir(path)) == "examples" {
			name = "values.yaml" // the chart's example values files
		}
		switch name {
		case "kustomization.yaml":
			var k kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		case "Chart.yaml":
			var md chart.Metadata
			if err := yaml.UnmarshalStrict(data, &md); err != nil {
				t.Errorf("%s: %v", path, err)
			} else if err := md.Validate(); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		case "values.yaml":
			var v map[string]any
			if err := yaml.UnmarshalStrict(data, &v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		default:
			objs, err := DecodeStream(path, data)
			if err != nil {
				t.Error(err)
			}
			n += len(objs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Errorf("decoded only %d Kubernetes objects under deploy/", n)
	}
	t.Logf("%d Kubernetes objects decoded strictly", n)
}

// The decoder must be able to say no, or the test above proves nothing.
func TestStrictDecoderRejects(t *testing.T) {
	testCases := []struct {
		name, doc, wantErr string
	}{
		{name: "unknown field", wantErr: "unknown field", doc: `
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: x}
spec: {attachRequired: true, attachRequird: false}`},
		{name: "field at the wrong level", wantErr: "unknown field", doc: `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      imagePullPolicy: Always
      containers: [{name: c, image: i}]`},
		{name: "duplicate field", wantErr: "already set", doc: `
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: {a: "1"}
data: {b: "2"}`},
		{name: "wrong type", wantErr: "cannot unmarshal", doc: `
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: x}
provisioner: shiphold.csi.io
allowVolumeExpansion: "yes"`},
		{name: "snapshot class unknown field", wantErr: "unknown field", doc: `
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: x}
driver: shiphold.csi.io
deletionPolicy: Delete
deletePolicy: Retain`},
		{name: "unknown kind", wantErr: "unknown type", doc: `
apiVersion: storage.k8s.io/v1
kind: StorageKlass
metadata: {name: x}`},
		{name: "no kind", wantErr: "lacks apiVersion or kind", doc: `
metadata: {name: x}`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeStrict([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeStrict error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// and the well-formed version of the first case passes
	if _, _, err := DecodeStrict([]byte("apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: x}\nspec: {attachRequired: true}\n")); err != nil {
		t.Fatalf("valid CSIDriver rejected: %v", err)
	}
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(plainDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(plainDir, "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kustomization resources differ from the files (-files +listed):\n%s", diff)
	}
}

// --- what the manifests must say ------------------------------------------------------

func TestPlainManifestsContract(t *testing.T) {
	objs := byKey(t, plainObjects(t))
	get := func(k string) runtime.Object {
		o, ok := objs[k]
		if !ok {
			t.Fatalf("missing %s", k)
		}
		return o.Obj
	}

	drv := get("CSIDriver/shiphold.csi.io").(*storagev1.CSIDriver)
	if drv.Spec.AttachRequired == nil || !*drv.Spec.AttachRequired {
		t.Error("CSIDriver: attachRequired must be true (Isilon ControllerPublish)")
	}
	if drv.Spec.PodInfoOnMount == nil || *drv.Spec.PodInfoOnMount {
		t.Error("CSIDriver: podInfoOnMount must be false")
	}
	if !slices.Equal(drv.Spec.VolumeLifecycleModes, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}) {
		t.Errorf("CSIDriver: volumeLifecycleModes = %v", drv.Spec.VolumeLifecycleModes)
	}

	ctrl := get("Deployment/shiphold-controller").(*appsv1.Deployment)
	ps := ctrl.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Error("controller: pod must runAsNonRoot")
	}
	if ps.ServiceAccountName != "shiphold-controller" {
		t.Errorf("controller: serviceAccountName = %q", ps.ServiceAccountName)
	}
	wantCtrl := []string{"shiphold-csi", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "liveness-probe"}
	if got := containerNames(ps); !slices.Equal(got, wantCtrl) {
		t.Errorf("controller containers = %v, want %v", got, wantCtrl)
	}
	if args := container(t, ps, "csi-provisioner").Args; !slices.Contains(args, "--extra-create-metadata") {
		t.Errorf("csi-provisioner args %v lack --extra-create-metadata (tenant = PVC namespace)", args)
	}
	if args := container(t, ps, "shiphold-csi").Args; !slices.Contains(args, "--mode=controller") {
		t.Errorf("controller driver args = %v", args)
	}

	node := get("DaemonSet/shiphold-node").(*appsv1.DaemonSet)
	ns := node.Spec.Template.Spec
	if !ns.HostNetwork {
		t.Error("node: hostNetwork must be true")
	}
	if ns.ServiceAccountName != "shiphold-node" || ns.ServiceAccountName == ps.ServiceAccountName {
		t.Errorf("node: serviceAccountName = %q, want its own", ns.ServiceAccountName)
	}
	drvNode := container(t, ns, "shiphold-csi")
	if sc := drvNode.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("node: driver must be privileged")
	}
	if !slices.Contains(drvNode.Args, "--mode=node") {
		t.Errorf("node driver args = %v", drvNode.Args)
	}
	bidi := false
	for _, m := range drvNode.VolumeMounts {
		if m.MountPath == "/var/lib/kubelet" && m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			bidi = true
		}
	}
	if !bidi {
		t.Error("node: /var/lib/kubelet must be mounted with Bidirectional propagation")
	}
	hostPaths := map[string]bool{}
	for _, v := range ns.Volumes {
		if v.HostPath != nil {
			hostPaths[v.HostPath.Path] = true
		}
	}
	for _, p := range []string{"/dev", "/sys", "/lib/modules", "/run/mount", "/var/lib/kubelet",
		"/var/lib/kubelet/plugins_registry", "/var/lib/kubelet/plugins/shiphold.csi.io"} {
		if !hostPaths[p] {
			t.Errorf("node: no hostPath volume for %s", p)
		}
	}
	reg := container(t, ns, "node-driver-registrar")
	if !slices.Contains(reg.Args, "--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)") || envValue(reg, "DRIVER_REG_SOCK_PATH") != "/var/lib/kubelet/plugins/shiphold.csi.io/csi.sock" {
		t.Errorf("node-driver-registrar does not register /var/lib/kubelet/plugins/shiphold.csi.io/csi.sock: %v %v", reg.Args, reg.Env)
	}

	for _, backend := range []string{"rbd", "cephfs", "isilon"} {
		sc := get("StorageClass/shiphold-" + backend).(*storagev1.StorageClass)
		if sc.Provisioner != "shiphold.csi.io" || sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion || sc.Parameters["backend"] == "" {
			t.Errorf("StorageClass %s: provisioner %q, allowVolumeExpansion %v, backend %q", sc.Name, sc.Provisioner, sc.AllowVolumeExpansion, sc.Parameters["backend"])
		}
		vsc := get("VolumeSnapshotClass/shiphold-" + backend).(*snapshotv1.VolumeSnapshotClass)
		if vsc.Driver != "shiphold.csi.io" || vsc.Parameters["backend"] != sc.Parameters["backend"] {
			t.Errorf("VolumeSnapshotClass %s: driver %q backend %q", vsc.Name, vsc.Driver, vsc.Parameters["backend"])
		}
	}
}

// Every secret a class names exists, with the keys its backend kind reads.
func TestClassSecretsExist(t *testing.T) {
	objs := byKey(t, plainObjects(t))
	for _, o := range objs {
		var params map[string]string
		var backend string
		switch c := o.Obj.(type) {
		case *storagev1.StorageClass:
			params, backend = c.Parameters, c.Parameters["backend"]
		case *snapshotv1.VolumeSnapshotClass:
			params, backend = c.Parameters, c.Parameters["backend"]
		default:
			continue
		}
		wantKeys := []string{"userID", "userKey"}
		if backend == "isilon" {
			wantKeys = []string{"username", "password"}
		}
		for p, name := range params {
			if !strings.HasSuffix(p, "-secret-name") {
				continue
			}
			s, ok := objs["Secret/"+name]
			if !ok {
				t.Errorf("%s: %s names missing Secret %s", key(o), p, name)
				continue
			}
			for _, k := range wantKeys {
				if _, ok := s.Obj.(*corev1.Secret).StringData[k]; !ok {
					t.Errorf("Secret %s (for %s) lacks key %s", name, key(o), k)
				}
			}
		}
	}
}

// Pod specs refer only to volumes, env vars and ports they define.
func TestPodSpecsAreSelfConsistent(t *testing.T) {
	check := func(t *testing.T, objs []Object) {
		for _, o := range objs {
			var ps *corev1.PodSpec
			switch w := o.Obj.(type) {
			case *appsv1.Deployment:
				ps = &w.Spec.Template.Spec
			case *appsv1.DaemonSet:
				ps = &w.Spec.Template.Spec
			default:
				continue
			}
			vols := map[string]bool{}
			for _, v := range ps.Volumes {
				vols[v.Name] = true
			}
			ref := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
			for _, c := range ps.Containers {
				for _, m := range c.VolumeMounts {
					if !vols[m.Name] {
						t.Errorf("%s container %s mounts undefined volume %s", key(o), c.Name, m.Name)
					}
				}
				for _, a := range c.Args {
					for _, r := range ref.FindAllStringSubmatch(a, -1) {
						if envValue(c, r[1]) == "" && !hasEnv(c, r[1]) {
							t.Errorf("%s container %s arg %q uses undefined env %s", key(o), c.Name, a, r[1])
						}
					}
				}
				if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil {
					port := c.LivenessProbe.HTTPGet.Port.String()
					found := false
					for _, p := range c.Ports {
						found = found || p.Name == port
					}
					if !found {
						t.Errorf("%s container %s probes undefined port %s", key(o), c.Name, port)
					}
				}
			}
		}
	}
	t.Run("plain", func(t *testing.T) { check(t, plainObjects(t)) })
	t.Run("chart", func(t *testing.T) { check(t, chartObjects(t, nil)) })
}

// --- Helm ---------------------------------------------------------------------------

func TestChartLint(t *testing.T) {
	linter := lint.All(chartDir, nil, namespace, false)
	for _, m := range linter.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		} else {
			t.Logf("helm lint: %s", m)
		}
	}
	if len(linter.Messages) == 0 && linter.HighestSeverity != 0 {
		t.Errorf("helm lint: severity %d without messages", linter.HighestSeverity)
	}
}

func TestChartLintCatchesBrokenChart(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, chartDir, dir)
	tpl := filepath.Join(dir, "templates", "broken.yaml")
	if err := os.WriteFile(tpl, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.deeper }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l := lint.All(dir, nil, namespace, false); l.HighestSeverity < support.ErrorSev {
		t.Fatalf("helm lint passed a chart that cannot render: %v", l.Messages)
	}
}

func TestChartRendersStrictly(t *testing.T) {
	objs := chartObjects(t, nil)
	if len(objs) < 20 {
		t.Errorf("chart rendered only %d objects", len(objs))
	}
}

func TestChartRequiresBackendOnClasses(t *testing.T) {
	_, err := RenderChart(chartDir, releaseName, namespace, map[string]any{
		"storageClasses": []any{map[string]any{"name": "no-backend"}},
	})
	if err == nil || !strings.Contains(err.Error(), "backend is required") {
		t.Fatalf("render error = %v, want backend is required", err)
	}
}

func TestChartValuesApply(t *testing.T) {
	objs := byKey(t, chartObjects(t, map[string]any{
		"images": map[string]any{"driver": map[string]any{"repository": "example.org/shiphold", "tag": "dev"}},
		"node": map[string]any{
			"nodeSelector": map[string]any{"storage": "yes"},
			"tolerations":  []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "storage", "effect": "NoSchedule"}},
		},
		"controller": map[string]any{"replicas": 3, "nodeSelector": map[string]any{"role": "infra"}},
		"kubeletDir": "/var/data/kubelet",
		"config":     map[string]any{"backends": []any{map[string]any{"name": "only", "kind": "rbd"}}},
	}))
	ds := objs["DaemonSet/shiphold-node"].Obj.(*appsv1.DaemonSet)
	if got := container(t, ds.Spec.Template.Spec, "shiphold-csi").Image; got != "example.org/shiphold:dev" {
		t.Errorf("node image = %q", got)
	}
	if ds.Spec.Template.Spec.NodeSelector["storage"] != "yes" || len(ds.Spec.Template.Spec.Tolerations) != 1 {
		t.Errorf("node scheduling = %v %v", ds.Spec.Template.Spec.NodeSelector, ds.Spec.Template.Spec.Tolerations)
	}
	reg := container(t, ds.Spec.Template.Spec, "node-driver-registrar")
	if got := envValue(reg, "DRIVER_REG_SOCK_PATH"); got != "/var/data/kubelet/plugins/shiphold.csi.io/csi.sock" {
		t.Errorf("registration path with kubeletDir = %q", got)
	}
	dep := objs["Deployment/shiphold-controller"].Obj.(*appsv1.Deployment)
	if *dep.Spec.Replicas != 3 || dep.Spec.Template.Spec.NodeSelector["role"] != "infra" {
		t.Errorf("controller replicas %d nodeSelector %v", *dep.Spec.Replicas, dep.Spec.Template.Spec.NodeSelector)
	}
	cm := objs["ConfigMap/shiphold-config"].Obj.(*corev1.ConfigMap)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if b := cfg["backends"].([]any); len(b) != 1 || b[0].(map[string]any)["name"] != "only" {
		t.Errorf("config backends = %v", cfg["backends"])
	}
}

// The chart renders the same objects as deploy/kubernetes: same images, container args and
// RBAC rules (checked one by one for readable failures), and then every object whole, once
// labels, the config checksum and the Namespace (helm's --create-namespace) are set aside.
func TestChartMatchesPlainManifests(t *testing.T) {
	plain := byKey(t, plainObjects(t))
	delete(plain, "Namespace/shiphold")
	rendered := byKey(t, chartObjects(t, nil))

	var plainKeys, chartKeys []string
	for k := range plain {
		plainKeys = append(plainKeys, k)
	}
	for k := range rendered {
		chartKeys = append(chartKeys, k)
	}
	sort.Strings(plainKeys)
	sort.Strings(chartKeys)
	if diff := cmp.Diff(plainKeys, chartKeys); diff != "" {
		t.Fatalf("object sets differ (-plain +chart):\n%s", diff)
	}

	for _, k := range plainKeys {
		p, c := plain[k].Obj, rendered[k].Obj
		t.Run(k, func(t *testing.T) {
			switch p := p.(type) {
			case *appsv1.Deployment:
				compareContainers(t, p.Spec.Template.Spec, c.(*appsv1.Deployment).Spec.Template.Spec)
			case *appsv1.DaemonSet:
				compareContainers(t, p.Spec.Template.Spec, c.(*appsv1.DaemonSet).Spec.Template.Spec)
			case *rbacv1.ClusterRole:
				if diff := cmp.Diff(p.Rules, c.(*rbacv1.ClusterRole).Rules); diff != "" {
					t.Errorf("rules (-plain +chart):\n%s", diff)
				}
			case *rbacv1.Role:
				if diff := cmp.Diff(p.Rules, c.(*rbacv1.Role).Rules); diff != "" {
					t.Errorf("rules (-plain +chart):\n%s", diff)
				}
			}
			if diff := cmp.Diff(normalize(t, p), normalize(t, c)); diff != "" {
				t.Errorf("object (-plain +chart):\n%s", diff)
			}
		})
	}
}

func compareContainers(t *testing.T, p, c corev1.PodSpec) {
	t.Helper()
	if !slices.Equal(containerNames(p), containerNames(c)) {
		t.Errorf("containers: plain %v chart %v", containerNames(p), containerNames(c))
		return
	}
	for i := range p.Containers {
		pc, cc := p.Containers[i], c.Containers[i]
		if pc.Image != cc.Image {
			t.Errorf("container %s image: plain %q chart %q", pc.Name, pc.Image, cc.Image)
		}
		if diff := cmp.Diff(pc.Args, cc.Args); diff != "" {
			t.Errorf("container %s args (-plain +chart):\n%s", pc.Name, diff)
		}
	}
}

// normalize turns an object into generic JSON without the parts that legitimately differ:
// labels (helm adds its own), the pod template's config checksum, and the config file's
// key order (compared parsed).
func normalize(t *testing.T, obj runtime.Object) map[string]any {
	t.Helper()
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "labels")
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if tpl, ok := spec["template"].(map[string]any); ok {
			if md, ok := tpl["metadata"].(map[string]any); ok {
				delete(md, "annotations")
			}
		}
	}
	if data, ok := m["data"].(map[string]any); ok {
		if cfg, ok := data["config.yaml"].(string); ok {
			var parsed any
			if err := yaml.Unmarshal([]byte(cfg), &parsed); err != nil {
				t.Fatalf("config.yaml: %v", err)
			}
			data["config.yaml"] = parsed
		}
	}
	return m
}

// --- helpers --------------------------------------------------------------------------

func containerNames(ps corev1.PodSpec) []string {
	var n []string
	for _, c := range ps.Containers {
		n = append(n, c.Name)
	}
	return n
}

func container(t *testing.T, ps corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range ps.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func hasEnv(c corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
