package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/module"
	"cheshire/modules/abi"
	"cheshire/plan9"
	"cheshire/styx"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// minInitBudget is the least time a guest's initialization may take: it
// starts the Go runtime and may load the module's state from /data.
const minInitBudget = 10 * time.Second

// minRequestBuf is the smallest request buffer asked of the guest.
const minRequestBuf = 64 << 10

// ErrBudget is the error (for errors.Is) of a call or an initialization
// that overran its budget, sleeping included.
var ErrBudget = errors.New("budget exceeded")

// errBudget is the cause of a call's context when its budget ran out,
// errStopped when the instance was stopped.
var (
	errBudget  = errors.New("cpu budget exceeded")
	errStopped = errors.New("module stopped")
)

// budgetError is an error that is ErrBudget, in words of its own.
type budgetError struct{ msg string }

func (e *budgetError) Error() string        { return e.msg }
func (e *budgetError) Is(target error) bool { return target == ErrBudget }

func overrun(format string, args ...any) error {
	return &budgetError{fmt.Sprintf(format, args...)}
}

// An instance is a running module: a guest in a wazero runtime of its own.
type instance struct {
	name   string
	env    module.Env
	log    *slog.Logger
	cfg    config
	grants []module.Perm
	http   *httpClient

	rt     wazero.Runtime
	data   *dataFS // the guest's /data, or nil
	alloc  memoryAllocator
	guest  api.Module
	mem    api.Memory
	fAlloc api.Function
	fCall  api.Function

	stopped atomic.Bool
	failed  sync.Once

	// ctx is the context of every call into the guest, and of every
	// sleep and call into the node the guest makes: cancelled when a
	// budget runs out (errBudget) or the instance is stopped (errStopped).
	ctx    context.Context
	cancel context.CancelCauseFunc
	// sleepCtx is what ends a guest's sleep: ctx, or while the guest
	// initializes the context of its initialization.
	sleepCtx context.Context

	// sem serializes the calls into the guest; what follows is guarded
	// by it.
	sem     chan struct{}
	closed  bool          // the runtime is closed, the guest's memory gone
	timer   *time.Timer   // cancels ctx when the current call's budget runs out
	left    time.Duration // budget left when the timer was last started
	started time.Time     // when the timer was last started
	cur     *callState    // the call in progress (&cs, or at start one of its own)
	cs      callState
	bufPtr  uint32 // the guest's request buffer
	bufCap  uint32
	enc     []byte // encoded request
	stack   [2]uint64
	dead    error // set when the instance can no longer serve
}

// callState is what the host functions of a call in progress need.
type callState struct {
	ctx     context.Context // the request's, for calls back into the node
	chained bool            // ctx records the instance and ends with in.ctx
	release func()          // releases ctx once chained
	pending []byte          // a host_call response waiting for host_result
}

// nodeCtx is the context of the call's requests into the node: the
// request's, recording that this instance is in a call, and cancelled
// too when the instance's is (the instance stopped).
func (cs *callState) nodeCtx(in *instance) context.Context {
	if !cs.chained {
		ctx, cancel := context.WithCancelCause(withChain(cs.ctx, in))
		stop := context.AfterFunc(in.ctx, func() { cancel(context.Cause(in.ctx)) })
		cs.ctx, cs.chained = ctx, true
		cs.release = func() {
			stop()
			cancel(nil)
		}
	}
	return cs.ctx
}

// done releases what nodeCtx made.
func (cs *callState) done() {
	if cs.release != nil {
		cs.release()
		cs.release = nil
	}
}

// chain records the instances with a call in progress on the way to a
// request, so that a module reaching its own files through the
// namespace fails instead of waiting for itself.
type chain struct {
	in   *instance
	next *chain
}

type chainKey struct{}

func inChain(ctx context.Context, in *instance) bool {
	for c, _ := ctx.Value(chainKey{}).(*chain); c != nil; c = c.next {
		if c.in == in {
			return true
		}
	}
	return false
}

func withChain(ctx context.Context, in *instance) context.Context {
	next, _ := ctx.Value(chainKey{}).(*chain)
	return context.WithValue(ctx, chainKey{}, &chain{in: in, next: next})
}

