// Command nodeleftovers checks, after the end-to-end tests (hack/e2e.sh), that the node holds
// nothing of the run: containers of a containerd that is gone, mounts, loop devices and mount
// daemons of volumes below the kubelet directory. It removes what it finds and exits 1 then,
// so a run that failed or timed out before its cleanups still leaves the machine clean.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/shiphold/shiphold/test/e2e/k8s"
)

func main() {
	kubeletDir := flag.String("kubelet-dir", "/var/lib/kubelet", "the e2e node's kubelet root directory")
	flag.Parse()
	st, err := k8s.FindStaleNode(*kubeletDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e node leftovers: %v\n", err)
		os.Exit(1)
	}
	if st.Empty() {
		fmt.Println("e2e node leftovers: none")
		return
	}
	fmt.Printf("e2e node leftovers: FAIL %s\n", st)
	if err := st.Clean(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e node leftovers: removing them: %v\n", err)
	}
	if after, err := k8s.FindStaleNode(*kubeletDir); err == nil && !after.Empty() {
		fmt.Printf("e2e node leftovers: still there after removal: %s\n", after)
	}
	os.Exit(1)
}
