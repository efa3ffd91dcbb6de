// Command cheshire-bench compares cheshire's 9P engine (styx) with the
// go9p and 9fans srv9p servers on TCP loopback and prints a Markdown
// table with ratios to the other servers and to the loopback floor.
//
// Usage:
//
//	go run ./cmd/cheshire-bench [-size 256MiB] [-n 9] [-dur 2s] [-conns 8] [-servers cheshire,go9p,srv9p]
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"cheshire/styx/styxbench"
)

func main() {
	size := flag.String("size", "256MiB", "bytes of the sequential read and write (suffixes KiB, MiB, GiB)")
	n := flag.Int("n", 9, "passes of the stat and list measurements (the median is reported)")
	seq := flag.Int("seqreps", 4, "passes over -size per sequential measurement")
	nstat := flag.Int("nstat", 1000, "files to stat")
	nlist := flag.Int("nlist", 10000, "entries of the listed directory")
	dur := flag.Duration("dur", 2*time.Second, "length of each small-op and round-trip measurement")
	conns := flag.Int("conns", 8, "connections of the parallel small-op measurement")
	servers := flag.String("servers", strings.Join(styxbench.Names, ","), "servers to compare")
	flag.Parse()
	sz, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cheshire-bench:", err)
		os.Exit(2)
	}
	// go9p and srv9p log every connection's end through package log.
	log.SetOutput(io.Discard)
	cfg := styxbench.Config{
		Size: sz, SeqReps: *seq, NStat: *nstat, NList: *nlist, Reps: *n,
		Dur: *dur, Conns: *conns, Servers: strings.Split(*servers, ","),
		Progress: os.Stderr,
	}
	rep := styxbench.Run(cfg)
	fmt.Printf("%s, %s/%s, GOMAXPROCS %d, %s\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), rep.Started.Format(time.RFC3339))
	rep.WriteTable(os.Stdout)
	if len(rep.Errors) > 0 {
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}