func (m *Module) start(ctx context.Context, env module.Env, cfg config) (_ *instance, err error) {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &instance{
		name:   env.Name,
		env:    env,
		log:    log,
		cfg:    cfg,
		grants: grant(m.manifest.Requires, cfg.allow),
		sem:    make(chan struct{}, 1),
	}
	in.ctx, in.cancel = context.WithCancelCause(context.Background())
	in.timer = time.AfterFunc(time.Hour, func() { in.cancel(errBudget) })
	in.timer.Stop()
	in.http = newHTTPClient(in, m.rt.transport)
	for _, r := range m.manifest.Requires {
		if !allowed(in.grants, r) {
			log.Info("requested permission not fully allowed by the configuration", "perm", r.String())
		}
	}
	if env.Dir != "" {
		if err := os.MkdirAll(env.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("start %s: %w", env.Name, err)
		}
	}
	in.rt = wazero.NewRuntimeWithConfig(ctx, m.rt.runtimeConfig(cfg.memory))
	defer func() {
		if err != nil {
			in.cancel(nil)
			in.close()
		}
	}()
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, in.rt); err != nil {
		return nil, fmt.Errorf("start %s: wasi: %w", env.Name, err)
	}
	if err := in.hostModule(ctx); err != nil {
		return nil, fmt.Errorf("start %s: host functions: %w", env.Name, err)
	}
	var compiled wazero.CompiledModule
	err = m.rt.sealed.compile(func() (err error) {
		compiled, err = in.rt.CompileModule(ctx, m.wasm)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: compile: %w", env.Name, err)
	}
	out := newLogWriter(log, slog.LevelInfo, "stdout")
	errw := newLogWriter(log, slog.LevelWarn, "stderr")
	mc := wazero.NewModuleConfig().
		WithName(env.Name).
		WithArgs(env.Name).
		WithStartFunctions("_initialize").
		WithStdout(out).
		WithStderr(errw).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(in.nanosleep).
		WithRandSource(rand.Reader)
	if env.Dir != "" {
		if err := m.rt.checkDataDir(env.Dir); err != nil {
			return nil, fmt.Errorf("start %s: %w", env.Name, err)
		}
		data, err := openDataFS(env.Dir)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", env.Name, err)
		}
		in.data = data
		mc = mc.WithFSConfig(wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(data, "/data"))
	}

	// Initialization runs the guest's init functions, which may call
	// back into the node.
	initBudget := max(cfg.cpu, m.rt.minInit)
	ictx, icancel := context.WithTimeoutCause(ctx, initBudget, errBudget)
	defer icancel()
	in.sleepCtx = ictx
	ics := &callState{ctx: ictx}
	in.cur = ics
	mctx := experimental.WithMemoryAllocator(ictx, &in.alloc)
	if m.rt.heapMem {
		mctx = ictx
	}
	guest, err := in.rt.InstantiateModule(mctx, compiled, mc)
	in.cur = nil
	ics.done()
	if err != nil {
		if errors.Is(context.Cause(ictx), errBudget) {
			return nil, overrun("start %s: initialization interrupted: budget %v exceeded", env.Name, initBudget)
		}
		return nil, fmt.Errorf("start %s: initialization failed: %s", env.Name, firstLine(err))
	}
	in.guest = guest
	in.mem = guest.Memory()
	in.fAlloc = guest.ExportedFunction("cheshire_alloc")
	in.fCall = guest.ExportedFunction("cheshire_call")
	fABI := guest.ExportedFunction("cheshire_abi")
	if in.mem == nil || in.fAlloc == nil || in.fCall == nil || fABI == nil {
		return nil, fmt.Errorf("start %s: %w: exports missing", env.Name, ErrABI)
	}
	vctx, vcancel := context.WithTimeoutCause(ctx, initBudget, errBudget)
	in.sleepCtx = vctx
	v, err := fABI.Call(vctx)
	vcancel()
	in.sleepCtx = in.ctx
	if err != nil {
		return nil, fmt.Errorf("start %s: cheshire_abi: %s", env.Name, firstLine(err))
	}
	if uint32(v[0]) != abiVersion {
		return nil, fmt.Errorf("start %s: %w: ABI version %d, node speaks %d", env.Name, ErrABI, uint32(v[0]), abiVersion)
	}

	log.Info("started", "memory", cfg.memory, "cpu", cfg.cpu.String(), "grants", permsString(in.grants))
	return in, nil
}

func permsString(ps []module.Perm) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// firstLine is the first line of err's text: wazero's errors go on with
// a stack trace.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// nanosleep is the guest's sleep (WASI poll_oneoff on a clock): it ends
// early when the budget runs out or the instance stops, and the guest is
// then interrupted.
func (in *instance) nanosleep(ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.sleepCtx.Done():
	}
}

