package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
)

// profileFromEnv profiles the node, or a foreground mount, when
// $CHESHIRE_PROFILE_DIR names a directory (for benchmarks:
// tests/store_bench_test.go, tests/bench_test.go): a CPU profile
// from now on, and blocking and mutex profiles, written there as
// cpu-PID.prof, block-PID.prof and mutex-PID.prof by the returned stop
// (at a clean shutdown). A SIGUSR1 ends the CPU profile so far and
// starts the next, cpu-PID.1.prof, cpu-PID.2.prof and so on, so a
// benchmark can profile its phases apart. Without the variable it does
// nothing.
func profileFromEnv() (stop func()) {
	dir := os.Getenv("CHESHIRE_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	name := func(kind string) string { return filepath.Join(dir, fmt.Sprintf("%s-%d.prof", kind, os.Getpid())) }
	var (
		mu      sync.Mutex
		cpu     *os.File // guarded by mu
		stopped bool     // guarded by mu: no profile starts after stop
	)
	start := func(path string) {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cheshire: profile: %v\n", err)
			return
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "cheshire: profile: %v\n", err)
			f.Close()
			return
		}
		cpu = f
	}
	end := func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
			cpu = nil
		}
	}
	start(name("cpu"))
	runtime.SetBlockProfileRate(10000) // a sample per 10 µs blocked
	runtime.SetMutexProfileFraction(10)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for n := 1; ; n++ {
			select {
			case <-done:
				return
			case <-usr1:
			}
			mu.Lock()
			if !stopped {
				end()
				start(filepath.Join(dir, fmt.Sprintf("cpu-%d.%d.prof", os.Getpid(), n)))
			}
			mu.Unlock()
		}
	}()
	return func() {
		signal.Stop(usr1)
		close(done)
		mu.Lock()
		stopped = true
		end()
		mu.Unlock()
		for _, kind := range []string{"block", "mutex"} {
			if f, err := os.Create(name(kind)); err == nil {
				pprof.Lookup(kind).WriteTo(f, 0)
				f.Close()
			}
		}
	}
}
