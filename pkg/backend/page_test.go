package backend

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Each runs every index once, never more than width at a time.
func TestEachRunsAllAtMostWidthAtOnce(t *testing.T) {
	var running, most atomic.Int32
	done := make([]atomic.Bool, 50)
	Each(len(done), 8, func(i int) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		running.Add(-1)
		if done[i].Swap(true) {
			t.Errorf("index %d ran twice", i)
		}
	})
	for i := range done {
		if !done[i].Load() {
			t.Errorf("index %d did not run", i)
		}
	}
	if m := most.Load(); m > 8 || m < 2 {
		t.Errorf("%d ran at once, want at most 8 (and more than one)", m)
	}
}

// ReadEach keeps the order, passes over nil volumes and answers the first error in order.
func TestReadEachKeepsOrderAndAnswersTheFirstError(t *testing.T) {
	read := func(fail int) func(i int) (*Volume, error) {
		return func(i int) (*Volume, error) {
			time.Sleep(time.Duration(10-i) * time.Millisecond) // the last finish first
			switch {
			case i == fail || i == fail+2:
				return nil, fmt.Errorf("read %d failed", i)
			case i%3 == 0:
				return nil, nil
			}
			return &Volume{RequestName: fmt.Sprint(i)}, nil
		}
	}
	vols, err := ReadEach(10, 4, read(-10))
	var got []string
	for _, v := range vols {
		got = append(got, v.RequestName)
	}
	if err != nil || strings.Join(got, ",") != "1,2,4,5,7,8" {
		t.Errorf("ReadEach: %v, %v; want 1,2,4,5,7,8", got, err)
	}
	if _, err := ReadEach(10, 4, read(5)); err == nil || err.Error() != "read 5 failed" {
		t.Errorf("ReadEach with reads 5 and 7 failing: %v, want read 5's error", err)
	}
}
