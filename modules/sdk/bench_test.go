package sdk

import (
	"testing"

	"cheshire/modules/abi"
)

func BenchmarkCallStat(b *testing.B) {
	s := newServer(NewDir("/", 0o555, Static("ok", 0o444, []byte("ok\n"))))
	req := (&abi.Request{Op: abi.OpStat, Path: "/ok", User: "glenda"}).Append(nil)
	b.ReportAllocs()
	for b.Loop() {
		s.call(req)
	}
}
