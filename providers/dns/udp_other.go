//go:build !linux

package dns

import (
	"context"
	"net"
)

// udpBatchWorker is not available: the plain worker is used.
func (s *Server) udpBatchWorker(ctx context.Context, uc *net.UDPConn) (bool, error) {
	return false, nil
}