// Stop implements module.Instance. A call in progress ends at once: its
// sleep or its calls into the node are cancelled, and the guest is
// interrupted. The runtime (the guest's memory with it) is closed when
// that call has returned, before Stop returns unless ctx ends first.
func (in *instance) Stop(ctx context.Context) error {
	if in.stopped.Swap(true) {
		return nil
	}
	in.cancel(errStopped)
	in.timer.Stop()
	closeNow := func() error {
		defer in.unlock()
		return in.close()
	}
	select {
	case in.sem <- struct{}{}:
	case <-ctx.Done():
		go func() {
			in.sem <- struct{}{}
			closeNow()
		}()
		return fmt.Errorf("stop %s: a call still returning: %w", in.name, plan9.ErrInterrupted)
	}
	if err := closeNow(); err != nil {
		return fmt.Errorf("stop %s: %w", in.name, err)
	}
	return nil
}

// close releases the runtime and /data, once. The caller holds sem,
// or the instance never served.
func (in *instance) close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	err := in.rt.Close(context.Background())
	if in.data != nil {
		if cerr := in.data.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// stoppedErr is the error of a call to an instance that cannot serve.
func (in *instance) stoppedErr() error {
	return fmt.Errorf("module %s: %w", in.name, plan9.ErrModuleStopped)
}

// lock takes the right to call the guest, waiting no longer than ctx.
func (in *instance) lock(ctx context.Context) error {
	if inChain(ctx, in) {
		return fmt.Errorf("module %s: its own files reached from its call into the namespace: %w", in.name, plan9.ErrInterrupted)
	}
	select {
	case in.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case in.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return plan9.ErrInterrupted
	}
}

func (in *instance) unlock() { <-in.sem }

// call sends req to the guest and gives its response to use, which must
// not keep resp.Data: it is the guest's memory. A failure of the guest
// (Err set) is returned as a plan9.Error; a trap or a budget overrun is
// returned too, and ends the instance.
func (in *instance) call(ctx context.Context, req *abi.Request, use func(resp *abi.Response) error) error {
	if err := in.lock(ctx); err != nil {
		return err
	}
	defer in.unlock()
	if in.dead != nil || in.stopped.Load() {
		return in.stoppedErr()
	}
	in.cs = callState{ctx: ctx, pending: in.cs.pending[:0]}
	in.cur = &in.cs
	defer func() {
		in.cs.done()
		in.cur, in.cs.ctx = nil, nil
	}()

	in.enc = req.Append(in.enc[:0])
	if uint64(len(in.enc)) > 1<<31 {
		return fmt.Errorf("module %s: request too large", in.name)
	}
	if err := in.run(); err != nil {
		return in.fail(err)
	}
	rp, rn := uint32(in.stack[0]>>32), uint32(in.stack[0])
	b, ok := in.mem.Read(rp, rn)
	if !ok {
		return in.fail(errors.New("response outside memory"))
	}
	var resp abi.Response
	if err := resp.Unmarshal(b); err != nil {
		return in.fail(fmt.Errorf("bad response: %w", err))
	}
	if resp.Err != "" {
		return plan9.Error(plan9.Errstr(errors.New(resp.Err)))
	}
	return use(&resp)
}

// run passes the encoded request to the guest, under the CPU budget.
func (in *instance) run() error {
	in.startBudget()
	defer in.stopBudget()
	n := uint32(len(in.enc))
	if n > in.bufCap {
		size := max(n, minRequestBuf)
		in.stack[0] = uint64(size)
		if err := in.fAlloc.CallWithStack(in.ctx, in.stack[:]); err != nil {
			return err
		}
		in.bufPtr, in.bufCap = uint32(in.stack[0]), size
	}
	if !in.mem.Write(in.bufPtr, in.enc) {
		return errors.New("request buffer outside memory")
	}
	in.stack[0], in.stack[1] = uint64(in.bufPtr), uint64(n)
	if err := in.fCall.CallWithStack(in.ctx, in.stack[:]); err != nil {
		return err
	}
	if in.ctx.Err() != nil {
		// The budget ran out as the call returned: the context is done,
		// and so is the instance.
		return context.Cause(in.ctx)
	}
	return nil
}

// startBudget starts the timer of a call's CPU budget.
func (in *instance) startBudget() {
	in.left = in.cfg.cpu
	in.resumeBudget()
}

func (in *instance) resumeBudget() {
	in.started = time.Now()
	in.timer.Reset(in.left)
}

// stopBudget stops the timer, keeping what is left of the budget.
func (in *instance) stopBudget() {
	in.timer.Stop()
	in.left -= time.Since(in.started)
}

// fail ends the instance after err from the guest and returns the error
// of the call. The manager hears of it through env.Fail.
func (in *instance) fail(err error) error {
	var ferr error
	var exit *sys.ExitError
	switch {
	case in.stopped.Load():
		return in.stoppedErr()
	case errors.Is(context.Cause(in.ctx), errBudget):
		ferr = overrun("module %s: call interrupted: cpu budget %v exceeded", in.name, in.cfg.cpu)
	case errors.As(err, &exit):
		ferr = fmt.Errorf("module %s trapped: exit code %d", in.name, exit.ExitCode())
	default:
		ferr = fmt.Errorf("module %s trapped: %s", in.name, firstLine(err))
	}
	in.dead = ferr
	// Nothing runs in it any more: its memory goes now, not when the
	// manager stops it.
	in.close()
	in.log.Error("instance failed", "err", ferr, "detail", err.Error())
	in.failed.Do(func() {
		if in.env.Fail != nil {
			// In a goroutine of its own: the manager may stop the
			// instance, after draining requests, of which this is one.
			go in.env.Fail(ferr)
		}
	})
	return ferr
}

// Attach implements styx.Attacher: the root of the guest's tree.
func (in *instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	info, err := in.stat(ctx, "/", uname)
	if err != nil {
		return nil, err
	}
	if info.Mode&abi.DMDIR == 0 {
		return nil, fmt.Errorf("module %s: root is not a directory", in.name)
	}
	return in.newFile("/", info, uname), nil
}

// stat asks the guest to describe path.
func (in *instance) stat(ctx context.Context, path, user string) (abi.Info, error) {
	var info abi.Info
	err := in.call(ctx, &abi.Request{Op: abi.OpStat, Path: path, User: user}, func(r *abi.Response) error {
		if len(r.Infos) != 1 {
			return fmt.Errorf("module %s: stat %s: %d entries in the answer", in.name, path, len(r.Infos))
		}
		info = r.Infos[0]
		return nil
	})
	return info, err
}

// hostModule defines the functions the guest imports from "cheshire".
func (in *instance) hostModule(ctx context.Context) error {
	b := in.rt.NewHostModuleBuilder("cheshire")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(in.hostLog), []api.ValueType{i32, i32}, nil).
		Export("log")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(in.hostCall), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		Export("host_call")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(in.hostResult), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		Export("host_result")
	_, err := b.Instantiate(ctx)
	return err
}

