package backend

import (
	"sort"
	"sync"
)

// PageOf sorts vols by ID and returns up to max (all for 0) of those after the ID after.
func PageOf(vols []*Volume, after string, max int) []*Volume {
	sort.Slice(vols, func(i, j int) bool { return vols[i].ID.String() < vols[j].ID.String() })
	start := sort.Search(len(vols), func(i int) bool { return vols[i].ID.String() > after })
	vols = vols[start:]
	if max > 0 && len(vols) > max {
		vols = vols[:max]
	}
	return vols
}

// Each runs fn(i) for every i below n, at most width at a time, and returns once all have
// returned: the reads of a listing page, each a few round trips to the storage, which would
// otherwise wait one for another.
func Each(n, width int, fn func(i int)) {
	slots := make(chan struct{}, max(width, 1))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// ReadEach reads volume i for every i below n, at most width at a time (Each), and
// answers those read, in order, passing over the nil ones (gone, or not the backend's);
// or the first error in that order.
func ReadEach(n, width int, read func(i int) (*Volume, error)) ([]*Volume, error) {
	vols := make([]*Volume, n)
	errs := make([]error, n)
	Each(n, width, func(i int) { vols[i], errs[i] = read(i) })
	var out []*Volume
	for i, v := range vols {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if v != nil {
			out = append(out, v)
		}
	}
	return out, nil
}
