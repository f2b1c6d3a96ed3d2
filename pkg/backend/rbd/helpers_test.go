package rbd

import "github.com/shiphold/shiphold/pkg/ceph"

func credsForTest() ceph.Credentials { return ceph.Credentials{UserID: "u", Key: "K"} }
