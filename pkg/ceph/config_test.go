package ceph

import "testing"

func TestClusterValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Cluster
		want string
	}{
		{"complete", Cluster{ClusterID: "c", Monitors: []string{"m:6789"}, Credentials: DefaultCredentials{UserID: "u", KeyFile: "/k"}}, ""},
		{"no cluster ID", Cluster{Monitors: []string{"m"}}, "rbd.clusterID is required"},
		{"no monitors", Cluster{ClusterID: "c"}, "rbd.monitors is required"},
		{"two keys", Cluster{ClusterID: "c", Monitors: []string{"m"}, Credentials: DefaultCredentials{KeyringFile: "/r", KeyFile: "/k"}}, "rbd.credentials: set keyringFile or keyFile, not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate("rbd")
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
