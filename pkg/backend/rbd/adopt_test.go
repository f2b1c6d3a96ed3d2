package rbd

import (
	"testing"

	"github.com/shiphold/shiphold/pkg/volid"
)

func TestAdoptedImagePlace(t *testing.T) {
	own := volid.Volume{Backend: "rbd", Tenant: "shop", Location: "2", Hash: volid.Hash("pvc-1")}
	def, _ := volid.Adopted("rbd", "shop", "2", "/csi-vol-0a1b")
	inNS, _ := volid.Adopted("rbd", "shop", "2", "legacy/site")
	for _, tc := range []struct {
		id        volid.Volume
		ns, image string
	}{{own, "shop", imageName(own.Hash)}, {def, "", "csi-vol-0a1b"}, {inNS, "legacy", "site"}} {
		if ns, img := volumeNamespace(tc.id), volumeImage(tc.id); ns != tc.ns || img != tc.image {
			t.Errorf("%s: namespace %q image %q, want %q %q", tc.id, ns, img, tc.ns, tc.image)
		}
	}
}

// The mgr refuses "pool//image": an image of the default namespace is "pool/image".
func TestTaskSpecOfTheDefaultNamespace(t *testing.T) {
	if got := rbdSpec("rbd", "", "10667d2680cf"); got != "rbd/10667d2680cf" {
		t.Fatalf("rbdSpec in the default namespace = %q", got)
	}
	if got := rbdSpec("rbd", "shop", "img"); got != "rbd/shop/img" {
		t.Fatalf("rbdSpec in a namespace = %q", got)
	}
}
