package backend

import "sort"

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
