package cephfstest

import "fmt"

func fmtSscan(s string, pid *int) (int, error) { return fmt.Sscan(s, pid) }
