package dns

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"cheshire/plan9"
	"cheshire/synth"

	"github.com/miekg/dns"
)

// Changes come in batches. The lines of one ctl write (synth.CtlBatch)
// apply to a copy of the zone's records and settings, a zoneTxn, which
// is checked, saved and published once when every line has run: a write
// of 20,000 lines costs one save, and a line that fails, a flush, or the
// module's stop leaves the zone as it was. The Go methods (AddRecord and
// the rest) are batches of one.
//
// Writes through the files are refused while the module is stopped
// (Module.Stop), and a batch under way when it stops is abandoned.

// errStopped refuses a change made through the files while the module is
// stopped.
var errStopped = plan9.Error("dns: module stopped")

// A zoneTxn is a working copy of one zone that the lines of a batch
// change.
type zoneTxn struct {
	origin string
	rrs    []dns.RR
	conf   *zoneConf
	bump   bool     // the records changed: the serial goes up by one
	done   []string // what each line did, for the zone's log
}

type txnKey struct{}

// zoneTxnOf returns the zoneTxn of the batch that ctx runs in.
func zoneTxnOf(ctx context.Context) *zoneTxn {
	t, _ := ctx.Value(txnKey{}).(*zoneTxn)
	return t
}

// enter checks, under s.mu, that changes through the files are allowed,
// and returns a context that ends with ctx or when the module stops.
func (s *Server) enter(ctx context.Context) (context.Context, context.CancelFunc, error) {
	s.gmu.Lock()
	halted, live := s.halted, s.live
	s.gmu.Unlock()
	if halted {
		return nil, nil, errStopped
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(live, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// halt refuses changes through the files from now on, abandons the
// batches under way and waits for the change in hand to end.
func (s *Server) halt() {
	s.gmu.Lock()
	s.halted = true
	s.stopLive()
	s.gmu.Unlock()
	s.mu.Lock()
	s.mu.Unlock()
}

// resume allows changes through the files again.
func (s *Server) resume() {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	if s.halted {
		s.live, s.stopLive = context.WithCancel(context.Background())
		s.halted = false
	}
}

// stoppedErr is err, or errStopped if the batch ended because the module
// stopped.
func (s *Server) stoppedErr(err error) error {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	if s.halted && errors.Is(err, context.Canceled) {
		return errStopped
	}
	return err
}

// ready is ctx's error, or errStopped if the module has stopped: checked
// just before a batch is committed, as the cancel of ctx that the stop
// brings may not have come yet.
func (s *Server) ready(ctx context.Context, files bool) error {
	if files {
		s.gmu.Lock()
		halted := s.halted
		s.gmu.Unlock()
		if halted {
			return errStopped
		}
	}
	return ctx.Err()
}

// editZone runs f on a working copy of zone name and, if it succeeds,
// saves and publishes the result. It is a batch of one change; files
// tells a change through the files, refused while the module is stopped.
func (s *Server) editZone(ctx context.Context, name string, files bool, f func(ctx context.Context, t *zoneTxn) error) error {
	origin, err := zoneName(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if files {
		c, done, err := s.enter(ctx)
		if err != nil {
			return err
		}
		defer done()
		ctx = c
	}
	old := s.zone(origin)
	m := s.meta[origin]
	if old == nil || m == nil {
		return errNoZone
	}
	t := &zoneTxn{origin: origin, rrs: old.records(), conf: old.conf.clone()}
	err = f(context.WithValue(ctx, txnKey{}, t), t)
	if err == nil {
		err = s.ready(ctx, files)
	}
	if err == nil {
		err = s.commitLocked(old, t.rrs, t.conf, t.bump)
	}
	err = s.stoppedErr(err)
	if err != nil {
		s.zlogf(m, origin, "refused: %v", err)
		return err
	}
	s.logDone(m, origin, t.done)
	return nil
}

// logDone logs the changes of a batch: each in the zone's log, and in
// the node's log each of a few, or their count.
func (s *Server) logDone(m *zoneMeta, origin string, done []string) {
	if len(done) <= 8 {
		for _, d := range done {
			s.zlogf(m, origin, "%s", d)
		}
		return
	}
	ts := s.now().UTC().Format(time.RFC3339)
	for _, d := range done {
		fmt.Fprintf(m.log, "%s %s\n", ts, d)
	}
	s.log.Info(fmt.Sprintf("ctl: %d changes", len(done)), "module", "dns", "zone", origin)
}

// commitLocked makes the new version of zone old from rrs and conf (taken
// over), saves it and publishes it. s.mu is held.
func (s *Server) commitLocked(old *zone, rrs []dns.RR, conf *zoneConf, bump bool) error {
	if bump {
		bumpSerial(rrs)
	}
	z, err := newZone(old.origin, rrs, conf)
	if err != nil {
		return err
	}
	if err := s.saveZone(z, !sameConf(old.conf, conf)); err != nil {
		return err
	}
	s.publish(old.origin, z)
	return nil
}

// zoneBatch applies the lines of a write to a zone's ctl file as one
// change.
func (s *Server) zoneBatch(origin string) synth.Batch {
	return func(ctx context.Context, run func(context.Context) error) error {
		return s.editZone(ctx, origin, true, func(ctx context.Context, _ *zoneTxn) error { return run(ctx) })
	}
}

// txnCmd makes a zone ctl command of an edit of the zone's working copy.
func txnCmd(f func(t *zoneTxn, args []string) error) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		t := zoneTxnOf(ctx)
		if t == nil {
			return errors.New("dns: command outside a batch")
		}
		return f(t, args)
	}
}

// add adds one record, given in master-file format.
func (t *zoneTxn) add(text string) error {
	rr, err := parseRecord(t.origin, text)
	if err != nil {
		return err
	}
	if rr.Header().Rrtype == dns.TypeSOA {
		return errors.New("dns: the SOA cannot be changed here: use the zone file")
	}
	t.rrs = append(t.rrs, rr)
	t.bump = true
	t.done = append(t.done, "add "+rr.String())
	return nil
}

// del deletes the records at name: all of them (but the SOA), those of a
// type, or the one that matches the data.
func (t *zoneTxn) del(name string, typeAndData []string) error {
	owner := absName(t.origin, name)
	var rtype uint16
	var match dns.RR
	if len(typeAndData) > 0 {
		rt, ok := dns.StringToType[strings.ToUpper(typeAndData[0])]
		if !ok {
			return fmt.Errorf("dns: unknown type %q", typeAndData[0])
		}
		if rt == dns.TypeSOA {
			return errors.New("dns: the SOA cannot be deleted")
		}
		rtype = rt
	}
	if len(typeAndData) > 1 {
		var err error
		match, err = parseRecord(t.origin, owner+" 0 "+strings.Join(typeAndData, " "))
		if err != nil {
			return err
		}
	}
	n := 0
	out := t.rrs[:0]
	for _, rr := range t.rrs {
		h := rr.Header()
		if h.Name == owner && h.Rrtype != dns.TypeSOA &&
			(rtype == 0 || h.Rrtype == rtype) &&
			(match == nil || dns.IsDuplicate(rr, match)) {
			n++
			continue
		}
		out = append(out, rr)
	}
	clear(t.rrs[len(out):])
	t.rrs = out
	if n == 0 {
		return errors.New("dns: no such record")
	}
	t.bump = true
	t.done = append(t.done, fmt.Sprintf("del %s %s: %d records", owner, strings.Join(typeAndData, " "), n))
	return nil
}

// setDNSSEC turns signing on or off; the first time on makes the key.
func (t *zoneTxn) setDNSSEC(on bool, now time.Time) error {
	t.conf.dnssec = on
	if on && len(t.conf.keys) == 0 {
		k, err := newKey(t.origin, now)
		if err != nil {
			return err
		}
		t.conf.keys = append(t.conf.keys, k)
	}
	t.bump = true
	if on {
		t.done = append(t.done, "dnssec on")
	} else {
		t.done = append(t.done, "dnssec off")
	}
	return nil
}

// rollKey makes a new signing key and retires the others.
func (t *zoneTxn) rollKey(now time.Time) error {
	k, err := newKey(t.origin, now)
	if err != nil {
		return err
	}
	keys := make([]*zoneKey, 0, len(t.conf.keys)+1)
	for _, old := range t.conf.keys {
		r := *old
		r.retired = true
		keys = append(keys, &r)
	}
	t.conf.keys = append(keys, k)
	t.bump = true
	t.done = append(t.done, fmt.Sprintf("rollkey: new key %d", k.pub.KeyTag()))
	return nil
}

// finishRoll removes the retired keys.
func (t *zoneTxn) finishRoll() error {
	keys := t.conf.keys[:0:0]
	for _, k := range t.conf.keys {
		if !k.retired {
			keys = append(keys, k)
		}
	}
	n := len(t.conf.keys) - len(keys)
	if n == 0 {
		return errors.New("dns: no retired key")
	}
	t.conf.keys = keys
	t.bump = true
	t.done = append(t.done, fmt.Sprintf("rollkey done: %d keys removed", n))
	return nil
}

// addTSIG allows updates signed with a key.
func (t *zoneTxn) addTSIG(keyname, algorithm, secret string) error {
	alg, ok := tsigAlgorithms[strings.TrimSuffix(strings.ToLower(algorithm), ".")]
	if !ok {
		return fmt.Errorf("dns: unknown algorithm %q (want hmac-sha256, hmac-sha512, ...)", algorithm)
	}
	if raw, err := base64.StdEncoding.DecodeString(secret); err != nil || len(raw) == 0 {
		return errors.New("dns: secret is not base64")
	}
	kn := canon(keyname)
	if _, ok := dns.IsDomainName(kn); !ok {
		return fmt.Errorf("dns: bad key name %q", keyname)
	}
	t.conf.tsig[kn] = tsigKey{name: kn, algorithm: alg, secret: secret}
	t.done = append(t.done, fmt.Sprintf("tsig add %s %s", kn, strings.TrimSuffix(alg, ".")))
	return nil
}

// removeTSIG withdraws a key.
func (t *zoneTxn) removeTSIG(keyname string) error {
	kn := canon(keyname)
	if _, ok := t.conf.tsig[kn]; !ok {
		return errors.New("dns: no such key")
	}
	delete(t.conf.tsig, kn)
	t.done = append(t.done, "tsig rm "+kn)
	return nil
}

// A rootTxn is the batch of one write to /dns/ctl: the zones to add and
// remove, checked line by line against the zones served and the lines
// before, and applied in order at the end.
type rootTxn struct {
	ops    []rootOp
	exists map[string]bool // by origin: whether the zone will exist, as far as the batch has gone
}

type rootOp struct {
	add    bool
	origin string
	// An app op (`app`, `unapp`) maps fqdn to appName, or unmaps it.
	app           bool
	fqdn, appName string
}

type rootTxnKey struct{}

// has reports whether zone origin exists once the lines so far apply.
func (t *rootTxn) has(s *Server, origin string) bool {
	if e, ok := t.exists[origin]; ok {
		return e
	}
	return s.meta[origin] != nil
}

// rootBatch applies the lines of a write to /dns/ctl as one unit.
func (s *Server) rootBatch(ctx context.Context, run func(context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer done()
	t := &rootTxn{exists: make(map[string]bool)}
	err = run(context.WithValue(ctx, rootTxnKey{}, t))
	if err == nil {
		err = s.ready(ctx, true)
	}
	if err != nil {
		return s.stoppedErr(err)
	}
	for _, op := range t.ops {
		if op.app {
			if err := s.applyAppLocked(op); err != nil {
				return fmt.Errorf("app %s: %w", op.fqdn, err)
			}
			continue
		}
		if op.add {
			err = s.addZoneLocked(op.origin, defaultZone(op.origin))
		} else {
			err = s.removeZoneLocked(op.origin)
		}
		if err != nil {
			// Only the disk can fail here: the lines were checked.
			return fmt.Errorf("zone %s: %w", op.origin, err)
		}
	}
	return nil
}

// rootCmd makes the /dns/ctl command zone add (add) or zone rm: it
// checks the line against the zones and the lines before it, and adds
// it to the batch.
func (s *Server) rootCmd(add bool) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		t, _ := ctx.Value(rootTxnKey{}).(*rootTxn)
		if t == nil {
			return errors.New("dns: command outside a batch")
		}
		origin, err := zoneName(args[0])
		if err != nil {
			return err
		}
		if add && t.has(s, origin) {
			return plan9.ErrExist
		}
		if !add && !t.has(s, origin) {
			return errNoZone
		}
		t.exists[origin] = add
		t.ops = append(t.ops, rootOp{add: add, origin: origin})
		return nil
	}
}
