package styx_test

import (
	"context"
	"sync"
	"testing"

	"cheshire/styx"
)

// TestClientCloseWhileBusy closes clients with requests in flight: a
// reply being delivered while Close ends the calls must not close a
// call's channel twice (that panicked the process).
func TestClientCloseWhileBusy(t *testing.T) {
	addr := serve(t, newMemFS("glenda"))
	ctx := context.Background()
	for i := range 300 {
		c, err := styx.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		root, err := c.Attach(ctx, nil, "glenda", "")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					if _, err := root.Stat(ctx); err != nil {
						return
					}
				}
			}()
		}
		for range i % 7 {
			root.Stat(ctx)
		}
		c.Close()
		wg.Wait()
		if _, err := root.Stat(ctx); err == nil {
			t.Fatal("stat on a closed client succeeded")
		}
	}
}
