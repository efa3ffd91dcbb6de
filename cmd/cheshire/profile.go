package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
)

// profileFromEnv profiles the node, or a foreground mount, when
// $CHESHIRE_PROFILE_DIR names a directory (for benchmarks:
// tests/store_bench_test.go, tests/bench_test.go): a CPU profile
// from now on, and blocking and mutex profiles, written there as
// cpu-PID.prof, block-PID.prof and mutex-PID.prof by the returned stop
// (at a clean shutdown). Without the variable it does nothing.
func profileFromEnv() (stop func()) {
	dir := os.Getenv("CHESHIRE_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	name := func(kind string) string { return filepath.Join(dir, fmt.Sprintf("%s-%d.prof", kind, os.Getpid())) }
	cpu, err := os.Create(name("cpu"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cheshire: profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		fmt.Fprintf(os.Stderr, "cheshire: profile: %v\n", err)
		cpu.Close()
		return func() {}
	}
	runtime.SetBlockProfileRate(10000) // a sample per 10 µs blocked
	runtime.SetMutexProfileFraction(10)
	return func() {
		pprof.StopCPUProfile()
		cpu.Close()
		for _, kind := range []string{"block", "mutex"} {
			if f, err := os.Create(name(kind)); err == nil {
				pprof.Lookup(kind).WriteTo(f, 0)
				f.Close()
			}
		}
	}
}
