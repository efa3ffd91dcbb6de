package webui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"cheshire/plan9"
	"cheshire/providers/node"
)

// BenchmarkDirPage renders the first page of a directory of 10,000
// entries (served by tmp in process), the modules-less namespace root,
// over TLS on loopback: the time to the whole page.
//
//	go test -run '^$' -bench . -benchtime 20x ./webui
func BenchmarkDirPage(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	d, _, err := e.root.Create(ctx, "big", plan9.DMDIR|0o755, plan9.OREAD)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		_, dd, _ := d.Walk(ctx, nil)
		f, _, err := dd.Create(ctx, fmt.Sprintf("f%05d", i), 0o644, plan9.OWRITE)
		if err != nil {
			b.Fatal(err)
		}
		f.Clunk()
	}
	signInB(b, e)
	b.ResetTimer()
	for b.Loop() {
		resp, err := e.c.Get(e.srv.URL + "/fs/big/")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkSessions has 50 signed-in sessions, each fetching a small
// file's page in a loop (b.N pages in all), and reports the p50 and
// p99 page latency.
func BenchmarkSessions(b *testing.B) {
	e := newEnv(b)
	e.write("/notes", "some text\n")
	const sessions = 50
	clients := make([]*http.Client, sessions)
	for i := range clients {
		c := *e.srv.Client()
		c.Jar, _ = cookiejar.New(nil)
		resp, err := c.PostForm(e.srv.URL+"/signin", url.Values{"user": {"glenda"}, "password": {"secret-token-0123"}})
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		clients[i] = &c
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	for i, c := range clients {
		n := b.N / sessions
		if i < b.N%sessions {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				t0 := time.Now()
				resp, err := c.Get(e.srv.URL + "/fs/notes")
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1e3, "p99-ms")
	}
}

func signInB(b *testing.B, e *env) {
	resp, err := e.c.PostForm(e.srv.URL+"/signin", url.Values{"user": {"glenda"}, "password": {"secret-token-0123"}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
}

// BenchmarkApprovalsPage renders /approvals with the queue full: 256
// pending requests, each read through the namespace from its file.
//
//	go test -run '^$' -bench Approvals -benchtime 20x ./webui
func BenchmarkApprovalsPage(b *testing.B) {
	e := newApprovalEnv(b)
	for i := range node.MaxRequests {
		if _, err := e.q.File(fmt.Sprintf("key:%052d", i), "access", []string{"/pub"}); err != nil {
			b.Fatal(err)
		}
	}
	c, _ := e.client(b, "glenda")
	b.ResetTimer()
	for b.Loop() {
		if code, _ := fetch(b, c, e.srv.URL+"/approvals", nil); code != 200 {
			b.Fatalf("/approvals: %d", code)
		}
	}
}
