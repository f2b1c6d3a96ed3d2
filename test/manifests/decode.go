package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Scheme knows every built-in API type plus the external-snapshotter v1 and the Prometheus
// Operator monitoring v1 types.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := snapshotv1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// Object is one decoded YAML document and where it came from.
type Object struct {
	Source string // file:index
	GVK    schema.GroupVersionKind
	Obj    runtime.Object
}

// SplitDocuments returns the non-empty YAML documents of a multi-document stream.
func SplitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := string(bytes.TrimSpace(j)); s == "null" || s == "" {
			continue // only comments or separators
		}
		docs = append(docs, doc)
	}
}

// DecodeStrict decodes one document into the Go type its apiVersion/kind name. An unknown
// kind, an unknown or misplaced field, a duplicate field or a wrong type is an error.
func DecodeStrict(doc []byte) (runtime.Object, schema.GroupVersionKind, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, schema.GroupVersionKind{}, err
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, schema.GroupVersionKind{}, fmt.Errorf("document lacks apiVersion or kind")
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, schema.GroupVersionKind{}, err
	}
	gvk := gv.WithKind(tm.Kind)
	obj, err := Scheme.New(gvk)
	if err != nil {
		return nil, gvk, fmt.Errorf("unknown type %s: %w", gvk, err)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, gvk, fmt.Errorf("%s: %w", gvk.Kind, err)
	}
	return obj, gvk, nil
}

// DecodeStream strictly decodes every document of data; source names it in errors.
func DecodeStream(source string, data []byte) ([]Object, error) {
	docs, err := SplitDocuments(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var objs []Object
	for i, doc := range docs {
		obj, gvk, err := DecodeStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", source, i, err)
		}
		objs = append(objs, Object{Source: fmt.Sprintf("%s:%d", source, i), GVK: gvk, Obj: obj})
	}
	return objs, nil
}

// DecodeFile is DecodeStream on a file.
func DecodeFile(path string) ([]Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeStream(path, data)
}