// maxLogLine bounds a line the guest logs.
const maxLogLine = 4 << 10

func (in *instance) hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	ptr, n := uint32(stack[0]), uint32(stack[1])
	b, ok := mod.Memory().Read(ptr, min(n, maxLogLine))
	if !ok {
		return
	}
	in.log.Info(strings.TrimRight(string(b), "\n"))
}

func (in *instance) hostCall(ctx context.Context, mod api.Module, stack []uint64) {
	ptr, n := uint32(stack[0]), uint32(stack[1])
	cs := in.cur
	b, ok := mod.Memory().Read(ptr, n)
	if cs == nil || !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	var req abi.Request
	if err := req.Unmarshal(b); err != nil {
		stack[0] = api.EncodeI32(-1)
		return
	}
	// Time spent in the node is not the guest's CPU: the budget of a
	// call stops (that of initialization, a plain timeout, does not).
	paused := cs == &in.cs
	if paused {
		in.stopBudget()
	}
	resp := in.serveHost(cs.nodeCtx(in), &req)
	if paused {
		in.resumeBudget()
	}
	cs.pending = resp.Append(cs.pending[:0])
	stack[0] = api.EncodeI32(int32(len(cs.pending)))
}

func (in *instance) hostResult(ctx context.Context, mod api.Module, stack []uint64) {
	ptr, n := uint32(stack[0]), uint32(stack[1])
	cs := in.cur
	if cs == nil || len(cs.pending) == 0 {
		stack[0] = api.EncodeI32(-1)
		return
	}
	p := cs.pending[:min(int(n), len(cs.pending))]
	if !mod.Memory().Write(ptr, p) {
		stack[0] = api.EncodeI32(-1)
		return
	}
	if cap(cs.pending) > 1<<20 {
		cs.pending = nil // not kept for later calls
	} else {
		cs.pending = cs.pending[:0]
	}
	stack[0] = api.EncodeI32(int32(len(p)))
}
