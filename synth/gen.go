package synth

import (
	"context"
	"sync"
)

// GenNames makes a generator for Dir.SetGen from a list of names: mk is
// called once for a name, and the node it made is given again while the
// name is listed, so that it keeps its qid version and whatever lies
// under it; a name no longer listed is forgotten. names may return them
// in any order; the nodes follow it.
func GenNames(names func(ctx context.Context) []string, mk func(name string) Node) func(ctx context.Context) ([]Node, error) {
	var mu sync.Mutex
	made := map[string]Node{} // guarded by mu
	return func(ctx context.Context) ([]Node, error) {
		list := names(ctx)
		mu.Lock()
		defer mu.Unlock()
		out := make([]Node, 0, len(list))
		listed := make(map[string]bool, len(list))
		for _, n := range list {
			listed[n] = true
			node, ok := made[n]
			if !ok {
				node = mk(n)
				made[n] = node
			}
			out = append(out, node)
		}
		for n := range made {
			if !listed[n] {
				delete(made, n)
			}
		}
		return out, nil
	}
}
