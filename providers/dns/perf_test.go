package dns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"

	"github.com/miekg/dns"
)

// TestDNSPerf is the benchmark of bench/dnsperf.sh, not a test: it runs
// only when DNSPERF=1. It serves the same zone of 1,000 A records from
// this server and from nsd (started here on a loopback port with its
// own configuration), and runs dnsperf against each, unsigned and
// signed, reporting queries per second and the ratio. DNSPERF_SECONDS
// sets each run's length (default 10), DNSPERF_CPU_SERVER and
// DNSPERF_CPU_CLIENT the CPUs the servers and dnsperf are pinned to
// (default 1 and 0). DNSPERF_NOCACHE=1 turns the reply cache off, to
// measure the full path of every query.
func TestDNSPerf(t *testing.T) {
	if os.Getenv("DNSPERF") != "1" {
		t.Skip("set DNSPERF=1 (or run bench/dnsperf.sh)")
	}
	needTool(t, "dnsperf")
	needTool(t, "nsd")
	secs := envOr("DNSPERF_SECONDS", "10")
	cpuServer := envOr("DNSPERF_CPU_SERVER", "1")
	cpuClient := envOr("DNSPERF_CPU_CLIENT", "0")
	dir := t.TempDir()

	var zone strings.Builder
	zone.WriteString("$ORIGIN bench.test.\n$TTL 3600\n@ SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 192.0.2.53\n")
	for i := range 1000 {
		fmt.Fprintf(&zone, "host%d A 10.%d.%d.%d\n", i, i>>16&255, i>>8&255, i&255)
	}
	var queries strings.Builder
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		if r.IntN(10) == 0 {
			fmt.Fprintf(&queries, "nohost%d.bench.test A\n", r.IntN(1000))
		} else {
			fmt.Fprintf(&queries, "host%d.bench.test A\n", r.IntN(1000))
		}
	}
	qfile := filepath.Join(dir, "queries")
	if err := os.WriteFile(qfile, []byte(queries.String()), 0644); err != nil {
		t.Fatal(err)
	}

	s, err := New(filepath.Join(dir, "ours"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.nocache = os.Getenv("DNSPERF_NOCACHE") == "1"
	if err := s.AddZone("bench.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetZone("bench.test", []byte(zone.String())); err != nil {
		t.Fatal(err)
	}
	pc, l := listenPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, pc, l)
	_, ourPort, _ := net.SplitHostPort(pc.LocalAddr().String())

	type result struct{ ours, nsd, oursCPU, nsdCPU float64 }
	results := map[bool]result{}
	for _, signed := range []bool{false, true} {
		if signed {
			if err := s.SetDNSSEC("bench.test", true); err != nil {
				t.Fatal(err)
			}
		}
		nsdPort, nsdPid := startNSD(t, dir, s.zone("bench.test."), signed, cpuServer)
		// dnsperf runs dnsperf against port and returns the queries per
		// second and the CPU time cpu() says the server used per query.
		dnsperf := func(port string, cpu func() time.Duration) (float64, float64) {
			cpu0 := cpu()
			args := []string{"-c", cpuClient, "dnsperf", "-s", "127.0.0.1", "-p", port, "-d", qfile,
				"-l", secs, "-c", "8", "-q", "200", "-T", "1"}
			if signed {
				args = append(args, "-D")
			}
			out, err := exec.Command("taskset", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("dnsperf: %v\n%s", err, out)
			}
			m := regexp.MustCompile(`Queries per second:\s+([0-9.]+)`).FindSubmatch(out)
			lost := regexp.MustCompile(`Queries lost:\s+(\d+)`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("dnsperf output:\n%s", out)
			}
			qps, _ := strconv.ParseFloat(string(m[1]), 64)
			done := regexp.MustCompile(`Queries completed:\s+(\d+)`).FindSubmatch(out)
			n, _ := strconv.ParseFloat(string(done[1]), 64)
			us := float64((cpu() - cpu0).Microseconds()) / max(n, 1)
			t.Logf("port %s signed=%v: %.0f qps, lost %s, server CPU %.1f µs/query", port, signed, qps, lost[1], us)
			return qps, us
		}
		var res result
		res.nsd, res.nsdCPU = dnsperf(nsdPort, func() time.Duration { return treeCPU(nsdPid) })
		res.ours, res.oursCPU = dnsperf(ourPort, testutil.SelfCPU)
		results[signed] = res
	}
	for _, signed := range []bool{false, true} {
		res := results[signed]
		kind := "unsigned"
		if signed {
			kind = "DNSSEC (DO)"
		}
		fmt.Printf("%-12s ours %8.0f qps %5.1f µs CPU/query   nsd %8.0f qps %5.1f µs CPU/query   ratio %.2fx (CPU per query %.2fx)\n",
			kind, res.ours, res.oursCPU, res.nsd, res.nsdCPU, res.ours/res.nsd, res.nsdCPU/res.oursCPU)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// signedText is z with the records the server makes when it signs:
// DNSKEY, NSEC and every RRSIG, for a server that cannot sign (nsd).
func signedText(z *zone) string {
	var b strings.Builder
	now := time.Now()
	emit := func(rrs []dns.RR) {
		for _, rr := range rrs {
			b.WriteString(rr.String())
			b.WriteByte('\n')
		}
	}
	for _, n := range z.nodes {
		for t, set := range n.sets {
			emit(set)
			if z.sig != nil && !n.glue && !(n.cut && t != dns.TypeDS) {
				emit(z.sig.sigs(set, now))
			}
		}
		if n.nsec != nil {
			emit([]dns.RR{n.nsec})
			emit(z.sig.sigs([]dns.RR{n.nsec}, now))
		}
	}
	return b.String()
}

// treeCPU is the CPU time used by process pid and its descendants
// (nsd's main and server processes), from /proc.
func treeCPU(pid int) time.Duration {
	type proc struct {
		ppid int
		cpu  int64
	}
	procs := make(map[int]proc)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After the command, in parentheses: state ppid ... utime stime.
		i := strings.LastIndexByte(string(data), ')')
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		procs[p] = proc{ppid, ut + st}
	}
	in := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for p, pr := range procs {
			if !in[p] && in[pr.ppid] {
				in[p], changed = true, true
			}
		}
	}
	var total int64
	for p := range in {
		total += procs[p].cpu
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ
}

// startNSD serves z from nsd on a free loopback port until the test
// ends, returning the port and nsd's pid.
func startNSD(t *testing.T, dir string, z *zone, signed bool, cpu string) (string, int) {
	t.Helper()
	nd := filepath.Join(dir, fmt.Sprintf("nsd-%v", signed))
	if err := os.MkdirAll(nd, 0755); err != nil {
		t.Fatal(err)
	}
	text := string(z.text())
	if signed {
		text = signedText(z)
	}
	if err := os.WriteFile(filepath.Join(nd, "bench.test.zone"), []byte(text), 0644); err != nil {
		t.Fatal(err)
	}
	pc, l := listenPair(t)
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	pc.Close()
	l.Close()
	conf := fmt.Sprintf(`server:
	ip-address: 127.0.0.1
	port: %s
	server-count: 1
	username: ""
	zonesdir: "%[2]s"
	database: ""
	zonelistfile: "%[2]s/zone.list"
	xfrdfile: "%[2]s/xfrd.state"
	xfrdir: "%[2]s"
	pidfile: "%[2]s/nsd.pid"
	logfile: "%[2]s/nsd.log"
	verbosity: 1
	rrl-ratelimit: 0
	rrl-whitelist-ratelimit: 0
	tcp-count: 10
remote-control:
	control-enable: no
zone:
	name: bench.test
	zonefile: bench.test.zone
`, port, nd)
	cf := filepath.Join(nd, "nsd.conf")
	if err := os.WriteFile(cf, []byte(conf), 0644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("taskset", "-c", cpu, "nsd", "-d", "-c", cf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	q := new(dns.Msg)
	q.SetQuestion("host1.bench.test.", dns.TypeA)
	for range 100 {
		r, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(q, "127.0.0.1:"+port)
		if err == nil && len(r.Answer) == 1 {
			return port, cmd.Process.Pid
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(nd, "nsd.log"))
	t.Fatalf("nsd does not answer:\n%s", log)
	return "", 0
}
