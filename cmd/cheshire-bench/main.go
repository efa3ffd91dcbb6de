// Command cheshire-bench compares cheshire's 9P engine (styx) with the
// go9p and 9fans srv9p servers on TCP loopback and prints a Markdown
// table with ratios to the other servers and to the loopback floor.
//
// Usage:
//
//	go run ./cmd/cheshire-bench [-size 256MiB] [-n 9] [-dur 2s] [-conns 8] [-servers cheshire,go9p,srv9p] [-proc]
//
// By default the servers run in the benchmark's own process, sharing its
// Go runtime with the client. With -proc each server, and the echo
// server of the round-trip floor, runs in a child process instead (this
// program re-run with -serve), as a real client and server would.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"cheshire/cmd/cheshire-bench/internal/bench"
)

func main() {
	size := flag.String("size", "256MiB", "bytes of the sequential read and write (suffixes KiB, MiB, GiB)")
	n := flag.Int("n", 9, "passes of the stat and list measurements (the median is reported)")
	seq := flag.Int("seqreps", 4, "passes over -size per sequential measurement")
	nstat := flag.Int("nstat", 1000, "files to stat")
	nlist := flag.Int("nlist", 10000, "entries of the listed directory")
	dur := flag.Duration("dur", 2*time.Second, "length of each small-op and round-trip measurement")
	conns := flag.Int("conns", 8, "connections of the parallel small-op measurement")
	servers := flag.String("servers", strings.Join(bench.Names, ","), "servers to compare")
	proc := flag.Bool("proc", false, "run each server in a child process")
	serveName := flag.String("serve", "", "internal: serve `name` (cheshire, go9p, srv9p, echo) for -proc, print its address, exit at EOF on stdin")
	flag.Parse()
	sz, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cheshire-bench:", err)
		os.Exit(2)
	}
	// go9p and srv9p log every connection's end through package log.
	log.SetOutput(io.Discard)
	tree := bench.Tree{SmallSize: 128, BigSize: sz, NStat: *nstat, NList: *nlist}
	if *serveName != "" {
		serveChild(*serveName, tree)
		return
	}
	cfg := bench.Config{
		Size: sz, SeqReps: *seq, NStat: *nstat, NList: *nlist, Reps: *n,
		Dur: *dur, Conns: *conns, Servers: strings.Split(*servers, ","),
		Progress: os.Stderr,
	}
	if *proc {
		cfg.Start = func(name string, t bench.Tree) (*bench.Server, error) {
			addr, stop, err := startChild(name, t)
			if err != nil {
				return nil, err
			}
			return bench.Remote(name, addr, stop), nil
		}
		cfg.Echo = func() (string, func(), error) { return startChild("echo", tree) }
	}
	rep := bench.Run(cfg)
	fmt.Printf("%s, %s/%s, GOMAXPROCS %d, %s\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), rep.Started.Format(time.RFC3339))
	mode := "servers in this process"
	if *proc {
		mode = "each server in its own process"
	}
	fmt.Printf("%s\n\n", mode)
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

// serveChild is the child of -proc: it serves name, prints its address
// and exits when its standard input closes.
func serveChild(name string, t bench.Tree) {
	var addr string
	var stop func()
	if name == "echo" {
		var err error
		if addr, stop, err = bench.StartEcho(); err != nil {
			fmt.Fprintln(os.Stderr, "cheshire-bench:", err)
			os.Exit(1)
		}
	} else {
		s, err := bench.Start(name, t)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cheshire-bench:", err)
			os.Exit(1)
		}
		addr, stop = s.Addr, s.Close
	}
	runtime.GC()
	fmt.Printf("ADDR %s\n", addr)
	io.Copy(io.Discard, os.Stdin)
	stop()
}

// startChild runs this program with -serve name and returns the address
// it serves and a function that ends it.
func startChild(name string, t bench.Tree) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(exe, "-serve", name, "-size", strconv.FormatInt(max(t.BigSize, 1), 10),
		"-nstat", strconv.Itoa(t.NStat), "-nlist", strconv.Itoa(t.NList))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { in.Close(); cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		stop()
		return "", nil, fmt.Errorf("server %s did not start: %q %v", name, line, err)
	}
	return addr, stop, nil
}
