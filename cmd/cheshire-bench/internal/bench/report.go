package bench

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"
)

// Config sets what Run measures.
type Config struct {
	Size     int64         // bytes of the sequential read and write (default 256 MiB)
	SeqReps  int           // passes over Size per sequential measurement (default 4)
	NStat    int           // files stat'ed (default 1,000)
	NList    int           // entries of the listed directory (default 10,000)
	Reps     int           // passes of the stat and list measurements; the median counts (default 9)
	Dur      time.Duration // length of each small-op and round-trip measurement (default 2 s)
	Conns    int           // connections of the parallel small-op measurement (default 8)
	Servers  []string      // servers to compare (default Names)
	Progress io.Writer     // if set, told what is being measured

	// Start, if set, starts servers instead of the package's Start (in
	// another process, say), and Echo the echo server of the floor
	// instead of StartEcho.
	Start func(name string, t Tree) (*Server, error)
	Echo  func() (addr string, stop func(), err error)
}

func (c *Config) defaults() {
	if c.Size <= 0 {
		c.Size = 256 << 20
	}
	if c.SeqReps <= 0 {
		c.SeqReps = 4
	}
	if c.NStat <= 0 {
		c.NStat = 1000
	}
	if c.NList <= 0 {
		c.NList = 10000
	}
	if c.Reps <= 0 {
		c.Reps = 9
	}
	if c.Dur <= 0 {
		c.Dur = 2 * time.Second
	}
	if c.Conns <= 0 {
		c.Conns = 8
	}
	if len(c.Servers) == 0 {
		c.Servers = Names
	}
	if c.Start == nil {
		c.Start = Start
	}
	if c.Echo == nil {
		c.Echo = StartEcho
	}
}

// Higher or Lower tells which way a metric is better.
type Better int

const (
	Lower Better = iota
	Higher
)

// A Row is one metric measured on every server.
type Row struct {
	Metric string
	Unit   string
	Better Better
	Values map[string]float64 // by server name; absent: not measured or failed
	Floor  float64            // the loopback floor for this metric, 0 if none
	Target string             // the target, for the report
	Met    func(ours float64) bool
}

// Extra measurements (the FUSE sequential read, say) can be added by
// other packages; Run appends a row for each after its own.
var Extra []func(cfg Config) (Row, error)

// Report is what Run measured.
type Report struct {
	Config  Config
	Rows    []*Row
	Errors  []string
	Started time.Time
}

func (c Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

// Run measures every server of cfg in turn (one at a time, so they do
// not compete for the CPUs) and the loopback floor.
func Run(cfg Config) *Report {
	cfg.defaults()
	rep := &Report{Config: cfg, Started: time.Now()}
	row := func(metric, unit string, b Better, target string, met func(float64) bool) *Row {
		r := &Row{Metric: metric, Unit: unit, Better: b, Values: map[string]float64{}, Target: target, Met: met}
		rep.Rows = append(rep.Rows, r)
		return r
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fail := func(what string, err error) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", what, err))
		cfg.progress("  %s: %v", what, err)
	}

	cfg.progress("loopback round trip")
	var rtt1, rttN Latency
	if addr, stop, err := cfg.Echo(); err != nil {
		fail("rtt", err)
	} else {
		if rtt1, err = MeasureRTTAt(addr, 1, cfg.Dur); err != nil {
			fail("rtt", err)
		}
		if rttN, err = MeasureRTTAt(addr, cfg.Conns, cfg.Dur); err != nil {
			fail("rtt", err)
		}
		stop()
	}

	sizeName := byteSize(cfg.Size)
	rows := []*Row{
		row("small op p50, 1 conn", "µs", Lower, "≤ 1.2 × 4 RTT", nil),
		row("small op p99, 1 conn", "µs", Lower, "", nil),
		row("small ops/s, 1 conn", "op/s", Higher, "", nil),
		row(fmt.Sprintf("small op p50, %d conns", cfg.Conns), "µs", Lower, "", nil),
		row(fmt.Sprintf("small ops/s, %d conns", cfg.Conns), "op/s", Higher, "≥ 1.5 × srv9p", nil),
		row("seq read "+sizeName, "GB/s", Higher, "≥ 2 GB/s", func(v float64) bool { return v >= 2 }),
		row("seq write "+sizeName, "GB/s", Higher, "", nil),
		row(fmt.Sprintf("stat %d files, sequential", cfg.NStat), "ms", Lower, "≤ 60 ms", func(v float64) bool { return v <= 60 }),
		row(fmt.Sprintf("stat %d files, 8 in flight", cfg.NStat), "ms", Lower, "", nil),
		row(fmt.Sprintf("list %d entries", cfg.NList), "ms", Lower, "≤ 0.9 × srv9p", nil),
	}
	p50, p99, ops1, p50N, opsN, rd, wr, st, stp, ls := rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6], rows[7], rows[8], rows[9]
	// Issue 19's targets against srv9p, in the same run.
	opsN.Met = func(v float64) bool { s, ok := opsN.Values["srv9p"]; return ok && v >= 1.5*s }
	ls.Met = func(v float64) bool { s, ok := ls.Values["srv9p"]; return ok && v <= 0.9*s }
	if rtt1.N > 0 {
		p50.Floor = 4 * us(rtt1.P50)
		p50.Met = func(v float64) bool { return v <= 1.2*p50.Floor }
		p99.Floor = 4 * us(rtt1.P99)
		ops1.Floor = rtt1.PerSec() / 4
		// 3 round trips a file.
		st.Floor = 3 * float64(cfg.NStat) * ms(rtt1.P50)
	}
	cfg.progress("loopback stream")
	if sr, sw, err := MeasureStream(cfg.Size, cfg.SeqReps); err != nil {
		fail("stream", err)
	} else {
		rd.Floor, wr.Floor = sr.GBps(), sw.GBps()
	}
	if rttN.N > 0 {
		p50N.Floor = 4 * us(rttN.P50)
		opsN.Floor = rttN.PerSec() / 4
	}

	for _, name := range cfg.Servers {
		cfg.progress("%s: building the tree", name)
		s, err := cfg.Start(name, Tree{SmallSize: 128, BigSize: cfg.Size, NStat: cfg.NStat, NList: cfg.NList})
		if err != nil {
			fail(name, err)
			continue
		}
		cfg.progress("%s: small op", name)
		if l, err := MeasureSmallOp(s, 1, cfg.Dur); err != nil {
			fail(name+" small op", err)
		} else {
			p50.Values[name], p99.Values[name], ops1.Values[name] = us(l.P50), us(l.P99), l.PerSec()
		}
		if l, err := MeasureSmallOp(s, cfg.Conns, cfg.Dur); err != nil {
			fail(name+" small op", err)
		} else {
			p50N.Values[name], opsN.Values[name] = us(l.P50), l.PerSec()
		}
		cfg.progress("%s: sequential read", name)
		if t, err := MeasureSeqRead(s, cfg.Size, cfg.SeqReps); err != nil {
			fail(name+" seq read", err)
		} else {
			rd.Values[name] = t.GBps()
		}
		cfg.progress("%s: sequential write", name)
		if t, err := MeasureSeqWrite(s, cfg.Size, cfg.SeqReps); err != nil {
			fail(name+" seq write", err)
		} else {
			wr.Values[name] = t.GBps()
		}
		cfg.progress("%s: stat", name)
		if d, err := MeasureStat(s, cfg.NStat, 1, cfg.Reps); err != nil {
			fail(name+" stat", err)
		} else {
			st.Values[name] = ms(d)
		}
		if d, err := MeasureStat(s, cfg.NStat, 8, cfg.Reps); err != nil {
			fail(name+" stat", err)
		} else {
			stp.Values[name] = ms(d)
		}
		cfg.progress("%s: list", name)
		if d, err := MeasureList(s, cfg.NList, cfg.Reps); err != nil {
			fail(name+" list", err)
		} else {
			ls.Values[name] = ms(d)
		}
		s.Close()
		runtime.GC()
		debug.FreeOSMemory()
	}
	for _, x := range Extra {
		r, err := x(cfg)
		if err != nil {
			fail(r.Metric, err)
			continue
		}
		rep.Rows = append(rep.Rows, &r)
	}
	r := row("tcp loopback rtt p50 (floor)", "µs", Lower, "", nil)
	r.Values["floor"] = us(rtt1.P50)
	return rep
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func num(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 10000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// WriteTable prints the report as a Markdown table: one column per
// server, the floor, the ratios of cheshire to each other server and to
// the floor, and the target with whether cheshire met it.
func (r *Report) WriteTable(w io.Writer) {
	servers := r.Config.Servers
	var others []string
	for _, s := range servers {
		if s != "cheshire" {
			others = append(others, s)
		}
	}
	hdr := []string{"metric", "unit"}
	hdr = append(hdr, servers...)
	hdr = append(hdr, "floor")
	for _, o := range others {
		hdr = append(hdr, "ch/"+o)
	}
	hdr = append(hdr, "ch/floor", "target", "met")
	table := [][]string{hdr, nil}
	line := func(cells []string) { table = append(table, cells) }
	for _, row := range r.Rows {
		better := "lower is better"
		if row.Better == Higher {
			better = "higher is better"
		}
		cells := []string{row.Metric, row.Unit + " (" + better + ")"}
		for _, s := range servers {
			cells = append(cells, num(row.Values[s]))
		}
		floor := row.Floor
		if v, ok := row.Values["floor"]; ok {
			floor = v
		}
		cells = append(cells, num(floor))
		ours := row.Values["cheshire"]
		for _, o := range others {
			cells = append(cells, ratio(ours, row.Values[o]))
		}
		cells = append(cells, ratio(ours, row.Floor))
		met := ""
		if row.Met != nil && ours != 0 {
			met = "no"
			if row.Met(ours) {
				met = "yes"
			}
		}
		cells = append(cells, row.Target, met)
		line(cells)
	}
	writeMarkdown(w, table)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nerror: %s", e)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w)
	}
}

// writeMarkdown prints rows as an aligned Markdown table; a nil row is
// the header separator.
func writeMarkdown(w io.Writer, rows [][]string) {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 3)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, wd := range width {
			if r == nil {
				b.WriteString("|" + strings.Repeat("-", wd+2))
				continue
			}
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString("| " + c + strings.Repeat(" ", wd-utf8.RuneCountInString(c)) + " ")
		}
		b.WriteString("|\n")
		io.WriteString(w, b.String())
	}
}
